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
//! A store whose metadata lives in PostgreSQL has `STORE/store.toml` (the database, 0600)
//! instead of the SQLite files, and keeps the tenants' folders (content, sessions) under
//! the content folder its catalog names: the store directory that made it.
//!
//! Invariant: a mount opens only its own tenant's folder and metadata. One database (or
//! schema, with a role of its own) per tenant is the isolation boundary, so a query bug
//! cannot reach another tenant's rows.

use std::fs::{self, File};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{Context, Error, Result};
use crate::ids::TenantId;
use crate::meta::Meta;
use crate::meta::MetaResult;
use crate::meta::migrate::{Progress, TenantSource};
use crate::meta::postgres::catalog::{Found, PgCatalog, StoreInfo};
use crate::meta::postgres::{PgMeta, Root, Target};
use crate::objects::{LocalObjects, ObjectStore};
use crate::time::{now_nanos, now_secs};
use crate::types::{Extent, Ino, Kind, ROOT_INO};

pub struct Store {
    root: PathBuf,
    engine: Engine,
}

/// The engine that holds a store's catalog and metadata.
#[derive(Clone)]
enum Engine {
    Embedded,
    Postgres(Box<(Target, StoreInfo)>),
}

/// The configuration file of a store whose metadata is elsewhere than in its directory.
const CONFIG: &str = "store.toml";

/// Present while `store migrate` runs: mounts that start then are refused.
pub const MIGRATING: &str = "migrating";

/// `STORE/store.toml`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreConfig {
    /// `postgres://USER@HOST:PORT/DB`.
    meta: String,
    /// A 0600 file holding the database password, when the URL has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    meta_password_file: Option<PathBuf>,
}

/// Where `init` puts a store's metadata.
pub struct MetaSpec {
    pub url: String,
    pub password_file: Option<PathBuf>,
}

fn parse_target(url: &str, password_file: Option<&Path>) -> Result<Target> {
    if let Some(file) = password_file {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(file).context(|| format!("cannot read {}", file.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::Usage(format!(
                "the password file {} can be read by others; chmod 600 it",
                file.display()
            )));
        }
    }
    Target::parse(url, password_file)
        .map_err(|e| Error::Usage(format!("--meta {}: {e}", shown_url(url))))
}

/// A URL as it may be shown: without its password.
fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

