//! Everything tenantfs writes into a store is its owner's alone: files 0600 and folders
//! 0700, whatever the caller's umask. Tenants' content, metadata, logs and key hashes live
//! there, one `chmod` away from every local user otherwise.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Files this process creates get no group or other bits, whatever mode their creator asks
/// for (SQLite asks 0644 for its databases). Set once, first thing in the CLI; the mount
/// daemons it starts inherit it.
pub fn restrict_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Creates `path` and any missing parents, 0700.
pub fn create_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Opens `path` for appending, creating it 0600.
pub fn append_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Writes a new file, 0600, with `data`, durably.
pub fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Makes a SQLite database and the files SQLite keeps beside it 0600: creates the database
/// file 0600 when it is missing (SQLite gives its `-wal`, `-shm` and `-journal` files the
/// database's mode), and takes group and other bits off ones an older release made 0644.
pub fn sqlite_files(db: &Path) -> io::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        tighten(&PathBuf::from(name))?;
    }
    Ok(())
}

/// Takes group and other bits off an existing file.
fn tighten(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o077 != 0 => fs::set_permissions(
            path,
            fs::Permissions::from_mode(m.permissions().mode() & 0o700),
        ),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_files_are_made_and_tightened_to_0600() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("meta.db");
        sqlite_files(&db).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&db), 0o600);
        let wal = dir.path().join("meta.db-wal");
        fs::write(&wal, b"").unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o664)).unwrap();
        sqlite_files(&db).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
    }

    #[test]
    fn folders_are_0700_at_every_level_made() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        create_dir(&deep).unwrap();
        for p in [dir.path().join("a"), deep] {
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{}", p.display());
        }
    }
}
