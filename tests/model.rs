//! Reference-model tests. Random sequences of ops run against two implementations at once,
//! compared after every step (the errno of each op, then the whole tree: kinds, sizes,
//! contents, permissions, link counts, xattrs):
//! - the core without FUSE against a small in-memory model of POSIX;
//! - a real tenantfs mount against a real directory on the host's disk.
//!
//! Shrunk failures are kept as named regression tests at the bottom.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use tenantfs::fs::{
    Ctx, FsError, Ino, Kind, MountSpec, ROOT_INO, RenameFlags, SetAttr, TenantFs, XattrMode,
};
use tenantfs::meta::Meta;
use tenantfs::objects::LocalObjects;

// ---- ops ----------------------------------------------------------------------------------

const DIRS: [&str; 4] = ["", "d1", "d1/d2", "d3"];
const NAMES: [&str; 3] = ["a", "b", "d2"];
const XATTRS: [&str; 2] = ["user.a", "user.b"];

#[derive(Clone, Debug)]
enum Op {
    Create(String),
    Mkdir(String),
    Write {
        path: String,
        offset: u32,
        len: u16,
        byte: u8,
    },
    Truncate(String, u32),
    Rename {
        from: String,
        to: String,
        flags: u8,
    },
    Link(String, String),
    Unlink(String),
    Rmdir(String),
    Chmod(String, u16),
    SetXattr(String, usize, u8),
    RemoveXattr(String, usize),
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..DIRS.len(), 0..NAMES.len()).prop_map(|(d, n)| {
            if DIRS[d].is_empty() {
                NAMES[n].to_string()
            } else {
                format!("{}/{}", DIRS[d], NAMES[n])
            }
        }),
        (1..DIRS.len()).prop_map(|d| DIRS[d].to_string()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => path().prop_map(Op::Create),
        3 => path().prop_map(Op::Mkdir),
        4 => (path(), 0u32..70_000, 0u16..5_000, any::<u8>())
            .prop_map(|(path, offset, len, byte)| Op::Write { path, offset, len, byte }),
        2 => (path(), 0u32..70_000).prop_map(|(p, s)| Op::Truncate(p, s)),
        3 => (path(), path(), 0u8..3).prop_map(|(from, to, flags)| Op::Rename { from, to, flags }),
        2 => (path(), path()).prop_map(|(a, b)| Op::Link(a, b)),
        2 => path().prop_map(Op::Unlink),
        2 => path().prop_map(Op::Rmdir),
        1 => (path(), 0u16..0o777).prop_map(|(p, m)| Op::Chmod(p, m)),
        1 => (path(), 0..XATTRS.len(), any::<u8>()).prop_map(|(p, n, v)| Op::SetXattr(p, n, v)),
        1 => (path(), 0..XATTRS.len()).prop_map(|(p, n)| Op::RemoveXattr(p, n)),
    ]
}

fn rename_flags(flags: u8) -> RenameFlags {
    RenameFlags {
        noreplace: flags == 1,
        exchange: flags == 2,
    }
}

// ---- what is compared ---------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    dir: bool,
    perm: u32,
    nlink: u64,
    content: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

type Tree = BTreeMap<String, Node>;

trait Target {
    /// Applies an op; `Err(errno)` if it failed.
    fn apply(&mut self, op: &Op) -> Result<(), i32>;
    fn tree(&self) -> Tree;
}

// ---- the in-memory model ------------------------------------------------------------------

#[derive(Clone, Debug)]
enum MKind {
    File(Vec<u8>),
    Dir(BTreeMap<String, u64>),
}

#[derive(Clone, Debug)]
struct MInode {
    kind: MKind,
    perm: u32,
    nlink: u64,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// POSIX as Linux answers it, for the ops above, in a few dozen lines.
struct Model {
    inodes: BTreeMap<u64, MInode>,
    next: u64,
}

impl Model {
    fn new() -> Model {
        let root = MInode {
            kind: MKind::Dir(BTreeMap::new()),
            perm: 0o755,
            nlink: 2,
            xattrs: BTreeMap::new(),
        };
        Model {
            inodes: BTreeMap::from([(1, root)]),
            next: 2,
        }
    }

