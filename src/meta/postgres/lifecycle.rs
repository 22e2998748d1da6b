//! Inodes between sessions in PostgreSQL, and the whole-table reads and fixes of fsck.

use std::collections::HashSet;

use crate::meta::{LifecycleTx, MetaResult, RawEntry, SessionTable};
use crate::types::{Attr, Ino, Kind};

use super::PgMeta;
use super::conn::args;
use super::rows::{attr, count, i, ino, inode_cols, inos, int, narrow, strings};

impl LifecycleTx for PgMeta {
    #[cfg(test)]
    fn pragma(&self, _name: &str) -> MetaResult<i64> {
        Err(crate::meta::MetaError::Engine(
            "PostgreSQL has no pragmas".into(),
        ))
    }

    fn mark_gc(&self, n: Ino) -> MetaResult<()> {
        self.conn.defer(
            "INSERT INTO gc(ino) VALUES ($1) ON CONFLICT DO NOTHING",
            args![i(n)],
        )
    }

    fn all_links(&self) -> MetaResult<Vec<(Ino, Ino, u32)>> {
        self.conn
            .rows("SELECT ino, parent, n FROM links ORDER BY ino, parent", &[])?
            .iter()
            .map(|r| Ok((ino(r, 0)?, ino(r, 1)?, narrow(r, 2)?)))
            .collect()
    }

    fn mark_writer(&self, n: Ino, session: &str) -> MetaResult<()> {
        self.conn.defer(
            "INSERT INTO writers(ino, session) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            args![i(n), session.to_string()],
        )
    }

    fn add_ghost(&self, n: Ino) -> MetaResult<()> {
        self.conn.defer(
            "INSERT INTO ghosts(ino) VALUES ($1) ON CONFLICT DO NOTHING",
            args![i(n)],
        )
    }

    fn is_ghost(&self, n: Ino) -> MetaResult<bool> {
        Ok(self
            .conn
            .row("SELECT 1 FROM ghosts WHERE ino = $1", &[&i(n)])?
            .is_some())
    }

    fn ghosts_among(&self, inos: &[Ino]) -> MetaResult<HashSet<Ino>> {
        let ids: Vec<i64> = inos.iter().map(|&n| i(n)).collect();
        self.conn
            .rows("SELECT ino FROM ghosts WHERE ino = ANY($1)", &[&ids])?
            .iter()
            .map(|r| ino(r, 0))
            .collect()
    }

    fn all_ghosts(&self) -> MetaResult<Vec<Ino>> {
        inos(self.conn.rows("SELECT ino FROM ghosts", &[])?)
    }

    fn add_orphan(&self, n: Ino, session: &str) -> MetaResult<()> {
        self.conn.defer(
            "INSERT INTO orphans(ino, session) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            args![i(n), session.to_string()],
        )
    }

    fn sessions_with_state(&self) -> MetaResult<Vec<String>> {
        strings(self.conn.rows(
            "SELECT session FROM writers UNION SELECT session FROM orphans
             UNION SELECT session FROM held",
            &[],
        )?)
    }

    fn writers_of(&self, session: &str) -> MetaResult<Vec<Ino>> {
        inos(
            self.conn
                .rows("SELECT ino FROM writers WHERE session = $1", &[&session])?,
        )
    }

    fn orphans_of(&self, session: &str) -> MetaResult<Vec<Ino>> {
        inos(
            self.conn
                .rows("SELECT ino FROM orphans WHERE session = $1", &[&session])?,
        )
    }

    fn forget_session(&self, session: &str) -> MetaResult<()> {
        self.conn.exec(
            "WITH h AS (DELETE FROM held WHERE session = $1),
                  w AS (DELETE FROM writers WHERE session = $1)
             DELETE FROM orphans WHERE session = $1",
            &[&session],
        )?;
        Ok(())
    }

    fn all_inodes(&self) -> MetaResult<Vec<(Attr, Ino)>> {
        self.conn
            .rows(concat!("SELECT ", inode_cols!(), " FROM inodes"), &[])?
            .iter()
            .map(|r| Ok((attr(r)?, ino(r, 13)?)))
            .collect()
    }

    fn all_entries(&self) -> MetaResult<Vec<RawEntry>> {
        self.conn
            .rows("SELECT parent, name, ino, kind FROM entries", &[])?
            .iter()
            .map(|r| Ok((ino(r, 0)?, r.try_get(1)?, ino(r, 2)?, int(r, 3)?)))
            .collect()
    }

    fn all_session_rows(&self, table: SessionTable) -> MetaResult<Vec<(Ino, String)>> {
        let sql = match table {
            SessionTable::Writers => "SELECT ino, session FROM writers",
            SessionTable::Orphans => "SELECT ino, session FROM orphans",
        };
        self.conn
            .rows(sql, &[])?
            .iter()
            .map(|r| Ok((ino(r, 0)?, r.try_get(1)?)))
            .collect()
    }

    fn set_entry_kind(&self, parent: Ino, name: &[u8], k: Kind) -> MetaResult<()> {
        self.conn.exec(
            "UPDATE entries SET kind = $3 WHERE parent = $1 AND name = $2",
            &[&i(parent), &name, &k.code()],
        )?;
        Ok(())
    }

    fn set_nlink(&self, n: Ino, nlink: u32) -> MetaResult<()> {
        self.forget(n);
        self.conn.defer(
            "UPDATE inodes SET nlink = $2 WHERE ino = $1",
            args![i(n), i64::from(nlink)],
        )
    }

    fn computed_usage(&self) -> MetaResult<(u64, u64)> {
        let r = self.conn.one(
            "SELECT COALESCE(SUM(CASE WHEN kind IN ($1, $2) THEN size ELSE 0 END), 0)::BIGINT,
                    COUNT(*)
             FROM inodes WHERE ino NOT IN (SELECT ino FROM ghosts)",
            &[&Kind::File.code(), &Kind::Symlink.code()],
        )?;
        Ok((count(&r, 0)?, count(&r, 1)?))
    }

    fn set_usage(&self, bytes: u64, inodes: u64) -> MetaResult<()> {
        if self.writing.get() {
            self.snap(|s| (s.bytes, s.inodes) = (i(bytes), i(inodes)))?;
        }
        self.conn.exec(
            "UPDATE usage SET bytes = $1, inodes = $2 WHERE id = 1",
            &[&i(bytes), &i(inodes)],
        )?;
        Ok(())
    }

    fn gc_pending(&self) -> MetaResult<Vec<Ino>> {
        inos(self.conn.rows("SELECT ino FROM gc", &[])?)
    }

    fn gc_done(&self, n: Ino) -> MetaResult<()> {
        self.conn
            .defer("DELETE FROM gc WHERE ino = $1", args![i(n)])
    }
}
