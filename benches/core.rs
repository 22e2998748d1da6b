//! Micro-benchmarks of the core's hot paths, without FUSE: lookup, getattr, an ACL decision
//! (cached and from scratch through 10 nested groups), a create and unlink, and a quota reservation under a
//! tenant limit and two nested directory quotas. `cargo bench --bench core`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tenantfs::fs::access::Access;
use tenantfs::fs::{Ctx, Ino, MountSpec, ROOT_INO, TenantFs};
use tenantfs::ids::Scope;
use tenantfs::meta::Meta;
use tenantfs::objects::LocalObjects;
use tenantfs::policy::Rights;
use tenantfs::quota;

const FILES: usize = 1000;

struct Setup {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    fs: TenantFs,
    dir: Ino,
    names: Vec<Vec<u8>>,
    inos: Vec<Ino>,
}

/// A private tenant where `agent:bench` is an editor of /org through 10 nested groups,
/// /org and /org/team carry quotas, the tenant has limits, and /org/team holds 1,000 files.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    Meta::create(&db, 0, 0, 0, true).unwrap();
    let objects = Arc::new(LocalObjects::new(dir.path().join("objects")));
    let admin = TenantFs::new(
        Meta::open(&db).unwrap(),
        objects.clone(),
        MountSpec::admin(),
        "setup".into(),
    )
    .unwrap();
    let ctx = Ctx::default();
    let org = admin.mkdir(&ctx, ROOT_INO, b"org", 0o755, 0).unwrap().ino;
    let team = admin.mkdir(&ctx, org, b"team", 0o755, 0).unwrap().ino;
    drop(admin);
    let mut meta = Meta::open(&db).unwrap();
    meta.write(|tx| -> tenantfs::meta::MetaResult<()> {
        for i in 0..9 {
            tx.add_member(&format!("group:g{i}"), &format!("group:g{}", i + 1))?;
        }
        tx.add_member("group:g9", "agent:bench")?;
        tx.set_acl(org, "group:g0", Rights::RWX)?;
        tx.set_limits(Some(1 << 40), Some(100_000_000))?;
        quota::set(tx, org, 1 << 40, 100_000_000)?;
        quota::set(tx, team, 1 << 40, 0)?;
        tx.bump_policy()
    })
    .unwrap();
    let spec = MountSpec {
        subject: "agent:bench".into(),
        scope: Scope::Write,
        ..MountSpec::admin()
    };
    let fs = TenantFs::new(meta, objects, spec, "bench".into()).unwrap();
    let names: Vec<Vec<u8>> = (0..FILES)
        .map(|i| format!("f{i:05}").into_bytes())
        .collect();
    let inos = names
        .iter()
        .map(|n| {
            fs.mknod(&ctx, team, n, libc::S_IFREG | 0o644, 0, 0)
                .unwrap()
                .ino
        })
        .collect();
    Setup {
        _dir: dir,
        db,
        fs,
        dir: team,
        names,
        inos,
    }
}

fn core(c: &mut Criterion) {
    let s = setup();
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % FILES;
        i
    };
    c.bench_function("lookup", |b| {
        b.iter(|| black_box(s.fs.lookup(s.dir, &s.names[next()]).unwrap()))
    });
    // A name made and removed under the three limits: two write transactions.
    let ctx = Ctx::default();
    c.bench_function("create + unlink (3 limits)", |b| {
        b.iter(|| {
            s.fs.mknod(&ctx, s.dir, b"scratch", libc::S_IFREG | 0o644, 0, 0)
                .unwrap();
            s.fs.unlink(s.dir, b"scratch").unwrap()
        })
    });
    c.bench_function("getattr", |b| {
        b.iter(|| black_box(s.fs.getattr(s.inos[next()]).unwrap()))
    });

    // An ACL decision from scratch: the subject's groups resolved through 10 levels, the
    // entries read from the file up to /org.
    let meta = Meta::open(&s.db).unwrap();
    let access = Access::new("agent:bench", false, &*meta.read()).unwrap();
    c.bench_function("acl check, uncached", |b| {
        b.iter(|| {
            access.clear();
            black_box(access.rights(&*meta.read(), s.inos[next()]).unwrap())
        })
    });
    c.bench_function("acl check, cached", |b| {
        b.iter(|| black_box(access.rights(&*meta.read(), s.inos[7]).unwrap()))
    });

    // What a growing file does once per chunk: find its room under three limits, hold a
    // chunk, and give it back.
    let mut meta = Meta::open(&s.db).unwrap();
    c.bench_function("quota reservation (3 limits)", |b| {
        b.iter(|| {
            let ino = s.inos[next()];
            meta.write(|tx| -> tenantfs::meta::MetaResult<()> {
                let dirs = quota::over(tx, ino)?;
                let room = quota::room(tx, &dirs)?;
                quota::hold_in(tx, ino, "bench", room.min(4 << 20) as i64, &dirs)?;
                quota::hold_in(tx, ino, "bench", -(4 << 20), &dirs)?;
                Ok(())
            })
            .unwrap()
        })
    });
}

criterion_group!(benches, core);
criterion_main!(benches);
