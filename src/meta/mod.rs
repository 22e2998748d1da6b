//! The metadata store: each tenant's inodes, names, extended attributes, ACLs, quotas and
//! usage, and the bookkeeping that makes crashes recoverable (writers, orphans, gc).
//!
//! The core reaches it through the types here, which name no database engine: errors are
//! [`MetaError`], and each engine's module turns its own errors into it. SQLite
//! ([`sqlite`]) is the embedded engine.

mod sqlite;

pub use sqlite::{DB_CACHE, DB_MAP, Meta, PAGE_SIZE, Read, Tx};

use crate::time::Nanos;
use crate::types::{Ino, Kind};

/// What can go wrong in a metadata store, in the terms the core acts on.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Another writer holds the store for longer than the wait allows.
    #[error("the metadata store is busy")]
    Busy,
    /// The store could not grow its files.
    #[error("the metadata store's disk is full")]
    DiskFull,
    /// The store was made by a build with another schema.
    #[error("{0}")]
    Schema(String),
    /// Anything else the engine reports.
    #[error("{0}")]
    Engine(Box<dyn std::error::Error + Send + Sync>),
}

pub type MetaResult<T> = Result<T, MetaError>;

/// A directory quota: its limits (0 unlimited) and what its subtree holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirQuota {
    pub ino: Ino,
    pub max_bytes: u64,
    pub max_inodes: u64,
    pub bytes: u64,
    pub inodes: u64,
    pub reserved: u64,
}

impl DirQuota {
    /// Bytes that may still be added under this quota; `u64::MAX` without a byte limit.
    pub fn room(&self) -> u64 {
        if self.max_bytes == 0 {
            u64::MAX
        } else {
            self.max_bytes.saturating_sub(self.bytes + self.reserved)
        }
    }

    /// Inodes that may still be added under this quota; `u64::MAX` without an inode limit.
    pub fn inodes_left(&self) -> u64 {
        if self.max_inodes == 0 {
            u64::MAX
        } else {
            self.max_inodes.saturating_sub(self.inodes)
        }
    }

    /// Holds more than its limits allow.
    pub fn over(&self) -> bool {
        (self.max_bytes > 0 && self.bytes + self.reserved > self.max_bytes)
            || (self.max_inodes > 0 && self.inodes > self.max_inodes)
    }
}

/// An entry as stored: (parent, name, ino, kind code).
pub type RawEntry = (Ino, Vec<u8>, Ino, i64);

/// The two tables whose rows belong to a session.
#[derive(Clone, Copy, Debug)]
pub enum SessionTable {
    Writers,
    Orphans,
}

/// Fields of a new inode.
pub struct NewInode<'a> {
    pub kind: Kind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub now: Nanos,
    pub parent: Ino,
    pub target: Option<&'a [u8]>,
    /// The creator, who owns the inode. Kept in the inode's row rather than as an `acl`
    /// row, so creating and deleting a file touch one b-tree less.
    pub owner: Option<&'a str>,
}
