//! Directory quotas through real mounts: the `quota` commands, the `tenantfs.quota.*`
//! xattrs, every way into a quota'd tree (write, create, mkdir, symlink, link, truncate,
//! fallocate, copy_file_range, rename), nesting, hard links, `--root` mounts, df, parallel
//! writers, and usage after kill -9.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Env, Mount, errno_of, getxattr, listxattr, removexattr, setxattr, wait_until};

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

fn quota(env: &Env, path: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["quota", "get", "--tenant", "acme", path, "--json"])).unwrap()
}

fn used(env: &Env, path: &str) -> (u64, u64) {
    let q = quota(env, path);
    (
        q["bytes_used"].as_u64().unwrap(),
        q["inodes_used"].as_u64().unwrap(),
    )
}

fn tenant_bytes(env: &Env) -> u64 {
    let t: serde_json::Value =
        serde_json::from_str(&env.ok(&["tenant", "show", "acme", "--json"])).unwrap();
    t["bytes_used"].as_u64().unwrap()
}

fn set(env: &Env, path: &str, limits: &[&str]) -> String {
    let mut args = vec!["quota", "set", "--tenant", "acme", path];
    args.extend_from_slice(limits);
    env.ok(&args)
}

/// Bytes and inodes below `dir`, as a walk through the mount sees them (each inode once).
fn walk(dir: &Path) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let mut total = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                stack.push(e.path());
            }
            if seen.insert(std::os::unix::fs::MetadataExt::ino(&md)) {
                total.1 += 1;
                if !md.is_dir() {
                    total.0 += md.len();
                }
            }
        }
    }
    total
}

fn mount_acme(env: &Env, name: &str, extra: &[&str]) -> Mount {
    let (key, _) = env.key("acme", "user:alice", extra);
    env.mount(name, &key, &[])
}

fn write_errno(path: &Path, data: &[u8]) -> i32 {
    errno_of(fs::write(path, data).unwrap_err())
}

#[test]
fn quota_commands_set_show_list_and_remove() {
    let env = Env::new();
    env.tenant("acme");
    let m = mount_acme(&env, "m", &[]);
    fs::create_dir_all(m.p("team/docs")).unwrap();
    fs::write(m.p("team/docs/f"), vec![1u8; 1000]).unwrap();
    fs::write(m.p("outside"), vec![1u8; 5000]).unwrap();
    set(
        &env,
        "/team",
        &["--max-bytes", "100M", "--max-inodes", "10000"],
    );
    let q = quota(&env, "/team");
    assert_eq!(q["path"], "/team");
    assert_eq!(q["max_bytes"].as_u64(), Some(100 * MIB));
    assert_eq!(q["max_inodes"].as_u64(), Some(10_000));
    // What was already there counts: docs and docs/f.
    assert_eq!(used(&env, "/team"), (1000, 2));
    // A limit left out stays; 0 makes one unlimited.
    set(&env, "/team", &["--max-inodes", "0"]);
    let q = quota(&env, "/team");
    assert_eq!(
        (q["max_bytes"].as_u64(), q["max_inodes"].as_u64()),
        (Some(100 * MIB), Some(0))
    );
    set(&env, "/team/docs", &["--max-bytes", "1K"]);
    let err = env.run(&[
        "quota",
        "set",
        "--tenant",
        "acme",
        "/team/docs",
        "--max-bytes",
        "500",
    ]);
    assert!(err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("already holds more"),
        "setting a limit below usage warns"
    );
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["quota", "list", "--tenant", "acme", "--json"])).unwrap();
    let paths: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/team", "/team/docs"]);
    let table = env.ok(&["quota", "list", "--tenant", "acme"]);
    assert!(
        table.contains("/team/docs") && table.contains("unlimited"),
        "{table}"
    );

    // Bad input says what was wrong.
    for (args, want) in [
        (vec!["/missing", "--max-bytes", "1M"], "does not exist"),
        (vec!["/outside", "--max-bytes", "1M"], "not a directory"),
        (vec!["/team"], "nothing to set"),
        (vec!["/team", "--max-bytes", "lots"], "K, M, G or T"),
        (vec!["/team", "--max-inodes", "-1"], "-1"),
    ] {
        let mut full = vec!["quota", "set", "--tenant", "acme"];
        full.extend(args);
        let err = env.fails(&full);
        assert!(err.contains(want), "{full:?}: {err}");
    }
    let err = env.fails(&["quota", "get", "--tenant", "ghost", "/team"]);
    assert!(err.contains("not found"), "{err}");

    env.ok(&["quota", "rm", "--tenant", "acme", "/team/docs"]);
    let err = env.fails(&["quota", "get", "--tenant", "acme", "/team/docs"]);
    assert!(err.contains("has no quota"), "{err}");
    let err = env.fails(&["quota", "rm", "--tenant", "acme", "/team/docs"]);
    assert!(err.contains("no quota to remove"), "{err}");
    // Both limits unlimited is no quota at all.
    set(&env, "/team", &["--max-bytes", "0"]);
    env.fails(&["quota", "get", "--tenant", "acme", "/team"]);
}

