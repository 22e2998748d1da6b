//! The thin FUSE adapter: each callback calls one core method and turns `Ok` into a reply and
//! `Err` into an errno. This is the only module that knows fuser's types.
//!
//! Invariants:
//! - FUSE inode 1 is the mount's root (the tenant root or the key's sub-tree); the two numbers
//!   swap, so no number outside the sub-tree is ever shown;
//! - an op on an inode number this mount never handed out (or the kernel has forgotten) gets
//!   ESTALE before it reaches the core, so guessing numbers reaches nothing;
//! - failures are logged once, here: routine errnos at debug, the rest at error.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, Notifier, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::{Condvar, Mutex};

use crate::fs::{
    ACL_XATTR, Attr, Ctx, FsError, Ino, Kind, ROOT_INO, RenameFlags, SetAttr, SetTime, TenantFs,
    XattrMode,
};
use crate::iomode::{Busy, Io, IoModes};
use crate::time::{from_nanos, to_nanos};

/// How long the kernel may trust attributes and names (and that a name is absent) without
/// asking again.
const TTL: Duration = Duration::from_secs(1);

/// Each open starts from a fresh page cache, so every byte a tenant reads reaches the daemon
/// and is metered: `FOPEN_KEEP_CACHE` would serve re-reads (and reads of data just written)
/// from the kernel, unbilled. The size the core reports for an open file is its content's
/// (other mounts' writes included), and a change of size drops the kernel's cached pages, so
/// a follower sees a file grow. (`FUSE_AUTO_INVAL_DATA` stays off: it would also drop them at
/// each change of mtime, this mount's own writes included.)
const OPEN_FLAGS: FopenFlags = FopenFlags::empty();

/// A directory's listing stays in the kernel between opens: `ls`, `find` and build tools
/// list the same directories again and again. The opendir still reaches the daemon, so the
/// rights check and the access time happen on every open. The kernel drops the cached
/// listing when this mount changes the directory, and when the directory's mtime moves in
/// attributes it fetches again (after `TTL`, as for names), which is how another mount's
/// changes show.
const DIR_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE.union(FopenFlags::FOPEN_CACHE_DIR);

/// A read-only handle has nothing to write back when it is closed, so the kernel is told not
/// to send FLUSH for it: `cat`, `grep` and `git status` save a round trip on every file.
/// An `O_APPEND` handle bypasses the page cache: the daemon puts each append at the
/// content's true end, which another mount may have moved, and the kernel would otherwise
/// cache the data at the end it believed.
fn open_flags(flags: i32) -> FopenFlags {
    let mut f = OPEN_FLAGS;
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        f |= FopenFlags::FOPEN_NOFLUSH;
    }
    if flags & libc::O_APPEND != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    f
}

/// How long a write open waits for passthrough readers' releases before `ETXTBSY`.
const RELEASE_WAIT: Duration = Duration::from_millis(100);

/// State shared by the session's threads and the mount's watcher.
pub struct Shared {
    pub core: TenantFs,
    /// Lookup counts the kernel holds, by core inode number.
    known: Mutex<HashMap<Ino, u64>>,
    pub notifier: OnceLock<Notifier>,
}

impl Shared {
    pub fn new(core: TenantFs) -> Arc<Shared> {
        Arc::new(Shared {
            core,
            known: Mutex::new(HashMap::new()),
            notifier: OnceLock::new(),
        })
    }

    /// Core inode number ↔ FUSE inode number: the mount root and the tenant root swap.
    fn swap(&self, n: u64) -> u64 {
        let root = self.core.root();
        if n == ROOT_INO {
            root
        } else if n == root {
            ROOT_INO
        } else {
            n
        }
    }

    fn to_fuse(&self, ino: Ino) -> INodeNo {
        INodeNo(self.swap(ino))
    }

    fn remember(&self, ino: Ino) {
        *self.known.lock().entry(ino).or_insert(0) += 1;
    }

    /// Drops the kernel's cached attributes of inodes whose access time the core moved, once
    /// the reply that moved them is out.
    fn atimes_moved(&self) {
        let moved = self.core.atimes_moved();
        if let Some(notifier) = self.notifier.get() {
            for ino in moved {
                let _ = notifier.inval_inode(self.to_fuse(ino), -1, 0);
            }
        }
    }

