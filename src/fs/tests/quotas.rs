//! Directory quotas: limits, moves, links and counters kept exact.

use super::*;

#[test]
fn directory_quotas_refuse_what_would_pass_them() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let q = mkdir(&fs, ROOT_INO, "q");
    let inner = mkdir(&fs, q, "inner");
    file(&fs, inner, "old", b"12345");
    set_quota(&f, &fs, q, 100, 4);
    // What was there is counted when the quota is set: inner, old.
    assert_eq!((quota_of(&f, q).bytes, quota_of(&f, q).inodes), (5, 2));

    // A write stops at the limit: partial, then EDQUOT.
    let (a, fh) = fs.create(&CTX, q, b"f", 0o644, 0, libc::O_RDWR).unwrap();
    assert_eq!(fs.write(fh, 0, &[7u8; 200]).unwrap(), 95);
    assert!(matches!(fs.write(fh, 95, b"x"), Err(FsError::Quota)));
    fs.release(fh).unwrap();
    assert_eq!(fs.getattr(a.ino).unwrap().size, 95);
    assert_eq!(quota_of(&f, q).bytes, 100);
    // Truncating up and fallocate past it fail too; down is fine.
    assert!(matches!(
        fs.setattr(
            a.ino,
            SetAttr {
                size: Some(101),
                ..Default::default()
            }
        ),
        Err(FsError::Quota)
    ));
    fs.setattr(
        a.ino,
        SetAttr {
            size: Some(90),
            ..Default::default()
        },
    )
    .unwrap();
    // The inode limit: 3 inodes now (inner, old, f), one more fits.
    mkdir(&fs, q, "d");
    assert!(matches!(
        fs.mkdir(&CTX, q, b"e", 0o755, 0),
        Err(FsError::Quota)
    ));
    assert!(matches!(
        fs.symlink(&CTX, inner, b"s", b"t"),
        Err(FsError::Quota)
    ));
    // Outside the quota nothing is limited.
    file(&fs, ROOT_INO, "free", &[1u8; 1000]);
    assert_counts_exact(&f);
}

#[test]
fn nested_quotas_all_hold() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let outer = mkdir(&fs, ROOT_INO, "outer");
    let inner = mkdir(&fs, outer, "inner");
    set_quota(&f, &fs, outer, 1000, 0);
    set_quota(&f, &fs, inner, 0, 2);
    file(&fs, inner, "a", &[1u8; 600]);
    file(&fs, inner, "b", b"");
    // The inner inode limit.
    assert!(matches!(
        fs.create(&CTX, inner, b"c", 0o644, 0, libc::O_RDWR),
        Err(FsError::Quota)
    ));
    // The outer byte limit, from a file in the inner tree and beside it.
    let (_, fh) = fs
        .create(&CTX, outer, b"c", 0o644, 0, libc::O_RDWR)
        .unwrap();
    assert_eq!(fs.write(fh, 0, &[2u8; 600]).unwrap(), 400);
    fs.release(fh).unwrap();
    assert_eq!(quota_of(&f, outer).bytes, 1000);
    assert_eq!(quota_of(&f, inner).bytes, 600);
    assert_counts_exact(&f);
}

