//! Tenant administration on the store side: ACL entries and groups, as `tenantfs acl` and
//! `tenantfs group` run them. Every change bumps the tenant's policy version in the same
//! transaction, which is how live mounts learn of it.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fs::access::Access;
use crate::meta::MetaResult;
use crate::meta::{Meta, Tx};
use crate::policy::{Entry, EntrySpec, Rights, is_group, parse_subject};
use crate::types::{Ino, ROOT_INO};

/// Resolves an absolute path in the tenant to its inode.
pub fn resolve(meta: &Meta, path: &str) -> Result<Ino> {
    let mut ino = ROOT_INO;
    let tx = meta.read();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        match tx.lookup(ino, part.as_bytes())? {
            Some((child, _)) => ino = child,
            None => return Err(Error::Usage(format!("{path} does not exist in the tenant"))),
        }
    }
    Ok(ino)
}

/// Applies entry changes to one inode: set, replace or remove per subject.
pub fn set_entries(meta: &mut Meta, ino: Ino, specs: &[EntrySpec]) -> Result<()> {
    meta.write(|tx| -> MetaResult<()> {
        for spec in specs {
            match spec {
                EntrySpec::Set(subject, rights) => tx.set_acl(ino, subject, *rights)?,
                EntrySpec::Remove(subject) => {
                    tx.remove_acl(ino, subject)?;
                }
            }
        }
        tx.bump_policy()
    })?;
    Ok(())
}

/// Replaces every explicit entry of an inode (the `tenantfs.acl` xattr's write).
pub fn replace_entries(tx: &Tx<'_>, ino: Ino, entries: &[Entry]) -> MetaResult<()> {
    for old in tx.acl(ino)? {
        tx.remove_acl(ino, &old.subject)?;
    }
    for e in entries {
        tx.set_acl(ino, &e.subject, e.rights)?;
    }
    tx.bump_policy()
}

/// Parses the `tenantfs.acl` xattr value: entries separated by newlines, commas or spaces.
pub fn parse_entries(text: &str) -> std::result::Result<Vec<Entry>, String> {
    text.split(|c: char| c == '\n' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<EntrySpec>()? {
            EntrySpec::Set(subject, rights) => Ok(Entry { subject, rights }),
            EntrySpec::Remove(_) => Err(format!(
                "{s}: write the entries to keep; a removal has no place here"
            )),
        })
        .collect()
}

/// The `tenantfs.acl` xattr's read: one entry a line.
pub fn format_entries(entries: &[Entry]) -> String {
    entries.iter().map(|e| format!("{e}\n")).collect()
}

#[derive(Debug, Serialize)]
pub struct AclView {
    pub path: String,
    pub entries: Vec<Entry>,
    /// Each known subject with any rights here, and those rights.
    pub effective: Vec<Effective>,
}

#[derive(Debug, Serialize)]
pub struct Effective {
    pub subject: String,
    pub rights: Rights,
}

/// Explicit entries of `path` and the effective rights of every known subject there.
/// `known` adds subjects from outside the tenant database (the subjects of its keys).
pub fn get(meta: &Meta, path: &str, known: impl IntoIterator<Item = String>) -> Result<AclView> {
    let ino = resolve(meta, path)?;
    let tx = meta.read();
    let mut subjects: BTreeSet<String> = known.into_iter().collect();
    subjects.extend(tx.acl_subjects()?.into_iter().filter(|s| !is_group(s)));
    for members in tx.groups()?.members().values() {
        subjects.extend(members.iter().filter(|m| !is_group(m)).cloned());
    }
    let mut effective = Vec::new();
    for subject in subjects {
        let rights = Access::new(&subject, false, &*tx)?
            .explain(&*tx, ino)?
            .rights;
        if rights != Rights::NONE {
            effective.push(Effective { subject, rights });
        }
    }
    Ok(AclView {
        path: path.to_string(),
        entries: tx.acl(ino)?,
        effective,
    })
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub allowed: bool,
    pub rights: Rights,
    /// Where the deciding entries are, if any matched.
    pub decided_at: Option<String>,
    pub entries: Vec<Entry>,
}

/// Whether `subject` has `want` on `path`, and what decided it.
pub fn check(meta: &Meta, subject: &str, want: Rights, path: &str) -> Result<Check> {
    let subject = parse_subject(subject).map_err(Error::Usage)?;
    let ino = resolve(meta, path)?;
    let tx = meta.read();
    let d = Access::new(&subject, false, &*tx)?.explain(&*tx, ino)?;
    Ok(Check {
        allowed: d.rights.has(want),
        rights: d.rights,
        decided_at: d.decided_at.map(|i| tx.path_of(i)),
        entries: d.matched,
    })
}

