//! `tenantfs tenant`: create, list, show and change tenants and their limits.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::parse_on_off;
use super::show::{print_json, table, yes_no};
use crate::error::{Error, Result};
use crate::ids::{TenantId, parse_size};
use crate::store::Store;

#[derive(Subcommand)]
pub(super) enum TenantCmd {
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
pub(super) struct Limits {
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

pub(super) fn tenant(store: &Store, cmd: TenantCmd) -> Result<()> {
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