#[test]
fn moves_into_a_smaller_quota_are_refused_and_change_nothing() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let small = mkdir(&fs, ROOT_INO, "small");
    let src = mkdir(&fs, ROOT_INO, "src");
    let tree = mkdir(&fs, src, "tree");
    file(&fs, tree, "a", &[1u8; 60]);
    file(&fs, tree, "b", &[1u8; 60]);
    file(&fs, src, "big", &[1u8; 120]);
    file(&fs, src, "fits", &[1u8; 50]);
    set_quota(&f, &fs, small, 100, 0);
    assert!(matches!(
        fs.rename(src, b"big", small, b"big", NO_FLAGS),
        Err(FsError::Quota)
    ));
    assert!(matches!(
        fs.rename(src, b"tree", small, b"tree", NO_FLAGS),
        Err(FsError::Quota)
    ));
    assert_eq!(names(&fs, small), [".", ".."]);
    assert_eq!(quota_of(&f, small).bytes, 0);
    // What fits moves, and moving it out gives the room back.
    fs.rename(src, b"fits", small, b"fits", NO_FLAGS).unwrap();
    assert_eq!(quota_of(&f, small).bytes, 50);
    fs.rename(small, b"fits", ROOT_INO, b"fits", NO_FLAGS)
        .unwrap();
    assert_eq!(quota_of(&f, small).bytes, 0);
    // A tree that fits moves whole; replacing a name gives its room back first.
    fs.rename(tree, b"b", src, b"b", NO_FLAGS).unwrap();
    fs.rename(src, b"tree", small, b"tree", NO_FLAGS).unwrap();
    assert_eq!(
        (quota_of(&f, small).bytes, quota_of(&f, small).inodes),
        (60, 2)
    );
    file(&fs, ROOT_INO, "same", &[1u8; 60]);
    fs.rename(ROOT_INO, b"same", tree, b"a", NO_FLAGS).unwrap();
    assert_eq!(quota_of(&f, small).bytes, 60);
    // RENAME_EXCHANGE swaps what each side holds.
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    assert!(matches!(
        fs.rename(src, b"big", tree, b"a", exchange),
        Err(FsError::Quota)
    ));
    fs.rename(src, b"b", tree, b"a", exchange).unwrap();
    assert_eq!(quota_of(&f, small).bytes, 60);
    assert_counts_exact(&f);
}

#[test]
fn hard_links_count_once_per_quota_and_in_each_quota_they_are_under() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let a = mkdir(&fs, ROOT_INO, "a");
    let b = mkdir(&fs, ROOT_INO, "b");
    let a2 = mkdir(&fs, a, "a2");
    set_quota(&f, &fs, a, 1000, 0);
    set_quota(&f, &fs, b, 150, 0);
    let ino = file(&fs, a, "f", &[1u8; 100]);
    // A second name in the same quota counts once there.
    fs.link(ino, a2, b"g").unwrap();
    assert_eq!((quota_of(&f, a).bytes, quota_of(&f, a).inodes), (100, 2));
    // A name under another quota counts there too, and growth counts in both.
    fs.link(ino, b, b"h").unwrap();
    assert_eq!(quota_of(&f, b).bytes, 100);
    let fh = fs.open(ino, libc::O_RDWR).unwrap();
    assert_eq!(fs.write(fh, 100, &[2u8; 100]).unwrap(), 50);
    fs.release(fh).unwrap();
    assert_eq!(quota_of(&f, a).bytes, 150);
    assert_eq!(quota_of(&f, b).bytes, 150);
    // The tenant counts it once.
    assert_eq!(f.meta().read().usage().unwrap().0, 150);
    // A link into a quota without room is refused.
    let c = mkdir(&fs, ROOT_INO, "c");
    set_quota(&f, &fs, c, 10, 0);
    assert!(matches!(fs.link(ino, c, b"i"), Err(FsError::Quota)));
    assert_counts_exact(&f);
    // Names go one by one; the quota lets go with the last name under it.
    fs.unlink(b, b"h").unwrap();
    assert_eq!(quota_of(&f, b).bytes, 0);
    fs.unlink(a, b"f").unwrap();
    assert_eq!(quota_of(&f, a).bytes, 150);
    fs.rename(a2, b"g", b, b"g", NO_FLAGS).unwrap();
    assert_eq!((quota_of(&f, a).bytes, quota_of(&f, b).bytes), (0, 150));
    assert_eq!(f.meta().read().link_parents(ino).unwrap(), []);
    assert_counts_exact(&f);
}

