//! Shared harness for integration tests: a store in a temp dir, the real `tenantfs` binary,
//! and mounts that unmount themselves when dropped.
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tenantfs");

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    /// The store's database when the suite runs on PostgreSQL.
    pub db: Option<PgDb>,
}

/// Which metadata engine the suite runs on: `TENANTFS_TEST_META=postgres` puts every test's
/// store in a database of its own on the server `TENANTFS_TEST_PG` names (a superuser URL;
/// scripts/test.sh starts a throwaway cluster and sets both).
pub fn on_postgres() -> bool {
    match std::env::var("TENANTFS_TEST_META").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("TENANTFS_TEST_META={other}: use sqlite or postgres"),
    }
}

/// A database made for one test, dropped (with any session left on it) at the end.
pub struct PgDb {
    pub name: String,
    /// The URL of the test's database.
    pub url: String,
    server: String,
}

impl PgDb {
    pub fn new() -> PgDb {
        let server = std::env::var("TENANTFS_TEST_PG").expect(
            "TENANTFS_TEST_PG names the PostgreSQL server to test on (scripts/test.sh sets it)",
        );
        let mut raw = [0u8; 6];
        getrandom::fill(&mut raw).unwrap();
        let name = format!("tfs_{}", hex::encode(raw));
        PgDb::admin(&server)
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let base = server.rsplit_once('/').unwrap().0;
        let url = format!("{base}/{name}");
        PgDb { name, url, server }
    }

    /// A superuser session on the server.
    pub fn admin(server: &str) -> postgres::Client {
        postgres::Client::connect(server, postgres::NoTls).unwrap()
    }

