//! Every POSIX op through a real mount, acting through the kernel with std::fs and raw
//! syscalls.

mod common;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::{Env, errno_of, getxattr, listxattr, removexattr, setxattr};
use nix::fcntl::{AT_FDCWD, FallocateFlags, RenameFlags, renameat2};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

fn tick() {
    // Kernel timestamps are fine-grained, but give ctime/mtime comparisons room.
    std::thread::sleep(std::time::Duration::from_millis(20));
}

#[test]
fn create_write_read_and_stat() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    let f = m.p("hello.txt");
    fs::write(&f, b"hello world").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello world");
    let md = fs::metadata(&f).unwrap();
    assert_eq!(md.len(), 11);
    assert!(md.is_file());
    assert_eq!(md.nlink(), 1);
    assert_eq!(md.uid(), nix::unistd::geteuid().as_raw());

    // Overwrite in the middle, extend past the end, read back at offsets.
    let mut file = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    file.seek(SeekFrom::Start(6)).unwrap();
    file.write_all(b"there, and more").unwrap();
    file.seek(SeekFrom::Start(100)).unwrap();
    file.write_all(b"!").unwrap();
    drop(file);
    let data = fs::read(&f).unwrap();
    assert_eq!(data.len(), 101);
    assert_eq!(&data[..21], b"hello there, and more");
    assert!(
        data[21..100].iter().all(|&b| b == 0),
        "a hole reads as zeros"
    );

    // O_APPEND appends at the end.
    let mut a = OpenOptions::new().append(true).open(&f).unwrap();
    a.write_all(b"tail").unwrap();
    drop(a);
    assert!(fs::read(&f).unwrap().ends_with(b"!tail"));

    // O_EXCL on an existing name.
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&f)
        .unwrap_err();
    assert_eq!(errno_of(e), libc::EEXIST);

    // A big write, several FUSE requests long.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(m.p("big.bin"), &big).unwrap();
    assert_eq!(fs::read(m.p("big.bin")).unwrap(), big);
}

#[test]
fn truncate_chmod_chown_and_times() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    let f = m.p("f");
    fs::write(&f, b"0123456789").unwrap();

    let before = fs::metadata(&f).unwrap();
    tick();
    OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(4)
        .unwrap();
    let after = fs::metadata(&f).unwrap();
    assert_eq!(after.len(), 4);
    assert!(after.mtime_nsec() != before.mtime_nsec() || after.mtime() > before.mtime());
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(8)
        .unwrap();
    assert_eq!(
        fs::read(&f).unwrap(),
        b"0123\0\0\0\0",
        "truncate up zero-fills"
    );
    // truncate(2) by path, and O_TRUNC.
    nix::unistd::truncate(&f, 2).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"01");
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&f)
        .unwrap();
    assert_eq!(fs::metadata(&f).unwrap().len(), 0);

    let c0 = fs::metadata(&f).unwrap().ctime_nsec();
    tick();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o4751)).unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4751);
    assert_ne!(md.ctime_nsec(), c0, "chmod updates ctime");

    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    assert_eq!(md.mode() & 0o4000, 0, "chown clears setuid");

    // utimensat with explicit times, UTIME_OMIT and UTIME_NOW.
    let t1 = TimeSpec::new(1_000_000_000, 123_456_789);
    let t2 = TimeSpec::new(1_500_000_000, 987_654_321);
    utimensat(AT_FDCWD, &f, &t1, &t2, UtimensatFlags::FollowSymlink).unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 987_654_321));
    utimensat(
        AT_FDCWD,
        &f,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::UTIME_NOW,
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!(
        (md.atime(), md.atime_nsec()),
        (1_000_000_000, 123_456_789),
        "UTIME_OMIT keeps atime"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((md.mtime() - now).abs() < 5, "UTIME_NOW sets mtime to now");
    // Times before the epoch survive.
    let old = TimeSpec::new(-86_400, 5);
    utimensat(AT_FDCWD, &f, &old, &old, UtimensatFlags::FollowSymlink).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().mtime(), -86_400);
}

