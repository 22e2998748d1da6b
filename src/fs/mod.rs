//! The tenant filesystem core: POSIX semantics over [`Meta`] and an [`ObjectStore`], with no
//! FUSE types in sight, so it can be tested directly.
//!
//! Invariants:
//! - every metadata change is one transaction; a failed op changes nothing;
//! - a read-only core refuses every change with EROFS, and a revoked one refuses everything;
//! - for a file open here, the object and `OpenObject::st` hold the live size and times; the
//!   database catches up at flush, fsync and release, and a `writers` row covers the gap;
//! - an inode unlinked while open here stays readable and writable until its last release,
//!   then its row and object go;
//! - lock order is `open` → `OpenObject::st` → `meta`, never the reverse.
//!
//! Permission bits are the kernel's to check (`default_permissions`); tenant policy (key scope,
//! revocation) is checked here. The core trusts inode numbers it is given: the FUSE adapter
//! only passes numbers it has handed out itself.

pub mod access;
mod atime;
mod dirs;
pub mod error;
mod ghosts;
mod setid;
pub mod throttle;
pub mod types;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};

use parking_lot::{Mutex, RwLock};

pub use error::{FsError, FsResult};
pub use types::*;

use crate::audit::AuditLog;
use crate::ids::Scope;
use crate::meta::{Meta, NewInode, Tx};
use crate::objects::{Object, ObjectStore};
use crate::policy::Rights;
use crate::quota;
use crate::time::{Nanos, now_nanos};
use access::Access;
use std::path::PathBuf;

const LIVE: u8 = 0;
const REVOKED: u8 = 1;
const EXPIRED: u8 = 2;

/// Why a core stops serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Revoked,
    Expired,
}

/// The live state of a regular file opened through this core.
struct OpenObject {
    ino: Ino,
    /// Made at the first change, so creating an empty file costs no object.
    data: OnceLock<Box<dyn Object>>,
    st: Mutex<FileState>,
    /// Unlinked while open: delete at last release. Atomic so unlink can set it while
    /// holding `meta` without taking `st` (lock order).
    orphan: AtomicBool,
    /// The file has bits a write by an unprivileged caller must clear (see [`setid`]),
    /// as of the open or this mount's last change of its mode.
    setid: AtomicBool,
    /// Its attributes as last read from the database, for `fstat` and `ftruncate` once
    /// another mount has deleted it. Lock order: after `meta`.
    last: Mutex<Attr>,
}

struct FileState {
    size: u64,
    /// The size the database last recorded, for usage deltas.
    db_size: u64,
    mtime: Nanos,
    ctime: Nanos,
    dirty: bool,
    /// Bytes held against the byte limit for growth past `db_size`.
    reserved: u64,
    /// Another mount deleted the inode after this mount made its object: the object is
    /// this mount's to delete at the last release.
    lost: bool,
}

/// Bytes a file reserves at a time against a byte limit (more when one write needs more).
const RESERVE_CHUNK: u64 = 4 << 20;
/// The most a file reserves at a time.
const RESERVE_CHUNK_MAX: u64 = 64 << 20;

/// What a new inode is.
struct Node<'a> {
    kind: Kind,
    perm: u16,
    rdev: u32,
    target: Option<&'a [u8]>,
}

struct OpenEntry {
    obj: Arc<OpenObject>,
    refs: usize,
}

#[derive(Clone)]
struct Handle {
    obj: Arc<OpenObject>,
    write: bool,
    append: bool,
    /// Opened with `O_NOATIME`.
    noatime: bool,
}

pub struct TenantFs {
    meta: Mutex<Meta>,
    objects: Arc<dyn ObjectStore>,
    /// The mount's root: the tenant root or the key's sub-tree.
    root: Ino,
    read_only: bool,
    access: Access,
    audit: Option<AuditLog>,
    /// The tenant's (max bytes, max inodes), 0 unlimited; re-read with the policy.
    limits: Mutex<(u64, u64)>,
    /// Whether the tenant has directory quotas; re-read with the policy. With any limit on,
    /// growing files reserve space in chunks.
    dir_quotas: AtomicBool,
    /// Activity not yet written to the `metering` table.
    meter: Meter,
    /// This mount's share of the tenant's rate limits.
    throttle: throttle::Throttle,
    /// Whether read-only opens may read objects straight through the kernel: the tenant
    /// allows it and has no byte rate limit (such reads pass no throttle). Re-read with the
    /// rates.
    passthrough: AtomicBool,
    session: String,
    state: AtomicU8,
    open: Mutex<HashMap<Ino, OpenEntry>>,
    handles: RwLock<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    /// Objects deleted whose `gc` rows the next transaction removes.
    reaped: Arc<Mutex<Vec<Ino>>>,
    /// Deletes objects off the request path; the `gc` rows make that crash-safe.
    reaper: Reaper,
    /// Inodes with a `writers` row for this session.
    marked: Mutex<HashSet<Ino>>,
    /// Open directory streams and their snapshots.
    dirs: Mutex<HashMap<u64, dirs::DirStream>>,
    /// Directories with streams open here. Lock order: after `meta`.
    open_dirs: Mutex<HashMap<Ino, dirs::OpenDir>>,
    /// Files this mount removed that are kept a moment for racing opens.
    ghosts: ghosts::Ghosts,
    /// `--noatime`.
    noatime: AtomicBool,
    /// Access times not yet written.
    atimes: atime::Pending,
}

fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(FsError::Invalid);
    }
    Ok(())
}

fn require(attr: Option<Attr>) -> FsResult<Attr> {
    attr.ok_or(FsError::NotFound)
}

/// An inode the kernel named by number. Gone means another mount deleted it since the
/// kernel looked its name up: ESTALE makes the kernel look the name up again.
fn require_ino(attr: Option<Attr>) -> FsResult<Attr> {
    attr.ok_or(FsError::Stale)
}

/// A directory names may be added to: one removed while open here has none and takes none.
fn require_live_dir(tx: &Tx<'_>, ino: Ino) -> FsResult<Attr> {
    let a = require_dir(tx, ino)?;
    if a.nlink == 0 {
        return Err(FsError::NotFound);
    }
    Ok(a)
}

fn require_dir(tx: &Tx<'_>, ino: Ino) -> FsResult<Attr> {
    let a = require_ino(tx.inode(ino)?)?;
    if a.kind != Kind::Dir {
        return Err(FsError::NotDir);
    }
    Ok(a)
}

/// The xattr through which owners and admins read and replace an inode's ACL entries.
pub const ACL_XATTR: &[u8] = b"tenantfs.acl";
/// The xattr that tells the caller its own rights.
pub const EFFECTIVE_XATTR: &[u8] = b"tenantfs.effective";
/// A directory quota's limits, read and written through admin mounts (0 or removal is
/// unlimited), in the manner of CephFS's `ceph.quota.*`.
pub const QUOTA_BYTES_XATTR: &[u8] = b"tenantfs.quota.max_bytes";
pub const QUOTA_INODES_XATTR: &[u8] = b"tenantfs.quota.max_inodes";

/// Which limit of a directory quota an xattr names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QuotaLimit {
    Bytes,
    Inodes,
}

impl QuotaLimit {
    fn of(name: &[u8]) -> Option<QuotaLimit> {
        match name {
            QUOTA_BYTES_XATTR => Some(QuotaLimit::Bytes),
            QUOTA_INODES_XATTR => Some(QuotaLimit::Inodes),
            _ => None,
        }
    }

    fn get(self, q: &crate::meta::DirQuota) -> u64 {
        match self {
            QuotaLimit::Bytes => q.max_bytes,
            QuotaLimit::Inodes => q.max_inodes,
        }
    }

    /// Parses a value: bytes may carry K, M, G or T (powers of 1024); inodes are a count.
    fn parse(self, value: &[u8]) -> FsResult<u64> {
        let text = std::str::from_utf8(value)
            .map_err(|_| FsError::Invalid)?
            .trim_end_matches(['\n', '\0'])
            .trim();
        match self {
            QuotaLimit::Bytes => crate::ids::parse_size(text).map_err(|_| FsError::Invalid),
            QuotaLimit::Inodes => text.parse().map_err(|_| FsError::Invalid),
        }
    }
}

/// What a mount serves and to whom.
pub struct MountSpec {
    /// The tenant root, or the key's sub-tree.
    pub root: Ino,
    /// Who the mount acts as: `user:alice`, `agent:bot`.
    pub subject: String,
    pub scope: Scope,
    /// Where denials are logged; `None` keeps no log.
    pub audit: Option<PathBuf>,
    /// How many inodes' rights to remember.
    pub rights_cache: usize,
}

impl MountSpec {
    /// The whole tenant, as an admin: what tests and tools of the store use.
    pub fn admin() -> MountSpec {
        MountSpec {
            root: ROOT_INO,
            subject: "service:tenantfs".into(),
            scope: Scope::Admin,
            audit: None,
            rights_cache: access::CACHE_ENTRIES,
        }
    }
}

impl TenantFs {
    pub fn new(
        meta: Meta,
        objects: Arc<dyn ObjectStore>,
        spec: MountSpec,
        session: String,
    ) -> FsResult<TenantFs> {
        let reaped = Arc::new(Mutex::new(Vec::new()));
        let reaper = Reaper::start(objects.clone(), reaped.clone());
        let admin = spec.scope == Scope::Admin;
        let access = Access::sized(&spec.subject, admin, &meta.read(), spec.rights_cache)?;
        let limits = Mutex::new(meta.read().limits()?);
        let dir_quotas = AtomicBool::new(meta.read().has_dir_quotas()?);
        Ok(TenantFs {
            meta: Mutex::new(meta),
            objects,
            root: spec.root,
            read_only: spec.scope == Scope::Read,
            access,
            audit: spec.audit.map(AuditLog::new),
            limits,
            dir_quotas,
            meter: Meter::default(),
            throttle: throttle::Throttle::default(),
            passthrough: AtomicBool::new(false),
            session,
            state: AtomicU8::new(LIVE),
            open: Mutex::new(HashMap::new()),
            handles: RwLock::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            reaper,
            reaped,
            marked: Mutex::new(HashSet::new()),
            dirs: Mutex::new(HashMap::new()),
            open_dirs: Mutex::new(HashMap::new()),
            ghosts: Default::default(),
            noatime: AtomicBool::new(false),
            atimes: Default::default(),
        })
    }

