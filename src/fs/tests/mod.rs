//! The core without FUSE: POSIX rules, orphans, snapshots, scopes, revocation, recovery.

use std::sync::Arc;

use super::*;
use crate::ids::{Scope, TenantId};
use crate::meta::Meta;
use crate::objects::LocalObjects;
use crate::policy::Rights;
use crate::store::{Session, Store};

mod acl;
mod metadata;
mod namespace;
mod quotas;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    tenant: TenantId,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        Store::init(&root, None).unwrap();
        let store = Store::open(&root).unwrap();
        let tenant: TenantId = "t".parse().unwrap();
        store.create_tenant(&tenant, "t", (0, 0), false).unwrap();
        Fixture {
            _dir: dir,
            store,
            tenant,
        }
    }

    /// A core with its session, as a mount has them.
    fn core(&self, read_only: bool) -> (TenantFs, Session) {
        let mut meta = self.store.open_meta(&self.tenant).unwrap();
        let session = Session::start(&self.store, &self.tenant, &mut meta).unwrap();
        let objects = Arc::new(self.store.objects(&self.tenant));
        let scope = if read_only { Scope::Read } else { Scope::Write };
        let spec = MountSpec {
            root: ROOT_INO,
            subject: "user:alice".into(),
            scope,
            audit: None,
            rights_cache: access::CACHE_ENTRIES,
        };
        (
            TenantFs::new(meta, objects, spec, session.id.clone()).unwrap(),
            session,
        )
    }

    fn meta(&self) -> Meta {
        self.store.open_meta(&self.tenant).unwrap()
    }

    /// Objects on disk, once `fs`'s reaper has caught up.
    fn objects(&self, fs: &TenantFs) -> usize {
        fs.settle();
        LocalObjects::new(self.store.tenant_dir(&self.tenant).join("objects"))
            .all()
            .unwrap()
            .len()
    }
}

const CTX: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
    pid: 1,
};

fn file(fs: &TenantFs, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let (a, fh) = fs
        .create(&CTX, parent, name.as_bytes(), 0o644, 0o022, libc::O_RDWR)
        .unwrap();
    fs.write(fh, 0, data).unwrap();
    fs.release(fh).unwrap();
    a.ino
}

fn read_all(fs: &TenantFs, ino: Ino) -> Vec<u8> {
    let fh = fs.open(ino, libc::O_RDONLY).unwrap();
    let data = fs.read(fh, 0, 1 << 20).unwrap();
    fs.release(fh).unwrap();
    data
}

fn names(fs: &TenantFs, dir: Ino) -> Vec<String> {
    let fh = fs.opendir(dir).unwrap();
    let out = fs.readdir(fh, dir, 0, 10_000, false).unwrap();
    fs.releasedir(fh).unwrap();
    out.into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect()
}

/// A private tenant (no default entry) and a core acting as `subject`.
fn private_core(f: &Fixture, subject: &str) -> TenantFs {
    let meta = f.meta();
    let spec = MountSpec {
        root: ROOT_INO,
        subject: subject.into(),
        scope: Scope::Write,
        ..MountSpec::admin()
    };
    TenantFs::new(
        meta,
        Arc::new(f.store.objects(&f.tenant)),
        spec,
        subject.into(),
    )
    .unwrap()
}

fn grant(f: &Fixture, ino: Ino, entry: &str) {
    let crate::policy::EntrySpec::Set(subject, rights) = entry.parse().unwrap() else {
        panic!()
    };
    let mut meta = f.meta();
    meta.write(|tx| -> crate::meta::MetaResult<()> {
        tx.set_acl(ino, &subject, rights)?;
        tx.bump_policy()
    })
    .unwrap();
}

fn denied<T: std::fmt::Debug>(r: FsResult<T>) {
    assert!(matches!(r, Err(FsError::Denied)), "{r:?}");
}

fn mkdir(fs: &TenantFs, parent: Ino, name: &str) -> Ino {
    fs.mkdir(&CTX, parent, name.as_bytes(), 0o755, 0)
        .unwrap()
        .ino
}

fn set_quota(f: &Fixture, fs: &TenantFs, dir: Ino, max_bytes: u64, max_inodes: u64) {
    f.meta()
        .write(|tx| crate::quota::set(tx, dir, max_bytes, max_inodes))
        .unwrap();
    fs.refresh_policy().unwrap();
}

/// Every quota's counters against a recount of its subtree, and the tenant's against its
/// inodes: the invariant every op must keep.
fn assert_counts_exact(f: &Fixture) {
    let mut meta = f.meta();
    meta.snapshot(|tx| {
        let held = tx.all_held()?;
        for q in tx.all_dir_quotas()? {
            let (bytes, inodes, reserved) = crate::quota::recount(tx, q.ino, &held)?;
            assert_eq!(
                (q.bytes, q.inodes, q.reserved),
                (bytes, inodes, reserved),
                "quota on {}",
                tx.path_of(q.ino)
            );
        }
        Ok(())
    })
    .unwrap();
}

fn quota_of(f: &Fixture, dir: Ino) -> crate::meta::DirQuota {
    f.meta().read().dir_quota(dir).unwrap().unwrap()
}

const NO_FLAGS: RenameFlags = RenameFlags {
    noreplace: false,
    exchange: false,
};

fn file_in_root(f: &Fixture, name: &str) -> Ino {
    let (fs, _s) = f.core(false);
    file(&fs, ROOT_INO, name, b"")
}
