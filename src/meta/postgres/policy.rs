//! ACLs, groups and policy versions in PostgreSQL.

use crate::meta::{MetaResult, PolicyTx};
use crate::policy::{Entry, Groups, Rights};
use crate::types::Ino;

use super::PgMeta;
use super::conn::args;
use super::rows::{i, int, strings};

impl PolicyTx for PgMeta {
    /// The explicit entries and the owner in one round trip: the owner comes as a row of
    /// rights -1.
    fn acl(&self, n: Ino) -> MetaResult<Vec<Entry>> {
        let rows = self.conn.rows(
            "SELECT subject, rights FROM acl WHERE ino = $1
             UNION ALL SELECT owner, -1 FROM inodes WHERE ino = $1 AND owner IS NOT NULL",
            &[&i(n)],
        )?;
        let mut entries = Vec::with_capacity(rows.len());
        let mut owner = None;
        for r in &rows {
            let subject: String = r.try_get(0)?;
            match int(r, 1)? {
                -1 => owner = Some(subject),
                bits => entries.push(Entry {
                    subject,
                    rights: Rights::from_bits(bits as u8),
                }),
            }
        }
        entries.sort_by(|a, b| a.subject.cmp(&b.subject));
        Ok(crate::policy::with_owner(entries, owner))
    }

    fn set_acl(&self, n: Ino, subject: &str, rights: Rights) -> MetaResult<()> {
        self.conn.exec(
            "WITH o AS (UPDATE inodes SET owner = NULL WHERE ino = $1 AND owner = $2)
             INSERT INTO acl(ino, subject, rights) VALUES ($1, $2, $3)
             ON CONFLICT(ino, subject) DO UPDATE SET rights = excluded.rights",
            &[&i(n), &subject, &i64::from(rights.bits())],
        )?;
        Ok(())
    }

    fn remove_acl(&self, n: Ino, subject: &str) -> MetaResult<bool> {
        let r = self.conn.one(
            "WITH e AS (DELETE FROM acl WHERE ino = $1 AND subject = $2 RETURNING 1),
                  o AS (UPDATE inodes SET owner = NULL WHERE ino = $1 AND owner = $2 RETURNING 1)
             SELECT (SELECT COUNT(*) FROM e) + (SELECT COUNT(*) FROM o)",
            &[&i(n), &subject],
        )?;
        Ok(int(&r, 0)? > 0)
    }

    fn acl_subjects(&self) -> MetaResult<Vec<String>> {
        strings(self.conn.rows(
            "SELECT subject FROM acl UNION SELECT owner FROM inodes WHERE owner IS NOT NULL
             ORDER BY 1",
            &[],
        )?)
    }

    fn groups(&self) -> MetaResult<Groups> {
        let pairs = self
            .conn
            .rows("SELECT grp, member FROM groups", &[])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<MetaResult<Vec<(String, String)>>>()?;
        Ok(Groups::from_pairs(pairs))
    }

    fn add_member(&self, group: &str, member: &str) -> MetaResult<()> {
        self.conn.exec(
            "INSERT INTO groups(grp, member) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&group, &member],
        )?;
        Ok(())
    }

    fn remove_member(&self, group: &str, member: &str) -> MetaResult<bool> {
        Ok(self.conn.exec(
            "DELETE FROM groups WHERE grp = $1 AND member = $2",
            &[&group, &member],
        )? > 0)
    }

    fn policy_version(&self) -> MetaResult<i64> {
        int(
            &self
                .conn
                .one("SELECT value FROM info WHERE key = 'policy_version'", &[])?,
            0,
        )
    }

    fn tree_version(&self) -> MetaResult<i64> {
        int(
            &self
                .conn
                .one("SELECT value FROM info WHERE key = 'tree_version'", &[])?,
            0,
        )
    }

    fn bump_tree(&self) -> MetaResult<()> {
        self.conn.defer(
            "UPDATE info SET value = value + 1 WHERE key = 'tree_version'",
            args![],
        )
    }

    fn bump_policy(&self) -> MetaResult<()> {
        self.conn.defer(
            "UPDATE info SET value = value + 1 WHERE key = 'policy_version'",
            args![],
        )
    }
}
