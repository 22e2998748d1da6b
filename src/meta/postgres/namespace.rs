//! The tree in PostgreSQL: inodes, names, hard links and extended attributes.

use std::collections::HashMap;

use crate::meta::{MetaResult, NamespaceTx, NewInode};
use crate::time::Nanos;
use crate::types::{Attr, DirEntry, Extent, Ino, Kind};

use super::PgMeta;
use super::conn::args;
use super::rows::{count, i, ino, inode_cols, kind, narrow};

impl NamespaceTx for PgMeta {
    fn inode(&self, n: Ino) -> MetaResult<Option<Attr>> {
        if let Some((a, _)) = self.cached(n) {
            return Ok(Some(a));
        }
        self.conn
            .row(
                concat!("SELECT ", inode_cols!(), " FROM inodes WHERE ino = $1"),
                &[&i(n)],
            )?
            .as_ref()
            .map(|r| self.keep(r))
            .transpose()
    }

    fn inodes(&self, inos: &[Ino]) -> MetaResult<HashMap<Ino, Attr>> {
        let ids: Vec<i64> = inos.iter().map(|&n| i(n)).collect();
        self.conn
            .rows(
                concat!("SELECT ", inode_cols!(), " FROM inodes WHERE ino = ANY($1)"),
                &[&ids],
            )?
            .iter()
            .map(|r| self.keep(r).map(|a| (a.ino, a)))
            .collect()
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> MetaResult<Option<(Ino, Kind)>> {
        self.conn
            .row(
                "SELECT ino, kind FROM entries WHERE parent = $1 AND name = $2",
                &[&i(parent), &name],
            )?
            .map(|r| Ok((ino(&r, 0)?, kind(&r, 1)?)))
            .transpose()
    }

    /// One round trip: the name's inode, or, when the name is missing, the parent's row
    /// instead (kept, for the check that it is a directory), told apart by its number (no
    /// name leads to its own parent). The parent is read only on a miss: a directory that
    /// just took thousands of creates has as many dead versions of its row to step over
    /// until vacuum, and reading it on every hit made a cold `stat` of its files 2× slower.
    /// The number is a scalar subquery, not a join, so the plan is two key lookups whatever
    /// the statistics say: after autovacuum had seen the tables empty, the planner joined
    /// by walking the whole inode index for every lookup, and a cold `stat` of 5,000 files
    /// took 2.3× as long.
    fn lookup_attr(&self, parent: Ino, name: &[u8]) -> MetaResult<Option<Attr>> {
        let sql = concat!(
            "SELECT ",
            inode_cols!(),
            " FROM inodes
             WHERE ino = COALESCE((SELECT ino FROM entries WHERE parent = $1 AND name = $2), $1)"
        );
        let Some(r) = self.conn.row(sql, &[&i(parent), &name])? else {
            return Ok(None);
        };
        let a = self.keep(&r)?;
        Ok((a.ino != parent).then_some(a))
    }

    /// The number comes from the session's stock (see `PgMeta::next_ino`), so the row can
    /// wait for the COMMIT like any other change.
    fn insert_inode(&self, n: &NewInode<'_>) -> MetaResult<Ino> {
        let nlink: u32 = if n.kind == Kind::Dir { 2 } else { 1 };
        let size = n.target.map_or(0, |t| t.len() as u64);
        let ino = self.next_ino()?;
        self.conn.defer(
            "INSERT INTO inodes(ino, kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime,
                                crtime, parent, target, owner)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $9, $10, $11, $12)",
            args![
                i(ino),
                n.kind.code(),
                i64::from(n.perm),
                i64::from(nlink),
                i64::from(n.uid),
                i64::from(n.gid),
                i(size),
                i64::from(n.rdev),
                n.now,
                i(n.parent),
                n.target.map(<[u8]>::to_vec),
                n.owner.map(str::to_string),
            ],
        )?;
        let a = Attr {
            ino,
            kind: n.kind,
            perm: n.perm,
            nlink,
            uid: n.uid,
            gid: n.gid,
            size,
            rdev: n.rdev,
            atime: n.now,
            mtime: n.now,
            ctime: n.now,
            crtime: n.now,
            blocks: 0,
        };
        if self.writing.get() {
            self.inodes.borrow_mut().insert(ino, (a, n.parent));
        }
        Ok(ino)
    }

    fn update_inode(&self, a: &Attr) -> MetaResult<()> {
        self.forget(a.ino);
        self.conn.defer(
            "UPDATE inodes SET perm = $2, uid = $3, gid = $4, atime = $5, mtime = $6, ctime = $7
             WHERE ino = $1",
            args![
                i(a.ino),
                i64::from(a.perm),
                i64::from(a.uid),
                i64::from(a.gid),
                a.atime,
                a.mtime,
                a.ctime
            ],
        )
    }

    fn touch(&self, n: Ino, now: Nanos) -> MetaResult<()> {
        self.amend(n, |a| (a.mtime, a.ctime) = (now, now));
        self.conn.defer(
            "UPDATE inodes SET mtime = $2, ctime = $2 WHERE ino = $1",
            args![i(n), now],
        )
    }

    fn set_ctime(&self, n: Ino, now: Nanos) -> MetaResult<()> {
        self.amend(n, |a| a.ctime = now);
        self.conn.defer(
            "UPDATE inodes SET ctime = $2 WHERE ino = $1",
            args![i(n), now],
        )
    }

    fn add_nlink(&self, n: Ino, delta: i64) -> MetaResult<()> {
        self.forget(n);
        self.conn.defer(
            "UPDATE inodes SET nlink = nlink + $2 WHERE ino = $1",
            args![i(n), delta],
        )
    }

    fn set_parent(&self, n: Ino, parent: Ino) -> MetaResult<()> {
        self.forget(n);
        self.conn.defer(
            "UPDATE inodes SET parent = $2 WHERE ino = $1",
            args![i(n), i(parent)],
        )
    }

    fn dir_parent(&self, n: Ino) -> MetaResult<Option<Ino>> {
        if let Some((_, parent)) = self.cached(n) {
            return Ok(Some(parent));
        }
        self.conn
            .row("SELECT parent FROM inodes WHERE ino = $1", &[&i(n)])?
            .map(|r| ino(&r, 0))
            .transpose()
    }

    fn set_size(&self, n: Ino, extent: Extent, mtime: Nanos, ctime: Nanos) -> MetaResult<bool> {
        self.forget(n);
        Ok(self.conn.exec(
            "UPDATE inodes SET size = $2, blocks = $3, mtime = $4, ctime = $5
             WHERE ino = $1 AND NOT EXISTS (SELECT 1 FROM ghosts WHERE ino = $1)",
            &[&i(n), &i(extent.len), &i(extent.blocks), &mtime, &ctime],
        )? > 0)
    }

    fn symlink_target(&self, n: Ino) -> MetaResult<Option<Vec<u8>>> {
        Ok(self
            .conn
            .row("SELECT target FROM inodes WHERE ino = $1", &[&i(n)])?
            .map(|r| r.try_get::<_, Option<Vec<u8>>>(0))
            .transpose()?
            .flatten())
    }

    fn name_in(&self, parent: Ino, n: Ino) -> MetaResult<Option<Vec<u8>>> {
        Ok(self
            .conn
            .row(
                "SELECT name FROM entries WHERE parent = $1 AND ino = $2 LIMIT 1",
                &[&i(parent), &i(n)],
            )?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    fn insert_entry(&self, parent: Ino, name: &[u8], n: Ino, k: Kind) -> MetaResult<()> {
        self.conn.defer(
            "INSERT INTO entries(parent, name, ino, kind) VALUES ($1, $2, $3, $4)",
            args![i(parent), name.to_vec(), i(n), k.code()],
        )
    }

    fn delete_entry(&self, parent: Ino, name: &[u8]) -> MetaResult<()> {
        self.conn.defer(
            "DELETE FROM entries WHERE parent = $1 AND name = $2",
            args![i(parent), name.to_vec()],
        )
    }

    fn repoint_entry(&self, parent: Ino, name: &[u8], n: Ino, k: Kind) -> MetaResult<()> {
        self.conn.defer(
            "UPDATE entries SET ino = $3, kind = $4 WHERE parent = $1 AND name = $2",
            args![i(parent), name.to_vec(), i(n), k.code()],
        )
    }

    fn move_entry(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
    ) -> MetaResult<()> {
        self.conn.defer(
            "UPDATE entries SET parent = $3, name = $4 WHERE parent = $1 AND name = $2",
            args![i(parent), name.to_vec(), i(new_parent), new_name.to_vec()],
        )
    }

    fn has_entries(&self, dir: Ino) -> MetaResult<bool> {
        Ok(self
            .conn
            .one(
                "SELECT EXISTS(SELECT 1 FROM entries WHERE parent = $1)",
                &[&i(dir)],
            )?
            .try_get(0)?)
    }

    /// Sorted here rather than by the server: its collation of BYTEA is byte order too, but
    /// the core's order must not depend on a server setting.
    fn list(&self, dir: Ino) -> MetaResult<Vec<DirEntry>> {
        let mut entries = self
            .conn
            .rows(
                "SELECT name, ino, kind FROM entries WHERE parent = $1",
                &[&i(dir)],
            )?
            .iter()
            .map(|r| {
                Ok(DirEntry {
                    cookie: 0,
                    name: r.try_get(0)?,
                    ino: ino(r, 1)?,
                    kind: kind(r, 2)?,
                    attr: None,
                })
            })
            .collect::<MetaResult<Vec<DirEntry>>>()?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Nine deletes and the gc row, in one statement.
    fn delete_inode(&self, n: Ino) -> MetaResult<()> {
        self.forget(n);
        if self.writing.get()
            && self.snap(|s| s.dir_quotas.as_ref().is_none_or(|q| q.contains(&n)))?
        {
            self.dir_quotas_changed()?;
        }
        self.conn.defer(
            "WITH i AS (DELETE FROM inodes WHERE ino = $1),
                  x AS (DELETE FROM xattrs WHERE ino = $1),
                  w AS (DELETE FROM writers WHERE ino = $1),
                  o AS (DELETE FROM orphans WHERE ino = $1),
                  g AS (DELETE FROM ghosts WHERE ino = $1),
                  a AS (DELETE FROM acl WHERE ino = $1),
                  l AS (DELETE FROM links WHERE ino = $1),
                  h AS (DELETE FROM held WHERE ino = $1),
                  q AS (DELETE FROM dir_quotas WHERE ino = $1)
             INSERT INTO gc(ino) VALUES ($1) ON CONFLICT DO NOTHING",
            args![i(n)],
        )
    }

    fn set_atime_if_older(&self, n: Ino, atime: Nanos) -> MetaResult<()> {
        self.forget(n);
        self.conn.defer(
            "UPDATE inodes SET atime = $2 WHERE ino = $1 AND atime < $2",
            args![i(n), atime],
        )
    }

    fn placement(&self, n: Ino) -> MetaResult<Option<(Kind, u32, Ino)>> {
        self.conn
            .row(
                "SELECT kind, nlink, parent FROM inodes WHERE ino = $1",
                &[&i(n)],
            )?
            .map(|r| Ok((kind(&r, 0)?, narrow(&r, 1)?, ino(&r, 2)?)))
            .transpose()
    }

    fn link_parents(&self, n: Ino) -> MetaResult<Vec<(Ino, u32)>> {
        self.conn
            .rows("SELECT parent, n FROM links WHERE ino = $1", &[&i(n)])?
            .iter()
            .map(|r| Ok((ino(r, 0)?, narrow(r, 1)?)))
            .collect()
    }

    /// Two statements, as one statement cannot both change a row and delete it.
    fn add_link(&self, n: Ino, parent: Ino, delta: i64) -> MetaResult<()> {
        let (n, parent) = (i(n), i(parent));
        self.conn.defer(
            "INSERT INTO links AS l(ino, parent, n) VALUES ($1, $2, $3)
             ON CONFLICT(ino, parent) DO UPDATE SET n = l.n + excluded.n",
            args![n, parent, delta],
        )?;
        self.conn.defer(
            "DELETE FROM links WHERE ino = $1 AND parent = $2 AND n <= 0",
            args![n, parent],
        )
    }

    fn clear_links(&self, n: Ino) -> MetaResult<()> {
        self.conn
            .defer("DELETE FROM links WHERE ino = $1", args![i(n)])
    }

    fn subtree(&self, dir: Ino) -> MetaResult<Vec<(Ino, Kind, u32, u64)>> {
        self.conn
            .rows(
                "WITH RECURSIVE sub(ino) AS (
                     SELECT $1::BIGINT
                     UNION SELECT e.ino FROM entries e JOIN sub s ON e.parent = s.ino
                 )
                 SELECT i.ino, i.kind, i.nlink, i.size FROM sub JOIN inodes i ON i.ino = sub.ino
                 ORDER BY i.ino = $1 DESC",
                &[&i(dir)],
            )?
            .iter()
            .map(|r| Ok((ino(r, 0)?, kind(r, 1)?, narrow(r, 2)?, count(r, 3)?)))
            .collect()
    }

    fn xattr(&self, n: Ino, name: &[u8]) -> MetaResult<Option<Vec<u8>>> {
        Ok(self
            .conn
            .row(
                "SELECT value FROM xattrs WHERE ino = $1 AND name = $2",
                &[&i(n), &name],
            )?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    fn set_xattr(&self, n: Ino, name: &[u8], value: &[u8]) -> MetaResult<()> {
        self.conn.defer(
            "INSERT INTO xattrs(ino, name, value) VALUES ($1, $2, $3)
             ON CONFLICT(ino, name) DO UPDATE SET value = excluded.value",
            args![i(n), name.to_vec(), value.to_vec()],
        )
    }

    fn remove_xattr(&self, n: Ino, name: &[u8]) -> MetaResult<bool> {
        Ok(self.conn.exec(
            "DELETE FROM xattrs WHERE ino = $1 AND name = $2",
            &[&i(n), &name],
        )? > 0)
    }

    fn xattr_names(&self, n: Ino) -> MetaResult<Vec<Vec<u8>>> {
        let mut names = self
            .conn
            .rows("SELECT name FROM xattrs WHERE ino = $1", &[&i(n)])?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<Vec<u8>>, _>>()?;
        names.sort();
        Ok(names)
    }
}
