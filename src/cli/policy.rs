//! `tenantfs acl` and `tenantfs group`: who may do what inside a tenant.

use clap::Subcommand;

use super::show::{print_json, table};
use crate::admin;
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::policy::EntrySpec;
use crate::store::Store;

#[derive(Subcommand)]
pub(super) enum AclCmd {
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
pub(super) enum GroupCmd {
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

pub(super) fn acl(store: &Store, cmd: AclCmd) -> Result<()> {
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

pub(super) fn group(store: &Store, cmd: GroupCmd) -> Result<()> {
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
