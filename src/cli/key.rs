//! `tenantfs key`: create, list and revoke API keys.

use std::time::Duration;

use clap::Subcommand;

use super::show::{print_json, table};
use crate::catalog::NewKeySpec;
use crate::error::Result;
use crate::ids::{Scope, Subject, TenantId, parse_duration, parse_root};
use crate::store::Store;

#[derive(Subcommand)]
pub(super) enum KeyCmd {
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

pub(super) fn key(store: &Store, cmd: KeyCmd) -> Result<()> {
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
