//! Reading PostgreSQL rows into the core's types. Every column is a BIGINT; numbers the
//! core keeps unsigned are stored as they are in SQLite.

use tokio_postgres::Row;

use crate::meta::{DirQuota, MetaError, MetaResult};
use crate::types::{Attr, Ino, Kind};

macro_rules! inode_cols {
    () => {
        "ino, kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime, crtime, blocks, parent"
    };
}
pub(super) use inode_cols;

macro_rules! dir_quota_cols {
    () => {
        "ino, max_bytes, max_inodes, bytes, inodes, reserved"
    };
}
pub(super) use dir_quota_cols;

pub(super) fn int(r: &Row, i: usize) -> MetaResult<i64> {
    Ok(r.try_get::<_, i64>(i)?)
}

/// A count or size: never below 0.
pub(super) fn count(r: &Row, i: usize) -> MetaResult<u64> {
    Ok(int(r, i)?.max(0) as u64)
}

/// A column the core keeps as a narrower unsigned number.
pub(super) fn narrow<T: TryFrom<i64>>(r: &Row, i: usize) -> MetaResult<T> {
    let v = int(r, i)?;
    T::try_from(v)
        .map_err(|_| MetaError::Engine(format!("column {i} holds {v}, out of range").into()))
}

pub(super) fn kind(r: &Row, i: usize) -> MetaResult<Kind> {
    let code = int(r, i)?;
    Kind::from_code(code).ok_or_else(|| MetaError::Engine(format!("unknown kind {code}").into()))
}

pub(super) fn ino(r: &Row, i: usize) -> MetaResult<Ino> {
    Ok(int(r, i)? as Ino)
}

pub(super) fn attr(r: &Row) -> MetaResult<Attr> {
    Ok(Attr {
        ino: ino(r, 0)?,
        kind: kind(r, 1)?,
        perm: narrow(r, 2)?,
        nlink: narrow(r, 3)?,
        uid: narrow(r, 4)?,
        gid: narrow(r, 5)?,
        size: count(r, 6)?,
        rdev: narrow(r, 7)?,
        atime: int(r, 8)?,
        mtime: int(r, 9)?,
        ctime: int(r, 10)?,
        crtime: int(r, 11)?,
        blocks: count(r, 12)?,
    })
}

pub(super) fn dir_quota(r: &Row) -> MetaResult<DirQuota> {
    Ok(DirQuota {
        ino: ino(r, 0)?,
        max_bytes: count(r, 1)?,
        max_inodes: count(r, 2)?,
        bytes: count(r, 3)?,
        inodes: count(r, 4)?,
        reserved: count(r, 5)?,
    })
}

pub(super) fn inos(rows: Vec<Row>) -> MetaResult<Vec<Ino>> {
    rows.iter().map(|r| ino(r, 0)).collect()
}

pub(super) fn strings(rows: Vec<Row>) -> MetaResult<Vec<String>> {
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

pub(super) fn i(v: u64) -> i64 {
    v as i64
}
