//! Directory streams: snapshots served to readdir, and directories kept while open.
//!
//! Invariants:
//! - a stream lists a snapshot taken when it is read from offset 0, so it never repeats or
//!   skips a name while others change the directory;
//! - a directory removed (rmdir, or renamed over) while a stream on it is open here keeps
//!   its inode, with no links, until the last stream closes, as on a local disk: `fstat`
//!   on the descriptor works and shows `st_nlink` 0, and nothing can be created in it.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::*;

/// A directory with streams open here.
pub(super) struct OpenDir {
    refs: usize,
    /// Its attributes as last read, for `fstat` once another mount has deleted it.
    pub(super) last: Attr,
    /// It lost its name while open here: its inode goes at the last release.
    pub(super) orphan: bool,
}

/// One open directory stream.
pub(super) struct DirStream {
    ino: Ino,
    snapshot: Arc<Vec<DirEntry>>,
}

impl TenantFs {
    /// Opens a directory stream; its listing is taken at the first read from offset 0.
    pub fn opendir(&self, ino: Ino) -> FsResult<u64> {
        self.live()?;
        let a = {
            let meta = self.meta.lock();
            let tx = meta.read();
            let a = require_dir(&*tx, ino)?;
            self.need(&*tx, ino, Rights::R, "opendir", None)?;
            a
        };
        // Here rather than at the first read: the kernel may serve the listing from its
        // cache, so the open is what reaches the daemon (as for files).
        self.accessed(&a, a.mtime, a.ctime);
        // Registered before anything else can remove it: from here on an rmdir of it keeps
        // the inode for this stream.
        match self.open_dirs.lock().entry(ino) {
            Entry::Occupied(mut e) => e.get_mut().refs += 1,
            Entry::Vacant(e) => {
                e.insert(OpenDir {
                    refs: 1,
                    last: a,
                    orphan: false,
                });
            }
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.dirs.lock().insert(
            fh,
            DirStream {
                ino,
                snapshot: Arc::new(Vec::new()),
            },
        );
        Ok(fh)
    }

    /// Closes a stream; the last one on a directory removed while open deletes its inode.
    pub fn releasedir(&self, fh: u64) -> FsResult<()> {
        let Some(stream) = self.dirs.lock().remove(&fh) else {
            return Ok(());
        };
        let ino = stream.ino;
        let orphan = match self.open_dirs.lock().entry(ino) {
            Entry::Occupied(mut e) => {
                e.get_mut().refs -= 1;
                if e.get().refs > 0 {
                    return Ok(());
                }
                e.remove().orphan
            }
            Entry::Vacant(_) => false,
        };
        if orphan {
            let deleted = self.transact(|tx| {
                // The database decides: a removal that rolled back left it linked.
                let gone = tx.inode(ino)?.is_some_and(|a| a.nlink == 0);
                if gone {
                    quota::delete_inode(tx, ino)?;
                }
                Ok(gone)
            })?;
            if deleted {
                // Clears the `gc` row every deleted inode gets.
                self.reap(vec![Doomed {
                    ino,
                    size: 0,
                    ghost: false,
                }]);
            }
        }
        Ok(())
    }

    /// Whether a directory removed in this transaction is open here; if so it is marked to
    /// go at its last release, and the caller keeps its inode.
    pub(super) fn keep_open_dir(&self, ino: Ino) -> bool {
        match self.open_dirs.lock().get_mut(&ino) {
            Some(d) => {
                d.orphan = true;
                true
            }
            None => false,
        }
    }

    /// The last attributes of a directory open here, with no links: for `fstat` on a
    /// descriptor of a directory another mount deleted.
    pub(super) fn vanished_dir(&self, ino: Ino) -> Option<Attr> {
        self.open_dirs.lock().get(&ino).map(|d| Attr {
            nlink: 0,
            ..d.last.clone()
        })
    }

    /// Entries after `offset`, at most `limit`: "." and ".." (cookies 1 and 2), then the
    /// directory's entries in name order. Reading from offset 0 takes a fresh snapshot, so a
    /// stream never repeats or skips a name while others change the directory (rewinddir
    /// sees the changes).
    pub fn readdir(
        &self,
        fh: u64,
        ino: Ino,
        offset: u64,
        limit: usize,
        plus: bool,
    ) -> FsResult<Vec<DirEntry>> {
        self.live()?;
        let snapshot = if offset == 0 {
            let meta = self.meta.lock();
            let tx = meta.read();
            let Some(dir) = tx.inode(ino)?.filter(|d| d.nlink > 0) else {
                // Removed while open: an empty stream, as POSIX asks.
                return Ok(Vec::new());
            };
            if dir.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            self.need(&*tx, ino, Rights::R, "readdir", None)?;
            let parent = if ino == self.root {
                ino
            } else {
                tx.dir_parent(ino)?.unwrap_or(ino)
            };
            let mut all = Vec::new();
            for (name, ino) in [(&b"."[..], ino), (&b".."[..], parent)] {
                all.push(DirEntry {
                    cookie: 0,
                    ino,
                    kind: Kind::Dir,
                    name: name.to_vec(),
                    attr: None,
                });
            }
            all.extend(tx.list(ino)?);
            for (i, e) in all.iter_mut().enumerate() {
                e.cookie = i as u64 + 1;
            }
            let all = Arc::new(all);
            let mut dirs = self.dirs.lock();
            let stream = dirs.get_mut(&fh).ok_or(FsError::BadHandle)?;
            stream.snapshot = all.clone();
            all
        } else {
            self.dirs
                .lock()
                .get(&fh)
                .map(|d| d.snapshot.clone())
                .ok_or(FsError::BadHandle)?
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(snapshot.len());
        let mut out: Vec<DirEntry> = snapshot[start..]
            .iter()
            .take(limit.max(1))
            .cloned()
            .collect();
        if plus {
            let meta = self.meta.lock();
            let tx = meta.read();
            let dots = |e: &DirEntry| e.name == b"." || e.name == b"..";
            let inos: Vec<Ino> = out.iter().filter(|e| !dots(e)).map(|e| e.ino).collect();
            let attrs = tx.inodes(&inos)?;
            for e in out.iter_mut().filter(|e| !dots(e)) {
                // Two names of one file share its attributes.
                e.attr = attrs.get(&e.ino).cloned();
                if e.attr.is_some() {
                    // Warm the rights cache while the database is at hand.
                    self.access.rights(&*tx, e.ino)?;
                }
            }
            drop(tx);
            drop(meta);
            // An entry removed since the snapshot is skipped rather than shown without attributes.
            out.retain(|e| e.attr.is_some() || e.name == b"." || e.name == b"..");
            for e in &mut out {
                if let Some(a) = e.attr.take() {
                    e.attr = Some(self.present(a)?);
                }
            }
        }
        Ok(out)
    }

    pub fn fsyncdir(&self) -> FsResult<()> {
        self.live()?;
        self.meta.lock().sync()?;
        Ok(())
    }
}
