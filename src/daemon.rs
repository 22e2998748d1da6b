//! Mounting and unmounting: one daemon process per mount.
//!
//! `tenantfs mount` authenticates the key, checks the mountpoint, and then either serves in
//! the foreground or forks a daemon and waits on a pipe until the daemon reports the mount
//! live (the FUSE handshake is done) or says why it failed.
//!
//! Invariants:
//! - the key never reaches argv, the environment of the daemon, or a log;
//! - a live mount re-checks its key every [`RECHECK`]; once the key is revoked or expired,
//!   every op fails, the kernel's caches of the mount are dropped, the mount is detached,
//!   and the daemon exits, which aborts the FUSE connection under any file still open.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, SessionACL};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{ForkResult, Pid};

use crate::catalog::{Catalog, KeyStatus, Principal};
use crate::error::{Context, Error, Result};
use crate::fs::{MountSpec, Stop, TenantFs};
use crate::fuse::{FuseFs, Shared};
use crate::ids::Scope;
use crate::store::{Session, Store};
use crate::time::now_secs;

/// How often a live mount re-reads its key's standing.
const RECHECK: Duration = Duration::from_millis(400);
/// Metering is written every this many checks (2 s).
const METER_TICKS: u64 = 5;

pub struct MountRequest {
    pub mountpoint: PathBuf,
    pub key: String,
    pub foreground: bool,
    pub allow_other: bool,
    /// Reads never move access times.
    pub noatime: bool,
    pub threads: usize,
    pub caches: Caches,
    /// A background daemon's log is moved aside at this size.
    pub log_max: u64,
}

/// Sizes of a mount's caches, so memory can be traded for speed.
#[derive(Clone, Copy, Debug)]
pub struct Caches {
    /// Inodes whose rights are remembered.
    pub rights: usize,
    /// SQLite's page cache, in bytes.
    pub db_cache: u64,
    /// How much of the database file is memory-mapped, in bytes; 0 maps nothing.
    pub db_map: u64,
}

