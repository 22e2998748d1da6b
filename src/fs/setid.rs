//! When set-user-ID and set-group-ID bits go: the kernel's `setattr_should_drop_suidgid`
//! (Linux 6.2 and later), which ext4 follows and the daemon applies itself under
//! `FUSE_HANDLE_KILLPRIV_V2`.
//!
//! A change of content or size by a caller without `CAP_FSETID` clears set-user-ID always,
//! and set-group-ID when the group may execute or the caller is not in the file's group.

use crate::types::Ctx;

const SUID: u16 = libc::S_ISUID as u16;
const SGID: u16 = libc::S_ISGID as u16;

/// Whether `perm` has bits some unprivileged change would clear.
pub(super) fn has_setid(perm: u16) -> bool {
    perm & (SUID | SGID) != 0
}

/// `perm` after a change by a caller without `CAP_FSETID`; `in_group` says whether the
/// caller is in the file's group.
pub(super) fn dropped(perm: u16, in_group: bool) -> u16 {
    let mut perm = perm & !SUID;
    if perm & libc::S_IXGRP as u16 != 0 || !in_group {
        perm &= !SGID;
    }
    perm
}

/// Whether the process behind `ctx` is in group `gid`: its fsgid, or one of its
/// supplementary groups (which FUSE does not pass; `/proc` has them). A process that has
/// gone counts as outside.
pub(super) fn in_group(ctx: &Ctx, gid: u32) -> bool {
    ctx.gid == gid
        || std::fs::read_to_string(format!("/proc/{}/status", ctx.pid))
            .is_ok_and(|s| supplementary(&s).any(|g| g == gid))
}

/// The supplementary groups in a `/proc/PID/status` text.
fn supplementary(status: &str) -> impl Iterator<Item = u32> + '_ {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .into_iter()
        .flat_map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_rules() {
        // Set-user-ID always goes.
        assert_eq!(dropped(0o4755, true), 0o755);
        // Set-group-ID with group execute goes, in the group or not.
        assert_eq!(dropped(0o2775, true), 0o775);
        assert_eq!(dropped(0o6775, false), 0o775);
        // Without group execute (mandatory-locking style) it stays only for group members.
        assert_eq!(dropped(0o2666, true), 0o2666);
        assert_eq!(dropped(0o2666, false), 0o666);
        assert!(has_setid(0o2666) && has_setid(0o4000) && !has_setid(0o1777));
    }

    #[test]
    fn supplementary_groups_come_from_proc_status() {
        let status = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 1000 \nNgid:\t0\n";
        assert_eq!(supplementary(status).collect::<Vec<_>>(), [4, 24, 1000]);
        assert_eq!(supplementary("Groups:\t\n").count(), 0);
        let me = Ctx {
            uid: 0,
            gid: 12345,
            pid: std::process::id(),
        };
        assert!(in_group(&me, 12345));
        assert!(!in_group(
            &Ctx {
                pid: u32::MAX,
                ..me
            },
            54321
        ));
    }
}
