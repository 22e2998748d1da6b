//! Tenancy through real mounts: isolation, sub-tree keys, read-only keys, revocation and
//! expiry of live mounts, persistence, crash recovery, real tools, and attacks.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::{Duration, Instant};

use common::{Env, errno_of, sh, wait_until};

#[test]
fn two_tenants_side_by_side_see_disjoint_trees() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant("beta", "b");
    fs::write(a.p("same-name.txt"), b"acme's").unwrap();
    fs::create_dir(a.p("acme-only")).unwrap();
    fs::write(a.p("acme-only/big"), vec![1u8; 3 << 20]).unwrap();
    fs::write(b.p("same-name.txt"), b"beta's").unwrap();
    assert_eq!(fs::read(a.p("same-name.txt")).unwrap(), b"acme's");
    assert_eq!(fs::read(b.p("same-name.txt")).unwrap(), b"beta's");
    assert_eq!(
        errno_of(fs::metadata(b.p("acme-only")).unwrap_err()),
        libc::ENOENT
    );
    let names = |m: &common::Mount| {
        let mut v: Vec<String> = fs::read_dir(&m.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&a), ["acme-only", "same-name.txt"]);
    assert_eq!(names(&b), ["same-name.txt"]);
    // Inode numbers come from per-tenant counters: beta's first file is number 2, like acme's.
    assert_eq!(fs::metadata(b.p("same-name.txt")).unwrap().ino(), 2);
    assert_eq!(fs::metadata(a.p("same-name.txt")).unwrap().ino(), 2);
    // df on beta counts beta's bytes only, not acme's 3 MiB.
    let sb = nix::sys::statvfs::statvfs(&b.path).unwrap();
    let used_b = (sb.blocks() - sb.blocks_free()) * sb.fragment_size();
    assert!(used_b < 1 << 20, "beta's df shows {used_b} bytes used");
    let sa = nix::sys::statvfs::statvfs(&a.path).unwrap();
    assert!((sa.blocks() - sa.blocks_free()) * sa.fragment_size() >= 3 << 20);
    // Physical isolation: each daemon holds open only its own tenant's files.
    for (m, own, other) in [
        (&a, "tenants/acme/", "tenants/beta"),
        (&b, "tenants/beta/", "tenants/acme"),
    ] {
        let held: Vec<String> = fs::read_dir(format!("/proc/{}/fd", m.pid))
            .unwrap()
            .filter_map(|e| fs::read_link(e.unwrap().path()).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.starts_with(env.store.to_str().unwrap()))
            .collect();
        assert!(held.iter().any(|p| p.contains(own)), "{held:?}");
        assert!(
            !held.iter().any(|p| p.contains(other)),
            "{own} daemon holds {held:?}"
        );
    }
}

#[test]
fn a_root_key_sees_only_its_subtree() {
    let env = Env::new();
    let full = env.mounted_tenant("acme", "full");
    fs::create_dir_all(full.p("projects/x")).unwrap();
    fs::write(full.p("projects/x/plan.md"), b"plan").unwrap();
    fs::create_dir(full.p("hr")).unwrap();
    fs::write(full.p("hr/salaries.csv"), b"secret").unwrap();

    let (key, _) = env.key("acme", "agent:bot", &["--root", "/projects"]);
    let sub = env.mount("sub", &key, &[]);
    let names: Vec<String> = fs::read_dir(&sub.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["x"]);
    assert_eq!(fs::read(sub.p("x/plan.md")).unwrap(), b"plan");
    assert_eq!(
        fs::metadata(&sub.path).unwrap().ino(),
        1,
        "the sub-tree root is inode 1"
    );
    // ".." at the mount root is the host directory, never the tenant's parent.
    assert_eq!(
        errno_of(fs::metadata(sub.p("../hr")).unwrap_err()),
        libc::ENOENT
    );
    assert_ne!(
        fs::metadata(sub.p("..")).unwrap().dev(),
        fs::metadata(&sub.path).unwrap().dev()
    );
    // A symlink climbing out resolves on the host, not in the tenant.
    std::os::unix::fs::symlink("../../hr/salaries.csv", sub.p("x/escape")).unwrap();
    assert!(fs::read(sub.p("x/escape")).is_err());
    // Writes land inside the sub-tree.
    fs::write(sub.p("new.txt"), b"from bot").unwrap();
    assert_eq!(fs::read(full.p("projects/new.txt")).unwrap(), b"from bot");
    // readdir of the root's ".." reports no number outside the sub-tree.
    let mut dir = nix::dir::Dir::open(
        &sub.path,
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let dotdot = dir
        .iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_name().to_bytes() == b"..")
        .unwrap();
    assert_eq!(dotdot.ino(), 1);
}

