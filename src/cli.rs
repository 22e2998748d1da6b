//! The `tenantfs` command line: parse, call the library, print a table or `--json`.
//! Errors print as `error: …` on stderr with a non-zero exit.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::admin;
use crate::catalog::NewKeySpec;
use crate::daemon::{self, MountRequest};
use crate::error::{Context, Error, Result};
use crate::ids::{Scope, Subject, TenantId, parse_duration, parse_root, parse_size};
use crate::keys;
use crate::policy::EntrySpec;
use crate::store::{InitOutcome, Store};

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

#[derive(Subcommand)]
enum TenantCmd {
    /// Create a tenant.
    Create {
        /// 1-63 characters of a-z, 0-9 and '-'.
        id: TenantId,
        /// A display name.
        #[arg(long)]
        name: Option<String>,
        /// Leave out the default `group:everyone:editor` entry on the root.
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        limits: Limits,
    },
    /// Change a tenant's limits; live mounts apply them within a second.
    Set {
        id: TenantId,
        #[command(flatten)]
        limits: Limits,
        /// Let read-only opens read file content straight through the kernel (FUSE
        /// passthrough): native read speed, but such reads are not metered, not re-checked
        /// against ACLs, and survive a key revoke until the file is closed. Off by default;
        /// ignored while a byte rate limit is set. See SEMANTICS.md.
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        passthrough_reads: Option<bool>,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant with its usage.
    Show {
        id: TenantId,
        #[arg(long)]
        json: bool,
    },
}

/// A tenant's quota. Sizes take K, M, G and T (powers of 1024); 0 is unlimited.
#[derive(Args)]
struct Limits {
    /// Most bytes of file content the tenant may hold.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    max_bytes: Option<u64>,
    /// Most files, directories and links the tenant may hold.
    #[arg(long, value_name = "N")]
    max_inodes: Option<u64>,
    /// Ops a second across all the tenant's mounts; more are delayed, not failed.
    #[arg(long, value_name = "N")]
    max_ops_per_sec: Option<u64>,
    /// Bytes read and written a second across all the tenant's mounts; more are delayed.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    max_bytes_per_sec: Option<u64>,
}

impl Limits {
    fn any(&self) -> bool {
        self.max_bytes.is_some()
            || self.max_inodes.is_some()
            || self.max_ops_per_sec.is_some()
            || self.max_bytes_per_sec.is_some()
    }

