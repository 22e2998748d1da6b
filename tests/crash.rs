//! Crash safety: the daemon is killed with SIGKILL at random moments while writers loop, and
//! after every remount every fsync'ed byte is there and `tenantfs fsck` finds the store
//! consistent. Also: fsck finds and repairs each kind of damage, made by hand.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What a writer knows is durable: fsync returned for it.
#[derive(Default)]
struct Durable {
    files: BTreeMap<String, Vec<u8>>,
    logs: BTreeMap<String, Vec<u8>>,
}

/// Tiny deterministic generator, so a failing round can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Creates, writes, fsyncs and renames files into place, and appends to a log with fsync,
/// until the mount dies under it. Records only what fsync acknowledged.
fn writer(root: PathBuf, id: usize, round: usize, durable: Arc<Mutex<Durable>>) {
    let mut rng = Lcg((round * 31 + id) as u64);
    let log_name = format!("log-{id}");
    for n in 0.. {
        let name = format!("w{id}-r{round}-{n}");
        let body: Vec<u8> = (0..(rng.next() % 20_000) as usize)
            .map(|i| (i as u64 ^ rng.next()) as u8)
            .collect();
        let step = || -> std::io::Result<()> {
            let tmp = root.join(format!("{name}.tmp"));
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            fs::rename(&tmp, root.join(&name))?;
            File::open(&root)?.sync_all()?;
            durable
                .lock()
                .unwrap()
                .files
                .insert(name.clone(), body.clone());
            let record = format!("{round}:{n}:{}\n", body.len()).into_bytes();
            let mut log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(root.join(&log_name))?;
            log.write_all(&record)?;
            log.sync_data()?;
            durable
                .lock()
                .unwrap()
                .logs
                .entry(log_name.clone())
                .or_default()
                .extend(record);
            Ok(())
        };
        if step().is_err() {
            return;
        }
    }
}

/// Every fsync'ed record is in the log, in order, and every record there is whole. Appends
/// that reached the daemon but whose fsync never returned may survive too, as POSIX allows.
fn check_log(got: &[u8], durable: &[u8]) -> Result<(), String> {
    let got = String::from_utf8(got.to_vec()).map_err(|e| e.to_string())?;
    if !got.is_empty() && !got.ends_with('\n') {
        return Err(format!(
            "a torn record at the end: {:?}",
            got.lines().last()
        ));
    }
    let mut present = got.lines();
    for want in String::from_utf8_lossy(durable).lines() {
        if !present.any(|l| l == want) {
            return Err(format!(
                "fsync'ed record {want:?} is missing or out of order"
            ));
        }
    }
    match got.lines().find(|l| l.split(':').count() != 3) {
        Some(bad) => Err(format!("malformed record {bad:?}")),
        None => Ok(()),
    }
}

fn fsck(env: &Env, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["fsck", "--tenant", "acme"];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn kill_9_at_random_moments_loses_nothing_fsynced() {
    let env = Env::new();
    env.tenant("acme");
    let (key, _) = env.key("acme", "user:alice", &[]);
    let durable = Arc::new(Mutex::new(Durable::default()));
    let mut rng = Lcg(7);
    let rounds = 20;
    for round in 0..rounds {
        let m = env.mount("m", &key, &[]);
        // Every fsync'ed byte of earlier rounds is there.
        {
            let d = durable.lock().unwrap();
            for (name, body) in &d.files {
                assert_eq!(&fs::read(m.p(name)).unwrap(), body, "round {round}: {name}");
            }
            for (name, body) in &d.logs {
                let got = fs::read(m.p(name)).unwrap();
                check_log(&got, body).unwrap_or_else(|e| panic!("round {round}: {name}: {e}"));
            }
        }
        // The live mount's own state is fine to a checker.
        let (ok, out) = fsck(&env, &[]);
        assert!(ok, "round {round}, mounted: {out}");

        let writers: Vec<_> = (0..3)
            .map(|id| {
                let (root, durable) = (m.path.clone(), durable.clone());
                std::thread::spawn(move || writer(root, id, round, durable))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30 + rng.next() % 250));
        kill(Pid::from_raw(m.pid), Signal::SIGKILL).unwrap();
        for w in writers {
            w.join().unwrap();
        }
        assert!(wait_until(Duration::from_secs(5), || fs::metadata(&m.path).is_err()).is_some());
        // On a loaded machine the killed daemon can take a while to let go of the mount:
        // wait until it is gone (or a zombie), then retry an unmount that finds it busy.
        let dead = || {
            fs::read_to_string(format!("/proc/{}/stat", m.pid)).map_or(true, |st| {
                st.rsplit(") ").next().is_some_and(|f| f.starts_with('Z'))
            })
        };
        assert!(
            wait_until(Duration::from_secs(30), dead).is_some(),
            "the daemon outlived SIGKILL"
        );
        let mut out = m.umount();
        let start = std::time::Instant::now();
        while !out.status.success() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(100));
            out = m.umount();
        }
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Before the next mount: only state the next mount recovers, and on odd rounds
        // fsck --repair recovers it instead.
        let (ok, out) = fsck(&env, &[]);
        if !ok {
            assert!(
                out.lines()
                    .filter(|l| l.starts_with("acme:"))
                    .all(|l| l.contains("[the next mount recovers it]")),
                "round {round}: {out}"
            );
        }
        if round % 2 == 1 {
            fsck(&env, &["--repair"]);
            let (ok, out) = fsck(&env, &[]);
            assert!(ok, "round {round}, after repair: {out}");
        }
    }
    let m = env.mount("m", &key, &[]);
    let d = durable.lock().unwrap();
    assert!(
        d.files.len() >= rounds,
        "the writers made progress: {}",
        d.files.len()
    );
    for (name, body) in &d.files {
        assert_eq!(&fs::read(m.p(name)).unwrap(), body);
    }
    // After 20 crashes, usage is what is on disk, as du counts it.
    let du: u64 = common::sh(&m.path, "du -sb . | cut -f1")
        .trim()
        .parse()
        .unwrap();
    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!(
        show["bytes_used"].as_u64(),
        Some(du),
        "usage against du after the crashes"
    );
    drop(m);
    let (ok, out) = fsck(&env, &[]);
    assert!(ok, "{out}");
    eprintln!(
        "{rounds} rounds, {} fsync'ed files and {} logs verified",
        d.files.len(),
        d.logs.len()
    );
}