#[test]
fn special_files_dirs_and_symlinks() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    nix::unistd::mkfifo(&m.p("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
    assert!(fs::metadata(m.p("fifo")).unwrap().file_type().is_fifo());
    mknod(
        &m.p("sock"),
        SFlag::S_IFSOCK,
        Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    assert!(fs::metadata(m.p("sock")).unwrap().file_type().is_socket());
    mknod(
        &m.p("regular"),
        SFlag::S_IFREG,
        Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    assert!(fs::metadata(m.p("regular")).unwrap().is_file());
    mknod(
        &m.p("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let md = fs::metadata(m.p("null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), nix::sys::stat::makedev(1, 3));
    // nodev: a device node stored in a tenant never opens the host's device.
    assert_eq!(errno_of(File::open(m.p("null")).unwrap_err()), libc::EACCES);

    fs::create_dir(m.p("d")).unwrap();
    fs::create_dir(m.p("d/sub")).unwrap();
    assert_eq!(
        fs::metadata(m.p("d")).unwrap().nlink(),
        3,
        "2 + one subdirectory"
    );
    assert_eq!(
        errno_of(fs::create_dir(m.p("d")).unwrap_err()),
        libc::EEXIST
    );
    assert_eq!(
        errno_of(fs::remove_dir(m.p("d")).unwrap_err()),
        libc::ENOTEMPTY
    );
    fs::remove_dir(m.p("d/sub")).unwrap();
    assert_eq!(fs::metadata(m.p("d")).unwrap().nlink(), 2);
    fs::remove_dir(m.p("d")).unwrap();
    assert_eq!(errno_of(fs::metadata(m.p("d")).unwrap_err()), libc::ENOENT);

    fs::write(m.p("target"), b"pointed at").unwrap();
    std::os::unix::fs::symlink("target", m.p("link")).unwrap();
    assert_eq!(fs::read_link(m.p("link")).unwrap(), Path::new("target"));
    assert_eq!(fs::read(m.p("link")).unwrap(), b"pointed at");
    assert!(
        fs::symlink_metadata(m.p("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    std::os::unix::fs::symlink("/nowhere/at/all", m.p("dangling")).unwrap();
    assert_eq!(
        errno_of(fs::read(m.p("dangling")).unwrap_err()),
        libc::ENOENT
    );
    let long_target = "x/".repeat(2000);
    std::os::unix::fs::symlink(&long_target, m.p("long")).unwrap();
    assert_eq!(fs::read_link(m.p("long")).unwrap().as_os_str().len(), 4000);

    assert_eq!(
        errno_of(fs::remove_file(m.p("missing")).unwrap_err()),
        libc::ENOENT
    );
    fs::create_dir(m.p("dir2")).unwrap();
    assert_eq!(
        errno_of(fs::remove_file(m.p("dir2")).unwrap_err()),
        libc::EISDIR
    );
    assert_eq!(
        errno_of(fs::remove_dir(m.p("target")).unwrap_err()),
        libc::ENOTDIR
    );
}

#[test]
fn hard_links_count_and_touch_ctime() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::write(m.p("a"), b"shared").unwrap();
    let c0 = fs::metadata(m.p("a")).unwrap();
    tick();
    fs::hard_link(m.p("a"), m.p("b")).unwrap();
    let a = fs::metadata(m.p("a")).unwrap();
    let b = fs::metadata(m.p("b")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    assert!(
        (a.ctime(), a.ctime_nsec()) > (c0.ctime(), c0.ctime_nsec()),
        "link updates ctime"
    );
    fs::write(m.p("b"), b"changed via b").unwrap();
    assert_eq!(fs::read(m.p("a")).unwrap(), b"changed via b");
    fs::remove_file(m.p("a")).unwrap();
    assert_eq!(fs::metadata(m.p("b")).unwrap().nlink(), 1);
    assert_eq!(fs::read(m.p("b")).unwrap(), b"changed via b");
    fs::create_dir(m.p("d")).unwrap();
    assert_eq!(
        errno_of(fs::hard_link(m.p("d"), m.p("d2")).unwrap_err()),
        libc::EPERM
    );
    assert_eq!(
        errno_of(fs::hard_link(m.p("b"), m.p("d")).unwrap_err()),
        libc::EEXIST
    );
}

#[test]
fn rename_in_all_its_forms() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::create_dir_all(m.p("x/y")).unwrap();
    fs::create_dir(m.p("z")).unwrap();
    fs::write(m.p("x/f"), b"f").unwrap();
    fs::write(m.p("z/g"), b"g").unwrap();

    // Plain rename across directories; the moved directory's parent link counts follow.
    fs::rename(m.p("x/y"), m.p("z/y")).unwrap();
    assert_eq!(fs::metadata(m.p("x")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(m.p("z")).unwrap().nlink(), 3);
    // Rename over an existing file replaces it.
    fs::rename(m.p("x/f"), m.p("z/g")).unwrap();
    assert_eq!(fs::read(m.p("z/g")).unwrap(), b"f");
    assert!(!m.p("x/f").exists());
    // A directory may not move below itself.
    assert_eq!(
        errno_of(fs::rename(m.p("z"), m.p("z/y/inside")).unwrap_err()),
        libc::EINVAL
    );
    // Over a non-empty directory: ENOTEMPTY; file over dir: EISDIR; dir over file: ENOTDIR.
    fs::write(m.p("z/y/child"), b"").unwrap();
    fs::create_dir(m.p("x/empty")).unwrap();
    assert_eq!(
        errno_of(fs::rename(m.p("x/empty"), m.p("z/y")).unwrap_err()),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno_of(fs::rename(m.p("z/g"), m.p("x/empty")).unwrap_err()),
        libc::EISDIR
    );
    assert_eq!(
        errno_of(fs::rename(m.p("x/empty"), m.p("z/g")).unwrap_err()),
        libc::ENOTDIR
    );
    // Over an empty directory works.
    fs::create_dir(m.p("x/empty2")).unwrap();
    fs::rename(m.p("x/empty"), m.p("x/empty2")).unwrap();

    // RENAME_NOREPLACE.
    fs::write(m.p("n1"), b"1").unwrap();
    fs::write(m.p("n2"), b"2").unwrap();
    let e = renameat2(
        AT_FDCWD,
        &m.p("n1"),
        AT_FDCWD,
        &m.p("n2"),
        RenameFlags::RENAME_NOREPLACE,
    )
    .unwrap_err();
    assert_eq!(e, nix::errno::Errno::EEXIST);
    renameat2(
        AT_FDCWD,
        &m.p("n1"),
        AT_FDCWD,
        &m.p("n3"),
        RenameFlags::RENAME_NOREPLACE,
    )
    .unwrap();

    // RENAME_EXCHANGE swaps a file and a directory across parents.
    fs::create_dir(m.p("x/dd")).unwrap();
    fs::write(m.p("x/dd/inner"), b"in").unwrap();
    renameat2(
        AT_FDCWD,
        &m.p("n2"),
        AT_FDCWD,
        &m.p("x/dd"),
        RenameFlags::RENAME_EXCHANGE,
    )
    .unwrap();
    assert_eq!(fs::read(m.p("x/dd")).unwrap(), b"2");
    assert_eq!(fs::read(m.p("n2/inner")).unwrap(), b"in");
    let e = renameat2(
        AT_FDCWD,
        &m.p("n3"),
        AT_FDCWD,
        &m.p("nothing"),
        RenameFlags::RENAME_EXCHANGE,
    )
    .unwrap_err();
    assert_eq!(e, nix::errno::Errno::ENOENT);

    // An editor's save: write a temp file, rename it over the original.
    fs::write(m.p("doc.txt"), b"v1").unwrap();
    fs::write(m.p(".doc.txt.swp"), b"v2").unwrap();
    fs::rename(m.p(".doc.txt.swp"), m.p("doc.txt")).unwrap();
    assert_eq!(fs::read(m.p("doc.txt")).unwrap(), b"v2");

    let names: Vec<String> = fs::read_dir(&m.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.contains(&".doc.txt.swp".to_string()));
}

#[test]
fn readdir_lists_everything_once() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::create_dir(m.p("many")).unwrap();
    for i in 0..1500 {
        fs::write(m.p(&format!("many/file-{i:05}")), b"").unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(m.p("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 1500);
    assert_eq!(names[0], "file-00000");
    assert_eq!(names[1499], "file-01499");
    names.dedup();
    assert_eq!(names.len(), 1500, "no duplicates across readdir batches");
    // `ls -a` sees the dot entries, and `ls -l` (readdirplus) the attributes.
    let out = common::sh(&m.p("many"), "ls -a | head -2");
    assert_eq!(out, ".\n..\n");
    let out = common::sh(&m.path, "ls -l many | wc -l");
    assert_eq!(out.trim(), "1501");
}

#[test]
fn names_are_raw_bytes_and_limited_to_255() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    let raw = OsStr::from_bytes(b"caf\xe9-\xff\xfe.txt");
    fs::write(m.path.join(raw), b"latin1").unwrap();
    let listed: Vec<_> = fs::read_dir(&m.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        listed.iter().any(|n| n.as_bytes() == raw.as_bytes()),
        "{listed:?}"
    );
    assert_eq!(fs::read(m.path.join(raw)).unwrap(), b"latin1");

    let ok = "n".repeat(255);
    fs::write(m.p(&ok), b"").unwrap();
    let long = "n".repeat(256);
    assert_eq!(
        errno_of(fs::write(m.p(&long), b"").unwrap_err()),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno_of(fs::metadata(m.p(&long)).unwrap_err()),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno_of(fs::create_dir(m.p(&long)).unwrap_err()),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno_of(fs::rename(m.p(&ok), m.p(&long)).unwrap_err()),
        libc::ENAMETOOLONG
    );
}

#[test]
fn unlinked_open_file_lives_until_last_close() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.p("tmp"))
        .unwrap();
    f.write_all(b"still here").unwrap();
    fs::remove_file(m.p("tmp")).unwrap();
    assert!(!m.p("tmp").exists());
    f.write_all(b", and growing").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here, and growing");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    let used_open: serde_json::Value =
        serde_json::from_str(&env.ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!(used_open["inodes_used"], 2, "the open orphan still counts");
    drop(f);
    let objects = env.store.join("tenants/acme/objects");
    let count = || walk(&objects);
    assert!(
        common::wait_until(std::time::Duration::from_secs(2), || count() == 0).is_some(),
        "space reclaimed at last close"
    );
    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!(show["inodes_used"], 1);
    assert_eq!(show["bytes_used"], 0);
}

fn walk(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
        })
        .unwrap_or(0)
}

#[test]
fn fsync_fallocate_and_statfs() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.p("f"))
        .unwrap();
    nix::fcntl::fallocate(&f, FallocateFlags::empty(), 0, 1 << 20).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    nix::fcntl::fallocate(&f, FallocateFlags::FALLOC_FL_KEEP_SIZE, 0, 2 << 20).unwrap();
    assert_eq!(
        f.metadata().unwrap().len(),
        1 << 20,
        "KEEP_SIZE keeps the size"
    );
    (&f).write_all(&[7u8; 8192]).unwrap();
    nix::fcntl::fallocate(
        &f,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        4096,
    )
    .unwrap();
    let mut back = vec![1u8; 8192];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut back, 0).unwrap();
    assert!(back[..4096].iter().all(|&b| b == 0) && back[4096..].iter().all(|&b| b == 7));
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    File::open(&m.path).unwrap().sync_all().unwrap();

    let st = nix::sys::statvfs::statvfs(&m.path).unwrap();
    assert_eq!(st.name_max(), 255);
    assert!(st.blocks() > 0 && st.blocks_available() > 0);
    let used = (st.blocks() - st.blocks_free()) * st.fragment_size();
    assert!(used >= 1 << 20, "df counts this tenant's bytes: {used}");
}

#[test]
fn user_xattrs_round_trip_and_host_namespaces_are_closed() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    let f = m.p("f");
    fs::write(&f, b"").unwrap();
    setxattr(&f, "user.color", b"blue", 0).unwrap();
    assert_eq!(getxattr(&f, "user.color").unwrap(), b"blue");
    let big = vec![b'x'; 65536];
    setxattr(&f, "user.big", &big, 0).unwrap();
    assert_eq!(getxattr(&f, "user.big").unwrap(), big);
    assert_eq!(listxattr(&f), ["user.big", "user.color"]);
    assert_eq!(
        errno_of(setxattr(&f, "user.color", b"red", libc::XATTR_CREATE).unwrap_err()),
        libc::EEXIST
    );
    assert_eq!(
        errno_of(setxattr(&f, "user.nope", b"x", libc::XATTR_REPLACE).unwrap_err()),
        libc::ENODATA
    );
    setxattr(&f, "user.color", b"red", libc::XATTR_REPLACE).unwrap();
    assert_eq!(getxattr(&f, "user.color").unwrap(), b"red");
    removexattr(&f, "user.color").unwrap();
    assert_eq!(
        errno_of(getxattr(&f, "user.color").unwrap_err()),
        libc::ENODATA
    );
    assert_eq!(
        errno_of(removexattr(&f, "user.color").unwrap_err()),
        libc::ENODATA
    );
    // Host namespaces are not the tenant's to write.
    for name in ["security.evil", "trusted.evil", "system.evil"] {
        let e = errno_of(setxattr(&f, name, b"x", 0).unwrap_err());
        assert!(e == libc::EOPNOTSUPP || e == libc::EPERM, "{name}: {e}");
        assert_eq!(
            errno_of(getxattr(&f, name).unwrap_err()),
            libc::EOPNOTSUPP,
            "{name}"
        );
    }
    assert_eq!(listxattr(&f), ["user.big"]);
    // Directories take xattrs too; getfattr/setfattr work.
    fs::create_dir(m.p("d")).unwrap();
    common::sh(
        &m.path,
        "setfattr -n user.k -v v d && getfattr -n user.k --only-values d | grep -qx v",
    );
}

