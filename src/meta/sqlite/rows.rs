//! Reading SQLite rows into the core's types, and the statement helpers the engine's
//! modules share.

use rusqlite::{OptionalExtension, Row, params};

use crate::meta::{DirQuota, MetaResult};
use crate::types::{Attr, Kind, ROOT_INO};

use super::{SqliteTx, cached};

/// The columns [`attr_from_row`] reads, as a macro so that statements can be literals: the
/// inode read is the hottest statement, and building its text at every call cost a tenth of
/// a lookup.
macro_rules! inode_cols {
    () => {
        "ino, kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime, crtime, blocks"
    };
}
pub(super) use inode_cols;

/// The columns [`dir_quota_from_row`] reads; a macro for the reason [`inode_cols`] is.
macro_rules! dir_quota_cols {
    () => {
        "ino, max_bytes, max_inodes, bytes, inodes, reserved"
    };
}
pub(super) use dir_quota_cols;

pub(super) fn dir_quota_from_row(r: &Row<'_>) -> rusqlite::Result<DirQuota> {
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

pub(super) fn attr_from_row(r: &Row<'_>) -> rusqlite::Result<Attr> {
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

impl SqliteTx {
    /// Two columns of the tenant's row in `quotas` (its root's), 0 when there is none.
    pub(super) fn root_quota(&self, sql: &str) -> MetaResult<(u64, u64)> {
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
    pub(super) fn set_root_quota(
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
