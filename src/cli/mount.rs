//! `tenantfs mount`: its options, and reading the key without ever taking it from argv.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::Args;

use crate::daemon::{self, MountRequest};
use crate::error::{Context, Error, Result};
use crate::ids::parse_size;
use crate::store::Store;

#[derive(Args)]
pub(super) struct MountArgs {
    mountpoint: PathBuf,
    /// A file holding the key.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Stay attached; unmount cleanly on SIGINT or SIGTERM.
    #[arg(long)]
    foreground: bool,
    /// Let other local users reach the mount (needs root or user_allow_other).
    #[arg(long)]
    allow_other: bool,
    /// Never update access times on reads (by default they move as with Linux's relatime).
    #[arg(long)]
    noatime: bool,
    /// Threads serving kernel requests.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// Inodes whose access rights the mount remembers (about 48 bytes each).
    #[arg(long, default_value_t = crate::fs::access::CACHE_ENTRIES, value_name = "N")]
    rights_cache: usize,
    /// SQLite's page cache for the tenant's metadata.
    #[arg(long, default_value = "8M", value_parser = parse_size, value_name = "SIZE")]
    db_cache: u64,
    /// How much of the metadata database to memory-map (0 maps nothing). Mapped pages count
    /// in the daemon's RSS but belong to the host's page cache, which can reclaim them.
    #[arg(long, default_value = "256M", value_parser = parse_size, value_name = "SIZE")]
    db_map: u64,
    /// A background daemon's log (STORE/logs/TENANT.log) is moved to TENANT.log.1 at this
    /// size, so the logs of a mount never take more than twice it.
    #[arg(long, default_value = "16M", value_parser = parse_log_max, value_name = "SIZE")]
    log_max_size: u64,
}

fn parse_log_max(s: &str) -> std::result::Result<u64, String> {
    let n = parse_size(s)?;
    if n < crate::logging::ROTATE_MIN {
        return Err(format!(
            "{s} is too small for a log; give at least {}K",
            crate::logging::ROTATE_MIN >> 10
        ));
    }
    Ok(n)
}

/// A key file other users can read leaks the key; say so, but still mount.
fn warn_if_shared(path: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o077 != 0) {
        crate::say!(
            "warning: key file {} is readable by other users; `chmod 600 {}` keeps the key yours",
            path.display(),
            path.display()
        );
    }
}

/// The key from --key-file, else TENANTFS_KEY, else stdin.
fn read_key(file: Option<&std::path::Path>) -> Result<String> {
    let raw = if let Some(path) = file {
        warn_if_shared(path);
        std::fs::read_to_string(path)
            .context(|| format!("cannot read key file {}", path.display()))?
    } else if let Ok(k) = std::env::var("TENANTFS_KEY") {
        k
    } else {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprint!("key: ");
        }
        let mut s = String::new();
        stdin
            .lock()
            .take(4096)
            .read_to_string(&mut s)
            .context(|| "cannot read the key from stdin".into())?;
        s
    };
    if raw.trim().is_empty() {
        return Err(Error::Usage(
            "no key given: pass --key-file FILE, set TENANTFS_KEY, or pipe the key on stdin".into(),
        ));
    }
    Ok(raw.trim().to_string())
}

pub(super) fn mount(store: &Store, args: MountArgs) -> Result<()> {
    let key = read_key(args.key_file.as_deref())?;
    daemon::mount(
        store,
        MountRequest {
            mountpoint: args.mountpoint,
            key,
            foreground: args.foreground,
            allow_other: args.allow_other,
            noatime: args.noatime,
            threads: usize::from(args.threads),
            caches: daemon::Caches {
                rights: args.rights_cache,
                db_cache: args.db_cache,
                db_map: args.db_map,
            },
            log_max: args.log_max_size,
        },
    )
}