#[test]
fn a_read_key_refuses_every_change_with_erofs() {
    let env = Env::new();
    let w = env.mounted_tenant("acme", "w");
    fs::write(w.p("f"), b"data").unwrap();
    fs::create_dir(w.p("d")).unwrap();
    let (key, _) = env.key("acme", "user:reader", &["--scope", "read"]);
    let r = env.mount("r", &key, &[]);
    assert_eq!(fs::read(r.p("f")).unwrap(), b"data");
    let erofs = |res: std::io::Result<()>| assert_eq!(errno_of(res.unwrap_err()), libc::EROFS);
    erofs(fs::write(r.p("new"), b"x"));
    erofs(OpenOptions::new().write(true).open(r.p("f")).map(drop));
    erofs(OpenOptions::new().append(true).open(r.p("f")).map(drop));
    erofs(fs::create_dir(r.p("d2")));
    erofs(fs::remove_file(r.p("f")));
    erofs(fs::remove_dir(r.p("d")));
    erofs(fs::rename(r.p("f"), r.p("g")));
    erofs(fs::hard_link(r.p("f"), r.p("g")));
    erofs(std::os::unix::fs::symlink("f", r.p("s")));
    erofs(fs::set_permissions(
        r.p("f"),
        fs::Permissions::from_mode(0o600),
    ));
    erofs(nix::unistd::truncate(&r.p("f"), 0).map_err(Into::into));
    erofs(
        nix::unistd::mkfifo(&r.p("p"), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(Into::into),
    );
    let out = std::process::Command::new("setfattr")
        .args(["-n", "user.x", "-v", "1"])
        .arg(r.p("f"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only"),
        "{out:?}"
    );
    assert_eq!(fs::read(w.p("f")).unwrap(), b"data");
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn revoking_a_key_ends_its_live_mounts_within_two_seconds() {
    let env = Env::new();
    env.tenant("acme");
    let (key, id) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    fs::write(m.p("f"), b"keep me").unwrap();
    let held = File::open(m.p("f")).unwrap();
    let mut buf = [0u8; 7];
    held.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"keep me");
    // A reader loops while the key is revoked.
    let path = m.p("f");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut last_ok = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if fs::read(&path).is_ok_and(|d| d == b"keep me") {
                    last_ok = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            last_ok
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let revoked_at = Instant::now();
    env.ok(&["key", "revoke", &id]);
    let took = wait_until(Duration::from_secs(5), || {
        fs::read(m.p("f")).is_err() && held.read_exact_at(&mut buf, 0).is_err()
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last_ok = reader.join().unwrap();
    let took = took.expect("access still works 5 s after revocation");
    assert!(took < Duration::from_secs(2), "revocation took {took:?}");
    assert!(last_ok.saturating_duration_since(revoked_at) < Duration::from_secs(2));
    eprintln!("revocation reached the mount in {took:?}");
    // The descriptor opened before stays dead; nothing is served from the page cache.
    assert!(held.read_exact_at(&mut buf, 0).is_err());
    assert!(
        wait_until(Duration::from_secs(3), || !m.is_mounted()).is_some(),
        "the mount is detached"
    );
    // The data is kept, and a valid key mounts the same tree again.
    let (key2, _) = env.key("acme", "user:alice", &[]);
    let m2 = env.mount("m2", &key2, &[]);
    assert_eq!(fs::read(m2.p("f")).unwrap(), b"keep me");
}

#[test]
fn a_key_expiring_ends_its_live_mount() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &["--expires", "2s"]);
    let m = env.mount("m", &key, &[]);
    fs::write(m.p("f"), b"x").unwrap();
    let took = wait_until(Duration::from_secs(6), || fs::metadata(m.p("f")).is_err());
    assert!(took.is_some(), "the mount outlived its key");
    assert!(took.unwrap() < Duration::from_secs(4), "{took:?}");
}

#[test]
fn everything_persists_across_umount_and_mount() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    fs::create_dir_all(m.p("a/b/c")).unwrap();
    fs::write(m.p("a/b/c/deep.txt"), b"deep").unwrap();
    std::os::unix::fs::symlink("b/c/deep.txt", m.p("a/link")).unwrap();
    fs::hard_link(m.p("a/b/c/deep.txt"), m.p("hard")).unwrap();
    fs::set_permissions(m.p("hard"), fs::Permissions::from_mode(0o640)).unwrap();
    sh(&m.path, "setfattr -n user.tag -v kept hard");
    let before = sh(&m.path, "find . -printf '%p %y %s %m %n %T@\\n' | sort");
    let out = m.umount();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!m.is_mounted());
    let state = fs::read_to_string(format!("/proc/{}/stat", m.pid)).unwrap_or_default();
    let state = state
        .rsplit_once(") ")
        .map(|(_, r)| r.chars().next().unwrap())
        .unwrap_or('X');
    assert!(
        state == 'Z' || state == 'X',
        "umount returned before the daemon exited ({state})"
    );
    let m = env.mount("m", &key, &[]);
    let after = sh(&m.path, "find . -printf '%p %y %s %m %n %T@\\n' | sort");
    assert_eq!(before, after);
    assert_eq!(fs::read(m.p("a/link")).unwrap(), b"deep");
    assert_eq!(
        sh(&m.path, "getfattr -n user.tag --only-values hard"),
        "kept"
    );
}

fn object_count(env: &Env) -> usize {
    let objects = env.store.join("tenants/acme/objects");
    fs::read_dir(objects)
        .unwrap()
        .map(|s| fs::read_dir(s.unwrap().path()).unwrap().count())
        .sum()
}

#[test]
fn kill_9_then_remount_recovers_a_consistent_tree() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    for i in 0..20 {
        let mut f = File::create(m.p(&format!("synced-{i}"))).unwrap();
        f.write_all(format!("content {i}").as_bytes()).unwrap();
        f.sync_all().unwrap();
    }
    // A file still being written, never closed: its size is only in the daemon's memory.
    let mut writing = File::create(m.p("in-flight")).unwrap();
    writing.write_all(&[9u8; 100_000]).unwrap();
    // A file unlinked while open: its object must be reclaimed after the crash.
    let mut orphan = File::create(m.p("orphan")).unwrap();
    orphan.write_all(&[1u8; 50_000]).unwrap();
    fs::remove_file(m.p("orphan")).unwrap();
    // Deleted files whose objects were removed cleanly.
    for i in 0..5 {
        fs::write(m.p(&format!("gone-{i}")), b"bye").unwrap();
        fs::remove_file(m.p(&format!("gone-{i}"))).unwrap();
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(m.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || fs::metadata(&m.path).is_err()).is_some(),
        "the mount went dead"
    );
    drop(writing);
    drop(orphan);
    let out = m.umount();
    assert!(
        out.status.success(),
        "umount of a dead mount: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let m = env.mount("m", &key, &[]);
    for i in 0..20 {
        assert_eq!(
            fs::read_to_string(m.p(&format!("synced-{i}"))).unwrap(),
            format!("content {i}")
        );
    }
    assert_eq!(
        fs::read(m.p("in-flight")).unwrap(),
        vec![9u8; 100_000],
        "written data survives a daemon crash"
    );
    let names = fs::read_dir(&m.path).unwrap().count();
    assert_eq!(names, 21);
    // Recovery ran at mount: one object per live file, usage matches.
    assert_eq!(object_count(&env), 21, "no leaked objects");
    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!(show["inodes_used"], 22);
    let content: u64 = (0..20)
        .map(|i| format!("content {i}").len() as u64)
        .sum::<u64>()
        + 100_000;
    assert_eq!(show["bytes_used"], content);
}

#[test]
fn real_tools_work_as_on_a_local_disk() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    let src = env.dir.path().join("src");
    fs::create_dir_all(src.join("docs/deep")).unwrap();
    for i in 0..50 {
        fs::write(
            src.join(format!("docs/file{i}.txt")),
            format!("line {i}\nneedle {}\n", i % 7),
        )
        .unwrap();
    }
    fs::write(src.join("docs/deep/x.bin"), vec![0xabu8; 200_000]).unwrap();
    std::os::unix::fs::symlink("file1.txt", src.join("docs/sym")).unwrap();
    let s = src.display();
    sh(
        &m.path,
        &format!("cp -a {s}/docs copied && diff -r {s}/docs copied"),
    );
    sh(
        &m.path,
        &format!("tar -C {s} -cf - docs | tar -xf - -C . && diff -r {s}/docs docs"),
    );
    sh(
        &m.path,
        "tar -cf ../out.tar docs && mkdir ../untar && tar -xf ../out.tar -C ../untar && diff -r docs ../untar/docs",
    );
    assert_eq!(sh(&m.path, "grep -rl 'needle 3' docs | wc -l").trim(), "7");
    assert_eq!(sh(&m.path, "find docs -type f | wc -l").trim(), "51");
    let du: u64 = sh(&m.path, "du -sk docs | cut -f1").trim().parse().unwrap();
    assert!(du >= 200, "du counts blocks: {du}");
    sh(
        &m.path,
        "mv docs moved && ln moved/file1.txt hardlinked && ln -s moved/file2.txt softlinked && cat hardlinked softlinked >/dev/null",
    );
    assert!(sh(&m.path, "ls -l").contains("softlinked -> moved/file2.txt"));
    sh(
        &m.path,
        "git init -q repo && cd repo && echo hi > a && git add a && \
         git -c user.name=t -c user.email=t@e commit -qm one && echo more >> a && \
         git -c user.name=t -c user.email=t@e commit -qam two && git log --oneline | wc -l | grep -qx 2 && git status --porcelain | wc -l | grep -qx 0",
    );
    // An editor's save-by-rename keeps content and swaps the inode.
    sh(
        &m.path,
        "echo v1 > notes && cp notes .notes.tmp && echo v2 > .notes.tmp && mv .notes.tmp notes && grep -qx v2 notes",
    );
}

