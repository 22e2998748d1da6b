//! What only a store on PostgreSQL has: a second directory joining the store, the checks
//! `init` makes of a database, credentials kept out of sight, and a server that restarts
//! under live mounts. These run in the PostgreSQL pass of scripts/test.sh; the rest of the
//! suite runs there too, on the same engine.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Env, PgDb};

fn pg_env() -> Option<Env> {
    on_postgres().then(Env::new)
}

fn on_postgres() -> bool {
    let on = common::on_postgres();
    if !on {
        eprintln!("skipped: the suite is not on PostgreSQL (TENANTFS_TEST_META=postgres)");
    }
    on
}

/// Another store directory, beside the test's, that shares nothing with it on disk.
fn other_dir(name: &str) -> Env {
    let dir = tempfile::Builder::new()
        .prefix("tfs-test-")
        .tempdir()
        .unwrap();
    Env {
        store: dir.path().join(name),
        dir,
        db: None,
    }
}

#[test]
fn a_second_store_directory_joins_the_same_store() {
    let Some(env) = pg_env() else { return };
    let url = env.db.as_ref().unwrap().url.clone();
    let a = env.mounted_tenant("acme", "a");
    fs::write(a.p("hello"), b"written through the first").unwrap();

    let second = other_dir("second");
    let out = second.run(&["init", "--meta", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("joined the store"));
    assert!(second.ok(&["tenant", "list"]).contains("acme"));
    // A tenant made from either directory is one tenant of the store.
    second.tenant("beta");
    assert!(env.ok(&["tenant", "list"]).contains("beta"));
    let (key, _) = second.key("acme", "user:bob", &["--scope", "admin"]);
    let b = second.mount("b", &key, &[]);
    assert_eq!(
        fs::read(b.p("hello")).unwrap(),
        b"written through the first"
    );
    fs::write(b.p("reply"), b"and back").unwrap();
    assert_eq!(
        fs::read(a.p("reply")).unwrap(),
        b"and back",
        "the first mount sees the second's file"
    );
    // init again, with the same URL, changes nothing; with another, it refuses.
    let again = second.run(&["init", "--meta", &url]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let other = second.fails(&["init", "--meta", "postgres://x@127.0.0.1:1/elsewhere"]);
    assert!(other.contains("already a store in"), "{other}");
    let plain = second.run(&["init"]);
    assert!(
        plain.status.success(),
        "init without --meta leaves the store as it is"
    );
}

#[test]
fn init_refuses_a_database_of_something_else_or_of_another_version() {
    let Some(env) = pg_env() else { return };
    // A database that holds someone's tables is left alone.
    let foreign = PgDb::new();
    foreign
        .client()
        .batch_execute("CREATE TABLE precious(x INT); INSERT INTO precious VALUES (7)")
        .unwrap();
    let dir = other_dir("foreign");
    let err = dir.fails(&["init", "--meta", &foreign.url]);
    assert!(err.contains("holds 1 tables of something else"), "{err}");
    assert!(!dir.store.exists(), "a refused init leaves no directory");
    let n: i32 = foreign
        .client()
        .query_one("SELECT x FROM precious", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 7);

    // A store of another schema version is refused by init and by every command.
    env.tenant("acme");
    let db = env.db.as_ref().unwrap();
    db.client()
        .batch_execute("UPDATE tenantfs.info SET value = '99' WHERE key = 'schema_version'")
        .unwrap();
    let err = other_dir("late").fails(&["init", "--meta", &db.url]);
    assert!(err.contains("schema version 99"), "{err}");
    let err = env.fails(&["tenant", "list"]);
    assert!(err.contains("schema version 99"), "{err}");

    // Malformed and unreachable URLs say what is wrong.
    let err = other_dir("x").fails(&["init", "--meta", "mysql://h/db"]);
    assert!(err.contains("starts with postgres://"), "{err}");
    let err = other_dir("x").fails(&["init", "--meta", "postgres://u@127.0.0.1:1/db"]);
    assert!(
        err.contains("cannot connect to PostgreSQL at postgres://u@127.0.0.1:1/db"),
        "{err}"
    );
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn the_database_password_is_never_shown_logged_or_on_a_command_line() {
    let Some(env) = pg_env() else { return };
    // The test server trusts every local connection, so any password is accepted: what is
    // checked is where it goes.
    let secret = "S3cretPassw0rd";
    let url = env
        .db
        .as_ref()
        .unwrap()
        .url
        .replacen("postgres@", &format!("postgres:{secret}@"), 1);
    let dir = other_dir("withpw");
    let out = dir.run(&["init", "--meta", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.store.join("store.toml");
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let m = dir.mounted_tenant("acme", "m");
    fs::write(m.p("f"), b"x").unwrap();
    let cmdline = fs::read(format!("/proc/{}/cmdline", m.pid)).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(secret));
    let environ = fs::read(format!("/proc/{}/environ", m.pid)).unwrap();
    assert!(!String::from_utf8_lossy(&environ).contains(secret));
    let listing = dir.ok(&["tenant", "list", "--json"]);
    assert!(!listing.contains(secret));
    drop(m);
    for f in files_under(&dir.store) {
        if f == config {
            continue;
        }
        let text = fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains(secret),
            "{} holds the password",
            f.display()
        );
    }
    // A command that fails on the database names it without the password.
    let bad = url.replacen(&env.db.as_ref().unwrap().name, "nosuchdb", 1);
    let err = other_dir("bad").fails(&["init", "--meta", &bad]);
    assert!(err.contains("nosuchdb") && !err.contains(secret), "{err}");

    // A password file must be private; its path, not the password, is kept.
    let pwfile = env.dir.path().join("pw");
    fs::write(&pwfile, format!("{secret}\n")).unwrap();
    fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o644)).unwrap();
    let plain = env.db.as_ref().unwrap().url.clone();
    let d2 = other_dir("pwfile");
    let args = [
        "init",
        "--meta",
        &plain,
        "--meta-password-file",
        pwfile.to_str().unwrap(),
    ];
    let err = d2.fails(&args);
    assert!(err.contains("chmod 600"), "{err}");
    fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)).unwrap();
    d2.ok(&args);
    let kept = fs::read_to_string(d2.store.join("store.toml")).unwrap();
    assert!(
        kept.contains(pwfile.to_str().unwrap()) && !kept.contains(secret),
        "{kept}"
    );
    assert!(d2.ok(&["tenant", "list"]).contains("acme"));
}

