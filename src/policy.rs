//! Access control inside a tenant: ACL entries on inodes, groups, and how rights are decided.
//! Pure logic; the store keeps the entries and the core asks.
//!
//! Rules:
//! - an entry gives a subject (`user:…`, `agent:…`, `service:…` or `group:…`) a mask of
//!   `r`, `w`, `x`, plus `o` for owner (the right to change ACL entries in that subtree);
//! - for a subject on an inode, the nearest inode on the way up (itself first) that has any
//!   entry matching the subject or one of its groups decides, and its matching entries are
//!   unioned; `---` matches and grants nothing, so it stops inheritance (an explicit deny);
//! - groups contain subjects and other groups, never in a cycle; every subject is in
//!   `group:everyone`;
//! - no matching entry anywhere grants nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub const EVERYONE: &str = "group:everyone";

/// A set of rights: read, write, execute/traverse, and owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct Rights(u8);

impl Rights {
    pub const NONE: Rights = Rights(0);
    pub const R: Rights = Rights(4);
    pub const W: Rights = Rights(2);
    pub const X: Rights = Rights(1);
    pub const RX: Rights = Rights(5);
    pub const RWX: Rights = Rights(7);
    /// Owner: rwx and the right to change ACL entries below.
    pub const OWNER: Rights = Rights(15);
    const OWN_BIT: u8 = 8;

    pub fn from_bits(bits: u8) -> Rights {
        Rights(bits & 15)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn has(self, want: Rights) -> bool {
        self.0 & want.0 == want.0
    }

    pub fn owner(self) -> bool {
        self.0 & Self::OWN_BIT != 0
    }

    pub fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    /// The rwx bits as a mode triplet (0..=7).
    pub fn mode_bits(self) -> u32 {
        u32::from(self.0 & 7)
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |bit: u8, ch: char| if self.0 & bit != 0 { ch } else { '-' };
        write!(f, "{}{}{}", c(4, 'r'), c(2, 'w'), c(1, 'x'))?;
        if self.owner() {
            f.write_str("+owner")?;
        }
        Ok(())
    }
}

impl From<Rights> for String {
    fn from(r: Rights) -> String {
        r.to_string()
    }
}

impl FromStr for Rights {
    type Err = String;
    /// `rwx`-style masks (`r-x`, `---`) or roles (`viewer`, `editor`, `owner`).
    fn from_str(s: &str) -> Result<Rights, String> {
        match s {
            "viewer" => return Ok(Rights::RX),
            "editor" => return Ok(Rights::RWX),
            "owner" => return Ok(Rights::OWNER),
            _ => {}
        }
        let b = s.as_bytes();
        let ok = b.len() == 3
            && matches!(b[0], b'r' | b'-')
            && matches!(b[1], b'w' | b'-')
            && matches!(b[2], b'x' | b'-');
        if !ok {
            return Err(format!(
                "invalid rights {s:?}: write a mask like rwx, r-x or --- (deny), or a role: viewer, editor, owner"
            ));
        }
        Ok(Rights(
            (u8::from(b[0] == b'r') << 2) | (u8::from(b[1] == b'w') << 1) | u8::from(b[2] == b'x'),
        ))
    }
}

/// Checks a subject string: `KIND:NAME` with KIND user, agent, service or group.
pub fn parse_subject(s: &str) -> Result<String, String> {
    let bad = || {
        format!("invalid subject {s:?}: write KIND:NAME with KIND user, agent, service or group")
    };
    let (kind, name) = s.split_once(':').ok_or_else(bad)?;
    if !matches!(kind, "user" | "agent" | "service" | "group") {
        return Err(bad());
    }
    crate::ids::check_subject_name(name)?;
    Ok(s.to_string())
}

pub fn is_group(subject: &str) -> bool {
    subject.starts_with("group:")
}

/// One change to an inode's entries, as `acl set` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntrySpec {
    /// `KIND:NAME:MASK` or `KIND:NAME:ROLE`.
    Set(String, Rights),
    /// `KIND:NAME:-`.
    Remove(String),
}