#[test]
fn every_way_into_a_full_tree_fails_with_edquot() {
    let env = Env::new();
    env.tenant("acme");
    let m = mount_acme(&env, "m", &[]);
    fs::create_dir(m.p("q")).unwrap();
    fs::create_dir(m.p("out")).unwrap();
    fs::write(m.p("out/src"), vec![3u8; (2 * MIB) as usize]).unwrap();
    set(&env, "/q", &["--max-bytes", "1M"]);
    // The mount picks the quota up within its check interval.
    assert!(
        wait_until(Duration::from_secs(3), || {
            let r = fs::write(m.p("q/probe"), vec![0u8; (MIB + 1) as usize]);
            let _ = fs::remove_file(m.p("q/probe"));
            r.is_err()
        })
        .is_some()
    );

    // copy_file_range copies up to the limit, then EDQUOT.
    let src = fs::File::open(m.p("out/src")).unwrap();
    let dst = fs::File::create(m.p("q/copy")).unwrap();
    let mut copied = 0u64;
    let err = loop {
        // SAFETY: two open descriptors; null offsets use and advance the file positions.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                (256 * KIB) as usize,
                0,
            )
        };
        if n <= 0 {
            break std::io::Error::last_os_error().raw_os_error();
        }
        copied += n as u64;
    };
    drop(dst);
    assert_eq!(err, Some(libc::EDQUOT));
    assert_eq!(copied, MIB);
    assert_eq!(fs::metadata(m.p("q/copy")).unwrap().len(), MIB);
    fs::remove_file(m.p("q/copy")).unwrap();

    // A 2 MiB dd into a 1 MiB quota stops at 1 MiB with EDQUOT.
    fs::write(m.p("q/small"), vec![1u8; 1000]).unwrap();
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=64K", "count=32", "status=none"])
        .arg(format!("of={}", m.p("q/big").display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("quota"));
    assert_eq!(fs::metadata(m.p("q/big")).unwrap().len(), MIB - 1000);
    assert_eq!(used(&env, "/q").0, MIB);
    // echo >> fails; truncate up and fallocate fail; writing in place works.
    let sh = Command::new("sh")
        .arg("-c")
        .arg(format!("echo x >> {}", m.p("q/small").display()))
        .output()
        .unwrap();
    assert!(!sh.status.success());
    let f = OpenOptions::new().write(true).open(m.p("q/small")).unwrap();
    assert_eq!(errno_of(f.set_len(2000).unwrap_err()), libc::EDQUOT);
    let e = nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, 4096).unwrap_err();
    assert_eq!(e as i32, libc::EDQUOT);
    std::os::unix::fs::FileExt::write_all_at(&f, b"in place", 0).unwrap();
    drop(f);
    // Moving or linking something in is refused, and nothing moves.
    fs::write(m.p("out/file"), vec![1u8; 10]).unwrap();
    assert_eq!(
        errno_of(fs::rename(m.p("out/file"), m.p("q/file")).unwrap_err()),
        libc::EDQUOT
    );
    assert_eq!(
        errno_of(fs::hard_link(m.p("out/file"), m.p("q/file")).unwrap_err()),
        libc::EDQUOT
    );
    fs::create_dir(m.p("out/tree")).unwrap();
    fs::write(m.p("out/tree/x"), b"x").unwrap();
    assert_eq!(
        errno_of(fs::rename(m.p("out/tree"), m.p("q/tree")).unwrap_err()),
        libc::EDQUOT
    );
    let mv = Command::new("mv")
        .arg(m.p("out/tree"))
        .arg(m.p("q/"))
        .output()
        .unwrap();
    assert!(!mv.status.success(), "mv reports the failure");
    assert!(m.p("out/tree/x").exists() && m.p("out/file").exists());
    assert!(!m.p("q/tree").exists() && !m.p("q/file").exists());
    // Empty files and directories cost no bytes, and still go in.
    fs::write(m.p("q/empty"), b"").unwrap();
    fs::create_dir(m.p("q/d")).unwrap();
    // Freeing room lets things in again.
    fs::remove_file(m.p("q/big")).unwrap();
    fs::rename(m.p("out/tree"), m.p("q/tree")).unwrap();
    assert_eq!(used(&env, "/q"), (1001, 5));
}

