//! Usage, limits, reservations, directory quotas, rates and metering in SQLite.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use crate::meta::{AccountingTx, DirQuota, MetaResult};
use crate::types::Ino;

use super::rows::{dir_quota_cols, dir_quota_from_row};
use super::{SqliteTx, cached};

impl AccountingTx for SqliteTx {
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
}
