//! The catalog in PostgreSQL (the `tenantfs` schema): tenants with the number that names
//! their schema, keys, the admin audit log, and what the store is (its schema version, its
//! tag, where its content lives).

use std::path::{Path, PathBuf};

use crate::meta::catalog::{CatalogStore, KeyMatch, KeyRecord, KeyStanding, Keys, TenantRecord};
use crate::meta::{MetaError, MetaResult};

use super::conn::{Begin, Conn, Target};
use super::{CATALOG_SCHEMA, Root, SCHEMA_VERSION, TenantSpace, create_tenant_space};

const SCHEMA: &str = "
CREATE TABLE info(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tenants(
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    suspended_at BIGINT,
    -- Names the tenant's schema and role (see TenantSpace).
    number BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    -- The role's password.
    secret TEXT NOT NULL
);
CREATE TABLE keys(
    id TEXT PRIMARY KEY,
    hash BYTEA NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    root TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX keys_by_tenant ON keys(tenant);
CREATE TABLE audit(
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    tenant TEXT,
    detail TEXT NOT NULL
);
";

/// What the catalog says the store is.
#[derive(Clone)]
pub struct StoreInfo {
    /// Tells this store's roles from another's on the same server.
    pub tag: String,
    /// The folder that holds the tenants' content (until content can live elsewhere).
    pub content_dir: PathBuf,
}

/// What `init` found in the database.
pub enum Found {
    /// Nothing of tenantfs, and nothing else either: a store was made.
    Made,
    /// A store of this build's schema version, which this directory now joins.
    Joined,
}

pub struct PgCatalog {
    conn: Conn,
    info: StoreInfo,
}

fn read_info(conn: &Conn) -> MetaResult<StoreInfo> {
    let (mut tag, mut dir) = (None, None);
    for r in conn.rows("SELECT key, value FROM info", &[])? {
        let value: String = r.try_get(1)?;
        match r.try_get::<_, &str>(0)? {
            "tag" => tag = Some(value),
            "content_dir" => dir = Some(PathBuf::from(value)),
            _ => {}
        }
    }
    match (tag, dir) {
        (Some(tag), Some(content_dir)) => Ok(StoreInfo { tag, content_dir }),
        _ => Err(MetaError::Schema(
            "the store's catalog lacks its tag or content folder".into(),
        )),
    }
}

fn setup() -> String {
    format!("SET search_path TO \"{CATALOG_SCHEMA}\"; SET lock_timeout = '10s'")
}

impl PgCatalog {
    /// Makes a store in an empty database, or joins the store already there. Refuses a
    /// database that holds anything else, or a store of another schema version.
    pub fn init(target: &Target, tag: &str, content_dir: &Path) -> MetaResult<Found> {
        let conn = Conn::open(target, setup())?;
        if PgCatalog::has_store(&conn)? {
            PgCatalog::check_version(&conn, target)?;
            return Ok(Found::Joined);
        }
        PgCatalog::require_empty(&conn, target)?;
        conn.batch(&format!("BEGIN; {}", catalog_ddl()))?;
        PgCatalog::write_info(&conn, tag, content_dir)?;
        conn.batch("COMMIT")?;
        Ok(Found::Made)
    }

    fn has_store(conn: &Conn) -> MetaResult<bool> {
        Ok(conn
            .one(
                "SELECT EXISTS(SELECT 1 FROM pg_namespace WHERE nspname = 'tenantfs')",
                &[],
            )?
            .try_get(0)?)
    }

    /// Refuses a database that holds a store or anything else.
    pub(crate) fn require_empty(conn: &Conn, target: &Target) -> MetaResult<()> {
        if PgCatalog::has_store(conn)? {
            return Err(MetaError::Schema(format!(
                "the database at {target} holds a tenantfs store already; give this one an empty database"
            )));
        }
        let others: i64 = conn
            .one(
                "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                   AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
                &[],
            )?
            .try_get(0)?;
        if others > 0 {
            return Err(MetaError::Schema(format!(
                "the database at {target} holds {others} tables of something else; give tenantfs a database of its own (CREATE DATABASE ...)"
            )));
        }
        Ok(())
    }

    pub(crate) fn write_info(conn: &Conn, tag: &str, content_dir: &Path) -> MetaResult<()> {
        let content = content_dir.to_str().ok_or_else(|| {
            MetaError::Schema(format!("{} is not valid UTF-8", content_dir.display()))
        })?;
        conn.exec(
            "INSERT INTO tenantfs.info(key, value) VALUES ('schema_version', $1), ('tag', $2),
                 ('content_dir', $3)",
            &[&SCHEMA_VERSION.to_string(), &tag, &content],
        )?;
        Ok(())
    }

    /// Records a tenant, with a new password for its role; returns its schema and role.
    pub(crate) fn insert_tenant_row(
        conn: &Conn,
        tag: &str,
        id: &str,
        name: &str,
        at: i64,
    ) -> MetaResult<TenantSpace> {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).expect("the OS random source is available");
        let secret = hex::encode(raw);
        let number: i64 = conn
            .one(
                "INSERT INTO tenantfs.tenants(id, name, created_at, secret) VALUES ($1, $2, $3, $4)
                 RETURNING number",
                &[&id, &name, &at, &secret],
            )?
            .try_get(0)?;
        Ok(TenantSpace::new(tag, number, secret))
    }

    fn check_version(conn: &Conn, target: &Target) -> MetaResult<()> {
        let v = conn.row("SELECT value FROM info WHERE key = 'schema_version'", &[]);
        let version: Option<String> = match v {
            Ok(row) => row.map(|r| r.try_get(0)).transpose()?,
            Err(_) => None,
        };
        match version.as_deref().map(str::parse::<i64>) {
            Some(Ok(SCHEMA_VERSION)) => Ok(()),
            Some(Ok(v)) => Err(MetaError::Schema(format!(
                "the store at {target} has schema version {v}; this build reads {SCHEMA_VERSION}: use a tenantfs release that matches it"
            ))),
            _ => Err(MetaError::Schema(format!(
                "the database at {target} has a schema named tenantfs that is not a tenantfs store; give tenantfs a database of its own"
            ))),
        }
    }

    pub fn open(target: &Target) -> MetaResult<PgCatalog> {
        let conn = Conn::open(target, setup())?;
        PgCatalog::check_version(&conn, target)?;
        let info = read_info(&conn)?;
        Ok(PgCatalog { conn, info })
    }

    pub fn info(&self) -> &StoreInfo {
        &self.info
    }

    /// The schema and role of a tenant; `None` when there is no such tenant.
    pub fn space(&self, tenant: &str) -> MetaResult<Option<TenantSpace>> {
        let tag = &self.info.tag;
        self.conn
            .row(
                "SELECT number, secret FROM tenants WHERE id = $1",
                &[&tenant],
            )?
            .map(|r| Ok(TenantSpace::new(tag, r.try_get(0)?, r.try_get(1)?)))
            .transpose()
    }

    /// Records a tenant and makes its schema, role and root in one transaction.
    pub fn create_tenant(&self, id: &str, name: &str, at: i64, root: &Root) -> MetaResult<()> {
        self.conn.transaction(Begin::PLAIN, || {
            let space = PgCatalog::insert_tenant_row(&self.conn, &self.info.tag, id, name, at)?;
            create_tenant_space(&self.conn, &space, Some(root))
        })
    }
}

/// The catalog's schema and tables.
pub(crate) fn catalog_ddl() -> String {
    format!(
        "CREATE SCHEMA \"{CATALOG_SCHEMA}\"; SET LOCAL search_path TO \"{CATALOG_SCHEMA}\"; {SCHEMA}"
    )
}

impl CatalogStore for PgCatalog {
    fn audit(&self, at: i64, action: &str, tenant: Option<&str>, detail: &str) -> MetaResult<()> {
        self.conn.exec(
            "INSERT INTO audit(at, action, tenant, detail) VALUES ($1, $2, $3, $4)",
            &[&at, &action, &tenant, &detail],
        )?;
        Ok(())
    }

    fn tenant_exists(&self, id: &str) -> MetaResult<bool> {
        Ok(self
            .conn
            .row("SELECT 1 FROM tenants WHERE id = $1", &[&id])?
            .is_some())
    }

    /// Tenants are made with their schema by [`PgCatalog::create_tenant`].
    fn insert_tenant(&self, id: &str, _name: &str, _at: i64) -> MetaResult<()> {
        Err(MetaError::Engine(
            format!("tenant {id}: a PostgreSQL store makes tenants with their schema").into(),
        ))
    }

    fn tenants(&self) -> MetaResult<Vec<TenantRecord>> {
        self.conn
            .rows(
                "SELECT id, name, created_at, suspended_at FROM tenants ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(TenantRecord {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    suspended_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    fn insert_key(&self, k: &KeyRecord, hash: &[u8]) -> MetaResult<()> {
        self.conn.exec(
            "INSERT INTO keys(id, hash, tenant, subject, scope, root, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &k.id,
                &hash,
                &k.tenant,
                &k.subject,
                &k.scope,
                &k.root,
                &k.created_at,
                &k.expires_at,
            ],
        )?;
        Ok(())
    }

    fn keys(&self, which: Keys<'_>) -> MetaResult<Vec<KeyRecord>> {
        let rows = match which {
            Keys::All => self.conn.rows(
                "SELECT id, tenant, subject, scope, root, created_at, expires_at, last_used_at,
                        revoked_at
                 FROM keys ORDER BY tenant, created_at, id",
                &[],
            )?,
            Keys::OfTenant(t) => self.conn.rows(
                "SELECT id, tenant, subject, scope, root, created_at, expires_at, last_used_at,
                        revoked_at
                 FROM keys WHERE tenant = $1 ORDER BY tenant, created_at, id",
                &[&t],
            )?,
            Keys::Id(id) => self.conn.rows(
                "SELECT id, tenant, subject, scope, root, created_at, expires_at, last_used_at,
                        revoked_at
                 FROM keys WHERE id = $1 ORDER BY tenant, created_at, id",
                &[&id],
            )?,
        };
        rows.iter()
            .map(|r| {
                Ok(KeyRecord {
                    id: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    subject: r.try_get(2)?,
                    scope: r.try_get(3)?,
                    root: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                    expires_at: r.try_get(6)?,
                    last_used_at: r.try_get(7)?,
                    revoked_at: r.try_get(8)?,
                })
            })
            .collect()
    }

    fn revoke_key(&self, id: &str, at: i64) -> MetaResult<()> {
        self.conn.exec(
            "UPDATE keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &at],
        )?;
        Ok(())
    }

    fn key_by_hash(&self, hash: &[u8]) -> MetaResult<Option<KeyMatch>> {
        self.conn
            .row(
                "SELECT k.id, k.tenant, k.subject, k.scope, k.root, k.expires_at, k.revoked_at,
                        t.suspended_at
                 FROM keys k LEFT JOIN tenants t ON t.id = k.tenant WHERE k.hash = $1",
                &[&hash],
            )?
            .map(|r| {
                Ok(KeyMatch {
                    id: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    subject: r.try_get(2)?,
                    scope: r.try_get(3)?,
                    root: r.try_get(4)?,
                    expires_at: r.try_get(5)?,
                    revoked_at: r.try_get(6)?,
                    suspended_at: r.try_get(7)?,
                })
            })
            .transpose()
    }

    fn set_key_used(&self, id: &str, at: i64) -> MetaResult<()> {
        self.conn.exec(
            "UPDATE keys SET last_used_at = $2 WHERE id = $1",
            &[&id, &at],
        )?;
        Ok(())
    }

    fn key_standing(&self, id: &str) -> MetaResult<Option<KeyStanding>> {
        self.conn
            .row(
                "SELECT k.revoked_at, k.expires_at, t.suspended_at, t.id
                 FROM keys k LEFT JOIN tenants t ON t.id = k.tenant WHERE k.id = $1",
                &[&id],
            )?
            .map(|r| {
                Ok(KeyStanding {
                    revoked_at: r.try_get(0)?,
                    expires_at: r.try_get(1)?,
                    suspended_at: r.try_get(2)?,
                    tenant_exists: r.try_get::<_, Option<String>>(3)?.is_some(),
                })
            })
            .transpose()
    }
}