/// A PostgreSQL server of the test's own, so that restarting it disturbs no other test.
struct Server {
    dir: PathBuf,
    url: String,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("tfs-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg-cluster.sh"
        ))
        .arg("start")
        .arg(&dir)
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Server { dir, url }
    }

    fn restart(&self) {
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg-cluster.sh"
        ))
        .arg("restart")
        .arg(&self.dir)
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg-cluster.sh"
        ))
        .arg("stop")
        .arg(&self.dir)
        .output();
    }
}

#[test]
fn a_server_restart_under_four_writers_fails_ops_with_eio_and_loses_nothing_fsynced() {
    if !on_postgres() {
        return;
    }
    let server = Server::start();
    PgDb::admin(&server.url)
        .batch_execute("CREATE DATABASE store")
        .unwrap();
    let url = format!("{}/store", server.url.rsplit_once('/').unwrap().0);
    let dir = other_dir("restart");
    dir.ok(&["init", "--meta", &url]);
    let m = dir.mounted_tenant("acme", "m");
    let root = m.path.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut errors = Vec::new();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let name = format!("w{w}-{i}");
                    let body = format!("{name} body {}", "x".repeat((i % 50) as usize));
                    let r = fs::File::create(root.join(&name)).and_then(|mut f| {
                        f.write_all(body.as_bytes())?;
                        f.sync_all()
                    });
                    match r {
                        Ok(()) => acked.push((name, body)),
                        Err(e) => errors.push(e.raw_os_error()),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                (acked, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    server.restart();
    let back = Instant::now();
    // Without a remount, every writer is working again within a few seconds.
    let working = common::wait_until(Duration::from_secs(10), || {
        fs::write(root.join("probe"), b"p").is_ok()
    });
    assert!(
        working.is_some(),
        "the mount did not come back after the restart"
    );
    eprintln!(
        "writes work again {:?} after the server did",
        back.elapsed()
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        let (ok, errors) = w.join().unwrap();
        for e in &errors {
            assert_eq!(*e, Some(libc::EIO), "an op failed otherwise than with EIO");
        }
        eprintln!(
            "a writer: {} files fsynced, {} failed ops",
            ok.len(),
            errors.len()
        );
        acked.extend(ok);
    }
    assert!(
        acked.len() > 40,
        "the writers made progress: {}",
        acked.len()
    );
    for (name, body) in &acked {
        assert_eq!(
            &fs::read_to_string(root.join(name)).unwrap(),
            body,
            "{name}"
        );
    }
    drop(m);
    dir.fsck_clean("acme");
}

/// Everything a mount shows of a tree, as text: names, kinds, modes, owners, sizes, link
/// counts, times, content, symlink targets and extended attributes.
fn tree(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let mut names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                todo.push(p.clone());
                "dir".to_string()
            } else {
                format!("{:x?}", &fs::read(&p).unwrap()[..m.len().min(64) as usize])
            };
            let xattrs = common::sh(
                root,
                &format!(
                    "getfattr -h -d -m - --absolute-names '{}' 2>/dev/null | tail -n +2",
                    p.display()
                ),
            );
            out.push(format!(
                "{rel} ino={} mode={:o} uid={} gid={} size={} nlink={} mtime={}.{} {what} {}",
                m.ino(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.nlink(),
                m.mtime(),
                m.mtime_nsec(),
                xattrs.trim()
            ));
        }
    }
    out
}

