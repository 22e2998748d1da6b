//! The catalog's primitives: tenants, keys (hashes only) and the admin audit log, as an
//! engine stores them. What they mean (authentication, expiry, what gets audited) is
//! `crate::catalog`'s, written once above every engine.

use super::MetaResult;

/// A tenant as stored. Times are Unix seconds.
pub struct TenantRecord {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub suspended_at: Option<i64>,
}

/// A key as stored, without its hash.
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    pub subject: String,
    pub scope: String,
    pub root: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A key found by its hash, with what decides whether it may mount.
pub struct KeyMatch {
    pub id: String,
    pub tenant: String,
    pub subject: String,
    pub scope: String,
    pub root: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// When the key's tenant was suspended; `None` also when the tenant is gone.
    pub suspended_at: Option<i64>,
}

/// A key's standing for a live mount's re-check.
pub struct KeyStanding {
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub suspended_at: Option<i64>,
    /// Whether the key's tenant still exists.
    pub tenant_exists: bool,
}

/// Which keys to list.
#[derive(Clone, Copy)]
pub enum Keys<'a> {
    All,
    OfTenant(&'a str),
    Id(&'a str),
}

/// A catalog, as an engine provides it.
pub trait CatalogStore: Send {
    fn audit(&self, at: i64, action: &str, tenant: Option<&str>, detail: &str) -> MetaResult<()>;
    fn tenant_exists(&self, id: &str) -> MetaResult<bool>;
    fn insert_tenant(&self, id: &str, name: &str, at: i64) -> MetaResult<()>;
    /// Every tenant, by id.
    fn tenants(&self) -> MetaResult<Vec<TenantRecord>>;
    fn insert_key(&self, key: &KeyRecord, hash: &[u8]) -> MetaResult<()>;
    /// Keys by tenant, then creation time.
    fn keys(&self, which: Keys<'_>) -> MetaResult<Vec<KeyRecord>>;
    /// Sets the revocation time unless the key has one already.
    fn revoke_key(&self, id: &str, at: i64) -> MetaResult<()>;
    fn key_by_hash(&self, hash: &[u8]) -> MetaResult<Option<KeyMatch>>;
    fn set_key_used(&self, id: &str, at: i64) -> MetaResult<()>;
    /// One indexed row: cheap enough for every watcher tick of every mount.
    fn key_standing(&self, id: &str) -> MetaResult<Option<KeyStanding>>;
}
