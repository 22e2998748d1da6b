//! Inodes between sessions in SQLite, and the whole-table reads and fixes of fsck.

use rusqlite::{OptionalExtension, params};

use crate::meta::{LifecycleTx, MetaResult, RawEntry, SessionTable};
use crate::types::{Attr, Ino, Kind};

use super::rows::{attr_from_row, inode_cols};
use super::{SqliteTx, cached};

impl LifecycleTx for SqliteTx {
    #[cfg(test)]
    fn pragma(&self, name: &str) -> MetaResult<i64> {
        Ok(self
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
    }

    fn mark_gc(&self, ino: Ino) -> MetaResult<()> {
        cached(&self.conn, "INSERT OR IGNORE INTO gc(ino) VALUES (?1)")?.execute([ino])?;
        Ok(())
    }

    fn all_links(&self) -> MetaResult<Vec<(Ino, Ino, u32)>> {
        Ok(self
            .conn
            .prepare("SELECT ino, parent, n FROM links ORDER BY ino, parent")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?)
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
