//! The statements of a tenant's metadata in PostgreSQL: [`MetaTx`] over its session. Every
//! column is a BIGINT; numbers the core keeps unsigned are stored as they are in SQLite.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Row;

use crate::meta::{DirQuota, MetaError, MetaResult, MetaTx, NewInode, RawEntry, SessionTable};
use crate::policy::{Entry, Groups, Rights};
use crate::time::Nanos;
use crate::types::{Attr, DirEntry, Extent, Ino, Kind, ROOT_INO};

use super::PgMeta;
use super::conn::args;

macro_rules! inode_cols {
    () => {
        "ino, kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime, crtime, blocks, parent"
    };
}

macro_rules! dir_quota_cols {
    () => {
        "ino, max_bytes, max_inodes, bytes, inodes, reserved"
    };
}

fn int(r: &Row, i: usize) -> MetaResult<i64> {
    Ok(r.try_get::<_, i64>(i)?)
}

/// A count or size: never below 0.
fn count(r: &Row, i: usize) -> MetaResult<u64> {
    Ok(int(r, i)?.max(0) as u64)
}

/// A column the core keeps as a narrower unsigned number.
fn narrow<T: TryFrom<i64>>(r: &Row, i: usize) -> MetaResult<T> {
    let v = int(r, i)?;
    T::try_from(v)
        .map_err(|_| MetaError::Engine(format!("column {i} holds {v}, out of range").into()))
}

fn kind(r: &Row, i: usize) -> MetaResult<Kind> {
    let code = int(r, i)?;
    Kind::from_code(code).ok_or_else(|| MetaError::Engine(format!("unknown kind {code}").into()))
}

fn ino(r: &Row, i: usize) -> MetaResult<Ino> {
    Ok(int(r, i)? as Ino)
}

fn attr(r: &Row) -> MetaResult<Attr> {
    attr_at(r, 0)
}

/// An inode row's attributes from column `at` on (its parent follows them).
fn attr_at(r: &Row, at: usize) -> MetaResult<Attr> {
    Ok(Attr {
        ino: ino(r, at)?,
        kind: kind(r, at + 1)?,
        perm: narrow(r, at + 2)?,
        nlink: narrow(r, at + 3)?,
        uid: narrow(r, at + 4)?,
        gid: narrow(r, at + 5)?,
        size: count(r, at + 6)?,
        rdev: narrow(r, at + 7)?,
        atime: int(r, at + 8)?,
        mtime: int(r, at + 9)?,
        ctime: int(r, at + 10)?,
        crtime: int(r, at + 11)?,
        blocks: count(r, at + 12)?,
    })
}

fn dir_quota(r: &Row) -> MetaResult<DirQuota> {
    Ok(DirQuota {
        ino: ino(r, 0)?,
        max_bytes: count(r, 1)?,
        max_inodes: count(r, 2)?,
        bytes: count(r, 3)?,
        inodes: count(r, 4)?,
        reserved: count(r, 5)?,
    })
}

fn inos(rows: Vec<Row>) -> MetaResult<Vec<Ino>> {
    rows.iter().map(|r| ino(r, 0)).collect()
}