#[test]
fn store_migrate_moves_an_embedded_store_into_postgres_whole() {
    if !on_postgres() {
        return;
    }
    // An embedded store with a bit of everything.
    let env = other_dir("embedded");
    env.ok(&["init"]);
    let a = env.mounted_tenant("acme", "a");
    env.tenant("beta");
    let (admin, _) = env.key("acme", "user:root", &["--scope", "admin"]);
    let (revoked, revoked_id) = env.key("acme", "agent:old", &[]);
    env.ok(&["key", "revoke", &revoked_id]);
    fs::create_dir_all(a.p("docs/deep")).unwrap();
    fs::write(a.p("docs/readme"), b"hello").unwrap();
    fs::write(a.p("docs/deep/big"), vec![9u8; 100_000]).unwrap();
    fs::hard_link(a.p("docs/readme"), a.p("link")).unwrap();
    std::os::unix::fs::symlink("docs/readme", a.p("sym")).unwrap();
    fs::write(a.p("\u{e9}t\u{e9}"), b"utf8 name").unwrap();
    // The newest inode, gone before the migration: its number must never come back.
    fs::write(a.p("gone"), b"x").unwrap();
    fs::remove_file(a.p("gone")).unwrap();
    common::sh(&a.path, "setfattr -n user.color -v blue docs/readme");
    env.ok(&["acl", "set", "--tenant", "acme", "/docs", "user:bob:viewer"]);
    env.ok(&[
        "group",
        "add",
        "--tenant",
        "acme",
        "group:team",
        "user:bob",
        "user:carol",
    ]);
    env.ok(&[
        "quota",
        "set",
        "--tenant",
        "acme",
        "/docs",
        "--max-bytes",
        "1M",
        "--max-inodes",
        "50",
    ]);
    env.ok(&["tenant", "set", "acme", "--max-bytes", "10M"]);
    let snapshot = |env: &Env, root: &Path| {
        (
            tree(root),
            env.ok(&["tenant", "show", "acme", "--json"]),
            env.ok(&["quota", "list", "--tenant", "acme", "--json"]),
            env.ok(&["acl", "get", "--tenant", "acme", "/docs", "--json"]),
            env.ok(&["group", "list", "--tenant", "acme", "--json"]),
            env.ok(&["tenant", "list", "--json"]),
        )
    };
    let before = snapshot(&env, &a.path);
    let keys = env.ok(&["key", "list", "--json"]);

    // Refused while mounted, and nothing changes.
    let db = PgDb::new();
    let err = env.fails(&["store", "migrate", "--to", &db.url]);
    assert!(err.contains("tenant acme is mounted"), "{err}");
    drop(a);
    let out = env.run(&["store", "migrate", "--to", &db.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("moved 2 tenants"));
    assert!(env.store.join("store.toml").is_file());
    assert!(!env.store.join("catalog.db").exists());
    assert!(env.store.join("migrated-sqlite/acme/meta.db").is_file());

    // The same tree, policy, limits and keys, through a mount of the same key.
    env.fsck_clean("acme");
    env.fsck_clean("beta");
    assert_eq!(keys, env.ok(&["key", "list", "--json"]), "keys");
    let a = env.mount("a", &admin, &[]);
    let after = snapshot(&env, &a.path);
    assert_eq!(before.0, after.0, "the tree");
    let usage = |s: &str| {
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        (
            v["bytes_used"].clone(),
            v["inodes_used"].clone(),
            v["max_bytes"].clone(),
        )
    };
    assert_eq!(usage(&before.1), usage(&after.1), "usage and limits");
    assert_eq!(before.2, after.2, "directory quotas");
    assert_eq!(before.3, after.3, "ACLs");
    assert_eq!(before.4, after.4, "groups");
    assert_eq!(before.5, after.5, "tenants");
    // The revoked key stays revoked; new inode numbers never reuse an old one.
    let mp = env.mountpoint("r");
    let err = env.fails(&[
        "mount",
        mp.to_str().unwrap(),
        "--key-file",
        revoked.to_str().unwrap(),
    ]);
    assert!(err.contains("revoked"), "{err}");
    let max_before = before
        .0
        .iter()
        .filter_map(|l| {
            l.split(" ino=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap();
    fs::write(a.p("new"), b"n").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        fs::metadata(a.p("new")).unwrap().ino() > max_before + 1,
        "the removed file's number is not reused"
    );
    // Quotas still hold: /docs allows 1M.
    let err = fs::write(a.p("docs/huge"), vec![1u8; 2 << 20]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT));
    drop(a);
    env.fsck_clean("acme");
    // A second migration has nothing to move.
    let err = env.fails(&["store", "migrate", "--to", &db.url]);
    assert!(err.contains("keeps its metadata in postgres://"), "{err}");
}