#[test]
fn link_stops_at_link_max_with_emlink() {
    // pjdfstest skips its LINK_MAX test on every FUSE filesystem (glibc's pathconf cannot
    // know a FUSE filesystem's limit), so this one does the same check: 65000, as on ext4.
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::write(m.p("f"), b"").unwrap();
    let ino = fs::metadata(m.p("f")).unwrap().ino();
    env.tenant_sql(
        "acme",
        &format!("UPDATE inodes SET nlink = 64998 WHERE ino = {ino}"),
    );
    fs::hard_link(m.p("f"), m.p("g")).unwrap();
    assert_eq!(fs::metadata(m.p("g")).unwrap().nlink(), 64999);
    fs::hard_link(m.p("f"), m.p("h")).unwrap();
    assert_eq!(
        errno_of(fs::hard_link(m.p("f"), m.p("i")).unwrap_err()),
        libc::EMLINK
    );
    assert!(!m.p("i").exists());
}

/// Runs `script` in `dir` as `nobody`, which must succeed.
fn nobody_in(dir: &Path, script: &str) {
    let (ok, err) = common::as_nobody(&format!("cd {} && {script}", dir.display()));
    assert!(ok, "`{script}` as nobody: {err}");
}

#[test]
fn writes_and_truncates_by_others_clear_set_id_bits_as_on_ext4() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &["--allow-other"]);
    fs::set_permissions(&m.path, fs::Permissions::from_mode(0o777)).unwrap();
    let f = m.p("tool");
    fs::write(&f, b"v1\n").unwrap();
    std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    let setid = |p: &Path| fs::set_permissions(p, fs::Permissions::from_mode(0o6775)).unwrap();
    setid(&f);
    // Root (CAP_FSETID) keeps the bits when it writes.
    OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(b"root\n")
        .unwrap();
    assert_eq!(mode(&f), 0o6775);
    // Anyone else's write clears set-user-ID, and set-group-ID as the group may execute.
    let nobody = |script: &str| nobody_in(&m.path, script);
    nobody("echo nobody >> tool");
    assert_eq!(mode(&f), 0o775);
    // Without group execute, set-group-ID marks mandatory locking and stays.
    fs::set_permissions(&f, fs::Permissions::from_mode(0o6764)).unwrap();
    nobody("echo again >> tool");
    assert_eq!(mode(&f), 0o2764);
    // A truncate by anyone else clears them too; the content is as written.
    setid(&f);
    assert_eq!(fs::read(&f).unwrap(), b"v1\nroot\nnobody\nagain\n");
    nobody("truncate -s 3 tool");
    assert_eq!(mode(&f), 0o775);
    assert_eq!(fs::read(&f).unwrap(), b"v1\n");
    // chown(-1, -1) clears them, as Linux does for files.
    setid(&f);
    nix::unistd::chown(&f, None, None).unwrap();
    assert_eq!(mode(&f), 0o775);
    // Directories keep set-group-ID through chown.
    fs::create_dir(m.p("d")).unwrap();
    fs::set_permissions(m.p("d"), fs::Permissions::from_mode(0o2775)).unwrap();
    std::os::unix::fs::chown(m.p("d"), Some(65534), None).unwrap();
    assert_eq!(mode(&m.p("d")), 0o2775);
}

