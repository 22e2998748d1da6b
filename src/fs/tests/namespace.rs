//! The namespace and file data: create, read, write, links, renames, listings, ghosts, handles.

use super::*;

#[test]
fn create_write_read_and_attributes() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let (a, fh) = fs
        .create(&CTX, ROOT_INO, b"a", 0o666, 0o022, libc::O_RDWR)
        .unwrap();
    assert_eq!(
        (a.perm, a.uid, a.gid, a.nlink, a.size),
        (0o644, 1000, 1000, 1, 0)
    );
    assert_eq!(fs.write(fh, 3, b"xyz").unwrap(), 3);
    // Live size is visible before the handle is closed.
    assert_eq!(fs.getattr(a.ino).unwrap().size, 6);
    assert_eq!(fs.read(fh, 0, 100).unwrap(), b"\0\0\0xyz");
    assert_eq!(fs.read(fh, 6, 100).unwrap(), b"");
    fs.release(fh).unwrap();
    assert_eq!(
        f.meta().read().inode(a.ino).unwrap().unwrap().size,
        6,
        "written back at release"
    );
    assert_eq!(f.meta().read().usage().unwrap(), (6, 2));
    assert!(matches!(
        fs.create(&CTX, ROOT_INO, b"a", 0o644, 0, libc::O_EXCL),
        Err(FsError::Exists)
    ));
    // Without O_EXCL the kernel is told to look the name up again and open it.
    assert!(matches!(
        fs.create(&CTX, ROOT_INO, b"a", 0o644, 0, 0),
        Err(FsError::Stale)
    ));
    assert!(matches!(
        fs.lookup(ROOT_INO, b"nope"),
        Err(FsError::NotFound)
    ));
    assert!(matches!(fs.lookup(a.ino, b"x"), Err(FsError::NotDir)));
}

#[test]
fn append_handles_write_at_the_end() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "log", b"one\n");
    let fh = fs.open(ino, libc::O_WRONLY | libc::O_APPEND).unwrap();
    fs.write(fh, 0, b"two\n").unwrap();
    fs.release(fh).unwrap();
    assert_eq!(read_all(&fs, ino), b"one\ntwo\n");
    let ro = fs.open(ino, libc::O_RDONLY).unwrap();
    assert!(matches!(fs.write(ro, 0, b"x"), Err(FsError::BadHandle)));
}

#[test]
fn names_are_checked() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let long = vec![b'a'; 256];
    assert!(matches!(
        fs.mkdir(&CTX, ROOT_INO, &long, 0o755, 0),
        Err(FsError::NameTooLong)
    ));
    assert!(matches!(
        fs.lookup(ROOT_INO, &long),
        Err(FsError::NameTooLong)
    ));
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert!(
            matches!(
                fs.mkdir(&CTX, ROOT_INO, bad, 0o755, 0),
                Err(FsError::Invalid)
            ),
            "{bad:?}"
        );
    }
    fs.mkdir(&CTX, ROOT_INO, &vec![b'a'; 255], 0o755, 0)
        .unwrap();
    fs.mkdir(&CTX, ROOT_INO, b"\xff\xfe", 0o755, 0).unwrap();
    assert!(fs.lookup(ROOT_INO, b"\xff\xfe").is_ok());
}

#[test]
fn unlinked_open_file_is_reclaimed_at_last_release() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "tmp", b"data");
    let fh1 = fs.open(ino, libc::O_RDWR).unwrap();
    let fh2 = fs.open(ino, libc::O_RDONLY).unwrap();
    fs.unlink(ROOT_INO, b"tmp").unwrap();
    assert!(matches!(
        fs.lookup(ROOT_INO, b"tmp"),
        Err(FsError::NotFound)
    ));
    assert_eq!(fs.getattr(ino).unwrap().nlink, 0);
    fs.write(fh1, 4, b"+more").unwrap();
    assert_eq!(fs.read(fh2, 0, 100).unwrap(), b"data+more");
    fs.release(fh1).unwrap();
    assert_eq!(f.objects(&fs), 1, "still open once");
    fs.release(fh2).unwrap();
    assert_eq!(f.objects(&fs), 0);
    assert!(f.meta().read().inode(ino).unwrap().is_none());
    assert_eq!(f.meta().read().usage().unwrap(), (0, 1));
    assert!(
        f.meta().read().gc_pending().unwrap().len() <= 1,
        "gc rows go in the next transaction"
    );
    fs.mkdir(&CTX, ROOT_INO, b"d", 0o755, 0).unwrap();
    assert!(f.meta().read().gc_pending().unwrap().is_empty());
}