/// Mounts and returns once the mount is live (or, in the foreground, once it ends).
pub fn mount(store: &Store, req: MountRequest) -> Result<()> {
    let principal = store.catalog()?.authenticate(&req.key)?;
    let mountpoint = check_mountpoint(&req.mountpoint)?;
    // Fail early, in the caller's terminal, if the key's root is gone.
    Store::resolve_root(&store.open_meta(&principal.tenant)?, &principal.root)?;
    if req.foreground {
        return serve(store, &principal, &mountpoint, &req, None);
    }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io_err("cannot create a pipe", e))?;
    // SAFETY: the process is single-threaded here (no runtime, no threads spawned yet), so
    // the child may run arbitrary code; it reopens every database it uses.
    match unsafe { nix::unistd::fork() }.map_err(|e| io_err("cannot fork the mount daemon", e))? {
        ForkResult::Parent { child } => {
            drop(wr);
            let mut msg = String::new();
            File::from(rd)
                .read_to_string(&mut msg)
                .context(|| "cannot read from the mount daemon".into())?;
            match msg.strip_prefix("ok") {
                Some(_) => {
                    crate::say!(
                        "mounted tenant {} at {} as {} ({} key, root {}), daemon pid {}",
                        principal.tenant,
                        mountpoint.display(),
                        principal.subject,
                        principal.scope.as_str(),
                        principal.root,
                        child
                    );
                    Ok(())
                }
                None if msg.is_empty() => Err(Error::Usage(format!(
                    "the mount daemon exited before the mount was live; see {}",
                    log_path(store, &principal).display()
                ))),
                None => Err(Error::Usage(
                    msg.trim_start_matches("err ").trim().to_string(),
                )),
            }
        }
        ForkResult::Child => {
            drop(rd);
            let code = match daemonize(store, &principal, req.log_max)
                .and_then(|()| serve(store, &principal, &mountpoint, &req, Some(wr)))
            {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "mount daemon failed");
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

fn io_err(what: &str, e: nix::Error) -> Error {
    Error::Io {
        what: what.to_string(),
        source: e.into(),
    }
}

fn log_path(store: &Store, p: &Principal) -> PathBuf {
    store.logs_dir().join(format!("{}.log", p.tenant))
}

/// Detaches from the terminal: a new session, stdin from /dev/null, output to the log.
fn daemonize(store: &Store, p: &Principal, log_max: u64) -> Result<()> {
    nix::unistd::setsid().map_err(|e| io_err("setsid", e))?;
    let path = log_path(store, p);
    let log =
        crate::logging::open_log(&path).context(|| format!("cannot open {}", path.display()))?;
    let null = File::open("/dev/null").context(|| "cannot open /dev/null".into())?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (log.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 on fds this process owns; the targets are the standard streams.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(Error::Io {
                what: "dup2".into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    crate::logging::log_file(&path, log_max);
    Ok(())
}

fn report(ready: &mut Option<OwnedFd>, msg: &str) {
    if let Some(fd) = ready.take() {
        let _ = File::from(fd).write_all(msg.as_bytes());
    }
}

fn serve(
    store: &Store,
    principal: &Principal,
    mountpoint: &Path,
    req: &MountRequest,
    mut ready: Option<OwnedFd>,
) -> Result<()> {
    let res = serve_inner(store, principal, mountpoint, req, &mut ready);
    if let Err(e) = &res {
        report(&mut ready, &format!("err {e}\n"));
    }
    res
}

fn serve_inner(
    store: &Store,
    principal: &Principal,
    mountpoint: &Path,
    req: &MountRequest,
    ready: &mut Option<OwnedFd>,
) -> Result<()> {
    // Threads spawned from here on inherit the mask; one thread waits for these signals.
    let signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]);
    signals
        .thread_block()
        .map_err(|e| io_err("cannot block signals", e))?;

    let mut meta =
        store.open_meta_sized(&principal.tenant, req.caches.db_cache, req.caches.db_map)?;
    let root = Store::resolve_root(&meta, &principal.root)?;
    let session = Session::start(store, &principal.tenant, &mut meta)?;
    let read_only = principal.scope == Scope::Read;
    let spec = MountSpec {
        root,
        subject: principal.subject.clone(),
        scope: principal.scope,
        audit: Some(store.audit_log(&principal.tenant)),
        rights_cache: req.caches.rights,
    };
    let core = TenantFs::new(
        meta,
        Arc::new(store.objects(&principal.tenant)),
        spec,
        session.id.clone(),
    )
    .map_err(|e| Error::Usage(format!("cannot serve the tenant: {e}")))?;
    core.set_noatime(req.noatime);
    let shared = Shared::new(core);

    let mut options = vec![
        MountOption::FSName(format!("tenantfs:{}", principal.tenant)),
        MountOption::Subtype("tenantfs".into()),
        MountOption::DefaultPermissions,
        // Tenants never get device nodes or setuid binaries that act on the host.
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if read_only {
        options.push(MountOption::RO);
    }
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = if req.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(req.threads.max(1));
    config.clone_fd = true;

    let fuse = fuser::Session::new(FuseFs::new(shared.clone()), mountpoint, &config)
        .context(|| format!("cannot mount at {}", mountpoint.display()))?;
    let _ = shared.notifier.set(fuse.notifier());
    let pidfile = PidFile::create(mountpoint)?;

    let _ = shared
        .core
        .refresh_rates(crate::store::live_sessions(store, &principal.tenant).len());
    let watch = Watch {
        store: store.path().to_path_buf(),
        sessions: store.tenant_dir(&principal.tenant).join("sessions"),
        key_id: principal.key_id.clone(),
        expires_at: principal.expires_at,
        shared: shared.clone(),
        mountpoint: mountpoint.to_path_buf(),
    };
    std::thread::Builder::new()
        .name("key-watch".into())
        .spawn(move || watch.run())
        .context(|| "cannot start the key watcher".into())?;
    let on_signal = (shared.clone(), mountpoint.to_path_buf());
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_signal(signals, on_signal.0, on_signal.1))
        .context(|| "cannot start the signal handler".into())?;

    tracing::info!(
        tenant = %principal.tenant, subject = %principal.subject, key = %principal.key_id,
        mountpoint = %mountpoint.display(), "mount live"
    );
    report(ready, "ok\n");
    let res = fuse.run();
    drop(pidfile);
    drop(session);
    res.context(|| "the FUSE session ended with an error".into())
}

fn wait_for_signal(signals: SigSet, shared: Arc<Shared>, mountpoint: PathBuf) {
    let Ok(sig) = signals.wait() else { return };
    tracing::info!(signal = ?sig, "unmounting");
    if unmount(&mountpoint, false).is_err() {
        // Files are still open: detach, write back, and go.
        let _ = unmount(&mountpoint, true);
        shared.core.shutdown();
        PidFile::remove(&mountpoint);
        std::process::exit(0);
    }
}

struct Watch {
    store: PathBuf,
    /// The tenant's sessions folder, to count its live mounts.
    sessions: PathBuf,
    key_id: String,
    expires_at: Option<i64>,
    shared: Arc<Shared>,
    mountpoint: PathBuf,
}

impl Watch {
    fn run(self) {
        let mut catalog = None;
        for tick in 1u64.. {
            std::thread::sleep(RECHECK);
            // A panic here (a bug) must not silently end the key checks of a live mount.
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.tick(tick, &mut catalog)
            }));
            match checked {
                Ok(Some(why)) => self.stop(why),
                Ok(None) => {}
                Err(_) => catalog = None,
            }
        }
    }

    fn tick(&self, tick: u64, catalog: &mut Option<Catalog>) -> Option<Stop> {
        if let Err(e) = self.shared.core.purge_ghosts(false) {
            tracing::warn!(error = %e, "cannot delete removed files yet; will retry");
        }
        if tick.is_multiple_of(METER_TICKS) {
            if let Err(e) = self.shared.core.flush_atimes() {
                tracing::warn!(error = %e, "cannot record access times; keeping them");
            }
            if let Err(e) = self.shared.core.flush_meter() {
                tracing::warn!(error = %e, "cannot record metering; keeping the counts");
            }
            let mounts = crate::store::live_sessions_in(&self.sessions).len();
            if let Err(e) = self.shared.core.refresh_rates(mounts) {
                tracing::warn!(error = %e, "cannot re-read rate limits");
            }
        }
        self.check(catalog)
    }

    /// One catalog connection for the life of the mount; reopened only after an error.
    fn check(&self, catalog: &mut Option<Catalog>) -> Option<Stop> {
        if self.expires_at.is_some_and(|e| e <= now_secs()) {
            return Some(Stop::Expired);
        }
        if catalog.is_none() {
            *catalog = Store::open(&self.store).and_then(|s| s.catalog()).ok();
        }
        let status = match catalog.as_ref() {
            Some(c) => c.key_status(&self.key_id),
            None => Err(Error::Usage("the catalog cannot be opened".into())),
        };
        if status.is_err() {
            *catalog = None;
        }
        match status {
            Ok(KeyStatus::Live) => {
                // ACL or group changes from the CLI or another mount: forget cached rights
                // here, and the kernel's cached attributes (their mode bits show rights).
                match self.shared.core.refresh_policy() {
                    Ok(true) => self.shared.invalidate_all(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot re-read the tenant's policy"),
                }
                None
            }
            Ok(KeyStatus::Revoked) => Some(Stop::Revoked),
            Ok(KeyStatus::Expired) => Some(Stop::Expired),
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-check the key; keeping the mount");
                None
            }
        }
    }

    /// Refuses everything, drops cached data, detaches and exits; exiting closes the FUSE
    /// device, which aborts the connection under any descriptor still open.
    fn stop(&self, why: Stop) -> ! {
        tracing::warn!(reason = ?why, key = %self.key_id, "key no longer valid: ending the mount");
        self.shared.core.stop(why);
        self.shared.invalidate_all();
        self.shared.core.shutdown();
        let _ = unmount(&self.mountpoint, true);
        PidFile::remove(&self.mountpoint);
        std::process::exit(0);
    }
}