#[test]
fn a_write_clears_set_id_bits_that_another_mount_added() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let a = env.mount("a", &key, &["--allow-other"]);
    let b = env.mount("b", &key, &["--allow-other"]);
    fs::set_permissions(&a.path, fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(a.p("tool"), b"v1\n").unwrap();
    std::os::unix::fs::chown(a.p("tool"), Some(65534), Some(65534)).unwrap();
    fs::set_permissions(a.p("tool"), fs::Permissions::from_mode(0o775)).unwrap();
    let nobody = |script: &str| nobody_in(&b.path, script);
    // A write in b while the file has no set-ID bits: b's kernel marks it as having none
    // and, from then on, leaves clearing them to the daemon's write path.
    let overwrite = "printf x | dd of=tool conv=notrunc status=none";
    assert!(common::wait_until(Duration::from_secs(3), || b.p("tool").exists()).is_some());
    nobody(overwrite);
    // a adds them; b still holds the attributes it had, so only the daemon knows.
    fs::set_permissions(a.p("tool"), fs::Permissions::from_mode(0o6775)).unwrap();
    nobody(overwrite);
    let mode = || fs::metadata(a.p("tool")).unwrap().mode() & 0o7777;
    let cleared = common::wait_until(Duration::from_secs(3), || mode() == 0o775);
    assert!(cleared.is_some(), "b's write left mode {:o}", mode());
}