#[test]
fn the_inode_limit_counts_files_directories_and_symlinks() {
    let env = Env::new();
    env.tenant("acme");
    let m = mount_acme(&env, "m", &[]);
    fs::create_dir(m.p("n")).unwrap();
    fs::write(m.p("elsewhere"), b"e").unwrap();
    set(&env, "/n", &["--max-inodes", "3"]);
    drop(m);
    let m = mount_acme(&env, "m", &[]);
    fs::write(m.p("n/a"), b"").unwrap();
    fs::create_dir(m.p("n/d")).unwrap();
    symlink("a", m.p("n/d/s")).unwrap();
    assert_eq!(write_errno(&m.p("n/b"), b""), libc::EDQUOT);
    assert_eq!(
        errno_of(fs::create_dir(m.p("n/d/e")).unwrap_err()),
        libc::EDQUOT
    );
    assert_eq!(
        errno_of(symlink("a", m.p("n/s2")).unwrap_err()),
        libc::EDQUOT
    );
    assert_eq!(
        errno_of(fs::hard_link(m.p("elsewhere"), m.p("n/h")).unwrap_err()),
        libc::EDQUOT
    );
    // Another name for something already inside costs nothing.
    fs::hard_link(m.p("n/a"), m.p("n/d/a2")).unwrap();
    assert_eq!(used(&env, "/n").1, 3);
    // Outside the directory nothing is limited.
    fs::write(m.p("free"), b"").unwrap();
}