    fn children(&self, dir: u64) -> Option<&BTreeMap<String, u64>> {
        match &self.inodes[&dir].kind {
            MKind::Dir(c) => Some(c),
            MKind::File(_) => None,
        }
    }

    /// (parent, name): the parent must exist and be a directory.
    fn parent(&self, path: &str) -> Result<(u64, String), i32> {
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().unwrap().to_string();
        let mut at = 1;
        for p in parts {
            let c = self.children(at).ok_or(libc::ENOTDIR)?;
            at = *c.get(p).ok_or(libc::ENOENT)?;
        }
        self.children(at).ok_or(libc::ENOTDIR)?;
        Ok((at, name))
    }

    fn resolve(&self, path: &str) -> Result<u64, i32> {
        let (p, name) = self.parent(path)?;
        self.children(p)
            .unwrap()
            .get(&name)
            .copied()
            .ok_or(libc::ENOENT)
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(self.inodes[&ino].kind, MKind::Dir(_))
    }

    fn entries(&mut self, dir: u64) -> &mut BTreeMap<String, u64> {
        match &mut self.inodes.get_mut(&dir).unwrap().kind {
            MKind::Dir(c) => c,
            MKind::File(_) => unreachable!(),
        }
    }

    fn add(&mut self, parent: u64, name: String, kind: MKind, perm: u32) {
        let dir = matches!(kind, MKind::Dir(_));
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(
            ino,
            MInode {
                kind,
                perm,
                nlink: if dir { 2 } else { 1 },
                xattrs: BTreeMap::new(),
            },
        );
        self.entries(parent).insert(name, ino);
        if dir {
            self.inodes.get_mut(&parent).unwrap().nlink += 1;
        }
    }

    /// Whether `victim` may lose its name to an op expecting a directory (`as_dir`) or not.
    fn removable(&self, as_dir: bool, victim: u64) -> Result<(), i32> {
        match (as_dir, self.is_dir(victim)) {
            (true, false) => Err(libc::ENOTDIR),
            (false, true) => Err(libc::EISDIR),
            (true, true) if !self.children(victim).unwrap().is_empty() => Err(libc::ENOTEMPTY),
            _ => Ok(()),
        }
    }

    /// Removes `parent/name`, naming `ino`, and drops that link.
    fn unname(&mut self, parent: u64, name: &str, ino: u64) {
        self.entries(parent).remove(name);
        if self.is_dir(ino) {
            self.inodes.get_mut(&parent).unwrap().nlink -= 1;
        }
        let n = self.inodes.get_mut(&ino).unwrap();
        n.nlink = if matches!(n.kind, MKind::Dir(_)) {
            0
        } else {
            n.nlink - 1
        };
        if n.nlink == 0 {
            self.inodes.remove(&ino);
        }
    }

    fn is_ancestor(&self, anc: u64, mut of: u64) -> bool {
        loop {
            if of == anc {
                return true;
            }
            if of == 1 {
                return false;
            }
            of = self.parent_of(of);
        }
    }

    fn parent_of(&self, dir: u64) -> u64 {
        for (&ino, n) in &self.inodes {
            if let MKind::Dir(c) = &n.kind
                && c.values().any(|&v| v == dir)
            {
                return ino;
            }
        }
        1
    }

    fn file_mut(&mut self, path: &str) -> Result<&mut Vec<u8>, i32> {
        let ino = self.resolve(path)?;
        match &mut self.inodes.get_mut(&ino).unwrap().kind {
            MKind::File(data) => Ok(data),
            MKind::Dir(_) => Err(libc::EISDIR),
        }
    }