impl FromStr for EntrySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<EntrySpec, String> {
        let (subject, rights) = s.rsplit_once(':').ok_or_else(|| {
            format!("invalid ACL entry {s:?}: write KIND:NAME:RIGHTS, e.g. user:bob:r-x, group:sales:editor, or user:bob:- to remove")
        })?;
        let subject = parse_subject(subject)?;
        if rights == "-" {
            return Ok(EntrySpec::Remove(subject));
        }
        Ok(EntrySpec::Set(subject, rights.parse()?))
    }
}

/// An explicit entry on an inode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub subject: String,
    pub rights: Rights,
}

/// An inode's explicit entries with its owner's rights added: engines keep the owner in
/// the inode's row, the core sees it as an entry.
pub fn with_owner(mut entries: Vec<Entry>, owner: Option<String>) -> Vec<Entry> {
    if let Some(subject) = owner {
        match entries.iter_mut().find(|e| e.subject == subject) {
            Some(e) => e.rights = e.rights.union(Rights::OWNER),
            None => entries.push(Entry {
                subject,
                rights: Rights::OWNER,
            }),
        }
    }
    entries
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = Rights(self.rights.0 & 7);
        if self.rights.owner() {
            write!(f, "{}:owner", self.subject)
        } else {
            write!(f, "{}:{mask}", self.subject)
        }
    }
}

/// Group memberships of a tenant: group → direct members.
#[derive(Clone, Debug, Default)]
pub struct Groups {
    members: BTreeMap<String, BTreeSet<String>>,
}

impl Groups {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Groups {
        let mut g = Groups::default();
        for (group, member) in pairs {
            g.members.entry(group).or_default().insert(member);
        }
        g
    }

    pub fn members(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.members
    }

    /// The subject itself, every group that contains it directly or through other groups,
    /// and `group:everyone`.
    pub fn identities(&self, subject: &str) -> HashSet<String> {
        let mut out = HashSet::from([subject.to_string(), EVERYONE.to_string()]);
        let mut frontier = vec![subject.to_string()];
        while let Some(s) = frontier.pop() {
            for (group, members) in &self.members {
                if members.contains(&s) && out.insert(group.clone()) {
                    frontier.push(group.clone());
                }
            }
        }
        out
    }

    /// Refuses a membership that would make a group contain itself.
    pub fn check_add(&self, group: &str, member: &str) -> Result<(), String> {
        if !is_group(group) {
            return Err(format!("{group} is not a group: write group:NAME"));
        }
        if group == EVERYONE {
            return Err("group:everyone holds every subject already; it takes no members".into());
        }
        if member == group || (is_group(member) && self.identities(group).contains(member)) {
            return Err(format!(
                "adding {member} to {group} would make a cycle: {member} already contains {group}"
            ));
        }
        Ok(())
    }
}

/// What decided an access: the inode whose entries matched and the entries that did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<I> {
    pub rights: Rights,
    pub decided_at: Option<I>,
    pub matched: Vec<Entry>,
}