#[test]
fn nested_quotas_all_hold() {
    let env = Env::new();
    env.tenant("acme");
    let m = mount_acme(&env, "m", &[]);
    fs::create_dir_all(m.p("org/team/proj")).unwrap();
    set(&env, "/org", &["--max-bytes", "3M"]);
    set(&env, "/org/team", &["--max-bytes", "2M"]);
    set(&env, "/org/team/proj", &["--max-bytes", "1M"]);
    drop(m);
    let m = mount_acme(&env, "m", &[]);
    // The innermost binds first...
    fs::write(m.p("org/team/proj/a"), vec![1u8; (MIB - 100) as usize]).unwrap();
    assert_eq!(
        write_errno(&m.p("org/team/proj/b"), &[1u8; 200]),
        libc::EDQUOT
    );
    // ...then the middle one, from beside the inner tree...
    fs::write(m.p("org/team/b"), vec![1u8; (MIB - 100) as usize]).unwrap();
    assert_eq!(write_errno(&m.p("org/team/c"), &[1u8; 300]), libc::EDQUOT);
    // ...then the outer one.
    fs::write(m.p("org/c"), vec![1u8; (MIB - 100) as usize]).unwrap();
    assert_eq!(write_errno(&m.p("org/d"), &[1u8; 400]), libc::EDQUOT);
    let q = |p| used(&env, p).0;
    assert_eq!(
        (q("/org"), q("/org/team"), q("/org/team/proj")),
        (3 * MIB, 2 * MIB, MIB)
    );
    // Moving between nested trees: out of the inner one is free, into it is checked.
    // (The refused writes above each wrote what fitted: 100 bytes.)
    fs::rename(m.p("org/team/proj/a"), m.p("org/team/a")).unwrap();
    assert_eq!(q("/org/team/proj"), 100);
    fs::write(m.p("org/big"), vec![1u8; 100]).unwrap_err();
    fs::rename(m.p("org/team/a"), m.p("org/team/proj/a")).unwrap();
    assert_eq!(
        (q("/org"), q("/org/team"), q("/org/team/proj")),
        (3 * MIB, 2 * MIB, MIB)
    );
}

#[test]
fn hard_links_count_once_per_tenant_and_in_each_linked_tree() {
    let env = Env::new();
    env.tenant("acme");
    let m = mount_acme(&env, "m", &[]);
    for d in ["a/sub", "b", "c"] {
        fs::create_dir_all(m.p(d)).unwrap();
    }
    set(&env, "/a", &["--max-bytes", "10M"]);
    set(&env, "/b", &["--max-bytes", "10M"]);
    set(&env, "/c", &["--max-bytes", "50K"]);
    drop(m);
    let m = mount_acme(&env, "m", &[]);
    fs::write(m.p("a/f"), vec![1u8; (100 * KIB) as usize]).unwrap();
    fs::hard_link(m.p("a/f"), m.p("a/sub/g")).unwrap();
    fs::hard_link(m.p("a/f"), m.p("b/h")).unwrap();
    assert_eq!(
        used(&env, "/a"),
        (100 * KIB, 2),
        "two names in /a count once"
    );
    assert_eq!(used(&env, "/b"), (100 * KIB, 1));
    assert_eq!(tenant_bytes(&env), 100 * KIB, "the tenant counts it once");
    // Growth through any name counts in every tree holding a name.
    let mut f = OpenOptions::new().append(true).open(m.p("b/h")).unwrap();
    f.write_all(&[2u8; 1000]).unwrap();
    drop(f);
    assert_eq!(used(&env, "/a").0, 100 * KIB + 1000);
    assert_eq!(used(&env, "/b").0, 100 * KIB + 1000);
    // A link into a tree without room is refused.
    assert_eq!(
        errno_of(fs::hard_link(m.p("a/f"), m.p("c/i")).unwrap_err()),
        libc::EDQUOT
    );
    // A tree lets go when its last name goes.
    fs::remove_file(m.p("a/f")).unwrap();
    assert_eq!(used(&env, "/a"), (100 * KIB + 1000, 2));
    fs::remove_file(m.p("a/sub/g")).unwrap();
    assert_eq!(used(&env, "/a"), (0, 1));
    assert_eq!(used(&env, "/b").0, 100 * KIB + 1000);
    drop(m);
    env.fsck_clean("acme");
}