    fn rename(&mut self, from: &str, to: &str, flags: RenameFlags) -> Result<(), i32> {
        // Linux walks both parents before it looks the source up.
        let (sp, sname) = self.parent(from)?;
        let (dp, dname) = self.parent(to)?;
        let src = *self.children(sp).unwrap().get(&sname).ok_or(libc::ENOENT)?;
        let dst = self.children(dp).unwrap().get(&dname).copied();
        if self.is_dir(src) && sp != dp && self.is_ancestor(src, dp) {
            return Err(libc::EINVAL);
        }
        if flags.exchange {
            let dst = dst.ok_or(libc::ENOENT)?;
            if self.is_dir(dst) && sp != dp && self.is_ancestor(dst, sp) {
                return Err(libc::EINVAL);
            }
            if src == dst {
                return Ok(());
            }
            self.entries(sp).insert(sname, dst);
            self.entries(dp).insert(dname, src);
            if sp != dp {
                let (s, d) = (self.is_dir(src) as i64, self.is_dir(dst) as i64);
                let pn = &mut self.inodes.get_mut(&sp).unwrap().nlink;
                *pn = (*pn as i64 + d - s) as u64;
                let dn = &mut self.inodes.get_mut(&dp).unwrap().nlink;
                *dn = (*dn as i64 + s - d) as u64;
            }
            return Ok(());
        }
        if let Some(dst) = dst {
            if flags.noreplace {
                return Err(libc::EEXIST);
            }
            if dst == src {
                return Ok(());
            }
            self.removable(self.is_dir(src), dst)?;
            self.unname(dp, &dname, dst);
        }
        self.entries(sp).remove(&sname);
        self.entries(dp).insert(dname, src);
        if self.is_dir(src) && sp != dp {
            self.inodes.get_mut(&sp).unwrap().nlink -= 1;
            self.inodes.get_mut(&dp).unwrap().nlink += 1;
        }
        Ok(())
    }
}

impl Target for Model {
    fn apply(&mut self, op: &Op) -> Result<(), i32> {
        match op {
            Op::Create(p) | Op::Mkdir(p) => {
                let (parent, name) = self.parent(p)?;
                if self.children(parent).unwrap().contains_key(&name) {
                    return Err(libc::EEXIST);
                }
                let kind = if matches!(op, Op::Mkdir(_)) {
                    MKind::Dir(BTreeMap::new())
                } else {
                    MKind::File(Vec::new())
                };
                let perm = if matches!(op, Op::Mkdir(_)) {
                    0o755
                } else {
                    0o644
                };
                self.add(parent, name, kind, perm);
                Ok(())
            }
            Op::Write {
                path,
                offset,
                len,
                byte,
            } => {
                let data = self.file_mut(path)?;
                let (off, end) = (*offset as usize, *offset as usize + *len as usize);
                if *len > 0 && data.len() < end {
                    data.resize(end, 0);
                }
                data[off.min(end)..end].fill(*byte);
                Ok(())
            }
            Op::Truncate(p, size) => {
                self.file_mut(p)?.resize(*size as usize, 0);
                Ok(())
            }
            Op::Rename { from, to, flags } => self.rename(from, to, rename_flags(*flags)),
            Op::Link(src, dst) => {
                let s = self.resolve(src)?;
                let (dp, dname) = self.parent(dst)?;
                if self.children(dp).unwrap().contains_key(&dname) {
                    return Err(libc::EEXIST);
                }
                if self.is_dir(s) {
                    return Err(libc::EPERM);
                }
                self.inodes.get_mut(&s).unwrap().nlink += 1;
                self.entries(dp).insert(dname, s);
                Ok(())
            }
            Op::Unlink(p) | Op::Rmdir(p) => {
                let (parent, name) = self.parent(p)?;
                let ino = *self
                    .children(parent)
                    .unwrap()
                    .get(&name)
                    .ok_or(libc::ENOENT)?;
                self.removable(matches!(op, Op::Rmdir(_)), ino)?;
                self.unname(parent, &name, ino);
                Ok(())
            }
            Op::Chmod(p, mode) => {
                let ino = self.resolve(p)?;
                self.inodes.get_mut(&ino).unwrap().perm = u32::from(*mode);
                Ok(())
            }
            Op::SetXattr(p, n, v) => {
                let ino = self.resolve(p)?;
                self.inodes
                    .get_mut(&ino)
                    .unwrap()
                    .xattrs
                    .insert(XATTRS[*n].into(), vec![*v; 3]);
                Ok(())
            }
            Op::RemoveXattr(p, n) => {
                let ino = self.resolve(p)?;
                self.inodes
                    .get_mut(&ino)
                    .unwrap()
                    .xattrs
                    .remove(XATTRS[*n])
                    .map(drop)
                    .ok_or(libc::ENODATA)
            }
        }
    }

