//! File data: the open state of regular files, reads and writes through their objects,
//! write-back to the database, reservations against byte limits, and fallocate.

use super::*;

impl TenantFs {
    /// Takes a reference on the open state of a regular file, opening its object if needed.
    pub(super) fn acquire(&self, ino: Ino, write: bool) -> FsResult<Arc<OpenObject>> {
        let mut open = self.open.lock();
        if let Some(e) = open.get_mut(&ino) {
            let obj = e.obj.clone();
            // Held only by readers here, the file may have changed in another mount since
            // it was opened (a truncate, a write past the end): a new open starts from the
            // database, or a writer would write back the old size.
            let mut st = obj.st.lock();
            let fresh = if !st.dirty && st.reserved == 0 {
                self.meta.lock().read().inode(ino)?
            } else {
                None
            };
            if let Some(a) = fresh {
                st.size = a.size;
                st.db_size = a.size;
                st.mtime = a.mtime;
                st.ctime = a.ctime;
                *obj.last.lock() = a;
            }
            drop(st);
            e.refs += 1;
            return Ok(obj);
        }
        // Gone, or without names: the kernel's name for it is out of date, and ESTALE makes
        // it look the name up again. A reader racing the removal may still open what is left
        // (a ghost, or another mount's open orphan), as on a local disk; a writer opens the
        // file that has the name now.
        let a = match self.meta.lock().read().inode(ino)? {
            Some(a) if a.nlink > 0 || !write => a,
            _ => return Err(FsError::Stale),
        };
        match a.kind {
            Kind::File => {}
            Kind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid),
        }
        let data = OnceLock::new();
        if let Some(o) = self.objects.open(ino, false)? {
            let _ = data.set(o);
        }
        let obj = Arc::new(OpenObject {
            ino,
            data,
            st: Mutex::new(FileState {
                size: a.size,
                db_size: a.size,
                mtime: a.mtime,
                ctime: a.ctime,
                dirty: false,
                reserved: 0,
                lost: false,
            }),
            orphan: AtomicBool::new(false),
            setid: AtomicBool::new(setid::has_setid(a.perm)),
            last: Mutex::new(a),
        });
        open.insert(
            ino,
            OpenEntry {
                obj: obj.clone(),
                refs: 1,
            },
        );
        Ok(obj)
    }

    /// Drops a reference; the last one writes back state and reclaims an orphan.
    pub(super) fn release_object(&self, obj: Arc<OpenObject>) -> FsResult<()> {
        let mut open = self.open.lock();
        let Entry::Occupied(mut e) = open.entry(obj.ino) else {
            return Ok(());
        };
        e.get_mut().refs -= 1;
        if e.get().refs > 0 {
            return Ok(());
        }
        e.remove();
        let orphan = obj.orphan.load(Ordering::SeqCst);
        let mut st = obj.st.lock();
        // The `writers` row stays until unmount: a stale row only makes recovery re-read a
        // size that is already right, and keeping it saves a transaction per close.
        let mut deleted = false;
        if st.dirty || orphan || st.reserved > 0 {
            deleted = self.transact(|tx| {
                self.write_back(tx, &obj, &mut st)?;
                self.unreserve(tx, obj.ino, &mut st)?;
                // The database decides: a removal that rolled back left it linked.
                let gone = orphan && tx.inode(obj.ino)?.is_some_and(|a| a.nlink == 0);
                if gone {
                    quota::delete_inode(tx, obj.ino)?;
                }
                Ok(gone)
            })?;
        }
        let size = st.size;
        let deleted = deleted || st.lost;
        drop(st);
        drop(open);
        // A moved access time stays pending (this mount shows it) until the watcher's next
        // batch: written here, it cost a transaction per file read, a fifth of a cold
        // `grep -r` over a fresh tree.
        if deleted {
            self.reap(vec![Doomed {
                ino: obj.ino,
                size,
                ghost: false,
            }]);
        }
        Ok(())
    }

    /// Records live size and times in the database; growth moves from reserved to used. The
    /// size is the object's (other mounts' appends included), and usage changes by how far it
    /// is from the size the database has now, so usage stays exact whoever wrote last.
    pub(super) fn write_back(
        &self,
        tx: &Tx<'_>,
        obj: &OpenObject,
        st: &mut FileState,
    ) -> FsResult<()> {
        if !st.dirty {
            return Ok(());
        }
        let extent = match obj.data.get() {
            Some(d) => d.extent()?,
            None => Extent {
                len: st.size,
                blocks: 0,
            },
        };
        st.size = extent.len;
        let ino = obj.ino;
        let was = tx.inode(ino)?.map(|a| a.size);
        let mut dirs = Vec::new();
        match was {
            // A ghost's size counts no more.
            Some(was) if tx.set_size(ino, extent, st.mtime, st.ctime)? => {
                dirs = quota::add_usage(tx, ino, st.size as i64 - was as i64, 0)?;
            }
            Some(_) => {}
            // Another mount deleted it; an object made here since is ours to delete.
            None => {
                if obj.data.get().is_some() {
                    tx.mark_gc(ino)?;
                    st.lost = true;
                }
            }
        }
        let consumed = st
            .size
            .saturating_sub(was.unwrap_or(st.db_size).max(st.db_size))
            .min(st.reserved);
        quota::hold_in(tx, ino, &self.session, -(consumed as i64), &dirs)?;
        st.reserved -= consumed;
        st.db_size = st.size;
        st.dirty = false;
        Ok(())
    }

    /// Gives back what a file holds reserved beyond its size.
    pub(super) fn unreserve(&self, tx: &Tx<'_>, ino: Ino, st: &mut FileState) -> FsResult<()> {
        if st.reserved > 0 {
            quota::hold(tx, ino, &self.session, -(st.reserved as i64))?;
            st.reserved = 0;
        }
        Ok(())
    }

    /// Whether any byte limit may apply: the tenant's, or a directory quota anywhere (a file
    /// may move under one).
    pub(super) fn quotas_on(&self) -> bool {
        self.limits.lock().0 > 0 || self.dir_quotas.load(Ordering::Relaxed)
    }

    /// Makes room under the byte limits for the file to reach `want` bytes, reserving in
    /// chunks so most writes need no transaction. Returns how far it may grow: `want`, or
    /// less when a limit is near. The caller holds `st`.
    pub(super) fn reserve(&self, ino: Ino, st: &mut FileState, want: u64) -> FsResult<u64> {
        let covered = st.db_size + st.reserved;
        if want <= covered || !self.quotas_on() {
            return Ok(want);
        }
        self.transact(|tx| {
            let dirs = quota::over(tx, ino)?;
            let room = quota::room(tx, &dirs)?;
            if room == u64::MAX && !tx.has_dir_quotas()? {
                return Ok(want);
            }
            // A growing file reserves as much as it already has (4 to 64 MiB), so a long
            // stream needs a handful of transactions, not one per 4 MiB.
            let chunk = st.size.clamp(RESERVE_CHUNK, RESERVE_CHUNK_MAX);
            let got = (want - covered).max(chunk).min(room);
            let got = quota::hold_in(tx, ino, &self.session, got as i64, &dirs)? as u64;
            st.reserved += got;
            Ok(covered + got)
        })
    }

    /// Writes back live state and gives back unused reservation, at close (flush) and fsync,
    /// so what `df` and other mounts see is settled by the time close returns.
    pub(super) fn persist(&self, obj: &OpenObject) -> FsResult<()> {
        let mut st = obj.st.lock();
        if st.dirty || st.reserved > 0 {
            self.transact(|tx| {
                self.write_back(tx, obj, &mut st)?;
                self.unreserve(tx, obj.ino, &mut st)
            })?;
        }
        Ok(())
    }

    /// Before the object changes: make sure a crash leaves a `writers` row behind.
    pub(super) fn mark(&self, obj: &OpenObject) -> FsResult<()> {
        if !self.marked.lock().contains(&obj.ino) {
            self.transact(|tx| Ok(tx.mark_writer(obj.ino, &self.session)?))?;
            self.marked.lock().insert(obj.ino);
        }
        Ok(())
    }

    /// The object to change, made now if the file has none. The caller holds `st`, so two
    /// writers cannot both make it.
    pub(super) fn data<'a>(&self, obj: &'a OpenObject) -> FsResult<&'a dyn Object> {
        if obj.data.get().is_none() {
            if self.read_only {
                return Err(FsError::ReadOnly);
            }
            let made = self.objects.open(obj.ino, true)?.ok_or(FsError::Stale)?;
            let _ = obj.data.set(made);
        }
        Ok(obj.data.get().expect("set above").as_ref())
    }

    pub(super) fn resize(&self, obj: &OpenObject, size: u64, now: Nanos) -> FsResult<()> {
        if size > i64::MAX as u64 {
            return Err(FsError::FileTooLarge);
        }
        let mut st = obj.st.lock();
        if self.reserve(obj.ino, &mut st, size)? < size {
            return Err(FsError::Quota);
        }
        self.mark(obj)?;
        self.data(obj)?.set_len(size)?;
        st.size = size;
        st.mtime = now;
        st.ctime = now;
        st.dirty = true;
        self.transact(|tx| self.write_back(tx, obj, &mut st))
    }

    pub fn open(&self, ino: Ino, flags: i32) -> FsResult<u64> {
        self.live()?;
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        if write && self.read_only {
            return Err(FsError::ReadOnly);
        }
        let read = acc == libc::O_RDONLY || acc == libc::O_RDWR;
        let want = match (read, write) {
            (true, true) => Rights::R.union(Rights::W),
            (false, true) => Rights::W,
            _ => Rights::R,
        };
        self.need_now(ino, want, "open")?;
        let obj = self.acquire(ino, write)?;
        // Reads the kernel serves from its cache, and passthrough reads, never reach the
        // daemon: a readable open counts as the access.
        if read && flags & libc::O_NOATIME == 0 {
            let (mtime, ctime) = {
                let st = obj.st.lock();
                (st.mtime, st.ctime)
            };
            self.accessed(&obj.last.lock(), mtime, ctime);
        }
        Ok(self.new_handle(obj, write, flags))
    }

    /// The object file a read-only handle may read straight through the kernel (FUSE
    /// passthrough), when the tenant allows it. Such reads skip the daemon: no per-read
    /// rights check, no metering, and revoking the key does not stop them (SEMANTICS.md).
    /// Only files whose object holds exactly their content qualify; an object shorter than
    /// the file (never written, or grown by truncate) would read short.
    pub fn passthrough_file(&self, fh: u64) -> Option<std::os::fd::OwnedFd> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let h = self.handle(fh).ok()?;
        if h.write {
            return None;
        }
        let data = h.obj.data.get()?;
        let size = h.obj.st.lock().size;
        if data.extent().ok()?.len != size {
            return None;
        }
        data.local_fd()?.try_clone_to_owned().ok()
    }

    pub(super) fn new_handle(&self, obj: Arc<OpenObject>, write: bool, flags: i32) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let h = Handle {
            obj,
            write,
            append: flags & libc::O_APPEND != 0,
            noatime: flags & libc::O_NOATIME != 0,
        };
        self.handles.write().insert(fh, h);
        fh
    }

    pub(super) fn handle(&self, fh: u64) -> FsResult<Handle> {
        self.handles
            .read()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    pub fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> FsResult<(Attr, u64)> {
        self.writable()?;
        check_name(name)?;
        let perm = (mode & !umask & 0o7777) as u16;
        let mut open = self.open.lock();
        let a = self.transact(|tx| {
            let node = Node {
                kind: Kind::File,
                perm,
                rdev: 0,
                target: None,
            };
            let a = self.make_node(tx, ctx, parent, name, node)?;
            tx.mark_writer(a.ino, &self.session)?;
            Ok::<_, FsError>(a)
        });
        let a = match a {
            // The kernel thought the name absent (a negative entry, while another mount
            // made it): ESTALE makes it look again and open the file that is there, as
            // `open(O_CREAT)` without `O_EXCL` must.
            Err(FsError::Exists) if flags & libc::O_EXCL == 0 => return Err(FsError::Stale),
            other => other?,
        };
        let obj = Arc::new(OpenObject {
            ino: a.ino,
            data: OnceLock::new(),
            st: Mutex::new(FileState {
                size: 0,
                db_size: 0,
                mtime: a.mtime,
                ctime: a.ctime,
                dirty: false,
                reserved: 0,
                lost: false,
            }),
            orphan: AtomicBool::new(false),
            setid: AtomicBool::new(setid::has_setid(a.perm)),
            last: Mutex::new(a.clone()),
        });
        open.insert(
            a.ino,
            OpenEntry {
                obj: obj.clone(),
                refs: 1,
            },
        );
        drop(open);
        let fh = self.new_handle(obj, true, flags);
        Ok((a, fh))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.live()?;
        let h = self.handle(fh)?;
        // Re-checked on every read: a revoked grant reaches descriptors opened before it.
        self.need_now(h.obj.ino, Rights::R, "read")?;
        // The object is as long as the file, and has what other mounts wrote since the open
        // (a file without one is empty).
        let buf = match self.content(&h.obj) {
            Some(data) => {
                let mut buf = vec![0u8; size as usize];
                let n = data.read_at(&mut buf, offset)?;
                buf.truncate(n);
                buf
            }
            None => Vec::new(),
        };
        if !h.noatime {
            let (mtime, ctime) = {
                let st = h.obj.st.lock();
                (st.mtime, st.ctime)
            };
            self.accessed(&h.obj.last.lock(), mtime, ctime);
        }
        self.meter
            .bytes_read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.throttle.bytes(buf.len() as u64);
        Ok(buf)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.writable()?;
        let h = self.handle(fh)?;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        self.need_now(h.obj.ino, Rights::W, "write")?;
        let obj = &h.obj;
        let mut st = obj.st.lock();
        // Appends go where the content ends, wherever another mount has taken it; this is
        // where it ends now, for the quota (the append itself lands at the true end).
        let offset = if h.append {
            self.mark(obj)?;
            self.data(obj)?.extent()?.len
        } else {
            offset
        };
        let mut end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or(FsError::FileTooLarge)?;
        if end > st.size {
            // Up to the byte limit and no further: a partial write, as POSIX allows.
            end = end.min(self.reserve(obj.ino, &mut st, end)?);
            if end <= offset {
                return Err(FsError::Quota);
            }
        }
        let data = &data[..(end - offset) as usize];
        self.room_to_write(obj, &st, offset, end, h.append)?;
        self.mark(obj)?;
        if h.append {
            end = self.data(obj)?.append(data)?;
        } else {
            self.data(obj)?.write_all_at(data, offset)?;
        }
        let now = now_nanos();
        st.size = st.size.max(end);
        st.mtime = now;
        st.ctime = now;
        st.dirty = true;
        self.meter
            .bytes_written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        drop(st);
        self.throttle.bytes(data.len() as u64);
        Ok(data.len() as u32)
    }

    /// Room on the store's disk for a write or allocation of `[offset, end)`. At the reserve,
    /// one over content that takes its blocks already goes ahead: it needs no new ones, and a
    /// database on a full disk can still update its pages in place.
    fn room_to_write(
        &self,
        obj: &OpenObject,
        st: &FileState,
        offset: u64,
        end: u64,
        append: bool,
    ) -> FsResult<()> {
        match self.grow(end - offset) {
            Err(FsError::NoSpace) if !append && end <= st.size => {
                let Some(data) = self.content(obj) else {
                    return Err(FsError::NoSpace);
                };
                match data.seek(offset, libc::SEEK_HOLE) {
                    Ok(hole) if hole >= end => Ok(()),
                    _ => Err(FsError::NoSpace),
                }
            }
            other => other,
        }
    }

    /// Before a write by a caller without `CAP_FSETID`: clears the file's set-user-ID bit,
    /// and its set-group-ID bit if group-executable, as a local file system does. Only the
    /// first such write after an open (or a chmod here) looks at the database.
    pub fn clear_setid_for_write(&self, fh: u64, caller: &Ctx) -> FsResult<()> {
        // A stopped mount changes nothing; the write that follows reports why.
        if self.state.load(Ordering::Relaxed) != LIVE {
            return Ok(());
        }
        let h = self.handle(fh)?;
        if !h.obj.setid.load(Ordering::Relaxed) {
            return Ok(());
        }
        let ino = h.obj.ino;
        let left = self.transact(|tx| {
            let mut a = require_ino(tx.inode(ino)?)?;
            let perm = setid::dropped(a.perm, setid::in_group(caller, a.gid));
            if perm != a.perm {
                a.perm = perm;
                a.ctime = now_nanos();
                tx.update_inode(&a)?;
            }
            Ok(a.perm)
        })?;
        // A set-group-ID bit a group member's write kept still concerns other writers.
        h.obj.setid.store(setid::has_setid(left), Ordering::Relaxed);
        Ok(())
    }

    pub fn flush(&self, fh: u64) -> FsResult<()> {
        self.live()?;
        let h = self.handle(fh)?;
        self.persist(&h.obj)
    }

    pub fn fsync(&self, fh: u64, datasync: bool) -> FsResult<()> {
        self.live()?;
        let h = self.handle(fh)?;
        if let Some(data) = h.obj.data.get() {
            data.sync_data()?;
        }
        let dirty = h.obj.st.lock().dirty;
        self.persist(&h.obj)?;
        if dirty || !datasync {
            self.meta.lock().sync()?;
        }
        Ok(())
    }

    /// Releases a handle. It works even after revocation, so nothing leaks.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let Some(h) = self.handles.write().remove(&fh) else {
            return Err(FsError::BadHandle);
        };
        self.release_object(h.obj)
    }

    /// `lseek` with `SEEK_DATA` or `SEEK_HOLE`, answered from the content, so `cp`, `tar -S`
    /// and `rsync -S` keep holes. A file without content is one hole.
    pub fn seek_data_hole(&self, fh: u64, offset: u64, whence: i32) -> FsResult<u64> {
        self.live()?;
        let h = self.handle(fh)?;
        let size = self.live_extent(&h.obj, &h.obj.st.lock()).len;
        if offset >= size {
            return Err(FsError::NoSuchOffset);
        }
        let found = match (self.content(&h.obj), whence) {
            (Some(d), _) => d.seek(offset, whence),
            (None, libc::SEEK_HOLE) => Ok(size),
            (None, _) => return Err(FsError::NoSuchOffset),
        };
        match found {
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Err(FsError::NoSuchOffset),
            other => Ok(other?),
        }
    }

    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        self.writable()?;
        let h = self.handle(fh)?;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        self.need_now(h.obj.ino, Rights::W, "fallocate")?;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or(FsError::FileTooLarge)?;
        let obj = &h.obj;
        let mut st = obj.st.lock();
        if mode & libc::FALLOC_FL_KEEP_SIZE == 0
            && end > st.size
            && self.reserve(obj.ino, &mut st, end)? < end
        {
            return Err(FsError::Quota);
        }
        if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_COLLAPSE_RANGE) == 0 {
            self.room_to_write(obj, &st, offset, end, false)?;
        }
        self.mark(obj)?;
        self.data(obj)?.allocate(mode, offset, len)?;
        let now = now_nanos();
        if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > st.size {
            st.size = end;
        }
        if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 || end > st.size {
            st.mtime = now;
        }
        st.ctime = now;
        st.dirty = true;
        Ok(())
    }
}
