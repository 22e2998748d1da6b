//! `tenantfs fsck`: checks a tenant's store against the invariants the core keeps, and
//! repairs it on request.
//!
//! What is checked:
//! - every entry names a live inode of the kind it says, inside a directory;
//! - every inode is reachable, a directory from exactly one entry, and its link count equals
//!   its entries (2 plus subdirectories for a directory), and a directory's recorded parent
//!   is the one naming it;
//! - every object belongs to a live inode, and a file's size equals its object's length;
//! - the usage counters equal the sum over the inodes, and each directory quota's counters
//!   equal what its subtree holds;
//! - the `links` rows of files with several links match their entries.
//!
//! State a crashed mount left (files it was writing, files it held open after unlink, objects
//! waiting for deletion) is reported as recoverable: the next mount fixes it the same way
//! `--repair` does. A check is safe while the tenant is mounted (live mounts' state is not a
//! problem); a repair is refused then.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{Context, Error, Result};
use crate::ids::TenantId;
use crate::meta::MetaResult;
use crate::meta::{NewInode, SessionTable};
use crate::objects::ObjectStore;
use crate::quota;
use crate::store::{Store, live_sessions, recover_dead_sessions};
use crate::time::now_nanos;
use crate::types::{Attr, Extent, Ino, Kind, ROOT_INO};

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    /// The next mount would fix it on its own.
    pub recoverable: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tenant: String,
    pub live_mounts: usize,
    pub findings: Vec<Finding>,
    pub repaired: bool,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// A fix the repair applies, in one transaction.
enum Fix {
    DeleteEntry(Ino, Vec<u8>),
    EntryKind(Ino, Vec<u8>, Kind),
    Nlink(Ino, u32),
    Parent(Ino, Ino),
    Adopt(Ino, Kind),
    Size(Ino, Extent, i64, i64),
    DeleteObject(Ino),
    Usage,
    Links,
    DirUsage,
}

