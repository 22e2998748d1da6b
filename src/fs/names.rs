//! The namespace: creating, linking, removing and renaming names, each one transaction that
//! keeps link counts, quotas and orphans consistent.

use super::*;
use crate::meta::MetaResult;

impl TenantFs {
    // ---- creating names -------------------------------------------------------------------

    /// Inserts a new inode under `parent/name` in one transaction and returns its attributes.
    pub(super) fn make_node(
        &self,
        tx: &Tx<'_>,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        node: Node<'_>,
    ) -> FsResult<Attr> {
        let Node {
            kind,
            perm,
            rdev,
            target,
        } = node;
        let p = require_live_dir(tx, parent)?;
        let op = match kind {
            Kind::Dir => "mkdir",
            Kind::Symlink => "symlink",
            Kind::File => "create",
            _ => "mknod",
        };
        self.need(tx, parent, Rights::W.union(Rights::X), op, Some(name))?;
        if tx.lookup(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        if kind == Kind::Dir && p.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        // The cached limits say whether to look; the database says how much is left.
        let (max_bytes, max_inodes) = if *self.limits.lock() == (0, 0) {
            (0, 0)
        } else {
            tx.limits()?
        };
        let extra = target.map_or(0, |t| t.len() as u64);
        if max_bytes > 0 || max_inodes > 0 {
            let (bytes, inodes) = tx.usage()?;
            if (max_inodes > 0 && inodes >= max_inodes)
                || (max_bytes > 0 && bytes + tx.reserved()? + extra > max_bytes)
            {
                return Err(FsError::Quota);
            }
        }
        self.grow(room::METADATA + extra)?;
        // A setgid directory hands its group down, and its setgid bit to subdirectories.
        let (gid, perm) = if p.perm & libc::S_ISGID as u16 != 0 {
            let perm = if kind == Kind::Dir {
                perm | libc::S_ISGID as u16
            } else {
                perm
            };
            (p.gid, perm)
        } else {
            (ctx.gid, perm)
        };
        let now = now_nanos();
        let ino = tx.insert_inode(&NewInode {
            kind,
            perm,
            uid: ctx.uid,
            gid,
            rdev,
            now,
            parent,
            target,
            // The creator owns what it creates.
            owner: Some(self.access.subject()),
        })?;
        tx.insert_entry(parent, name, ino, kind)?;
        tx.touch(parent, now)?;
        if kind == Kind::Dir {
            tx.add_nlink(parent, 1)?;
        }
        // Counted first, then checked against the directory quotas it landed in.
        let dirs = quota::add_usage(tx, ino, extra as i64, 1)?;
        if quota::any_over(tx, &dirs)? {
            return Err(FsError::Quota);
        }
        require_ino(tx.inode(ino)?)
    }

    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> FsResult<Attr> {
        self.writable()?;
        check_name(name)?;
        let kind = Kind::from_mode(mode).ok_or(FsError::Invalid)?;
        if kind == Kind::Dir || kind == Kind::Symlink {
            return Err(FsError::Invalid);
        }
        let perm = (mode & !umask & 0o7777) as u16;
        let rdev = if matches!(kind, Kind::CharDev | Kind::BlockDev) {
            rdev
        } else {
            0
        };
        self.transact(|tx| {
            self.make_node(
                tx,
                ctx,
                parent,
                name,
                Node {
                    kind,
                    perm,
                    rdev,
                    target: None,
                },
            )
        })
        .and_then(|a| self.present(a))
    }

    pub fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> FsResult<Attr> {
        self.writable()?;
        check_name(name)?;
        let perm = (mode & !umask & 0o7777) as u16;
        self.transact(|tx| {
            self.make_node(
                tx,
                ctx,
                parent,
                name,
                Node {
                    kind: Kind::Dir,
                    perm,
                    rdev: 0,
                    target: None,
                },
            )
        })
        .and_then(|a| self.present(a))
    }

    pub fn symlink(&self, ctx: &Ctx, parent: Ino, name: &[u8], target: &[u8]) -> FsResult<Attr> {
        self.writable()?;
        check_name(name)?;
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong);
        }
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        self.transact(|tx| {
            let node = Node {
                kind: Kind::Symlink,
                perm: 0o777,
                rdev: 0,
                target: Some(target),
            };
            self.make_node(tx, ctx, parent, name, node)
        })
        .and_then(|a| self.present(a))
    }

    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> FsResult<Attr> {
        self.writable()?;
        check_name(new_name)?;
        let a = self.transact(|tx| {
            // The order of checks is Linux's: the new name first, then the source. A link
            // needs write on the file too, so a read-only grant cannot gain a writable name.
            let mut a = require_ino(tx.inode(ino)?)?;
            require_live_dir(tx, new_parent)?;
            self.need(
                tx,
                new_parent,
                Rights::W.union(Rights::X),
                "link",
                Some(new_name),
            )?;
            self.need(tx, ino, Rights::W, "link", None)?;
            if tx.lookup(new_parent, new_name)?.is_some() {
                return Err(FsError::Exists);
            }
            if a.kind == Kind::Dir {
                return Err(FsError::NotPermitted);
            }
            if a.nlink == 0 {
                return Err(FsError::NotFound);
            }
            if a.nlink >= LINK_MAX {
                return Err(FsError::TooManyLinks);
            }
            self.grow(room::METADATA)?;
            let now = now_nanos();
            let counted = quota::before(tx, ino)?;
            if a.nlink == 1
                && let Some((_, _, first)) = tx.placement(ino)?
            {
                tx.add_link(ino, first, 1)?;
            }
            tx.add_link(ino, new_parent, 1)?;
            tx.insert_entry(new_parent, new_name, ino, a.kind)?;
            tx.add_nlink(ino, 1)?;
            if quota::any_over(tx, &quota::settle(tx, counted)?)? {
                return Err(FsError::Quota);
            }
            tx.set_ctime(ino, now)?;
            tx.touch(new_parent, now)?;
            a.nlink += 1;
            a.ctime = now;
            Ok(a)
        })?;
        if let Some(e) = self.open.lock().get(&ino) {
            e.obj.st.lock().ctime = a.ctime;
        }
        self.present(a)
    }

    // ---- removing names -------------------------------------------------------------------

    /// Whether `victim` may lose its name to an op that expects a directory (`as_dir`: rmdir,
    /// or a rename of a directory over it) or anything else.
    pub(super) fn removable(tx: &Tx<'_>, as_dir: bool, victim: &Attr) -> FsResult<()> {
        match (as_dir, victim.kind == Kind::Dir) {
            (true, false) => Err(FsError::NotDir),
            (false, true) => Err(FsError::IsDir),
            (true, true) if tx.has_entries(victim.ino)? => Err(FsError::NotEmpty),
            _ => Ok(()),
        }
    }

    /// Removes the name `parent/name` of `a` inside a transaction; the caller holds `open`.
    /// At zero links the inode goes now, or at last release if it is open here.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn unname(
        &self,
        tx: &Tx<'_>,
        open: &HashMap<Ino, OpenEntry>,
        parent: Ino,
        name: &[u8],
        a: &Attr,
        now: Nanos,
        doomed: &mut Vec<Doomed>,
    ) -> FsResult<()> {
        tx.delete_entry(parent, name)?;
        if a.kind == Kind::Dir {
            tx.add_nlink(parent, -1)?;
        }
        let remaining = if a.kind == Kind::Dir {
            0
        } else {
            a.nlink.saturating_sub(1)
        };
        if remaining > 0 {
            let counted = quota::before(tx, a.ino)?;
            tx.add_nlink(a.ino, -1)?;
            tx.add_link(a.ino, parent, -1)?;
            if remaining == 1 {
                // Back to one name: `inodes.parent` says where it is again.
                if let [(last, _)] = tx.link_parents(a.ino)?[..] {
                    tx.set_parent(a.ino, last)?;
                }
                tx.clear_links(a.ino)?;
            }
            quota::settle(tx, counted)?;
            tx.set_ctime(a.ino, now)?;
            return Ok(());
        }
        let held_here = match open.get(&a.ino) {
            Some(e) => {
                e.obj.orphan.store(true, Ordering::SeqCst);
                true
            }
            None => a.kind == Kind::Dir && self.keep_open_dir(a.ino),
        };
        match held_here {
            true => {
                // No names left: it counts for the tenant only until its last release.
                let counted = quota::before(tx, a.ino)?;
                tx.add_nlink(a.ino, -i64::from(a.nlink))?;
                quota::settle(tx, counted)?;
                tx.set_ctime(a.ino, now)?;
                tx.add_orphan(a.ino, &self.session)?;
            }
            false if a.kind == Kind::File => {
                // An open may be racing this removal (see `ghosts`).
                quota::make_ghost(tx, a.ino)?;
                tx.add_nlink(a.ino, -i64::from(a.nlink))?;
                tx.set_ctime(a.ino, now)?;
                tx.add_orphan(a.ino, &self.session)?;
                doomed.push(Doomed {
                    ino: a.ino,
                    size: a.size,
                    ghost: true,
                });
            }
            false => {
                quota::delete_inode(tx, a.ino)?;
                doomed.push(Doomed {
                    ino: a.ino,
                    size: a.size,
                    ghost: false,
                });
            }
        }
        Ok(())
    }

    /// One write transaction. It also drops the `gc` rows of objects already deleted, so
    /// deleting a file costs one transaction, not two.
    pub(super) fn transact<T>(&self, f: impl FnOnce(&Tx<'_>) -> FsResult<T>) -> FsResult<T> {
        let mut meta = self.meta.lock();
        let reaped = std::mem::take(&mut *self.reaped.lock());
        let res = meta.write(|tx| {
            for &ino in &reaped {
                tx.gc_done(ino)?;
            }
            f(tx)
        });
        if res.is_err() {
            self.reaped.lock().extend(reaped);
        }
        res
    }

    /// Deletes the objects of inodes a committed transaction removed. Their `gc` rows go in
    /// a later transaction; until then a crash only makes the next mount delete them again.
    /// Small objects go here and now: deleting one costs less than waking the reaper thread,
    /// which takes the large ones so that freeing their extents never holds up a reply.
    pub(super) fn reap(&self, doomed: Vec<Doomed>) {
        {
            let mut marked = self.marked.lock();
            for d in &doomed {
                marked.remove(&d.ino);
            }
        }
        for d in doomed {
            if d.ghost {
                self.ghosts.add(d.ino);
            } else if d.size > INLINE_REAP {
                self.reaper.send(d.ino);
            } else {
                delete_object(self.objects.as_ref(), &self.reaped, d.ino);
            }
        }
    }

    /// Waits until every queued object is deleted.
    pub fn settle(&self) {
        self.reaper.settle();
    }

    pub fn unlink(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        self.remove(parent, name, true)
    }

    pub(super) fn remove(&self, parent: Ino, name: &[u8], dir: bool) -> FsResult<()> {
        self.writable()?;
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if dir && name == b"." {
            return Err(FsError::Invalid);
        }
        if dir && name == b".." {
            return Err(FsError::NotEmpty);
        }
        let mut doomed = Vec::new();
        {
            let open = self.open.lock();
            self.transact(|tx| {
                require_dir(tx, parent)?;
                let op = if dir { "rmdir" } else { "unlink" };
                self.need(tx, parent, Rights::W.union(Rights::X), op, Some(name))?;
                let a = require(tx.lookup_attr(parent, name)?)?;
                Self::removable(tx, dir, &a)?;
                if dir && a.ino == self.root {
                    return Err(FsError::Busy);
                }
                let now = now_nanos();
                tx.touch(parent, now)?;
                self.unname(tx, &open, parent, name, &a, now, &mut doomed)
            })?;
        }
        self.reap(doomed);
        Ok(())
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> FsResult<()> {
        self.writable()?;
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        check_name(new_name)?;
        if flags.exchange && flags.noreplace {
            return Err(FsError::Invalid);
        }
        let mut doomed = Vec::new();
        let now = now_nanos();
        let mut changed = Vec::new();
        let mut moved_dir = false;
        {
            let open = self.open.lock();
            self.transact(|tx| {
                require_dir(tx, parent)?;
                require_live_dir(tx, new_parent)?;
                // Both sides, before either name is looked at.
                let wx = Rights::W.union(Rights::X);
                self.need(tx, parent, wx, "rename", Some(name))?;
                self.need(tx, new_parent, wx, "rename", Some(new_name))?;
                let src = require(tx.lookup_attr(parent, name)?)?;
                let dst = tx.lookup_attr(new_parent, new_name)?;
                moved_dir =
                    src.kind == Kind::Dir || dst.as_ref().is_some_and(|d| d.kind == Kind::Dir);
                if src.kind == Kind::Dir && parent != new_parent {
                    self.refuse_loop(tx, src.ino, new_parent)?;
                }
                if flags.exchange {
                    let dst = require(dst)?;
                    if dst.kind == Kind::Dir && parent != new_parent {
                        self.refuse_loop(tx, dst.ino, parent)?;
                    }
                    return self.exchange(
                        tx,
                        parent,
                        name,
                        &src,
                        new_parent,
                        new_name,
                        &dst,
                        now,
                        &mut changed,
                    );
                }
                if let Some(dst) = &dst {
                    if flags.noreplace {
                        return Err(FsError::Exists);
                    }
                    if dst.ino == src.ino {
                        return Ok(());
                    }
                    Self::removable(tx, src.kind == Kind::Dir, dst)?;
                    self.unname(tx, &open, new_parent, new_name, dst, now, &mut doomed)?;
                    changed.push(dst.ino);
                }
                tx.move_entry(parent, name, new_parent, new_name)?;
                if parent != new_parent {
                    let counted = Moving::before(tx, &src, new_parent)?;
                    // Rights are inherited from where a file or directory now is; other
                    // mounts learn of the move through the tree version.
                    tx.set_parent(src.ino, new_parent)?;
                    move_link(tx, &src, parent, new_parent)?;
                    tx.bump_tree()?;
                    if src.kind == Kind::Dir {
                        tx.add_nlink(parent, -1)?;
                        tx.add_nlink(new_parent, 1)?;
                    }
                    if quota::any_over(tx, &counted.settle(tx)?)? {
                        return Err(FsError::Quota);
                    }
                }
                tx.set_ctime(src.ino, now)?;
                changed.push(src.ino);
                tx.touch(parent, now)?;
                tx.touch(new_parent, now)?;
                Ok::<_, FsError>(())
            })?;
            for &ino in &changed {
                if let Some(e) = open.get(&ino) {
                    e.obj.st.lock().ctime = now;
                }
            }
        }
        // A moved directory changes what everything below it inherits.
        if moved_dir && parent != new_parent {
            self.access.clear();
        } else {
            changed.iter().for_each(|&ino| self.access.forget(ino));
        }
        self.reap(doomed);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn exchange(
        &self,
        tx: &Tx<'_>,
        parent: Ino,
        name: &[u8],
        src: &Attr,
        new_parent: Ino,
        new_name: &[u8],
        dst: &Attr,
        now: Nanos,
        changed: &mut Vec<Ino>,
    ) -> FsResult<()> {
        if src.ino == dst.ino {
            return Ok(());
        }
        tx.repoint_entry(parent, name, dst.ino, dst.kind)?;
        tx.repoint_entry(new_parent, new_name, src.ino, src.kind)?;
        if parent != new_parent {
            let src_counted = Moving::before(tx, src, new_parent)?;
            let dst_counted = Moving::before(tx, dst, parent)?;
            let src_dir = i64::from(src.kind == Kind::Dir);
            let dst_dir = i64::from(dst.kind == Kind::Dir);
            tx.add_nlink(parent, dst_dir - src_dir)?;
            tx.add_nlink(new_parent, src_dir - dst_dir)?;
            tx.set_parent(src.ino, new_parent)?;
            tx.set_parent(dst.ino, parent)?;
            move_link(tx, src, parent, new_parent)?;
            move_link(tx, dst, new_parent, parent)?;
            tx.bump_tree()?;
            let mut grown = src_counted.settle(tx)?;
            grown.extend(dst_counted.settle(tx)?);
            if quota::any_over(tx, &grown)? {
                return Err(FsError::Quota);
            }
        }
        tx.set_ctime(src.ino, now)?;
        tx.set_ctime(dst.ino, now)?;
        changed.extend([src.ino, dst.ino]);
        tx.touch(parent, now)?;
        tx.touch(new_parent, now)?;
        Ok(())
    }

    /// A directory may not move below itself.
    pub(super) fn refuse_loop(&self, tx: &Tx<'_>, moving: Ino, mut dest: Ino) -> FsResult<()> {
        loop {
            if dest == moving {
                return Err(FsError::Invalid);
            }
            if dest == crate::types::ROOT_INO {
                return Ok(());
            }
            match tx.dir_parent(dest)? {
                Some(p) if p != dest => dest = p,
                _ => return Ok(()),
            }
        }
    }
}

/// Something about to move to another directory, as the quotas see it: a directory moves its
/// whole subtree, anything else only itself.
enum Moving {
    Dir(quota::DirMove),
    Other(quota::Before),
}

impl Moving {
    fn before(tx: &Tx<'_>, a: &Attr, new_parent: Ino) -> MetaResult<Moving> {
        Ok(if a.kind == Kind::Dir {
            Moving::Dir(quota::before_dir_move(tx, a.ino, new_parent)?)
        } else {
            Moving::Other(quota::before(tx, a.ino)?)
        })
    }

    /// Settles the move; returns the quotas that gained.
    fn settle(self, tx: &Tx<'_>) -> MetaResult<Vec<Ino>> {
        match self {
            Moving::Dir(m) => quota::settle_dir_move(tx, m),
            Moving::Other(b) => quota::settle(tx, b),
        }
    }
}

/// Moves one name of a file with several links from `from` to `to` in `links`.
fn move_link(tx: &Tx<'_>, a: &Attr, from: Ino, to: Ino) -> MetaResult<()> {
    if a.kind != Kind::Dir && a.nlink > 1 {
        tx.add_link(a.ino, from, -1)?;
        tx.add_link(a.ino, to, 1)?;
    }
    Ok(())
}
