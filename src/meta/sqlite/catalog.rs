//! The catalog in SQLite (`store/catalog.db`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::meta::MetaResult;
use crate::meta::catalog::{CatalogStore, KeyMatch, KeyRecord, KeyStanding, Keys, TenantRecord};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants(
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    suspended_at INTEGER
);
CREATE TABLE IF NOT EXISTS keys(
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    root TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS keys_by_tenant ON keys(tenant);
CREATE TABLE IF NOT EXISTS audit(
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    tenant TEXT,
    detail TEXT NOT NULL
);
";

pub struct SqliteCatalog {
    conn: Connection,
}

impl SqliteCatalog {
    pub fn create(path: &Path) -> MetaResult<()> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(())
    }

    pub fn open(path: &Path) -> MetaResult<SqliteCatalog> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(SqliteCatalog { conn })
    }
}

impl CatalogStore for SqliteCatalog {
    fn audit(&self, at: i64, action: &str, tenant: Option<&str>, detail: &str) -> MetaResult<()> {
        self.conn.execute(
            "INSERT INTO audit(at, action, tenant, detail) VALUES (?1, ?2, ?3, ?4)",
            params![at, action, tenant, detail],
        )?;
        Ok(())
    }

    fn tenant_exists(&self, id: &str) -> MetaResult<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM tenants WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn insert_tenant(&self, id: &str, name: &str, at: i64) -> MetaResult<()> {
        self.conn.execute(
            "INSERT INTO tenants(id, name, created_at) VALUES (?1, ?2, ?3)",
            params![id, name, at],
        )?;
        Ok(())
    }

    fn tenants(&self) -> MetaResult<Vec<TenantRecord>> {
        Ok(self
            .conn
            .prepare("SELECT id, name, created_at, suspended_at FROM tenants ORDER BY id")?
            .query_map([], |r| {
                Ok(TenantRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                    suspended_at: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn insert_key(&self, k: &KeyRecord, hash: &[u8]) -> MetaResult<()> {
        self.conn.execute(
            "INSERT INTO keys(id, hash, tenant, subject, scope, root, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                k.id,
                hash,
                k.tenant,
                k.subject,
                k.scope,
                k.root,
                k.created_at,
                k.expires_at
            ],
        )?;
        Ok(())
    }

    fn keys(&self, which: Keys<'_>) -> MetaResult<Vec<KeyRecord>> {
        let (filter, arg) = match which {
            Keys::All => ("", ""),
            Keys::OfTenant(t) => ("WHERE tenant = ?1", t),
            Keys::Id(id) => ("WHERE id = ?1", id),
        };
        let sql = format!(
            "SELECT id, tenant, subject, scope, root, created_at, expires_at, last_used_at, revoked_at
             FROM keys {filter} ORDER BY tenant, created_at, id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let map = |r: &rusqlite::Row<'_>| {
            Ok(KeyRecord {
                id: r.get(0)?,
                tenant: r.get(1)?,
                subject: r.get(2)?,
                scope: r.get(3)?,
                root: r.get(4)?,
                created_at: r.get(5)?,
                expires_at: r.get(6)?,
                last_used_at: r.get(7)?,
                revoked_at: r.get(8)?,
            })
        };
        let rows = if filter.is_empty() {
            stmt.query_map([], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        } else {
            stmt.query_map([arg], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        Ok(rows)
    }

    fn revoke_key(&self, id: &str, at: i64) -> MetaResult<()> {
        self.conn.execute(
            "UPDATE keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, at],
        )?;
        Ok(())
    }

    fn key_by_hash(&self, hash: &[u8]) -> MetaResult<Option<KeyMatch>> {
        Ok(self
            .conn
            .query_row(
                "SELECT k.id, k.tenant, k.subject, k.scope, k.root, k.expires_at, k.revoked_at,
                        t.suspended_at
                 FROM keys k LEFT JOIN tenants t ON t.id = k.tenant WHERE k.hash = ?1",
                [hash],
                |r| {
                    Ok(KeyMatch {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        subject: r.get(2)?,
                        scope: r.get(3)?,
                        root: r.get(4)?,
                        expires_at: r.get(5)?,
                        revoked_at: r.get(6)?,
                        suspended_at: r.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    fn set_key_used(&self, id: &str, at: i64) -> MetaResult<()> {
        self.conn.execute(
            "UPDATE keys SET last_used_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    fn key_standing(&self, id: &str) -> MetaResult<Option<KeyStanding>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT k.revoked_at, k.expires_at, t.suspended_at, t.id
                 FROM keys k LEFT JOIN tenants t ON t.id = k.tenant WHERE k.id = ?1",
            )?
            .query_row([id], |r| {
                Ok(KeyStanding {
                    revoked_at: r.get(0)?,
                    expires_at: r.get(1)?,
                    suspended_at: r.get(2)?,
                    tenant_exists: r.get::<_, Option<String>>(3)?.is_some(),
                })
            })
            .optional()?)
    }
}