fn strings(rows: Vec<Row>) -> MetaResult<Vec<String>> {
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

fn i(v: u64) -> i64 {
    v as i64
}

impl MetaTx for PgMeta {
    #[cfg(test)]
    fn pragma(&self, _name: &str) -> MetaResult<i64> {
        Err(MetaError::Engine("PostgreSQL has no pragmas".into()))
    }

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

    /// One round trip, which also reads the parent (kept with the rest, for the check that
    /// it is a directory when the name is missing): a join costs the server less than a
    /// second query costs the wire.
    fn lookup_attr(&self, parent: Ino, name: &[u8]) -> MetaResult<Option<Attr>> {
        let sql = "SELECT p.ino, p.kind, p.perm, p.nlink, p.uid, p.gid, p.size, p.rdev,
                          p.atime, p.mtime, p.ctime, p.crtime, p.blocks, p.parent,
                          i.ino, i.kind, i.perm, i.nlink, i.uid, i.gid, i.size, i.rdev,
                          i.atime, i.mtime, i.ctime, i.crtime, i.blocks, i.parent
                   FROM inodes p
                   LEFT JOIN entries e ON e.parent = p.ino AND e.name = $2
                   LEFT JOIN inodes i ON i.ino = e.ino WHERE p.ino = $1";
        let Some(r) = self.conn.row(sql, &[&i(parent), &name])? else {
            return Ok(None);
        };
        self.keep_at(&r, 0)?;
        if r.try_get::<_, Option<i64>>(14)?.is_none() {
            return Ok(None);
        }
        self.keep_at(&r, 14).map(Some)
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

    fn path_of(&self, n: Ino) -> String {
        let mut parts = Vec::new();
        let mut at = n;
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

    fn mark_gc(&self, n: Ino) -> MetaResult<()> {
        self.conn.defer(
            "INSERT INTO gc(ino) VALUES ($1) ON CONFLICT DO NOTHING",
            args![i(n)],
        )
    }

    fn clear_held(&self, n: Ino) -> MetaResult<()> {
        if !self.maybe_held()? {
            return Ok(());
        }
        self.conn
            .defer("DELETE FROM held WHERE ino = $1", args![i(n)])
    }

    fn add_usage(&self, bytes: i64, inodes: i64) -> MetaResult<()> {
        if bytes == 0 && inodes == 0 {
            return Ok(());
        }
        if self.writing.get() {
            self.snap(|s| {
                s.bytes += bytes;
                s.inodes += inodes;
            })?;
        }
        self.conn.defer(
            "UPDATE usage SET bytes = bytes + $1, inodes = inodes + $2 WHERE id = 1",
            args![bytes, inodes],
        )
    }

    fn limits(&self) -> MetaResult<(u64, u64)> {
        if self.writing.get() {
            return self.snap(|s| s.limits);
        }
        self.pair("SELECT max_bytes, max_inodes FROM quotas WHERE ino = 1")
    }

    fn set_limits(&self, max_bytes: Option<u64>, max_inodes: Option<u64>) -> MetaResult<()> {
        let now = self.limits()?;
        if self.writing.get() {
            self.snap(|s| s.limits = (max_bytes.unwrap_or(now.0), max_inodes.unwrap_or(now.1)))?;
        }
        self.conn.exec(
            "INSERT INTO quotas(ino, max_bytes, max_inodes) VALUES (1, $1, $2)
             ON CONFLICT(ino) DO UPDATE SET max_bytes = excluded.max_bytes,
                 max_inodes = excluded.max_inodes",
            &[
                &i(max_bytes.unwrap_or(now.0)),
                &i(max_inodes.unwrap_or(now.1)),
            ],
        )?;
        Ok(())
    }

    fn passthrough_reads(&self) -> MetaResult<bool> {
        Ok(self
            .conn
            .row(
                "SELECT value FROM info WHERE key = 'passthrough_reads'",
                &[],
            )?
            .map(|r| int(&r, 0))
            .transpose()?
            .unwrap_or(0)
            != 0)
    }

    fn set_passthrough_reads(&self, on: bool) -> MetaResult<()> {
        self.conn.exec(
            "INSERT INTO info(key, value) VALUES ('passthrough_reads', $1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            &[&i64::from(on)],
        )?;
        Ok(())
    }

    fn rates(&self) -> MetaResult<(u64, u64)> {
        self.pair("SELECT ops_per_sec, bytes_per_sec FROM quotas WHERE ino = 1")
    }

    fn set_rates(&self, ops: Option<u64>, bytes: Option<u64>) -> MetaResult<()> {
        let now = self.rates()?;
        self.conn.exec(
            "INSERT INTO quotas(ino, ops_per_sec, bytes_per_sec) VALUES (1, $1, $2)
             ON CONFLICT(ino) DO UPDATE SET ops_per_sec = excluded.ops_per_sec,
                 bytes_per_sec = excluded.bytes_per_sec",
            &[&i(ops.unwrap_or(now.0)), &i(bytes.unwrap_or(now.1))],
        )?;
        Ok(())
    }

    fn add_metering(&self, hour: i64, ops: u64, read: u64, written: u64) -> MetaResult<()> {
        self.conn.exec(
            "INSERT INTO metering AS m(hour, ops, bytes_read, bytes_written)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT(hour) DO UPDATE SET ops = m.ops + excluded.ops,
                 bytes_read = m.bytes_read + excluded.bytes_read,
                 bytes_written = m.bytes_written + excluded.bytes_written",
            &[&hour, &i(ops), &i(read), &i(written)],
        )?;
        Ok(())
    }

    fn metering(&self, since: i64) -> MetaResult<Vec<(i64, u64, u64, u64)>> {
        self.conn
            .rows(
                "SELECT hour, ops, bytes_read, bytes_written FROM metering WHERE hour >= $1
                 ORDER BY hour",
                &[&since],
            )?
            .iter()
            .map(|r| Ok((int(r, 0)?, count(r, 1)?, count(r, 2)?, count(r, 3)?)))
            .collect()
    }

    fn reserved(&self) -> MetaResult<u64> {
        if self.writing.get() {
            return self.snap(|s| s.reserved.max(0) as u64);
        }
        count(
            &self
                .conn
                .one("SELECT reserved FROM usage WHERE id = 1", &[])?,
            0,
        )
    }

    fn add_reserved(&self, bytes: i64) -> MetaResult<()> {
        if bytes == 0 {
            return Ok(());
        }
        if self.writing.get() {
            self.snap(|s| s.reserved = (s.reserved + bytes).max(0))?;
        }
        self.conn.defer(
            "UPDATE usage SET reserved = GREATEST(0, reserved + $1) WHERE id = 1",
            args![bytes],
        )
    }

    fn held(&self, n: Ino, session: &str) -> MetaResult<u64> {
        if !self.maybe_held()? {
            return Ok(0);
        }
        Ok(self
            .conn
            .row(
                "SELECT bytes FROM held WHERE ino = $1 AND session = $2",
                &[&i(n), &session],
            )?
            .map(|r| count(&r, 0))
            .transpose()?
            .unwrap_or(0))
    }

    fn set_held(&self, n: Ino, session: &str, bytes: u64) -> MetaResult<()> {
        if self.writing.get() && bytes > 0 {
            self.snap(|s| s.held = true)?;
        }
        if bytes == 0 {
            self.conn.defer(
                "DELETE FROM held WHERE ino = $1 AND session = $2",
                args![i(n), session.to_string()],
            )
        } else {
            self.conn.defer(
                "INSERT INTO held(ino, session, bytes) VALUES ($1, $2, $3)
                 ON CONFLICT(ino, session) DO UPDATE SET bytes = excluded.bytes",
                args![i(n), session.to_string(), i(bytes)],
            )
        }
    }

    fn held_total(&self, n: Ino) -> MetaResult<u64> {
        if !self.maybe_held()? {
            return Ok(0);
        }
        count(
            &self.conn.one(
                "SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM held WHERE ino = $1",
                &[&i(n)],
            )?,
            0,
        )
    }

    fn held_by(&self, session: &str) -> MetaResult<Vec<(Ino, u64)>> {
        self.conn
            .rows(
                "SELECT ino, bytes FROM held WHERE session = $1",
                &[&session],
            )?
            .iter()
            .map(|r| Ok((ino(r, 0)?, count(r, 1)?)))
            .collect()
    }

    fn held_for(&self, n: Ino) -> MetaResult<Vec<(String, u64)>> {
        self.conn
            .rows("SELECT session, bytes FROM held WHERE ino = $1", &[&i(n)])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, count(r, 1)?)))
            .collect()
    }

    fn all_held(&self) -> MetaResult<HashMap<Ino, u64>> {
        self.conn
            .rows("SELECT ino, SUM(bytes)::BIGINT FROM held GROUP BY ino", &[])?
            .iter()
            .map(|r| Ok((ino(r, 0)?, count(r, 1)?)))
            .collect()
    }

    fn reserving_sessions(&self) -> MetaResult<Vec<String>> {
        strings(self.conn.rows("SELECT DISTINCT session FROM held", &[])?)
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

    fn has_dir_quotas(&self) -> MetaResult<bool> {
        if self.writing.get()
            && let Some(any) = self.snap(|s| s.dir_quotas.as_ref().map(|q| !q.is_empty()))?
        {
            return Ok(any);
        }
        Ok(self
            .conn
            .one("SELECT EXISTS(SELECT 1 FROM dir_quotas)", &[])?
            .try_get(0)?)
    }

    fn dir_quota_inos(&self) -> MetaResult<Vec<Ino>> {
        if self.writing.get()
            && let Some(list) = self.snap(|s| s.dir_quotas.clone())?
        {
            return Ok(list);
        }
        inos(self.conn.rows("SELECT ino FROM dir_quotas", &[])?)
    }

    fn dir_quota(&self, n: Ino) -> MetaResult<Option<DirQuota>> {
        self.conn
            .row(
                concat!(
                    "SELECT ",
                    dir_quota_cols!(),
                    " FROM dir_quotas WHERE ino = $1"
                ),
                &[&i(n)],
            )?
            .as_ref()
            .map(dir_quota)
            .transpose()
    }

    fn all_dir_quotas(&self) -> MetaResult<Vec<DirQuota>> {
        self.conn
            .rows(
                concat!(
                    "SELECT ",
                    dir_quota_cols!(),
                    " FROM dir_quotas ORDER BY ino"
                ),
                &[],
            )?
            .iter()
            .map(dir_quota)
            .collect()
    }

    fn put_dir_quota(&self, n: Ino, max_bytes: u64, max_inodes: u64) -> MetaResult<()> {
        self.dir_quotas_changed()?;
        self.conn.exec(
            "INSERT INTO dir_quotas(ino, max_bytes, max_inodes) VALUES ($1, $2, $3)
             ON CONFLICT(ino) DO UPDATE SET max_bytes = excluded.max_bytes,
                 max_inodes = excluded.max_inodes",
            &[&i(n), &i(max_bytes), &i(max_inodes)],
        )?;
        Ok(())
    }

    fn set_dir_usage(&self, n: Ino, bytes: u64, inodes: u64, reserved: u64) -> MetaResult<()> {
        self.conn.defer(
            "UPDATE dir_quotas SET bytes = $2, inodes = $3, reserved = $4 WHERE ino = $1",
            args![i(n), i(bytes), i(inodes), i(reserved)],
        )
    }

    fn add_dir_usage(&self, n: Ino, bytes: i64, inodes: i64, reserved: i64) -> MetaResult<()> {
        self.conn.defer(
            "UPDATE dir_quotas SET bytes = GREATEST(0, bytes + $2),
                 inodes = GREATEST(0, inodes + $3), reserved = GREATEST(0, reserved + $4)
             WHERE ino = $1",
            args![i(n), bytes, inodes, reserved],
        )
    }

    fn remove_dir_quota(&self, n: Ino) -> MetaResult<bool> {
        self.dir_quotas_changed()?;
        Ok(self
            .conn
            .exec("DELETE FROM dir_quotas WHERE ino = $1", &[&i(n)])?
            > 0)
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

    fn all_links(&self) -> MetaResult<Vec<(Ino, Ino, u32)>> {
        self.conn
            .rows("SELECT ino, parent, n FROM links ORDER BY ino, parent", &[])?
            .iter()
            .map(|r| Ok((ino(r, 0)?, ino(r, 1)?, narrow(r, 2)?)))
            .collect()
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

    fn usage(&self) -> MetaResult<(u64, u64)> {
        if self.writing.get() {
            return self.snap(|s| (s.bytes.max(0) as u64, s.inodes.max(0) as u64));
        }
        self.pair("SELECT bytes, inodes FROM usage WHERE id = 1")
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

    /// The explicit entries and the owner in one round trip: the owner comes as a row of
    /// rights -1.
    fn acl(&self, n: Ino) -> MetaResult<Vec<Entry>> {
        let rows = self.conn.rows(
            "SELECT subject, rights FROM acl WHERE ino = $1
             UNION ALL SELECT owner, -1 FROM inodes WHERE ino = $1 AND owner IS NOT NULL",
            &[&i(n)],
        )?;
        let mut entries = Vec::with_capacity(rows.len());
        let mut owner = None;
        for r in &rows {
            let subject: String = r.try_get(0)?;
            match int(r, 1)? {
                -1 => owner = Some(subject),
                bits => entries.push(Entry {
                    subject,
                    rights: Rights::from_bits(bits as u8),
                }),
            }
        }
        entries.sort_by(|a, b| a.subject.cmp(&b.subject));
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

    fn set_acl(&self, n: Ino, subject: &str, rights: Rights) -> MetaResult<()> {
        self.conn.exec(
            "WITH o AS (UPDATE inodes SET owner = NULL WHERE ino = $1 AND owner = $2)
             INSERT INTO acl(ino, subject, rights) VALUES ($1, $2, $3)
             ON CONFLICT(ino, subject) DO UPDATE SET rights = excluded.rights",
            &[&i(n), &subject, &i64::from(rights.bits())],
        )?;
        Ok(())
    }

    fn remove_acl(&self, n: Ino, subject: &str) -> MetaResult<bool> {
        let r = self.conn.one(
            "WITH e AS (DELETE FROM acl WHERE ino = $1 AND subject = $2 RETURNING 1),
                  o AS (UPDATE inodes SET owner = NULL WHERE ino = $1 AND owner = $2 RETURNING 1)
             SELECT (SELECT COUNT(*) FROM e) + (SELECT COUNT(*) FROM o)",
            &[&i(n), &subject],
        )?;
        Ok(int(&r, 0)? > 0)
    }

    fn acl_subjects(&self) -> MetaResult<Vec<String>> {
        strings(self.conn.rows(
            "SELECT subject FROM acl UNION SELECT owner FROM inodes WHERE owner IS NOT NULL
             ORDER BY 1",
            &[],
        )?)
    }

    fn groups(&self) -> MetaResult<Groups> {
        let pairs = self
            .conn
            .rows("SELECT grp, member FROM groups", &[])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<MetaResult<Vec<(String, String)>>>()?;
        Ok(Groups::from_pairs(pairs))
    }

    fn add_member(&self, group: &str, member: &str) -> MetaResult<()> {
        self.conn.exec(
            "INSERT INTO groups(grp, member) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&group, &member],
        )?;
        Ok(())
    }

    fn remove_member(&self, group: &str, member: &str) -> MetaResult<bool> {
        Ok(self.conn.exec(
            "DELETE FROM groups WHERE grp = $1 AND member = $2",
            &[&group, &member],
        )? > 0)
    }

    fn policy_version(&self) -> MetaResult<i64> {
        int(
            &self
                .conn
                .one("SELECT value FROM info WHERE key = 'policy_version'", &[])?,
            0,
        )
    }

    fn tree_version(&self) -> MetaResult<i64> {
        int(
            &self
                .conn
                .one("SELECT value FROM info WHERE key = 'tree_version'", &[])?,
            0,
        )
    }

    fn bump_tree(&self) -> MetaResult<()> {
        self.conn.defer(
            "UPDATE info SET value = value + 1 WHERE key = 'tree_version'",
            args![],
        )
    }

    fn bump_policy(&self) -> MetaResult<()> {
        self.conn.defer(
            "UPDATE info SET value = value + 1 WHERE key = 'policy_version'",
            args![],
        )
    }

    fn gc_pending(&self) -> MetaResult<Vec<Ino>> {
        inos(self.conn.rows("SELECT ino FROM gc", &[])?)
    }

    fn gc_done(&self, n: Ino) -> MetaResult<()> {
        self.conn
            .defer("DELETE FROM gc WHERE ino = $1", args![i(n)])
    }
}

impl PgMeta {
    /// An inode read or written earlier in this write transaction.
    fn cached(&self, n: Ino) -> Option<(Attr, Ino)> {
        self.inodes.borrow().get(&n).cloned()
    }

    /// Reads an inode row (with its parent), keeping it for the rest of a write
    /// transaction: no other writer of the tenant runs meanwhile (see `write_op`), so only
    /// this transaction's own changes can make it stale, and each of them amends or drops it.
    fn keep(&self, r: &Row) -> MetaResult<Attr> {
        self.keep_at(r, 0)
    }

    fn keep_at(&self, r: &Row, at: usize) -> MetaResult<Attr> {
        let a = attr_at(r, at)?;
        if self.writing.get() || self.reading.get() {
            self.inodes
                .borrow_mut()
                .insert(a.ino, (a.clone(), ino(r, at + 13)?));
        }
        Ok(a)
    }

    /// Whether any `held` row may exist: in a write transaction its [`Snap`] knows.
    fn maybe_held(&self) -> MetaResult<bool> {
        if self.writing.get() {
            return self.snap(|s| s.held);
        }
        Ok(true)
    }

    fn dir_quotas_changed(&self) -> MetaResult<()> {
        if self.writing.get() {
            self.snap(|s| s.dir_quotas = None)?;
        }
        Ok(())
    }

    /// A number for a new inode. Numbers come from the table's sequence 64 at a time, one
    /// round trip per 64 creates; a number taken and never used (a failed create, a session
    /// that ends) is just a gap.
    fn next_ino(&self) -> MetaResult<Ino> {
        if let Some(n) = self.free_inos.borrow_mut().pop() {
            return Ok(n);
        }
        let mut fresh = inos(self.conn.rows(
            "SELECT nextval(pg_get_serial_sequence('inodes', 'ino'))
             FROM generate_series(1, 64)",
            &[],
        )?)?;
        fresh.sort_unstable_by(|a, b| b.cmp(a));
        let n = fresh.pop().expect("64 numbers");
        *self.free_inos.borrow_mut() = fresh;
        Ok(n)
    }

    fn amend(&self, n: Ino, f: impl FnOnce(&mut Attr)) {
        if let Some((a, _)) = self.inodes.borrow_mut().get_mut(&n) {
            f(a);
        }
    }

    fn forget(&self, n: Ino) {
        self.inodes.borrow_mut().remove(&n);
    }

    /// Two counts from a one-row query, 0 when there is no row.
    fn pair(&self, sql: &'static str) -> MetaResult<(u64, u64)> {
        match self.conn.row(sql, &[])? {
            Some(r) => Ok((count(&r, 0)?, count(&r, 1)?)),
            None => Ok((0, 0)),
        }
    }
}
