//! Plain data the core hands out: inode numbers, kinds, attributes, the caller.

use crate::time::Nanos;

/// An inode number in one tenant's database. Each tenant counts from 1, its root, so
/// numbers say nothing about other tenants.
pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

/// Longest name component, as on ext4.
pub const NAME_MAX: usize = 255;
/// Longest symlink target (PATH_MAX less the NUL).
pub const SYMLINK_MAX: usize = 4095;
/// Largest xattr value, as the kernel's XATTR_SIZE_MAX.
pub const XATTR_VALUE_MAX: usize = 65536;
/// Most links to one inode, as on ext4.
pub const LINK_MAX: u32 = 65000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            _ => return None,
        })
    }

    pub fn code(self) -> i64 {
        match self {
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Symlink => 3,
            Kind::Fifo => 4,
            Kind::Socket => 5,
            Kind::CharDev => 6,
            Kind::BlockDev => 7,
        }
    }

    pub fn from_code(code: i64) -> Option<Kind> {
        Some(match code {
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Fifo,
            5 => Kind::Socket,
            6 => Kind::CharDev,
            7 => Kind::BlockDev,
            _ => return None,
        })
    }
}

/// An inode's attributes. `perm` holds the 12 low mode bits (rwx plus setuid, setgid, sticky).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub rdev: u32,
    pub atime: Nanos,
    pub mtime: Nanos,
    pub ctime: Nanos,
    pub crtime: Nanos,
    /// 512-byte blocks a file's content takes, as its store last measured them.
    pub blocks: u64,
}

impl Attr {
    /// 512-byte blocks, as `du` counts them: what a file's content takes (holes take
    /// none), a symlink's target, a directory's one block.
    pub fn st_blocks(&self) -> u64 {
        match self.kind {
            Kind::File => self.blocks,
            Kind::Symlink => self.size.div_ceil(512),
            Kind::Dir => 8,
            _ => 0,
        }
    }
}

/// Who is asking: the local uid/gid/pid of the process behind a kernel request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// Time fields of a setattr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At(Nanos),
}

/// What a setattr changes; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub ctime: Option<Nanos>,
    /// The caller may not keep set-user-ID and set-group-ID bits through a truncate (it
    /// lacks `CAP_FSETID`).
    pub drop_setid: bool,
    /// Who asks, for the set-group-ID rule (whether the caller is in the file's group).
    pub caller: Ctx,
}

/// One directory entry as readdir returns it. `cookie` resumes the listing after it.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub cookie: u64,
    pub ino: Ino,
    pub kind: Kind,
    pub name: Vec<u8>,
    /// Filled for readdirplus.
    pub attr: Option<Attr>,
}

/// Filesystem totals for statfs, already in blocks of `bsize`.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
}

/// Flags of a rename(2) call.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

/// Flags of setxattr(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrMode {
    Any,
    Create,
    Replace,
}

/// How long an object is and how much room it takes, in 512-byte blocks as `st_blocks`
/// counts them: less than its length where it has holes, more where space is allocated
/// past its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extent {
    pub len: u64,
    pub blocks: u64,
}

impl From<&std::fs::Metadata> for Extent {
    fn from(m: &std::fs::Metadata) -> Extent {
        use std::os::unix::fs::MetadataExt;
        Extent {
            len: m.len(),
            blocks: m.blocks(),
        }
    }
}
