//! Extended attributes: the `user.` namespace stored per inode, ACLs and quotas exposed as
//! `tenantfs.` attributes, and the host's namespaces refused.

use super::*;

impl TenantFs {
    /// Only the `user.` namespace is stored; the others belong to the host (security, system,
    /// trusted) and are neither readable nor writable through a tenant mount.
    pub(super) fn xattr_name(name: &[u8]) -> FsResult<()> {
        if name.len() > NAME_MAX {
            return Err(FsError::Range);
        }
        if name.is_empty() {
            return Err(FsError::Invalid);
        }
        Ok(())
    }

    /// Owner rights (or an admin key) are needed to read or change ACL entries.
    pub(super) fn need_owner(&self, tx: &Tx<'_>, ino: Ino, op: &'static str) -> FsResult<()> {
        if self.access.rights(tx, ino)?.owner() {
            return Ok(());
        }
        Err(self.denied(op, || format!("{} (tenantfs.acl)", tx.path_of(ino))))
    }

    /// Replaces an inode's ACL entries, for its owner or an admin; takes effect here at once
    /// and in other mounts at their next check.
    pub(super) fn change_acl(
        &self,
        ino: Ino,
        entries: &[crate::policy::Entry],
        op: &'static str,
    ) -> FsResult<()> {
        self.transact(|tx| {
            require_ino(tx.inode(ino)?)?;
            self.need_owner(tx, ino, op)?;
            crate::admin::replace_entries(tx, ino, entries)?;
            Ok(())
        })?;
        self.refresh_policy()?;
        Ok(())
    }

    /// Picks up ACL and group changes made elsewhere; true if there were any. The daemon
    /// calls this every check interval and then drops the kernel's cached attributes.
    pub fn refresh_policy(&self) -> FsResult<bool> {
        let meta = self.meta.lock();
        let tx = meta.read();
        *self.limits.lock() = tx.limits()?;
        self.dir_quotas
            .store(tx.has_dir_quotas()?, Ordering::Relaxed);
        Ok(self.access.refresh(&*tx)?)
    }

    /// Quota xattrs are for admin keys alone; anyone else is refused the same way whether
    /// or not a quota is set, so the refusal tells nothing.
    pub(super) fn need_admin(&self, tx: &Tx<'_>, ino: Ino, op: &'static str) -> FsResult<()> {
        if self.access.admin() {
            return Ok(());
        }
        Err(self.denied(op, || format!("{} (tenantfs.quota)", tx.path_of(ino))))
    }

    pub(super) fn quota_xattr(&self, ino: Ino, limit: QuotaLimit) -> FsResult<Vec<u8>> {
        let meta = self.meta.lock();
        let tx = meta.read();
        require_ino(tx.inode(ino)?)?;
        self.need_admin(&*tx, ino, "getxattr")?;
        match tx.dir_quota(ino)?.map(|q| limit.get(&q)) {
            Some(v) if v > 0 => Ok(v.to_string().into_bytes()),
            _ => Err(FsError::NoXattr),
        }
    }

    /// Sets (or with `None` removes) one limit of a directory's quota.
    pub(super) fn set_quota_xattr(
        &self,
        ino: Ino,
        limit: QuotaLimit,
        value: Option<u64>,
        mode: XattrMode,
        op: &'static str,
    ) -> FsResult<()> {
        self.transact(|tx| {
            let a = require_ino(tx.inode(ino)?)?;
            self.need_admin(tx, ino, op)?;
            if a.kind != Kind::Dir {
                return Err(FsError::Invalid);
            }
            let now = tx.dir_quota(ino)?.unwrap_or_default();
            let exists = limit.get(&now) > 0;
            match (mode, value) {
                (XattrMode::Create, _) if exists => return Err(FsError::Exists),
                (XattrMode::Replace, _) | (_, None) if !exists => return Err(FsError::NoXattr),
                _ => {}
            }
            let v = value.unwrap_or(0);
            let (bytes, inodes) = match limit {
                QuotaLimit::Bytes => (v, now.max_inodes),
                QuotaLimit::Inodes => (now.max_bytes, v),
            };
            quota::set(tx, ino, bytes, inodes)?;
            self.dir_quotas
                .store(tx.has_dir_quotas()?, Ordering::Relaxed);
            Ok(())
        })
    }

