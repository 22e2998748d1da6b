//! Tenant quotas through real mounts: exact limits on bytes and inodes, df, live changes,
//! parallel writers in two mounts, and reservations after a crash.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::{Env, errno_of, wait_until};

const MIB: u64 = 1 << 20;

fn show(env: &Env, tenant: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["tenant", "show", tenant, "--json"])).unwrap()
}

#[test]
fn limits_are_set_shown_and_validated() {
    let env = Env::new();
    env.ok(&[
        "tenant",
        "create",
        "acme",
        "--max-bytes",
        "1M",
        "--max-inodes",
        "20",
    ]);
    let t = show(&env, "acme");
    assert_eq!(
        (t["max_bytes"].as_u64(), t["max_inodes"].as_u64()),
        (Some(MIB), Some(20))
    );
    env.ok(&["tenant", "set", "acme", "--max-bytes", "2G"]);
    let t = show(&env, "acme");
    assert_eq!(
        (t["max_bytes"].as_u64(), t["max_inodes"].as_u64()),
        (Some(2 << 30), Some(20))
    );
    env.ok(&["tenant", "set", "acme", "--max-inodes", "0"]);
    assert_eq!(show(&env, "acme")["max_inodes"].as_u64(), Some(0));
    let err = env.fails(&["tenant", "set", "acme", "--max-bytes", "lots"]);
    assert!(err.contains("K, M, G or T"), "{err}");
    let err = env.fails(&["tenant", "set", "acme"]);
    assert!(err.contains("nothing to set"), "{err}");
    let err = env.fails(&["tenant", "set", "ghost", "--max-bytes", "1M"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn a_write_past_the_byte_limit_stops_exactly_there() {
    let env = Env::new();
    env.ok(&["tenant", "create", "acme", "--max-bytes", "1M"]);
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    fs::write(m.p("small"), vec![1u8; 1000]).unwrap();
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=64K", "count=48", "status=none"])
        .arg(format!("of={}", m.p("big").display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("quota"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::metadata(m.p("big")).unwrap().len(),
        MIB - 1000,
        "stops at the limit, not past it"
    );
    let t = show(&env, "acme");
    assert_eq!(t["bytes_used"].as_u64(), Some(MIB));
    // Appending to a full tree fails; truncating up fails; overwriting in place works.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("echo x >> {}", m.p("small").display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let f = OpenOptions::new().write(true).open(m.p("small")).unwrap();
    assert_eq!(errno_of(f.set_len(2000).unwrap_err()), libc::EDQUOT);
    std::os::unix::fs::FileExt::write_all_at(&f, b"over", 0).unwrap();
    drop(f);
    // Freeing space lets writes in again.
    fs::remove_file(m.p("big")).unwrap();
    fs::write(m.p("again"), vec![2u8; 500_000]).unwrap();
    assert_eq!(show(&env, "acme")["bytes_used"].as_u64(), Some(501_000));
}

#[test]
fn the_inode_limit_holds_for_every_kind() {
    let env = Env::new();
    env.ok(&["tenant", "create", "acme", "--max-inodes", "4"]);
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    fs::write(m.p("a"), b"").unwrap();
    fs::create_dir(m.p("d")).unwrap();
    std::os::unix::fs::symlink("a", m.p("s")).unwrap();
    assert_eq!(
        errno_of(fs::write(m.p("b"), b"").unwrap_err()),
        libc::EDQUOT
    );
    assert_eq!(
        errno_of(fs::create_dir(m.p("d2")).unwrap_err()),
        libc::EDQUOT
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("a", m.p("s2")).unwrap_err()),
        libc::EDQUOT
    );
    // A hard link is no new inode.
    fs::hard_link(m.p("a"), m.p("d/a")).unwrap();
    fs::remove_file(m.p("s")).unwrap();
    fs::write(m.p("b"), b"").unwrap();
}

#[test]
fn df_shows_the_quota() {
    let env = Env::new();
    env.ok(&[
        "tenant",
        "create",
        "acme",
        "--max-bytes",
        "100M",
        "--max-inodes",
        "1000",
    ]);
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    fs::write(m.p("f"), vec![0u8; 10 << 20]).unwrap();
    let st = nix::sys::statvfs::statvfs(&m.path).unwrap();
    assert_eq!(st.blocks() * st.fragment_size(), 100 << 20);
    assert_eq!(st.blocks_available() * st.fragment_size(), 90 << 20);
    assert_eq!((st.files(), st.files_free()), (1000, 998));
    let df = common::sh(&m.path, "df -h . | tail -1");
    assert!(df.contains("100M") && df.contains("90M"), "{df}");
    let dfi = common::sh(&m.path, "df -i . | tail -1");
    assert!(dfi.contains("1000"), "{dfi}");
    // Unlimited shows the disk.
    env.ok(&[
        "tenant",
        "set",
        "acme",
        "--max-bytes",
        "0",
        "--max-inodes",
        "0",
    ]);
    assert!(
        wait_until(Duration::from_secs(3), || {
            let st = nix::sys::statvfs::statvfs(&m.path).unwrap();
            st.blocks() * st.fragment_size() > 100 << 20
        })
        .is_some()
    );
}

#[test]
fn a_limit_reaches_a_live_mount() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::write(m.p("before"), vec![0u8; 300_000]).unwrap();
    env.ok(&["tenant", "set", "acme", "--max-bytes", "500K"]);
    let refused = wait_until(Duration::from_secs(2), || {
        let r = fs::write(m.p("probe"), vec![0u8; 300_000]);
        let _ = fs::remove_file(m.p("probe"));
        r.is_err()
    });
    assert!(refused.is_some(), "the new limit never reached the mount");
}

#[test]
fn four_writers_in_two_mounts_never_overshoot() {
    let env = Env::new();
    let limit = 8 * MIB;
    env.ok(&["tenant", "create", "acme", "--max-bytes", "8M"]);
    let (key, _) = env.key("acme", "user:alice", &[]);
    let a = env.mount("a", &key, &[]);
    let b = env.mount("b", &key, &[]);
    fs::create_dir(a.p("shared")).unwrap();
    let on_disk = common::fill_from_four_writers([&a.p("shared"), &b.p("shared")], limit);
    drop((a, b));
    assert_eq!(show(&env, "acme")["bytes_used"].as_u64(), Some(on_disk));
    env.fsck_clean("acme");
}

#[test]
fn a_dead_mounts_reservation_comes_back() {
    let env = Env::new();
    env.ok(&["tenant", "create", "acme", "--max-bytes", "16M"]);
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    let mut f = fs::File::create(m.p("open")).unwrap();
    f.write_all(&[1u8; 1000]).unwrap();
    f.sync_all().unwrap();
    f.write_all(&[1u8; 1000]).unwrap();
    // The writer holds a 4 MiB reservation when the daemon dies.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(m.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    drop(f);
    assert!(wait_until(Duration::from_secs(3), || fs::metadata(&m.path).is_err()).is_some());
    assert!(m.umount().status.success());
    let fsck = env.run(&["fsck", "--tenant", "acme"]);
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        report.contains("crashed-reservation") && report.contains("recovers it"),
        "{report}"
    );
    let m = env.mount("m", &key, &[]);
    // The whole quota is usable again: nothing is left reserved by the dead mount.
    fs::write(m.p("fill"), vec![0u8; (16 * MIB - 2000) as usize]).unwrap();
    assert_eq!(show(&env, "acme")["bytes_used"].as_u64(), Some(16 * MIB));
}

fn usage(env: &Env, tenant: &str) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_str(&env.ok(&["usage", "--tenant", tenant, "--json"])).unwrap();
    all[0].clone()
}

#[test]
fn metering_counts_a_known_workload_exactly() {
    let env = Env::new();
    env.ok(&[
        "tenant",
        "create",
        "acme",
        "--max-bytes",
        "1G",
        "--max-inodes",
        "1000",
    ]);
    env.tenant("quiet");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    for i in 0..5 {
        fs::write(m.p(&format!("f{i}")), vec![i as u8; 100_000]).unwrap();
    }
    for i in 0..5 {
        assert_eq!(fs::read(m.p(&format!("f{i}"))).unwrap().len(), 100_000);
    }
    // A live mount publishes its counters every few seconds, without unmounting.
    let live = wait_until(Duration::from_secs(5), || {
        usage(&env, "acme")["bytes_written"] == 500_000
    });
    assert!(live.is_some(), "{}", usage(&env, "acme"));
    fs::read(m.p("f0")).unwrap();
    drop(m);
    let u = usage(&env, "acme");
    assert_eq!(u["bytes_written"], 500_000);
    assert_eq!(u["bytes_read"], 600_000);
    assert_eq!(
        (u["bytes_used"].as_u64(), u["inodes_used"].as_u64()),
        (Some(500_000), Some(6))
    );
    assert_eq!(
        (u["max_bytes"].as_u64(), u["max_inodes"].as_u64()),
        (Some(1 << 30), Some(1000))
    );
    assert!(u["ops"].as_u64().unwrap() >= 20, "{u}");
    let hourly = u["hourly"].as_array().unwrap();
    assert_eq!(hourly.len(), 1);
    assert_eq!(hourly[0]["bytes_written"], 500_000);
    // Another tenant's activity is its own.
    assert_eq!(usage(&env, "quiet")["ops"], 0);
    let table = env.ok(&["usage"]);
    assert!(
        table.contains("acme") && table.contains("500000/1073741824"),
        "{table}"
    );
}

#[test]
fn rate_limits_delay_ops_and_bytes_without_failing_them() {
    let env = Env::new();
    env.ok(&[
        "tenant",
        "create",
        "acme",
        "--max-bytes-per-sec",
        "1M",
        "--max-ops-per-sec",
        "100",
    ]);
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    // 3 MiB at 1 MiB/s with a second's burst: at least 2 s, and every byte arrives.
    let started = std::time::Instant::now();
    fs::write(m.p("f"), vec![5u8; 3 * MIB as usize]).unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1800),
        "bytes were not paced: {took:?}"
    );
    assert_eq!(fs::metadata(m.p("f")).unwrap().len(), 3 * MIB);
    // 400 lookups of names that do not exist at 100 ops/s: at least 3 s, none refused
    // but for ENOENT.
    let started = std::time::Instant::now();
    for i in 0..400 {
        assert_eq!(
            errno_of(fs::metadata(m.p(&format!("missing-{i}"))).unwrap_err()),
            libc::ENOENT
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "ops were not paced: {took:?}"
    );
    eprintln!("paced: 3 MiB written and 400 lookups in {took:?}");
    // Lifting the limits takes effect on the live mount.
    env.ok(&[
        "tenant",
        "set",
        "acme",
        "--max-bytes-per-sec",
        "0",
        "--max-ops-per-sec",
        "0",
    ]);
    std::thread::sleep(Duration::from_millis(2500));
    let started = std::time::Instant::now();
    for i in 0..400 {
        let _ = fs::metadata(m.p(&format!("again-{i}")));
    }
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}