pub enum InitOutcome {
    Created,
    /// A PostgreSQL store existed already: this directory joined it.
    Joined,
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
    /// Creates a store; an existing store is left exactly as it is. With `meta`, its
    /// catalog and metadata live in that PostgreSQL database, which may already hold the
    /// store: this directory then joins it.
    pub fn init(root: &Path, meta: Option<&MetaSpec>) -> Result<InitOutcome> {
        let catalog = root.join("catalog.db");
        let config = root.join(CONFIG);
        if catalog.exists() || config.exists() {
            let asked = meta.map(|m| m.url.as_str());
            let has = if config.exists() {
                Some(Store::config(&config)?.meta)
            } else {
                None
            };
            return match (asked, has) {
                (Some(url), None) => Err(Error::Usage(format!(
                    "{} is an embedded store already, not one in {}; `tenantfs store migrate` moves it",
                    root.display(),
                    shown_url(url)
                ))),
                (Some(url), Some(has)) if url != has => Err(Error::Usage(format!(
                    "{} is already a store in {}; choose another directory for {}",
                    root.display(),
                    shown_url(&has),
                    shown_url(url)
                ))),
                _ => Ok(InitOutcome::AlreadyThere),
            };
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
        let Some(spec) = meta else {
            mkdir_private(&root.join("tenants"))?;
            mkdir_private(&root.join("logs"))?;
            private_db(&catalog)?;
            Catalog::create(&catalog)?;
            return Ok(InitOutcome::Created);
        };
        let target = parse_target(&spec.url, spec.password_file.as_deref())?;
        mkdir_private(&root.join("tenants"))?;
        mkdir_private(&root.join("logs"))?;
        let content = root
            .canonicalize()
            .context(|| format!("cannot resolve {}", root.display()))?;
        let mut raw = [0u8; 4];
        getrandom::fill(&mut raw).expect("the OS random source is available");
        let found = PgCatalog::init(&target, &hex::encode(raw), &content);
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_dir_all(root);
                return Err(e.into());
            }
        };
        let text = toml::to_string(&StoreConfig {
            meta: spec.url.clone(),
            meta_password_file: spec.password_file.clone(),
        })
        .map_err(|e| Error::Usage(format!("cannot write the store configuration: {e}")))?;
        crate::private::write_file(&config, text.as_bytes())
            .context(|| format!("cannot write {}", config.display()))?;
        Ok(match found {
            Found::Made => InitOutcome::Created,
            Found::Joined => InitOutcome::Joined,
        })
    }

    pub fn open(root: &Path) -> Result<Store> {
        if !root.exists() {
            return Err(Error::StoreMissing(root.to_path_buf()));
        }
        let config = root.join(CONFIG);
        let engine = if config.is_file() {
            let c = Store::config(&config)?;
            let target = parse_target(&c.meta, c.meta_password_file.as_deref())?;
            let info = PgCatalog::open(&target)?.info().clone();
            Engine::Postgres(Box::new((target, info)))
        } else if root.join("catalog.db").is_file() {
            Engine::Embedded
        } else {
            return Err(Error::NotAStore(root.to_path_buf()));
        };
        let root = root
            .canonicalize()
            .context(|| format!("cannot resolve {}", root.display()))?;
        Ok(Store { root, engine })
    }

    fn config(path: &Path) -> Result<StoreConfig> {
        let text =
            fs::read_to_string(path).context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            Error::Usage(format!(
                "{} is not a valid store configuration: {}",
                path.display(),
                e.message().trim_end()
            ))
        })
    }

    /// The engine's name and where it is, for listings (never with a password).
    pub fn meta_location(&self) -> String {
        match &self.engine {
            Engine::Embedded => "sqlite".into(),
            Engine::Postgres(pg) => pg.0.to_string(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn catalog(&self) -> Result<Catalog> {
        match &self.engine {
            Engine::Embedded => {
                let path = self.root.join("catalog.db");
                private_db(&path)?;
                Catalog::open(&path)
            }
            Engine::Postgres(pg) => Ok(Catalog::new(Box::new(PgCatalog::open(&pg.0)?))),
        }
    }

    /// A tenant's folder: its content, sessions and audit log.
    pub fn tenant_dir(&self, id: &TenantId) -> PathBuf {
        let base = match &self.engine {
            Engine::Embedded => &self.root,
            Engine::Postgres(pg) => &pg.1.content_dir,
        };
        base.join("tenants").join(id.as_str())
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
        let tenants = dir.parent().expect("a tenant folder has a parent");
        let staging = tenants.join(format!(".new-{id}"));
        for stale in [&dir, &staging] {
            if stale.exists() {
                // Left by a crash between the folder and the catalog row: nothing refers to it.
                fs::remove_dir_all(stale)
                    .context(|| format!("cannot clear {}", stale.display()))?;
            }
        }
        mkdir_private(&staging.join("objects"))?;
        mkdir_private(&staging.join("sessions"))?;
        match &self.engine {
            Engine::Embedded => {
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
            Engine::Postgres(pg) => {
                fs::rename(&staging, &dir)
                    .context(|| format!("cannot move {} into place", dir.display()))?;
                // The catalog row, the schema, its role and the root commit together.
                let root = Root {
                    uid: owner.0,
                    gid: owner.1,
                    now: now_nanos(),
                    private,
                };
                PgCatalog::open(&pg.0)?.create_tenant(id.as_str(), name, now_secs(), &root)?;
                catalog.audit("tenant.create", Some(id.as_str()), name)
            }
        }
    }

    /// Moves an embedded store's catalog and every tenant's metadata into an empty
    /// PostgreSQL database; content stays where it is. Refused while any tenant is mounted;
    /// mounts that start meanwhile are refused (see [`MIGRATING`]). The SQLite files are
    /// moved aside into `migrated-sqlite/`, untouched. Returns how many tenants moved.
    pub fn migrate_to(&self, spec: &MetaSpec, progress: Progress<'_>) -> Result<usize> {
        if !matches!(self.engine, Engine::Embedded) {
            return Err(Error::Usage(format!(
                "{} keeps its metadata in {} already",
                self.root.display(),
                self.meta_location()
            )));
        }
        let target = parse_target(&spec.url, spec.password_file.as_deref())?;
        let marker = self.root.join(MIGRATING);
        crate::private::write_file(&marker, b"").map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Usage(format!(
                "another migration is running, or one was stopped: if none runs, remove {} and try again",
                marker.display()
            )),
            _ => Error::Io {
                what: format!("cannot create {}", marker.display()),
                source: e,
            },
        })?;
        let out = self.migrate_marked(spec, &target, progress);
        let _ = fs::remove_file(&marker);
        out
    }

    fn migrate_marked(
        &self,
        spec: &MetaSpec,
        target: &Target,
        progress: Progress<'_>,
    ) -> Result<usize> {
        let tenants = self.catalog()?.tenants()?;
        let mut ids = Vec::new();
        for t in &tenants {
            let id: TenantId = t.id.parse().map_err(Error::Usage)?;
            let live = live_sessions(self, &id).len();
            if live > 0 {
                return Err(Error::Usage(format!(
                    "tenant {id} is mounted ({live} live mounts); unmount every mount of the store first"
                )));
            }
            ids.push(id);
        }
        let dbs: Vec<PathBuf> = ids
            .iter()
            .map(|id| self.tenant_dir(id).join("meta.db"))
            .collect();
        let sources: Vec<TenantSource<'_>> = ids
            .iter()
            .zip(&dbs)
            .map(|(id, db)| TenantSource {
                id: id.as_str(),
                meta_db: db,
            })
            .collect();
        let mut raw = [0u8; 4];
        getrandom::fill(&mut raw).expect("the OS random source is available");
        crate::meta::migrate::to_postgres(
            &self.root.join("catalog.db"),
            &sources,
            target,
            &hex::encode(raw),
            &self.root,
            progress,
        )?;
        // The database holds the store now: the configuration says so, and the SQLite
        // files go aside, so nothing can write to them again.
        let text = toml::to_string(&StoreConfig {
            meta: spec.url.clone(),
            meta_password_file: spec.password_file.clone(),
        })
        .map_err(|e| Error::Usage(format!("cannot write the store configuration: {e}")))?;
        let config = self.root.join(CONFIG);
        crate::private::write_file(&config, text.as_bytes())
            .context(|| format!("cannot write {}", config.display()))?;
        let aside = self.root.join("migrated-sqlite");
        let mut moves = vec![(self.root.join("catalog.db"), aside.join("catalog.db"))];
        for (id, db) in ids.iter().zip(&dbs) {
            moves.push((db.clone(), aside.join(id.as_str()).join("meta.db")));
        }
        for (from, to) in moves {
            mkdir_private(to.parent().expect("a file has a folder"))?;
            for suffix in ["", "-wal", "-shm"] {
                let (mut f, mut t) = (from.clone().into_os_string(), to.clone().into_os_string());
                f.push(suffix);
                t.push(suffix);
                if Path::new(&f).exists() {
                    fs::rename(&f, &t)
                        .context(|| format!("cannot move {} aside", Path::new(&f).display()))?;
                }
            }
        }
        Ok(ids.len())
    }

    pub fn open_meta(&self, id: &TenantId) -> Result<Meta> {
        self.open_meta_sized(id, crate::meta::DB_CACHE, crate::meta::DB_MAP)
    }

    /// [`Store::open_meta`] with the page cache and mapped size (see [`Meta::open_sized`]);
    /// PostgreSQL has its own caches, and ignores both.
    pub fn open_meta_sized(&self, id: &TenantId, cache: u64, map: u64) -> Result<Meta> {
        match &self.engine {
            Engine::Embedded => {
                let path = self.tenant_dir(id).join("meta.db");
                if !path.is_file() {
                    return Err(Error::TenantMissing(id.to_string()));
                }
                private_db(&path)?;
                Ok(Meta::open_sized(&path, cache, map)?)
            }
            Engine::Postgres(pg) => {
                let space = PgCatalog::open(&pg.0)?
                    .space(id.as_str())?
                    .ok_or_else(|| Error::TenantMissing(id.to_string()))?;
                Ok(Meta::new(Box::new(PgMeta::open(&pg.0, &space)?)))
            }
        }
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
        // Checked with the session's lock held, so a migration that starts now sees it.
        if store.root.join(MIGRATING).exists() {
            return Err(Error::Usage(
                "the store is being moved to PostgreSQL (tenantfs store migrate); mount again when it is done"
                    .into(),
            ));
        }
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
