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
mod data;
mod dirs;
pub mod error;
#[cfg(debug_assertions)]
mod faults;
mod ghosts;
mod handles;
mod names;
pub mod room;
mod setid;
pub mod throttle;
mod xattrs;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};

use parking_lot::{Mutex, RwLock};

pub use crate::types::*;
pub use error::{FsError, FsResult};

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
    /// Room on the store's disk above the reserve no tenant may take.
    room: room::Room,
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
        let access = Access::sized(&spec.subject, admin, &*meta.read(), spec.rights_cache)?;
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
            room: Default::default(),
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

    /// Takes room on the store's disk for `want` more bytes: `NoSpace` at the reserve.
    fn grow(&self, want: u64) -> FsResult<()> {
        self.room.take(want, || Ok(self.objects.space()?))
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
        let decided = self.need(&*self.meta.lock().read(), ino, want, op, None);
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
            None => self.access.rights(&*self.meta.lock().read(), a.ino)?,
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
            let e = self.live_extent(&obj, &st);
            (a.size, a.blocks) = (e.len, e.blocks);
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

    /// The size and blocks of an open file as its content has them now, other mounts' writes included
    /// (so `tail -f` in one mount follows appends made in another), or as this mount knows
    /// it when the content cannot say. Objects are as long as their files: every change of
    /// size changes the object with it.
    fn live_extent(&self, obj: &OpenObject, st: &FileState) -> Extent {
        let known = Extent {
            len: st.size,
            blocks: 0,
        };
        match self.content(obj) {
            Some(d) => d.extent().unwrap_or(known),
            None => known,
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
            let e = self.live_extent(&obj, &st);
            (a.size, a.blocks) = (e.len, e.blocks);
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
        #[cfg(debug_assertions)]
        faults::at_lookup(name);
        self.live()?;
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let a = {
            let meta = self.meta.lock();
            let tx = meta.read();
            // Before the name is looked at: a subject that may not traverse learns nothing
            // about which names exist.
            self.need(&*tx, parent, Rights::X, "lookup", Some(name))?;
            match tx.lookup_attr(parent, name)? {
                Some(a) => a,
                None => {
                    require_dir(&*tx, parent)?;
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

    /// With a quota over the mount root, df shows the tightest (the one with the least left),
    /// for bytes and inodes apart: its size, and what is left of it (never more than the disk
    /// has). Without one, the disk's free space beside this tenant's usage.
    pub fn statfs(&self) -> FsResult<StatFs> {
        self.live()?;
        let levels = quota::applying(&*self.meta.lock().read(), self.root)?;
        let tenant = levels[0];
        let space = self.objects.space()?;
        // Free is what the tenant may still take: the disk's room above the reserve.
        let (disk_room, files_room) = room::Reserve::of(&space).room(&space);
        let bsize = 4096u64;
        let disk_free = disk_room / bsize;
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
            Some(q) => (q.max_inodes, q.inodes_left().min(files_room)),
            None => (tenant.inodes + files_room, files_room),
        };
        Ok(StatFs {
            // df leaves out file systems of no size: an empty tenant on a full disk is one
            // block, all used, not absent.
            blocks: blocks.max(1),
            bfree: free,
            bavail: free,
            files,
            ffree,
            bsize: bsize as u32,
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
        tracing::info!(session = %self.session, "mount ended; its state is written back");
    }
}

#[cfg(test)]
mod tests;

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
