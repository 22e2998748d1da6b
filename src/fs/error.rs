//! The core's one error type. Every variant maps to exactly one errno in [`FsError::errno`],
//! a `match` with no catch-all arm, so a new variant forces a decision.

use thiserror::Error;

use crate::meta::MetaError;

#[derive(Debug, Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("name too long")]
    NameTooLong,
    #[error("operation not permitted")]
    NotPermitted,
    #[error("read-only key: changes are refused")]
    ReadOnly,
    #[error("invalid argument")]
    Invalid,
    #[error("no such extended attribute")]
    NoXattr,
    #[error("buffer too small")]
    Range,
    #[error("stale inode")]
    Stale,
    #[error("bad file handle")]
    BadHandle,
    #[error("operation not supported")]
    NotSupported,
    #[error("too many links")]
    TooManyLinks,
    #[error("argument list too long")]
    TooBig,
    #[error("file too large")]
    FileTooLarge,
    #[error("quota exceeded")]
    Quota,
    #[error("the store's disk is full to its reserve")]
    NoSpace,
    #[error("permission denied by the tenant's ACL")]
    Denied,
    #[error("resource busy")]
    Busy,
    #[error("the mount's key was revoked")]
    Revoked,
    #[error("the mount's key expired")]
    Expired,
    #[error("no data or hole at or past that offset")]
    NoSuchOffset,
    #[error("internal error: the operation panicked (see the log)")]
    Panicked,
    #[error("object store: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata store: {0}")]
    Meta(#[from] MetaError),
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::NotPermitted => libc::EPERM,
            FsError::ReadOnly => libc::EROFS,
            FsError::Invalid => libc::EINVAL,
            FsError::NoXattr => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::Stale => libc::ESTALE,
            FsError::BadHandle => libc::EBADF,
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::TooManyLinks => libc::EMLINK,
            FsError::TooBig => libc::E2BIG,
            FsError::FileTooLarge => libc::EFBIG,
            FsError::Quota => libc::EDQUOT,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Denied => libc::EACCES,
            FsError::Busy => libc::EBUSY,
            FsError::Revoked => libc::EKEYREVOKED,
            FsError::Expired => libc::EKEYEXPIRED,
            FsError::NoSuchOffset => libc::ENXIO,
            FsError::Panicked => libc::EIO,
            FsError::Io(e) => match e.raw_os_error() {
                Some(code) if code > 0 => code,
                _ => libc::EIO,
            },
            FsError::Meta(MetaError::Busy) => libc::EAGAIN,
            // The metadata store could not grow its files.
            FsError::Meta(MetaError::DiskFull) => libc::ENOSPC,
            FsError::Meta(_) => libc::EIO,
        }
    }

    /// Routine errors are answers (ENOENT on a lookup); the rest deserve a log line.
    /// A full disk is one too: the room check logs when the edge is reached, once, rather
    /// than every write that meets it.
    pub fn is_routine(&self) -> bool {
        !matches!(self, FsError::Io(_) | FsError::Meta(_) | FsError::Panicked)
            || self.errno() == libc::ENOSPC
    }
}
