//! What a session keeps between its statements: the inodes a write transaction (or a read
//! scope) has read, the counters a write read with its BEGIN ([`Snap`]), and inode numbers
//! taken from the sequence ahead of use.

use tokio_postgres::Row;

use crate::meta::{MetaError, MetaResult};
use crate::types::{Attr, Ino};

use super::PgMeta;
use super::conn::Begin;
use super::rows::{attr, count, ino, inos};

/// What every write transaction reads, fetched with its BEGIN: the tenant's usage and
/// limits, whether anything is held, and the directories with a quota. Once the `usage`
/// row is taken no other writer of the tenant runs, so only the transaction itself changes
/// these, and each of its changes amends them here.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Snap {
    pub(super) bytes: i64,
    pub(super) inodes: i64,
    pub(super) reserved: i64,
    pub(super) limits: (u64, u64),
    /// Some `held` row exists (or this transaction wrote one).
    pub(super) held: bool,
    /// `None` once this transaction changed the set: read again.
    pub(super) dir_quotas: Option<Vec<Ino>>,
}

/// How a write transaction opens: it takes the tenant's `usage` row, with what [`Snap`]
/// holds, in the same round trip as its BEGIN and its first request.
pub(super) const BEGIN_WRITE: Begin = Begin {
    begin: "BEGIN",
    query: Some(
        "SELECT u.bytes, u.inodes, u.reserved, COALESCE(q.max_bytes, 0), COALESCE(q.max_inodes, 0),
                EXISTS(SELECT 1 FROM held), ARRAY(SELECT ino FROM dir_quotas)
         FROM usage u LEFT JOIN quotas q ON q.ino = 1 WHERE u.id = 1 FOR UPDATE OF u",
    ),
};

impl Snap {
    pub(super) fn parse(r: &tokio_postgres::Row) -> MetaResult<Snap> {
        let dir_quotas: Vec<i64> = r.try_get(6)?;
        Ok(Snap {
            bytes: r.try_get(0)?,
            inodes: r.try_get(1)?,
            reserved: r.try_get(2)?,
            limits: (
                r.try_get::<_, i64>(3)?.max(0) as u64,
                r.try_get::<_, i64>(4)?.max(0) as u64,
            ),
            held: r.try_get(5)?,
            dir_quotas: Some(dir_quotas.into_iter().map(|n| n as Ino).collect()),
        })
    }
}

impl PgMeta {
    /// The write transaction's [`Snap`], which sends its BEGIN if nothing did yet.
    pub(super) fn snap<T>(&self, f: impl FnOnce(&mut Snap) -> T) -> MetaResult<T> {
        let mut snap = self.snap.borrow_mut();
        if snap.is_none() {
            self.conn.start()?;
            let opened = self.conn.opened();
            let row = opened
                .first()
                .ok_or_else(|| MetaError::Engine("the tenant has no usage row".into()))?;
            *snap = Some(Snap::parse(row)?);
        }
        Ok(f(snap.as_mut().expect("just filled")))
    }

    /// An inode read or written earlier in this write transaction.
    pub(super) fn cached(&self, n: Ino) -> Option<(Attr, Ino)> {
        self.inodes.borrow().get(&n).cloned()
    }

    /// Reads an inode row (with its parent), keeping it for the rest of a write
    /// transaction: no other writer of the tenant runs meanwhile (see `write_op`), so only
    /// this transaction's own changes can make it stale, and each of them amends or drops it.
    pub(super) fn keep(&self, r: &Row) -> MetaResult<Attr> {
        let a = attr(r)?;
        if self.writing.get() || self.reading.get() {
            self.inodes
                .borrow_mut()
                .insert(a.ino, (a.clone(), ino(r, 13)?));
        }
        Ok(a)
    }

    /// Whether any `held` row may exist: in a write transaction its [`Snap`] knows.
    pub(super) fn maybe_held(&self) -> MetaResult<bool> {
        if self.writing.get() {
            return self.snap(|s| s.held);
        }
        Ok(true)
    }

    pub(super) fn dir_quotas_changed(&self) -> MetaResult<()> {
        if self.writing.get() {
            self.snap(|s| s.dir_quotas = None)?;
        }
        Ok(())
    }

    /// A number for a new inode. Numbers come from the table's sequence 64 at a time, one
    /// round trip per 64 creates; a number taken and never used (a failed create, a session
    /// that ends) is just a gap.
    pub(super) fn next_ino(&self) -> MetaResult<Ino> {
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

    pub(super) fn amend(&self, n: Ino, f: impl FnOnce(&mut Attr)) {
        if let Some((a, _)) = self.inodes.borrow_mut().get_mut(&n) {
            f(a);
        }
    }

    pub(super) fn forget(&self, n: Ino) {
        self.inodes.borrow_mut().remove(&n);
    }

    /// Two counts from a one-row query, 0 when there is no row.
    pub(super) fn pair(&self, sql: &'static str) -> MetaResult<(u64, u64)> {
        match self.conn.row(sql, &[])? {
            Some(r) => Ok((count(&r, 0)?, count(&r, 1)?)),
            None => Ok((0, 0)),
        }
    }
}
