//! Scale: mount time and per-op cost in a 1-tenant store against a 10,000-tenant store, and in
//! a 1,000-inode tree against a 1,000,000-inode tree.
//!
//! `cargo build --release && cargo run --release --example scale -- [TENANTS] [INODES]`
//! (defaults 10000 and 1000000; run as root, it mounts). Per-op costs are medians of rounds,
//! the three stores taking turns in every round so that the machine's drift falls on all of
//! them: cold `stat` through the mount (kernel caches dropped, so lookup and getattr reach
//! the daemon), and lookup + getattr in the core without FUSE.
//!
//! `SCALE_DIR=DIR` keeps the stores in DIR and reuses them on the next run.
//! `SCALE_CORE_ONLY=N` measures only store N's core (0, 1 or 2), with no mount, for
//! `valgrind --tool=callgrind --toggle-collect='*core_round*'`.

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
/// Core rounds are cheap (milliseconds), so take many.
const CORE_ROUNDS: usize = 31;
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

/// `dirs` directories `dNNNNN` of `per_dir` empty files `fNNNNN` each under the tenant root,
/// in one transaction.
fn fill(store: &Store, tenant: &TenantId, dirs: usize, per_dir: usize) {
    let mut meta = store.open_meta(tenant).unwrap();
    meta.write(|tx| -> tenantfs::meta::MetaResult<()> {
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
            }
            tx.add_usage(0, 1 + per_dir as i64)?;
        }
        Ok(())
    })
    .unwrap();
}

/// A new key for `tenant`, written to `path`.
fn key(store: &Store, tenant: &TenantId, path: PathBuf) -> PathBuf {
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
    std::fs::write(&path, new.secret.as_bytes()).unwrap();
    path
}

fn drop_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One store and tenant under test, with the files it samples (one per directory).
struct Case {
    label: String,
    dir: PathBuf,
    tenant: TenantId,
    sample: Vec<(String, String)>,
}

impl Case {
    fn new(label: String, dir: &Path, tenant: &TenantId, names: &[(String, String)]) -> Case {
        let mut seen = std::collections::HashSet::new();
        let per_dir: Vec<&(String, String)> =
            names.iter().filter(|(d, _)| seen.insert(d)).collect();
        let step = (per_dir.len() / SAMPLE).max(1);
        let sample = per_dir
            .into_iter()
            .step_by(step)
            .take(SAMPLE)
            .cloned()
            .collect();
        Case {
            label,
            dir: dir.to_path_buf(),
            tenant: tenant.clone(),
            sample,
        }
    }

