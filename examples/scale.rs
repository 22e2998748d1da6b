//! Scale: mount time and per-op cost in a 1-tenant store against a 10,000-tenant store, and in
//! a 1,000-inode tree against a 1,000,000-inode tree.
//!
//! `cargo build --release && cargo run --release --example scale -- [TENANTS] [INODES]`
//! (defaults 10000 and 1000000; run as root, it mounts). Per-op costs are medians of rounds:
//! cold `stat` through the mount (kernel caches dropped, so lookup and getattr reach the
//! daemon), and lookup + getattr in the core without FUSE.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use tenantfs::catalog::NewKeySpec;
use tenantfs::fs::{Ino, Kind, MountSpec, ROOT_INO, TenantFs};
use tenantfs::ids::{Scope, TenantId};
use tenantfs::meta::NewInode;
use tenantfs::store::Store;

const ROUNDS: usize = 5;
/// Files stat'ed per round, each in its own directory in both trees, so every stat costs the
/// same lookups (directory, then file) whatever the tree's size.
const SAMPLE: usize = 500;

fn bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("tenantfs")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `dirs` directories of `per_dir` empty files each under the tenant root, in one
/// transaction; returns every (dir name, file name) for sampling.
fn fill(store: &Store, tenant: &TenantId, dirs: usize, per_dir: usize) -> Vec<(String, String)> {
    let mut meta = store.open_meta(tenant).unwrap();
    let mut names = Vec::new();
    meta.write(|tx| -> rusqlite::Result<()> {
        let node = |kind, parent| NewInode {
            kind,
            perm: if kind == Kind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            rdev: 0,
            now: 0,
            parent,
            target: None,
            owner: None,
        };
        for d in 0..dirs {
            let dname = format!("d{d:05}");
            let dir = tx.insert_inode(&node(Kind::Dir, ROOT_INO))?;
            tx.insert_entry(ROOT_INO, dname.as_bytes(), dir, Kind::Dir)?;
            tx.add_nlink(ROOT_INO, 1)?;
            for f in 0..per_dir {
                let fname = format!("f{f:05}");
                let ino = tx.insert_inode(&node(Kind::File, dir))?;
                tx.insert_entry(dir, fname.as_bytes(), ino, Kind::File)?;
                names.push((dname.clone(), fname));
            }
            tx.add_usage(0, 1 + per_dir as i64)?;
        }
        Ok(())
    })
    .unwrap();
    names
}

fn key(store: &Store, tenant: &TenantId, dir: &Path) -> PathBuf {
    let (new, _) = store
        .catalog()
        .unwrap()
        .insert_key(&NewKeySpec {
            tenant,
            subject: &"user:bench".parse().unwrap(),
            scope: Scope::Write,
            root: "/",
            expires_in: None,
        })
        .unwrap();
    let path = dir.join(format!("{tenant}.key"));
    std::fs::write(&path, new.secret.as_bytes()).unwrap();
    path
}

fn drop_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
}