/// Holds `victim` open, renames `src` over it, and reports what the descriptor sees:
/// (fstat nlink, mkdirat errno, parent nlink).
fn rename_over_open_dir(root: &Path) -> (u64, i32, u64) {
    fs::create_dir(root.join("victim")).unwrap();
    fs::create_dir(root.join("src")).unwrap();
    let held = File::open(root.join("victim")).unwrap();
    fs::rename(root.join("src"), root.join("victim")).unwrap();
    let st = nix::sys::stat::fstat(&held).expect("fstat on the renamed-over directory");
    assert!(SFlag::from_bits_truncate(st.st_mode).contains(SFlag::S_IFDIR));
    let made = nix::sys::stat::mkdirat(&held, "inside", Mode::from_bits_truncate(0o755));
    let errno = made.err().map_or(0, |e| e as i32);
    let parent = fs::metadata(root).unwrap().nlink();
    drop(held);
    fs::remove_dir(root.join("victim")).unwrap();
    (st.st_nlink as u64, errno, parent)
}

#[test]
fn renaming_over_an_open_directory_keeps_its_descriptor_working() {
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let want = rename_over_open_dir(host.path());
    assert_eq!(want, (0, libc::ENOENT, 3));
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    assert_eq!(rename_over_open_dir(&m.path), want);
    drop(m);
    env.fsck_clean("acme");
}