#[test]
fn quota_xattrs_through_an_admin_mount() {
    let env = Env::new();
    env.tenant("acme");
    let (admin, _) = env.key("acme", "user:root", &["--scope", "admin"]);
    let a = env.mount("admin", &admin, &[]);
    let m = mount_acme(&env, "m", &[]);
    fs::create_dir_all(a.p("team/inner")).unwrap();
    fs::write(a.p("team/file"), b"12345").unwrap();
    let (bytes, inodes) = ("tenantfs.quota.max_bytes", "tenantfs.quota.max_inodes");
    assert_eq!(
        errno_of(getxattr(&a.p("team"), bytes).unwrap_err()),
        libc::ENODATA
    );
    setxattr(&a.p("team"), bytes, b"1M", 0).unwrap();
    setxattr(&a.p("team"), inodes, b"100", 0).unwrap();
    setxattr(&a.p("team/inner"), bytes, b"4096", 0).unwrap();
    assert_eq!(getxattr(&a.p("team"), bytes).unwrap(), b"1048576");
    assert_eq!(getxattr(&a.p("team"), inodes).unwrap(), b"100");
    let q = quota(&env, "/team");
    assert_eq!(q["max_bytes"].as_u64(), Some(MIB));
    assert_eq!(q["max_inodes"].as_u64(), Some(100));
    assert_eq!(used(&env, "/team"), (5, 2));
    // XATTR_CREATE and XATTR_REPLACE mean what they say.
    assert_eq!(
        errno_of(setxattr(&a.p("team"), bytes, b"2M", libc::XATTR_CREATE).unwrap_err()),
        libc::EEXIST
    );
    setxattr(&a.p("team"), inodes, b"5", libc::XATTR_REPLACE).unwrap();
    assert_eq!(
        errno_of(setxattr(&a.p("team/inner"), inodes, b"5", libc::XATTR_REPLACE).unwrap_err()),
        libc::ENODATA
    );
    // The limits hold, in the admin's mount as in others.
    assert_eq!(
        write_errno(&a.p("team/inner/f"), &[0u8; 5000]),
        libc::EDQUOT
    );
    // Bad values, and files, are refused.
    for v in [&b"lots"[..], b"-1", b""] {
        assert_eq!(
            errno_of(setxattr(&a.p("team"), bytes, v, 0).unwrap_err()),
            libc::EINVAL
        );
    }
    assert_eq!(
        errno_of(setxattr(&a.p("team/file"), bytes, b"1M", 0).unwrap_err()),
        libc::EINVAL
    );
    // They are not listed, so cp -a and tar do not carry quotas along.
    assert!(
        !listxattr(&a.p("team"))
            .iter()
            .any(|n| n.starts_with("tenantfs."))
    );
    // A non-admin key can neither read nor set them, whether or not a quota is set.
    for dir in ["team", "team/inner/..", "team/inner"] {
        assert_eq!(
            errno_of(getxattr(&m.p(dir), bytes).unwrap_err()),
            libc::EACCES
        );
    }
    fs::create_dir(m.p("mine")).unwrap();
    assert_eq!(
        errno_of(getxattr(&m.p("mine"), bytes).unwrap_err()),
        libc::EACCES
    );
    assert_eq!(
        errno_of(setxattr(&m.p("mine"), bytes, b"1G", 0).unwrap_err()),
        libc::EACCES
    );
    assert_eq!(
        errno_of(removexattr(&m.p("team"), bytes).unwrap_err()),
        libc::EACCES
    );
    // Removing a limit makes it unlimited; removing both removes the quota.
    removexattr(&a.p("team/inner"), bytes).unwrap();
    assert_eq!(
        errno_of(removexattr(&a.p("team/inner"), bytes).unwrap_err()),
        libc::ENODATA
    );
    fs::write(a.p("team/inner/f"), vec![0u8; 5000]).unwrap();
    setxattr(&a.p("team"), bytes, b"0", 0).unwrap();
    removexattr(&a.p("team"), inodes).unwrap();
    env.fails(&["quota", "get", "--tenant", "acme", "/team"]);
}