#[test]
fn guessed_file_handles_never_reach_another_tenant() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant("beta", "b");
    fs::write(a.p("secret"), b"acme secret").unwrap();
    fs::write(b.p("public"), b"beta data").unwrap();
    // A handle for acme's file, replayed against beta's mount.
    let mut raw = vec![0u8; 8 + 128];
    let fh = raw.as_mut_ptr() as *mut libc::file_handle;
    // SAFETY: the buffer holds a file_handle header plus 128 bytes of handle.
    unsafe { (*fh).handle_bytes = 128 };
    let path = std::ffi::CString::new(a.p("secret").to_str().unwrap()).unwrap();
    let mut mount_id = 0;
    // SAFETY: valid path, a buffer sized as declared in handle_bytes, and an out int.
    let rc =
        unsafe { libc::name_to_handle_at(libc::AT_FDCWD, path.as_ptr(), fh, &mut mount_id, 0) };
    if rc != 0 {
        // Without export support the kernel may refuse to make handles at all: nothing to replay.
        return;
    }
    let bdir = File::open(&b.path).unwrap();
    // SAFETY: the handle buffer came from name_to_handle_at; the mount fd is open.
    let fd = unsafe { libc::open_by_handle_at(bdir.as_raw_fd(), fh, libc::O_RDONLY) };
    if fd >= 0 {
        // SAFETY: fd was just returned open by the kernel and is owned here.
        let mut f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        assert!(!s.contains("acme"), "beta's mount served acme's data: {s}");
    }
}

