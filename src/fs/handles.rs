//! File handles (`open_by_handle_at`, NFS re-export, fanotify): a handle names an inode by
//! number, and once the kernel has forgotten that number it asks the daemon to find the
//! inode again, with no path to walk.
//!
//! A handle opens only what a path could have reached: a linked inode with a name inside
//! this mount's tree, below directories the subject may search. Everything else, whether
//! deleted, another tenant's number, outside a `--root` sub-tree or behind a directory the
//! subject may not search, is the same `ESTALE`, so handles tell nothing about inodes this
//! mount cannot see.

use super::*;

/// Deeper than any tree a path can name (`PATH_MAX` allows 2,048 levels of one-byte names);
/// a loop in a damaged store ends here.
const MAX_DEPTH: usize = 4096;

impl TenantFs {
    /// The inode behind a handle, as a lookup of `.` in it returns it.
    pub fn by_handle(&self, ino: Ino) -> FsResult<Attr> {
        self.live()?;
        let a = {
            let meta = self.meta.lock();
            let tx = meta.read();
            match tx.inode(ino)? {
                Some(a) if a.nlink > 0 && self.reachable(&*tx, &a)? => a,
                _ => return Err(FsError::Stale),
            }
        };
        self.present(a)
    }

    /// The parent of a directory behind a handle, as a lookup of `..` in it returns it; the
    /// mount's root is its own parent, as `/` is.
    pub fn parent_by_handle(&self, dir: Ino) -> FsResult<Attr> {
        if dir == self.root {
            return self.by_handle(dir);
        }
        let parent = self.meta.lock().read().dir_parent(dir)?;
        self.by_handle(parent.ok_or(FsError::Stale)?)
    }

    /// Whether a path from the mount's root could reach `a`.
    fn reachable(&self, tx: &Tx<'_>, a: &Attr) -> FsResult<bool> {
        if a.ino == self.root {
            return Ok(true);
        }
        let parents = if a.kind != Kind::Dir && a.nlink > 1 {
            tx.link_parents(a.ino)?
                .into_iter()
                .map(|(p, _)| p)
                .collect()
        } else {
            tx.dir_parent(a.ino)?.into_iter().collect::<Vec<_>>()
        };
        for p in parents {
            if self.searchable_from_root(tx, p)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `dir` is the mount's root or inside it, with the subject allowed to search
    /// it and every directory above it up to the root.
    fn searchable_from_root(&self, tx: &Tx<'_>, mut dir: Ino) -> FsResult<bool> {
        for _ in 0..MAX_DEPTH {
            if !self.access.rights(tx, dir)?.has(Rights::X) {
                return Ok(false);
            }
            if dir == self.root {
                return Ok(true);
            }
            match tx.dir_parent(dir)? {
                Some(p) if p != dir && dir != ROOT_INO => dir = p,
                _ => return Ok(false),
            }
        }
        Ok(false)
    }
}