    fn tfs(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(bin())
            .args(args)
            .env("TENANTFS_STORE", &self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

#[derive(Default)]
struct Measured {
    mounts: Vec<f64>,
    stats: Vec<f64>,
    cores: Vec<f64>,
    rss_idle: u64,
    rss_loaded: u64,
}

/// One round through the mount: mount, cold stats of the sample, unmount.
fn mount_round(case: &Case, scratch: &Path, keyfile: &Path, m: &mut Measured) {
    let mnt = scratch.join(format!("mnt-{}", case.tenant));
    std::fs::create_dir_all(&mnt).unwrap();
    let mnt_s = mnt.to_str().unwrap();
    let t = Instant::now();
    let out = case.tfs(&["mount", mnt_s, "--key-file", keyfile.to_str().unwrap()]);
    m.mounts.push(t.elapsed().as_secs_f64() * 1e3);
    let pid: u32 = String::from_utf8_lossy(&out.stderr)
        .rsplit("daemon pid ")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    m.rss_idle = rss_kib(pid);
    drop_caches();
    let t = Instant::now();
    for (d, f) in &case.sample {
        std::fs::metadata(mnt.join(d).join(f)).unwrap();
    }
    m.stats
        .push(t.elapsed().as_secs_f64() * 1e6 / case.sample.len() as f64);
    m.rss_loaded = rss_kib(pid);
    case.tfs(&["umount", mnt_s]);
}

fn core_fs(case: &Case) -> TenantFs {
    let store = Store::open(&case.dir).unwrap();
    TenantFs::new(
        store.open_meta(&case.tenant).unwrap(),
        Arc::new(store.objects(&case.tenant)),
        MountSpec::admin(),
        "scale".into(),
    )
    .unwrap()
}

/// The core alone: lookup of the directory and the file, and getattr, for every sampled
/// file; microseconds per file.
#[inline(never)]
fn core_round(fs: &TenantFs, sample: &[(String, String)]) -> f64 {
    let t = Instant::now();
    for (d, f) in sample {
        let dir: Ino = fs.lookup(ROOT_INO, d.as_bytes()).unwrap().ino;
        let a = fs.lookup(dir, f.as_bytes()).unwrap();
        fs.getattr(a.ino).unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64
}

/// Builds the three stores in `root`, or finds them there from an earlier run.
fn build(root: &Path, tenants: usize, inodes: usize) -> Vec<Case> {
    let small = root.join("store-1");
    let large = root.join("store-many");
    let t: TenantId = "t".parse().unwrap();
    let big: TenantId = "big".parse().unwrap();
    let per_dir = 999;
    let names_of = |dirs: usize, per: usize| -> Vec<(String, String)> {
        (0..dirs)
            .flat_map(|d| (0..per).map(move |f| (format!("d{d:05}"), format!("f{f:05}"))))
            .collect()
    };
    let built = root.join("built");
    if !built.exists() {
        let began = Instant::now();
        Store::init(&small, None).unwrap();
        let s1 = Store::open(&small).unwrap();
        s1.create_tenant(&t, "t", (0, 0), false).unwrap();
        fill(&s1, &t, SAMPLE, 1);
        Store::init(&large, None).unwrap();
        let sn = Store::open(&large).unwrap();
        sn.create_tenant(&t, "t", (0, 0), false).unwrap();
        fill(&sn, &t, SAMPLE, 1);
        for i in 1..tenants.saturating_sub(1) {
            let id: TenantId = format!("tenant-{i:05}").parse().unwrap();
            sn.create_tenant(&id, "x", (0, 0), false).unwrap();
        }
        sn.create_tenant(&big, "big", (0, 0), false).unwrap();
        fill(&sn, &big, inodes / (per_dir + 1), per_dir);
        eprintln!(
            "built {tenants} tenants and {inodes} inodes in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        std::fs::write(&built, "").unwrap();
    }
    vec![
        Case::new(
            "1 tenant, 1,000 inodes".into(),
            &small,
            &t,
            &names_of(SAMPLE, 1),
        ),
        Case::new(
            format!("{tenants} tenants, 1,000 inodes"),
            &large,
            &t,
            &names_of(SAMPLE, 1),
        ),
        Case::new(
            format!("{tenants} tenants, {inodes} inodes"),
            &large,
            &big,
            &names_of(inodes / (per_dir + 1), per_dir),
        ),
    ]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tenants: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let inodes: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let temp;
    let root = match std::env::var_os("SCALE_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            temp = tempfile::tempdir_in("/var/tmp").unwrap();
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&root).unwrap();
    let cases = build(&root, tenants, inodes);

    if let Some(n) = std::env::var("SCALE_CORE_ONLY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let case: &Case = &cases[n];
        let fs = core_fs(case);
        let us = median(
            (0..CORE_ROUNDS)
                .map(|_| core_round(&fs, &case.sample))
                .collect(),
        );
        println!("{}: core lookup+getattr {us:.2} us/op", case.label);
        return;
    }

    let mut measured: Vec<Measured> = cases.iter().map(|_| Measured::default()).collect();
    let keys: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let store = Store::open(&c.dir).unwrap();
            key(&store, &c.tenant, root.join(format!("case-{i}.key")))
        })
        .collect();
    for round in 0..ROUNDS {
        // Alternate the order, so no store always follows the same one.
        let mut order: Vec<usize> = (0..cases.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            mount_round(&cases[i], &root, &keys[i], &mut measured[i]);
        }
    }
    let fss: Vec<TenantFs> = cases.iter().map(core_fs).collect();
    for round in 0..CORE_ROUNDS {
        for i in 0..cases.len() {
            let i = if round % 2 == 1 {
                cases.len() - 1 - i
            } else {
                i
            };
            measured[i]
                .cores
                .push(core_round(&fss[i], &cases[i].sample));
        }
    }

    println!(
        "| store | mount (ms) | cold stat via mount (us/op) | core lookup+getattr (us/op) | RSS idle (MiB) | RSS after stats (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut med = Vec::new();
    for (c, m) in cases.iter().zip(measured) {
        let (stat, core) = (median(m.stats), median(m.cores));
        println!(
            "| {} | {:.0} | {:.1} | {:.2} | {:.1} | {:.1} |",
            c.label,
            median(m.mounts),
            stat,
            core,
            m.rss_idle as f64 / 1024.0,
            m.rss_loaded as f64 / 1024.0
        );
        med.push((stat, core));
    }
    println!(
        "\ncost ratios (1.0 = no change): 10k tenants / 1 tenant: stat {:.2}, core {:.2}; 1M / 1k inodes: stat {:.2}, core {:.2}",
        med[1].0 / med[0].0,
        med[1].1 / med[0].1,
        med[2].0 / med[1].0,
        med[2].1 / med[1].1,
    );
}