#[test]
fn unknown_inode_numbers_are_stale_not_served() {
    // Inode numbers are only meaningful inside one tenant, and the adapter answers ESTALE for
    // numbers it never handed out; /proc's fd links are the one way to name an inode by number,
    // so reopen through them after the name is gone and after the inode is forgotten.
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::write(m.p("f"), b"x").unwrap();
    let f = File::open(m.p("f")).unwrap();
    fs::remove_file(m.p("f")).unwrap();
    let via_proc = format!("/proc/self/fd/{}", f.as_raw_fd());
    assert_eq!(
        fs::read(&via_proc).unwrap(),
        b"x",
        "an open orphan stays reachable by its holder"
    );
    drop(f);
    assert!(fs::read(&via_proc).is_err());
}

#[test]
fn nothing_crosses_between_tenant_mounts() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant("beta", "b");
    fs::write(a.p("f"), b"acme").unwrap();
    assert_eq!(
        errno_of(fs::rename(a.p("f"), b.p("f")).unwrap_err()),
        libc::EXDEV
    );
    assert_eq!(
        errno_of(fs::hard_link(a.p("f"), b.p("f")).unwrap_err()),
        libc::EXDEV
    );
    let e = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &a.p("f"),
        nix::fcntl::AT_FDCWD,
        &b.p("f"),
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    );
    assert_eq!(e.unwrap_err(), nix::errno::Errno::EXDEV);
    // `mv` falls back to copy-and-delete, which is the user's own read and write.
    sh(
        env.dir.path(),
        &format!("mv {} {}", a.p("f").display(), b.p("moved").display()),
    );
    assert_eq!(fs::read(b.p("moved")).unwrap(), b"acme");
    assert!(!a.p("f").exists());
}

