//! The catalog: tenants, keys (hashes only) and the admin audit log.
//!
//! Invariants: a key's secret is never stored, only its SHA-256; a key row is never deleted,
//! so a revoked key stays revoked; every failed authentication is audited.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ids::{Scope, Subject, TenantId};
use crate::keys;
use crate::meta::catalog::{CatalogStore, KeyRecord, Keys};
use crate::meta::sqlite::catalog::SqliteCatalog;
use crate::time::{format_secs, now_secs};

/// The store's catalog, whichever engine holds it.
pub struct Catalog(Box<dyn CatalogStore>);

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
    pub fn new(store: Box<dyn CatalogStore>) -> Catalog {
        Catalog(store)
    }

    /// Creates an embedded (SQLite) catalog.
    pub fn create(path: &Path) -> Result<()> {
        Ok(SqliteCatalog::create(path)?)
    }

    /// Opens an embedded (SQLite) catalog.
    pub fn open(path: &Path) -> Result<Catalog> {
        Ok(Catalog(Box::new(SqliteCatalog::open(path)?)))
    }

    pub fn audit(&self, action: &str, tenant: Option<&str>, detail: &str) -> Result<()> {
        Ok(self.0.audit(now_secs(), action, tenant, detail)?)
    }

    pub fn tenant_exists(&self, id: &TenantId) -> Result<bool> {
        Ok(self.0.tenant_exists(id.as_str())?)
    }

    pub fn insert_tenant(&self, id: &TenantId, name: &str) -> Result<()> {
        self.0.insert_tenant(id.as_str(), name, now_secs())?;
        self.audit("tenant.create", Some(id.as_str()), name)
    }

    pub fn tenants(&self) -> Result<Vec<TenantRow>> {
        Ok(self
            .0
            .tenants()?
            .into_iter()
            .map(|t| TenantRow {
                id: t.id,
                name: t.name,
                created_at: format_secs(t.created_at),
                suspended: t.suspended_at.is_some(),
            })
            .collect())
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
        let record = KeyRecord {
            id: key.id.clone(),
            tenant: spec.tenant.to_string(),
            subject: spec.subject.to_string(),
            scope: spec.scope.as_str().to_string(),
            root: spec.root.to_string(),
            created_at: now,
            expires_at: expires,
            last_used_at: None,
            revoked_at: None,
        };
        self.0.insert_key(&record, &keys::hash(&key.secret))?;
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

    fn key_rows(&self, which: Keys<'_>) -> Result<Vec<KeyRow>> {
        Ok(self
            .0
            .keys(which)?
            .into_iter()
            .map(|k| KeyRow {
                id: k.id,
                tenant: k.tenant,
                subject: k.subject,
                scope: k.scope,
                root: k.root,
                created_at: format_secs(k.created_at),
                expires_at: k.expires_at.map(format_secs),
                last_used_at: k.last_used_at.map(format_secs),
                revoked: k.revoked_at.is_some(),
                revoked_at: k.revoked_at.map(format_secs),
            })
            .collect())
    }

    pub fn keys(&self, tenant: Option<&TenantId>) -> Result<Vec<KeyRow>> {
        match tenant {
            Some(t) => {
                if !self.tenant_exists(t)? {
                    return Err(Error::TenantMissing(t.to_string()));
                }
                self.key_rows(Keys::OfTenant(t.as_str()))
            }
            None => self.key_rows(Keys::All),
        }
    }

    pub fn key(&self, id: &str) -> Result<KeyRow> {
        self.key_rows(Keys::Id(id))?
            .pop()
            .ok_or_else(|| Error::KeyMissing(id.to_string()))
    }

    /// Revokes a key; revoking twice keeps the first time.
    pub fn revoke_key(&self, id: &str) -> Result<KeyRow> {
        let row = self.key(id)?;
        self.0.revoke_key(id, now_secs())?;
        self.audit("key.revoke", Some(&row.tenant), id)?;
        self.key(id)
    }

    /// Resolves a key to its principal, or says exactly why it cannot mount.
    pub fn authenticate(&self, raw: &str) -> Result<Principal> {
        let key = keys::parse(raw).map_err(Error::Malformed)?;
        let Some(k) = self.0.key_by_hash(&keys::hash(key))? else {
            self.audit("auth.fail", None, "unknown key")?;
            // Slow down guessing; a real key never pays this.
            std::thread::sleep(Duration::from_millis(250));
            return Err(Error::UnknownKey);
        };
        if let Some(at) = k.revoked_at {
            self.audit("auth.fail", Some(&k.tenant), &format!("{} revoked", k.id))?;
            return Err(Error::KeyRevoked {
                id: k.id,
                at: format_secs(at),
            });
        }
        if let Some(at) = k.expires_at.filter(|&e| e <= now_secs()) {
            self.audit("auth.fail", Some(&k.tenant), &format!("{} expired", k.id))?;
            return Err(Error::KeyExpired {
                id: k.id,
                at: format_secs(at),
            });
        }
        if k.suspended_at.is_some() {
            return Err(Error::TenantSuspended(k.tenant));
        }
        self.0.set_key_used(&k.id, now_secs())?;
        Ok(Principal {
            key_id: k.id,
            tenant: k.tenant.parse().map_err(Error::Usage)?,
            subject: k.subject,
            scope: k.scope.parse().map_err(Error::Usage)?,
            root: k.root,
            expires_at: k.expires_at,
        })
    }

    /// Re-checks a key for a live mount: cheap, one indexed row.
    pub fn key_status(&self, id: &str) -> Result<KeyStatus> {
        Ok(match self.0.key_standing(id)? {
            None => KeyStatus::Revoked,
            Some(k) if k.revoked_at.is_some() || k.suspended_at.is_some() || !k.tenant_exists => {
                KeyStatus::Revoked
            }
            Some(k) if k.expires_at.is_some_and(|e| e <= now_secs()) => KeyStatus::Expired,
            Some(_) => KeyStatus::Live,
        })
    }
}