#[test]
fn hard_links_share_content_and_count() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "a", b"x");
    let d = fs.mkdir(&CTX, ROOT_INO, b"d", 0o755, 0).unwrap().ino;
    assert_eq!(fs.link(ino, d, b"b").unwrap().nlink, 2);
    assert!(matches!(
        fs.link(d, ROOT_INO, b"dl"),
        Err(FsError::NotPermitted)
    ));
    fs.unlink(ROOT_INO, b"a").unwrap();
    assert_eq!(fs.lookup(d, b"b").unwrap().nlink, 1);
    assert_eq!(names(&fs, d), [".", "..", "b"]);
    assert_eq!(read_all(&fs, ino), b"x");
    fs.unlink(d, b"b").unwrap();
    fs.purge_ghosts(true).unwrap();
    assert_eq!(f.objects(&fs), 0);
}

#[test]
fn rename_rules() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let none = RenameFlags::default();
    let a = fs.mkdir(&CTX, ROOT_INO, b"a", 0o755, 0).unwrap().ino;
    let b = fs.mkdir(&CTX, a, b"b", 0o755, 0).unwrap().ino;
    assert!(
        matches!(
            fs.rename(ROOT_INO, b"a", b, b"x", none),
            Err(FsError::Invalid)
        ),
        "no loops"
    );
    let c = fs.mkdir(&CTX, ROOT_INO, b"c", 0o755, 0).unwrap().ino;
    fs.rename(a, b"b", c, b"b", none).unwrap();
    assert_eq!(fs.getattr(a).unwrap().nlink, 2);
    assert_eq!(fs.getattr(c).unwrap().nlink, 3);
    assert_eq!(f.meta().read().dir_parent(b).unwrap(), Some(c));

    let x = file(&fs, ROOT_INO, "x", b"x");
    let y = file(&fs, ROOT_INO, "y", b"y");
    let noreplace = RenameFlags {
        noreplace: true,
        exchange: false,
    };
    assert!(matches!(
        fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", noreplace),
        Err(FsError::Exists)
    ));
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", exchange).unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"x").unwrap().ino, y);
    fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", none).unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"y").unwrap().ino, y);
    fs.purge_ghosts(true).unwrap();
    assert!(
        f.meta().read().inode(x).unwrap().is_none(),
        "the replaced file is gone"
    );
    assert!(matches!(
        fs.rename(ROOT_INO, b"y", ROOT_INO, b"c", none),
        Err(FsError::IsDir)
    ));
    assert!(matches!(
        fs.rename(ROOT_INO, b"c", ROOT_INO, b"y", none),
        Err(FsError::NotDir)
    ));
    assert!(matches!(
        fs.rename(ROOT_INO, b"a", ROOT_INO, b"c", none),
        Err(FsError::NotEmpty)
    ));
    // Exchanging a file and a directory across parents moves the parent links too.
    fs.rename(ROOT_INO, b"y", c, b"b", exchange).unwrap();
    assert_eq!(fs.getattr(c).unwrap().nlink, 2);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 5);
    assert_eq!(f.meta().read().dir_parent(b).unwrap(), Some(ROOT_INO));
}

#[test]
fn readdir_streams_are_snapshots_with_stable_cookies() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    for i in 0..10 {
        file(&fs, ROOT_INO, &format!("f{i}"), b"");
    }
    let fh = fs.opendir(ROOT_INO).unwrap();
    let first = fs.readdir(fh, ROOT_INO, 0, 5, false).unwrap();
    assert_eq!(first[0].name, b".");
    assert_eq!(first[1].name, b"..");
    // Changes after the snapshot do not disturb the stream.
    fs.unlink(ROOT_INO, b"f5").unwrap();
    file(&fs, ROOT_INO, "new", b"");
    let mut seen: Vec<Vec<u8>> = first.iter().map(|e| e.name.clone()).collect();
    let mut offset = first.last().unwrap().cookie;
    loop {
        let batch = fs.readdir(fh, ROOT_INO, offset, 3, false).unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.cookie;
        seen.extend(batch.into_iter().map(|e| e.name));
    }
    assert_eq!(seen.len(), 12);
    assert!(seen.contains(&b"f5".to_vec()) && !seen.contains(&b"new".to_vec()));
    // Rewinding takes a new snapshot.
    let again: Vec<Vec<u8>> = fs
        .readdir(fh, ROOT_INO, 0, 100, true)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(again.contains(&b"new".to_vec()) && !again.contains(&b"f5".to_vec()));
    fs.releasedir(fh).unwrap();
    assert!(matches!(
        fs.readdir(fh, ROOT_INO, 3, 10, false),
        Err(FsError::BadHandle)
    ));
}