    fn apply(&self, store: &Store, id: &TenantId) -> Result<()> {
        store.set_limits(
            id,
            self.max_bytes,
            self.max_inodes,
            self.max_ops_per_sec,
            self.max_bytes_per_sec,
        )
    }
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Create a key. The key is printed once, alone, on stdout; its details go to stderr.
    Create {
        #[arg(long)]
        tenant: TenantId,
        /// KIND:NAME with KIND user, agent or service.
        #[arg(long)]
        subject: Subject,
        #[arg(long, value_enum, default_value_t = Scope::Write)]
        scope: Scope,
        /// Confine the key's mounts to this sub-tree of the tenant.
        #[arg(long, default_value = "/", value_parser = parse_root)]
        root: String,
        /// Expire after this long: 90s, 15m, 12h, 30d.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// List keys (never the keys themselves).
    List {
        #[arg(long)]
        tenant: Option<TenantId>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key; live mounts that use it end within two seconds.
    Revoke { key_id: String },
}

#[derive(Subcommand)]
enum AclCmd {
    /// Set entries on PATH: KIND:NAME:MASK (rwx, r-x, --- to deny), KIND:NAME:ROLE
    /// (viewer, editor, owner), or KIND:NAME:- to remove that subject's entry.
    Set {
        #[arg(long)]
        tenant: TenantId,
        path: String,
        #[arg(required = true, value_parser = clap::value_parser!(EntrySpec))]
        entries: Vec<EntrySpec>,
    },
    /// Show PATH's explicit entries and every known subject's effective rights there.
    Get {
        #[arg(long)]
        tenant: TenantId,
        path: String,
        #[arg(long)]
        json: bool,
    },
    /// Print allowed or denied for SUBJECT wanting PERM (r, w, x, rw, ...) on PATH, and the
    /// entry that decided. Exits 0 when allowed, 1 when denied.
    Check {
        #[arg(long)]
        tenant: TenantId,
        subject: String,
        perm: String,
        path: String,
    },
}

#[derive(Subcommand)]
enum QuotaCmd {
    /// Limit what PATH's subtree may hold. Sizes take K, M, G and T (powers of 1024); 0 is
    /// unlimited, and a limit left out stays as it is. Live mounts apply it within a second.
    Set {
        #[arg(long)]
        tenant: TenantId,
        path: String,
        /// Most bytes of file content below PATH.
        #[arg(long, value_parser = parse_size, value_name = "SIZE")]
        max_bytes: Option<u64>,
        /// Most files, directories and links below PATH.
        #[arg(long, value_name = "N")]
        max_inodes: Option<u64>,
    },
    /// Show PATH's quota: its limits and what its subtree holds.
    Get {
        #[arg(long)]
        tenant: TenantId,
        path: String,
        #[arg(long)]
        json: bool,
    },
    /// List every directory quota of a tenant.
    List {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        json: bool,
    },
    /// Remove PATH's quota.
    Rm {
        #[arg(long)]
        tenant: TenantId,
        path: String,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Add members (subjects or other groups) to GROUP; cycles are refused.
    Add {
        #[arg(long)]
        tenant: TenantId,
        group: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members from GROUP.
    Remove {
        #[arg(long)]
        tenant: TenantId,
        group: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// List groups and their direct members.
    List {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct MountArgs {
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
        Command::Tenant(cmd) => tenant(&Store::open(&store_path)?, cmd),
        Command::Key(cmd) => key(&Store::open(&store_path)?, cmd),
        Command::Mount(args) => {
            let store = Store::open(&store_path)?;
            let key = read_key(args.key_file.as_deref())?;
            daemon::mount(
                &store,
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
        Command::Umount { mountpoint, lazy } => daemon::umount(&mountpoint, lazy),
        Command::Acl(cmd) => acl(&Store::open(&store_path)?, cmd),
        Command::Group(cmd) => group(&Store::open(&store_path)?, cmd),
        Command::Quota(cmd) => quota(&Store::open(&store_path)?, cmd),
        Command::Usage { tenant, json } => usage(&Store::open(&store_path)?, tenant, json),
        Command::Audit {
            tenant,
            since,
            json,
        } => audit(&Store::open(&store_path)?, &tenant, since, json),
        Command::Fsck {
            tenant,
            repair,
            json,
        } => fsck(&Store::open(&store_path)?, tenant, repair, json),
    }
}

fn tenant(store: &Store, cmd: TenantCmd) -> Result<()> {
    match cmd {
        TenantCmd::Set {
            id,
            limits,
            passthrough_reads,
        } => {
            if !limits.any() && passthrough_reads.is_none() {
                return Err(Error::Usage(
                    "nothing to set: pass --max-bytes, --max-inodes, --max-ops-per-sec, --max-bytes-per-sec or --passthrough-reads".into(),
                ));
            }
            store.catalog()?.tenant(&id)?;
            if limits.any() {
                limits.apply(store, &id)?;
                crate::say!("updated the limits of tenant {id}");
            }
            if let Some(on) = passthrough_reads {
                store.set_passthrough_reads(&id, on)?;
                crate::say!(
                    "passthrough reads {} for tenant {id}; files opened from now on use it",
                    if on { "on" } else { "off" }
                );
            }
            Ok(())
        }
        TenantCmd::Create {
            id,
            name,
            private,
            limits,
        } => {
            let owner = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            store.create_tenant(&id, name.as_deref().unwrap_or(id.as_str()), owner, private)?;
            if limits.any() {
                limits.apply(store, &id)?;
            }
            crate::say!("created tenant {id}");
            Ok(())
        }
        TenantCmd::List { json } => {
            let rows = store.catalog()?.tenants()?;
            if json {
                return print_json(&rows);
            }
            table(
                &["ID", "NAME", "CREATED", "SUSPENDED"],
                rows.iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.created_at.clone(),
                            yes_no(t.suspended),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        TenantCmd::Show { id, json } => {
            let catalog = store.catalog()?;
            let t = catalog.tenant(&id)?;
            let keys = catalog.keys(Some(&id))?;
            let usage = store.usage(&id)?;
            #[derive(Serialize)]
            struct Show<'a> {
                #[serde(flatten)]
                tenant: &'a crate::catalog::TenantRow,
                keys: usize,
                live_keys: usize,
                #[serde(flatten)]
                usage: &'a crate::store::TenantUsage,
                passthrough_reads: bool,
            }
            let live_keys = keys.iter().filter(|k| !k.revoked).count();
            let show = Show {
                tenant: &t,
                keys: keys.len(),
                live_keys,
                usage: &usage,
                passthrough_reads: store.passthrough_reads(&id)?,
            };
            if json {
                return print_json(&show);
            }
            println!("id:          {}", t.id);
            println!("name:        {}", t.name);
            println!("created:     {}", t.created_at);
            println!("suspended:   {}", yes_no(t.suspended));
            println!("keys:        {} ({} live)", keys.len(), live_keys);
            println!("bytes used:  {}", usage.bytes_used);
            println!("inodes used: {}", usage.inodes_used);
            let limit = |n: u64| {
                if n == 0 {
                    "unlimited".to_string()
                } else {
                    n.to_string()
                }
            };
            println!("max bytes:   {}", limit(usage.max_bytes));
            println!("max inodes:  {}", limit(usage.max_inodes));
            println!("passthrough: {}", yes_no(show.passthrough_reads));
            Ok(())
        }
    }
}

fn key(store: &Store, cmd: KeyCmd) -> Result<()> {
    let catalog = store.catalog()?;
    match cmd {
        KeyCmd::Create {
            tenant,
            subject,
            scope,
            root,
            expires,
        } => {
            let (key, row) = catalog.insert_key(&NewKeySpec {
                tenant: &tenant,
                subject: &subject,
                scope,
                root: &root,
                expires_in: expires,
            })?;
            println!("{}", key.secret);
            crate::say!(
                "created key {} for {} in tenant {} (scope {}, root {}, expires {}); the key above is shown only once",
                row.id,
                row.subject,
                row.tenant,
                row.scope,
                row.root,
                row.expires_at.as_deref().unwrap_or("never")
            );
            Ok(())
        }
        KeyCmd::List { tenant, json } => {
            let rows = catalog.keys(tenant.as_ref())?;
            if json {
                return print_json(&rows);
            }
            table(
                &[
                    "ID",
                    "TENANT",
                    "SUBJECT",
                    "SCOPE",
                    "ROOT",
                    "EXPIRES",
                    "LAST USED",
                    "REVOKED",
                ],
                rows.iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.tenant.clone(),
                            k.subject.clone(),
                            k.scope.clone(),
                            k.root.clone(),
                            k.expires_at.clone().unwrap_or_else(|| "never".into()),
                            k.last_used_at.clone().unwrap_or_else(|| "never".into()),
                            k.revoked_at.clone().unwrap_or_else(|| "no".into()),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        KeyCmd::Revoke { key_id } => {
            let row = catalog.revoke_key(&key_id)?;
            crate::say!(
                "revoked key {} ({} in tenant {}); live mounts using it end within 2 seconds",
                row.id,
                row.subject,
                row.tenant
            );
            Ok(())
        }
    }
}

/// The key from --key-file, else TENANTFS_KEY, else stdin.
fn acl(store: &Store, cmd: AclCmd) -> Result<()> {
    match cmd {
        AclCmd::Set {
            tenant,
            path,
            entries,
        } => {
            let mut meta = store.open_meta(&tenant)?;
            let ino = admin::resolve(&meta, &path)?;
            admin::set_entries(&mut meta, ino, &entries)?;
            crate::say!(
                "updated {} entr{} on {path} in tenant {tenant}",
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" }
            );
            Ok(())
        }
        AclCmd::Get { tenant, path, json } => {
            let meta = store.open_meta(&tenant)?;
            let known = store
                .catalog()?
                .keys(Some(&tenant))?
                .into_iter()
                .map(|k| k.subject);
            let view = admin::get(&meta, &path, known)?;
            if json {
                return print_json(&view);
            }
            println!("# {path}");
            if view.entries.is_empty() {
                println!("# no explicit entries: rights are inherited");
            }
            for e in &view.entries {
                println!("{e}");
            }
            println!("# effective rights");
            table(
                &["SUBJECT", "RIGHTS"],
                view.effective
                    .iter()
                    .map(|e| vec![e.subject.clone(), e.rights.to_string()])
                    .collect(),
            );
            Ok(())
        }
        AclCmd::Check {
            tenant,
            subject,
            perm,
            path,
        } => {
            let meta = store.open_meta(&tenant)?;
            let want = admin::parse_perm(&perm)?;
            let c = admin::check(&meta, &subject, want, &path)?;
            let verdict = if c.allowed { "allowed" } else { "denied" };
            match &c.decided_at {
                Some(at) => {
                    let entries: Vec<String> = c.entries.iter().map(|e| e.to_string()).collect();
                    println!(
                        "{verdict}: {subject} has {} on {path}, decided at {at} by {}",
                        c.rights,
                        entries.join(", ")
                    );
                }
                None => println!(
                    "{verdict}: no entry on {path} or above it matches {subject}, so nothing is granted"
                ),
            }
            if c.allowed {
                Ok(())
            } else {
                Err(Error::Denied)
            }
        }
    }
}

fn quota(store: &Store, cmd: QuotaCmd) -> Result<()> {
    let show = |q: &admin::QuotaView| {
        let limit = |max: u64| {
            if max == 0 {
                "unlimited".to_string()
            } else {
                max.to_string()
            }
        };
        vec![
            q.path.clone(),
            q.bytes_used.to_string(),
            limit(q.max_bytes),
            q.inodes_used.to_string(),
            limit(q.max_inodes),
            q.bytes_reserved.to_string(),
        ]
    };
    const HEADER: [&str; 6] = [
        "PATH",
        "BYTES",
        "MAX_BYTES",
        "INODES",
        "MAX_INODES",
        "RESERVED",
    ];
    match cmd {
        QuotaCmd::Set {
            tenant,
            path,
            max_bytes,
            max_inodes,
        } => {
            if max_bytes.is_none() && max_inodes.is_none() {
                return Err(Error::Usage(
                    "nothing to set: pass --max-bytes SIZE, --max-inodes N, or both".into(),
                ));
            }
            let mut meta = store.open_meta(&tenant)?;
            match admin::set_quota(&mut meta, &path, max_bytes, max_inodes)? {
                None => {
                    crate::say!("{path} in tenant {tenant} has no limits now; its quota is gone")
                }
                Some(q) => {
                    if (q.max_bytes > 0 && q.bytes_used > q.max_bytes)
                        || (q.max_inodes > 0 && q.inodes_used > q.max_inodes)
                    {
                        crate::say!(
                            "warning: {path} already holds more ({} bytes, {} inodes) than the new limits; nothing is deleted, and it cannot grow until it is under them",
                            q.bytes_used,
                            q.inodes_used
                        );
                    }
                    crate::say!("set the quota on {path} in tenant {tenant}");
                }
            }
            store.catalog()?.audit(
                "quota.set",
                Some(tenant.as_str()),
                &format!("path={path} max_bytes={max_bytes:?} max_inodes={max_inodes:?}"),
            )
        }
        QuotaCmd::Get { tenant, path, json } => {
            let q = admin::get_quota(&store.open_meta(&tenant)?, &path)?;
            if json {
                return print_json(&q);
            }
            table(&HEADER, vec![show(&q)]);
            Ok(())
        }
        QuotaCmd::List { tenant, json } => {
            let all = admin::list_quotas(&store.open_meta(&tenant)?)?;
            if json {
                return print_json(&all);
            }
            table(&HEADER, all.iter().map(show).collect());
            Ok(())
        }
        QuotaCmd::Rm { tenant, path } => {
            admin::remove_quota(&mut store.open_meta(&tenant)?, &path)?;
            crate::say!("removed the quota on {path} in tenant {tenant}");
            store
                .catalog()?
                .audit("quota.rm", Some(tenant.as_str()), &format!("path={path}"))
        }
    }
}

fn group(store: &Store, cmd: GroupCmd) -> Result<()> {
    match cmd {
        GroupCmd::Add {
            tenant,
            group,
            members,
        } => {
            admin::add_members(&mut store.open_meta(&tenant)?, &group, &members)?;
            crate::say!("added {} to {group} in tenant {tenant}", members.join(", "));
            Ok(())
        }
        GroupCmd::Remove {
            tenant,
            group,
            members,
        } => {
            admin::remove_members(&mut store.open_meta(&tenant)?, &group, &members)?;
            crate::say!(
                "removed {} from {group} in tenant {tenant}",
                members.join(", ")
            );
            Ok(())
        }
        GroupCmd::List { tenant, json } => {
            let groups = admin::groups(&store.open_meta(&tenant)?)?;
            if json {
                return print_json(&groups);
            }
            table(
                &["GROUP", "MEMBERS"],
                groups
                    .iter()
                    .map(|g| vec![g.group.clone(), g.members.join(" ")])
                    .collect(),
            );
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct Hour {
    hour: String,
    ops: u64,
    bytes_read: u64,
    bytes_written: u64,
}

#[derive(Serialize)]
struct UsageReport {
    tenant: String,
    bytes_used: u64,
    inodes_used: u64,
    /// 0 is unlimited.
    max_bytes: u64,
    max_inodes: u64,
    ops: u64,
    bytes_read: u64,
    bytes_written: u64,
    /// The last 7 days, by hour, hours with activity only.
    hourly: Vec<Hour>,
}

/// The tenant named, checked to exist, or every tenant.
fn selected(store: &Store, tenant: Option<TenantId>) -> Result<Vec<TenantId>> {
    let catalog = store.catalog()?;
    match tenant {
        Some(t) => {
            catalog.tenant(&t)?;
            Ok(vec![t])
        }
        None => catalog
            .tenants()?
            .into_iter()
            .map(|t| t.id.parse().map_err(Error::Usage))
            .collect(),
    }
}

fn usage(store: &Store, tenant: Option<TenantId>, json: bool) -> Result<()> {
    let tenants = selected(store, tenant)?;
    let week_ago = crate::time::now_secs() - 7 * 24 * 3600;
    let mut reports = Vec::new();
    for t in tenants {
        let u = store.usage(&t)?;
        let rows = store.open_meta(&t)?.read().metering(0)?;
        let total = |f: fn(&(i64, u64, u64, u64)) -> u64| rows.iter().map(f).sum::<u64>();
        reports.push(UsageReport {
            tenant: t.to_string(),
            bytes_used: u.bytes_used,
            inodes_used: u.inodes_used,
            max_bytes: u.max_bytes,
            max_inodes: u.max_inodes,
            ops: total(|r| r.1),
            bytes_read: total(|r| r.2),
            bytes_written: total(|r| r.3),
            hourly: rows
                .iter()
                .filter(|r| r.0 >= week_ago)
                .map(|r| Hour {
                    hour: crate::time::format_secs(r.0),
                    ops: r.1,
                    bytes_read: r.2,
                    bytes_written: r.3,
                })
                .collect(),
        });
    }
    if json {
        return print_json(&reports);
    }
    let limit = |used: u64, max: u64| {
        if max == 0 {
            used.to_string()
        } else {
            format!("{used}/{max}")
        }
    };
    table(
        &["TENANT", "BYTES", "INODES", "OPS", "READ", "WRITTEN"],
        reports
            .iter()
            .map(|r| {
                vec![
                    r.tenant.clone(),
                    limit(r.bytes_used, r.max_bytes),
                    limit(r.inodes_used, r.max_inodes),
                    r.ops.to_string(),
                    r.bytes_read.to_string(),
                    r.bytes_written.to_string(),
                ]
            })
            .collect(),
    );
    Ok(())
}

fn audit(store: &Store, tenant: &TenantId, since: Option<String>, json: bool) -> Result<()> {
    store.catalog()?.tenant(tenant)?;
    let since = match since {
        None => None,
        Some(s) => Some(match humantime::parse_duration(&s) {
            Ok(ago) => crate::time::now_secs() - ago.as_secs() as i64,
            Err(_) => humantime::parse_rfc3339_weak(&s)
                .map(|t| crate::time::to_nanos(t) / 1_000_000_000)
                .map_err(|_| Error::Usage(format!("invalid --since {s:?}: write a duration like 1h or a time like 2026-11-23T06:00:00Z")))?,
        }),
    };
    let records = crate::audit::read(&store.audit_log(tenant), since)
        .context(|| format!("cannot read the audit log of {tenant}"))?;
    if json {
        return print_json(&records);
    }
    table(
        &["TIME", "SUBJECT", "OP", "PATH", "ERRNO", "SUPPRESSED"],
        records
            .iter()
            .map(|r| {
                vec![
                    crate::time::format_secs(r.at),
                    r.subject.clone(),
                    r.op.clone(),
                    r.path.clone(),
                    r.errno.to_string(),
                    r.suppressed.to_string(),
                ]
            })
            .collect(),
    );
    Ok(())
}

/// Exit 1 (through `Error::Findings`) when anything was found, repaired or not.
fn fsck(store: &Store, tenant: Option<TenantId>, repair: bool, json: bool) -> Result<()> {
    let tenants = selected(store, tenant)?;
    let reports = tenants
        .iter()
        .map(|t| crate::fsck::check(store, t, repair))
        .collect::<Result<Vec<_>>>()?;
    if json {
        print_json(&reports)?;
    } else {
        for r in &reports {
            if r.clean() {
                println!("{}: clean ({} live mounts)", r.tenant, r.live_mounts);
            }
            for f in &r.findings {
                let how = match (r.repaired, f.recoverable) {
                    (true, _) => " [repaired]",
                    (false, true) => " [the next mount recovers it]",
                    (false, false) => "",
                };
                println!("{}: {}: {}{how}", r.tenant, f.kind, f.detail);
            }
        }
    }
    let found: usize = reports.iter().map(|r| r.findings.len()).sum();
    if found > 0 {
        return Err(Error::Findings(found));
    }
    Ok(())
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

fn parse_on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, not {s:?}")),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

fn print_json<T: Serialize>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Usage(e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}
