//! How each open file does its I/O: through the daemon with the kernel's page cache
//! (cached), or straight from the object's local file inside the kernel (passthrough).
//!
//! The kernel holds every open of an inode in one mode: once an inode is open for
//! passthrough, each further open of it must be passthrough too, on the same backing file
//! (any other fails with `EIO`), and a passthrough open beside a cached one fails. Writes
//! must reach the daemon (quotas, sizes, times), so:
//! - a read-only open passes through when the core offers the object's file and no cached
//!   handle of the inode is open, or when the inode is already open for passthrough;
//! - a write open while the inode is open for passthrough is refused with `ETXTBSY`, as
//!   for a running executable, rather than the kernel's bare `EIO`;
//! - everything else is cached.
//!
//! Counts only fall when the daemon hears of a release, after the kernel has dropped its
//! own, so they are never below the kernel's and the choice is never one it refuses.

use std::collections::HashMap;

use crate::fs::Ino;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Cached,
    Passthrough,
}

/// A write open of an inode held open for passthrough reads.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

struct Inode<B> {
    cached: u32,
    passthrough: u32,
    /// The backing file registered with the kernel while passthrough handles are open.
    backing: Option<B>,
}

/// Open handles by inode, and the mode each was given. `B` is the kernel's backing-file
/// registration, dropped (unregistered) with the inode's last passthrough handle.
pub struct IoModes<B> {
    inodes: HashMap<Ino, Inode<B>>,
    handles: HashMap<u64, (Ino, Io)>,
}

impl<B> Default for IoModes<B> {
    fn default() -> Self {
        IoModes {
            inodes: HashMap::new(),
            handles: HashMap::new(),
        }
    }
}

impl<B> IoModes<B> {
    /// Chooses the mode of new handle `fh` of `ino`. `backing` registers the object's file
    /// with the kernel; it is called only for a read-only open of an inode with no
    /// registration yet, and returns `None` when the file may not (or cannot) pass through.
    pub fn open(
        &mut self,
        ino: Ino,
        fh: u64,
        read_only: bool,
        backing: impl FnOnce() -> Option<B>,
    ) -> Result<(Io, Option<&B>), Busy> {
        let n = self.inodes.entry(ino).or_insert(Inode {
            cached: 0,
            passthrough: 0,
            backing: None,
        });
        let io = if n.passthrough > 0 {
            if !read_only {
                return Err(Busy);
            }
            Io::Passthrough
        } else if read_only && n.cached == 0 && {
            n.backing = backing();
            n.backing.is_some()
        } {
            Io::Passthrough
        } else {
            Io::Cached
        };
        match io {
            Io::Passthrough => n.passthrough += 1,
            Io::Cached => n.cached += 1,
        }
        self.handles.insert(fh, (ino, io));
        let n = &self.inodes[&ino];
        Ok((io, n.backing.as_ref().filter(|_| io == Io::Passthrough)))
    }

    /// Forgets a released handle; the inode's backing registration goes with its last
    /// passthrough handle.
    pub fn release(&mut self, fh: u64) {
        let Some((ino, io)) = self.handles.remove(&fh) else {
            return;
        };
        let Some(n) = self.inodes.get_mut(&ino) else {
            return;
        };
        match io {
            Io::Cached => n.cached -= 1,
            Io::Passthrough => {
                n.passthrough -= 1;
                if n.passthrough == 0 {
                    n.backing = None;
                }
            }
        }
        if n.cached == 0 && n.passthrough == 0 {
            self.inodes.remove(&ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_pass_through_and_share_one_backing() {
        let mut m = IoModes::default();
        let mut made = 0;
        let mut reg = || {
            made += 1;
            Some(made)
        };
        assert_eq!(
            m.open(5, 1, true, &mut reg),
            Ok((Io::Passthrough, Some(&1)))
        );
        assert_eq!(
            m.open(5, 2, true, &mut reg),
            Ok((Io::Passthrough, Some(&1)))
        );
        m.release(1);
        m.release(2);
        // The registration went with the last handle; a new open registers again.
        assert_eq!(
            m.open(5, 3, true, &mut reg),
            Ok((Io::Passthrough, Some(&2)))
        );
    }

    #[test]
    fn cached_and_passthrough_never_mix_on_one_inode() {
        let mut m = IoModes::default();
        assert_eq!(m.open(5, 1, true, || Some(())).unwrap().0, Io::Passthrough);
        // A writer beside a passthrough reader is refused; a reader the core would not
        // have let pass through joins the passthrough handles, as the kernel demands.
        assert_eq!(m.open(5, 2, false, || Some(())), Err(Busy));
        assert_eq!(m.open(5, 3, true, || None).unwrap().0, Io::Passthrough);
        m.release(1);
        m.release(2);
        m.release(3);
        // With no passthrough handle left, a writer is cached, and then readers are too.
        assert_eq!(m.open(5, 4, false, || Some(())).unwrap().0, Io::Cached);
        assert_eq!(m.open(5, 5, true, || Some(())).unwrap().0, Io::Cached);
        m.release(4);
        m.release(5);
        assert_eq!(m.open(5, 6, true, || Some(())).unwrap().0, Io::Passthrough);
        // Other inodes are not affected.
        assert_eq!(m.open(6, 7, false, || Some(())).unwrap().0, Io::Cached);
    }

    #[test]
    fn a_failed_registration_falls_back_to_cached() {
        let mut m = IoModes::<()>::default();
        assert_eq!(m.open(5, 1, true, || None), Ok((Io::Cached, None)));
        m.release(1);
        m.release(1);
        assert_eq!(m.open(5, 2, true, || Some(())).unwrap().0, Io::Passthrough);
    }
}