#[test]
fn four_writers_in_two_mounts_never_overshoot_a_directory_quota() {
    let env = Env::new();
    env.tenant("acme");
    let limit = 8 * MIB;
    let a = mount_acme(&env, "a", &[]);
    fs::create_dir(a.p("shared")).unwrap();
    drop(a);
    set(&env, "/shared", &["--max-bytes", "8M"]);
    let a = mount_acme(&env, "a", &[]);
    let b = mount_acme(&env, "b", &[]);
    let on_disk = common::fill_from_four_writers([&a.p("shared"), &b.p("shared")], limit);
    drop((a, b));
    assert_eq!(used(&env, "/shared").0, on_disk);
    assert_eq!(quota(&env, "/shared")["bytes_reserved"].as_u64(), Some(0));
}

fn statvfs(p: &Path) -> (u64, u64, u64, u64) {
    let st = nix::sys::statvfs::statvfs(p).unwrap();
    let f = st.fragment_size();
    (
        st.blocks() * f,
        st.blocks_available() * f,
        st.files(),
        st.files_free(),
    )
}

#[test]
fn df_shows_the_tightest_quota_over_the_mount_root() {
    let env = Env::new();
    env.ok(&["tenant", "create", "acme", "--max-bytes", "100M"]);
    let m = mount_acme(&env, "m", &[]);
    fs::create_dir_all(m.p("proj/sub")).unwrap();
    set(
        &env,
        "/proj",
        &["--max-bytes", "50M", "--max-inodes", "1000"],
    );
    set(&env, "/proj/sub", &["--max-bytes", "10M"]);
    let whole = &m;
    let proj = mount_acme(&env, "proj", &["--root", "/proj"]);
    let sub = mount_acme(&env, "sub", &["--root", "/proj/sub"]);
    fs::write(proj.p("other"), vec![0u8; (5 * MIB) as usize]).unwrap();
    // The tenant root: the tenant's limit. Inodes are unlimited there: the disk's.
    let (size, avail, files, _) = statvfs(&whole.path);
    assert_eq!((size, avail), (100 * MIB, 95 * MIB));
    assert!(files > 1000);
    // /proj: its own quota, for bytes and inodes (sub and other are in it).
    assert_eq!(statvfs(&proj.path), (50 * MIB, 45 * MIB, 1000, 998));
    // /proj/sub: the tighter of its own 10M and what /proj has left.
    assert_eq!(statvfs(&sub.path).0, 10 * MIB);
    assert_eq!(statvfs(&sub.path).1, 10 * MIB);
    assert_eq!((statvfs(&sub.path).2, statvfs(&sub.path).3), (1000, 998));
    set(&env, "/proj", &["--max-bytes", "8M"]);
    assert_eq!(statvfs(&sub.path).0, 8 * MIB, "now /proj has least left");
    assert_eq!(statvfs(&sub.path).1, 3 * MIB);
    let df = common::sh(&sub.path, "df -h . | tail -1");
    assert!(df.contains("8.0M") && df.contains("3.0M"), "{df}");
    let dfi = common::sh(&sub.path, "df -i . | tail -1");
    assert!(dfi.contains("1000") && dfi.contains("998"), "{dfi}");
    // And the --root mount is held to it.
    assert!(
        wait_until(Duration::from_secs(3), || {
            let r = fs::write(sub.p("probe"), vec![0u8; (4 * MIB) as usize]);
            let _ = fs::remove_file(sub.p("probe"));
            r.is_err()
        })
        .is_some()
    );
    fs::write(sub.p("fits"), vec![0u8; (3 * MIB) as usize]).unwrap();
    assert_eq!(write_errno(&sub.p("more"), b"x"), libc::EDQUOT);
    assert_eq!(statvfs(&sub.path).1, 0);
}