/// Walks `chain` (the inode first, then each parent up to the root) and lets the nearest
/// inode with a matching entry decide.
pub fn decide<I: Copy>(
    identities: &HashSet<String>,
    chain: impl IntoIterator<Item = (I, Vec<Entry>)>,
) -> Decision<I> {
    for (ino, entries) in chain {
        let matched: Vec<Entry> = entries
            .into_iter()
            .filter(|e| identities.contains(&e.subject))
            .collect();
        if !matched.is_empty() {
            let rights = matched.iter().fold(Rights::NONE, |r, e| r.union(e.rights));
            return Decision {
                rights,
                decided_at: Some(ino),
                matched,
            };
        }
    }
    Decision {
        rights: Rights::NONE,
        decided_at: None,
        matched: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> Entry {
        match s.parse::<EntrySpec>().unwrap() {
            EntrySpec::Set(subject, rights) => Entry { subject, rights },
            EntrySpec::Remove(_) => panic!(),
        }
    }

    #[test]
    fn rights_parse_masks_and_roles() {
        assert_eq!("r-x".parse::<Rights>().unwrap(), Rights::RX);
        assert_eq!("---".parse::<Rights>().unwrap(), Rights::NONE);
        assert_eq!("viewer".parse::<Rights>().unwrap(), Rights::RX);
        assert_eq!("editor".parse::<Rights>().unwrap(), Rights::RWX);
        assert!("owner".parse::<Rights>().unwrap().owner());
        assert!("rw".parse::<Rights>().unwrap_err().contains("viewer"));
        assert!("xwr".parse::<Rights>().is_err());
        assert_eq!(Rights::OWNER.to_string(), "rwx+owner");
        assert_eq!(e("user:bob:owner").to_string(), "user:bob:owner");
        assert_eq!(e("group:sales:r-x").to_string(), "group:sales:r-x");
    }

    #[test]
    fn entry_specs() {
        assert_eq!(
            "user:bob:-".parse::<EntrySpec>().unwrap(),
            EntrySpec::Remove("user:bob".into())
        );
        assert!("bob:rwx".parse::<EntrySpec>().is_err());
        assert!("team:x:rwx".parse::<EntrySpec>().is_err());
        assert!("user:bob".parse::<EntrySpec>().is_err());
    }

    #[test]
    fn the_nearest_matching_inode_decides_and_unions() {
        let groups = Groups::from_pairs([("group:sales".into(), "agent:bot".into())]);
        let me = groups.identities("agent:bot");
        // file (no entries) → /sales (group:sales:rwx, user:x:r--) → / (everyone:r-x)
        let chain = vec![
            (3, vec![]),
            (
                2,
                vec![
                    e("group:sales:rw-"),
                    e("agent:bot:--x"),
                    e("user:other:rwx"),
                ],
            ),
            (1, vec![e("group:everyone:r-x")]),
        ];
        let d = decide(&me, chain.clone());
        assert_eq!((d.rights, d.decided_at), (Rights::RWX, Some(2)));
        assert_eq!(d.matched.len(), 2);
        // Someone not in sales falls through to the root.
        let d = decide(&groups.identities("user:carol"), chain);
        assert_eq!((d.rights, d.decided_at), (Rights::RX, Some(1)));
    }

    #[test]
    fn an_explicit_deny_stops_inheritance() {
        let me = Groups::default().identities("user:bob");
        let chain = vec![
            (2, vec![e("user:bob:---")]),
            (1, vec![e("group:everyone:editor")]),
        ];
        let d = decide(&me, chain);
        assert_eq!((d.rights, d.decided_at), (Rights::NONE, Some(2)));
        let none = decide(&me, vec![(1, vec![e("user:alice:rwx")])]);
        assert_eq!((none.rights, none.decided_at), (Rights::NONE, None));
    }

    #[test]
    fn groups_nest_without_cycles() {
        let mut pairs = Vec::new();
        for i in 0..10 {
            pairs.push((format!("group:g{i}"), format!("group:g{}", i + 1)));
        }
        pairs.push(("group:g10".into(), "user:deep".into()));
        let groups = Groups::from_pairs(pairs);
        let ids = groups.identities("user:deep");
        assert!(ids.contains("group:g0") && ids.contains("group:g10") && ids.contains(EVERYONE));
        assert_eq!(ids.len(), 13);
        assert!(
            groups
                .check_add("group:g10", "group:g0")
                .unwrap_err()
                .contains("cycle")
        );
        assert!(groups.check_add("group:g3", "group:g3").is_err());
        assert!(groups.check_add("group:g0", "group:new").is_ok());
        assert!(groups.check_add("user:x", "user:y").is_err());
        assert!(groups.check_add(EVERYONE, "user:y").is_err());
    }
}
