//! The store layout on disk, and tenant lifecycle.
//!
//! ```text
//! STORE/catalog.db                 tenants, keys, audit
//! STORE/tenants/<id>/meta.db       that tenant's inodes, entries, xattrs, usage
//! STORE/tenants/<id>/objects/      that tenant's file content
//! STORE/tenants/<id>/sessions/     one locked file per live mount of that tenant
//! STORE/logs/                      logs of background mount daemons
//! ```
//!
//! Invariant: a mount opens only its own tenant's folder. One database per tenant is the
//! isolation boundary, so a query bug cannot reach another tenant's rows.

use std::fs::{self, File};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::{Context, Error, Result};
use crate::ids::TenantId;
use crate::meta::Meta;
use crate::meta::MetaResult;
use crate::objects::{LocalObjects, ObjectStore};
use crate::time::now_nanos;
use crate::types::{Extent, Ino, Kind, ROOT_INO};

pub struct Store {
    root: PathBuf,
}

pub enum InitOutcome {
    Created,
    AlreadyThere,
}

#[derive(Serialize)]
pub struct TenantUsage {
    pub bytes_used: u64,
    pub inodes_used: u64,
    /// 0 is unlimited.
    pub max_bytes: u64,
    pub max_inodes: u64,
}

/// A database file and SQLite's files beside it, 0600 (see [`crate::private::sqlite_files`]).
fn private_db(path: &Path) -> Result<()> {
    crate::private::sqlite_files(path).context(|| format!("cannot make {} private", path.display()))
}

fn mkdir_private(path: &Path) -> Result<()> {
    crate::private::create_dir(path).context(|| format!("cannot create {}", path.display()))
}

impl Store {
    /// Creates a store; an existing store is left exactly as it is.
    pub fn init(root: &Path) -> Result<InitOutcome> {
        let catalog = root.join("catalog.db");
        if catalog.exists() {
            return Ok(InitOutcome::AlreadyThere);
        }
        if root.exists()
            && fs::read_dir(root)
                .context(|| format!("cannot read {}", root.display()))?
                .next()
                .is_some()
        {
            return Err(Error::Usage(format!(
                "{} exists, is not empty and is not a tenantfs store; choose an empty or new directory",
                root.display()
            )));
        }
        mkdir_private(&root.join("tenants"))?;
        mkdir_private(&root.join("logs"))?;
        private_db(&catalog)?;
        Catalog::create(&catalog)?;
        Ok(InitOutcome::Created)
    }

