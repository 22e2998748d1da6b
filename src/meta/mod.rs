//! The metadata store: each tenant's inodes, names, extended attributes, ACLs, quotas and
//! usage, and the bookkeeping that makes crashes recoverable (writers, orphans, gc).
//!
//! The core reaches it through the types here, which name no database engine: errors are
//! [`MetaError`], and each engine's module turns its own errors into it. SQLite
//! (the `sqlite` module) is the embedded engine; PostgreSQL (`postgres`) holds a store many
//! hosts can share.

pub mod catalog;
pub mod migrate;
pub mod postgres;
pub mod sqlite;

pub use sqlite::{DB_CACHE, DB_MAP, PAGE_SIZE};

use std::collections::HashMap;
use std::path::Path;

use crate::policy::{Entry, Groups, Rights};
use crate::time::Nanos;
use crate::types::{Attr, DirEntry, Extent, Ino, Kind, ROOT_INO};

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
    /// The operation given to a transaction failed, so it rolled back; [`Meta::write`]
    /// returns the operation's own error instead.
    #[error("the operation failed and was rolled back")]
    Aborted,
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

/// The statements of one tenant's metadata store, inside a transaction or outside one:
/// the primitives each engine implements. What is built from them (quotas, access checks,
/// recovery, fsck) is written once, above, against this trait.
pub trait MetaTx: NamespaceTx + AccountingTx + LifecycleTx + PolicyTx {}

impl<T: NamespaceTx + AccountingTx + LifecycleTx + PolicyTx + ?Sized> MetaTx for T {}

/// The tree: inodes, names, hard links and extended attributes.
pub trait NamespaceTx {
    fn inode(&self, ino: Ino) -> MetaResult<Option<Attr>>;

    /// The attributes of those of `inos` that exist, for readdirplus: an engine whose
    /// round trips cost more than its reads fetches them at once.
    fn inodes(&self, inos: &[Ino]) -> MetaResult<HashMap<Ino, Attr>> {
        let mut out = HashMap::with_capacity(inos.len());
        for &ino in inos {
            if let Some(a) = self.inode(ino)? {
                out.insert(ino, a);
            }
        }
        Ok(out)
    }

    /// The inode a name in `parent` refers to, with its kind.
    fn lookup(&self, parent: Ino, name: &[u8]) -> MetaResult<Option<(Ino, Kind)>>;

    /// Lookup and attributes. Two indexed point queries measure about three times faster
    /// than the equivalent join in SQLite here (6 µs against 18 µs).
    fn lookup_attr(&self, parent: Ino, name: &[u8]) -> MetaResult<Option<Attr>>;

