//! The metadata store under the core: migrations, pages, caches, transactions.

use super::*;

#[test]
fn a_version_4_store_is_migrated_its_reservations_given_back_and_its_blocks_estimated() {
    let f = Fixture::new();
    let before = {
        let (fs, _s) = f.core(false);
        file(&fs, ROOT_INO, "old", &[7u8; 10_000])
    };
    let path = f.store.tenant_dir(&f.tenant).join("meta.db");
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "DROP TABLE held; DROP TABLE dir_quotas; DROP TABLE links;
         ALTER TABLE inodes DROP COLUMN blocks;
         CREATE TABLE reservations(session TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
         INSERT INTO reservations VALUES ('dead', 4096);
         UPDATE usage SET reserved = 4096;
         UPDATE info SET value = 4 WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(old);
    let meta = f.meta();
    assert_eq!(meta.read().reserved().unwrap(), 0);
    assert!(!meta.read().has_dir_quotas().unwrap());
    // What older builds reported: whole 4 KiB blocks for the length.
    assert_eq!(meta.read().inode(before).unwrap().unwrap().st_blocks(), 24);
    let (fs, _s) = f.core(false);
    file(&fs, ROOT_INO, "works", b"x");
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT value FROM info WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, 6);
}

#[test]
fn new_metadata_files_use_small_pages() {
    let f = Fixture::new();
    assert_eq!(
        f.meta().read().pragma("page_size").unwrap(),
        crate::meta::PAGE_SIZE
    );
}

#[test]
fn cache_sizes_are_what_the_mount_asks_for() {
    let f = Fixture::new();
    let pragmas = |meta: &Meta| -> (i64, i64) {
        let tx = meta.read();
        (
            tx.pragma("cache_size").unwrap(),
            tx.pragma("mmap_size").unwrap(),
        )
    };
    let meta = f.meta();
    let default = (
        -((crate::meta::DB_CACHE / 1024) as i64),
        crate::meta::DB_MAP as i64,
    );
    assert_eq!(pragmas(&meta), default);
    let path = f.store.tenant_dir(&f.tenant).join("meta.db");
    assert_eq!(
        pragmas(&Meta::open_sized(&path, 1 << 20, 0).unwrap()),
        (-1024, 0)
    );

    // A rights cache of 2 entries remembers the last two inodes asked about.
    let access = Access::sized("user:alice", false, &*meta.read(), 2).unwrap();
    let a = file_in_root(&f, "a");
    let b = file_in_root(&f, "b");
    let c = file_in_root(&f, "c");
    for ino in [a, b, c] {
        access.rights(&*meta.read(), ino).unwrap();
    }
    assert_eq!(access.cached(a), None);
    assert!(access.cached(b).is_some() && access.cached(c).is_some());
}

#[test]
fn reads_under_one_guard_see_one_committed_state() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "f", b"abc");
    let reader = f.meta();
    {
        let tx = reader.read();
        assert_eq!(tx.inode(ino).unwrap().unwrap().size, 3);
        // Another connection (another mount) commits a change meanwhile...
        fs.setattr(
            ino,
            SetAttr {
                size: Some(10),
                ..Default::default()
            },
        )
        .unwrap();
        // ...which this guard's reads do not see: they share one transaction.
        assert_eq!(tx.inode(ino).unwrap().unwrap().size, 3);
    }
    // The next guard sees it, and a write on this connection finds no transaction left open.
    assert_eq!(reader.read().inode(ino).unwrap().unwrap().size, 10);
    let mut writer = reader;
    writer
        .write(|tx| tx.set_ctime(ino, 1).map_err(FsError::from))
        .unwrap();
}

#[test]
fn a_failed_or_panicking_change_rolls_back_and_leaves_the_connection_usable() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "f", b"abc");
    let mut meta = f.meta();
    let before = meta.read().inode(ino).unwrap().unwrap().ctime;
    let failed: FsResult<()> = meta.write(|tx| {
        tx.set_ctime(ino, before + 1)?;
        Err(FsError::Quota)
    });
    assert!(matches!(failed, Err(FsError::Quota)));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = meta.write(|tx| -> FsResult<()> {
            tx.set_ctime(ino, before + 2)?;
            panic!("mid-change");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(meta.read().inode(ino).unwrap().unwrap().ctime, before);
    meta.write(|tx| tx.set_ctime(ino, before + 3).map_err(FsError::from))
        .unwrap();
    assert_eq!(meta.read().inode(ino).unwrap().unwrap().ctime, before + 3);
}

#[test]
fn listing_queries_come_back_sorted_without_recompiling_per_use() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let dirs: Vec<Ino> = (0..12)
        .map(|i| {
            let d = fs
                .mkdir(&CTX, ROOT_INO, format!("d{i}").as_bytes(), 0o755, 0)
                .unwrap()
                .ino;
            for name in ["zeta", "alpha", "mu"] {
                file(&fs, d, name, b"");
            }
            d
        })
        .collect();
    let mut meta = f.meta();
    meta.write(|tx| -> crate::meta::MetaResult<()> {
        for &d in &dirs {
            for s in ["user:zed", "agent:bot", "group:mid"] {
                tx.set_acl(d, s, Rights::R)?;
            }
            for x in [&b"user.z"[..], b"user.a", b"user.m"] {
                tx.set_xattr(d, x, b"v")?;
            }
        }
        Ok(())
    })
    .unwrap();
    // Debug builds also fail here if SQLite recompiled any of these at every use, as it
    // did while they carried an ORDER BY next to a bound value.
    let tx = meta.read();
    for &d in &dirs {
        let names: Vec<Vec<u8>> = tx.list(d).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, [&b"alpha"[..], b"mu", b"zeta"]);
        let subjects: Vec<String> = tx.acl(d).unwrap().into_iter().map(|e| e.subject).collect();
        // Sorted, then the owner (the creating subject) after them.
        assert_eq!(subjects[..3], ["agent:bot", "group:mid", "user:zed"]);
        assert_eq!(
            tx.xattr_names(d).unwrap(),
            [&b"user.a"[..], b"user.m", b"user.z"]
        );
    }
}