fn sql(env: &Env, stmt: &str) {
    env.tenant_sql("acme", stmt);
}

fn object(env: &Env, ino: u64) -> PathBuf {
    env.store
        .join(format!("tenants/acme/objects/{:02x}/{ino:x}", ino & 0xff))
}

#[test]
fn fsck_finds_and_repairs_each_kind_of_damage() {
    let env = Env::new();
    let m = env.mounted_tenant("acme", "m");
    fs::create_dir(m.p("dir")).unwrap();
    for name in ["a", "b", "c", "d", "e"] {
        fs::write(m.p(&format!("dir/{name}")), name.repeat(100)).unwrap();
    }
    let ino = |name: &str| std::os::unix::fs::MetadataExt::ino(&fs::metadata(m.p(name)).unwrap());
    let (a, b, c, d) = (ino("dir/a"), ino("dir/b"), ino("dir/c"), ino("dir/d"));
    drop(m);
    let (ok, out) = fsck(&env, &[]);
    assert!(ok, "a fresh store is clean: {out}");

    sql(&env, &format!("DELETE FROM inodes WHERE ino = {a}"));
    sql(
        &env,
        &format!("UPDATE inodes SET nlink = 7 WHERE ino = {b}"),
    );
    sql(&env, &format!("DELETE FROM entries WHERE ino = {c}"));
    OpenOptions::new()
        .append(true)
        .open(object(&env, d))
        .unwrap()
        .write_all(b"extra")
        .unwrap();
    fs::create_dir_all(object(&env, 999_999).parent().unwrap()).unwrap();
    fs::write(object(&env, 999_999), b"nobody's").unwrap();
    sql(&env, "UPDATE usage SET bytes = 1");

    let (ok, out) = fsck(&env, &[]);
    assert!(!ok);
    for kind in [
        "dangling-entry",
        "link-count",
        "unreachable",
        "size-mismatch",
        "leaked-object",
        "usage",
    ] {
        assert!(out.contains(kind), "{kind} not found: {out}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&env.run(&["fsck", "--json"]).stdout).unwrap();
    assert!(json[0]["findings"].as_array().unwrap().len() >= 6);

    let m = env.mounted_tenant_again("m");
    let refused = fsck(&env, &["--repair"]);
    assert!(
        !refused.0 && refused.1.contains("live mount"),
        "{}",
        refused.1
    );
    drop(m);

    let (ok, out) = fsck(&env, &["--repair"]);
    assert!(!ok && out.contains("[repaired]"), "{out}");
    let (ok, out) = fsck(&env, &[]);
    assert!(ok, "clean after repair: {out}");
    assert!(!object(&env, 999_999).exists());
    let m = env.mounted_tenant_again("m");
    assert_eq!(
        fs::read(m.p(&format!("lost+found/#{c}"))).unwrap(),
        "c".repeat(100).as_bytes()
    );
    assert_eq!(
        fs::read(m.p("dir/d")).unwrap(),
        [b"d".repeat(100), b"extra".to_vec()].concat()
    );
    assert!(!m.p("dir/a").exists());
    let mut s = String::new();
    File::open(m.p("dir/b"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(
        fs::metadata(m.p("dir/b"))
            .map(|md| std::os::unix::fs::MetadataExt::nlink(&md))
            .unwrap(),
        1
    );
    let _ = Path::new(&s);
}
