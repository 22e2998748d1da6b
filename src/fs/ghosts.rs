//! Ghosts: files that lost their last name while not open in this mount.
//!
//! On a local disk an open that resolved a name just before a rename over it (or an unlink
//! of it) still opens the old file. Through FUSE the open arrives as a separate request
//! for the inode the name resolved to, and the kernel retries a stale answer only once, so
//! a file deleted at once makes opens racing an atomic save fail. A ghost keeps the inode
//! row and object for [`GRACE`] (longer than the kernel's entry timeout, so every other
//! mount has looked the name up again by then), with its usage already given back. Reads
//! may open it; writes get `ESTALE` and so open the file that now has the name.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Doomed, FsResult, OpenEntry, TenantFs};
use crate::meta::Tx;
use crate::quota;
use crate::types::Ino;

/// How long a ghost stays: twice the entry timeout the adapter gives the kernel.
pub(super) const GRACE: Duration = Duration::from_secs(2);

/// Ghosts this mount made, oldest first.
#[derive(Default)]
pub(super) struct Ghosts {
    queue: Mutex<VecDeque<(Instant, Ino)>>,
    /// Held by a purge until the objects it buried are deleted and queued for their `gc`
    /// rows to go, so the unmount's purge waits for the watcher's and its last
    /// transaction takes those rows with it.
    purging: Mutex<()>,
}

impl Ghosts {
    pub(super) fn add(&self, ino: Ino) {
        self.queue.lock().push_back((Instant::now() + GRACE, ino));
    }

    /// The ghosts whose time is up (every one when `all`), oldest first.
    fn due(&self, all: bool) -> Vec<Ino> {
        let now = Instant::now();
        self.queue
            .lock()
            .iter()
            .take_while(|(t, _)| all || *t <= now)
            .map(|(_, i)| *i)
            .collect()
    }

    /// Forgets the first `n`, once their deletion committed.
    fn done(&self, n: usize) {
        self.queue.lock().drain(..n);
    }
}

impl TenantFs {
    /// Deletes the ghosts that are due (all of them when `all`, at unmount). One opened here
    /// since becomes an ordinary orphan, deleted at its last release. Off the request path:
    /// the key watcher calls this on every tick.
    pub fn purge_ghosts(&self, all: bool) -> FsResult<()> {
        let _purging = self.ghosts.purging.lock();
        let mut doomed = Vec::new();
        {
            let open = self.open.lock();
            let due = self.ghosts.due(all);
            if due.is_empty() {
                return Ok(());
            }
            self.transact(|tx| self.bury(tx, &open, &due, &mut doomed))?;
            self.ghosts.done(due.len());
        }
        self.reap(doomed);
        Ok(())
    }

    fn bury(
        &self,
        tx: &Tx<'_>,
        open: &HashMap<Ino, OpenEntry>,
        due: &[Ino],
        doomed: &mut Vec<Doomed>,
    ) -> FsResult<()> {
        // Two queries for the whole batch, where one per ghost would hold the tenant's
        // writers up for as long as hundreds of round trips take.
        let attrs = tx.inodes(due)?;
        let ghosts = tx.ghosts_among(due)?;
        for &ino in due {
            if let Some(e) = open.get(&ino) {
                e.obj.orphan.store(true, Ordering::SeqCst);
                continue;
            }
            // Gone already when another mount's recovery or fsck got there first.
            let Some(a) = attrs.get(&ino) else { continue };
            if a.nlink == 0 {
                quota::delete_known(tx, ino, ghosts.contains(&ino))?;
                doomed.push(Doomed {
                    ino,
                    size: a.size,
                    ghost: false,
                });
            }
        }
        Ok(())
    }
}
