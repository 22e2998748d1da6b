//! The kernel's caches (pages, negative entries) stay coherent between two mounts of one
//! tenant: a change in one shows in the other once the attribute TTL passes.

mod common;

use std::fs;
use std::io::Read;
use std::time::Duration;

use common::{Env, wait_until};

fn read(p: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    fs::File::open(p).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn pages_cached_in_one_mount_follow_a_change_made_in_another() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    fs::write(a.p("f"), b"old content").unwrap();
    // b reads it twice; its pages are cached.
    assert!(wait_until(Duration::from_secs(3), || b.p("f").exists()).is_some());
    assert_eq!(read(&b.p("f")), b"old content");
    assert_eq!(read(&b.p("f")), b"old content");
    // The same length, so only the content and the times change.
    std::thread::sleep(Duration::from_millis(20));
    fs::write(a.p("f"), b"new content").unwrap();
    let took = wait_until(Duration::from_secs(3), || read(&b.p("f")) == b"new content");
    assert!(took.is_some(), "b kept serving its stale pages");
    eprintln!("b saw the change after {took:?}");
}

#[test]
fn a_name_remembered_as_absent_appears_once_made_elsewhere() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    // Missing in b, twice: the second answer can come from the kernel's negative entry.
    assert!(!b.p("late").exists());
    assert!(!b.p("late").exists());
    fs::write(a.p("late"), b"here").unwrap();
    let took = wait_until(Duration::from_secs(3), || b.p("late").exists());
    assert!(took.is_some(), "b never saw the new name");
    assert_eq!(read(&b.p("late")), b"here");
    // In the mount that made it, it is there at once.
    fs::remove_file(b.p("late")).unwrap();
    assert!(!b.p("late").exists());
    fs::write(b.p("late"), b"again").unwrap();
    assert_eq!(read(&b.p("late")), b"again");
}

fn ops(env: &Env, tenant: &str) -> u64 {
    let all: serde_json::Value =
        serde_json::from_str(&env.ok(&["usage", "--tenant", tenant, "--json"])).unwrap();
    all[0]["ops"].as_u64().unwrap()
}

#[test]
fn probes_for_a_missing_name_stay_in_the_kernel() {
    let env = Env::new();
    // The same missing name 300 times, as a build tool probing for a file does...
    let same = env.mounted_tenant("acme", "same");
    for _ in 0..300 {
        assert!(fs::metadata(same.p("missing")).is_err());
    }
    drop(same);
    // ...against 300 different missing names, each of which must be asked about.
    let distinct = env.mounted_tenant("beta", "distinct");
    for i in 0..300 {
        assert!(fs::metadata(distinct.p(&format!("missing-{i}"))).is_err());
    }
    drop(distinct);
    let (same, distinct) = (ops(&env, "acme"), ops(&env, "beta"));
    eprintln!("ops reaching the daemon: same name {same}, distinct names {distinct}");
    assert!(distinct >= 300, "{distinct}");
    assert!(same < 50, "a missing name was asked about {same} times");
}

/// Whether the daemon maps the metadata database itself (WAL's `meta.db-shm` is always
/// mapped, and does not count).
fn maps_meta_db(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .any(|l| l.ends_with("/meta.db"))
}

#[test]
fn a_mount_takes_the_cache_sizes_it_is_given() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let work = |m: &common::Mount| {
        fs::create_dir(m.p("d")).unwrap();
        fs::write(m.p("d/f"), b"x").unwrap();
        assert_eq!(fs::read_dir(m.p("d")).unwrap().count(), 1);
        fs::remove_dir_all(m.p("d")).unwrap();
    };
    // By default the metadata is memory-mapped...
    let m = env.mount("m", &key, &[]);
    work(&m);
    // PostgreSQL keeps its caches in the server: the sizes are SQLite's.
    let sqlite = !env.on_postgres();
    assert_eq!(
        maps_meta_db(m.pid),
        sqlite,
        "the default mount maps meta.db"
    );
    drop(m);
    // ...and with --db-map 0 it is not; the smallest caches still serve every op.
    let m = env.mount(
        "m",
        &key,
        &["--db-map", "0", "--db-cache", "64K", "--rights-cache", "1"],
    );
    work(&m);
    assert!(!maps_meta_db(m.pid), "--db-map 0 maps nothing");
    drop(m);
    let err = env.fails(&["mount", "x", "--db-cache", "lots"]);
    assert!(err.contains("K, M, G or T"), "{err}");
}

/// The ops one mount's work sends to the daemon, from the tenant's metering.
fn ops_of(env: &Env, tenant: &str, work: impl FnOnce(&common::Mount)) -> u64 {
    let before = ops(env, tenant);
    let (key, _) = env.key(tenant, "user:alice", &[]);
    let m = env.mount("ops", &key, &[]);
    work(&m);
    // Unmounting records the mount's metering.
    drop(m);
    ops(env, tenant) - before
}

