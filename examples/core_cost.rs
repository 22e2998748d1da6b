//! Per-op cost of the core without FUSE: `cargo run --release --example core_cost [N]`.
//! Useful to tell the core's share of a slow op from the kernel's and the protocol's.

use std::sync::Arc;
use std::time::Instant;

use tenantfs::fs::{Ctx, MountSpec, TenantFs};
use tenantfs::ids::Scope;
use tenantfs::meta::Meta;
use tenantfs::objects::LocalObjects;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    Meta::create(&db, 0, 0, 0, false).unwrap();
    let objects = Arc::new(LocalObjects::new(dir.path().join("objects")));
    let spec = MountSpec {
        subject: "user:bench".into(),
        scope: Scope::Write,
        ..MountSpec::admin()
    };
    let fs = TenantFs::new(Meta::open(&db).unwrap(), objects, spec, "bench".into()).unwrap();
    let ctx = Ctx::default();
    let names: Vec<Vec<u8>> = (0..n).map(|i| format!("f{i:06}").into_bytes()).collect();
    let time = |label: &str, f: &mut dyn FnMut(usize)| {
        let t = Instant::now();
        (0..n).for_each(&mut *f);
        println!(
            "{label:10} {:7.2} us/op",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    };
    time("mknod", &mut |i| {
        fs.mknod(&ctx, 1, &names[i], libc::S_IFREG | 0o644, 0, 0)
            .unwrap();
    });
    time("lookup", &mut |i| {
        fs.lookup(1, &names[i]).unwrap();
    });
    time("getattr", &mut |i| {
        fs.getattr(2 + i as u64).unwrap();
    });
    let fh = fs.opendir(1).unwrap();
    let t = Instant::now();
    let mut offset = 0;
    loop {
        let batch = fs.readdir(fh, 1, offset, 64, true).unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.cookie;
    }
    println!(
        "{:10} {:7.2} us/entry",
        "readdir+",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    time("unlink", &mut |i| {
        fs.unlink(1, &names[i]).unwrap();
    });
}
