//! The store's disk is shared by every tenant, and most tenants have no byte limit, so one
//! of them could fill it: then SQLite cannot commit even a delete, and no tenant can mount.
//! As ext4 keeps blocks for root, a reserve of the disk stays out of tenants' reach: growth
//! (writes, allocation, new names) stops with `ENOSPC` at its edge, and deletes, mounts and
//! the admin CLI live on in it.
//!
//! Measuring free space costs a `statvfs`, too much for every write. A measure grants a
//! budget of an eighth of the room above the reserve, good for a second; writes draw on it
//! without a system call and measure again when it runs out or expires. Near the edge the
//! budget is small and every write measures. Mounts draw apart, so several busy mounts can
//! overshoot the edge by their budgets together: an eighth of the room each, at most.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::objects::Space;
use crate::time::{Nanos, now_nanos};

use super::{FsError, FsResult};

const MIB: u64 = 1 << 20;
/// The reserve is this share of the disk...
const RESERVE_PERCENT: u64 = 2;
/// ...but no less than this (deletes and mounts need a few pages of SQLite journal)...
const RESERVE_MIN: u64 = 4 * MIB;
/// ...and no more than this (2% of a large disk is far more than any delete needs).
const RESERVE_MAX: u64 = 1024 * MIB;
/// Host inodes kept the same way (each object takes one): a share, clamped.
const FILES_RESERVE_PERCENT: u64 = 1;
const FILES_RESERVE_MIN: u64 = 256;
const FILES_RESERVE_MAX: u64 = 65_536;
/// How long a measure's budget lasts: other mounts and tenants use the disk too.
const BUDGET_LIFE: Nanos = 1_000_000_000;
/// What a new name or attribute is counted as taking.
pub(super) const METADATA: u64 = 4096;

/// Bytes and host inodes of a disk that tenant growth may not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserve {
    pub bytes: u64,
    pub files: u64,
}

impl Reserve {
    pub fn of(space: &Space) -> Reserve {
        let share = |total: u64, pct: u64, min: u64, max: u64| (total / 100 * pct).clamp(min, max);
        Reserve {
            bytes: share(space.total_bytes, RESERVE_PERCENT, RESERVE_MIN, RESERVE_MAX),
            files: share(
                space.total_files,
                FILES_RESERVE_PERCENT,
                FILES_RESERVE_MIN,
                FILES_RESERVE_MAX,
            ),
        }
    }

    /// What tenants may still take of `space`: (bytes, host inodes).
    pub fn room(&self, space: &Space) -> (u64, u64) {
        (
            space.avail_bytes.saturating_sub(self.bytes),
            space.avail_files.saturating_sub(self.files),
        )
    }
}

/// One mount's view of the room left above the reserve.
#[derive(Default)]
pub(super) struct Room {
    /// Bytes that may be taken before measuring again; below zero, measure.
    budget: AtomicI64,
    /// When the budget was granted.
    granted_at: AtomicU64,
    /// Serializes measures, so a burst of writes at the edge measures once each, in turn;
    /// holds whether the last measure found the edge, so that is logged once per visit.
    measuring: Mutex<bool>,
}

impl Room {
    /// Takes `want` bytes of room, measuring the disk when the budget does not cover them;
    /// `NoSpace` when they would reach into the reserve.
    pub(super) fn take(&self, want: u64, measure: impl Fn() -> FsResult<Space>) -> FsResult<()> {
        let want = want.min(i64::MAX as u64) as i64;
        let fresh = now_nanos().saturating_sub(self.granted_at.load(Ordering::Relaxed) as i64)
            < BUDGET_LIFE;
        if fresh && self.budget.fetch_sub(want, Ordering::Relaxed) >= want {
            return Ok(());
        }
        let mut at_edge = self.measuring.lock();
        let space = measure()?;
        let reserve = Reserve::of(&space);
        let (bytes, files) = reserve.room(&space);
        let bytes = bytes.min(i64::MAX as u64) as i64;
        if files == 0 || bytes < want {
            self.budget.store(0, Ordering::Relaxed);
            if !*at_edge {
                tracing::warn!(
                    avail_bytes = space.avail_bytes,
                    reserve_bytes = reserve.bytes,
                    avail_files = space.avail_files,
                    reserve_files = reserve.files,
                    "the store's disk is full to its reserve; growth gets ENOSPC"
                );
            }
            *at_edge = true;
            return Err(FsError::NoSpace);
        }
        *at_edge = false;
        self.budget.store((bytes - want) / 8, Ordering::Relaxed);
        self.granted_at
            .store(now_nanos().max(0) as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn disk(total: u64, avail: u64) -> Space {
        Space {
            total_bytes: total,
            avail_bytes: avail,
            total_files: 1_000_000,
            avail_files: 500_000,
        }
    }

    #[test]
    fn the_reserve_is_two_percent_clamped() {
        assert_eq!(Reserve::of(&disk(64 * MIB, 0)).bytes, 4 * MIB);
        assert_eq!(Reserve::of(&disk(10_000 * MIB, 0)).bytes, 200 * MIB);
        assert_eq!(Reserve::of(&disk(1 << 50, 0)).bytes, 1024 * MIB);
        assert_eq!(Reserve::of(&disk(1 << 50, 0)).files, 10_000);
    }

    #[test]
    fn growth_stops_at_the_reserve_and_measures_only_when_the_budget_is_spent() {
        let avail = Cell::new(100 * MIB);
        let measures = Cell::new(0);
        let measure = || {
            measures.set(measures.get() + 1);
            Ok(disk(1000 * MIB, avail.get()))
        };
        let room = Room::default();
        // 80 MiB above the 20 MiB reserve: a budget of 10 MiB after the first take.
        room.take(MIB, measure).unwrap();
        for _ in 0..9 {
            room.take(MIB, measure).unwrap();
        }
        assert_eq!(measures.get(), 1, "the budget covered them");
        room.take(MIB, measure).unwrap();
        assert_eq!(measures.get(), 2);
        avail.set(20 * MIB + 100);
        room.budget.store(-1, Ordering::Relaxed);
        assert!(matches!(room.take(101, measure), Err(FsError::NoSpace)));
        room.take(100, measure).unwrap();
        // The disk shows those 100 bytes taken: at the edge, every take measures.
        avail.set(20 * MIB);
        let before = measures.get();
        assert!(matches!(room.take(1, measure), Err(FsError::NoSpace)));
        assert!(matches!(room.take(1, measure), Err(FsError::NoSpace)));
        assert_eq!(measures.get(), before + 2);
        // Room freed elsewhere is seen at the next take.
        avail.set(21 * MIB);
        room.take(MIB, measure).unwrap();
    }

    #[test]
    fn no_host_inodes_above_their_reserve_is_no_space() {
        let room = Room::default();
        let full = Space {
            avail_files: 256,
            ..disk(1000 * MIB, 500 * MIB)
        };
        assert!(matches!(room.take(1, || Ok(full)), Err(FsError::NoSpace)));
    }
}