#[test]
fn a_read_only_core_refuses_every_change() {
    let f = Fixture::new();
    {
        let (fs, _s) = f.core(false);
        file(&fs, ROOT_INO, "f", b"x");
    }
    let (fs, _s) = f.core(true);
    let ino = fs.lookup(ROOT_INO, b"f").unwrap().ino;
    let ro = |r: FsResult<()>| assert!(matches!(r, Err(FsError::ReadOnly)), "{r:?}");
    ro(fs.create(&CTX, ROOT_INO, b"n", 0o644, 0, 0).map(drop));
    ro(fs.mkdir(&CTX, ROOT_INO, b"n", 0o755, 0).map(drop));
    ro(fs
        .mknod(&CTX, ROOT_INO, b"n", libc::S_IFIFO | 0o644, 0, 0)
        .map(drop));
    ro(fs.symlink(&CTX, ROOT_INO, b"n", b"f").map(drop));
    ro(fs.link(ino, ROOT_INO, b"n").map(drop));
    ro(fs.unlink(ROOT_INO, b"f"));
    ro(fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", RenameFlags::default()));
    ro(fs
        .setattr(
            ino,
            SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .map(drop));
    ro(fs.setxattr(ino, b"user.a", b"1", XattrMode::Any));
    ro(fs.open(ino, libc::O_WRONLY).map(drop));
    assert_eq!(read_all(&fs, ino), b"x");
}

#[test]
fn a_stopped_core_refuses_everything_but_release() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "f", b"x");
    let fh = fs.open(ino, libc::O_RDONLY).unwrap();
    fs.stop(Stop::Revoked);
    assert!(matches!(fs.getattr(ino), Err(FsError::Revoked)));
    assert!(matches!(fs.read(fh, 0, 1), Err(FsError::Revoked)));
    assert!(matches!(fs.lookup(ROOT_INO, b"f"), Err(FsError::Revoked)));
    assert!(matches!(fs.statfs(), Err(FsError::Revoked)));
    assert_eq!(FsError::Revoked.errno(), libc::EKEYREVOKED);
    fs.release(fh).unwrap();
    fs.stop(Stop::Expired);
    assert_eq!(fs.opendir(ROOT_INO).unwrap_err().errno(), libc::EKEYEXPIRED);
}

#[test]
fn only_the_user_xattr_namespace_is_stored() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "f", b"");
    fs.setxattr(ino, b"user.a", b"1", XattrMode::Create)
        .unwrap();
    assert!(matches!(
        fs.setxattr(ino, b"user.a", b"2", XattrMode::Create),
        Err(FsError::Exists)
    ));
    assert!(matches!(
        fs.setxattr(ino, b"user.b", b"2", XattrMode::Replace),
        Err(FsError::NoXattr)
    ));
    assert!(matches!(
        fs.setxattr(ino, b"user.v", &vec![0; 65537], XattrMode::Any),
        Err(FsError::TooBig)
    ));
    for ns in [
        &b"security.x"[..],
        b"trusted.x",
        b"system.posix_acl_access",
        b"tenantfs.x",
        b"user.",
    ] {
        assert!(
            matches!(
                fs.setxattr(ino, ns, b"1", XattrMode::Any),
                Err(FsError::NotSupported)
            ),
            "{ns:?}"
        );
        let read = fs.getxattr(ino, ns);
        if ns.starts_with(b"tenantfs.") || ns == b"user." {
            assert!(matches!(read, Err(FsError::NoXattr)), "{ns:?}");
        } else {
            assert!(matches!(read, Err(FsError::NotSupported)), "{ns:?}");
        }
    }
    assert_eq!(fs.listxattr(ino).unwrap(), b"user.a\0");
    fs.removexattr(ino, b"user.a").unwrap();
    assert!(fs.listxattr(ino).unwrap().is_empty());
}

