//! The local object store keeps `objects/<ino % 256 as hex>/<ino as hex>` under the tenant's
//! folder, so reads and writes are plain `pread`/`pwrite` on a local file. An object that
//! does not exist reads as empty: a crash between creating an inode and its object loses
//! nothing that was acknowledged.

use std::fs::{self, File};
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;

use super::{Extent, Object, ObjectStore, Space};
use crate::types::Ino;

pub struct LocalObjects {
    root: PathBuf,
}

impl LocalObjects {
    pub fn new(root: PathBuf) -> LocalObjects {
        LocalObjects { root }
    }

    fn path(&self, ino: Ino) -> PathBuf {
        self.root
            .join(format!("{:02x}", ino & 0xff))
            .join(format!("{ino:x}"))
    }

    /// Every object id present, for consistency checks.
    pub fn all(&self) -> io::Result<Vec<Ino>> {
        let mut out = Vec::new();
        for shard in fs::read_dir(&self.root)? {
            for obj in fs::read_dir(shard?.path())? {
                if let Some(ino) = obj?
                    .file_name()
                    .to_str()
                    .and_then(|n| Ino::from_str_radix(n, 16).ok())
                {
                    out.push(ino);
                }
            }
        }
        Ok(out)
    }
}

struct LocalObject {
    file: File,
    /// An `O_APPEND` descriptor of the same file, made at the first append: the kernel
    /// places each of its writes at the end under the inode lock.
    appender: OnceLock<File>,
}

impl ObjectStore for LocalObjects {
    fn open(&self, ino: Ino, create: bool) -> io::Result<Option<Box<dyn Object>>> {
        let path = self.path(ino);
        let mut opts = File::options();
        opts.read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o600);
        let file = match opts.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                crate::private::create_dir(
                    path.parent().expect("object paths have a shard folder"),
                )?;
                opts.create(true).open(&path)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Box::new(LocalObject {
            file,
            appender: OnceLock::new(),
        })))
    }

    fn remove(&self, ino: Ino) -> io::Result<()> {
        match fs::remove_file(self.path(ino)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn extent(&self, ino: Ino) -> io::Result<Option<Extent>> {
        match fs::symlink_metadata(self.path(ino)) {
            Ok(m) => Ok(Some(Extent::from(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn space(&self) -> io::Result<Space> {
        // The folder appears with the first object; until then its parent's disk is the one.
        let at = self
            .root
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(&self.root);
        let s = nix::sys::statvfs::statvfs(at).map_err(io::Error::from)?;
        let frag = s.fragment_size() as u64;
        Ok(Space {
            total_bytes: s.blocks() as u64 * frag,
            avail_bytes: s.blocks_available() as u64 * frag,
            total_files: s.files() as u64,
            avail_files: s.files_available() as u64,
        })
    }
}

impl Object for LocalObject {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn append(&self, data: &[u8]) -> io::Result<u64> {
        if self.appender.get().is_none() {
            // A new open file description of the same file, so its offset is its own.
            let fd = format!("/proc/self/fd/{}", self.file.as_raw_fd());
            let f = File::options()
                .append(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(fd)?;
            let _ = self.appender.set(f);
        }
        let mut f = self.appender.get().expect("set above");
        f.write_all(data)?;
        // The offset after an O_APPEND write is where it ended; the caller serializes this
        // object's appends, so no other write on this descriptor moved it since.
        f.stream_position()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn extent(&self) -> io::Result<Extent> {
        Ok(Extent::from(&self.file.metadata()?))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn allocate(&self, mode: i32, offset: u64, len: u64) -> io::Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        let allocating = mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_COLLAPSE_RANGE) == 0;
        // ext4 keeps what a failed allocation got before it ran out of room: note the holes
        // first, so a failure can give back exactly what it took.
        let before = if allocating {
            Some((self.file.metadata()?.len(), self.holes(offset, end)?))
        } else {
            None
        };
        let failed = match fallocate(&self.file, mode, offset, len) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if let Some((size, holes)) = before {
            let keep = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            for (from, to) in holes {
                fallocate(&self.file, keep, from, to - from)?;
            }
            if self.file.metadata()?.len() != size {
                self.file.set_len(size)?;
            }
        }
        Err(failed)
    }

    fn seek(&self, offset: u64, whence: i32) -> io::Result<u64> {
        let Ok(offset) = i64::try_from(offset) else {
            return Err(io::Error::from_raw_os_error(libc::ENXIO));
        };
        // Moving this descriptor's offset is harmless: all its I/O is positioned.
        let at =
            nix::unistd::lseek(&self.file, offset, whence_of(whence)?).map_err(io::Error::from)?;
        Ok(at as u64)
    }

    fn local_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }
}

impl LocalObject {
    /// The holes in `[from, to)`, past the end included.
    fn holes(&self, from: u64, to: u64) -> io::Result<Vec<(u64, u64)>> {
        let size = self.file.metadata()?.len();
        let inside = to.min(size);
        let mut holes = Vec::new();
        let mut at = from;
        while at < inside {
            let hole = self.seek(at, libc::SEEK_HOLE)?;
            if hole >= inside {
                break;
            }
            let data = match self.seek(hole, libc::SEEK_DATA) {
                Ok(data) => data,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => size,
                Err(e) => return Err(e),
            };
            holes.push((hole, data.min(inside)));
            at = data;
        }
        if size < to {
            holes.push((from.max(size), to));
        }
        Ok(holes)
    }
}

/// fallocate(2) on `file`.
fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: fallocate only reads its integer arguments, and `file` keeps the fd open for
    // the duration of the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn whence_of(whence: i32) -> io::Result<nix::unistd::Whence> {
    match whence {
        libc::SEEK_DATA => Ok(nix::unistd::Whence::SeekData),
        libc::SEEK_HOLE => Ok(nix::unistd::Whence::SeekHole),
        _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}