#[test]
fn umount_of_a_busy_mount_explains_and_lazy_detaches() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::write(m.p("f"), b"x").unwrap();
    let held = File::open(m.p("f")).unwrap();
    let out = m.umount();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("busy") && err.contains("--lazy"), "{err}");
    let out = env.run(&["umount", "--lazy", m.path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!m.is_mounted());
    let mut s = String::new();
    (&held).read_to_string(&mut s).unwrap();
    assert_eq!(s, "x", "open files keep working after a lazy unmount");
    drop(held);
    let dead = wait_until(Duration::from_secs(5), || {
        let st = fs::read_to_string(format!("/proc/{}/stat", m.pid)).unwrap_or_default();
        st.is_empty() || st.contains(") Z")
    });
    assert!(dead.is_some(), "the daemon exits once the last file closes");
}

/// A file handle as `name_to_handle_at` makes it: the `file_handle` header, then its bytes.
struct Handle(Vec<u8>);

fn handle_of(path: &std::path::Path) -> Handle {
    let mut raw = vec![0u8; 8 + 128];
    let fh = raw.as_mut_ptr() as *mut libc::file_handle;
    // SAFETY: the buffer holds a file_handle header plus 128 bytes of handle.
    unsafe { (*fh).handle_bytes = 128 };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut mount_id = 0;
    // SAFETY: valid path, a buffer sized as declared in handle_bytes, and an out int.
    let rc = unsafe { libc::name_to_handle_at(libc::AT_FDCWD, c.as_ptr(), fh, &mut mount_id, 0) };
    assert_eq!(
        rc,
        0,
        "name_to_handle_at {path:?}: {}",
        std::io::Error::last_os_error()
    );
    Handle(raw)
}

impl Handle {
    /// The same kind of handle naming FUSE node `nodeid`: FUSE's handles hold the node id
    /// as two 32-bit halves, then the generation.
    fn for_node(&self, nodeid: u64) -> Handle {
        let mut raw = self.0.clone();
        raw[8..12].copy_from_slice(&((nodeid >> 32) as u32).to_ne_bytes());
        raw[12..16].copy_from_slice(&(nodeid as u32).to_ne_bytes());
        Handle(raw)
    }

    /// Opens the handle on the mount `dir` is in; the errno on failure.
    fn open_in(&self, dir: &std::path::Path, flags: i32) -> Result<File, i32> {
        let mount = File::open(dir).unwrap();
        let mut raw = self.0.clone();
        let fh = raw.as_mut_ptr() as *mut libc::file_handle;
        // SAFETY: the buffer holds a handle as name_to_handle_at wrote it; the mount fd is
        // open.
        let fd = unsafe { libc::open_by_handle_at(mount.as_raw_fd(), fh, flags) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
        }
        // SAFETY: fd was just returned open by the kernel and is owned here.
        Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    }
}

/// Makes the kernel forget every inode nothing holds, as memory pressure would.
fn drop_caches() {
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
}

fn read_handle(h: &Handle, dir: &std::path::Path) -> Result<String, i32> {
    let mut s = String::new();
    h.open_in(dir, libc::O_RDONLY)?
        .read_to_string(&mut s)
        .unwrap();
    Ok(s)
}

