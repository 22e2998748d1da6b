//! Access times, as Linux's default `relatime` keeps them: a read moves a file's atime (a
//! listing moves a directory's) when it is not newer than its mtime or ctime, or is a day
//! old. That answers "was this read since it last changed?" (mail readers, tmp cleaners)
//! while a file read over and over costs one update a day, not one a read.
//!
//! Updates are pending in memory and written in batches: every 2 s on the key watcher's
//! tick, and at unmount. Until then this mount shows them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use super::{FsResult, TenantFs};
use crate::time::{Nanos, now_nanos};
use crate::types::{Attr, Ino};

const DAY: Nanos = 24 * 3600 * 1_000_000_000;

/// Whether an access at `now` moves an atime of `atime` under relatime.
pub(super) fn due(atime: Nanos, mtime: Nanos, ctime: Nanos, now: Nanos) -> bool {
    atime <= mtime || atime <= ctime || now.saturating_sub(atime) >= DAY
}

/// Access times not yet written, by inode, and the inodes whose access time moved since
/// the adapter last asked (the kernel's cached attributes of them are out of date).
#[derive(Default)]
pub(super) struct Pending(Mutex<HashMap<Ino, Nanos>>, Mutex<Vec<Ino>>);

impl Pending {
    pub(super) fn get(&self, ino: Ino) -> Option<Nanos> {
        let map = self.0.lock();
        if map.is_empty() {
            return None;
        }
        map.get(&ino).copied()
    }

    pub(super) fn forget(&self, ino: Ino) {
        self.0.lock().remove(&ino);
    }

    /// A copy of everything pending.
    fn peek(&self) -> Vec<(Ino, Nanos)> {
        self.0.lock().iter().map(|(&i, &t)| (i, t)).collect()
    }

    /// Drops what was written, unless a newer access replaced it meanwhile.
    fn written(&self, done: &[(Ino, Nanos)]) {
        let mut map = self.0.lock();
        for (ino, t) in done {
            if map.get(ino) == Some(t) {
                map.remove(ino);
            }
        }
    }
}

impl TenantFs {
    /// `--noatime`: reads never move access times.
    pub fn set_noatime(&self, on: bool) {
        self.noatime.store(on, Ordering::Relaxed);
    }

    /// Notes an access of `a` (as last read; times this mount changed since in
    /// `mtime`/`ctime`) if relatime says its atime moves.
    pub(super) fn accessed(&self, a: &Attr, mtime: Nanos, ctime: Nanos) {
        if self.noatime.load(Ordering::Relaxed) || self.read_only() {
            return;
        }
        let atime = self.atimes.get(a.ino).unwrap_or(a.atime).max(a.atime);
        let now = now_nanos();
        if due(atime, mtime.max(a.mtime), ctime.max(a.ctime), now) {
            self.atimes.0.lock().insert(a.ino, now);
            self.atimes.1.lock().push(a.ino);
        }
    }

    /// Writes every pending access time in one transaction: on the key watcher's tick and
    /// at unmount.
    pub fn flush_atimes(&self) -> FsResult<()> {
        // They stay pending (and shown) until the transaction that writes them commits.
        let pending = self.atimes.peek();
        if pending.is_empty() {
            return Ok(());
        }
        self.transact(|tx| {
            for &(ino, t) in &pending {
                // Under the metadata lock, as a setattr's forgetting is: an access time set
                // on purpose since the copy was taken wins.
                if self.atimes.get(ino) == Some(t) {
                    tx.set_atime_if_older(ino, t)?;
                }
            }
            Ok(())
        })?;
        self.atimes.written(&pending);
        Ok(())
    }

    /// The inodes whose access time moved since the last call: the kernel does not keep
    /// access times of FUSE files itself, and would show the old one until its cached
    /// attributes expire.
    pub fn atimes_moved(&self) -> Vec<Ino> {
        let mut moved = self.atimes.1.lock();
        if moved.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut *moved)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relatime_rules() {
        let now = 10 * DAY;
        // Not read since the last change: moves.
        assert!(due(100, 100, 50, now));
        assert!(due(100, 50, 200, now));
        // Read since: stays, until it is a day old.
        assert!(!due(now - 1000, now - 2000, now - 2000, now));
        assert!(due(now - DAY, now - 2 * DAY, now - 2 * DAY, now));
    }
}