    fn tree(&self) -> Tree {
        let mut out = Tree::new();
        let mut stack = vec![(String::new(), 1u64)];
        while let Some((prefix, dir)) = stack.pop() {
            for (name, &ino) in self.children(dir).unwrap() {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                let n = &self.inodes[&ino];
                let (dir, content) = match &n.kind {
                    MKind::Dir(_) => {
                        stack.push((path.clone(), ino));
                        (true, Vec::new())
                    }
                    MKind::File(d) => (false, d.clone()),
                };
                out.insert(
                    path,
                    Node {
                        dir,
                        perm: n.perm,
                        nlink: n.nlink,
                        content,
                        xattrs: n.xattrs.clone(),
                    },
                );
            }
        }
        out
    }
}

// ---- the core, without FUSE ---------------------------------------------------------------

struct Core {
    fs: TenantFs,
    _dir: tempfile::TempDir,
}

const CTX: Ctx = Ctx {
    uid: 0,
    gid: 0,
    pid: 1,
};

impl Core {
    fn new() -> Core {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("meta.db");
        Meta::create(&db, 0, 0, 0, false).unwrap();
        let objects = Arc::new(LocalObjects::new(dir.path().join("objects")));
        let fs = TenantFs::new(
            Meta::open(&db).unwrap(),
            objects,
            MountSpec::admin(),
            "model".into(),
        )
        .unwrap();
        Core { fs, _dir: dir }
    }

    fn parent(&self, path: &str) -> Result<(Ino, String), FsError> {
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().unwrap().to_string();
        let mut at = ROOT_INO;
        for p in parts {
            at = self.fs.lookup(at, p.as_bytes())?.ino;
        }
        // The kernel's path walk refuses a parent that is not a directory before any op.
        if self.fs.getattr(at)?.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok((at, name))
    }

    fn resolve(&self, path: &str) -> Result<Ino, FsError> {
        let (p, name) = self.parent(path)?;
        Ok(self.fs.lookup(p, name.as_bytes())?.ino)
    }

    fn open_file(&self, path: &str) -> Result<u64, FsError> {
        let ino = self.resolve(path)?;
        self.fs.open(ino, libc::O_RDWR)
    }

