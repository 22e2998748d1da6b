//! The mount subject's rights on inodes, decided by [`crate::policy`] and cached.
//!
//! Invariants:
//! - a cached right is never older than the last policy change this process has seen: any
//!   change to entries or groups clears the cache and reloads the subject's groups, and a
//!   move across directories, in this mount or another, clears it too (it changes what the
//!   moved inodes inherit);
//! - an admin key has every right inside its tenant;
//! - rights are decided on the tenant's tree, so entries above a key's `--root` still apply.

use std::collections::HashSet;
use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;

use crate::meta::MetaResult;
use crate::meta::Tx;
use crate::policy::{Decision, Entry, Rights, decide};
use crate::types::{Ino, ROOT_INO};

/// How many inodes' rights a mount remembers unless told otherwise (about 3 MiB).
pub const CACHE_ENTRIES: usize = 65536;

pub struct Access {
    subject: String,
    admin: bool,
    state: Mutex<State>,
}

struct State {
    identities: HashSet<String>,
    version: i64,
    tree: i64,
    cache: LruCache<Ino, Rights>,
}

impl Access {
    pub fn new(subject: &str, admin: bool, tx: &Tx<'_>) -> MetaResult<Access> {
        Access::sized(subject, admin, tx, CACHE_ENTRIES)
    }

    /// An `Access` remembering at most `entries` inodes' rights.
    pub fn sized(subject: &str, admin: bool, tx: &Tx<'_>, entries: usize) -> MetaResult<Access> {
        let state = State {
            identities: tx.groups()?.identities(subject),
            version: tx.policy_version()?,
            tree: tx.tree_version()?,
            cache: LruCache::new(NonZeroUsize::new(entries.max(1)).expect("non-zero")),
        };
        Ok(Access {
            subject: subject.to_string(),
            admin,
            state: Mutex::new(state),
        })
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn admin(&self) -> bool {
        self.admin
    }

    /// Rights already cached for `ino`, without touching the database.
    pub fn cached(&self, ino: Ino) -> Option<Rights> {
        if self.admin {
            return Some(Rights::OWNER);
        }
        self.state.lock().cache.get(&ino).copied()
    }

    /// The subject's rights on `ino`.
    pub fn rights(&self, tx: &Tx<'_>, ino: Ino) -> MetaResult<Rights> {
        if self.admin {
            return Ok(Rights::OWNER);
        }
        let mut st = self.state.lock();
        if let Some(r) = st.cache.get(&ino) {
            return Ok(*r);
        }
        // Walk up until an inode decides or a cached ancestor answers; cache the whole way.
        let mut walked = Vec::new();
        let mut at = ino;
        let rights = loop {
            if let Some(r) = st.cache.get(&at) {
                break *r;
            }
            walked.push(at);
            let matched: Vec<Entry> = tx
                .acl(at)?
                .into_iter()
                .filter(|e| st.identities.contains(&e.subject))
                .collect();
            if !matched.is_empty() {
                break matched.iter().fold(Rights::NONE, |r, e| r.union(e.rights));
            }
            match tx.dir_parent(at)? {
                Some(p) if at != ROOT_INO && p != at => at = p,
                _ => break Rights::NONE,
            }
        };
        for i in walked {
            st.cache.put(i, rights);
        }
        Ok(rights)
    }

    /// The full decision for `ino`, with the entries that decided, for `acl check` and
    /// `tenantfs.effective`.
    pub fn explain(&self, tx: &Tx<'_>, ino: Ino) -> MetaResult<Decision<Ino>> {
        let identities = self.state.lock().identities.clone();
        let mut chain = Vec::new();
        let mut at = ino;
        loop {
            chain.push((at, tx.acl(at)?));
            match tx.dir_parent(at)? {
                Some(p) if at != ROOT_INO && p != at => at = p,
                _ => break,
            }
        }
        Ok(decide(&identities, chain))
    }

    /// Reloads groups and forgets every cached right if the policy changed since last seen,
    /// and forgets cached rights if anything moved across directories. Returns whether the
    /// policy changed (then shown mode bits may have too).
    pub fn refresh(&self, tx: &Tx<'_>) -> MetaResult<bool> {
        let (version, tree) = (tx.policy_version()?, tx.tree_version()?);
        let mut st = self.state.lock();
        if tree != st.tree {
            st.tree = tree;
            st.cache.clear();
        }
        if version == st.version {
            return Ok(false);
        }
        st.identities = tx.groups()?.identities(&self.subject);
        st.version = version;
        st.cache.clear();
        Ok(true)
    }

    /// Forgets everything cached (a directory moved, so inheritance below it changed).
    pub fn clear(&self) {
        self.state.lock().cache.clear();
    }

    /// Forgets one inode (it moved or went away).
    pub fn forget(&self, ino: Ino) {
        self.state.lock().cache.pop(&ino);
    }
}
