//! Usage, limits, reservations, directory quotas, rates and metering in PostgreSQL. In
//! a write transaction the counters come from its `Snap` (see `cache`).

use std::collections::HashMap;

use crate::meta::{AccountingTx, DirQuota, MetaResult};
use crate::types::Ino;

use super::PgMeta;
use super::conn::args;
use super::rows::{count, dir_quota, dir_quota_cols, i, ino, inos, int, strings};

impl AccountingTx for PgMeta {
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

    fn usage(&self) -> MetaResult<(u64, u64)> {
        if self.writing.get() {
            return self.snap(|s| (s.bytes.max(0) as u64, s.inodes.max(0) as u64));
        }
        self.pair("SELECT bytes, inodes FROM usage WHERE id = 1")
    }
}
