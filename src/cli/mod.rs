//! The `tenantfs` command line: parse, call the library, print a table or `--json`.
//! Errors print as `error: …` on stderr with a non-zero exit.

mod key;
mod mount;
mod policy;
mod quota;
mod report;
mod show;
mod tenant;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::daemon;
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::keys;
use crate::store::{InitOutcome, Store};
use key::KeyCmd;
use mount::MountArgs;
use policy::{AclCmd, GroupCmd};
use quota::QuotaCmd;
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
    /// Create a store (idempotent; never touches an existing one).
    Init,
    /// Create, list and show tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
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

fn dispatch(cli: Cli) -> Result<()> {
    let store_path = cli.store;
    match cli.cmd {
        Command::Init => match Store::init(&store_path)? {
            InitOutcome::Created => {
                crate::say!("created store at {}", store_path.display());
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