    /// Drops the kernel's cached pages, attributes and names of every inode it holds, so
    /// that nothing is served from cache once the core refuses.
    pub fn invalidate_all(&self) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        let inodes: Vec<Ino> = self.known.lock().keys().copied().collect();
        for ino in inodes.into_iter().chain([self.core.root()]) {
            let _ = notifier.inval_inode(self.to_fuse(ino), 0, 0);
        }
    }
}

pub struct FuseFs {
    shared: Arc<Shared>,
    /// Whether the kernel agreed to passthrough at init.
    passthrough: bool,
    /// How each open handle does its I/O, with the backing files registered for
    /// passthrough.
    io: Mutex<IoModes<BackingId>>,
    /// Signalled at each release, for opens waiting on [`Busy`].
    released: Condvar,
}

impl FuseFs {
    pub fn new(shared: Arc<Shared>) -> FuseFs {
        FuseFs {
            shared,
            passthrough: false,
            io: Mutex::new(IoModes::default()),
            released: Condvar::new(),
        }
    }

    /// Replies to an open with the I/O mode [`IoModes`] chooses for the handle. A write
    /// open of a file open for passthrough waits a moment before it is refused: the kernel
    /// sends a release after `close` returns, so a writer opening right after a reader
    /// closed may arrive while another thread still handles that release.
    fn opened(&self, ino: Ino, fh: u64, flags: i32, reply: ReplyOpen) {
        let read_only = flags & libc::O_ACCMODE == libc::O_RDONLY;
        let give_up = Instant::now() + RELEASE_WAIT;
        let mut io = self.io.lock();
        loop {
            let register = || {
                if !self.passthrough {
                    return None;
                }
                let file = self.core().passthrough_file(fh)?;
                reply
                    .open_backing(&file)
                    .map_err(|e| tracing::debug!(ino, error = %e, "passthrough refused; reading through the daemon"))
                    .ok()
            };
            match io.open(ino, fh, read_only, register) {
                Ok((Io::Passthrough, Some(id))) => {
                    return reply.opened_passthrough(FileHandle(fh), open_flags(flags), id);
                }
                Ok(_) => return reply.opened(FileHandle(fh), open_flags(flags)),
                Err(Busy) if Instant::now() < give_up => {
                    self.released.wait_until(&mut io, give_up);
                }
                Err(Busy) => break,
            }
        }
        drop(io);
        let _ = self.core().release(fh);
        reply.error(Errno::ETXTBSY)
    }

    fn core(&self) -> &TenantFs {
        &self.shared.core
    }

    /// The core inode behind a FUSE inode number, if the kernel may know it.
    fn ino(&self, n: INodeNo) -> Result<Ino, Errno> {
        let ino = self.shared.swap(n.0);
        if ino == self.core().root() || self.shared.known.lock().contains_key(&ino) {
            Ok(ino)
        } else {
            Err(Errno::ESTALE)
        }
    }

    fn attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: self.shared.to_fuse(a.ino),
            size: a.size,
            blocks: a.st_blocks(),
            atime: from_nanos(a.atime),
            mtime: from_nanos(a.mtime),
            ctime: from_nanos(a.ctime),
            crtime: from_nanos(a.crtime),
            kind: file_type(a.kind),
            perm: a.perm,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            rdev: a.rdev,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Replies with a new entry and counts the kernel's reference to it.
    fn entry(&self, reply: ReplyEntry, a: &Attr) {
        self.shared.remember(a.ino);
        reply.entry(&TTL, &self.attr(a), Generation(0));
    }
}

/// The attributes of a negative entry: inode 0 tells the kernel the name does not exist.
fn absent() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: std::time::UNIX_EPOCH,
        mtime: std::time::UNIX_EPOCH,
        ctime: std::time::UNIX_EPOCH,
        crtime: std::time::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

fn ctx(req: &Request) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(kernel_time(t)),
    }
}

