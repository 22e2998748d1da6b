//! The tree in SQLite: inodes, names, hard links and extended attributes.

use rusqlite::{OptionalExtension, params};

use crate::meta::{LifecycleTx, MetaResult, NamespaceTx, NewInode};
use crate::time::Nanos;
use crate::types::{Attr, DirEntry, Extent, Ino, Kind};

use super::rows::{attr_from_row, inode_cols};
use super::{SqliteTx, cached};

impl NamespaceTx for SqliteTx {
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
}