/// Handles of a file with two links (one handle per name), and of a directory, in `dir`,
/// opened after the kernel forgot them; then of the same after they are deleted.
fn handles_after_forgetting(dir: &std::path::Path) -> Vec<(&'static str, Result<String, i32>)> {
    fs::create_dir(dir.join("d")).unwrap();
    fs::write(dir.join("d/f"), b"content").unwrap();
    fs::hard_link(dir.join("d/f"), dir.join("g")).unwrap();
    let (f, g, d) = (
        handle_of(&dir.join("d/f")),
        handle_of(&dir.join("g")),
        handle_of(&dir.join("d")),
    );
    drop_caches();
    let dir_kind = |h: &Handle| {
        h.open_in(dir, libc::O_RDONLY | libc::O_DIRECTORY)
            .map(|d| format!("dir: {}", d.metadata().unwrap().is_dir()))
    };
    let mut out = vec![
        ("file by its first name's handle", read_handle(&f, dir)),
        ("file by its second name's handle", read_handle(&g, dir)),
        ("directory", dir_kind(&d)),
    ];
    fs::remove_file(dir.join("d/f")).unwrap();
    drop_caches();
    out.push(("one name left", read_handle(&f, dir)));
    fs::remove_file(dir.join("g")).unwrap();
    fs::remove_dir(dir.join("d")).unwrap();
    // Past the 2 s a removed file stays readable for racing opens (SEMANTICS.md).
    std::thread::sleep(Duration::from_millis(2500));
    drop_caches();
    out.push(("deleted file", read_handle(&f, dir)));
    out.push(("deleted directory", dir_kind(&d)));
    out
}

#[test]
fn file_handles_of_forgotten_inodes_open_as_on_the_host() {
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let native = handles_after_forgetting(host.path());
    assert_eq!(
        native[0].1,
        Ok("content".into()),
        "the host's disk opens handles"
    );
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    assert_eq!(handles_after_forgetting(&m.path), native);
}

#[test]
fn file_handles_reach_nothing_a_path_could_not() {
    let env = Env::new();
    let full = env.mounted_tenant("acme", "full");
    fs::create_dir_all(full.p("projects/x")).unwrap();
    fs::write(full.p("projects/x/plan.md"), b"plan").unwrap();
    fs::create_dir(full.p("projects/locked")).unwrap();
    fs::write(full.p("projects/locked/f"), b"locked").unwrap();
    fs::create_dir(full.p("hr")).unwrap();
    fs::write(full.p("hr/salaries.csv"), b"secret").unwrap();
    fs::hard_link(full.p("hr/salaries.csv"), full.p("hr/copy.csv")).unwrap();
    env.ok(&[
        "acl",
        "set",
        "--tenant",
        "acme",
        "/projects/locked",
        "agent:bot:---",
    ]);
    let inside = handle_of(&full.p("projects/x/plan.md"));
    let outside = handle_of(&full.p("hr/salaries.csv"));
    let locked = handle_of(&full.p("projects/locked/f"));
    let projects_ino = fs::metadata(full.p("projects")).unwrap().ino();
    let (key, _) = env.key("acme", "agent:bot", &["--root", "/projects"]);
    let sub = env.mount("sub", &key, &[]);
    assert_eq!(
        errno_of(fs::read(sub.p("locked/f")).unwrap_err()),
        libc::EACCES
    );
    drop_caches();
    assert_eq!(read_handle(&inside, &sub.path), Ok("plan".into()));
    assert_eq!(read_handle(&outside, &sub.path).unwrap_err(), libc::ESTALE);
    assert_eq!(read_handle(&locked, &sub.path).unwrap_err(), libc::ESTALE);
    // The sub-tree's own number names the tenant's root in this mount (they swap); the
    // tenant root is outside it.
    let tenant_root = inside.for_node(projects_ino);
    let r = tenant_root.open_in(&sub.path, libc::O_RDONLY | libc::O_DIRECTORY);
    assert_eq!(r.unwrap_err(), libc::ESTALE);
    // Numbers never handed out, and the largest.
    for n in [1 << 40, u64::MAX] {
        assert_eq!(
            read_handle(&inside.for_node(n), &sub.path).unwrap_err(),
            libc::ESTALE
        );
    }
    // The mount's root is its own parent: `..` of it reaches nothing above.
    let root = inside.for_node(1);
    let r = root
        .open_in(&sub.path, libc::O_RDONLY | libc::O_DIRECTORY)
        .unwrap();
    assert_eq!(r.metadata().unwrap().ino(), 1);
}