/// A time the kernel sent. fuser 0.18 builds pre-epoch times as `EPOCH - (secs, nsec)`,
/// which subtracts the nanoseconds where the kernel meant to add them; undo that here.
fn kernel_time(t: SystemTime) -> i64 {
    match std::time::UNIX_EPOCH.duration_since(t) {
        Ok(before) if before.subsec_nanos() != 0 => {
            -(before.as_secs() as i64).saturating_mul(1_000_000_000)
                + i64::from(before.subsec_nanos())
        }
        _ => to_nanos(t),
    }
}

/// Logs a failed op once and turns it into its errno.
fn fail(op: &str, e: FsError) -> Errno {
    if e.is_routine() {
        tracing::debug!(op, error = %e, "op refused");
    } else {
        tracing::error!(op, error = %e, "op failed");
    }
    Errno::from_i32(e.errno())
}

/// Runs a core call; a panic in it (a bug) fails this request with EIO instead of ending
/// the thread that serves the mount. The panic hook has logged it.
fn guard<T>(f: impl FnOnce() -> Result<T, FsError>) -> Result<T, FsError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(Err(FsError::Panicked))
}

/// Runs a core call and replies; `$ok` turns the value into the reply.
macro_rules! answer {
    ($op:literal, $reply:ident, $call:expr, |$v:pat_param| $ok:expr) => {
        match guard(|| $call) {
            Ok($v) => $ok,
            Err(e) => $reply.error(fail($op, e)),
        }
    };
}

