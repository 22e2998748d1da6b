//! Nothing a tenant does, and no failure of the host around it, may end a mount or flood
//! the host: logs that cannot be written, requests that log, full disks.

mod common;

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Env, wait_until};

fn log_len(env: &Env, tenant: &str) -> u64 {
    fs::metadata(env.store.join("logs").join(format!("{tenant}.log"))).map_or(0, |m| m.len())
}

#[test]
fn a_hundred_thousand_isatty_calls_get_enotty_and_leave_the_log_small() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::write(m.p("f"), b"x").unwrap();
    let before = log_len(&env, "acme");
    let f = fs::File::open(m.p("f")).unwrap();
    for _ in 0..100_000 {
        // SAFETY: isatty only reads its integer argument.
        assert_eq!(unsafe { libc::isatty(f.as_raw_fd()) }, 0);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOTTY)
        );
    }
    drop(f);
    let growth = log_len(&env, "acme") - before;
    eprintln!("log grew by {growth} bytes over 100,000 isatty calls");
    assert!(growth < 4096, "the log grew by {growth} bytes");
}

#[test]
fn a_debug_log_of_one_repeated_failure_is_capped_per_cause() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &["--scope", "read"]);
    let mp = env.mountpoint("m");
    let out = env
        .cmd(&[
            "mount",
            mp.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ])
        .env("TENANTFS_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = log_len(&env, "acme");
    // Every create is refused (a read key) and logged at debug as a refused op.
    for i in 0..5_000 {
        assert!(fs::write(mp.join(format!("f{i}")), b"x").is_err());
    }
    let growth = log_len(&env, "acme") - before;
    let text = fs::read_to_string(env.store.join("logs/acme.log")).unwrap();
    eprintln!("log grew by {growth} bytes over 5,000 refused creates");
    assert!(growth < 20_000, "the log grew by {growth} bytes");
    assert!(!text.is_empty());
    env.ok(&["umount", mp.to_str().unwrap()]);
}

#[test]
fn a_daemon_whose_log_is_dev_full_keeps_serving() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let mp = env.mountpoint("full");
    let full = fs::File::options().write(true).open("/dev/full").unwrap();
    let mut child = env
        .foreground(&mp, &key)
        .env("TENANTFS_LOG", "debug")
        .stderr(Stdio::from(full))
        .spawn()
        .unwrap();
    let mounted = || common::mounted(&mp);
    assert!(
        wait_until(Duration::from_secs(10), mounted).is_some(),
        "the mount came up; exit status so far: {:?}",
        child.try_wait()
    );
    // Lots of logging: every op at debug, refused ops, missing names.
    for i in 0..300 {
        fs::write(mp.join(format!("f{i}")), b"still here").unwrap();
        assert!(fs::metadata(mp.join(format!("missing{i}"))).is_err());
        assert!(fs::remove_dir(mp.join(format!("f{i}"))).is_err());
    }
    assert_eq!(fs::read(mp.join("f299")).unwrap(), b"still here");
    assert_eq!(fs::read_dir(&mp).unwrap().count(), 300);
    assert!(child.try_wait().unwrap().is_none(), "the daemon is alive");
    env.ok(&["umount", mp.to_str().unwrap()]);
    let status = common::exit_of(&mut child);
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_panic_in_one_request_fails_it_with_eio_and_the_mount_serves_on() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let mp = env.mountpoint("p");
    let log = env.dir.path().join("foreground.log");
    // Debug builds panic on a lookup of this name: a stand-in for a bug in any request.
    let mut child = env
        .foreground(&mp, &key)
        .env("TENANTFS_FAULT_PANIC_ON_LOOKUP", "boom")
        .stderr(Stdio::from(fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || common::mounted(&mp)).is_some());
    for i in 0..100 {
        let e = fs::metadata(mp.join("boom")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        fs::write(mp.join(format!("f{i}")), b"after").unwrap();
    }
    assert_eq!(fs::read(mp.join("f99")).unwrap(), b"after");
    assert_eq!(fs::read_dir(&mp).unwrap().count(), 100);
    assert!(child.try_wait().unwrap().is_none(), "the daemon is alive");
    env.ok(&["umount", mp.to_str().unwrap()]);
    assert!(common::exit_of(&mut child).success());
    // Said, and within the per-cause budget, not once per panic.
    let text = fs::read_to_string(&log).unwrap();
    let said = text.matches("fault injected: lookup of boom").count();
    assert!((1..=20).contains(&said), "{said} panic lines:\n{text}");
}

#[test]
fn a_daemon_log_moves_aside_at_its_cap() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let cap = 4096;
    let log = env.store.join("logs/acme.log");
    let old = env.store.join("logs/acme.log.1");
    // Each mount logs a few lines; forty of them write several caps' worth.
    for i in 0..40 {
        let m = env.mount(&format!("m{i}"), &key, &["--log-max-size", "4K"]);
        fs::write(m.p(&format!("f{i}")), b"x").unwrap();
        let pid = m.pid;
        drop(m);
        // Its last lines are written before the next daemon measures the file.
        let gone = || !Path::new(&format!("/proc/{pid}")).exists();
        assert!(wait_until(Duration::from_secs(10), gone).is_some());
        let now = fs::metadata(&log).map_or(0, |m| m.len());
        assert!(now < cap + 1024, "the log is {now} bytes, past its cap");
    }
    let kept = fs::metadata(&old).unwrap().len();
    assert!(kept < cap + 1024, "the old log is {kept} bytes");
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("/m39"),
        "the newest mount logs to the new file:\n{text}"
    );
    // A cap too small for a line or two is refused, saying how small the cap may be.
    let mp = env.mountpoint("tiny");
    let key = key.to_str().unwrap();
    let err = env.fails(&[
        "mount",
        mp.to_str().unwrap(),
        "--key-file",
        key,
        "--log-max-size",
        "100",
    ]);
    assert!(err.contains("at least 4K"), "{err}");
}