    fn insert_inode(&self, n: &NewInode<'_>) -> MetaResult<Ino>;

    /// Writes the attributes setattr changes (mode, owner, times) of an existing inode. Size
    /// and link count have their own statements, which keep usage and quotas in step.
    fn update_inode(&self, a: &Attr) -> MetaResult<()>;

    /// Sets mtime and ctime: what a directory gets when its entries change.
    fn touch(&self, ino: Ino, now: Nanos) -> MetaResult<()>;

    fn set_ctime(&self, ino: Ino, now: Nanos) -> MetaResult<()>;

    fn add_nlink(&self, ino: Ino, delta: i64) -> MetaResult<()>;

    fn set_parent(&self, ino: Ino, parent: Ino) -> MetaResult<()>;

    /// The parent of a directory (directories have exactly one entry naming them).
    fn dir_parent(&self, ino: Ino) -> MetaResult<Option<Ino>>;

    /// Records a file's content as it now is; false for a ghost (see `fs::ghosts`), whose
    /// row no longer changes.
    fn set_size(&self, ino: Ino, extent: Extent, mtime: Nanos, ctime: Nanos) -> MetaResult<bool>;

    fn symlink_target(&self, ino: Ino) -> MetaResult<Option<Vec<u8>>>;

    /// An inode's path from the tenant root, for audit lines and listings; best effort.
    fn path_of(&self, ino: Ino) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO && parts.len() < 256 {
            let Ok(Some(parent)) = self.dir_parent(at) else {
                break;
            };
            match self.name_in(parent, at) {
                Ok(Some(name)) => parts.push(String::from_utf8_lossy(&name).into_owned()),
                _ => parts.push(format!("#{at}")),
            }
            at = parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// A name of `ino` in `parent`, for audit paths (scans the directory; not a hot path).
    fn name_in(&self, parent: Ino, ino: Ino) -> MetaResult<Option<Vec<u8>>>;

    fn insert_entry(&self, parent: Ino, name: &[u8], ino: Ino, kind: Kind) -> MetaResult<()>;

    fn delete_entry(&self, parent: Ino, name: &[u8]) -> MetaResult<()>;

    /// Points an existing name at another inode (RENAME_EXCHANGE).
    fn repoint_entry(&self, parent: Ino, name: &[u8], ino: Ino, kind: Kind) -> MetaResult<()>;

    fn move_entry(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
    ) -> MetaResult<()>;

    fn has_entries(&self, dir: Ino) -> MetaResult<bool>;

    /// Every entry of `dir`, in name order (readdir serves a snapshot of this). Sorted here,
    /// as in [`MetaTx::acl`]: with `ORDER BY` the statement was recompiled at every use. Rows
    /// come in key order, so the sort only checks it.
    fn list(&self, dir: Ino) -> MetaResult<Vec<DirEntry>>;

    /// Deletes an inode row with everything keyed by it, and queues its object for deletion.
    /// Usage is [`crate::quota::delete_inode`]'s to settle.
    fn delete_inode(&self, ino: Ino) -> MetaResult<()>;

    /// Moves an access time forward (never back: a later utimensat or access may have set
    /// a newer one).
    fn set_atime_if_older(&self, ino: Ino, atime: Nanos) -> MetaResult<()>;

    /// Kind, link count and recorded parent of an inode.
    fn placement(&self, ino: Ino) -> MetaResult<Option<(Kind, u32, Ino)>>;

    /// The directories holding names of a file with more than one link; empty otherwise.
    fn link_parents(&self, ino: Ino) -> MetaResult<Vec<(Ino, u32)>>;

    /// Adds `delta` names of `ino` in `parent`, dropping the row at zero.
    fn add_link(&self, ino: Ino, parent: Ino, delta: i64) -> MetaResult<()>;

    fn clear_links(&self, ino: Ino) -> MetaResult<()>;

    /// Every inode with a name in `dir`'s subtree, each once, with `dir` itself first:
    /// (ino, kind, nlink, size).
    fn subtree(&self, dir: Ino) -> MetaResult<Vec<(Ino, Kind, u32, u64)>>;

    fn xattr(&self, ino: Ino, name: &[u8]) -> MetaResult<Option<Vec<u8>>>;

    fn set_xattr(&self, ino: Ino, name: &[u8], value: &[u8]) -> MetaResult<()>;

    /// Returns whether the attribute existed.
    fn remove_xattr(&self, ino: Ino, name: &[u8]) -> MetaResult<bool>;

    /// Names of `ino`'s extended attributes, sorted (here, as in [`MetaTx::list`]).
    fn xattr_names(&self, ino: Ino) -> MetaResult<Vec<Vec<u8>>>;
}

/// What the tenant uses and may use: its usage and limits, the bytes open files hold
/// reserved (`held`), directory quotas, rates and metering.
pub trait AccountingTx {
    fn clear_held(&self, ino: Ino) -> MetaResult<()>;

    fn add_usage(&self, bytes: i64, inodes: i64) -> MetaResult<()>;

    /// The tenant's limits (its root's quota): (max bytes, max inodes), 0 for unlimited.
    fn limits(&self) -> MetaResult<(u64, u64)>;

    fn set_limits(&self, max_bytes: Option<u64>, max_inodes: Option<u64>) -> MetaResult<()>;

    /// The tenant's rate limits: (ops per second, bytes per second), 0 for unlimited.
    /// Whether the tenant lets read-only opens read objects straight through the kernel.
    fn passthrough_reads(&self) -> MetaResult<bool>;

    fn set_passthrough_reads(&self, on: bool) -> MetaResult<()>;

    fn rates(&self) -> MetaResult<(u64, u64)>;

    fn set_rates(&self, ops: Option<u64>, bytes: Option<u64>) -> MetaResult<()>;

    /// Adds metered activity to an hour's row.
    fn add_metering(&self, hour: i64, ops: u64, read: u64, written: u64) -> MetaResult<()>;

    /// Metered hours from `since` (Unix seconds) on, oldest first: (hour, ops, read, written).
    fn metering(&self, since: i64) -> MetaResult<Vec<(i64, u64, u64, u64)>>;

    /// Bytes reserved by open files across all mounts.
    fn reserved(&self) -> MetaResult<u64>;

    /// Adds to the tenant's reserved bytes (negative to give back).
    fn add_reserved(&self, bytes: i64) -> MetaResult<()>;

    /// Bytes one session holds reserved for one file.
    fn held(&self, ino: Ino, session: &str) -> MetaResult<u64>;

    /// Sets what one session holds for one file (0 deletes the row).
    fn set_held(&self, ino: Ino, session: &str, bytes: u64) -> MetaResult<()>;

    /// Bytes every session together holds for one file.
    fn held_total(&self, ino: Ino) -> MetaResult<u64>;

    /// (file, bytes) of everything one session holds.
    fn held_by(&self, session: &str) -> MetaResult<Vec<(Ino, u64)>>;

    /// (session, bytes) of everything held for one file.
    fn held_for(&self, ino: Ino) -> MetaResult<Vec<(String, u64)>>;

    /// Bytes held per file, for every file anything is held for.
    fn all_held(&self) -> MetaResult<HashMap<Ino, u64>>;

    /// Sessions holding reservations.
    fn reserving_sessions(&self) -> MetaResult<Vec<String>>;

    // ---- directory quotas and the links they follow ---------------------------------------
    fn has_dir_quotas(&self) -> MetaResult<bool>;

    /// The directories that carry a quota.
    fn dir_quota_inos(&self) -> MetaResult<Vec<Ino>>;

    fn dir_quota(&self, ino: Ino) -> MetaResult<Option<DirQuota>>;

    fn all_dir_quotas(&self) -> MetaResult<Vec<DirQuota>>;

    /// Sets a directory's limits, making its row (with zero usage) if it has none.
    fn put_dir_quota(&self, ino: Ino, max_bytes: u64, max_inodes: u64) -> MetaResult<()>;

    fn set_dir_usage(&self, ino: Ino, bytes: u64, inodes: u64, reserved: u64) -> MetaResult<()>;

    fn add_dir_usage(&self, ino: Ino, bytes: i64, inodes: i64, reserved: i64) -> MetaResult<()>;

    fn remove_dir_quota(&self, ino: Ino) -> MetaResult<bool>;

    /// (bytes, inodes) in use.
    fn usage(&self) -> MetaResult<(u64, u64)>;
}

/// Inodes between sessions (writers, orphans, ghosts, gc rows), and the whole-table reads
/// and fixes of recovery and fsck.
pub trait LifecycleTx {
    /// A pragma's value on this connection, for tests of its settings.
    #[cfg(test)]
    fn pragma(&self, name: &str) -> MetaResult<i64>;

    /// Records that an object is to be deleted (its inode is gone).
    fn mark_gc(&self, ino: Ino) -> MetaResult<()>;

    /// Every `links` row as (ino, parent, n), for checks.
    fn all_links(&self) -> MetaResult<Vec<(Ino, Ino, u32)>>;

    fn mark_writer(&self, ino: Ino, session: &str) -> MetaResult<()>;

    /// Marks an orphan whose usage is already given back (see the `ghosts` table).
    fn add_ghost(&self, ino: Ino) -> MetaResult<()>;

    fn is_ghost(&self, ino: Ino) -> MetaResult<bool>;

    /// Those of `inos` that are ghosts: one query where the engine gains by it.
    fn ghosts_among(&self, inos: &[Ino]) -> MetaResult<std::collections::HashSet<Ino>> {
        let mut out = std::collections::HashSet::new();
        for &ino in inos {
            if self.is_ghost(ino)? {
                out.insert(ino);
            }
        }
        Ok(out)
    }

    fn all_ghosts(&self) -> MetaResult<Vec<Ino>>;

    fn add_orphan(&self, ino: Ino, session: &str) -> MetaResult<()>;

    /// Sessions that left writers or orphans behind.
    fn sessions_with_state(&self) -> MetaResult<Vec<String>>;

    fn writers_of(&self, session: &str) -> MetaResult<Vec<Ino>>;

    fn orphans_of(&self, session: &str) -> MetaResult<Vec<Ino>>;

    /// Drops a session's rows; what it held reserved must have been given back first.
    fn forget_session(&self, session: &str) -> MetaResult<()>;

    /// Every inode with its recorded parent (meaningful for directories), for checks.
    fn all_inodes(&self) -> MetaResult<Vec<(Attr, Ino)>>;

    /// Every entry, for checks.
    fn all_entries(&self) -> MetaResult<Vec<RawEntry>>;

    /// (ino, session) of every `writers` or `orphans` row.
    fn all_session_rows(&self, table: SessionTable) -> MetaResult<Vec<(Ino, String)>>;

    fn set_entry_kind(&self, parent: Ino, name: &[u8], kind: Kind) -> MetaResult<()>;

    fn set_nlink(&self, ino: Ino, nlink: u32) -> MetaResult<()>;

    /// (bytes, inodes) as the inodes add up: file sizes and symlink targets, every inode
    /// but ghosts.
    fn computed_usage(&self) -> MetaResult<(u64, u64)>;

    fn set_usage(&self, bytes: u64, inodes: u64) -> MetaResult<()>;

    fn gc_pending(&self) -> MetaResult<Vec<Ino>>;

    fn gc_done(&self, ino: Ino) -> MetaResult<()>;
}

/// ACLs, groups, and the versions that tell live mounts to reload them.
pub trait PolicyTx {
    /// ACL entries on one inode: the explicit ones, and its owner as an `owner` entry.
    fn acl(&self, ino: Ino) -> MetaResult<Vec<Entry>>;

    /// Sets a subject's entry. For the inode's owner it replaces the ownership: one subject
    /// has one entry per inode.
    fn set_acl(&self, ino: Ino, subject: &str, rights: Rights) -> MetaResult<()>;

    /// Removes a subject's entry, its ownership included.
    fn remove_acl(&self, ino: Ino, subject: &str) -> MetaResult<bool>;

    /// Every subject named in any entry or owning any inode, for listings of effective rights.
    fn acl_subjects(&self) -> MetaResult<Vec<String>>;

    fn groups(&self) -> MetaResult<Groups>;

    fn add_member(&self, group: &str, member: &str) -> MetaResult<()>;

    fn remove_member(&self, group: &str, member: &str) -> MetaResult<bool>;

    /// Counts changes to ACL entries and groups, so live mounts can tell their cache is stale.
    fn policy_version(&self) -> MetaResult<i64>;

    /// Counts moves across directories, which change what the moved inodes inherit.
    fn tree_version(&self) -> MetaResult<i64>;

    fn bump_tree(&self) -> MetaResult<()>;

    fn bump_policy(&self) -> MetaResult<()>;
}

/// A transaction as the core sees it: any engine's.
pub type Tx<'a> = dyn MetaTx + 'a;

/// One tenant's metadata store, as an engine provides it: transactions and durability. The
/// core holds it as a [`Meta`].
pub trait MetaStore: Send {
    /// Runs `op` in one write transaction: all of it commits or none of it does. An error
    /// from `op` rolls back and is returned.
    fn write_op(&mut self, op: &mut dyn FnMut(&Tx<'_>) -> MetaResult<()>) -> MetaResult<()>;
    /// Runs `op` in one read transaction that sees one committed state throughout.
    fn snapshot_op(&mut self, op: &mut dyn FnMut(&Tx<'_>) -> MetaResult<()>) -> MetaResult<()>;
    /// Begins a read transaction unless one is open already; whether it began one.
    fn begin_read(&self) -> bool;
    /// Ends the read transaction [`MetaStore::begin_read`] began.
    fn end_read(&self);
    /// The statements, in whatever transaction is open.
    fn tx(&self) -> &Tx<'_>;
    /// Makes committed transactions durable.
    fn sync(&self) -> std::io::Result<()>;
}

/// A tenant's metadata store, whichever engine holds it.
pub struct Meta(Box<dyn MetaStore>);

impl Meta {
    pub fn new(store: Box<dyn MetaStore>) -> Meta {
        Meta(store)
    }

    /// Creates a tenant database in the embedded engine (SQLite) with its root directory.
    /// Unless `private`, the root carries `group:everyone:editor`, so a tenant works as a
    /// shared drive out of the box.
    pub fn create(
        path: &Path,
        root_uid: u32,
        root_gid: u32,
        now: Nanos,
        private: bool,
    ) -> MetaResult<()> {
        sqlite::SqliteMeta::create(path, root_uid, root_gid, now, private)
    }

    /// Opens a tenant database of the embedded engine.
    pub fn open(path: &Path) -> MetaResult<Meta> {
        Ok(Meta(Box::new(sqlite::SqliteMeta::open(path)?)))
    }

    /// [`Meta::open`] with a page cache of `cache` bytes and `map` bytes of the file
    /// memory-mapped (0 maps nothing).
    pub fn open_sized(path: &Path, cache: u64, map: u64) -> MetaResult<Meta> {
        Ok(Meta(Box::new(sqlite::SqliteMeta::open_sized(
            path, cache, map,
        )?)))
    }

    /// Runs `f` as one transaction: all of it commits or none of it does.
    pub fn write<T, E: From<MetaError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut f = Some(f);
        let mut out = None;
        let done = self.0.write_op(&mut |tx| {
            let f = f.take().expect("an engine runs an operation once");
            match f(tx) {
                Ok(v) => {
                    out = Some(Ok(v));
                    Ok(())
                }
                Err(e) => {
                    out = Some(Err(e));
                    Err(MetaError::Aborted)
                }
            }
        });
        match (done, out) {
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Err(e), _) => Err(e.into()),
            (Ok(()), None) => unreachable!("an engine that commits has run the operation"),
        }
    }

    /// Several reads that see one committed state, as a checker needs.
    pub fn snapshot<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> MetaResult<T>) -> MetaResult<T> {
        let mut f = Some(f);
        let mut out = None;
        self.0.snapshot_op(&mut |tx| {
            let f = f.take().expect("an engine runs an operation once");
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("a snapshot that ended well ran its reads"))
    }

    /// Reads, in one read transaction where the engine gains by it (SQLite: its locks are
    /// taken once), which ends when the guard is dropped; elsewhere each read sees the
    /// latest commit. Inside a transaction already open on this connection, the guard just
    /// joins it. Reads that must agree with each other use [`Meta::snapshot`].
    pub fn read(&self) -> Read<'_> {
        let open = self.0.begin_read();
        Read {
            store: self.0.as_ref(),
            open,
        }
    }

    /// Makes committed transactions durable.
    pub fn sync(&self) -> std::io::Result<()> {
        self.0.sync()
    }
}

/// A read transaction; see [`Meta::read`].
pub struct Read<'a> {
    store: &'a dyn MetaStore,
    open: bool,
}

impl<'a> std::ops::Deref for Read<'a> {
    type Target = Tx<'a>;

    fn deref(&self) -> &Tx<'a> {
        self.store.tx()
    }
}

impl Drop for Read<'_> {
    fn drop(&mut self) {
        if self.open {
            self.store.end_read();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::FsError;
    use crate::types::ROOT_INO;

    fn fresh() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("meta.db");
        Meta::create(&db, 0, 0, 5, false).unwrap();
        let meta = Meta::open(&db).unwrap();
        (dir, meta)
    }

    #[test]
    fn a_failed_operation_rolls_back_and_returns_its_own_error() {
        let (_dir, mut meta) = fresh();
        let out = meta.write(|tx| {
            tx.set_ctime(ROOT_INO, 99)?;
            Err::<(), _>(FsError::Quota)
        });
        assert!(matches!(out, Err(FsError::Quota)));
        assert_eq!(meta.read().inode(ROOT_INO).unwrap().unwrap().ctime, 5);
        // The connection is idle again: the next transaction commits.
        meta.write(|tx| tx.set_ctime(ROOT_INO, 7)).unwrap();
        let seen = meta.snapshot(|tx| Ok(tx.inode(ROOT_INO)?.unwrap().ctime));
        assert_eq!(seen.unwrap(), 7);
    }

    #[test]
    fn a_read_guard_joins_an_open_read_and_ends_its_own() {
        let (_dir, mut meta) = fresh();
        {
            let outer = meta.read();
            let inner = meta.read();
            assert!(inner.inode(ROOT_INO).unwrap().is_some());
            drop(inner);
            assert!(outer.inode(ROOT_INO).unwrap().is_some());
        }
        // Both ended: a write can begin.
        meta.write(|tx| tx.set_ctime(ROOT_INO, 8)).unwrap();
    }
}