/// Resolves a FUSE inode number or replies ESTALE and returns.
macro_rules! ino {
    ($self:ident, $n:expr, $reply:ident) => {
        match $self.ino($n) {
            Ok(i) => i,
            Err(e) => return $reply.error(e),
        }
    };
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            // File handles of inodes the kernel has forgotten open: it looks up "." in
            // them (see `lookup`).
            | InitFlags::FUSE_EXPORT_SUPPORT
            // O_APPEND handles use direct I/O; this keeps them mmap-able.
            | InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP
            // We clear set-ID bits ourselves, so the kernel marks files S_NOSEC and stops
            // asking for security.capability before every write (a round trip each).
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2;
        let _ = config.add_capabilities(wanted & config.capabilities());
        let _ = config.set_max_background(64);
        // Passthrough needs the kernel's consent and, to register backing files,
        // CAP_SYS_ADMIN; without either every open goes through the daemon.
        if config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH)
            && config.set_max_stack_depth(1).is_ok()
        {
            self.passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok();
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.core().shutdown();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // The kernel never sends these for a path; it sends them to find an inode behind a
        // file handle (or its parent) by number, which it may have forgotten, so the number
        // is checked by the core rather than against what this mount handed out.
        let by_number = match name.as_bytes() {
            b"." => Some(false),
            b".." => Some(true),
            _ => None,
        };
        if let Some(parent_of) = by_number {
            let ino = self.shared.swap(parent.0);
            let core = self.core();
            return answer!(
                "lookup",
                reply,
                if parent_of {
                    core.parent_by_handle(ino)
                } else {
                    core.by_handle(ino)
                },
                |a| self.entry(reply, &a)
            );
        }
        let parent = ino!(self, parent, reply);
        match guard(|| self.core().lookup(parent, name.as_bytes())) {
            Ok(a) => self.entry(reply, &a),
            // A negative entry: the kernel remembers the name is absent for `TTL`, so probes
            // for missing files (git, compilers, shells searching PATH) stay in the kernel.
            Err(FsError::NotFound) => reply.entry(&TTL, &absent(), Generation(0)),
            Err(e) => reply.error(fail("lookup", e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let ino = self.shared.swap(ino.0);
        let mut known = self.shared.known.lock();
        if let Some(n) = known.get_mut(&ino) {
            *n = n.saturating_sub(nlookup);
            if *n == 0 {
                known.remove(&ino);
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let ino = ino!(self, ino, reply);
        answer!("getattr", reply, self.core().getattr(ino), |a| reply
            .attr(&TTL, &self.attr(&a)))
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ino = ino!(self, ino, reply);
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ctime: ctime.map(kernel_time),
            // FUSE does not pass FATTR_KILL_SUIDGID through fuser; root stands for the
            // callers that hold CAP_FSETID.
            drop_setid: req.uid() != 0,
            caller: ctx(req),
        };
        answer!("setattr", reply, self.core().setattr(ino, set), |a| reply
            .attr(&TTL, &self.attr(&a)))
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let ino = ino!(self, ino, reply);
        answer!("readlink", reply, self.core().readlink(ino), |t| reply
            .data(&t))
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let parent = ino!(self, parent, reply);
        let r = self
            .core()
            .mknod(&ctx(req), parent, name.as_bytes(), mode, umask, rdev);
        answer!("mknod", reply, r, |a| self.entry(reply, &a))
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let parent = ino!(self, parent, reply);
        let r = self
            .core()
            .mkdir(&ctx(req), parent, name.as_bytes(), mode, umask);
        answer!("mkdir", reply, r, |a| self.entry(reply, &a))
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let parent = ino!(self, parent, reply);
        answer!(
            "unlink",
            reply,
            self.core().unlink(parent, name.as_bytes()),
            |()| reply.ok()
        )
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let parent = ino!(self, parent, reply);
        answer!(
            "rmdir",
            reply,
            self.core().rmdir(parent, name.as_bytes()),
            |()| reply.ok()
        )
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let parent = ino!(self, parent, reply);
        let r = self.core().symlink(
            &ctx(req),
            parent,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
        );
        answer!("symlink", reply, r, |a| self.entry(reply, &a))
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let parent = ino!(self, parent, reply);
        let newparent = ino!(self, newparent, reply);
        if flags.contains(fuser::RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let flags = RenameFlags {
            noreplace: flags.contains(fuser::RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(fuser::RenameFlags::RENAME_EXCHANGE),
        };
        let r = self.core().rename(
            parent,
            name.as_bytes(),
            newparent,
            newname.as_bytes(),
            flags,
        );
        answer!("rename", reply, r, |()| reply.ok())
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let ino = ino!(self, ino, reply);
        let newparent = ino!(self, newparent, reply);
        answer!(
            "link",
            reply,
            self.core().link(ino, newparent, newname.as_bytes()),
            |a| self.entry(reply, &a)
        )
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let ino = ino!(self, ino, reply);
        answer!("open", reply, self.core().open(ino, flags.0), |fh| self
            .opened(ino, fh, flags.0, reply));
        self.shared.atimes_moved();
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        answer!("read", reply, self.core().read(fh.0, offset, size), |d| {
            reply.data(&d)
        })
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)
            && let Err(e) = self.core().clear_setid_for_write(fh.0, &ctx(req))
        {
            return reply.error(fail("write", e));
        }
        answer!("write", reply, self.core().write(fh.0, offset, data), |n| {
            reply.written(n)
        })
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        answer!("flush", reply, self.core().flush(fh.0), |()| reply.ok())
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The I/O mode first, at once: a write open may be waiting on it, and the core's
        // release can wait on the database (a write-back, a checkpoint).
        self.io.lock().release(fh.0);
        self.released.notify_all();
        answer!("release", reply, self.core().release(fh.0), |()| reply.ok())
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        answer!("fsync", reply, self.core().fsync(fh.0, datasync), |()| {
            reply.ok()
        })
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let ino = ino!(self, ino, reply);
        answer!("opendir", reply, self.core().opendir(ino), |fh| reply
            .opened(FileHandle(fh), DIR_FLAGS))
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let ino = ino!(self, ino, reply);
        match guard(|| self.core().readdir(fh.0, ino, offset, 256, false)) {
            Ok(entries) => {
                for e in entries {
                    let name = OsStr::from_bytes(&e.name);
                    if reply.add(
                        self.shared.to_fuse(e.ino),
                        e.cookie,
                        file_type(e.kind),
                        name,
                    ) {
                        break;
                    }
                }
                reply.ok();
                self.shared.atimes_moved();
            }
            Err(e) => reply.error(fail("readdir", e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ino = ino!(self, ino, reply);
        let entries = match guard(|| self.core().readdir(fh.0, ino, offset, 64, true)) {
            Ok(entries) => entries,
            Err(e) => return reply.error(fail("readdirplus", e)),
        };
        let mut dir_attr = None;
        for e in entries {
            let name = OsStr::from_bytes(&e.name);
            let is_dot = e.name == b"." || e.name == b"..";
            let attr = match e.attr {
                Some(a) => a,
                // The kernel takes no reference on "." and ".."; their attributes go unused.
                None => match dir_attr.get_or_insert_with(|| self.core().getattr(ino)) {
                    Ok(a) => a.clone(),
                    Err(_) => break,
                },
            };
            let mut fattr = self.attr(&attr);
            fattr.ino = self.shared.to_fuse(e.ino);
            if reply.add(fattr.ino, e.cookie, name, &TTL, &fattr, Generation(0)) {
                break;
            }
            if !is_dot {
                self.shared.remember(e.ino);
            }
        }
        reply.ok();
        self.shared.atimes_moved();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        answer!("releasedir", reply, self.core().releasedir(fh.0), |()| {
            reply.ok()
        })
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        answer!("fsyncdir", reply, self.core().fsyncdir(), |()| reply.ok())
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        answer!("statfs", reply, self.core().statfs(), |s| reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, 255, s.bsize
        ))
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let ino = ino!(self, ino, reply);
        let mode = match flags {
            0 => XattrMode::Any,
            libc::XATTR_CREATE => XattrMode::Create,
            libc::XATTR_REPLACE => XattrMode::Replace,
            _ => return reply.error(Errno::EINVAL),
        };
        answer!(
            "setxattr",
            reply,
            self.core().setxattr(ino, name.as_bytes(), value, mode),
            |()| {
                if name.as_bytes() == ACL_XATTR {
                    self.shared.invalidate_all();
                }
                reply.ok()
            }
        )
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let ino = ino!(self, ino, reply);
        answer!(
            "getxattr",
            reply,
            self.core().getxattr(ino, name.as_bytes()),
            |v| xattr_reply(reply, &v, size)
        )
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let ino = ino!(self, ino, reply);
        answer!("listxattr", reply, self.core().listxattr(ino), |v| {
            xattr_reply(reply, &v, size)
        })
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let ino = ino!(self, ino, reply);
        answer!(
            "removexattr",
            reply,
            self.core().removexattr(ino, name.as_bytes()),
            |()| {
                if name.as_bytes() == ACL_XATTR {
                    self.shared.invalidate_all();
                }
                reply.ok()
            }
        )
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let parent = ino!(self, parent, reply);
        let r = self
            .core()
            .create(&ctx(req), parent, name.as_bytes(), mode, umask, flags);
        answer!("create", reply, r, |(a, fh)| {
            self.shared.remember(a.ino);
            // A new file: nobody else has it open, and it counts as a cached handle.
            let _ = self.io.lock().open(a.ino, fh, false, || None);
            reply.created(
                &TTL,
                &self.attr(&a),
                Generation(0),
                FileHandle(fh),
                open_flags(flags),
            )
        })
    }

    /// No ioctls: `ENOTTY`, as for a regular file on a local disk. Python asks `isatty`
    /// (TCGETS) at every `open`, so this must cost nothing and log nothing.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// Regular files are always ready; `ENOSYS` tells the kernel so once for the mount.
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// The kernel copies through read and write after this `ENOSYS` (it remembers it).
    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn bmap(&self, _req: &Request, _ino: INodeNo, _bs: u32, _idx: u64, reply: fuser::ReplyBmap) {
        reply.error(Errno::ENOSYS);
    }

    /// Only `SEEK_DATA` and `SEEK_HOLE` reach the daemon; the kernel answers the rest.
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(Errno::ENXIO);
        };
        if whence != libc::SEEK_DATA && whence != libc::SEEK_HOLE {
            return reply.error(Errno::EINVAL);
        }
        answer!(
            "lseek",
            reply,
            self.core().seek_data_hole(fh.0, offset, whence),
            |at| reply.offset(at as i64)
        )
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        answer!(
            "fallocate",
            reply,
            self.core().fallocate(fh.0, offset, length, mode),
            |()| reply.ok()
        )
    }
}

/// getxattr/listxattr protocol: size 0 asks for the length; too small a buffer is ERANGE.
fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
