//! One tenant's metadata in SQLite (`meta.db`): inodes, directory entries, xattrs, usage,
//! and the crash-recovery bookkeeping (writers, orphans, gc).
//!
//! Invariants:
//! - every change the core makes is one transaction (`Meta::write`), so after a crash the
//!   tree is consistent: no entry names a missing inode, and nlink counts entries;
//! - inode numbers are never reused (AUTOINCREMENT), so a number freed by one file can never
//!   alias the object of another;
//! - a file whose object may be longer or shorter than its recorded size has a `writers`
//!   row naming the session that wrote it; a file unlinked while open has an `orphans` row;
//!   an object whose inode is gone has a `gc` row until it is deleted.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

use rusqlite::{
    CachedStatement, Connection, OpenFlags, OptionalExtension, Row, StatementStatus, params,
};

use ref_cast::RefCast;

use super::{
    DirQuota, MetaError, MetaResult, MetaStore, MetaTx, NewInode, RawEntry, SessionTable, Tx,
};
use crate::policy::{Entry, Groups, Rights};
use crate::time::Nanos;
use crate::types::{Attr, DirEntry, Extent, Ino, Kind, ROOT_INO};

const SCHEMA_VERSION: i64 = 6;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inodes(
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    perm INTEGER NOT NULL,
    nlink INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    rdev INTEGER NOT NULL DEFAULT 0,
    atime INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    crtime INTEGER NOT NULL,
    parent INTEGER NOT NULL DEFAULT 0,
    target BLOB,
    owner TEXT,
    blocks INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries(
    parent INTEGER NOT NULL,
    name BLOB NOT NULL,
    ino INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    PRIMARY KEY(parent, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS xattrs(
    ino INTEGER NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY(ino, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writers(
    ino INTEGER NOT NULL,
    session TEXT NOT NULL,
    PRIMARY KEY(ino, session)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orphans(
    ino INTEGER NOT NULL,
    session TEXT NOT NULL,
    PRIMARY KEY(ino, session)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gc(ino INTEGER PRIMARY KEY);
-- Files that lost their last name while not open in the mount that removed them, kept a
-- few seconds (with an `orphans` row of that mount) so an open racing the removal opens
-- the old file, as on a local disk. Their usage was given back when they lost the name.
CREATE TABLE IF NOT EXISTS ghosts(ino INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS usage(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL,
    inodes INTEGER NOT NULL,
    -- Bytes open files may still grow by, held against the byte limit.
    reserved INTEGER NOT NULL DEFAULT 0
);
-- Limits by inode; the tenant's own limits are those of its root. 0 is unlimited.
CREATE TABLE IF NOT EXISTS quotas(
    ino INTEGER PRIMARY KEY,
    max_bytes INTEGER NOT NULL DEFAULT 0,
    max_inodes INTEGER NOT NULL DEFAULT 0,
    -- Rates the tenant is throttled to, across its mounts (root row only). 0 is unlimited.
    ops_per_sec INTEGER NOT NULL DEFAULT 0,
    bytes_per_sec INTEGER NOT NULL DEFAULT 0
);
-- Metered activity by hour (Unix seconds at the start of the hour), for billing.
CREATE TABLE IF NOT EXISTS metering(
    hour INTEGER PRIMARY KEY,
    ops INTEGER NOT NULL,
    bytes_read INTEGER NOT NULL,
    bytes_written INTEGER NOT NULL
);
-- Bytes open files hold reserved against byte limits, by file and session: a move carries
-- a file's reservation to the quotas it enters, and a dead session's is given back.
CREATE TABLE IF NOT EXISTS held(
    ino INTEGER NOT NULL,
    session TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY(ino, session)
) WITHOUT ROWID;
-- Directory quotas, each over the directory's subtree (the directory itself excluded), with
-- what that subtree holds: every inode with a name in it counts once. 0 is unlimited.
CREATE TABLE IF NOT EXISTS dir_quotas(
    ino INTEGER PRIMARY KEY,
    max_bytes INTEGER NOT NULL DEFAULT 0,
    max_inodes INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    inodes INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0
);
-- The directories holding names of each file with more than one link, with how many names
-- each holds, so the quotas over every link can be found. Files with one link use
-- `inodes.parent`.
CREATE TABLE IF NOT EXISTS links(
    ino INTEGER NOT NULL,
    parent INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY(ino, parent)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS info(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS acl(
    ino INTEGER NOT NULL,
    subject TEXT NOT NULL,
    rights INTEGER NOT NULL,
    PRIMARY KEY(ino, subject)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups(
    grp TEXT NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY(grp, member)
) WITHOUT ROWID;
INSERT OR IGNORE INTO info(key, value) VALUES ('policy_version', 0);
INSERT OR IGNORE INTO info(key, value) VALUES ('tree_version', 0);
";

/// The columns [`attr_from_row`] reads, as a macro so that statements can be literals: the
/// inode read is the hottest statement, and building its text at every call cost a tenth of
/// a lookup.
macro_rules! inode_cols {
    () => {
        "ino, kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime, crtime, blocks"
    };
}

/// A connection to one tenant's `meta.db`.
pub struct SqliteMeta {
    conn: Connection,
    /// The write-ahead log, kept open so fsync can make committed metadata durable.
    wal: Option<File>,
}

/// The columns [`dir_quota_from_row`] reads; a macro for the reason [`inode_cols`] is.
macro_rules! dir_quota_cols {
    () => {
        "ino, max_bytes, max_inodes, bytes, inodes, reserved"
    };
}

fn dir_quota_from_row(r: &Row<'_>) -> rusqlite::Result<DirQuota> {
    let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(DirQuota {
        ino: r.get(0)?,
        max_bytes: n(1)?,
        max_inodes: n(2)?,
        bytes: n(3)?,
        inodes: n(4)?,
        reserved: n(5)?,
    })
}

impl From<rusqlite::Error> for MetaError {
    fn from(e: rusqlite::Error) -> MetaError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                MetaError::Busy
            }
            Some(rusqlite::ErrorCode::DiskFull) => MetaError::DiskFull,
            _ => MetaError::Engine(Box::new(e)),
        }
    }
}

impl SqliteMeta {
    /// Creates a new tenant database with its root directory. Unless `private`, the root
    /// carries `group:everyone:editor`, so a tenant works as a shared drive out of the box.
    pub fn create(
        path: &Path,
        root_uid: u32,
        root_gid: u32,
        now: Nanos,
        private: bool,
    ) -> MetaResult<()> {
        let conn = Connection::open(path)?;
        // Before anything is written: the size is fixed once the file has its first page.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        configure(&conn, DB_CACHE, DB_MAP)?;
        conn.execute_batch(SCHEMA)?;
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO inodes(ino, kind, perm, nlink, uid, gid, size, atime, mtime, ctime, crtime, parent)
             VALUES (?1, ?2, ?3, 2, ?4, ?5, 0, ?6, ?6, ?6, ?6, ?1)",
            params![ROOT_INO, Kind::Dir.code(), 0o755, root_uid, root_gid, now],
        )?;
        tx.execute("INSERT INTO usage(id, bytes, inodes) VALUES (1, 0, 1)", [])?;
        if !private {
            tx.execute(
                "INSERT INTO acl(ino, subject, rights) VALUES (?1, ?2, ?3)",
                params![ROOT_INO, crate::policy::EVERYONE, Rights::RWX.bits()],
            )?;
        }
        tx.execute(
            "INSERT INTO info(key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION],
        )?;
        Ok(tx.commit()?)
    }

    pub fn open(path: &Path) -> MetaResult<SqliteMeta> {
        SqliteMeta::open_sized(path, DB_CACHE, DB_MAP)
    }

    /// Opens with a page cache of `cache` bytes and `map` bytes of the file memory-mapped
    /// (0 maps nothing). They are set before the first read, which is when SQLite maps.
    pub fn open_sized(path: &Path, cache: u64, map: u64) -> MetaResult<SqliteMeta> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn, cache, map)?;
        // Additive tables of newer builds appear in older stores.
        conn.execute_batch(SCHEMA)?;
        let mut version: i64 = conn.query_row(
            "SELECT value FROM info WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )?;
        if version == 4 {
            migrate_4_to_5(&conn)?;
            version = 5;
        }
        if version == 5 {
            migrate_5_to_6(&conn)?;
            version = 6;
        }
        if version != SCHEMA_VERSION {
            return Err(MetaError::Schema(format!(
                "meta.db schema version {version}, this build reads {SCHEMA_VERSION}"
            )));
        }
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = File::options().append(true).open(wal_path).ok();
        Ok(SqliteMeta { conn, wal })
    }
}

impl MetaStore for SqliteMeta {
    /// One `BEGIN IMMEDIATE` transaction. BEGIN and COMMIT run as cached statements:
    /// rusqlite's `Transaction` parses both anew each time, which showed in the profile of
    /// every change.
    fn write_op(&mut self, op: &mut dyn FnMut(&Tx<'_>) -> MetaResult<()>) -> MetaResult<()> {
        run(&self.conn, "BEGIN IMMEDIATE")?;
        let open = Open(&self.conn);
        op(SqliteTx::ref_cast(&self.conn))?;
        run(&self.conn, "COMMIT")?;
        std::mem::forget(open);
        Ok(())
    }

    fn snapshot_op(&mut self, op: &mut dyn FnMut(&Tx<'_>) -> MetaResult<()>) -> MetaResult<()> {
        let tx =
            rusqlite::Transaction::new(&mut self.conn, rusqlite::TransactionBehavior::Deferred)?;
        op(SqliteTx::ref_cast(&tx))?;
        tx.commit()?;
        Ok(())
    }

    /// In WAL mode every transaction costs several `fcntl` calls, which were a fifth of the
    /// daemon's time in `ls -l` when each statement ran in a transaction of its own.
    fn begin_read(&self) -> bool {
        self.conn.is_autocommit() && run(&self.conn, "BEGIN").is_ok()
    }

    fn end_read(&self) {
        // A read transaction cannot fail to end; if it ever did, ROLLBACK still ends it,
        // so the next write's BEGIN finds the connection idle.
        if run(&self.conn, "COMMIT").is_err() {
            let _ = run(&self.conn, "ROLLBACK");
        }
    }

    fn tx(&self) -> &Tx<'_> {
        SqliteTx::ref_cast(&self.conn)
    }

    /// Makes committed transactions durable (fsync of the write-ahead log).
    fn sync(&self) -> std::io::Result<()> {
        match &self.wal {
            Some(wal) => wal.sync_data(),
            None => Ok(()),
        }
    }
}

/// Version 4 kept reservations per session only. They are given back: a store being
/// upgraded has no live mounts of this build, and a reservation is only a promise.
fn migrate_4_to_5(conn: &Connection) -> MetaResult<()> {
    Ok(conn.execute_batch(
        "BEGIN IMMEDIATE;
         DROP TABLE IF EXISTS reservations;
         UPDATE usage SET reserved = 0;
         UPDATE info SET value = 5 WHERE key = 'schema_version';
         COMMIT;",
    )?)
}

/// Version 6 records the blocks a file's content takes. Older rows get what older builds
/// reported, whole 4 KiB blocks for the length, until the file next changes.
fn migrate_5_to_6(conn: &Connection) -> MetaResult<()> {
    Ok(conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         ALTER TABLE inodes ADD COLUMN blocks INTEGER NOT NULL DEFAULT 0;
         UPDATE inodes SET blocks = (size + 4095) / 4096 * 8 WHERE kind = {};
         UPDATE info SET value = 6 WHERE key = 'schema_version';
         COMMIT;",
        Kind::File.code()
    ))?)
}

fn configure(conn: &Connection, cache: u64, map: u64) -> MetaResult<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    // The sizes first: SQLite maps the file at the first read, which the pragmas below do.
    // A negative cache_size is in KiB; mmap_size answers with a row, so it is read.
    conn.pragma_update(None, "cache_size", -((cache / 1024).max(64) as i64))?;
    let _: Option<i64> = conn
        .query_row(&format!("PRAGMA mmap_size = {map}"), [], |r| r.get(0))
        .optional()?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.set_prepared_statement_cache_capacity(64);

    Ok(())
}

/// SQLite's page cache per connection, and how much of the database file it maps into
/// memory: with a million inodes the tree no longer fits the default 2 MB cache, and mapped
/// pages cost a memory access where a cache miss costs a `pread`.
pub const DB_CACHE: u64 = 8 << 20;
pub const DB_MAP: u64 = 256 << 20;

/// Page size of new metadata files. Every metadata op rewrites a handful of pages (an
/// entry, an inode or two, the usage row) into the write-ahead log, and small pages make
/// that 4 times fewer bytes: a create and unlink cost 78 µs instead of 110 µs. Lookups in
/// a million-inode tree cost the same as with 4 KiB pages; names longer than about 230
/// bytes spill to an overflow page. Stores made before keep their page size.
pub const PAGE_SIZE: i64 = 1024;

/// Statements over one connection, inside or outside a transaction: the connection seen
/// as a [`MetaTx`] (a cast of the reference, so a read costs no allocation).
#[derive(RefCast)]
#[repr(transparent)]
pub struct SqliteTx {
    conn: Connection,
}

/// A write transaction in progress: dropped before its COMMIT (an error, a panic), it rolls
/// back, so the connection is idle for the next one.
struct Open<'a>(&'a Connection);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        let _ = run(self.0, "ROLLBACK");
    }
}

fn run(conn: &Connection, sql: &str) -> MetaResult<()> {
    Ok(cached(conn, sql)?.execute([]).map(|_| ())?)
}

/// Uses of one statement that SQLite may recompile before a debug build calls it a defect.
/// A schema change recompiles every statement once; a statement whose plan depends on a bound
/// value (an `ORDER BY` beside `col = ?`, for one) is recompiled at every use, because the
/// statement cache clears bindings, and that costs more than the query (about 38,000
/// instructions, against 2,000 for a point lookup).
const RECOMPILES_ALLOWED: usize = 4;

/// A statement from the connection's cache. Debug builds check that SQLite is not
/// recompiling it at every use.
fn cached<'c>(conn: &'c Connection, sql: &str) -> MetaResult<CachedStatement<'c>> {
    let stmt = conn.prepare_cached(sql)?;
    debug_assert!(
        stmt.get_status(StatementStatus::RePrepare) <= RECOMPILES_ALLOWED as i32,
        "SQLite recompiles this statement at every use; keep bound values out of its plan: {sql}"
    );
    Ok(stmt)
}

