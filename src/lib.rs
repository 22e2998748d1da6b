//! tenantfs: one store, many tenants, each mount sees only its own tree.
//!
//! Layers, each depending only on those below it: `cli` → `daemon` → `fuse` (the only
//! module that knows fuser) → `fs` (the POSIX core) → `meta` (metadata engines behind
//! traits, SQLite embedded) and `objects` (file content). `store`, `catalog` and `keys`
//! hold tenants and keys. `types` holds the plain data (inode numbers, attributes,
//! extents) that every layer shares.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod daemon;
pub mod error;
pub mod fs;
pub mod fsck;
pub mod fuse;
pub mod ids;
pub mod iomode;
pub mod keys;
pub mod logging;
pub mod meta;
pub mod objects;
pub mod policy;
pub mod private;
pub mod quota;
pub mod store;
pub mod time;
pub mod types;