struct Case {
    label: String,
    mount_ms: f64,
    stat_us: f64,
    core_us: f64,
    rss_idle_kib: u64,
    rss_loaded_kib: u64,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn measure(
    label: &str,
    store_dir: &Path,
    tenant: &TenantId,
    names: &[(String, String)],
    scratch: &Path,
) -> Case {
    let store = Store::open(store_dir).unwrap();
    let keyfile = key(&store, tenant, scratch);
    let mnt = scratch.join(format!("mnt-{tenant}"));
    std::fs::create_dir_all(&mnt).unwrap();
    let mut seen = std::collections::HashSet::new();
    let per_dir: Vec<&(String, String)> = names.iter().filter(|(d, _)| seen.insert(d)).collect();
    let step = (per_dir.len() / SAMPLE).max(1);
    let sample: Vec<&(String, String)> = per_dir.into_iter().step_by(step).take(SAMPLE).collect();
    let (mut mounts, mut stats) = (Vec::new(), Vec::new());
    let (mut rss_idle, mut rss_loaded) = (0, 0);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let out = Command::new(bin())
            .args(["mount", mnt.to_str().unwrap(), "--key-file"])
            .arg(&keyfile)
            .env("TENANTFS_STORE", store_dir)
            .output()
            .unwrap();
        mounts.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: u32 = String::from_utf8_lossy(&out.stderr)
            .rsplit("daemon pid ")
            .next()
            .and_then(|s| s.trim().parse().ok())
            .unwrap();
        rss_idle = rss_kib(pid);
        drop_caches();
        let t = Instant::now();
        for (d, f) in &sample {
            std::fs::metadata(mnt.join(d).join(f)).unwrap();
        }
        stats.push(t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64);
        rss_loaded = rss_kib(pid);
        let out = Command::new(bin())
            .args(["umount", mnt.to_str().unwrap()])
            .env("TENANTFS_STORE", store_dir)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    // The core alone: lookup of the directory and the file, and getattr.
    let meta = store.open_meta(tenant).unwrap();
    let fs = TenantFs::new(
        meta,
        Arc::new(store.objects(tenant)),
        MountSpec::admin(),
        "scale".into(),
    )
    .unwrap();
    let mut cores = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for (d, f) in &sample {
            let dir: Ino = fs.lookup(ROOT_INO, d.as_bytes()).unwrap().ino;
            let a = fs.lookup(dir, f.as_bytes()).unwrap();
            fs.getattr(a.ino).unwrap();
        }
        cores.push(t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64);
    }
    Case {
        label: label.into(),
        mount_ms: median(mounts),
        stat_us: median(stats),
        core_us: median(cores),
        rss_idle_kib: rss_idle,
        rss_loaded_kib: rss_loaded,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tenants: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let inodes: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let scratch = tempfile::tempdir_in("/var/tmp").unwrap();
    let small = scratch.path().join("store-1");
    let large = scratch.path().join("store-many");
    let t: TenantId = "t".parse().unwrap();
    let big: TenantId = "big".parse().unwrap();

    Store::init(&small).unwrap();
    let s1 = Store::open(&small).unwrap();
    s1.create_tenant(&t, "t", (0, 0), false).unwrap();
    let names_small = fill(&s1, &t, SAMPLE, 1);

    let began = Instant::now();
    Store::init(&large).unwrap();
    let sn = Store::open(&large).unwrap();
    sn.create_tenant(&t, "t", (0, 0), false).unwrap();
    let names_t = fill(&sn, &t, SAMPLE, 1);
    for i in 1..tenants.saturating_sub(1) {
        let id: TenantId = format!("tenant-{i:05}").parse().unwrap();
        sn.create_tenant(&id, "x", (0, 0), false).unwrap();
    }
    sn.create_tenant(&big, "big", (0, 0), false).unwrap();
    let per_dir = 999;
    let names_big = fill(&sn, &big, inodes / (per_dir + 1), per_dir);
    eprintln!(
        "built {tenants} tenants and {} inodes in {:.1} s",
        names_big.len() + inodes / per_dir,
        began.elapsed().as_secs_f64()
    );

    let cases = [
        measure(
            "1 tenant, 1,000 inodes",
            &small,
            &t,
            &names_small,
            scratch.path(),
        ),
        measure(
            &format!("{tenants} tenants, 1,000 inodes"),
            &large,
            &t,
            &names_t,
            scratch.path(),
        ),
        measure(
            &format!("{tenants} tenants, {inodes} inodes"),
            &large,
            &big,
            &names_big,
            scratch.path(),
        ),
    ];
    println!(
        "| store | mount (ms) | cold stat via mount (us/op) | core lookup+getattr (us/op) | RSS idle (MiB) | RSS after stats (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for c in &cases {
        println!(
            "| {} | {:.0} | {:.1} | {:.2} | {:.1} | {:.1} |",
            c.label,
            c.mount_ms,
            c.stat_us,
            c.core_us,
            c.rss_idle_kib as f64 / 1024.0,
            c.rss_loaded_kib as f64 / 1024.0
        );
    }
    let ratio = |a: f64, b: f64| a / b;
    println!(
        "\ncost ratios (1.0 = no change): 10k tenants / 1 tenant: stat {:.2}, core {:.2}; 1M / 1k inodes: stat {:.2}, core {:.2}",
        ratio(cases[1].stat_us, cases[0].stat_us),
        ratio(cases[1].core_us, cases[0].core_us),
        ratio(cases[2].stat_us, cases[1].stat_us),
        ratio(cases[2].core_us, cases[1].core_us),
    );
}
