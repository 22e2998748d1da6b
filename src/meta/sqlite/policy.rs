//! ACLs, groups and policy versions in SQLite.

use rusqlite::{OptionalExtension, params};

use crate::meta::{MetaResult, PolicyTx};
use crate::policy::{Entry, Groups, Rights};
use crate::types::Ino;

use super::{SqliteTx, cached};

impl PolicyTx for SqliteTx {
    fn acl(&self, ino: Ino) -> MetaResult<Vec<Entry>> {
        // Sorted here: with `ORDER BY subject` SQLite recompiled the statement at every use.
        let mut entries: Vec<Entry> =
            cached(&self.conn, "SELECT subject, rights FROM acl WHERE ino = ?1")?
                .query_map([ino], |r| {
                    Ok(Entry {
                        subject: r.get(0)?,
                        rights: Rights::from_bits(r.get(1)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
        entries.sort_by(|a, b| a.subject.cmp(&b.subject));
        let owner: Option<String> = cached(&self.conn, "SELECT owner FROM inodes WHERE ino = ?1")?
            .query_row([ino], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(crate::policy::with_owner(entries, owner))
    }

    fn set_acl(&self, ino: Ino, subject: &str, rights: Rights) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT OR REPLACE INTO acl(ino, subject, rights) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![ino, subject, rights.bits()])?;
        cached(
            &self.conn,
            "UPDATE inodes SET owner = NULL WHERE ino = ?1 AND owner = ?2",
        )?
        .execute(params![ino, subject])?;
        Ok(())
    }

    fn remove_acl(&self, ino: Ino, subject: &str) -> MetaResult<bool> {
        let explicit = cached(
            &self.conn,
            "DELETE FROM acl WHERE ino = ?1 AND subject = ?2",
        )?
        .execute(params![ino, subject])?;
        let owned = cached(
            &self.conn,
            "UPDATE inodes SET owner = NULL WHERE ino = ?1 AND owner = ?2",
        )?
        .execute(params![ino, subject])?;
        Ok(explicit + owned > 0)
    }

    fn acl_subjects(&self) -> MetaResult<Vec<String>> {
        Ok(self.conn
            .prepare(
                "SELECT subject FROM acl UNION SELECT owner FROM inodes WHERE owner IS NOT NULL ORDER BY 1",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn groups(&self) -> MetaResult<Groups> {
        let pairs: Vec<(String, String)> = cached(&self.conn, "SELECT grp, member FROM groups")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Groups::from_pairs(pairs))
    }

    fn add_member(&self, group: &str, member: &str) -> MetaResult<()> {
        cached(
            &self.conn,
            "INSERT OR IGNORE INTO groups(grp, member) VALUES (?1, ?2)",
        )?
        .execute(params![group, member])?;
        Ok(())
    }

    fn remove_member(&self, group: &str, member: &str) -> MetaResult<bool> {
        Ok(cached(
            &self.conn,
            "DELETE FROM groups WHERE grp = ?1 AND member = ?2",
        )?
        .execute(params![group, member])?
            > 0)
    }

    fn policy_version(&self) -> MetaResult<i64> {
        Ok(cached(
            &self.conn,
            "SELECT value FROM info WHERE key = 'policy_version'",
        )?
        .query_row([], |r| r.get(0))?)
    }

    fn tree_version(&self) -> MetaResult<i64> {
        Ok(cached(
            &self.conn,
            "SELECT value FROM info WHERE key = 'tree_version'",
        )?
        .query_row([], |r| r.get(0))?)
    }

    fn bump_tree(&self) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE info SET value = value + 1 WHERE key = 'tree_version'",
        )?
        .execute([])?;
        Ok(())
    }

    fn bump_policy(&self) -> MetaResult<()> {
        cached(
            &self.conn,
            "UPDATE info SET value = value + 1 WHERE key = 'policy_version'",
        )?
        .execute([])?;
        Ok(())
    }
}
