//! The mount daemon: foreground mode and signals, other local users, and concurrent writers.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::{Env, as_nobody, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn foreground_mount_ends_cleanly_on(signal: Signal) {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let mp = env.mountpoint("fg");
    let mut child = env
        .foreground(&mp, &key)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mounted = || common::mounted(&mp);
    assert!(
        wait_until(Duration::from_secs(10), mounted).is_some(),
        "the foreground mount came up"
    );
    fs::write(mp.join("f"), b"written in the foreground").unwrap();
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = common::exit_of(&mut child);
    assert!(status.success(), "{signal:?} exit: {status:?}");
    assert!(!mounted(), "unmounted on {signal:?}");
    let m = env.mount("fg", &key, &[]);
    assert_eq!(fs::read(m.p("f")).unwrap(), b"written in the foreground");
}

#[test]
fn foreground_mount_unmounts_on_sigterm() {
    foreground_mount_ends_cleanly_on(Signal::SIGTERM);
}

#[test]
fn foreground_mount_unmounts_on_sigint() {
    foreground_mount_ends_cleanly_on(Signal::SIGINT);
}

#[test]
fn allow_other_lets_other_users_in_under_mode_bits() {
    let env = Env::new();
    // The test tree must be reachable by `nobody` on the host side as well.
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let private = env.mount("private", &key, &[]);
    fs::write(private.p("open"), b"readable").unwrap();
    let (ok, err) = as_nobody(&format!("cat {}", private.p("open").display()));
    assert!(!ok, "without --allow-other another user gets in");
    assert!(err.contains("Permission denied"), "{err}");
    drop(private);

    let shared = env.mount("shared", &key, &["--allow-other"]);
    let (ok, err) = as_nobody(&format!("cat {}", shared.p("open").display()));
    assert!(ok, "{err}");
    // The kernel still checks mode bits for that user (default_permissions).
    fs::write(shared.p("secret"), b"root only").unwrap();
    fs::set_permissions(shared.p("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, err) = as_nobody(&format!("cat {}", shared.p("secret").display()));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, _) = as_nobody(&format!("touch {}", shared.p("nobody-was-here").display()));
    assert!(!ok, "the root directory is 0755 root-owned");
    fs::create_dir(shared.p("drop")).unwrap();
    fs::set_permissions(shared.p("drop"), fs::Permissions::from_mode(0o1777)).unwrap();
    let (ok, err) = as_nobody(&format!(
        "echo hi > {}",
        shared.p("drop/from-nobody").display()
    ));
    assert!(ok, "{err}");
    let md = fs::metadata(shared.p("drop/from-nobody")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&md),
        65534,
        "files belong to their creator"
    );
    // The sticky bit: root's file in the shared drop cannot be removed by nobody.
    fs::write(shared.p("drop/roots"), b"").unwrap();
    let (ok, _) = as_nobody(&format!("rm -f {}", shared.p("drop/roots").display()));
    assert!(!ok && shared.p("drop/roots").exists());
}

#[test]
fn concurrent_writers_lose_nothing() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let a = env.mount("a", &key, &[]);
    let b = env.mount("b", &key, &[]);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let root = if t % 2 == 0 {
                a.path.clone()
            } else {
                b.path.clone()
            };
            std::thread::spawn(move || {
                for i in 0..50 {
                    let p = root.join(format!("t{t}-{i}"));
                    fs::write(&p, format!("thread {t} file {i}").repeat(100)).unwrap();
                }
                // Appends through one mount to one shared file.
                if t % 2 == 0 {
                    let mut log = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(root.join("shared.log"))
                        .unwrap();
                    for i in 0..200 {
                        log.write_all(format!("{t:02}:{i:04}\n").as_bytes())
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every file, through either mount, once closed.
    for t in 0..8 {
        for i in 0..50 {
            let want = format!("thread {t} file {i}").repeat(100);
            assert_eq!(fs::read_to_string(a.p(&format!("t{t}-{i}"))).unwrap(), want);
            assert_eq!(fs::read_to_string(b.p(&format!("t{t}-{i}"))).unwrap(), want);
        }
    }
    let log = fs::read_to_string(a.p("shared.log")).unwrap();
    assert_eq!(log.lines().count(), 800, "no append lost or torn");
    assert!(log.lines().all(|l| l.len() == 7));
    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!(show["inodes_used"], 1 + 400 + 1);
}

#[test]
fn a_clean_mount_and_unmount_log_no_warning() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::write(m.p("f"), b"x").unwrap();
    assert!(m.umount().status.success());
    let log = fs::read_to_string(env.store.join("logs/acme.log")).unwrap();
    assert!(log.contains("mount ended"), "{log}");
    assert!(!log.contains(" WARN "), "{log}");
}
