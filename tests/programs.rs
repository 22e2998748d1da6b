//! Real programs on real mounts (git, tar, rsync, SQLite, editors' atomic saves, tree copies,
//! sparse files), on two mounts of one tenant at once, after which the store must be exactly
//! consistent: `fsck` clean, usage equal to what the inodes add up to, no leaked object.

mod common;

use std::process::{Command, Stdio};

use common::{Env, sh};

/// A day of an agent's work in `dir`, shortened. Needs git, tar, rsync and python3.
const WORKLOAD: &str = r#"
set -eu
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com
mkdir -p repo && cd repo
git init -q -b main
for i in $(seq 1 30); do
  printf 'line %s\n' $(seq 1 $i) > "file$((i % 7)).txt"
  git add -A && git commit -qm "commit $i"
done
git gc -q --aggressive
git repack -adq
cd ..
git clone -q repo clone
(cd clone && git log --oneline | wc -l) | grep -qx 30
tar czf repo.tgz repo
mkdir -p untar && tar xzf repo.tgz -C untar
rsync -a repo/ mirror/
echo changed >> repo/file1.txt
rsync -a --delete repo/ mirror/
truncate -s 64M sparse.img
dd if=/dev/urandom of=sparse.img bs=4k count=3 seek=1000 conv=notrunc status=none
rsync -S sparse.img sparse.copy
cp --sparse=always sparse.img sparse.cp
truncate -s 1M sparse.img
python3 - <<'PY'
import os, shutil, sqlite3
for mode in ("DELETE", "WAL"):
    db = sqlite3.connect(f"app-{mode}.db")
    db.execute(f"PRAGMA journal_mode={mode}")
    db.execute("CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v TEXT)")
    for i in range(40):
        with db:
            db.executemany("INSERT INTO t(v) VALUES (?)", [("x" * (i * 7),)] * 25)
    db.execute("VACUUM")
    db.close()
for i in range(200):
    with open("config.json.tmp", "w") as f:
        f.write('{"n": %d, "pad": "%s"}' % (i, "y" * (i * 13)))
    os.replace("config.json.tmp", "config.json")
os.makedirs("tree", exist_ok=True)
for d in range(30):
    os.makedirs(f"tree/d{d}", exist_ok=True)
    for f in range(100):
        with open(f"tree/d{d}/f{f}", "wb") as out:
            out.write(os.urandom(f * 17))
shutil.copytree("tree", "tree2")
shutil.rmtree("tree")
os.rename("tree2", "tree")
with open("grow.bin", "wb") as f:
    f.truncate(10 << 20)
    f.seek(5 << 20)
    f.write(b"z" * 4096)
    f.truncate(6 << 20)
PY
rm -rf untar clone
"#;

/// Lines appended through `file` in one mount while `tail` follows in the other.
const APPENDER: &str = r#"
import sys
with open(sys.argv[1], "a") as f:
    for i in range(300):
        f.write("entry %d %s\n" % (i, "p" * (i % 40)))
        f.flush()
"#;

#[test]
fn a_mixed_real_program_workload_leaves_the_store_exactly_consistent() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    env.ok(&["tenant", "set", "acme", "--max-bytes", "2G"]);
    let b = env.mounted_tenant_again("b");
    std::fs::create_dir(a.p("one")).unwrap();
    std::fs::create_dir(a.p("two")).unwrap();
    std::fs::write(a.p("shared.log"), b"").unwrap();
    std::thread::scope(|s| {
        s.spawn(|| sh(&a.p("one"), WORKLOAD));
        s.spawn(|| sh(&b.p("two"), WORKLOAD));
        for m in [&a, &b] {
            s.spawn(|| {
                let ok = Command::new("python3")
                    .args(["-c", APPENDER])
                    .arg(m.p("shared.log"))
                    .stdout(Stdio::null())
                    .status()
                    .unwrap();
                assert!(ok.success());
            });
        }
    });
    let log = std::fs::read_to_string(a.p("shared.log")).unwrap();
    assert_eq!(log.lines().count(), 600, "every appended line is there");
    // Each mount sees the other's work.
    sh(
        &b.p("one/repo"),
        "git fsck --no-progress 2>&1 && git log --oneline | wc -l | grep -qx 30",
    );
    sh(
        &a.p("two"),
        "cmp sparse.img sparse.copy -n 1048576 && test -s app-WAL.db",
    );
    drop((a, b));
    env.fsck_clean("acme");
}

/// Inserts 150 rows into `db` (DELETE journal mode), one transaction each; with a lock
/// file, each transaction holds an exclusive `flock` on it (a lock both mounts share, which
/// tenantfs does not give across mounts yet). Prints each error SQLite reports.
const SQLITE_WRITER: &str = r#"
import contextlib, fcntl, sqlite3, sys
path, who, lock = sys.argv[1], sys.argv[2], sys.argv[3]
for i in range(150):
    with contextlib.ExitStack() as held:
        if lock:
            fcntl.flock(held.enter_context(open(lock, "w")), fcntl.LOCK_EX)
        try:
            db = sqlite3.connect(path, timeout=5)
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute("CREATE TABLE IF NOT EXISTS t(who TEXT, n INTEGER, pad TEXT)")
            with db:
                db.execute("INSERT INTO t VALUES (?, ?, ?)", (who, i, "q" * (i * 37)))
            db.close()
        except sqlite3.Error as e:
            print(who, i, getattr(e, "sqlite_errorname", type(e).__name__), e, flush=True)
"#;

#[test]
fn two_sqlite_writers_on_two_mounts_lose_nothing_and_leave_the_store_consistent() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    let lock = env.dir.path().join("db.lock");
    let run = |m: &common::Mount, who: &str, lock: &str| {
        let out = Command::new("python3")
            .args(["-c", SQLITE_WRITER])
            .arg(m.p("app.db"))
            .args([who, lock])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let both = |lock: &str| {
        std::thread::scope(|s| {
            let ea = s.spawn(|| run(&a, "a", lock));
            let eb = s.spawn(|| run(&b, "b", lock));
            ea.join().unwrap() + &eb.join().unwrap()
        })
    };
    // With a lock both writers honour, every committed row is there and nothing fails: names,
    // sizes and content move between the mounts as SQLite expects.
    let errors = both(lock.to_str().unwrap());
    assert_eq!(errors, "", "SQLite errors with a shared lock");
    let check = "import sqlite3; db = sqlite3.connect('app.db'); \
                 print(db.execute('SELECT who, COUNT(*) FROM t GROUP BY who').fetchall(), \
                 db.execute('PRAGMA integrity_check').fetchone()[0])";
    assert_eq!(
        sh(&a.path, &format!("python3 -c \"{check}\"")).trim(),
        "[('a', 150), ('b', 150)] ok"
    );
    // Without one (POSIX locks do not cross mounts) the two can damage the database, as two
    // hosts without locks would; the store itself must stay consistent.
    std::fs::remove_file(a.p("app.db")).unwrap();
    both("");
    drop((a, b));
    env.fsck_clean("acme");
}