/// The mode of a root-owned 2666 file (group `gid`) in `dir` after each of a write, an
/// allocation, a punched hole and a zeroed range by `nobody`.
fn sgid_after_changes_by_nobody(dir: &Path, gid: u32) -> Vec<(String, u32)> {
    let f = dir.join("sgid");
    let mut seen = Vec::new();
    for op in [
        "echo more >> sgid",
        "fallocate -l 64k sgid",
        "fallocate -p -o 0 -l 4k sgid",
        "fallocate -z -o 4k -l 4k sgid",
    ] {
        fs::write(&f, b"data\n").unwrap();
        std::os::unix::fs::chown(&f, Some(0), Some(gid)).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o2666)).unwrap();
        nobody_in(dir, op);
        seen.push((op.to_string(), fs::metadata(&f).unwrap().mode() & 0o7777));
    }
    seen
}

#[test]
fn set_group_id_goes_at_writes_and_fallocate_by_callers_outside_the_group_as_on_linux_6_2() {
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    fs::set_permissions(host.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &["--allow-other"]);
    fs::set_permissions(&m.path, fs::Permissions::from_mode(0o777)).unwrap();
    // Outside the file's group (root), and in it (nobody's own group).
    for (gid, want) in [(0, 0o666), (65534, 0o2666)] {
        let native = sgid_after_changes_by_nobody(host.path(), gid);
        assert!(
            native.iter().all(|(_, mode)| *mode == want),
            "native: {native:?}"
        );
        assert_eq!(sgid_after_changes_by_nobody(&m.path, gid), native);
    }
}