/// A small ext4 disk in a loop-mounted image file, unmounted when dropped.
struct LoopDisk {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl LoopDisk {
    fn new(mib: u64) -> LoopDisk {
        let dir = tempfile::Builder::new()
            .prefix("tfs-disk-")
            .tempdir()
            .unwrap();
        let image = dir.path().join("image");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // No root-reserved blocks: the store's own reserve is what is under test.
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt));
        LoopDisk { _dir: dir, mnt }
    }

    fn avail(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.mnt).unwrap();
        s.blocks_available() as u64 * s.fragment_size() as u64
    }

    /// Fills the disk from the host until `leave` bytes are left (about); returns the file.
    fn fill(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.mnt.join(name);
        let f = fs::File::create(&path).unwrap();
        // Extent blocks come out of the free count too, so to the last block goes in two
        // steps: all but a margin in one allocation, then the rest block by block.
        let take = self.avail().saturating_sub(leave.max(1 << 20));
        nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, take as i64).unwrap();
        if leave == 0 {
            let block = [1u8; 4096];
            let mut at = take;
            while f.write_all_at(&block, at).is_ok() && f.sync_data().is_ok() {
                at += block.len() as u64;
            }
        }
        path
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn blocks(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks()
}

fn allocate(f: &fs::File, len: u64) -> Result<(), i32> {
    nix::fcntl::fallocate(f, nix::fcntl::FallocateFlags::empty(), 0, len as i64)
        .map_err(|e| e as i32)
}

#[test]
fn a_tenant_that_fills_the_store_disk_leaves_the_others_working() {
    let disk = LoopDisk::new(64);
    let env = Env::with_store(Some(disk.mnt.join("store")));
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant("beta", "b");
    fs::write(b.p("keep"), b"beta's").unwrap();

    // An allocation far past the disk's room is refused whole, taking nothing.
    let f = fs::File::create(a.p("huge")).unwrap();
    assert_eq!(allocate(&f, 200 << 20), Err(libc::ENOSPC));
    assert_eq!((blocks(&a.p("huge")), f.metadata().unwrap().len()), (0, 0));
    // One that the disk fails halfway (the host took the room after the mount measured it)
    // gives back what it got.
    fs::write(a.p("measured"), b"x").unwrap();
    let filler = disk.fill("host-filler", 1 << 20);
    assert_eq!(allocate(&f, 4 << 20), Err(libc::ENOSPC));
    assert_eq!((blocks(&a.p("huge")), f.metadata().unwrap().len()), (0, 0));
    drop(f);
    fs::remove_file(&filler).unwrap();

    // Writes stop at the reserve with ENOSPC: big ones first, then small ones into what the
    // big ones left, until less room is left than a page.
    let mut w = fs::File::create(a.p("fill")).unwrap();
    for size in [1 << 20, 4096] {
        let chunk = vec![7u8; size];
        let err = loop {
            if let Err(e) = w.write_all(&chunk) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    }
    drop(w);
    let left = disk.avail();
    eprintln!("the disk had {left} bytes free when acme's writes stopped");
    assert!(
        left >= 2 << 20,
        "tenant writes took the reserve: {left} bytes left"
    );
    // New names too; a name that exists is still EEXIST, so mkdir -p goes on working.
    for r in [fs::write(a.p("new"), b""), fs::create_dir(a.p("dir"))] {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    }
    let exists = fs::create_dir(&a.path).unwrap_err();
    assert_eq!(exists.raw_os_error(), Some(libc::EEXIST));

    // The other tenant lists, reads, shows in df, and mounts afresh; the CLI answers.
    assert_eq!(fs::read(b.p("keep")).unwrap(), b"beta's");
    assert_eq!(fs::read_dir(&b.path).unwrap().count(), 1);
    // Named mounts only: a bare `df` also stats other tests' mounts, and fails on any whose
    // daemon a test has just killed.
    let df = common::sh(
        env.dir.path(),
        &format!("df -k {} {}", a.path.display(), b.path.display()),
    );
    assert!(df.contains(b.path.to_str().unwrap()), "{df}");
    let (key, _) = env.key("beta", "agent:late", &[]);
    let b2 = env.mount("b2", &key, &[]);
    assert_eq!(fs::read(b2.p("keep")).unwrap(), b"beta's");
    assert!(env.ok(&["tenant", "list", "--json"]).contains("beta"));
    // Both delete.
    fs::remove_file(a.p("fill")).unwrap();
    fs::remove_file(b.p("keep")).unwrap();

    // The host itself fills the disk to the last block: deletes succeed or say ENOSPC, never
    // EIO, and nothing is lost once the host frees room.
    // A removed file's room comes back once its ghost is gone (see SEMANTICS.md).
    let freed = wait_until(Duration::from_secs(10), || {
        fs::write(a.p("one"), b"1").is_ok()
    });
    assert!(freed.is_some(), "deleting acme's fill gave no room back");
    fs::write(a.p("two"), b"2").unwrap();
    let filler = disk.fill("host-filler", 0);
    for (name, r) in [
        ("rm", fs::remove_file(a.p("one"))),
        ("touch", fs::write(a.p("three"), b"")),
    ] {
        eprintln!("{name} on a full disk: {r:?}");
        if let Err(e) = r {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{name}: {e}");
        }
    }
    fs::remove_file(&filler).unwrap();
    assert_eq!(fs::read(a.p("two")).unwrap(), b"2");
    drop((a, b, b2));
    env.fsck_clean("acme");
    env.fsck_clean("beta");
}