    fn run(&mut self, op: &Op) -> Result<(), FsError> {
        let fs = &self.fs;
        match op {
            Op::Create(p) => {
                let (parent, name) = self.parent(p)?;
                let (_, fh) = fs.create(
                    &CTX,
                    parent,
                    name.as_bytes(),
                    0o644,
                    0,
                    libc::O_WRONLY | libc::O_EXCL,
                )?;
                fs.release(fh)
            }
            Op::Mkdir(p) => {
                let (parent, name) = self.parent(p)?;
                fs.mkdir(&CTX, parent, name.as_bytes(), 0o755, 0).map(drop)
            }
            Op::Write {
                path,
                offset,
                len,
                byte,
            } => {
                let fh = self.open_file(path)?;
                let res = fs.write(fh, u64::from(*offset), &vec![*byte; usize::from(*len)]);
                fs.release(fh)?;
                res.map(drop)
            }
            Op::Truncate(p, size) => {
                let ino = self.resolve(p)?;
                fs.setattr(
                    ino,
                    SetAttr {
                        size: Some(u64::from(*size)),
                        ..Default::default()
                    },
                )
                .map(drop)
            }
            Op::Rename { from, to, flags } => {
                let (sp, sname) = self.parent(from)?;
                let (dp, dname) = self.parent(to)?;
                fs.rename(
                    sp,
                    sname.as_bytes(),
                    dp,
                    dname.as_bytes(),
                    rename_flags(*flags),
                )
            }
            Op::Link(src, dst) => {
                let ino = self.resolve(src)?;
                let (dp, dname) = self.parent(dst)?;
                fs.link(ino, dp, dname.as_bytes()).map(drop)
            }
            Op::Unlink(p) => {
                let (parent, name) = self.parent(p)?;
                fs.unlink(parent, name.as_bytes())
            }
            Op::Rmdir(p) => {
                let (parent, name) = self.parent(p)?;
                fs.rmdir(parent, name.as_bytes())
            }
            Op::Chmod(p, mode) => {
                let ino = self.resolve(p)?;
                fs.setattr(
                    ino,
                    SetAttr {
                        mode: Some(u32::from(*mode)),
                        ..Default::default()
                    },
                )
                .map(drop)
            }
            Op::SetXattr(p, n, v) => {
                let ino = self.resolve(p)?;
                fs.setxattr(ino, XATTRS[*n].as_bytes(), &[*v; 3], XattrMode::Any)
            }
            Op::RemoveXattr(p, n) => {
                let ino = self.resolve(p)?;
                fs.removexattr(ino, XATTRS[*n].as_bytes())
            }
        }
    }
}

impl Target for Core {
    fn apply(&mut self, op: &Op) -> Result<(), i32> {
        self.run(op).map_err(|e| e.errno())
    }