/// Where `SEEK_DATA` and `SEEK_HOLE` land in sparse files made in `dir` (offsets, or the
/// errno), for files with one hole, no data at all, and no content.
fn holes_in(dir: &Path) -> Vec<Result<i64, i32>> {
    use nix::unistd::{Whence, lseek};
    let sparse = dir.join("sparse");
    let f = File::create(&sparse).unwrap();
    f.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[7u8; 4096], 512 << 10).unwrap();
    drop(f);
    File::create(dir.join("hole"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    File::create(dir.join("empty")).unwrap();
    let mut out = Vec::new();
    for (name, offset, whence) in [
        ("sparse", 0, Whence::SeekData),
        ("sparse", 0, Whence::SeekHole),
        ("sparse", 512 << 10, Whence::SeekHole),
        ("sparse", 600 << 10, Whence::SeekData),
        ("sparse", 1 << 20, Whence::SeekHole),
        ("hole", 0, Whence::SeekData),
        ("hole", 4096, Whence::SeekHole),
        ("empty", 0, Whence::SeekHole),
    ] {
        let f = File::open(dir.join(name)).unwrap();
        out.push(lseek(&f, offset, whence).map_err(|e| e as i32));
    }
    out
}

#[test]
fn seek_data_and_seek_hole_find_the_holes_as_on_the_host() {
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let native = holes_in(host.path());
    assert_eq!(native[0], Ok(512 << 10), "the host's disk keeps holes");
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    assert_eq!(holes_in(&m.path), native);
    // cp finds the holes too, when it looks for them.
    common::sh(&m.path, "cp --sparse=always sparse copy && cmp sparse copy");
}

/// Block counts of sparse, written and preallocated files made the same way in `dir`: while
/// open, after close, and as `du` and a sparse-aware `cp` to the host's disk see them.
fn blocks_in(dir: &Path, out_dir: &Path) -> Vec<(&'static str, u64)> {
    let blocks = |p: &Path| fs::metadata(p).unwrap().blocks();
    let mut out = Vec::new();
    let big = dir.join("big");
    File::create(&big).unwrap().set_len(1 << 30).unwrap();
    out.push(("1 GiB by truncate", blocks(&big)));
    let f = File::create(dir.join("sparse")).unwrap();
    f.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[7u8; 4096], 512 << 10).unwrap();
    out.push(("one block written, open", f.metadata().unwrap().blocks()));
    drop(f);
    out.push(("one block written, closed", blocks(&dir.join("sparse"))));
    let f = File::create(dir.join("prealloc")).unwrap();
    nix::fcntl::fallocate(
        &f,
        nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        1 << 20,
    )
    .unwrap();
    out.push((
        "1 MiB kept-size fallocate, open",
        f.metadata().unwrap().blocks(),
    ));
    assert_eq!(f.metadata().unwrap().len(), 0);
    drop(f);
    out.push((
        "1 MiB kept-size fallocate, closed",
        blocks(&dir.join("prealloc")),
    ));
    let f = OpenOptions::new()
        .write(true)
        .open(dir.join("prealloc"))
        .unwrap();
    f.set_len(1 << 20).unwrap();
    nix::fcntl::fallocate(
        &f,
        nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        512 << 10,
    )
    .unwrap();
    drop(f);
    out.push(("half punched out", blocks(&dir.join("prealloc"))));
    let du = common::sh(dir, "du -k big sparse prealloc | cut -f1 | paste -sd,");
    out.push(("du -k of the three, summed", {
        du.trim()
            .split(',')
            .map(|k| k.parse::<u64>().unwrap())
            .sum()
    }));
    let copy = out_dir.join("copy");
    let status = std::process::Command::new("cp")
        .arg("--sparse=auto")
        .arg(&big)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    out.push(("cp --sparse=auto of the 1 GiB file", blocks(&copy)));
    fs::remove_file(&copy).unwrap();
    out
}

