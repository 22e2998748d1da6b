//! File content, one object per inode, behind traits so that another backend can serve
//! it. The `local` module keeps objects as files in the store directory.

mod local;

use std::io;
use std::os::fd::BorrowedFd;

pub use crate::types::Extent;
use crate::types::Ino;
pub use local::LocalObjects;

/// Content of one inode.
pub trait Object: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Writes `data` at the object's end as it is at that moment, atomically against every
    /// other writer of the object (other mounts' included); returns where the data ends.
    fn append(&self, data: &[u8]) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Its length and the space it takes.
    fn extent(&self) -> io::Result<Extent>;
    fn sync_data(&self) -> io::Result<()>;
    /// The next offset at or after `offset` that holds data (`SEEK_DATA`) or starts a hole
    /// (`SEEK_HOLE`, the end counting as one); `ENXIO` past the end or when no data follows.
    fn seek(&self, offset: u64, whence: i32) -> io::Result<u64>;
    /// fallocate(2) with its `mode` flags (keep size, punch hole, zero range).
    fn allocate(&self, mode: i32, offset: u64, len: u64) -> io::Result<()>;
    /// The local file behind the object, where there is one (for copy_file_range).
    fn local_fd(&self) -> Option<BorrowedFd<'_>>;
}

/// Where objects live.
pub trait ObjectStore: Send + Sync {
    /// Opens an inode's object, creating it when `create` is set; `None` if it does not
    /// exist and was not to be created.
    fn open(&self, ino: Ino, create: bool) -> io::Result<Option<Box<dyn Object>>>;
    /// Deletes an object; deleting a missing one is not an error.
    fn remove(&self, ino: Ino) -> io::Result<()>;
    /// Length and space of an object, `None` if it does not exist.
    fn extent(&self, ino: Ino) -> io::Result<Option<Extent>>;
    /// Room left for new content.
    fn space(&self) -> io::Result<Space>;
}

/// Free room in an object store.
#[derive(Clone, Copy, Debug)]
pub struct Space {
    pub total_bytes: u64,
    pub avail_bytes: u64,
    pub total_files: u64,
    pub avail_files: u64,
}
