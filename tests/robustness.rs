//! Nothing a tenant does, and no failure of the host around it, may end a mount or flood
//! the host: logs that cannot be written, requests that log, full disks.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::process::Stdio;
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
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let status = status.expect("the daemon exited after the unmount");
    assert!(status.success(), "exit status {status:?}");
}