    fn tree(&self) -> Tree {
        let mut out = Tree::new();
        let mut stack = vec![(String::new(), ROOT_INO)];
        while let Some((prefix, dir)) = stack.pop() {
            let fh = self.fs.opendir(dir).unwrap();
            let entries = self.fs.readdir(fh, dir, 0, usize::MAX, true).unwrap();
            self.fs.releasedir(fh).unwrap();
            for e in entries
                .into_iter()
                .filter(|e| e.name != b"." && e.name != b"..")
            {
                let name = String::from_utf8(e.name).unwrap();
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let a = e.attr.unwrap();
                let content = if a.kind == Kind::File {
                    let fh = self.fs.open(a.ino, libc::O_RDONLY).unwrap();
                    let data = self.fs.read(fh, 0, 1 << 20).unwrap();
                    self.fs.release(fh).unwrap();
                    data
                } else {
                    stack.push((path.clone(), a.ino));
                    Vec::new()
                };
                let names = self.fs.listxattr(a.ino).unwrap();
                let xattrs = names
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(|n| {
                        (
                            String::from_utf8(n.to_vec()).unwrap(),
                            self.fs.getxattr(a.ino, n).unwrap(),
                        )
                    })
                    .collect();
                let node = Node {
                    dir: a.kind == Kind::Dir,
                    perm: u32::from(a.perm),
                    nlink: u64::from(a.nlink),
                    content,
                    xattrs,
                };
                out.insert(path, node);
            }
        }
        out
    }
}

// ---- a real directory: a tenantfs mount, or the host's disk -------------------------------

struct Dir {
    root: PathBuf,
}

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn nix_errno(e: nix::Error) -> i32 {
    e as i32
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

impl Target for Dir {
    fn apply(&mut self, op: &Op) -> Result<(), i32> {
        let at = |p: &str| self.root.join(p);
        match op {
            Op::Create(p) => fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(at(p))
                .map(drop)
                .map_err(errno),
            Op::Mkdir(p) => fs::create_dir(at(p)).map_err(errno),
            Op::Write {
                path,
                offset,
                len,
                byte,
            } => {
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(at(path))
                    .map_err(errno)?;
                f.write_all_at(&vec![*byte; usize::from(*len)], u64::from(*offset))
                    .map_err(errno)
            }
            Op::Truncate(p, size) => {
                nix::unistd::truncate(&at(p), i64::from(*size)).map_err(nix_errno)
            }
            Op::Rename { from, to, flags } => {
                let flags = match flags {
                    1 => nix::fcntl::RenameFlags::RENAME_NOREPLACE,
                    2 => nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                    _ => nix::fcntl::RenameFlags::empty(),
                };
                nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &at(from),
                    nix::fcntl::AT_FDCWD,
                    &at(to),
                    flags,
                )
                .map_err(nix_errno)
            }
            Op::Link(src, dst) => fs::hard_link(at(src), at(dst)).map_err(errno),
            Op::Unlink(p) => fs::remove_file(at(p)).map_err(errno),
            Op::Rmdir(p) => fs::remove_dir(at(p)).map_err(errno),
            Op::Chmod(p, mode) => {
                fs::set_permissions(at(p), fs::Permissions::from_mode(u32::from(*mode)))
                    .map_err(errno)
            }
            Op::SetXattr(p, n, v) => {
                let (path, name) = (cpath(&at(p)), CString::new(XATTRS[*n]).unwrap());
                let value = [*v; 3];
                // SAFETY: NUL-terminated path and name; a 3-byte buffer of the given length.
                let rc = unsafe {
                    libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), 3, 0)
                };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(errno(std::io::Error::last_os_error()))
                }
            }
            Op::RemoveXattr(p, n) => {
                let (path, name) = (cpath(&at(p)), CString::new(XATTRS[*n]).unwrap());
                // SAFETY: NUL-terminated path and name.
                let rc = unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(errno(std::io::Error::last_os_error()))
                }
            }
        }
    }

    fn tree(&self) -> Tree {
        let mut out = Tree::new();
        let mut stack = vec![(String::new(), self.root.clone())];
        while let Some((prefix, dir)) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let md = fs::symlink_metadata(e.path()).unwrap();
                let content = if md.is_dir() {
                    stack.push((path.clone(), e.path()));
                    Vec::new()
                } else {
                    fs::read(e.path()).unwrap()
                };
                let mut xattrs = BTreeMap::new();
                for n in XATTRS {
                    let (p, name) = (cpath(&e.path()), CString::new(n).unwrap());
                    let mut buf = [0u8; 64];
                    // SAFETY: NUL-terminated path and name; a buffer of the given length.
                    let rc = unsafe {
                        libc::getxattr(
                            p.as_ptr(),
                            name.as_ptr(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                        )
                    };
                    if rc >= 0 {
                        xattrs.insert(n.to_string(), buf[..rc as usize].to_vec());
                    }
                }
                out.insert(
                    path,
                    Node {
                        dir: md.is_dir(),
                        perm: md.mode() & 0o7777,
                        nlink: md.nlink(),
                        content,
                        xattrs,
                    },
                );
            }
        }
        out
    }
}

// ---- running and comparing ----------------------------------------------------------------

fn compare(a: &mut dyn Target, b: &mut dyn Target, ops: &[Op]) -> Result<(), TestCaseError> {
    for (i, op) in ops.iter().enumerate() {
        let (ra, rb) = (a.apply(op), b.apply(op));
        prop_assert_eq!(ra, rb, "step {}: {:?} answered differently", i, op);
        let (ta, tb) = (a.tree(), b.tree());
        if ta != tb {
            let paths: Vec<&String> = ta.keys().chain(tb.keys()).collect();
            for p in paths {
                prop_assert_eq!(
                    ta.get(p),
                    tb.get(p),
                    "step {}: {:?} left {} different",
                    i,
                    op,
                    p
                );
            }
        }
    }
    Ok(())
}