    pub fn root(&self) -> Ino {
        self.root
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// From now on every op fails: the key was revoked or expired.
    pub fn stop(&self, why: Stop) {
        let code = match why {
            Stop::Revoked => REVOKED,
            Stop::Expired => EXPIRED,
        };
        self.state.store(code, Ordering::SeqCst);
    }

    fn live(&self) -> FsResult<()> {
        // Every op but release passes here: the one place that counts and paces them.
        self.meter.ops.fetch_add(1, Ordering::Relaxed);
        self.throttle.op();
        match self.state.load(Ordering::Relaxed) {
            LIVE => Ok(()),
            REVOKED => Err(FsError::Revoked),
            _ => Err(FsError::Expired),
        }
    }

    fn writable(&self) -> FsResult<()> {
        self.live()?;
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Refuses with EACCES, and an audit line, unless the subject has `want` on `ino`. `name`
    /// is the entry the op was about, for the audit line.
    fn need(
        &self,
        tx: &Tx<'_>,
        ino: Ino,
        want: Rights,
        op: &'static str,
        name: Option<&[u8]>,
    ) -> FsResult<()> {
        if self.access.rights(tx, ino)?.has(want) {
            return Ok(());
        }
        if tx.inode(ino)?.is_none() {
            // Deleted by another mount: a stale name the kernel should look up again
            // ([`TenantFs::need_now`] lets descriptors open here go on).
            return Err(FsError::Stale);
        }
        Err(self.denied(op, || {
            let mut path = tx.path_of(ino);
            if let Some(n) = name {
                if !path.ends_with('/') {
                    path.push('/');
                }
                path.push_str(&String::from_utf8_lossy(n));
            }
            path
        }))
    }

    /// EACCES for `op`, written to the audit log (when there is one) with the path `path`
    /// names; the path is only worked out for the log.
    fn denied(&self, op: &'static str, path: impl FnOnce() -> String) -> FsError {
        if let Some(log) = &self.audit {
            log.deny(self.access.subject(), op, path(), libc::EACCES);
        }
        FsError::Denied
    }

    /// `need` for ops that do not otherwise touch the database: a cached answer skips it.
    fn need_now(&self, ino: Ino, want: Rights, op: &'static str) -> FsResult<()> {
        if self.access.cached(ino).is_some_and(|r| r.has(want)) {
            return Ok(());
        }
        let decided = self.need(&self.meta.lock().read(), ino, want, op, None);
        match decided {
            // Another mount deleted it while open here: its descriptors keep working, as
            // on a local disk.
            Err(FsError::Stale) if self.open_here(ino) => Ok(()),
            other => other,
        }
    }

    /// Attributes as this subject sees them: live state of open files applied, and mode bits
    /// no wider than the subject's rights, so tools that read modes choose right. Called
    /// without `meta` held.
    fn present(&self, a: Attr) -> FsResult<Attr> {
        let rights = match self.access.cached(a.ino) {
            Some(r) => r,
            None => self.access.rights(&self.meta.lock().read(), a.ino)?,
        };
        let m = rights.mode_bits() as u16;
        let mut a = self.overlay(a);
        a.perm &= 0o7000 | (m << 6) | (m << 3) | m;
        Ok(a)
    }

    /// Applies live state of a file open here to attributes read from the database.
    fn overlay(&self, mut a: Attr) -> Attr {
        if let Some(t) = self.atimes.get(a.ino) {
            a.atime = a.atime.max(t);
        }
        if a.kind != Kind::File {
            return a;
        }
        let obj = self.open.lock().get(&a.ino).map(|e| e.obj.clone());
        if let Some(obj) = obj {
            *obj.last.lock() = a.clone();
            let st = obj.st.lock();
            a.size = self.live_size(&obj, &st);
            // Until this mount's changes are written back they are the newest; after that
            // the database has them, and any other mount's since.
            if st.dirty {
                a.mtime = st.mtime;
                a.ctime = st.ctime;
            }
            if obj.orphan.load(Ordering::Relaxed) {
                a.nlink = 0;
            }
        }
        a
    }

    /// The size of an open file as its content has it now, other mounts' writes included
    /// (so `tail -f` in one mount follows appends made in another), or as this mount knows
    /// it when the content cannot say. Objects are as long as their files: every change of
    /// size changes the object with it.
    fn live_size(&self, obj: &OpenObject, st: &FileState) -> u64 {
        match self.content(obj) {
            Some(d) => d.size().unwrap_or(st.size),
            None => st.size,
        }
    }

    /// The object of an open file, if it has one: another mount may have made it since the
    /// open.
    fn content<'a>(&self, obj: &'a OpenObject) -> Option<&'a dyn Object> {
        if obj.data.get().is_none()
            && let Ok(Some(o)) = self.objects.open(obj.ino, false)
        {
            let _ = obj.data.set(o);
        }
        obj.data.get().map(|d| d.as_ref())
    }