    pub(super) fn user_namespace(name: &[u8]) -> bool {
        name.starts_with(b"user.") && name.len() > 5
    }

    /// The namespaces that belong to the host. Reading them answers `EOPNOTSUPP`, not
    /// `ENODATA`: tools such as `ls -l` and `cp -a` then remember the file system has none and
    /// stop asking, where `ENODATA` costs a round trip for every file they touch.
    pub(super) fn host_namespace(name: &[u8]) -> bool {
        [&b"security."[..], b"system.", b"trusted."]
            .iter()
            .any(|ns| name.starts_with(ns))
    }

    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], mode: XattrMode) -> FsResult<()> {
        self.writable()?;
        Self::xattr_name(name)?;
        if name == ACL_XATTR {
            let text = std::str::from_utf8(value).map_err(|_| FsError::Invalid)?;
            let entries = crate::admin::parse_entries(text).map_err(|_| FsError::Invalid)?;
            return self.change_acl(ino, &entries, "setxattr");
        }
        if let Some(limit) = QuotaLimit::of(name) {
            let v = limit.parse(value)?;
            return self.set_quota_xattr(ino, limit, Some(v), mode, "setxattr");
        }
        if !Self::user_namespace(name) {
            return Err(FsError::NotSupported);
        }
        if value.len() > XATTR_VALUE_MAX {
            return Err(FsError::TooBig);
        }
        self.transact(|tx| {
            require_ino(tx.inode(ino)?)?;
            self.need(tx, ino, Rights::W, "setxattr", None)?;
            let exists = tx.xattr(ino, name)?.is_some();
            match mode {
                XattrMode::Create if exists => return Err(FsError::Exists),
                XattrMode::Replace if !exists => return Err(FsError::NoXattr),
                _ => {}
            }
            self.grow(room::METADATA + value.len() as u64)?;
            tx.set_xattr(ino, name, value)?;
            tx.set_ctime(ino, now_nanos())?;
            Ok(())
        })
    }

    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
        self.live()?;
        Self::xattr_name(name)?;
        if name == EFFECTIVE_XATTR {
            // Anyone may ask what they themselves may do.
            let meta = self.meta.lock();
            let tx = meta.read();
            require_ino(tx.inode(ino)?)?;
            return Ok(self.access.rights(&*tx, ino)?.to_string().into_bytes());
        }
        if name == ACL_XATTR {
            let meta = self.meta.lock();
            let tx = meta.read();
            require_ino(tx.inode(ino)?)?;
            self.need_owner(&*tx, ino, "getxattr")?;
            return Ok(crate::admin::format_entries(&tx.acl(ino)?).into_bytes());
        }
        if let Some(limit) = QuotaLimit::of(name) {
            return self.quota_xattr(ino, limit);
        }
        if Self::host_namespace(name) {
            return Err(FsError::NotSupported);
        }
        if !Self::user_namespace(name) {
            return Err(FsError::NoXattr);
        }
        let meta = self.meta.lock();
        let tx = meta.read();
        self.need(&*tx, ino, Rights::R, "getxattr", None)?;
        match tx.xattr(ino, name)? {
            Some(v) => Ok(v),
            None => {
                require_ino(tx.inode(ino)?)?;
                Err(FsError::NoXattr)
            }
        }
    }

    /// Names, each followed by a NUL, as listxattr(2) returns them.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.live()?;
        let meta = self.meta.lock();
        let tx = meta.read();
        require_ino(tx.inode(ino)?)?;
        self.need(&*tx, ino, Rights::R, "listxattr", None)?;
        let mut out = Vec::new();
        for n in tx.xattr_names(ino)? {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        Self::xattr_name(name)?;
        if name == ACL_XATTR {
            return self.change_acl(ino, &[], "removexattr");
        }
        if let Some(limit) = QuotaLimit::of(name) {
            return self.set_quota_xattr(ino, limit, None, XattrMode::Any, "removexattr");
        }
        if !Self::user_namespace(name) {
            return Err(FsError::NotSupported);
        }
        self.transact(|tx| {
            require_ino(tx.inode(ino)?)?;
            self.need(tx, ino, Rights::W, "removexattr", None)?;
            if !tx.remove_xattr(ino, name)? {
                return Err(FsError::NoXattr);
            }
            tx.set_ctime(ino, now_nanos())?;
            Ok(())
        })
    }
}