#[test]
fn shell_tools_cost_few_round_trips_per_file() {
    const FILES: usize = 200;
    let env = Env::new();
    env.tenant("acme");
    ops_of(&env, "acme", |m| {
        fs::create_dir(m.p("d")).unwrap();
        for i in 0..FILES {
            fs::write(m.p(&format!("d/f{i:03}")), [b'x'; 100]).unwrap();
        }
    });
    // `ls -l` asks each file for its SELinux label and ACL. Host namespaces answer
    // EOPNOTSUPP, so ls stops asking after the first file; the listing's attributes come
    // with READDIRPLUS. (With ENODATA it was two round trips per file.)
    let ls = ops_of(&env, "acme", |m| {
        let out = common::sh(&m.path, "ls -l d");
        assert_eq!(out.lines().count(), FILES + 1, "{out}");
    });
    // `cat`: LOOKUP, OPEN and READ per file; read-only handles skip FLUSH at close. The
    // first read since a file changed moves its access time (relatime), and the kernel then
    // asks for the new attributes once: one GETATTR more per file, that time only.
    let cat = || {
        ops_of(&env, "acme", |m| {
            let out = common::sh(&m.path, "cat d/* | wc -c");
            assert_eq!(out.trim(), (FILES * 100).to_string());
        })
    };
    let first_cat = cat();
    let cat = cat();
    eprintln!("ops for {FILES} files: ls -l {ls}, first cat {first_cat}, cat {cat}");
    assert!(
        first_cat <= 4 * FILES as u64 + 20,
        "the first cat sent {first_cat} ops for {FILES} files"
    );
    assert!(
        ls < FILES as u64 / 4,
        "ls -l sent {ls} ops for {FILES} files"
    );
    assert!(
        cat <= 3 * FILES as u64 + 20,
        "cat sent {cat} ops for {FILES} files"
    );
}

#[test]
fn small_writes_cost_one_round_trip_each() {
    const WRITES: u64 = 200;
    let env = Env::new();
    env.tenant("acme");
    // Before FUSE_HANDLE_KILLPRIV_V2 every write was preceded by a GETXATTR of
    // security.capability: two round trips per write.
    let ops = ops_of(&env, "acme", |m| {
        let mut f = fs::File::create(m.p("log")).unwrap();
        for _ in 0..WRITES {
            std::io::Write::write_all(&mut f, &[b'x'; 4096]).unwrap();
        }
    });
    eprintln!("ops for {WRITES} writes: {ops}");
    assert!(ops < WRITES + WRITES / 4, "{ops} ops for {WRITES} writes");
}

#[test]
fn a_writer_opened_beside_a_reader_starts_from_another_mounts_truncate() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    fs::write(a.p("f"), vec![7u8; 1 << 20]).unwrap();
    // a holds the file open for reading while b truncates it.
    let reader = fs::File::open(a.p("f")).unwrap();
    assert!(wait_until(Duration::from_secs(3), || b.p("f").exists()).is_some());
    fs::OpenOptions::new()
        .write(true)
        .open(b.p("f"))
        .unwrap()
        .set_len(5)
        .unwrap();
    // A writer opened in a now must start from 5 bytes, not the size a's reader saw.
    let writer = fs::OpenOptions::new().write(true).open(a.p("f")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&writer, b"more", 0).unwrap();
    drop((writer, reader));
    drop((a, b));
    env.fsck_clean("acme");
    let c = env.mounted_tenant_again("c");
    assert_eq!(fs::read(c.p("f")).unwrap(), b"more\x07");
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn listing_a_directory_again_stays_in_the_kernel() {
    const FILES: usize = 200;
    const LISTINGS: u64 = 20;
    let env = Env::new();
    env.tenant("acme");
    ops_of(&env, "acme", |m| {
        fs::create_dir(m.p("d")).unwrap();
        for i in 0..FILES {
            fs::write(m.p(&format!("d/f{i:03}")), b"").unwrap();
        }
    });
    let ops = ops_of(&env, "acme", |m| {
        for _ in 0..LISTINGS {
            assert_eq!(names(&m.p("d")).len(), FILES);
        }
        // A change made through this mount shows in the next listing at once.
        fs::write(m.p("d/new"), b"").unwrap();
        assert!(names(&m.p("d")).contains(&"new".to_string()));
        fs::remove_file(m.p("d/f000")).unwrap();
        assert!(!names(&m.p("d")).contains(&"f000".to_string()));
    });
    // Each listing opens and releases the directory (the rights check and the access time
    // stay in the daemon); only the first reads the entries, in several READDIRPLUS
    // batches. Read every time, the 20 listings took about 20 × 7 ops.
    eprintln!("ops for {LISTINGS} listings of {FILES} names: {ops}");
    assert!(ops < 4 * LISTINGS + 40, "{ops} ops for {LISTINGS} listings");
}

#[test]
fn a_listing_in_one_mount_shows_names_another_mount_made_or_removed() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    fs::create_dir(a.p("d")).unwrap();
    fs::write(a.p("d/old"), b"").unwrap();
    // Listed twice in b: the second can come from the kernel's cache.
    assert_eq!(names(&b.p("d")), ["old"]);
    assert_eq!(names(&b.p("d")), ["old"]);
    fs::write(a.p("d/new"), b"").unwrap();
    fs::remove_file(a.p("d/old")).unwrap();
    let took = wait_until(Duration::from_secs(3), || names(&b.p("d")) == ["new"]);
    assert!(took.is_some(), "b kept listing {:?}", names(&b.p("d")));
    eprintln!("b's listing followed after {took:?}");
}

#[test]
fn an_access_time_moved_in_one_mount_reaches_another_in_a_batch() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    let files: Vec<_> = (0..20).map(|i| a.p(&format!("f{i}"))).collect();
    for f in &files {
        fs::write(f, b"content").unwrap();
        // An access time older than the change: the next read moves it (relatime).
        let past = std::fs::FileTimes::new().set_accessed(std::time::UNIX_EPOCH);
        fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_times(past)
            .unwrap();
    }
    for f in &files {
        assert_eq!(read(f), b"content");
        // The mount that read it shows the new time at once.
        assert!(fs::metadata(f).unwrap().atime() > 0);
    }
    // Written in one batch by a's watcher, then seen by b once its attributes expire.
    let seen = |i: usize| fs::metadata(b.p(&format!("f{i}"))).unwrap().atime() > 0;
    let took = wait_until(Duration::from_secs(5), || (0..20).all(seen));
    assert!(took.is_some(), "b never saw the access times");
    eprintln!("b saw the access times after {took:?}");
}