#[test]
fn recovery_after_a_crash_restores_sizes_and_reclaims_orphans() {
    let f = Fixture::new();
    let (fs, session) = f.core(false);
    let kept = file(&fs, ROOT_INO, "kept", b"abc");
    let (a, writing) = fs
        .create(&CTX, ROOT_INO, b"writing", 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(writing, 0, &[7u8; 10_000]).unwrap();
    let orphan = file(&fs, ROOT_INO, "orphan", b"zzz");
    let held = fs.open(orphan, libc::O_RDONLY).unwrap();
    fs.unlink(ROOT_INO, b"orphan").unwrap();
    let growing = fs.open(kept, libc::O_RDWR).unwrap();
    fs.write(growing, 3, b"defg").unwrap();
    // The daemon dies: no release, no shutdown; its session lock goes with it.
    std::mem::forget(fs);
    drop(session);
    assert_eq!(
        f.meta().read().inode(a.ino).unwrap().unwrap().size,
        0,
        "size was only in memory"
    );

    let (fs, _s) = f.core(false);
    assert_eq!(fs.getattr(a.ino).unwrap().size, 10_000);
    assert_eq!(read_all(&fs, kept), b"abcdefg");
    assert!(fs.getattr(orphan).is_err());
    assert_eq!(f.objects(&fs), 2);
    assert_eq!(f.meta().read().usage().unwrap(), (10_007, 3));
    assert!(
        f.meta()
            .read()
            .sessions_with_state()
            .unwrap()
            .iter()
            .all(|s| s == &_s.id)
    );
    let _ = (held, writing, growing);
}

#[test]
fn a_live_sessions_state_is_left_alone() {
    let f = Fixture::new();
    let (a, _sa) = f.core(false);
    let ino = file(&a, ROOT_INO, "f", b"x");
    let fh = a.open(ino, libc::O_RDONLY).unwrap();
    a.unlink(ROOT_INO, b"f").unwrap();
    // A second mount of the same tenant starts while the first still holds the orphan.
    let (_b, _sb) = f.core(false);
    assert_eq!(a.read(fh, 0, 10).unwrap(), b"x");
    assert_eq!(f.objects(&a), 1);
    a.release(fh).unwrap();
    assert_eq!(f.objects(&a), 0);
}

#[test]
fn sub_tree_root_answers_dotdot_with_itself() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let d = fs.mkdir(&CTX, ROOT_INO, b"d", 0o755, 0).unwrap().ino;
    drop(fs);
    let meta = f.meta();
    let spec = MountSpec {
        root: d,
        ..MountSpec::admin()
    };
    let sub = TenantFs::new(
        meta,
        Arc::new(f.store.objects(&f.tenant)),
        spec,
        "sub".into(),
    )
    .unwrap();
    let fh = sub.opendir(d).unwrap();
    let dots = sub.readdir(fh, d, 0, 2, false).unwrap();
    assert_eq!((dots[1].name.as_slice(), dots[1].ino), (&b".."[..], d));
    assert!(matches!(sub.rmdir(ROOT_INO, b"d"), Err(FsError::Busy)));
}

