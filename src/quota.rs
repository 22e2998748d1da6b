//! Keeping the tenant's usage and its directory quotas exact as names are made, moved and
//! removed and as files grow.
//!
//! The model:
//! - the tenant counts every inode once, and the bytes of its files and symlinks;
//! - a quota on directory D counts, once each, the inodes with at least one name below D (D
//!   itself is not counted). A file with names under two quota'd trees counts in both; two
//!   names under one tree count once there;
//! - bytes open files hold reserved (`held`) count against the tenant and against every
//!   quota over the file, and move with the file when it moves, so a file growing inside its
//!   reservation never pushes any quota past its limit;
//! - an inode with no names left (open after unlink) counts for the tenant only.
//!
//! Every function runs inside the caller's transaction. Changes that add to a quota return
//! the quotas they added to, and the caller refuses (rolls back) if any of them is over.

use std::collections::HashMap;

use crate::meta::MetaResult;
use crate::meta::{DirQuota, Tx};
use crate::types::{Ino, Kind, ROOT_INO};

/// Deeper than any real tree; stops a walk over a corrupt parent chain.
const MAX_DEPTH: usize = 4096;

/// The quota'd directories over names in `dir`: `dir` and its ancestors that have a quota.
fn chain(tx: &Tx<'_>, dir: Ino, quotas: &[Ino]) -> MetaResult<Vec<Ino>> {
    let mut out = Vec::new();
    let mut at = dir;
    for _ in 0..MAX_DEPTH {
        if quotas.contains(&at) {
            out.push(at);
        }
        if at == ROOT_INO {
            break;
        }
        match tx.dir_parent(at)? {
            Some(p) if p != at => at = p,
            _ => break,
        }
    }
    Ok(out)
}

/// The directory quotas `ino` counts in.
pub fn over(tx: &Tx<'_>, ino: Ino) -> MetaResult<Vec<Ino>> {
    let quotas = tx.dir_quota_inos()?;
    if quotas.is_empty() {
        return Ok(Vec::new());
    }
    over_at(tx, ino, tx.placement(ino)?, &quotas)
}

/// [`over`] for an inode whose placement (kind, nlink, parent) is already read.
fn over_at(
    tx: &Tx<'_>,
    ino: Ino,
    placement: Option<(Kind, u32, Ino)>,
    quotas: &[Ino],
) -> MetaResult<Vec<Ino>> {
    let Some((kind, nlink, parent)) = placement else {
        return Ok(Vec::new());
    };
    if ino == ROOT_INO || nlink == 0 {
        return Ok(Vec::new());
    }
    let mut parents = vec![parent];
    if kind != Kind::Dir && nlink > 1 {
        let linked = tx.link_parents(ino)?;
        if !linked.is_empty() {
            parents = linked.into_iter().map(|(p, _)| p).collect();
        }
    }
    let mut out = Vec::new();
    for p in parents {
        for q in chain(tx, p, quotas)? {
            if !out.contains(&q) {
                out.push(q);
            }
        }
    }
    Ok(out)
}

/// Adds (bytes, inodes, reserved) to each of `dirs`' counters.
fn charge(tx: &Tx<'_>, dirs: &[Ino], bytes: i64, inodes: i64, held: i64) -> MetaResult<()> {
    if bytes != 0 || inodes != 0 || held != 0 {
        for &d in dirs {
            tx.add_dir_usage(d, bytes, inodes, held)?;
        }
    }
    Ok(())
}

/// Adds to the usage of `ino`: the tenant's and that of every quota it counts in. Returns
/// those quotas, for a caller that goes on to check or hold against them.
pub fn add_usage(tx: &Tx<'_>, ino: Ino, bytes: i64, inodes: i64) -> MetaResult<Vec<Ino>> {
    tx.add_usage(bytes, inodes)?;
    let dirs = over(tx, ino)?;
    charge(tx, &dirs, bytes, inodes, 0)?;
    Ok(dirs)
}

/// Changes what `session` holds reserved for `ino` by `delta` (negative gives back), never
/// below zero. Returns the change made.
pub fn hold(tx: &Tx<'_>, ino: Ino, session: &str, delta: i64) -> MetaResult<i64> {
    hold_in(tx, ino, session, delta, &over(tx, ino)?)
}

/// [`hold`] for a caller that already has the quotas `ino` counts in.
pub fn hold_in(tx: &Tx<'_>, ino: Ino, session: &str, delta: i64, dirs: &[Ino]) -> MetaResult<i64> {
    let now = tx.held(ino, session)?;
    let new = (now as i64).saturating_add(delta).max(0) as u64;
    let change = new as i64 - now as i64;
    if change == 0 {
        return Ok(0);
    }
    tx.set_held(ino, session, new)?;
    tx.add_reserved(change)?;
    charge(tx, dirs, 0, 0, change)?;
    Ok(change)
}