#[test]
fn block_counts_are_what_the_content_takes_as_on_the_host() {
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let copies = tempfile::tempdir_in("/var/tmp").unwrap();
    let native = blocks_in(host.path(), copies.path());
    assert_eq!(
        native[0],
        ("1 GiB by truncate", 0),
        "the host's disk keeps holes"
    );
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    assert_eq!(blocks_in(&m.path, copies.path()), native);
    // And after a remount, from what the store recorded.
    drop(m);
    let m = env.mounted_tenant_again("m");
    let closed = [
        ("big", native[0].1),
        ("sparse", native[2].1),
        ("prealloc", native[5].1),
    ];
    for (name, want) in closed {
        assert_eq!(
            fs::metadata(m.path.join(name)).unwrap().blocks(),
            want,
            "{name}"
        );
    }
}

/// Whether each of a series of reads moved the access time, under relatime's rules, for a
/// file and a directory in `dir`.
fn atime_moves(dir: &Path) -> Vec<(&'static str, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = dir.join("read-me");
    let d = dir.join("list-me");
    fs::write(&f, b"content\n").unwrap();
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("x"), b"").unwrap();
    let atime = |p: &Path| {
        fs::metadata(p).unwrap().atime_nsec() + fs::metadata(p).unwrap().atime() * 1_000_000_000
    };
    let set_atime = |p: &Path, secs_ago: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let m = fs::metadata(p).unwrap();
        utimensat(
            AT_FDCWD,
            p,
            &TimeSpec::new(now - secs_ago, 0),
            &TimeSpec::new(m.mtime(), m.mtime_nsec()),
            UtimensatFlags::FollowSymlink,
        )
        .unwrap();
    };
    let mut out = Vec::new();
    let mut step = |what: &'static str, p: &Path, act: &dyn Fn()| {
        let before = atime(p);
        tick();
        act();
        out.push((what, atime(p) != before));
    };
    let cat = || drop(fs::read(&f).unwrap());
    // atime older than mtime: a read moves it.
    let m = fs::metadata(&f).unwrap().mtime();
    utimensat(
        AT_FDCWD,
        &f,
        &TimeSpec::new(m - 10, 0),
        &TimeSpec::new(m, 0),
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    step("read after a change", &f, &cat);
    step("read again", &f, &cat);
    set_atime(&f, 2 * 86400);
    step("read a day later", &f, &cat);
    set_atime(&f, 2 * 86400);
    step("read with O_NOATIME", &f, &|| {
        let mut g = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(&f)
            .unwrap();
        g.read_to_end(&mut Vec::new()).unwrap();
    });
    fs::write(d.join("y"), b"").unwrap();
    let ls = || assert!(fs::read_dir(&d).unwrap().count() > 0);
    step("list after a change", &d, &ls);
    step("list again", &d, &ls);
    out
}

#[test]
fn access_times_follow_relatime_as_on_the_host_and_noatime_turns_them_off() {
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let native = atime_moves(host.path());
    assert_eq!(
        native,
        [
            ("read after a change", true),
            ("read again", false),
            ("read a day later", true),
            ("read with O_NOATIME", false),
            ("list after a change", true),
            ("list again", false)
        ],
        "the host's disk is mounted relatime"
    );
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    assert_eq!(atime_moves(&m.path), native);
    // Written to the store: another mount of the tenant sees it after a remount.
    let seen = fs::metadata(m.p("read-me")).unwrap().atime();
    drop(m);
    let m = env.mount("m", &key, &["--noatime"]);
    assert_eq!(fs::metadata(m.p("read-me")).unwrap().atime(), seen);
    let moved = atime_moves(&m.path);
    assert!(
        moved.iter().all(|(_, moved)| !moved),
        "--noatime: {moved:?}"
    );
    drop(m);
    env.fsck_clean("acme");
}