pub fn check(store: &Store, tenant: &TenantId, repair: bool) -> Result<Report> {
    let live: HashSet<String> = live_sessions(store, tenant).into_iter().collect();
    if repair && !live.is_empty() {
        return Err(Error::Usage(format!(
            "tenant {tenant} has {} live mount(s); unmount them before `fsck --repair` (a check without --repair is safe while mounted)",
            live.len()
        )));
    }
    let mut meta = store.open_meta(tenant)?;
    let objects = store.objects(tenant);
    let mut findings = Vec::new();

    // What crashed mounts left behind.
    let (writers, orphans, gc) = meta.snapshot(|tx| {
        Ok((
            tx.all_session_rows(SessionTable::Writers)?,
            tx.all_session_rows(SessionTable::Orphans)?,
            tx.gc_pending()?,
        ))
    })?;
    for (ino, session) in writers.iter().filter(|(_, s)| !live.contains(s)) {
        findings.push(recoverable("crashed-writer", format!(
            "inode {ino} was being written by mount {session}, which is gone; its size comes from its content"
        )));
    }
    for (ino, session) in orphans.iter().filter(|(_, s)| !live.contains(s)) {
        findings.push(recoverable("crashed-orphan", format!(
            "inode {ino} was unlinked while open in mount {session}, which is gone; it is to be deleted"
        )));
    }
    for session in meta
        .read()
        .reserving_sessions()?
        .iter()
        .filter(|s| !live.contains(*s))
    {
        findings.push(recoverable("crashed-reservation", format!(
            "mount {session}, which is gone, still holds bytes reserved against the quota; they go back"
        )));
    }
    for ino in &gc {
        findings.push(recoverable(
            "pending-delete",
            format!("the object of deleted inode {ino} is to be deleted"),
        ));
    }
    if repair && !findings.is_empty() {
        recover_dead_sessions(store, tenant, &mut meta)?;
    }

    // The structure, from one consistent snapshot.
    let (inodes, entries, writers, orphans, ghosts, usage, gc, links, quotas) =
        meta.snapshot(|tx| {
            let held = tx.all_held()?;
            let mut quotas = Vec::new();
            for q in tx.all_dir_quotas()? {
                let counted = match tx.inode(q.ino)? {
                    Some(a) if a.kind == Kind::Dir => Some(quota::recount(tx, q.ino, &held)?),
                    _ => None,
                };
                quotas.push((q, counted));
            }
            Ok((
                tx.all_inodes()?,
                tx.all_entries()?,
                tx.all_session_rows(SessionTable::Writers)?,
                tx.all_session_rows(SessionTable::Orphans)?,
                tx.all_ghosts()?.into_iter().collect::<HashSet<Ino>>(),
                tx.usage()?,
                tx.gc_pending()?,
                tx.all_links()?,
                quotas,
            ))
        })?;
    // Sizes of files being written and inodes held open are the holders' business.
    let in_flight: HashSet<Ino> = writers.iter().map(|(i, _)| *i).collect();
    let held_open: HashSet<Ino> = orphans.iter().map(|(i, _)| *i).collect();
    let pending_delete: HashSet<Ino> = gc.into_iter().collect();
    let by_ino: HashMap<Ino, (&Attr, Ino)> = inodes.iter().map(|(a, p)| (a.ino, (a, *p))).collect();

    let mut fixes = Vec::new();
    let mut refs: HashMap<Ino, Vec<Ino>> = HashMap::new();
    let mut subdirs: HashMap<Ino, u32> = HashMap::new();
    for (parent, name, ino, kind) in &entries {
        let shown = String::from_utf8_lossy(name);
        let parent_is_dir = by_ino.get(parent).is_some_and(|(a, _)| a.kind == Kind::Dir);
        let Some((a, _)) = by_ino.get(ino).filter(|_| parent_is_dir) else {
            findings.push(problem("dangling-entry", format!("entry {shown:?} in {parent} names missing inode {ino} or sits outside a directory")));
            fixes.push(Fix::DeleteEntry(*parent, name.clone()));
            continue;
        };
        if a.kind.code() != *kind {
            findings.push(problem(
                "wrong-kind",
                format!("entry {shown:?} in {parent} records the wrong kind for inode {ino}"),
            ));
            fixes.push(Fix::EntryKind(*parent, name.clone(), a.kind));
        }
        refs.entry(*ino).or_default().push(*parent);
        if a.kind == Kind::Dir {
            *subdirs.entry(*parent).or_default() += 1;
        }
    }
    for (a, recorded_parent) in &inodes {
        let named_by = refs.get(&a.ino).map_or(&[][..], Vec::as_slice);
        let expected = match a.kind {
            Kind::Dir => 2 + subdirs.get(&a.ino).copied().unwrap_or(0),
            _ => named_by.len() as u32,
        };
        if a.ino != ROOT_INO && named_by.is_empty() {
            if held_open.contains(&a.ino) {
                continue;
            }
            findings.push(problem(
                "unreachable",
                format!(
                    "inode {} ({:?}) has no name; repair puts it in /lost+found",
                    a.ino, a.kind
                ),
            ));
            fixes.push(Fix::Adopt(a.ino, a.kind));
            continue;
        }
        if a.kind == Kind::Dir && named_by.len() > 1 {
            findings.push(problem(
                "dir-named-twice",
                format!("directory {} has {} names", a.ino, named_by.len()),
            ));
        }
        if a.nlink != expected {
            findings.push(problem(
                "link-count",
                format!(
                    "inode {} has nlink {} but {} links",
                    a.ino, a.nlink, expected
                ),
            ));
            fixes.push(Fix::Nlink(a.ino, expected));
        }
        if a.kind == Kind::Dir && a.ino != ROOT_INO && named_by.first() != Some(recorded_parent) {
            findings.push(problem(
                "dir-parent",
                format!("directory {} records parent {recorded_parent}", a.ino),
            ));
            fixes.push(Fix::Parent(a.ino, named_by[0]));
        }
    }
    let stored = objects.all().context(|| "cannot list objects".into())?;
    for ino in stored
        .iter()
        .filter(|i| !by_ino.contains_key(i) && !pending_delete.contains(i))
    {
        findings.push(problem(
            "leaked-object",
            format!("object {ino:x} belongs to no inode"),
        ));
        fixes.push(Fix::DeleteObject(*ino));
    }
    let stored: HashSet<Ino> = stored.into_iter().collect();
    for (a, _) in inodes
        .iter()
        .filter(|(a, _)| a.kind == Kind::File && !in_flight.contains(&a.ino))
    {
        let extent = if stored.contains(&a.ino) {
            objects
                .extent(a.ino)
                .context(|| format!("cannot read object {:x}", a.ino))?
                .unwrap_or_default()
        } else {
            Extent::default()
        };
        let len = extent.len;
        if len != a.size {
            findings.push(problem(
                "size-mismatch",
                format!(
                    "inode {} records {} bytes, its content has {len}",
                    a.ino, a.size
                ),
            ));
            fixes.push(Fix::Size(a.ino, extent, a.mtime, a.ctime));
        }
    }
    // Ghosts gave their usage back when they lost their last name.
    let counted = || inodes.iter().filter(|(a, _)| !ghosts.contains(&a.ino));
    let bytes: u64 = counted()
        .filter(|(a, _)| matches!(a.kind, Kind::File | Kind::Symlink))
        .map(|(a, _)| a.size)
        .sum();
    let count = counted().count() as u64;
    if usage != (bytes, count) {
        findings.push(problem(
            "usage",
            format!(
                "usage records {} bytes and {} inodes; the inodes add up to {bytes} and {count}",
                usage.0, usage.1
            ),
        ));
        fixes.push(Fix::Usage);
    }

    // Files with several names: which directories hold them, as `links` should say.
    let mut expected_links: Vec<(Ino, Ino, u32)> = Vec::new();
    for (ino, parents) in &refs {
        if parents.len() < 2 || by_ino.get(ino).is_some_and(|(a, _)| a.kind == Kind::Dir) {
            continue;
        }
        let mut per: HashMap<Ino, u32> = HashMap::new();
        for p in parents {
            *per.entry(*p).or_default() += 1;
        }
        expected_links.extend(per.into_iter().map(|(p, n)| (*ino, p, n)));
    }
    expected_links.sort_unstable();
    if expected_links != links {
        findings.push(problem(
            "links",
            format!(
                "the directories recorded for files with several names ({} rows) differ from their entries ({} rows)",
                links.len(),
                expected_links.len()
            ),
        ));
        fixes.push(Fix::Links);
    }
    for (q, counted) in &quotas {
        let path = meta.read().path_of(q.ino);
        match counted {
            None => {
                findings.push(problem(
                    "quota-orphan",
                    format!(
                        "a quota is recorded for inode {}, which is not a directory",
                        q.ino
                    ),
                ));
                fixes.push(Fix::DirUsage);
            }
            Some((bytes, inodes, held))
                if (q.bytes, q.inodes, q.reserved) != (*bytes, *inodes, *held) =>
            {
                findings.push(problem(
                    "quota-usage",
                    format!(
                        "the quota on {path} records {} bytes, {} inodes and {} reserved; its subtree holds {bytes}, {inodes} and {held}",
                        q.bytes, q.inodes, q.reserved
                    ),
                ));
                fixes.push(Fix::DirUsage);
            }
            Some(_) => {}
        }
    }

    if repair && !fixes.is_empty() {
        apply(&mut meta, &objects, fixes)?;
    }
    Ok(Report {
        tenant: tenant.to_string(),
        live_mounts: live.len(),
        findings,
        repaired: repair,
    })
}

