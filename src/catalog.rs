//! The catalog (`store/catalog.db`): tenants, keys (hashes only) and the admin audit log.
//!
//! Invariants: a key's secret is never stored, only its SHA-256; a key row is never deleted,
//! so a revoked key stays revoked; every failed authentication is audited.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ids::{Scope, Subject, TenantId};
use crate::keys;
use crate::time::{format_secs, now_secs};

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

pub struct Catalog {
    conn: Connection,
}

#[derive(Clone, Debug, Serialize)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub suspended: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct KeyRow {
    pub id: String,
    pub tenant: String,
    pub subject: String,
    pub scope: String,
    pub root: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked: bool,
    pub revoked_at: Option<String>,
}

/// What a key resolves to, fixed for the life of a mount.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key_id: String,
    pub tenant: TenantId,
    pub subject: String,
    pub scope: Scope,
    pub root: String,
    /// Unix seconds.
    pub expires_at: Option<i64>,
}

/// A key's standing, as a live mount re-checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    Live,
    Revoked,
    Expired,
}

pub struct NewKeySpec<'a> {
    pub tenant: &'a TenantId,
    pub subject: &'a Subject,
    pub scope: Scope,
    pub root: &'a str,
    pub expires_in: Option<Duration>,
}

impl Catalog {
    pub fn create(path: &Path) -> Result<()> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(())
    }

    pub fn open(path: &Path) -> Result<Catalog> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Catalog { conn })
    }

    pub fn audit(&self, action: &str, tenant: Option<&str>, detail: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO audit(at, action, tenant, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now_secs(), action, tenant, detail],
        )?;
        Ok(())
    }

    pub fn tenant_exists(&self, id: &TenantId) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM tenants WHERE id = ?1", [id.as_str()], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    pub fn insert_tenant(&self, id: &TenantId, name: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO tenants(id, name, created_at) VALUES (?1, ?2, ?3)",
            params![id.as_str(), name, now_secs()],
        )?;
        self.audit("tenant.create", Some(id.as_str()), name)
    }

    pub fn tenants(&self) -> Result<Vec<TenantRow>> {
        self.conn
            .prepare("SELECT id, name, created_at, suspended_at FROM tenants ORDER BY id")?
            .query_map([], |r| {
                Ok(TenantRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: format_secs(r.get(2)?),
                    suspended: r.get::<_, Option<i64>>(3)?.is_some(),
                })
            })?
            .collect::<rusqlite::Result<_>>()
            .map_err(Error::from)
    }

    pub fn tenant(&self, id: &TenantId) -> Result<TenantRow> {
        self.tenants()?
            .into_iter()
            .find(|t| t.id == id.as_str())
            .ok_or_else(|| Error::TenantMissing(id.to_string()))
    }

    pub fn insert_key(&self, spec: &NewKeySpec<'_>) -> Result<(keys::NewKey, KeyRow)> {
        if !self.tenant_exists(spec.tenant)? {
            return Err(Error::TenantMissing(spec.tenant.to_string()));
        }
        let key = keys::generate();
        let now = now_secs();
        let expires = spec
            .expires_in
            .map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
        self.conn.execute(
            "INSERT INTO keys(id, hash, tenant, subject, scope, root, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                key.id,
                keys::hash(&key.secret),
                spec.tenant.as_str(),
                spec.subject.to_string(),
                spec.scope.as_str(),
                spec.root,
                now,
                expires
            ],
        )?;
        self.audit(
            "key.create",
            Some(spec.tenant.as_str()),
            &format!(
                "{} {} {} {}",
                key.id,
                spec.subject,
                spec.scope.as_str(),
                spec.root
            ),
        )?;
        let row = self.key(&key.id)?;
        Ok((key, row))
    }

    fn key_rows(&self, filter: &str, arg: &str) -> Result<Vec<KeyRow>> {
        let sql = format!(
            "SELECT id, tenant, subject, scope, root, created_at, expires_at, last_used_at, revoked_at
             FROM keys {filter} ORDER BY tenant, created_at, id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let map = |r: &rusqlite::Row<'_>| {
            let revoked_at: Option<i64> = r.get(8)?;
            Ok(KeyRow {
                id: r.get(0)?,
                tenant: r.get(1)?,
                subject: r.get(2)?,
                scope: r.get(3)?,
                root: r.get(4)?,
                created_at: format_secs(r.get(5)?),
                expires_at: r.get::<_, Option<i64>>(6)?.map(format_secs),
                last_used_at: r.get::<_, Option<i64>>(7)?.map(format_secs),
                revoked: revoked_at.is_some(),
                revoked_at: revoked_at.map(format_secs),
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

    pub fn keys(&self, tenant: Option<&TenantId>) -> Result<Vec<KeyRow>> {
        match tenant {
            Some(t) => {
                if !self.tenant_exists(t)? {
                    return Err(Error::TenantMissing(t.to_string()));
                }
                self.key_rows("WHERE tenant = ?1", t.as_str())
            }
            None => self.key_rows("", ""),
        }
    }

    pub fn key(&self, id: &str) -> Result<KeyRow> {
        self.key_rows("WHERE id = ?1", id)?
            .pop()
            .ok_or_else(|| Error::KeyMissing(id.to_string()))
    }

    /// Revokes a key; revoking twice keeps the first time.
    pub fn revoke_key(&self, id: &str) -> Result<KeyRow> {
        let row = self.key(id)?;
        self.conn.execute(
            "UPDATE keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now_secs()],
        )?;
        self.audit("key.revoke", Some(&row.tenant), id)?;
        self.key(id)
    }

    /// Resolves a key to its principal, or says exactly why it cannot mount.
    pub fn authenticate(&self, raw: &str) -> Result<Principal> {
        let key = keys::parse(raw).map_err(Error::Malformed)?;
        let row = self
            .conn
            .query_row(
                "SELECT k.id, k.tenant, k.subject, k.scope, k.root, k.expires_at, k.revoked_at,
                        t.suspended_at
                 FROM keys k LEFT JOIN tenants t ON t.id = k.tenant WHERE k.hash = ?1",
                [keys::hash(key)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, tenant, subject, scope, root, expires_at, revoked_at, suspended_at)) = row
        else {
            self.audit("auth.fail", None, "unknown key")?;
            // Slow down guessing; a real key never pays this.
            std::thread::sleep(Duration::from_millis(250));
            return Err(Error::UnknownKey);
        };
        if let Some(at) = revoked_at {
            self.audit("auth.fail", Some(&tenant), &format!("{id} revoked"))?;
            return Err(Error::KeyRevoked {
                id,
                at: format_secs(at),
            });
        }
        if let Some(at) = expires_at.filter(|&e| e <= now_secs()) {
            self.audit("auth.fail", Some(&tenant), &format!("{id} expired"))?;
            return Err(Error::KeyExpired {
                id,
                at: format_secs(at),
            });
        }
        if suspended_at.is_some() {
            return Err(Error::TenantSuspended(tenant));
        }
        self.conn.execute(
            "UPDATE keys SET last_used_at = ?2 WHERE id = ?1",
            params![id, now_secs()],
        )?;
        Ok(Principal {
            key_id: id,
            tenant: tenant.parse().map_err(Error::Usage)?,
            subject,
            scope: scope.parse().map_err(Error::Usage)?,
            root,
            expires_at,
        })
    }

    /// Re-checks a key for a live mount: cheap, one indexed row.
    pub fn key_status(&self, id: &str) -> Result<KeyStatus> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT k.revoked_at, k.expires_at, t.suspended_at, t.id
                 FROM keys k LEFT JOIN tenants t ON t.id = k.tenant WHERE k.id = ?1",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .optional()?;
        Ok(match row {
            None | Some((Some(_), ..)) | Some((_, _, Some(_), _)) | Some((_, _, _, None)) => {
                KeyStatus::Revoked
            }
            Some((None, Some(e), None, Some(_))) if e <= now_secs() => KeyStatus::Expired,
            _ => KeyStatus::Live,
        })
    }
}