/// Gives back everything a session holds (it ended or died).
pub fn release_session(tx: &Tx<'_>, session: &str) -> MetaResult<()> {
    for (ino, bytes) in tx.held_by(session)? {
        hold(tx, ino, session, -(bytes as i64))?;
    }
    Ok(())
}

/// Bytes a file counting in `dirs` (see [`over`]) may still grow by under the tenant's limit
/// and those quotas; `u64::MAX` when nothing limits it.
pub fn room(tx: &Tx<'_>, dirs: &[Ino]) -> MetaResult<u64> {
    let (max, _) = tx.limits()?;
    let mut room = if max == 0 {
        u64::MAX
    } else {
        let (used, _) = tx.usage()?;
        max.saturating_sub(used + tx.reserved()?)
    };
    for &d in dirs {
        if let Some(q) = tx.dir_quota(d)? {
            room = room.min(q.room());
        }
    }
    Ok(room)
}

/// Whether any of `dirs` holds more than its limits allow.
pub fn any_over(tx: &Tx<'_>, dirs: &[Ino]) -> MetaResult<bool> {
    for &d in dirs {
        if tx.dir_quota(d)?.is_some_and(|q| q.over()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes an inode with everything keyed by it, giving back its usage (its size as the
/// database has it) and what is held for it (the `held` rows go with the inode). An inode
/// already gone changes nothing: another mount or a recovery got there first. A ghost gave
/// its usage back when it became one; only what was held for it since goes back.
pub fn delete_inode(tx: &Tx<'_>, ino: Ino) -> MetaResult<()> {
    delete_known(tx, ino, tx.is_ghost(ino)?)
}

/// [`delete_inode`] for a caller that knows whether the inode is a ghost.
pub fn delete_known(tx: &Tx<'_>, ino: Ino, ghost: bool) -> MetaResult<()> {
    if ghost {
        tx.add_reserved(-(tx.held_total(ino)? as i64))?;
    } else if !give_back(tx, ino)? {
        return Ok(());
    }
    tx.delete_inode(ino)
}

/// Makes an inode that just lost its last name a ghost: no longer counted, but kept (with
/// its object) until [`delete_inode`]. The caller records the orphan.
pub fn make_ghost(tx: &Tx<'_>, ino: Ino) -> MetaResult<()> {
    give_back(tx, ino)?;
    tx.clear_held(ino)?;
    tx.add_ghost(ino)
}

/// Takes what an inode counts for (bytes, the inode, its holds) off every total it counts
/// in. False when the inode is gone.
fn give_back(tx: &Tx<'_>, ino: Ino) -> MetaResult<bool> {
    let Some(a) = tx.inode(ino)? else {
        return Ok(false);
    };
    let placement = Some((a.kind, a.nlink, tx.dir_parent(ino)?.unwrap_or(0)));
    let dirs = over_at(tx, ino, placement, &tx.dir_quota_inos()?)?;
    let bytes = data_bytes(a.kind, a.size) as i64;
    let held = tx.held_total(ino)? as i64;
    tx.add_usage(-bytes, -1)?;
    tx.add_reserved(-held)?;
    charge(tx, &dirs, -bytes, -1, -held)?;
    Ok(true)
}

/// Bytes an inode counts for: a file's size, a symlink's target; nothing for the rest.
fn data_bytes(kind: Kind, size: u64) -> u64 {
    if matches!(kind, Kind::File | Kind::Symlink) {
        size
    } else {
        0
    }
}

/// The quotas an inode counted in before a change to its names; [`settle`] moves its usage
/// to the quotas it counts in after.
pub struct Before {
    ino: Ino,
    dirs: Vec<Ino>,
}

pub fn before(tx: &Tx<'_>, ino: Ino) -> MetaResult<Before> {
    Ok(Before {
        ino,
        dirs: over(tx, ino)?,
    })
}

/// Moves an inode's usage (its bytes, itself, what is held for it) from the quotas it left
/// to those it entered. Returns the quotas it entered.
pub fn settle(tx: &Tx<'_>, b: Before) -> MetaResult<Vec<Ino>> {
    let after = over(tx, b.ino)?;
    let left: Vec<Ino> = b
        .dirs
        .iter()
        .copied()
        .filter(|d| !after.contains(d))
        .collect();
    let entered: Vec<Ino> = after
        .iter()
        .copied()
        .filter(|d| !b.dirs.contains(d))
        .collect();
    if left.is_empty() && entered.is_empty() {
        return Ok(entered);
    }
    let Some(a) = tx.inode(b.ino)? else {
        return Ok(Vec::new());
    };
    let bytes = data_bytes(a.kind, a.size) as i64;
    let held = tx.held_total(b.ino)? as i64;
    charge(tx, &left, -bytes, -1, -held)?;
    charge(tx, &entered, bytes, 1, held)?;
    Ok(entered)
}

/// A directory about to move: the quotas over it before and after, and, when they differ,
/// what its subtree holds.
pub struct DirMove {
    from: Vec<Ino>,
    to: Vec<Ino>,
    /// (bytes, inodes, held) of the subtree, the directory included, leaving out files with
    /// several links, which settle one by one.
    single: (i64, i64, i64),
    multi: Vec<Before>,
}

/// Takes stock of `dir`'s subtree before it moves under `new_parent`. `new_parent` is not
/// inside `dir` (the caller refused that loop), so its chain is the same after the move.
pub fn before_dir_move(tx: &Tx<'_>, dir: Ino, new_parent: Ino) -> MetaResult<DirMove> {
    let quotas = tx.dir_quota_inos()?;
    let from = over(tx, dir)?;
    let to = if quotas.is_empty() {
        Vec::new()
    } else {
        chain(tx, new_parent, &quotas)?
    };
    let mut m = DirMove {
        from,
        to,
        single: (0, 0, 0),
        multi: Vec::new(),
    };
    if m.from == m.to {
        return Ok(m);
    }
    let held = tx.all_held()?;
    for (ino, kind, nlink, size) in tx.subtree(dir)? {
        if kind != Kind::Dir && nlink > 1 {
            m.multi.push(before(tx, ino)?);
        } else {
            m.single.0 += data_bytes(kind, size) as i64;
            m.single.1 += 1;
            m.single.2 += held.get(&ino).copied().unwrap_or(0) as i64;
        }
    }
    Ok(m)
}

/// Moves a moved directory's subtree between quotas. Returns the quotas that gained.
pub fn settle_dir_move(tx: &Tx<'_>, m: DirMove) -> MetaResult<Vec<Ino>> {
    if m.from == m.to {
        return Ok(Vec::new());
    }
    let (bytes, inodes, held) = m.single;
    let left: Vec<Ino> = m
        .from
        .iter()
        .copied()
        .filter(|d| !m.to.contains(d))
        .collect();
    let mut grown: Vec<Ino> =
        m.to.iter()
            .copied()
            .filter(|d| !m.from.contains(d))
            .collect();
    charge(tx, &left, -bytes, -inodes, -held)?;
    charge(tx, &grown, bytes, inodes, held)?;
    for b in m.multi {
        grown.extend(settle(tx, b)?);
    }
    Ok(grown)
}

/// What `dir`'s subtree holds, counted from scratch: (bytes, inodes, held), `dir` itself
/// left out. For a new quota and for fsck.
pub fn recount(tx: &Tx<'_>, dir: Ino, held: &HashMap<Ino, u64>) -> MetaResult<(u64, u64, u64)> {
    let mut total = (0, 0, 0);
    for (ino, kind, _, size) in tx.subtree(dir)?.into_iter().filter(|r| r.0 != dir) {
        total.0 += data_bytes(kind, size);
        total.1 += 1;
        total.2 += held.get(&ino).copied().unwrap_or(0);
    }
    Ok(total)
}

/// Sets a directory's quota (0 is unlimited), counting what its subtree holds when it is new.
/// Both limits 0 removes it.
pub fn set(tx: &Tx<'_>, dir: Ino, max_bytes: u64, max_inodes: u64) -> MetaResult<()> {
    if max_bytes == 0 && max_inodes == 0 {
        tx.remove_dir_quota(dir)?;
        return Ok(());
    }
    let new = tx.dir_quota(dir)?.is_none();
    tx.put_dir_quota(dir, max_bytes, max_inodes)?;
    if new {
        let (bytes, inodes, held) = recount(tx, dir, &tx.all_held()?)?;
        tx.set_dir_usage(dir, bytes, inodes, held)?;
    }
    Ok(())
}

/// The limits that apply to a mount whose root is `root`, tightest first for each of bytes
/// and inodes: the tenant's, and the quotas on `root` and above it. Each is given as a
/// `DirQuota` (the tenant's with `ino` 0).
pub fn applying(tx: &Tx<'_>, root: Ino) -> MetaResult<Vec<DirQuota>> {
    let (max_bytes, max_inodes) = tx.limits()?;
    let (bytes, inodes) = tx.usage()?;
    let mut out = vec![DirQuota {
        ino: 0,
        max_bytes,
        max_inodes,
        bytes,
        inodes,
        reserved: tx.reserved()?,
    }];
    let quotas = tx.dir_quota_inos()?;
    if !quotas.is_empty() {
        for d in chain(tx, root, &quotas)? {
            out.extend(tx.dir_quota(d)?);
        }
    }
    Ok(out)
}