#[test]
fn directory_usage_survives_kill_9_and_fsck_repair_recounts_it() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    fs::create_dir_all(m.p("q/d")).unwrap();
    drop(m);
    set(&env, "/q", &["--max-bytes", "64M"]);
    for round in 0..3 {
        let m = env.mount("m", &key, &[]);
        let dir = m.p("q/d");
        let writer = std::thread::spawn(move || {
            for n in 0.. {
                let Ok(mut f) = fs::File::create(dir.join(format!("r{round}-{n}"))) else {
                    return;
                };
                for _ in 0..16 {
                    if f.write_all(&[5u8; 65_536]).is_err() {
                        return;
                    }
                }
            }
        });
        std::thread::sleep(Duration::from_millis(300 + 200 * round));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(m.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        writer.join().unwrap();
        assert!(m.umount().status.success());
        // The next mount recovers; then the counters equal what is on disk.
        let m = env.mount("m", &key, &[]);
        let on_disk = walk(&m.p("q"));
        assert!(on_disk.0 > 0);
        assert_eq!(used(&env, "/q"), on_disk, "round {round}");
        assert_eq!(quota(&env, "/q")["bytes_reserved"].as_u64(), Some(0));
        drop(m);
    }
    env.fsck_clean("acme");
    // A counter gone wrong is found, and --repair counts it afresh.
    let m = env.mount("m", &key, &[]);
    let truth = walk(&m.p("q"));
    drop(m);
    env.tenant_sql("acme", "UPDATE dir_quotas SET bytes = 7, inodes = 1");
    let fsck = env.run(&["fsck", "--tenant", "acme"]);
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        !fsck.status.success() && report.contains("quota-usage"),
        "{report}"
    );
    env.run(&["fsck", "--tenant", "acme", "--repair"]);
    assert_eq!(used(&env, "/q"), truth);
    env.fsck_clean("acme");
}

/// The issue's own numbers: 2 GiB of dd into a 1 GiB directory quota stops at exactly 1 GiB.
#[test]
fn two_gib_of_dd_into_a_one_gib_quota_stops_at_one_gib() {
    let env = Env::new();
    env.tenant("acme");
    let m = mount_acme(&env, "m", &[]);
    fs::create_dir(m.p("q")).unwrap();
    drop(m);
    set(&env, "/q", &["--max-bytes", "1G"]);
    let m = mount_acme(&env, "m", &[]);
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=2048", "status=none"])
        .arg(format!("of={}", m.p("q/big").display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Disk quota exceeded"), "{err}");
    assert_eq!(fs::metadata(m.p("q/big")).unwrap().len(), 1 << 30);
    assert_eq!(used(&env, "/q").0, 1 << 30);
    assert_eq!(
        errno_of(
            fs::OpenOptions::new()
                .append(true)
                .open(m.p("q/big"))
                .unwrap()
                .write(b"x")
                .unwrap_err()
        ),
        libc::EDQUOT
    );
    fs::remove_file(m.p("q/big")).unwrap();
}

#[test]
fn fsck_finds_and_rebuilds_lost_link_records() {
    let env = Env::new();
    env.tenant("acme");
    let m = mount_acme(&env, "m", &[]);
    fs::create_dir_all(m.p("a")).unwrap();
    fs::create_dir_all(m.p("b")).unwrap();
    fs::write(m.p("a/f"), vec![1u8; 1000]).unwrap();
    fs::hard_link(m.p("a/f"), m.p("b/g")).unwrap();
    fs::hard_link(m.p("a/f"), m.p("b/h")).unwrap();
    drop(m);
    env.fsck_clean("acme");
    env.tenant_sql("acme", "DELETE FROM links");
    let fsck = env.run(&["fsck", "--tenant", "acme"]);
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        !fsck.status.success() && report.contains("links"),
        "{report}"
    );
    env.run(&["fsck", "--tenant", "acme", "--repair"]);
    env.fsck_clean("acme");
    // With the records back, a quota set on /b counts the file, and growth through /a's
    // name reaches it.
    set(&env, "/b", &["--max-bytes", "1M"]);
    let m = mount_acme(&env, "m", &[]);
    fs::OpenOptions::new()
        .append(true)
        .open(m.p("a/f"))
        .unwrap()
        .write_all(&[2u8; 500])
        .unwrap();
    assert_eq!(used(&env, "/b"), (1500, 1));
}