    pub fn open(root: &Path) -> Result<Store> {
        if !root.exists() {
            return Err(Error::StoreMissing(root.to_path_buf()));
        }
        if !root.join("catalog.db").is_file() {
            return Err(Error::NotAStore(root.to_path_buf()));
        }
        let root = root
            .canonicalize()
            .context(|| format!("cannot resolve {}", root.display()))?;
        Ok(Store { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn catalog(&self) -> Result<Catalog> {
        let path = self.root.join("catalog.db");
        private_db(&path)?;
        Catalog::open(&path)
    }

    pub fn tenant_dir(&self, id: &TenantId) -> PathBuf {
        self.root.join("tenants").join(id.as_str())
    }

    pub fn audit_log(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("audit.log")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Builds the tenant's folder aside, moves it into place, then records it in the
    /// catalog, so a crash never leaves a catalog row without its folder.
    pub fn create_tenant(
        &self,
        id: &TenantId,
        name: &str,
        owner: (u32, u32),
        private: bool,
    ) -> Result<()> {
        let catalog = self.catalog()?;
        if catalog.tenant_exists(id)? {
            return Err(Error::TenantExists(id.to_string()));
        }
        let dir = self.tenant_dir(id);
        let staging = self.root.join("tenants").join(format!(".new-{id}"));
        for stale in [&dir, &staging] {
            if stale.exists() {
                // Left by a crash between the folder and the catalog row: nothing refers to it.
                fs::remove_dir_all(stale)
                    .context(|| format!("cannot clear {}", stale.display()))?;
            }
        }
        mkdir_private(&staging.join("objects"))?;
        mkdir_private(&staging.join("sessions"))?;
        private_db(&staging.join("meta.db"))?;
        Meta::create(
            &staging.join("meta.db"),
            owner.0,
            owner.1,
            now_nanos(),
            private,
        )?;
        fs::rename(&staging, &dir)
            .context(|| format!("cannot move {} into place", dir.display()))?;
        catalog.insert_tenant(id, name)
    }

    pub fn open_meta(&self, id: &TenantId) -> Result<Meta> {
        self.open_meta_sized(id, crate::meta::DB_CACHE, crate::meta::DB_MAP)
    }

    /// [`Store::open_meta`] with the page cache and mapped size (see [`Meta::open_sized`]).
    pub fn open_meta_sized(&self, id: &TenantId, cache: u64, map: u64) -> Result<Meta> {
        let path = self.tenant_dir(id).join("meta.db");
        if !path.is_file() {
            return Err(Error::TenantMissing(id.to_string()));
        }
        private_db(&path)?;
        Ok(Meta::open_sized(&path, cache, map)?)
    }

    pub fn objects(&self, id: &TenantId) -> LocalObjects {
        LocalObjects::new(self.tenant_dir(id).join("objects"))
    }

    pub fn usage(&self, id: &TenantId) -> Result<TenantUsage> {
        let meta = self.open_meta(id)?;
        let (bytes_used, inodes_used) = meta.read().usage()?;
        let (max_bytes, max_inodes) = meta.read().limits()?;
        Ok(TenantUsage {
            bytes_used,
            inodes_used,
            max_bytes,
            max_inodes,
        })
    }

    /// Sets a tenant's limits and rates (`None` keeps one as it is, 0 is unlimited). Live
    /// mounts pick them up at their next check.
    pub fn set_limits(
        &self,
        id: &TenantId,
        max_bytes: Option<u64>,
        max_inodes: Option<u64>,
        ops_per_sec: Option<u64>,
        bytes_per_sec: Option<u64>,
    ) -> Result<()> {
        let mut meta = self.open_meta(id)?;
        meta.write(|tx| -> MetaResult<()> {
            tx.set_limits(max_bytes, max_inodes)?;
            tx.set_rates(ops_per_sec, bytes_per_sec)?;
            tx.bump_policy()
        })?;
        self.catalog()?.audit(
            "tenant.limits",
            Some(id.as_str()),
            &format!(
                "max_bytes={max_bytes:?} max_inodes={max_inodes:?} ops_per_sec={ops_per_sec:?} bytes_per_sec={bytes_per_sec:?}"
            ),
        )
    }

    /// Lets (or stops) read-only opens of the tenant's files read straight through the
    /// kernel. Live mounts apply it to opens within a few seconds.
    pub fn set_passthrough_reads(&self, id: &TenantId, on: bool) -> Result<()> {
        self.open_meta(id)?
            .write(|tx| tx.set_passthrough_reads(on))?;
        self.catalog()?.audit(
            "tenant.passthrough_reads",
            Some(id.as_str()),
            &format!("on={on}"),
        )
    }

    pub fn passthrough_reads(&self, id: &TenantId) -> Result<bool> {
        Ok(self.open_meta(id)?.read().passthrough_reads()?)
    }

    /// Walks a key root like `/a/b` to its directory inode.
    pub fn resolve_root(meta: &Meta, root: &str) -> Result<Ino> {
        let mut ino = ROOT_INO;
        let tx = meta.read();
        for part in root.split('/').filter(|p| !p.is_empty()) {
            match tx.lookup(ino, part.as_bytes())? {
                Some((child, Kind::Dir)) => ino = child,
                _ => {
                    return Err(Error::Usage(format!(
                        "the key's root {root} is not a directory in the tenant; create it, or make a key with another --root"
                    )));
                }
            }
        }
        Ok(ino)
    }
}

/// A live mount's claim on its tenant: a locked file whose lock dies with the process, so
/// the next mount can tell the state a crashed mount left from a live mount's.
pub struct Session {
    pub id: String,
    _lock: Flock<File>,
    path: PathBuf,
}

impl Session {
    /// Starts a session and recovers what dead sessions left: sizes of files they were
    /// writing, files they held open after unlink, and objects whose inode is gone.
    pub fn start(store: &Store, tenant: &TenantId, meta: &mut Meta) -> Result<Session> {
        let dir = store.tenant_dir(tenant).join("sessions");
        mkdir_private(&dir)?;
        let mut raw = [0u8; 8];
        getrandom::fill(&mut raw).expect("the OS random source is available");
        let id = hex::encode(raw);
        let path = dir.join(format!("{id}.lock"));
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .context(|| format!("cannot create {}", path.display()))?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| Error::Io {
                what: "cannot lock the session file".into(),
                source: e.into(),
            })?;
        let session = Session {
            id,
            _lock: lock,
            path,
        };
        recover(store, tenant, &dir, &session.id, meta)?;
        Ok(session)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Ids of the sessions (mounts) of a tenant that are alive now.
pub fn live_sessions(store: &Store, tenant: &TenantId) -> Vec<String> {
    live_sessions_in(&store.tenant_dir(tenant).join("sessions"))
}

/// Live sessions in a tenant's `sessions` folder.
pub fn live_sessions_in(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".lock"))
                .map(str::to_string)
        })
        .filter(|id| session_alive(dir, id))
        .collect()
}

/// Recovers what dead sessions left, as a mount does when it starts; `fsck --repair` uses it.
pub fn recover_dead_sessions(store: &Store, tenant: &TenantId, meta: &mut Meta) -> Result<()> {
    let dir = store.tenant_dir(tenant).join("sessions");
    recover(store, tenant, &dir, "", meta)
}

fn session_alive(dir: &Path, id: &str) -> bool {
    let Ok(file) = File::open(dir.join(format!("{id}.lock"))) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
}

fn recover(store: &Store, tenant: &TenantId, dir: &Path, me: &str, meta: &mut Meta) -> Result<()> {
    let objects = store.objects(tenant);
    let dead: Vec<String> = meta
        .read()
        .sessions_with_state()?
        .into_iter()
        .filter(|s| s != me && !session_alive(dir, s))
        .collect();
    for session in &dead {
        let writers = meta.read().writers_of(session)?;
        let orphans = meta.read().orphans_of(session)?;
        let lengths: Vec<(Ino, Option<Extent>)> = writers
            .iter()
            .map(|&ino| objects.extent(ino).map(|l| (ino, l)))
            .collect::<std::io::Result<_>>()
            .context(|| "cannot read object sizes".into())?;
        meta.write(|tx| {
            // What it held goes back before sizes settle, so growth is counted once.
            crate::quota::release_session(tx, session)?;
            for &(ino, len) in &lengths {
                let Some(a) = tx.inode(ino)? else {
                    // Made after another mount deleted the inode: nobody else deletes it.
                    if len.is_some() {
                        tx.mark_gc(ino)?;
                    }
                    continue;
                };
                {
                    let extent = len.unwrap_or_default();
                    // A ghost's size no longer counts.
                    if (extent.len != a.size || extent.blocks != a.blocks)
                        && tx.set_size(ino, extent, a.mtime, a.ctime)?
                    {
                        let delta = extent.len as i64 - a.size as i64;
                        crate::quota::add_usage(tx, ino, delta, 0)?;
                    }
                }
            }
            for &ino in &orphans {
                if tx.inode(ino)?.is_some_and(|a| a.nlink == 0) {
                    crate::quota::delete_inode(tx, ino)?;
                }
            }
            tx.forget_session(session)
        })?;
        tracing::info!(
            session,
            writers = writers.len(),
            orphans = orphans.len(),
            "recovered a dead session"
        );
    }
    // Stale lock files of sessions that left no state.
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
                continue;
            };
            if id != me && !session_alive(dir, id) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    for ino in meta.read().gc_pending()? {
        objects
            .remove(ino)
            .context(|| format!("cannot delete object {ino:x}"))?;
        meta.read().gc_done(ino)?;
    }
    Ok(())
}