    // ---- names and attributes -------------------------------------------------------------

    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        self.live()?;
        let row = self.meta.lock().read().inode(ino)?;
        match row {
            Some(a) => self.present(a),
            None => self.vanished(ino).ok_or(FsError::Stale),
        }
    }

    /// What `fstat` shows of an inode another mount deleted while it is open here: its last
    /// attributes with no links, as for a file unlinked while open on a local disk. `None`
    /// when it is not open here: then the kernel's name for it is stale.
    fn vanished(&self, ino: Ino) -> Option<Attr> {
        let file = self.open.lock().get(&ino).map(|e| e.obj.clone());
        if let Some(obj) = file {
            let mut a = obj.last.lock().clone();
            let st = obj.st.lock();
            a.size = self.live_size(&obj, &st);
            a.mtime = st.mtime;
            a.ctime = st.ctime;
            a.nlink = 0;
            return Some(a);
        }
        self.vanished_dir(ino)
    }

    /// Whether the inode is open here, as a file or a directory.
    fn open_here(&self, ino: Ino) -> bool {
        self.open.lock().contains_key(&ino) || self.vanished_dir(ino).is_some()
    }

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<Attr> {
        self.live()?;
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let a = {
            let meta = self.meta.lock();
            let tx = meta.read();
            // Before the name is looked at: a subject that may not traverse learns nothing
            // about which names exist.
            self.need(&tx, parent, Rights::X, "lookup", Some(name))?;
            match tx.lookup_attr(parent, name)? {
                Some(a) => a,
                None => {
                    require_dir(&tx, parent)?;
                    return Err(FsError::NotFound);
                }
            }
        };
        self.present(a)
    }

    pub fn setattr(&self, ino: Ino, set: SetAttr) -> FsResult<Attr> {
        self.writable()?;
        self.need_now(ino, Rights::W, "setattr")?;
        let now = now_nanos();
        if let Some(size) = set.size {
            let obj = self.acquire(ino, true)?;
            let res = self.resize(&obj, size, now);
            let released = self.release_object(obj);
            res?;
            released?;
        }
        // The kernel leaves clearing set-ID bits to us (FUSE_HANDLE_KILLPRIV_V2): on chown,
        // on a truncate by an unprivileged caller, and on the empty setattr it sends when
        // chown(-1, -1) or a write's privilege check found bits to clear.
        let chown = set.uid.is_some() || set.gid.is_some();
        let empty = set.mode.is_none()
            && !chown
            && set.size.is_none()
            && set.atime.is_none()
            && set.mtime.is_none()
            && set.ctime.is_none();
        let clear_setid =
            set.mode.is_none() && (chown || empty || (set.size.is_some() && set.drop_setid));
        let only_size = set.mode.is_none()
            && !chown
            && set.atime.is_none()
            && set.mtime.is_none()
            && !clear_setid;
        if only_size {
            return self.getattr(ino);
        }
        let obj = self.open.lock().get(&ino).map(|e| e.obj.clone());
        let mut st = obj.as_ref().map(|o| o.st.lock());
        let a = self.transact(|tx| {
            let mut a = require_ino(tx.inode(ino)?)?;
            if let Some(mode) = set.mode {
                a.perm = (mode & 0o7777) as u16;
            }
            if clear_setid && a.kind != Kind::Dir && setid::has_setid(a.perm) {
                // A chown keeps set-group-ID as before unless the group may execute; a
                // truncate and the kernel's kill request follow the caller's groups.
                let in_group = chown || setid::in_group(&set.caller, a.gid);
                a.perm = setid::dropped(a.perm, in_group);
            }
            if let Some(uid) = set.uid {
                a.uid = uid;
            }
            if let Some(gid) = set.gid {
                a.gid = gid;
            }
            let at = |t: SetTime| match t {
                SetTime::Now => now,
                SetTime::At(n) => n,
            };
            if let Some(t) = set.atime {
                a.atime = at(t);
                // An access time set on purpose replaces any pending here.
                self.atimes.forget(ino);
            }
            if let Some(st) = st.as_ref().filter(|st| st.dirty) {
                a.mtime = st.mtime;
            }
            if let Some(t) = set.mtime {
                a.mtime = at(t);
            }
            a.ctime = set.ctime.unwrap_or(now);
            tx.update_inode(&a)?;
            Ok::<_, FsError>(a)
        })?;
        if let Some(st) = st.as_mut() {
            st.mtime = a.mtime;
            st.ctime = a.ctime;
        }
        drop(st);
        if let Some(obj) = &obj {
            obj.setid.store(setid::has_setid(a.perm), Ordering::Relaxed);
        }
        self.present(a)
    }

    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.live()?;
        let meta = self.meta.lock();
        let tx = meta.read();
        let a = require_ino(tx.inode(ino)?)?;
        if a.kind != Kind::Symlink {
            return Err(FsError::Invalid);
        }
        Ok(tx.symlink_target(ino)?.unwrap_or_default())
    }

    // ---- creating names -------------------------------------------------------------------

    /// Inserts a new inode under `parent/name` in one transaction and returns its attributes.
    fn make_node(
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
    fn removable(tx: &Tx<'_>, as_dir: bool, victim: &Attr) -> FsResult<()> {
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
    fn unname(
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
    fn transact<T>(&self, f: impl FnOnce(&Tx<'_>) -> FsResult<T>) -> FsResult<T> {
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
    fn reap(&self, doomed: Vec<Doomed>) {
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

    fn remove(&self, parent: Ino, name: &[u8], dir: bool) -> FsResult<()> {
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
    fn exchange(
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
    fn refuse_loop(&self, tx: &Tx<'_>, moving: Ino, mut dest: Ino) -> FsResult<()> {
        loop {
            if dest == moving {
                return Err(FsError::Invalid);
            }
            if dest == crate::fs::types::ROOT_INO {
                return Ok(());
            }
            match tx.dir_parent(dest)? {
                Some(p) if p != dest => dest = p,
                _ => return Ok(()),
            }
        }
    }

    // ---- file data ------------------------------------------------------------------------

    /// Takes a reference on the open state of a regular file, opening its object if needed.
    fn acquire(&self, ino: Ino, write: bool) -> FsResult<Arc<OpenObject>> {
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
    fn release_object(&self, obj: Arc<OpenObject>) -> FsResult<()> {
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
        if !deleted {
            self.write_atimes(Some(obj.ino))?;
        }
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
    fn write_back(&self, tx: &Tx<'_>, obj: &OpenObject, st: &mut FileState) -> FsResult<()> {
        if !st.dirty {
            return Ok(());
        }
        if let Some(d) = obj.data.get() {
            st.size = d.size()?;
        }
        let ino = obj.ino;
        let was = tx.inode(ino)?.map(|a| a.size);
        let mut dirs = Vec::new();
        match was {
            // A ghost's size counts no more.
            Some(was) if tx.set_size(ino, st.size, st.mtime, st.ctime)? => {
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
    fn unreserve(&self, tx: &Tx<'_>, ino: Ino, st: &mut FileState) -> FsResult<()> {
        if st.reserved > 0 {
            quota::hold(tx, ino, &self.session, -(st.reserved as i64))?;
            st.reserved = 0;
        }
        Ok(())
    }

    /// Whether any byte limit may apply: the tenant's, or a directory quota anywhere (a file
    /// may move under one).
    fn quotas_on(&self) -> bool {
        self.limits.lock().0 > 0 || self.dir_quotas.load(Ordering::Relaxed)
    }

    /// Makes room under the byte limits for the file to reach `want` bytes, reserving in
    /// chunks so most writes need no transaction. Returns how far it may grow: `want`, or
    /// less when a limit is near. The caller holds `st`.
    fn reserve(&self, ino: Ino, st: &mut FileState, want: u64) -> FsResult<u64> {
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
    fn persist(&self, obj: &OpenObject) -> FsResult<()> {
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
    fn mark(&self, obj: &OpenObject) -> FsResult<()> {
        if !self.marked.lock().contains(&obj.ino) {
            self.transact(|tx| Ok(tx.mark_writer(obj.ino, &self.session)?))?;
            self.marked.lock().insert(obj.ino);
        }
        Ok(())
    }

    /// The object to change, made now if the file has none. The caller holds `st`, so two
    /// writers cannot both make it.
    fn data<'a>(&self, obj: &'a OpenObject) -> FsResult<&'a dyn Object> {
        if obj.data.get().is_none() {
            if self.read_only {
                return Err(FsError::ReadOnly);
            }
            let made = self.objects.open(obj.ino, true)?.ok_or(FsError::Stale)?;
            let _ = obj.data.set(made);
        }
        Ok(obj.data.get().expect("set above").as_ref())
    }

    fn resize(&self, obj: &OpenObject, size: u64, now: Nanos) -> FsResult<()> {
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
        if data.size().ok()? != size {
            return None;
        }
        data.local_fd()?.try_clone_to_owned().ok()
    }

    fn new_handle(&self, obj: Arc<OpenObject>, write: bool, flags: i32) -> u64 {
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

    fn handle(&self, fh: u64) -> FsResult<Handle> {
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
            self.data(obj)?.size()?
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
        let size = self.live_size(&h.obj, &h.obj.st.lock());
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

    /// With a quota over the mount root, df shows the tightest (the one with the least left),
    /// for bytes and inodes apart: its size, and what is left of it (never more than the disk
    /// has). Without one, the disk's free space beside this tenant's usage.
    pub fn statfs(&self) -> FsResult<StatFs> {
        self.live()?;
        let levels = quota::applying(&self.meta.lock().read(), self.root)?;
        let tenant = levels[0];
        let space = self.objects.space()?;
        let bsize = 4096u64;
        let disk_free = space.avail_bytes / bsize;
        let (blocks, free) = match levels
            .iter()
            .filter(|q| q.max_bytes > 0)
            .min_by_key(|q| q.room())
        {
            Some(q) => (q.max_bytes / bsize, (q.room() / bsize).min(disk_free)),
            None => (tenant.bytes.div_ceil(bsize) + disk_free, disk_free),
        };
        let (files, ffree) = match levels
            .iter()
            .filter(|q| q.max_inodes > 0)
            .min_by_key(|q| q.inodes_left())
        {
            Some(q) => (q.max_inodes, q.inodes_left().min(space.avail_files)),
            None => (tenant.inodes + space.avail_files, space.avail_files),
        };
        Ok(StatFs {
            blocks,
            bfree: free,
            bavail: free,
            files,
            ffree,
            bsize: bsize as u32,
        })
    }

    // ---- extended attributes ----------------------------------------------------------------

    /// Only the `user.` namespace is stored; the others belong to the host (security, system,
    /// trusted) and are neither readable nor writable through a tenant mount.
    fn xattr_name(name: &[u8]) -> FsResult<()> {
        if name.len() > NAME_MAX {
            return Err(FsError::Range);
        }
        if name.is_empty() {
            return Err(FsError::Invalid);
        }
        Ok(())
    }

    /// Owner rights (or an admin key) are needed to read or change ACL entries.
    fn need_owner(&self, tx: &Tx<'_>, ino: Ino, op: &'static str) -> FsResult<()> {
        if self.access.rights(tx, ino)?.owner() {
            return Ok(());
        }
        Err(self.denied(op, || format!("{} (tenantfs.acl)", tx.path_of(ino))))
    }

    /// Replaces an inode's ACL entries, for its owner or an admin; takes effect here at once
    /// and in other mounts at their next check.
    fn change_acl(
        &self,
        ino: Ino,
        entries: &[crate::policy::Entry],
        op: &'static str,
    ) -> FsResult<()> {
        self.transact(|tx| {
            require_ino(tx.inode(ino)?)?;
            self.need_owner(tx, ino, op)?;
            crate::admin::replace_entries(tx, ino, entries)?;
            Ok(())
        })?;
        self.refresh_policy()?;
        Ok(())
    }

    /// Picks up ACL and group changes made elsewhere; true if there were any. The daemon
    /// calls this every check interval and then drops the kernel's cached attributes.
    pub fn refresh_policy(&self) -> FsResult<bool> {
        let meta = self.meta.lock();
        let tx = meta.read();
        *self.limits.lock() = tx.limits()?;
        self.dir_quotas
            .store(tx.has_dir_quotas()?, Ordering::Relaxed);
        Ok(self.access.refresh(&tx)?)
    }

    /// Quota xattrs are for admin keys alone; anyone else is refused the same way whether
    /// or not a quota is set, so the refusal tells nothing.
    fn need_admin(&self, tx: &Tx<'_>, ino: Ino, op: &'static str) -> FsResult<()> {
        if self.access.admin() {
            return Ok(());
        }
        Err(self.denied(op, || format!("{} (tenantfs.quota)", tx.path_of(ino))))
    }

    fn quota_xattr(&self, ino: Ino, limit: QuotaLimit) -> FsResult<Vec<u8>> {
        let meta = self.meta.lock();
        let tx = meta.read();
        require_ino(tx.inode(ino)?)?;
        self.need_admin(&tx, ino, "getxattr")?;
        match tx.dir_quota(ino)?.map(|q| limit.get(&q)) {
            Some(v) if v > 0 => Ok(v.to_string().into_bytes()),
            _ => Err(FsError::NoXattr),
        }
    }

    /// Sets (or with `None` removes) one limit of a directory's quota.
    fn set_quota_xattr(
        &self,
        ino: Ino,
        limit: QuotaLimit,
        value: Option<u64>,
        mode: XattrMode,
        op: &'static str,
    ) -> FsResult<()> {
        self.transact(|tx| {
            let a = require_ino(tx.inode(ino)?)?;
            self.need_admin(tx, ino, op)?;
            if a.kind != Kind::Dir {
                return Err(FsError::Invalid);
            }
            let now = tx.dir_quota(ino)?.unwrap_or_default();
            let exists = limit.get(&now) > 0;
            match (mode, value) {
                (XattrMode::Create, _) if exists => return Err(FsError::Exists),
                (XattrMode::Replace, _) | (_, None) if !exists => return Err(FsError::NoXattr),
                _ => {}
            }
            let v = value.unwrap_or(0);
            let (bytes, inodes) = match limit {
                QuotaLimit::Bytes => (v, now.max_inodes),
                QuotaLimit::Inodes => (now.max_bytes, v),
            };
            quota::set(tx, ino, bytes, inodes)?;
            self.dir_quotas
                .store(tx.has_dir_quotas()?, Ordering::Relaxed);
            Ok(())
        })
    }

    fn user_namespace(name: &[u8]) -> bool {
        name.starts_with(b"user.") && name.len() > 5
    }

    /// The namespaces that belong to the host. Reading them answers `EOPNOTSUPP`, not
    /// `ENODATA`: tools such as `ls -l` and `cp -a` then remember the file system has none and
    /// stop asking, where `ENODATA` costs a round trip for every file they touch.
    fn host_namespace(name: &[u8]) -> bool {
        [&b"security."[..], b"system.", b"trusted."]
            .iter()
            .any(|ns| name.starts_with(ns))
    }

    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], mode: XattrMode) -> FsResult<()> {
        self.writable()?;
        Self::xattr_name(name)?;
        if name == ACL_XATTR {
            let text = std::str::from_utf8(value).map_err(|_| FsError::Invalid)?;
            let entries = crate::admin::parse_entries(text).map_err(|_| FsError::Invalid)?;
            return self.change_acl(ino, &entries, "setxattr");
        }
        if let Some(limit) = QuotaLimit::of(name) {
            let v = limit.parse(value)?;
            return self.set_quota_xattr(ino, limit, Some(v), mode, "setxattr");
        }
        if !Self::user_namespace(name) {
            return Err(FsError::NotSupported);
        }
        if value.len() > XATTR_VALUE_MAX {
            return Err(FsError::TooBig);
        }
        self.transact(|tx| {
            require_ino(tx.inode(ino)?)?;
            self.need(tx, ino, Rights::W, "setxattr", None)?;
            let exists = tx.xattr(ino, name)?.is_some();
            match mode {
                XattrMode::Create if exists => return Err(FsError::Exists),
                XattrMode::Replace if !exists => return Err(FsError::NoXattr),
                _ => {}
            }
            tx.set_xattr(ino, name, value)?;
            tx.set_ctime(ino, now_nanos())?;
            Ok(())
        })
    }

    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
        self.live()?;
        Self::xattr_name(name)?;
        if name == EFFECTIVE_XATTR {
            // Anyone may ask what they themselves may do.
            let meta = self.meta.lock();
            let tx = meta.read();
            require_ino(tx.inode(ino)?)?;
            return Ok(self.access.rights(&tx, ino)?.to_string().into_bytes());
        }
        if name == ACL_XATTR {
            let meta = self.meta.lock();
            let tx = meta.read();
            require_ino(tx.inode(ino)?)?;
            self.need_owner(&tx, ino, "getxattr")?;
            return Ok(crate::admin::format_entries(&tx.acl(ino)?).into_bytes());
        }
        if let Some(limit) = QuotaLimit::of(name) {
            return self.quota_xattr(ino, limit);
        }
        if Self::host_namespace(name) {
            return Err(FsError::NotSupported);
        }
        if !Self::user_namespace(name) {
            return Err(FsError::NoXattr);
        }
        let meta = self.meta.lock();
        let tx = meta.read();
        self.need(&tx, ino, Rights::R, "getxattr", None)?;
        match tx.xattr(ino, name)? {
            Some(v) => Ok(v),
            None => {
                require_ino(tx.inode(ino)?)?;
                Err(FsError::NoXattr)
            }
        }
    }

    /// Names, each followed by a NUL, as listxattr(2) returns them.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.live()?;
        let meta = self.meta.lock();
        let tx = meta.read();
        require_ino(tx.inode(ino)?)?;
        self.need(&tx, ino, Rights::R, "listxattr", None)?;
        let mut out = Vec::new();
        for n in tx.xattr_names(ino)? {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        Self::xattr_name(name)?;
        if name == ACL_XATTR {
            return self.change_acl(ino, &[], "removexattr");
        }
        if let Some(limit) = QuotaLimit::of(name) {
            return self.set_quota_xattr(ino, limit, None, XattrMode::Any, "removexattr");
        }
        if !Self::user_namespace(name) {
            return Err(FsError::NotSupported);
        }
        self.transact(|tx| {
            require_ino(tx.inode(ino)?)?;
            self.need(tx, ino, Rights::W, "removexattr", None)?;
            if !tx.remove_xattr(ino, name)? {
                return Err(FsError::NoXattr);
            }
            tx.set_ctime(ino, now_nanos())?;
            Ok(())
        })
    }

    /// Re-reads the tenant's rate limits and takes this mount's share: an equal part for each
    /// of the tenant's `live_mounts`.
    pub fn refresh_rates(&self, live_mounts: usize) -> FsResult<()> {
        let ((ops, bytes), passthrough) = {
            let meta = self.meta.lock();
            let tx = meta.read();
            (tx.rates()?, tx.passthrough_reads()?)
        };
        let n = live_mounts.max(1) as u64;
        let share = |r: u64| if r == 0 { 0 } else { (r / n).max(1) };
        self.throttle.set(share(ops), share(bytes));
        self.passthrough
            .store(passthrough && bytes == 0, Ordering::Relaxed);
        Ok(())
    }

    /// Moves counted activity into the current hour's `metering` row. The daemon calls this
    /// every few seconds and at unmount; a crash loses at most what came since the last call.
    pub fn flush_meter(&self) -> FsResult<()> {
        let ops = self.meter.ops.swap(0, Ordering::Relaxed);
        let read = self.meter.bytes_read.swap(0, Ordering::Relaxed);
        let written = self.meter.bytes_written.swap(0, Ordering::Relaxed);
        if ops == 0 && read == 0 && written == 0 {
            return Ok(());
        }
        let hour = crate::time::now_secs() / 3600 * 3600;
        let res = self.transact(|tx| Ok(tx.add_metering(hour, ops, read, written)?));
        if res.is_err() {
            // Keep the counts for the next try rather than lose them.
            self.meter.ops.fetch_add(ops, Ordering::Relaxed);
            self.meter.bytes_read.fetch_add(read, Ordering::Relaxed);
            self.meter
                .bytes_written
                .fetch_add(written, Ordering::Relaxed);
        }
        res
    }

    /// Writes back every open file; called when the mount ends.
    pub fn shutdown(&self) {
        if let Err(e) = self.flush_meter() {
            tracing::warn!(error = %e, "metering flush at unmount failed");
        }
        self.settle();
        let handles: Vec<u64> = self.handles.read().keys().copied().collect();
        for fh in handles {
            if let Err(e) = self.release(fh) {
                tracing::warn!(fh, error = %e, "write-back at unmount failed");
            }
        }
        if let Err(e) = self.purge_ghosts(true) {
            tracing::warn!(error = %e, "deleting removed files at unmount failed; the next mount will");
        }
        self.settle();
        if let Err(e) = self.flush_atimes() {
            tracing::warn!(error = %e, "writing access times at unmount failed");
        }
        let forget = |tx: &Tx<'_>| {
            quota::release_session(tx, &self.session)?;
            Ok(tx.forget_session(&self.session)?)
        };
        if let Err(e) = self.transact(forget) {
            tracing::warn!(error = %e, "clearing this session's markers failed; the next mount will");
        }
        if let Err(e) = self.meta.lock().sync() {
            tracing::warn!(error = %e, "metadata sync at unmount failed");
        }
    }
}

#[cfg(test)]
mod tests;

/// Something about to move to another directory, as the quotas see it: a directory moves its
/// whole subtree, anything else only itself.
enum Moving {
    Dir(quota::DirMove),
    Other(quota::Before),
}

impl Moving {
    fn before(tx: &Tx<'_>, a: &Attr, new_parent: Ino) -> rusqlite::Result<Moving> {
        Ok(if a.kind == Kind::Dir {
            Moving::Dir(quota::before_dir_move(tx, a.ino, new_parent)?)
        } else {
            Moving::Other(quota::before(tx, a.ino)?)
        })
    }

    /// Settles the move; returns the quotas that gained.
    fn settle(self, tx: &Tx<'_>) -> rusqlite::Result<Vec<Ino>> {
        match self {
            Moving::Dir(m) => quota::settle_dir_move(tx, m),
            Moving::Other(b) => quota::settle(tx, b),
        }
    }
}

/// Moves one name of a file with several links from `from` to `to` in `links`.
fn move_link(tx: &Tx<'_>, a: &Attr, from: Ino, to: Ino) -> rusqlite::Result<()> {
    if a.kind != Kind::Dir && a.nlink > 1 {
        tx.add_link(a.ino, from, -1)?;
        tx.add_link(a.ino, to, 1)?;
    }
    Ok(())
}

/// Deletes an object and queues its `gc` row for the next transaction; on failure the row
/// stays, so the next mount retries.
fn delete_object(objects: &dyn ObjectStore, reaped: &Mutex<Vec<Ino>>, ino: Ino) {
    match objects.remove(ino) {
        Ok(()) => reaped.lock().push(ino),
        Err(e) => tracing::warn!(ino, error = %e, "object delete failed; the next mount retries"),
    }
}

/// An inode whose object is to be deleted once its transaction commits.
struct Doomed {
    ino: Ino,
    size: u64,
    /// Kept as a ghost for a moment rather than deleted now.
    ghost: bool,
}

/// Objects up to this size are deleted inline rather than by the reaper thread.
const INLINE_REAP: u64 = 256 << 10;

/// A thread that deletes objects of removed inodes, so unlink does not wait for the disk.
struct Reaper {
    queue: Mutex<mpsc::Sender<Ino>>,
    pending: Arc<AtomicUsize>,
}

impl Reaper {
    fn start(objects: Arc<dyn ObjectStore>, reaped: Arc<Mutex<Vec<Ino>>>) -> Reaper {
        let (queue, inbox) = mpsc::channel::<Ino>();
        let pending = Arc::new(AtomicUsize::new(0));
        let left = pending.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || {
                for ino in inbox {
                    delete_object(objects.as_ref(), &reaped, ino);
                    left.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .expect("the reaper thread starts");
        Reaper {
            queue: Mutex::new(queue),
            pending,
        }
    }

    fn send(&self, ino: Ino) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.queue.lock().send(ino).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn settle(&self) {
        while self.pending.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Counters of metered activity, moved to the database by [`TenantFs::flush_meter`].
#[derive(Default)]
struct Meter {
    ops: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}
