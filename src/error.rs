//! Errors of the admin side (store, catalog, keys, mounting). Each message says what was
//! wrong and how to fix it, because the CLI prints it as it is.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "store not found at {0}: run `tenantfs init` (or pass --store DIR, or set TENANTFS_STORE)"
    )]
    StoreMissing(PathBuf),
    #[error(
        "{0} is not a tenantfs store (it has no catalog.db); pass --store with a store made by `tenantfs init`"
    )]
    NotAStore(PathBuf),
    #[error("tenant {0} already exists; see it with `tenantfs tenant show {0}`")]
    TenantExists(String),
    #[error("tenant {0} not found; list tenants with `tenantfs tenant list`")]
    TenantMissing(String),
    #[error("key {0} not found; list keys with `tenantfs key list`")]
    KeyMissing(String),
    #[error("{0}")]
    Malformed(String),
    #[error("unknown key: no tenant has it (was it revoked and deleted, or copied wrongly?)")]
    UnknownKey,
    #[error("key {id} was revoked at {at}: ask an admin for a new one (`tenantfs key create`)")]
    KeyRevoked { id: String, at: String },
    #[error("key {id} expired at {at}: ask an admin for a new one (`tenantfs key create`)")]
    KeyExpired { id: String, at: String },
    #[error("tenant {0} is suspended: its keys cannot mount")]
    TenantSuspended(String),
    #[error("{0}")]
    Usage(String),
    #[error("fsck found {0} problem(s)")]
    Findings(usize),
    /// `acl check` said denied: not a failure of the tool, but exit 1.
    #[error("denied")]
    Denied,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store: {0}")]
    Meta(#[from] crate::meta::MetaError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds what was being done to an I/O error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}
