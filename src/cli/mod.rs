//! The `tenantfs` command line: parse, call the library, print a table or `--json`.
//! Errors print as `error: …` on stderr with a non-zero exit.

mod key;
mod mount;
mod policy;
mod quota;
mod report;
mod show;
mod store;
mod tenant;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::daemon;
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::keys;
use crate::store::{InitOutcome, MetaSpec, Store};
use key::KeyCmd;
use mount::MountArgs;
use policy::{AclCmd, GroupCmd};
use quota::QuotaCmd;
use store::StoreCmd;
use tenant::TenantCmd;

#[derive(Parser)]
#[command(
    name = "tenantfs",
    version,
    about = "A multi-tenant FUSE filesystem: one store, many tenants, each mount sees only its own tree."
)]
struct Cli {
    /// The store directory.
    #[arg(
        long,
        global = true,
        env = "TENANTFS_STORE",
        default_value = "./tenantfs-store",
        value_name = "DIR"
    )]
    store: PathBuf,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a store (idempotent; never touches an existing one). With --meta, its catalog
    /// and tenants' metadata live in a PostgreSQL database, which a store directory on
    /// another host joins by running init with the same URL.
    Init {
        /// postgres://USER@HOST:PORT/DB. A password comes from the URL, --meta-password-file,
        /// PGPASSWORD or ~/.pgpass; it is never printed or logged.
        #[arg(
            long,
            value_name = "URL",
            env = "TENANTFS_META",
            hide_env_values = true
        )]
        meta: Option<String>,
        /// A 0600 file holding the database password; its path is kept in the store's
        /// configuration.
        #[arg(long, value_name = "FILE", requires = "meta")]
        meta_password_file: Option<PathBuf>,
    },
    /// Create, list and show tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// What the whole store is kept in: `store migrate` moves it to PostgreSQL.
    #[command(subcommand)]
    Store(StoreCmd),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Mount a tenant's tree, as the key's subject. The key comes from --key-file,
    /// TENANTFS_KEY, or stdin; never from the command line.
    Mount(MountArgs),
    /// Set, show and check ACL entries inside a tenant.
    #[command(subcommand)]
    Acl(AclCmd),
    /// Manage a tenant's groups.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Directory quotas: limits on the bytes and inodes below a directory.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// Usage and metering per tenant: space and files against limits, ops and bytes read and
    /// written since creation and by hour for the last 7 days.
    Usage {
        #[arg(long)]
        tenant: Option<TenantId>,
        #[arg(long)]
        json: bool,
    },
    /// Read a tenant's audit log of denials.
    Audit {
        #[arg(long)]
        tenant: TenantId,
        /// Only records from this long ago (1h, 30m) or since this time (2026-11-23T06:00:00Z).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check tenants' stores against their invariants; exit 0 when clean, 1 when a problem
    /// was found (and, with --repair, fixed).
    Fsck {
        /// Check one tenant (default: all).
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Fix what is found. Refused while the tenant is mounted.
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// Unmount a tenantfs mount and wait for its daemon to exit.
    Umount {
        mountpoint: PathBuf,
        /// Detach now even if files are still open there; the daemon exits when they close.
        #[arg(long)]
        lazy: bool,
    },
}

pub fn run() -> i32 {
    if std::env::args().skip(1).any(|a| keys::looks_like_key(&a)) {
        crate::say!(
            "error: a key was given on the command line, where other users can read it (ps, shell history); \
             it was not used. Pass it with --key-file FILE, TENANTFS_KEY, or on stdin"
        );
        return 2;
    }
    crate::private::restrict_umask();
    let cli = Cli::parse();
    crate::logging::init();
    match dispatch(cli) {
        Ok(()) => 0,
        Err(Error::Denied) => 1,
        Err(e) => {
            crate::say!("error: {e}");
            1
        }
    }
}

/// A path made absolute against the working directory, for configuration kept on disk.
fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn dispatch(cli: Cli) -> Result<()> {
    let store_path = cli.store;
    match cli.cmd {
        Command::Init {
            meta,
            meta_password_file,
        } => match Store::init(
            &store_path,
            meta.map(|url| MetaSpec {
                url,
                password_file: meta_password_file.map(|p| crate::cli::absolute(&p)),
            })
            .as_ref(),
        )? {
            InitOutcome::Created => {
                crate::say!("created store at {}", store_path.display());
                Ok(())
            }
            InitOutcome::Joined => {
                crate::say!(
                    "joined the store in {} at {}",
                    Store::open(&store_path)?.meta_location(),
                    store_path.display()
                );
                Ok(())
            }
            InitOutcome::AlreadyThere => {
                crate::say!(
                    "store already exists at {}; left as it is",
                    store_path.display()
                );
                Ok(())
            }
        },
        Command::Tenant(cmd) => tenant::tenant(&Store::open(&store_path)?, cmd),
        Command::Store(cmd) => store::store(&Store::open(&store_path)?, cmd),
        Command::Key(cmd) => key::key(&Store::open(&store_path)?, cmd),
        Command::Mount(args) => mount::mount(&Store::open(&store_path)?, args),
        Command::Umount { mountpoint, lazy } => daemon::umount(&mountpoint, lazy),
        Command::Acl(cmd) => policy::acl(&Store::open(&store_path)?, cmd),
        Command::Group(cmd) => policy::group(&Store::open(&store_path)?, cmd),
        Command::Quota(cmd) => quota::quota(&Store::open(&store_path)?, cmd),
        Command::Usage { tenant, json } => report::usage(&Store::open(&store_path)?, tenant, json),
        Command::Audit {
            tenant,
            since,
            json,
        } => report::audit(&Store::open(&store_path)?, &tenant, since, json),
        Command::Fsck {
            tenant,
            repair,
            json,
        } => report::fsck(&Store::open(&store_path)?, tenant, repair, json),
    }
}

pub(super) fn parse_on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, not {s:?}")),
    }
}