/// Shrunk failures are kept below as named tests, not in a persistence file.
/// `PROPTEST_CASES` overrides the number of cases for a longer hunt.
fn config(cases: u32, max_shrink_iters: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256, 2000))]

    #[test]
    fn the_core_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        compare(&mut Core::new(), &mut Model::new(), &ops)?;
    }
}

/// A mount and a host directory, both with umask 0 semantics: modes are set explicitly.
fn mount_and_native() -> (common::Env, common::Mount, tempfile::TempDir) {
    let env = common::Env::new();
    let m = env.mounted_tenant("model", "m");
    let native = tempfile::Builder::new()
        .prefix("tfs-native-")
        .tempdir_in("/var/tmp")
        .unwrap();
    (env, m, native)
}

proptest! {
    #![proptest_config(config(24, 200))]

    #[test]
    fn a_mount_matches_the_host_disk(ops in prop::collection::vec(op(), 1..30)) {
        let (_env, m, native) = mount_and_native();
        let case = m.path.join(format!("case-{}", std::process::id()));
        fs::create_dir(&case).unwrap();
        let mut mounted = Dir { root: case };
        let mut host = Dir { root: native.path().to_path_buf() };
        compare(&mut mounted, &mut host, &ops)?;
    }
}

// ---- regressions: shrunk failures, kept by name ---------------------------------------------

fn replay(ops: Vec<Op>) {
    compare(&mut Core::new(), &mut Model::new(), &ops).unwrap();
    let (_env, m, native) = mount_and_native();
    let mut mounted = Dir {
        root: m.path.clone(),
    };
    let mut host = Dir {
        root: native.path().to_path_buf(),
    };
    compare(&mut mounted, &mut host, &ops).unwrap();
}

#[test]
fn regression_write_far_past_the_end_leaves_a_hole() {
    replay(vec![
        Op::Create("a".into()),
        Op::Write {
            path: "a".into(),
            offset: 65_000,
            len: 10,
            byte: 7,
        },
        Op::Truncate("a".into(), 3),
        Op::Truncate("a".into(), 66_000),
    ]);
}

#[test]
fn regression_exchange_a_directory_into_another() {
    replay(vec![
        Op::Mkdir("d1".into()),
        Op::Mkdir("d3".into()),
        Op::Create("d3/a".into()),
        Op::Mkdir("d1/d2".into()),
        Op::Rename {
            from: "d1/d2".into(),
            to: "d3/a".into(),
            flags: 2,
        },
        Op::Rmdir("d3/a".into()),
    ]);
}

#[test]
fn regression_a_file_named_like_a_directory() {
    replay(vec![
        Op::Create("d1".into()),
        Op::Create("d1/a".into()),
        Op::Mkdir("d1/d2".into()),
        Op::Link("d1".into(), "d3".into()),
        Op::Rename {
            from: "d3".into(),
            to: "d1".into(),
            flags: 0,
        },
        Op::Unlink("d1".into()),
    ]);
}

#[test]
fn regression_rename_into_a_file_used_as_a_directory_is_enotdir_before_enoent() {
    replay(vec![
        Op::Create("d3".into()),
        Op::Rename {
            from: "a".into(),
            to: "d3/a".into(),
            flags: 0,
        },
    ]);
}

#[test]
fn regression_linking_a_directory_onto_an_existing_name_is_eexist() {
    replay(vec![
        Op::Mkdir("d1".into()),
        Op::Create("d1/d2".into()),
        Op::Link("d1".into(), "d1/d2".into()),
    ]);
    replay(vec![
        Op::Mkdir("d1".into()),
        Op::Create("d1/d2".into()),
        Op::Link("d1".into(), "d1/d2/a".into()),
    ]);
}