/// `r`, `w`, `x` or a combination, for `acl check`.
pub fn parse_perm(s: &str) -> Result<Rights> {
    let mut bits = 0u8;
    for c in s.chars() {
        bits |= match c {
            'r' => 4,
            'w' => 2,
            'x' => 1,
            _ => {
                return Err(Error::Usage(format!(
                    "invalid permission {s:?}: write r, w, x or a combination like rw"
                )));
            }
        };
    }
    if bits == 0 {
        return Err(Error::Usage(
            "name a permission to check: r, w, x or a combination".into(),
        ));
    }
    Ok(Rights::from_bits(bits))
}

pub fn add_members(meta: &mut Meta, group: &str, members: &[String]) -> Result<()> {
    let group = parse_subject(group).map_err(Error::Usage)?;
    meta.write(|tx| -> Result<()> {
        for m in members {
            let m = parse_subject(m).map_err(Error::Usage)?;
            tx.groups()?.check_add(&group, &m).map_err(Error::Usage)?;
            tx.add_member(&group, &m)?;
        }
        tx.bump_policy()?;
        Ok(())
    })
}

pub fn remove_members(meta: &mut Meta, group: &str, members: &[String]) -> Result<()> {
    meta.write(|tx| -> Result<()> {
        for m in members {
            if !tx.remove_member(group, m)? {
                return Err(Error::Usage(format!("{m} is not a member of {group}")));
            }
        }
        tx.bump_policy()?;
        Ok(())
    })
}

#[derive(Debug, Serialize)]
pub struct GroupView {
    pub group: String,
    pub members: Vec<String>,
}

pub fn groups(meta: &Meta) -> Result<Vec<GroupView>> {
    Ok(meta
        .read()
        .groups()?
        .members()
        .iter()
        .map(|(g, m)| GroupView {
            group: g.clone(),
            members: m.iter().cloned().collect(),
        })
        .collect())
}

/// A directory quota as `tenantfs quota get` and `list` show it. Limits of 0 are unlimited.
#[derive(Debug, Serialize)]
pub struct QuotaView {
    pub path: String,
    pub max_bytes: u64,
    pub max_inodes: u64,
    pub bytes_used: u64,
    pub inodes_used: u64,
    /// Bytes open files hold reserved under it, counted against `max_bytes`.
    pub bytes_reserved: u64,
}

fn quota_view(tx: &Tx<'_>, q: &crate::meta::DirQuota) -> QuotaView {
    QuotaView {
        path: tx.path_of(q.ino),
        max_bytes: q.max_bytes,
        max_inodes: q.max_inodes,
        bytes_used: q.bytes,
        inodes_used: q.inodes,
        bytes_reserved: q.reserved,
    }
}

fn quota_dir(meta: &Meta, path: &str) -> Result<Ino> {
    let ino = resolve(meta, path)?;
    match meta.read().inode(ino)? {
        Some(a) if a.kind == crate::types::Kind::Dir => Ok(ino),
        _ => Err(Error::Usage(format!(
            "{path} is not a directory: quotas go on directories and cover what is below them"
        ))),
    }
}

/// Sets a directory's quota; `None` keeps a limit as it is, 0 makes it unlimited. Returns the
/// quota as it now stands, or `None` when both limits are now unlimited (the quota is gone).
pub fn set_quota(
    meta: &mut Meta,
    path: &str,
    max_bytes: Option<u64>,
    max_inodes: Option<u64>,
) -> Result<Option<QuotaView>> {
    let ino = quota_dir(meta, path)?;
    meta.write(|tx| -> Result<Option<QuotaView>> {
        let now = tx.dir_quota(ino)?.unwrap_or_default();
        crate::quota::set(
            tx,
            ino,
            max_bytes.unwrap_or(now.max_bytes),
            max_inodes.unwrap_or(now.max_inodes),
        )?;
        Ok(tx.dir_quota(ino)?.map(|q| quota_view(tx, &q)))
    })
}

pub fn get_quota(meta: &Meta, path: &str) -> Result<QuotaView> {
    let ino = quota_dir(meta, path)?;
    let tx = meta.read();
    match tx.dir_quota(ino)? {
        Some(q) => Ok(quota_view(&*tx, &q)),
        None => Err(Error::Usage(format!(
            "{path} has no quota; set one with `tenantfs quota set`"
        ))),
    }
}

pub fn list_quotas(meta: &Meta) -> Result<Vec<QuotaView>> {
    let tx = meta.read();
    let mut out: Vec<QuotaView> = tx
        .all_dir_quotas()?
        .iter()
        .map(|q| quota_view(&*tx, q))
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

pub fn remove_quota(meta: &mut Meta, path: &str) -> Result<()> {
    let ino = quota_dir(meta, path)?;
    if meta.write(|tx| tx.remove_dir_quota(ino))? {
        Ok(())
    } else {
        Err(Error::Usage(format!("{path} has no quota to remove")))
    }
}