fn attr_from_row(r: &Row<'_>) -> rusqlite::Result<Attr> {
    let kind: i64 = r.get(1)?;
    Ok(Attr {
        ino: r.get(0)?,
        kind: Kind::from_code(kind).ok_or(rusqlite::Error::IntegralValueOutOfRange(1, kind))?,
        perm: r.get(2)?,
        nlink: r.get(3)?,
        uid: r.get(4)?,
        gid: r.get(5)?,
        size: r.get::<_, i64>(6)? as u64,
        rdev: r.get(7)?,
        atime: r.get(8)?,
        mtime: r.get(9)?,
        ctime: r.get(10)?,
        crtime: r.get(11)?,
        blocks: r.get::<_, i64>(12)? as u64,
    })
}

impl MetaTx for SqliteTx {
    #[cfg(test)]
    fn pragma(&self, name: &str) -> MetaResult<i64> {
        Ok(self
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
    }

    fn inode(&self, ino: Ino) -> MetaResult<Option<Attr>> {
        Ok(cached(
            &self.conn,
            concat!("SELECT ", inode_cols!(), " FROM inodes WHERE ino = ?1"),
        )?
        .query_row([ino], attr_from_row)
        .optional()?)
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> MetaResult<Option<(Ino, Kind)>> {
        Ok(cached(
            &self.conn,
            "SELECT ino, kind FROM entries WHERE parent = ?1 AND name = ?2",
        )?
        .query_row(params![parent, name], |r| {
            let kind: i64 = r.get(1)?;
            Ok((
                r.get(0)?,
                Kind::from_code(kind).ok_or(rusqlite::Error::IntegralValueOutOfRange(1, kind))?,
            ))
        })
        .optional()?)
    }

    fn lookup_attr(&self, parent: Ino, name: &[u8]) -> MetaResult<Option<Attr>> {
        match self.lookup(parent, name)? {
            Some((ino, _)) => self.inode(ino),
            None => Ok(None),
        }
    }

    fn insert_inode(&self, n: &NewInode<'_>) -> MetaResult<Ino> {
        let nlink = if n.kind == Kind::Dir { 2 } else { 1 };
        let size = n.target.map_or(0, |t| t.len() as i64);
        cached(
            &self.conn,
            "INSERT INTO inodes(kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime,
                                    crtime, parent, target, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            n.kind.code(),
            n.perm,
            nlink,
            n.uid,
            n.gid,
            size,
            n.rdev,
            n.now,
            n.parent,
            n.target,
            n.owner
        ])?;
        Ok(self.conn.last_insert_rowid() as Ino)
    }

    fn update_inode(&self, a: &Attr) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE inodes SET perm = ?2, uid = ?3, gid = ?4, atime = ?5, mtime = ?6, ctime = ?7
             WHERE ino = ?1",
        )?
        .execute(params![
            a.ino, a.perm, a.uid, a.gid, a.atime, a.mtime, a.ctime
        ])?;
        Ok(())
    }

    fn touch(&self, ino: Ino, now: Nanos) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE inodes SET mtime = ?2, ctime = ?2 WHERE ino = ?1",
        )?
        .execute(params![ino, now])?;
        Ok(())
    }

    fn set_ctime(&self, ino: Ino, now: Nanos) -> MetaResult<()> {
        cached(&self.conn, "UPDATE inodes SET ctime = ?2 WHERE ino = ?1")?
            .execute(params![ino, now])?;
        Ok(())
    }

    fn add_nlink(&self, ino: Ino, delta: i64) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE inodes SET nlink = nlink + ?2 WHERE ino = ?1",
        )?
        .execute(params![ino, delta])?;
        Ok(())
    }

    fn set_parent(&self, ino: Ino, parent: Ino) -> MetaResult<()> {
        cached(&self.conn, "UPDATE inodes SET parent = ?2 WHERE ino = ?1")?
            .execute(params![ino, parent])?;
        Ok(())
    }

    fn dir_parent(&self, ino: Ino) -> MetaResult<Option<Ino>> {
        Ok(
            cached(&self.conn, "SELECT parent FROM inodes WHERE ino = ?1")?
                .query_row([ino], |r| r.get(0))
                .optional()?,
        )
    }

    fn set_size(&self, ino: Ino, extent: Extent, mtime: Nanos, ctime: Nanos) -> MetaResult<bool> {
        Ok(cached(
            &self.conn,
            "UPDATE inodes SET size = ?2, blocks = ?3, mtime = ?4, ctime = ?5
             WHERE ino = ?1 AND NOT EXISTS (SELECT 1 FROM ghosts WHERE ino = ?1)",
        )?
        .execute(params![
            ino,
            extent.len as i64,
            extent.blocks as i64,
            mtime,
            ctime
        ])? > 0)
    }

    fn symlink_target(&self, ino: Ino) -> MetaResult<Option<Vec<u8>>> {
        Ok(
            cached(&self.conn, "SELECT target FROM inodes WHERE ino = ?1")?
                .query_row([ino], |r| r.get(0))
                .optional()
                .map(Option::flatten)?,
        )
    }

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

    fn name_in(&self, parent: Ino, ino: Ino) -> MetaResult<Option<Vec<u8>>> {
        Ok(cached(
            &self.conn,
            "SELECT name FROM entries WHERE parent = ?1 AND ino = ?2 LIMIT 1",
        )?
        .query_row(params![parent, ino], |r| r.get(0))
        .optional()?)
    }

    fn insert_entry(&self, parent: Ino, name: &[u8], ino: Ino, kind: Kind) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT INTO entries(parent, name, ino, kind) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![parent, name, ino, kind.code()])?;
        Ok(())
    }

    fn delete_entry(&self, parent: Ino, name: &[u8]) -> MetaResult<()> {
        cached(
            &self.conn,
            "DELETE FROM entries WHERE parent = ?1 AND name = ?2",
        )?
        .execute(params![parent, name])?;
        Ok(())
    }

    fn repoint_entry(&self, parent: Ino, name: &[u8], ino: Ino, kind: Kind) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE entries SET ino = ?3, kind = ?4 WHERE parent = ?1 AND name = ?2",
        )?
        .execute(params![parent, name, ino, kind.code()])?;
        Ok(())
    }

    fn move_entry(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
    ) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE entries SET parent = ?3, name = ?4 WHERE parent = ?1 AND name = ?2",
        )?
        .execute(params![parent, name, new_parent, new_name])?;
        Ok(())
    }

    fn has_entries(&self, dir: Ino) -> MetaResult<bool> {
        Ok(cached(
            &self.conn,
            "SELECT EXISTS(SELECT 1 FROM entries WHERE parent = ?1)",
        )?
        .query_row([dir], |r| r.get(0))?)
    }

    fn list(&self, dir: Ino) -> MetaResult<Vec<DirEntry>> {
        let mut entries = cached(
            &self.conn,
            "SELECT name, ino, kind FROM entries WHERE parent = ?1",
        )?
        .query_map([dir], |r| {
            let kind: i64 = r.get(2)?;
            Ok(DirEntry {
                cookie: 0,
                name: r.get(0)?,
                ino: r.get(1)?,
                kind: Kind::from_code(kind)
                    .ok_or(rusqlite::Error::IntegralValueOutOfRange(2, kind))?,
                attr: None,
            })
        })?
        .collect::<rusqlite::Result<Vec<DirEntry>>>()?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn delete_inode(&self, ino: Ino) -> MetaResult<()> {
        for sql in [
            "DELETE FROM inodes WHERE ino = ?1",
            "DELETE FROM xattrs WHERE ino = ?1",
            "DELETE FROM writers WHERE ino = ?1",
            "DELETE FROM orphans WHERE ino = ?1",
            "DELETE FROM ghosts WHERE ino = ?1",
            "DELETE FROM acl WHERE ino = ?1",
            "DELETE FROM links WHERE ino = ?1",
            "DELETE FROM held WHERE ino = ?1",
            "DELETE FROM dir_quotas WHERE ino = ?1",
        ] {
            cached(&self.conn, sql)?.execute([ino])?;
        }
        self.mark_gc(ino)
    }

    fn set_atime_if_older(&self, ino: Ino, atime: Nanos) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE inodes SET atime = ?2 WHERE ino = ?1 AND atime < ?2",
        )?
        .execute(params![ino, atime])?;
        Ok(())
    }

    fn mark_gc(&self, ino: Ino) -> MetaResult<()> {
        cached(&self.conn, "INSERT OR IGNORE INTO gc(ino) VALUES (?1)")?.execute([ino])?;
        Ok(())
    }

    fn clear_held(&self, ino: Ino) -> MetaResult<()> {
        cached(&self.conn, "DELETE FROM held WHERE ino = ?1")?.execute([ino])?;
        Ok(())
    }

    fn add_usage(&self, bytes: i64, inodes: i64) -> MetaResult<()> {
        if bytes == 0 && inodes == 0 {
            return Ok(());
        }
        cached(
            &self.conn,
            "UPDATE usage SET bytes = bytes + ?1, inodes = inodes + ?2 WHERE id = 1",
        )?
        .execute(params![bytes, inodes])?;
        Ok(())
    }

    fn limits(&self) -> MetaResult<(u64, u64)> {
        self.root_quota("SELECT max_bytes, max_inodes FROM quotas WHERE ino = ?1")
    }

    fn set_limits(&self, max_bytes: Option<u64>, max_inodes: Option<u64>) -> MetaResult<()> {
        self.set_root_quota(
            ["max_bytes", "max_inodes"],
            self.limits()?,
            (max_bytes, max_inodes),
        )
    }

    fn passthrough_reads(&self) -> MetaResult<bool> {
        Ok(cached(
            &self.conn,
            "SELECT value FROM info WHERE key = 'passthrough_reads'",
        )?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0)
            != 0)
    }

    fn set_passthrough_reads(&self, on: bool) -> MetaResult<()> {
        self.conn.execute(
            "INSERT INTO info(key, value) VALUES ('passthrough_reads', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [i64::from(on)],
        )?;
        Ok(())
    }

    fn rates(&self) -> MetaResult<(u64, u64)> {
        self.root_quota("SELECT ops_per_sec, bytes_per_sec FROM quotas WHERE ino = ?1")
    }

    fn set_rates(&self, ops: Option<u64>, bytes: Option<u64>) -> MetaResult<()> {
        self.set_root_quota(
            ["ops_per_sec", "bytes_per_sec"],
            self.rates()?,
            (ops, bytes),
        )
    }

    fn add_metering(&self, hour: i64, ops: u64, read: u64, written: u64) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT INTO metering(hour, ops, bytes_read, bytes_written) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(hour) DO UPDATE SET ops = ops + excluded.ops,
                     bytes_read = bytes_read + excluded.bytes_read,
                     bytes_written = bytes_written + excluded.bytes_written",
        )?
        .execute(params![hour, ops as i64, read as i64, written as i64])?;
        Ok(())
    }

    fn metering(&self, since: i64) -> MetaResult<Vec<(i64, u64, u64, u64)>> {
        Ok(self.conn
            .prepare("SELECT hour, ops, bytes_read, bytes_written FROM metering WHERE hour >= ?1 ORDER BY hour")?
            .query_map([since], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64))
            })?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn reserved(&self) -> MetaResult<u64> {
        Ok(
            cached(&self.conn, "SELECT reserved FROM usage WHERE id = 1")?
                .query_row([], |r| Ok(r.get::<_, i64>(0)?.max(0) as u64))?,
        )
    }

    fn add_reserved(&self, bytes: i64) -> MetaResult<()> {
        if bytes == 0 {
            return Ok(());
        }
        cached(
            &self.conn,
            "UPDATE usage SET reserved = MAX(0, reserved + ?1) WHERE id = 1",
        )?
        .execute([bytes])?;
        Ok(())
    }

    fn held(&self, ino: Ino, session: &str) -> MetaResult<u64> {
        Ok(cached(
            &self.conn,
            "SELECT bytes FROM held WHERE ino = ?1 AND session = ?2",
        )?
        .query_row(params![ino, session], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0)
        .max(0) as u64)
    }

    fn set_held(&self, ino: Ino, session: &str, bytes: u64) -> MetaResult<()> {
        if bytes == 0 {
            cached(
                &self.conn,
                "DELETE FROM held WHERE ino = ?1 AND session = ?2",
            )?
            .execute(params![ino, session])?;
        } else {
            cached(
                &self.conn,
                "INSERT OR REPLACE INTO held(ino, session, bytes) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![ino, session, bytes as i64])?;
        }
        Ok(())
    }

    fn held_total(&self, ino: Ino) -> MetaResult<u64> {
        Ok(cached(
            &self.conn,
            "SELECT COALESCE(SUM(bytes), 0) FROM held WHERE ino = ?1",
        )?
        .query_row([ino], |r| Ok(r.get::<_, i64>(0)?.max(0) as u64))?)
    }

    fn held_by(&self, session: &str) -> MetaResult<Vec<(Ino, u64)>> {
        Ok(self
            .conn
            .prepare("SELECT ino, bytes FROM held WHERE session = ?1")?
            .query_map([session], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn held_for(&self, ino: Ino) -> MetaResult<Vec<(String, u64)>> {
        Ok(
            cached(&self.conn, "SELECT session, bytes FROM held WHERE ino = ?1")?
                .query_map([ino], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect::<rusqlite::Result<_>>()?,
        )
    }

    fn all_held(&self) -> MetaResult<HashMap<Ino, u64>> {
        Ok(self
            .conn
            .prepare("SELECT ino, SUM(bytes) FROM held GROUP BY ino")?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn reserving_sessions(&self) -> MetaResult<Vec<String>> {
        Ok(self
            .conn
            .prepare("SELECT DISTINCT session FROM held")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn placement(&self, ino: Ino) -> MetaResult<Option<(Kind, u32, Ino)>> {
        Ok(cached(
            &self.conn,
            "SELECT kind, nlink, parent FROM inodes WHERE ino = ?1",
        )?
        .query_row([ino], |r| {
            let kind: i64 = r.get(0)?;
            Ok((
                Kind::from_code(kind).ok_or(rusqlite::Error::IntegralValueOutOfRange(0, kind))?,
                r.get(1)?,
                r.get(2)?,
            ))
        })
        .optional()?)
    }

    // ---- directory quotas and the links they follow ---------------------------------------

    fn has_dir_quotas(&self) -> MetaResult<bool> {
        Ok(
            cached(&self.conn, "SELECT EXISTS(SELECT 1 FROM dir_quotas)")?
                .query_row([], |r| r.get(0))?,
        )
    }

    fn dir_quota_inos(&self) -> MetaResult<Vec<Ino>> {
        Ok(cached(&self.conn, "SELECT ino FROM dir_quotas")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn dir_quota(&self, ino: Ino) -> MetaResult<Option<DirQuota>> {
        Ok(cached(
            &self.conn,
            concat!(
                "SELECT ",
                dir_quota_cols!(),
                " FROM dir_quotas WHERE ino = ?1"
            ),
        )?
        .query_row([ino], dir_quota_from_row)
        .optional()?)
    }

    fn all_dir_quotas(&self) -> MetaResult<Vec<DirQuota>> {
        Ok(self
            .conn
            .prepare(concat!(
                "SELECT ",
                dir_quota_cols!(),
                " FROM dir_quotas ORDER BY ino"
            ))?
            .query_map([], dir_quota_from_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn put_dir_quota(&self, ino: Ino, max_bytes: u64, max_inodes: u64) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT INTO dir_quotas(ino, max_bytes, max_inodes) VALUES (?1, ?2, ?3)
                 ON CONFLICT(ino) DO UPDATE SET max_bytes = excluded.max_bytes,
                     max_inodes = excluded.max_inodes",
        )?
        .execute(params![ino, max_bytes as i64, max_inodes as i64])?;
        Ok(())
    }

    fn set_dir_usage(&self, ino: Ino, bytes: u64, inodes: u64, reserved: u64) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE dir_quotas SET bytes = ?2, inodes = ?3, reserved = ?4 WHERE ino = ?1",
        )?
        .execute(params![ino, bytes as i64, inodes as i64, reserved as i64])?;
        Ok(())
    }

    fn add_dir_usage(&self, ino: Ino, bytes: i64, inodes: i64, reserved: i64) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE dir_quotas SET bytes = MAX(0, bytes + ?2), inodes = MAX(0, inodes + ?3),
                     reserved = MAX(0, reserved + ?4) WHERE ino = ?1",
        )?
        .execute(params![ino, bytes, inodes, reserved])?;
        Ok(())
    }

    fn remove_dir_quota(&self, ino: Ino) -> MetaResult<bool> {
        Ok(cached(&self.conn, "DELETE FROM dir_quotas WHERE ino = ?1")?.execute([ino])? > 0)
    }

    fn link_parents(&self, ino: Ino) -> MetaResult<Vec<(Ino, u32)>> {
        Ok(
            cached(&self.conn, "SELECT parent, n FROM links WHERE ino = ?1")?
                .query_map([ino], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?,
        )
    }

    fn add_link(&self, ino: Ino, parent: Ino, delta: i64) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT INTO links(ino, parent, n) VALUES (?1, ?2, ?3)
                 ON CONFLICT(ino, parent) DO UPDATE SET n = n + excluded.n",
        )?
        .execute(params![ino, parent, delta])?;
        cached(
            &self.conn,
            "DELETE FROM links WHERE ino = ?1 AND parent = ?2 AND n <= 0",
        )?
        .execute(params![ino, parent])?;
        Ok(())
    }

    fn clear_links(&self, ino: Ino) -> MetaResult<()> {
        cached(&self.conn, "DELETE FROM links WHERE ino = ?1")?.execute([ino])?;
        Ok(())
    }

    fn all_links(&self) -> MetaResult<Vec<(Ino, Ino, u32)>> {
        Ok(self
            .conn
            .prepare("SELECT ino, parent, n FROM links ORDER BY ino, parent")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn subtree(&self, dir: Ino) -> MetaResult<Vec<(Ino, Kind, u32, u64)>> {
        Ok(self
            .conn
            .prepare(
                "WITH RECURSIVE sub(ino) AS (
                     SELECT ?1 UNION SELECT e.ino FROM entries e JOIN sub s ON e.parent = s.ino
                 )
                 SELECT i.ino, i.kind, i.nlink, i.size FROM sub JOIN inodes i ON i.ino = sub.ino",
            )?
            .query_map([dir], |r| {
                let kind: i64 = r.get(1)?;
                Ok((
                    r.get(0)?,
                    Kind::from_code(kind)
                        .ok_or(rusqlite::Error::IntegralValueOutOfRange(1, kind))?,
                    r.get(2)?,
                    r.get::<_, i64>(3)?.max(0) as u64,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn usage(&self) -> MetaResult<(u64, u64)> {
        Ok(
            cached(&self.conn, "SELECT bytes, inodes FROM usage WHERE id = 1")?.query_row(
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?.max(0) as u64,
                        r.get::<_, i64>(1)?.max(0) as u64,
                    ))
                },
            )?,
        )
    }

    fn xattr(&self, ino: Ino, name: &[u8]) -> MetaResult<Option<Vec<u8>>> {
        Ok(cached(
            &self.conn,
            "SELECT value FROM xattrs WHERE ino = ?1 AND name = ?2",
        )?
        .query_row(params![ino, name], |r| r.get(0))
        .optional()?)
    }

    fn set_xattr(&self, ino: Ino, name: &[u8], value: &[u8]) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![ino, name, value])?;
        Ok(())
    }

    fn remove_xattr(&self, ino: Ino, name: &[u8]) -> MetaResult<bool> {
        Ok(cached(
            &self.conn,
            "DELETE FROM xattrs WHERE ino = ?1 AND name = ?2",
        )?
        .execute(params![ino, name])?
            > 0)
    }

    fn xattr_names(&self, ino: Ino) -> MetaResult<Vec<Vec<u8>>> {
        let mut names = cached(&self.conn, "SELECT name FROM xattrs WHERE ino = ?1")?
            .query_map([ino], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
        names.sort();
        Ok(names)
    }

    fn mark_writer(&self, ino: Ino, session: &str) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT OR IGNORE INTO writers(ino, session) VALUES (?1, ?2)",
        )?
        .execute(params![ino, session])?;
        Ok(())
    }

    fn add_ghost(&self, ino: Ino) -> MetaResult<()> {
        cached(&self.conn, "INSERT OR IGNORE INTO ghosts(ino) VALUES (?1)")?.execute([ino])?;
        Ok(())
    }

    fn is_ghost(&self, ino: Ino) -> MetaResult<bool> {
        Ok(cached(&self.conn, "SELECT 1 FROM ghosts WHERE ino = ?1")?
            .query_row([ino], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn all_ghosts(&self) -> MetaResult<Vec<Ino>> {
        Ok(self
            .conn
            .prepare("SELECT ino FROM ghosts")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn add_orphan(&self, ino: Ino, session: &str) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT OR IGNORE INTO orphans(ino, session) VALUES (?1, ?2)",
        )?
        .execute(params![ino, session])?;
        Ok(())
    }

    fn sessions_with_state(&self) -> MetaResult<Vec<String>> {
        Ok(self
            .conn
            .prepare(
                "SELECT session FROM writers UNION SELECT session FROM orphans
                 UNION SELECT session FROM held",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn writers_of(&self, session: &str) -> MetaResult<Vec<Ino>> {
        Ok(self
            .conn
            .prepare("SELECT ino FROM writers WHERE session = ?1")?
            .query_map([session], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn orphans_of(&self, session: &str) -> MetaResult<Vec<Ino>> {
        Ok(self
            .conn
            .prepare("SELECT ino FROM orphans WHERE session = ?1")?
            .query_map([session], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn forget_session(&self, session: &str) -> MetaResult<()> {
        self.conn
            .execute("DELETE FROM held WHERE session = ?1", [session])?;
        self.conn
            .execute("DELETE FROM writers WHERE session = ?1", [session])?;
        self.conn
            .execute("DELETE FROM orphans WHERE session = ?1", [session])?;
        Ok(())
    }

    fn all_inodes(&self) -> MetaResult<Vec<(Attr, Ino)>> {
        Ok(self
            .conn
            .prepare(concat!("SELECT ", inode_cols!(), ", parent FROM inodes"))?
            .query_map([], |r| Ok((attr_from_row(r)?, r.get(13)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn all_entries(&self) -> MetaResult<Vec<RawEntry>> {
        Ok(self
            .conn
            .prepare("SELECT parent, name, ino, kind FROM entries")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn all_session_rows(&self, table: SessionTable) -> MetaResult<Vec<(Ino, String)>> {
        let sql = match table {
            SessionTable::Writers => "SELECT ino, session FROM writers",
            SessionTable::Orphans => "SELECT ino, session FROM orphans",
        };
        Ok(self
            .conn
            .prepare(sql)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn set_entry_kind(&self, parent: Ino, name: &[u8], kind: Kind) -> MetaResult<()> {
        self.conn.execute(
            "UPDATE entries SET kind = ?3 WHERE parent = ?1 AND name = ?2",
            params![parent, name, kind.code()],
        )?;
        Ok(())
    }

    fn set_nlink(&self, ino: Ino, nlink: u32) -> MetaResult<()> {
        self.conn.execute(
            "UPDATE inodes SET nlink = ?2 WHERE ino = ?1",
            params![ino, nlink],
        )?;
        Ok(())
    }

    fn computed_usage(&self) -> MetaResult<(u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(SUM(CASE WHEN kind IN (?1, ?2) THEN size ELSE 0 END), 0), COUNT(*)
             FROM inodes WHERE ino NOT IN (SELECT ino FROM ghosts)",
            params![Kind::File.code(), Kind::Symlink.code()],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    fn set_usage(&self, bytes: u64, inodes: u64) -> MetaResult<()> {
        self.conn.execute(
            "UPDATE usage SET bytes = ?1, inodes = ?2 WHERE id = 1",
            params![bytes as i64, inodes as i64],
        )?;
        Ok(())
    }

    fn acl(&self, ino: Ino) -> MetaResult<Vec<Entry>> {
        // Sorted here: with `ORDER BY subject` SQLite recompiled the statement at every use.
        let mut entries: Vec<Entry> =
            cached(&self.conn, "SELECT subject, rights FROM acl WHERE ino = ?1")?
                .query_map([ino], |r| {
                    Ok(Entry {
                        subject: r.get(0)?,
                        rights: Rights::from_bits(r.get(1)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
        entries.sort_by(|a, b| a.subject.cmp(&b.subject));
        let owner: Option<String> = cached(&self.conn, "SELECT owner FROM inodes WHERE ino = ?1")?
            .query_row([ino], |r| r.get(0))
            .optional()?
            .flatten();
        if let Some(subject) = owner {
            match entries.iter_mut().find(|e| e.subject == subject) {
                Some(e) => e.rights = e.rights.union(Rights::OWNER),
                None => entries.push(Entry {
                    subject,
                    rights: Rights::OWNER,
                }),
            }
        }
        Ok(entries)
    }

    fn set_acl(&self, ino: Ino, subject: &str, rights: Rights) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT OR REPLACE INTO acl(ino, subject, rights) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![ino, subject, rights.bits()])?;
        cached(
            &self.conn,
            "UPDATE inodes SET owner = NULL WHERE ino = ?1 AND owner = ?2",
        )?
        .execute(params![ino, subject])?;
        Ok(())
    }

    fn remove_acl(&self, ino: Ino, subject: &str) -> MetaResult<bool> {
        let explicit = cached(
            &self.conn,
            "DELETE FROM acl WHERE ino = ?1 AND subject = ?2",
        )?
        .execute(params![ino, subject])?;
        let owned = cached(
            &self.conn,
            "UPDATE inodes SET owner = NULL WHERE ino = ?1 AND owner = ?2",
        )?
        .execute(params![ino, subject])?;
        Ok(explicit + owned > 0)
    }

    fn acl_subjects(&self) -> MetaResult<Vec<String>> {
        Ok(self.conn
            .prepare(
                "SELECT subject FROM acl UNION SELECT owner FROM inodes WHERE owner IS NOT NULL ORDER BY 1",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn groups(&self) -> MetaResult<Groups> {
        let pairs: Vec<(String, String)> = cached(&self.conn, "SELECT grp, member FROM groups")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Groups::from_pairs(pairs))
    }

    fn add_member(&self, group: &str, member: &str) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT OR IGNORE INTO groups(grp, member) VALUES (?1, ?2)",
        )?
        .execute(params![group, member])?;
        Ok(())
    }

    fn remove_member(&self, group: &str, member: &str) -> MetaResult<bool> {
        Ok(cached(
            &self.conn,
            "DELETE FROM groups WHERE grp = ?1 AND member = ?2",
        )?
        .execute(params![group, member])?
            > 0)
    }

    fn policy_version(&self) -> MetaResult<i64> {
        Ok(cached(
            &self.conn,
            "SELECT value FROM info WHERE key = 'policy_version'",
        )?
        .query_row([], |r| r.get(0))?)
    }

    fn tree_version(&self) -> MetaResult<i64> {
        Ok(cached(
            &self.conn,
            "SELECT value FROM info WHERE key = 'tree_version'",
        )?
        .query_row([], |r| r.get(0))?)
    }

    fn bump_tree(&self) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE info SET value = value + 1 WHERE key = 'tree_version'",
        )?
        .execute([])?;
        Ok(())
    }

    fn bump_policy(&self) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE info SET value = value + 1 WHERE key = 'policy_version'",
        )?
        .execute([])?;
        Ok(())
    }

    fn gc_pending(&self) -> MetaResult<Vec<Ino>> {
        Ok(self
            .conn
            .prepare("SELECT ino FROM gc")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn gc_done(&self, ino: Ino) -> MetaResult<()> {
        cached(&self.conn, "DELETE FROM gc WHERE ino = ?1")?.execute([ino])?;
        Ok(())
    }
}

impl SqliteTx {
    /// Two columns of the tenant's row in `quotas` (its root's), 0 when there is none.
    fn root_quota(&self, sql: &str) -> MetaResult<(u64, u64)> {
        Ok(cached(&self.conn, sql)?
            .query_row([ROOT_INO], |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
            })
            .optional()?
            .unwrap_or((0, 0)))
    }

    /// Sets two columns of the tenant's row in `quotas`; `None` keeps a value as it is.
    fn set_root_quota(
        &self,
        cols: [&str; 2],
        now: (u64, u64),
        new: (Option<u64>, Option<u64>),
    ) -> MetaResult<()> {
        self.conn
            .execute("INSERT OR IGNORE INTO quotas(ino) VALUES (?1)", [ROOT_INO])?;
        self.conn.execute(
            &format!(
                "UPDATE quotas SET {} = ?2, {} = ?3 WHERE ino = ?1",
                cols[0], cols[1]
            ),
            params![
                ROOT_INO,
                new.0.unwrap_or(now.0) as i64,
                new.1.unwrap_or(now.1) as i64
            ],
        )?;
        Ok(())
    }
}