#[test]
fn an_open_file_unlinked_leaves_the_quota_at_once() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let q = mkdir(&fs, ROOT_INO, "q");
    set_quota(&f, &fs, q, 1000, 0);
    let (a, fh) = fs.create(&CTX, q, b"f", 0o644, 0, libc::O_RDWR).unwrap();
    fs.write(fh, 0, &[1u8; 300]).unwrap();
    fs.flush(fh).unwrap();
    fs.unlink(q, b"f").unwrap();
    assert_eq!((quota_of(&f, q).bytes, quota_of(&f, q).inodes), (0, 0));
    // It still counts for the tenant while open, and may still grow.
    fs.write(fh, 300, &[1u8; 300]).unwrap();
    fs.flush(fh).unwrap();
    assert_eq!(f.meta().read().usage().unwrap().0, 600);
    assert_eq!(quota_of(&f, q).bytes, 0);
    fs.release(fh).unwrap();
    assert_eq!(f.meta().read().usage().unwrap(), (0, 2));
    assert!(fs.getattr(a.ino).is_err());
    assert_counts_exact(&f);
}

#[test]
fn reservations_move_with_a_file_and_are_counted() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let q = mkdir(&fs, ROOT_INO, "q");
    set_quota(&f, &fs, q, 10 << 20, 0);
    let (_, fh) = fs
        .create(&CTX, ROOT_INO, b"f", 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(fh, 0, &[1u8; 4096]).unwrap();
    // Held outside any quota, it enters q with the file: 4 MiB of reservation.
    fs.rename(ROOT_INO, b"f", q, b"f", NO_FLAGS).unwrap();
    assert_eq!(quota_of(&f, q).reserved, RESERVE_CHUNK);
    assert_counts_exact(&f);
    fs.flush(fh).unwrap();
    let got = quota_of(&f, q);
    assert_eq!((got.bytes, got.reserved), (4096, 0));
    fs.release(fh).unwrap();
    assert_counts_exact(&f);
}

/// A scripted mix of every op that moves usage, with the counters checked after each.
#[test]
fn counters_stay_exact_through_a_mixed_workload() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let top = mkdir(&fs, ROOT_INO, "top");
    let dirs = [
        top,
        mkdir(&fs, top, "a"),
        mkdir(&fs, top, "b"),
        mkdir(&fs, ROOT_INO, "c"),
    ];
    let sub = mkdir(&fs, dirs[1], "sub");
    for (i, &d) in dirs.iter().enumerate() {
        set_quota(&f, &fs, d, 1 << 30, 1000 + i as u64);
    }
    set_quota(&f, &fs, sub, 1 << 30, 0);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let all = [dirs[0], dirs[1], dirs[2], dirs[3], sub, ROOT_INO];
    for step in 0..400 {
        let d = all[next(all.len() as u64) as usize];
        let e = all[next(all.len() as u64) as usize];
        let n = format!("n{}", next(6));
        let m = format!("n{}", next(6));
        let _ = match next(7) {
            0 => fs
                .create(&CTX, d, n.as_bytes(), 0o644, 0, libc::O_RDWR)
                .and_then(|(_, fh)| {
                    fs.write(fh, 0, &vec![1u8; next(5000) as usize])?;
                    fs.release(fh)
                }),
            1 => fs.unlink(d, n.as_bytes()),
            2 => fs
                .lookup(d, n.as_bytes())
                .and_then(|a| fs.link(a.ino, e, m.as_bytes()))
                .map(drop),
            3 => fs.rename(d, n.as_bytes(), e, m.as_bytes(), NO_FLAGS),
            4 => fs.lookup(d, n.as_bytes()).and_then(|a| {
                let size = Some(next(9000));
                fs.setattr(
                    a.ino,
                    SetAttr {
                        size,
                        ..Default::default()
                    },
                )
                .map(drop)
            }),
            5 => fs.mkdir(&CTX, d, n.as_bytes(), 0o755, 0).map(drop),
            _ => fs.rmdir(d, n.as_bytes()),
        };
        if step % 20 == 0 {
            assert_counts_exact(&f);
        }
    }
    assert_counts_exact(&f);
}
