//! `tenantfs quota`: limits on the bytes and inodes below a directory.

use clap::Subcommand;

use super::show::{print_json, table};
use crate::admin;
use crate::error::{Error, Result};
use crate::ids::{TenantId, parse_size};
use crate::store::Store;

#[derive(Subcommand)]
pub(super) enum QuotaCmd {
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

pub(super) fn quota(store: &Store, cmd: QuotaCmd) -> Result<()> {
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