#[test]
fn a_file_removed_while_not_open_is_a_ghost_for_racing_reads_only() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let old = file(&fs, ROOT_INO, "target", b"old content");
    let new = file(&fs, ROOT_INO, "tmp", b"new");
    fs.rename(
        ROOT_INO,
        b"tmp",
        ROOT_INO,
        b"target",
        RenameFlags::default(),
    )
    .unwrap();
    // Usage is given back at once: only the new file and the root count.
    assert_eq!(f.meta().read().usage().unwrap(), (3, 2));
    assert_eq!(f.meta().read().computed_usage().unwrap(), (3, 2));
    // An open that resolved the old name before the rename still reads the old file.
    assert_eq!(read_all(&fs, old), b"old content");
    assert_eq!(fs.getattr(old).unwrap().nlink, 0);
    // A writer gets ESTALE, so the kernel looks the name up and opens the new file.
    assert!(matches!(fs.open(old, libc::O_WRONLY), Err(FsError::Stale)));
    assert!(matches!(
        fs.setattr(
            old,
            SetAttr {
                size: Some(0),
                ..Default::default()
            }
        ),
        Err(FsError::Stale)
    ));
    assert_eq!(fs.lookup(ROOT_INO, b"target").unwrap().ino, new);
    // One opened here when its time is up lives until its last close.
    let fh = fs.open(old, libc::O_RDONLY).unwrap();
    fs.purge_ghosts(true).unwrap();
    assert_eq!(f.objects(&fs), 2);
    assert_eq!(fs.read(fh, 0, 100).unwrap(), b"old content");
    fs.release(fh).unwrap();
    assert_eq!(f.objects(&fs), 1);
    assert!(f.meta().read().inode(old).unwrap().is_none());
    assert!(matches!(fs.open(old, libc::O_RDONLY), Err(FsError::Stale)));
    assert_eq!(f.meta().read().usage().unwrap(), (3, 2));
    // The rest go when theirs is up, or at unmount.
    fs.unlink(ROOT_INO, b"target").unwrap();
    assert_eq!(f.objects(&fs), 1);
    fs.purge_ghosts(false).unwrap();
    assert_eq!(f.objects(&fs), 1, "not due yet");
    std::thread::sleep(ghosts::GRACE);
    fs.purge_ghosts(false).unwrap();
    assert_eq!(f.objects(&fs), 0);
    assert_eq!(f.meta().read().usage().unwrap(), (0, 1));
}

#[test]
fn a_crashed_mounts_ghosts_are_deleted_without_counting_twice() {
    let f = Fixture::new();
    {
        let (fs, s) = f.core(false);
        file(&fs, ROOT_INO, "gone", b"0123456789");
        file(&fs, ROOT_INO, "kept", b"abc");
        fs.unlink(ROOT_INO, b"gone").unwrap();
        // The daemon dies: no shutdown; its session lock goes with it.
        std::mem::forget(fs);
        drop(s);
    }
    let (fs, _s) = f.core(false);
    assert_eq!(f.meta().read().usage().unwrap(), (3, 2));
    assert_eq!(f.objects(&fs), 1);
    assert!(f.meta().read().all_ghosts().unwrap().is_empty());
}

#[test]
fn block_counts_follow_the_content_open_and_closed() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let blocks = |ino| fs.getattr(ino).unwrap().st_blocks();
    let (a, fh) = fs
        .create(&CTX, ROOT_INO, b"f", 0o644, 0o022, libc::O_RDWR)
        .unwrap();
    let ino = a.ino;
    fs.fallocate(fh, 0, 1 << 20, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap();
    assert_eq!(blocks(ino), 2048, "open: the content's blocks");
    fs.release(fh).unwrap();
    assert_eq!(blocks(ino), 2048, "closed: as recorded");
    let fh = fs.open(ino, libc::O_WRONLY).unwrap();
    fs.fallocate(fh, 0, 1 << 20, 0).unwrap();
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(fh, 0, 512 << 10, punch).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(blocks(ino), 1024);
    assert_eq!(f.meta().read().inode(ino).unwrap().unwrap().blocks, 1024);
}

#[test]
fn handles_find_linked_inodes_inside_the_mount_only() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let d = fs.mkdir(&CTX, ROOT_INO, b"d", 0o755, 0).unwrap().ino;
    let out = fs.mkdir(&CTX, ROOT_INO, b"out", 0o755, 0).unwrap().ino;
    let inner = file(&fs, d, "inner", b"i");
    let shared = file(&fs, out, "shared", b"s");
    let outer = file(&fs, out, "outer", b"o");
    fs.link(shared, d, b"shared").unwrap();
    let gone = file(&fs, d, "gone", b"g");
    fs.unlink(d, b"gone").unwrap();
    drop(fs);
    let spec = MountSpec {
        root: d,
        ..MountSpec::admin()
    };
    let sub = TenantFs::new(
        f.meta(),
        Arc::new(f.store.objects(&f.tenant)),
        spec,
        "sub".into(),
    )
    .unwrap();
    let found = |ino| sub.by_handle(ino).map(|a| a.ino);
    assert_eq!(found(d).unwrap(), d);
    assert_eq!(found(inner).unwrap(), inner);
    assert_eq!(found(shared).unwrap(), shared, "one of its names is inside");
    for ino in [ROOT_INO, out, outer, gone, 1 << 40] {
        assert!(matches!(found(ino), Err(FsError::Stale)), "{ino}");
    }
    assert_eq!(sub.parent_by_handle(d).unwrap().ino, d);
}
