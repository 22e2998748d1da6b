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

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use rusqlite::{
    CachedStatement, Connection, OpenFlags, OptionalExtension, StatementStatus, params,
};

use ref_cast::RefCast;

use crate::meta::{MetaError, MetaResult, MetaStore, Tx};
use crate::policy::Rights;
use crate::time::Nanos;
use crate::types::{Kind, ROOT_INO};

mod accounting;
pub mod catalog;
mod lifecycle;
mod namespace;
mod policy;
mod rows;

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

/// A connection to one tenant's `meta.db`.
pub struct SqliteMeta {
    conn: Connection,
    /// The write-ahead log, kept open so fsync can make committed metadata durable.
    wal: Option<File>,
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