    /// A superuser session on the test's database.
    pub fn client(&self) -> postgres::Client {
        PgDb::admin(&self.url)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl Env {
    /// A fresh, initialised store.
    pub fn new() -> Env {
        Env::with_store(None)
    }

    /// A fresh store initialised at `store` (by default, in the test's temp dir).
    pub fn with_store(store: Option<PathBuf>) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("tfs-test-")
            .tempdir()
            .unwrap();
        let store = store.unwrap_or_else(|| dir.path().join("store"));
        let db = on_postgres().then(PgDb::new);
        let env = Env { dir, store, db };
        match &env.db {
            Some(db) => env.ok(&["init", "--meta", &db.url]),
            None => env.ok(&["init"]),
        };
        env
    }

    /// Runs SQL statements (no parameters) on a tenant's metadata, whichever engine holds
    /// it: for tests that damage or age a store on purpose.
    pub fn tenant_sql(&self, tenant: &str, sql: &str) {
        match &self.db {
            None => {
                let path = self.store.join("tenants").join(tenant).join("meta.db");
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            Some(db) => {
                let mut c = db.client();
                let n: i64 = c
                    .query_one(
                        "SELECT number FROM tenantfs.tenants WHERE id = $1",
                        &[&tenant],
                    )
                    .unwrap()
                    .get(0);
                c.batch_execute(&format!("SET search_path TO t{n}; {sql}"))
                    .unwrap();
            }
        }
    }

    /// Whether this store's metadata is in PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.db.is_some()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("TENANTFS_STORE", &self.store)
            .env("TENANTFS_RUNTIME_DIR", self.dir.path().join("run"))
            .env_remove("TENANTFS_KEY")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tenantfs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "tenantfs {args:?} should have failed"
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn tenant(&self, id: &str) {
        self.ok(&["tenant", "create", id]);
    }

    /// Creates a key and writes it to a file; returns (key file, key id).
    pub fn key(&self, tenant: &str, subject: &str, extra: &[&str]) -> (PathBuf, String) {
        let mut args = vec!["key", "create", "--tenant", tenant, "--subject", subject];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        let id = stderr.split_whitespace().nth(2).unwrap().to_string();
        let path = self.dir.path().join(format!("{id}.key"));
        std::fs::write(&path, key).unwrap();
        (path, id)
    }

    pub fn mountpoint(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Mounts with a key file and returns the live mount.
    pub fn mount(&self, name: &str, key: &Path, extra: &[&str]) -> Mount {
        let mp = self.mountpoint(name);
        let mut args = vec![
            "mount",
            mp.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        let pid = stderr
            .rsplit("daemon pid ")
            .next()
            .and_then(|s| s.trim().parse().ok())
            .expect("mount reports the daemon pid");
        Mount {
            path: mp,
            pid,
            store: self.store.clone(),
            run: self.dir.path().join("run"),
        }
    }

    /// `tenantfs mount MP --foreground --key-file KEY`, to spawn.
    pub fn foreground(&self, mp: &Path, key: &Path) -> Command {
        self.cmd(&[
            "mount",
            mp.to_str().unwrap(),
            "--foreground",
            "--key-file",
            key.to_str().unwrap(),
        ])
    }

    /// Checks a tenant's store and fails the test, with fsck's report, unless it is clean.
    pub fn fsck_clean(&self, tenant: &str) {
        let fsck = self.run(&["fsck", "--tenant", tenant]);
        // The daemons' own account of what they did, for a failure seen only on a busy CI.
        let log = std::fs::read_to_string(self.store.join("logs").join(format!("{tenant}.log")))
            .unwrap_or_default();
        assert!(
            fsck.status.success(),
            "{}\ndaemon log:\n{log}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }

    /// Mounts an existing tenant `acme` again with a fresh write key.
    pub fn mounted_tenant_again(&self, name: &str) -> Mount {
        let (key, _) = self.key("acme", "user:alice", &[]);
        self.mount(name, &key, &[])
    }

    /// A tenant with a write key for user:alice, mounted at `name`.
    pub fn mounted_tenant(&self, tenant: &str, name: &str) -> Mount {
        self.tenant(tenant);
        let (key, _) = self.key(tenant, "user:alice", &[]);
        self.mount(name, &key, &[])
    }
}

pub struct Mount {
    pub path: PathBuf,
    pub pid: i32,
    store: PathBuf,
    run: PathBuf,
}

impl Mount {
    pub fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    pub fn umount(&self) -> Output {
        Command::new(BIN)
            .args(["umount", self.path.to_str().unwrap()])
            .env("TENANTFS_STORE", &self.store)
            .env("TENANTFS_RUNTIME_DIR", &self.run)
            .output()
            .unwrap()
    }

    pub fn is_mounted(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let want = self.path.to_str().unwrap();
        info.lines().any(|l| l.split(' ').nth(4) == Some(want))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.is_mounted() && !self.umount().status.success() {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Whether something is mounted at `mp` (a path under the test's temp dir).
pub fn mounted(mp: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(mp.to_str().unwrap())
}

/// Polls `f` until it holds or `limit` passes; returns the time it took.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The exit status of a foreground daemon, which must exit within 10 s.
pub fn exit_of(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.expect("the daemon exited within 10 s")
}

/// Runs a shell command in `dir`, asserting success; returns stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn errno_of(e: std::io::Error) -> i32 {
    e.raw_os_error().expect("an OS error")
}

// ---- raw xattr calls, so tests see the kernel's errnos ------------------------------------

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

pub fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> std::io::Result<()> {
    let (p, n) = (cpath(p), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn getxattr(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let (p, n) = (cpath(p), CString::new(name).unwrap());
    let mut buf = vec![0u8; 70000];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(rc as usize);
    Ok(buf)
}

pub fn listxattr(p: &Path) -> Vec<String> {
    let p = cpath(p);
    let mut buf = vec![0u8; 4096];
    // SAFETY: a valid NUL-terminated path and a buffer of the given length.
    let rc = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(rc >= 0, "{}", std::io::Error::last_os_error());
    buf.truncate(rc as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub fn removexattr(p: &Path, name: &str) -> std::io::Result<()> {
    let (p, n) = (cpath(p), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings.
    let rc = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Four threads, two writing into each of `dirs` (two mounts' views of one directory), make
/// files of 8 × 33,333 bytes until each is refused with `EDQUOT`. Checks that what is on
/// disk never passes `limit`, holds every acknowledged byte, and nearly fills the limit;
/// returns the bytes on disk.
pub fn fill_from_four_writers(dirs: [&Path; 2], limit: u64) -> u64 {
    const CHUNK: usize = 33_333;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let dir = dirs[w % 2].to_path_buf();
            std::thread::spawn(move || {
                let mut written = 0u64;
                for n in 0.. {
                    let Ok(mut f) = std::fs::File::create(dir.join(format!("w{w}-{n}"))) else {
                        break;
                    };
                    for _ in 0..8 {
                        match std::io::Write::write(&mut f, &[7u8; CHUNK]) {
                            Ok(k) => written += k as u64,
                            Err(e) => {
                                assert_eq!(e.raw_os_error(), Some(libc::EDQUOT));
                                return written;
                            }
                        }
                    }
                }
                written
            })
        })
        .collect();
    let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let on_disk: u64 = std::fs::read_dir(dirs[0])
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    eprintln!(
        "limit {limit}, acknowledged {written}, on disk {on_disk}, overshoot {}",
        on_disk.saturating_sub(limit)
    );
    assert!(on_disk <= limit, "overshoot: {on_disk} > {limit}");
    assert_eq!(on_disk, written, "every acknowledged byte is there");
    assert!(
        on_disk > limit - 2 * CHUNK as u64 * 4,
        "the limit was nearly used up: {on_disk}"
    );
    on_disk
}

/// Runs `sh -c script` as the `nobody` user and group; returns whether it succeeded and its
/// stderr.
pub fn as_nobody(script: &str) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