// ---- mountpoints ------------------------------------------------------------------------

/// The absolute path of a mountpoint without touching the mount itself (which may be dead).
fn absolute(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{} is not a usable mountpoint", path.display())))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = parent
        .canonicalize()
        .context(|| format!("cannot resolve {}", parent.display()))?;
    Ok(parent.join(name))
}

fn check_mountpoint(path: &Path) -> Result<PathBuf> {
    let abs = absolute(path).map_err(|_| {
        Error::Usage(format!(
            "mountpoint {} does not exist: create it with `mkdir -p`",
            path.display()
        ))
    })?;
    if let Some(m) = mounted_at(&abs) {
        return Err(Error::Usage(format!(
            "{} is already mounted ({} {}): unmount it first (`tenantfs umount {}`), or pick another directory",
            abs.display(),
            m.fstype,
            m.source,
            abs.display()
        )));
    }
    match fs::metadata(&abs) {
        Ok(m) if m.is_dir() => Ok(abs.canonicalize().unwrap_or(abs)),
        Ok(_) => Err(Error::Usage(format!(
            "mountpoint {} is not a directory",
            abs.display()
        ))),
        Err(_) => Err(Error::Usage(format!(
            "mountpoint {} does not exist: create it with `mkdir -p`",
            abs.display()
        ))),
    }
}