fn recoverable(kind: &'static str, detail: String) -> Finding {
    Finding {
        kind,
        recoverable: true,
        detail,
    }
}

fn problem(kind: &'static str, detail: String) -> Finding {
    Finding {
        kind,
        recoverable: false,
        detail,
    }
}

fn apply(meta: &mut crate::meta::Meta, objects: &dyn ObjectStore, fixes: Vec<Fix>) -> Result<()> {
    let mut doomed = Vec::new();
    meta.write(|tx| -> MetaResult<()> {
        let mut lost_found = None;
        for fix in &fixes {
            match fix {
                Fix::DeleteEntry(p, n) => tx.delete_entry(*p, n)?,
                Fix::EntryKind(p, n, k) => tx.set_entry_kind(*p, n, *k)?,
                Fix::Nlink(i, n) => tx.set_nlink(*i, *n)?,
                Fix::Parent(i, p) => tx.set_parent(*i, *p)?,
                Fix::Size(i, len, m, c) => {
                    tx.set_size(*i, *len, *m, *c)?;
                }
                Fix::DeleteObject(i) => doomed.push(*i),
                Fix::Usage | Fix::Links | Fix::DirUsage => {}
                Fix::Adopt(ino, kind) => {
                    let dir = match lost_found {
                        Some(d) => d,
                        None => {
                            let d = lost_and_found(tx)?;
                            lost_found = Some(d);
                            d
                        }
                    };
                    tx.insert_entry(dir, format!("#{ino}").as_bytes(), *ino, *kind)?;
                    if *kind == Kind::Dir {
                        tx.add_nlink(dir, 1)?;
                        tx.set_parent(*ino, dir)?;
                    } else {
                        tx.set_nlink(*ino, 1)?;
                    }
                }
            }
        }
        let (bytes, count) = tx.computed_usage()?;
        tx.set_usage(bytes, count)?;
        // Counted afresh after the fixes above, which may change what is where.
        if fixes.iter().any(|f| matches!(f, Fix::Links)) {
            rebuild_links(tx)?;
        }
        let held = tx.all_held()?;
        for q in tx.all_dir_quotas()? {
            match tx.inode(q.ino)? {
                Some(a) if a.kind == Kind::Dir => {
                    let (bytes, inodes, reserved) = quota::recount(tx, q.ino, &held)?;
                    tx.set_dir_usage(q.ino, bytes, inodes, reserved)?;
                }
                _ => {
                    tx.remove_dir_quota(q.ino)?;
                }
            }
        }
        Ok(())
    })?;
    for ino in doomed {
        objects
            .remove(ino)
            .context(|| format!("cannot delete object {ino:x}"))?;
    }
    Ok(())
}