/// Runs tenantfs for `env` under umask 000, the loosest a caller can have.
fn under_open_umask(env: &Env, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut c = env.cmd(args);
    // SAFETY: umask is async-signal-safe and touches nothing but the child's own state.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "tenantfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file and folder under `root`, with its mode bits.
fn modes_under(root: &std::path::Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), m.mode() & 0o7777, m.is_dir()));
        }
    }
    out
}

#[test]
fn everything_in_the_store_is_private_whatever_the_umask() {
    let dir = tempfile::Builder::new()
        .prefix("tfs-test-")
        .tempdir()
        .unwrap();
    let env = Env {
        store: dir.path().join("store"),
        dir,
        db: common::on_postgres().then(common::PgDb::new),
    };
    match &env.db {
        Some(db) => under_open_umask(&env, &["init", "--meta", &db.url]),
        None => under_open_umask(&env, &["init"]),
    };
    under_open_umask(&env, &["tenant", "create", "acme", "--private"]);
    let key = under_open_umask(
        &env,
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--subject",
            "user:alice",
            "--scope",
            "admin",
        ],
    );
    let bob = under_open_umask(
        &env,
        &["key", "create", "--tenant", "acme", "--subject", "user:bob"],
    );
    let (kf, bf) = (
        env.dir.path().join("alice.key"),
        env.dir.path().join("bob.key"),
    );
    for (f, k) in [(&kf, &key), (&bf, &bob)] {
        fs::write(f, &k.stdout).unwrap();
        fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let mp = env.mountpoint("m");
    let mb = env.mountpoint("b");
    let mount = |mp: &std::path::Path, key: &std::path::Path| {
        let (mp, key) = (mp.to_str().unwrap(), key.to_str().unwrap());
        under_open_umask(&env, &["mount", mp, "--key-file", key]);
    };
    mount(&mp, &kf);
    mount(&mb, &bf);
    for i in 0..40 {
        fs::create_dir_all(mp.join(format!("d{i}/e"))).unwrap();
        fs::write(mp.join(format!("d{i}/e/f")), b"secret").unwrap();
    }
    // A denial, so the audit log exists.
    assert_eq!(
        errno_of(fs::read_dir(mb.join("d0")).unwrap_err()),
        libc::EACCES
    );

    let check = |what: &str, required: &[&str]| {
        let found = modes_under(&env.store);
        for want in required {
            assert!(
                found
                    .iter()
                    .any(|(p, _, _)| p.file_name().unwrap() == *want),
                "{what}: {want} is in the store"
            );
        }
        let objects = found
            .iter()
            .filter(|(p, _, dir)| !dir && p.to_string_lossy().contains("/objects/"));
        assert!(objects.count() >= 40, "{what}: the objects are there");
        for (p, mode, dir) in found
            .iter()
            .chain(&modes_under(&env.dir.path().join("run")))
        {
            let want = if *dir { 0o700 } else { 0o600 };
            assert_eq!(*mode, want, "{what}: {} is {mode:o}", p.display());
        }
    };
    // While mounted, SQLite's -wal and -shm files are there too. A PostgreSQL store keeps
    // its configuration (with the database's address) instead.
    let (live, idle): (&[&str], &[&str]) = if env.on_postgres() {
        (&["store.toml", "acme.log", "audit.log"], &["store.toml"])
    } else {
        (
            &[
                "meta.db",
                "meta.db-wal",
                "meta.db-shm",
                "acme.log",
                "audit.log",
            ],
            &["catalog.db", "meta.db"],
        )
    };
    check("mounted, made under umask 000", live);
    for m in [&mp, &mb] {
        under_open_umask(&env, &["umount", m.to_str().unwrap()]);
    }
    under_open_umask(&env, &["tenant", "list"]);
    check("unmounted", idle);
    if env.on_postgres() {
        return;
    }

    // A store an older release left readable by others is tightened when next opened.
    let meta = env.store.join("tenants/acme/meta.db");
    for f in [env.store.join("catalog.db"), meta.clone()] {
        fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    mount(&mp, &kf);
    assert_eq!(fs::read(mp.join("d1/e/f")).unwrap(), b"secret");
    check("mounted, after opening a 0644 store", live);
    under_open_umask(&env, &["umount", mp.to_str().unwrap()]);
}
