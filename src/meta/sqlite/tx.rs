//! The statements of a tenant's metadata in SQLite: [`MetaTx`] over one connection.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Row, params};

use crate::meta::{DirQuota, MetaResult, MetaTx, NewInode, RawEntry, SessionTable};
use crate::policy::{Entry, Groups, Rights};
use crate::time::Nanos;
use crate::types::{Attr, DirEntry, Extent, Ino, Kind, ROOT_INO};

use super::{SqliteTx, cached};

/// The columns [`attr_from_row`] reads, as a macro so that statements can be literals: the
/// inode read is the hottest statement, and building its text at every call cost a tenth of
/// a lookup.
macro_rules! inode_cols {
    () => {
        "ino, kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime, crtime, blocks"
    };
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