/// Rewrites `links` from the entries.
fn rebuild_links(tx: &crate::meta::Tx<'_>) -> MetaResult<()> {
    for (ino, _, _) in tx.all_links()? {
        tx.clear_links(ino)?;
    }
    let mut named: HashMap<Ino, Vec<Ino>> = HashMap::new();
    for (parent, _, ino, kind) in tx.all_entries()? {
        if kind != Kind::Dir.code() {
            named.entry(ino).or_default().push(parent);
        }
    }
    for (ino, parents) in named.into_iter().filter(|(_, p)| p.len() > 1) {
        for p in parents {
            tx.add_link(ino, p, 1)?;
        }
    }
    Ok(())
}

/// `/lost+found`, made if missing.
fn lost_and_found(tx: &crate::meta::Tx<'_>) -> MetaResult<Ino> {
    if let Some((ino, Kind::Dir)) = tx.lookup(ROOT_INO, b"lost+found")? {
        return Ok(ino);
    }
    let root = tx.inode(ROOT_INO)?.expect("the root exists");
    let ino = tx.insert_inode(&NewInode {
        kind: Kind::Dir,
        perm: 0o700,
        uid: root.uid,
        gid: root.gid,
        rdev: 0,
        now: now_nanos(),
        parent: ROOT_INO,
        target: None,
        owner: None,
    })?;
    tx.insert_entry(ROOT_INO, b"lost+found", ino, Kind::Dir)?;
    tx.add_nlink(ROOT_INO, 1)?;
    Ok(ino)
}