/// What is mounted exactly at `path`, from /proc/self/mountinfo.
pub struct MountInfo {
    pub fstype: String,
    pub source: String,
}

impl MountInfo {
    /// tenantfs mounts name their source `tenantfs:<tenant>`.
    pub fn is_tenantfs(&self) -> bool {
        self.fstype.starts_with("fuse") && self.source.starts_with("tenantfs:")
    }
}

pub fn mounted_at(path: &Path) -> Option<MountInfo> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        if unescape(fields.get(4)?) != want {
            return None;
        }
        Some(MountInfo {
            fstype: fields.get(sep + 1)?.to_string(),
            source: unescape(fields.get(sep + 2)?),
        })
    })
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unmount(path: &Path, lazy: bool) -> std::io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        let flags = if lazy {
            nix::mount::MntFlags::MNT_DETACH
        } else {
            nix::mount::MntFlags::empty()
        };
        return nix::mount::umount2(path, flags).map_err(Into::into);
    }
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u").arg(path);
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else if String::from_utf8_lossy(&out.stderr).contains("busy") {
        Err(std::io::Error::from_raw_os_error(libc::EBUSY))
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Unmounts a tenantfs mount and waits for its daemon to exit. A lazy unmount detaches at
/// once and does not wait: the daemon exits when the last open file there closes.
pub fn umount(path: &Path, lazy: bool) -> Result<()> {
    let abs = absolute(path)?;
    match mounted_at(&abs) {
        Some(m) if m.is_tenantfs() => {}
        Some(m) => {
            return Err(Error::Usage(format!(
                "{} is a {} mount of {}, not a tenantfs mount",
                abs.display(),
                m.fstype,
                m.source
            )));
        }
        None => return Err(Error::Usage(format!("{} is not mounted", abs.display()))),
    }
    let pid = PidFile::read(&abs);
    // The kernel sends a file's release after close() returns and holds the mount busy
    // until the daemon answers, so a file closed just before may still be in flight: a
    // busy mount gets a moment before it counts as in use.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut result = unmount(&abs, lazy);
    while matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EBUSY))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
        result = unmount(&abs, lazy);
    }
    result.map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => Error::Usage(format!(
            "{} is busy: a process has files or its working directory there; close them (`fuser -vm {}` lists them) and retry, or detach it now with `tenantfs umount --lazy`",
            abs.display(),
            abs.display()
        )),
        _ => Error::Io { what: format!("cannot unmount {}", abs.display()), source: e },
    })?;
    if lazy {
        return Ok(());
    }
    if let Some(pid) = pid {
        let deadline = Instant::now() + Duration::from_secs(15);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if process_alive(pid) {
            return Err(Error::Usage(format!(
                "unmounted, but daemon pid {pid} has not exited yet"
            )));
        }
    }
    PidFile::remove(&abs);
    Ok(())
}

/// Alive and not a zombie (a daemon whose parent is gone may wait to be reaped).
fn process_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

// ---- pid files --------------------------------------------------------------------------

/// Where running mounts record their daemon's pid, keyed by mountpoint.
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TENANTFS_RUNTIME_DIR") {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/tenantfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("tenantfs"),
        None => std::env::temp_dir().join(format!("tenantfs-{}", nix::unistd::geteuid())),
    }
}

struct PidFile(PathBuf);

impl PidFile {
    fn path(mountpoint: &Path) -> PathBuf {
        let digest = crate::keys::hash(&mountpoint.to_string_lossy());
        runtime_dir().join(format!("{}.pid", hex::encode(&digest[..8])))
    }

    fn create(mountpoint: &Path) -> Result<PidFile> {
        let path = Self::path(mountpoint);
        crate::private::create_dir(&runtime_dir())
            .context(|| format!("cannot create {}", runtime_dir().display()))?;
        fs::write(
            &path,
            format!("{}\n{}\n", std::process::id(), mountpoint.display()),
        )
        .context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile(path))
    }

    fn read(mountpoint: &Path) -> Option<i32> {
        fs::read_to_string(Self::path(mountpoint))
            .ok()?
            .lines()
            .next()?
            .parse()
            .ok()
    }

    fn remove(mountpoint: &Path) {
        let _ = fs::remove_file(Self::path(mountpoint));
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/x\134y"), r"/x\y");
    }
}
