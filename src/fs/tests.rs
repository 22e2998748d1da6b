//! The core without FUSE: POSIX rules, orphans, snapshots, scopes, revocation, recovery.

use std::sync::Arc;

use super::*;
use crate::ids::{Scope, TenantId};
use crate::meta::Meta;
use crate::objects::LocalObjects;
use crate::policy::Rights;
use crate::store::{Session, Store};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    tenant: TenantId,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        Store::init(&root).unwrap();
        let store = Store::open(&root).unwrap();
        let tenant: TenantId = "t".parse().unwrap();
        store.create_tenant(&tenant, "t", (0, 0), false).unwrap();
        Fixture {
            _dir: dir,
            store,
            tenant,
        }
    }

    /// A core with its session, as a mount has them.
    fn core(&self, read_only: bool) -> (TenantFs, Session) {
        let mut meta = self.store.open_meta(&self.tenant).unwrap();
        let session = Session::start(&self.store, &self.tenant, &mut meta).unwrap();
        let objects = Arc::new(self.store.objects(&self.tenant));
        let scope = if read_only { Scope::Read } else { Scope::Write };
        let spec = MountSpec {
            root: ROOT_INO,
            subject: "user:alice".into(),
            scope,
            audit: None,
            rights_cache: access::CACHE_ENTRIES,
        };
        (
            TenantFs::new(meta, objects, spec, session.id.clone()).unwrap(),
            session,
        )
    }

    fn meta(&self) -> Meta {
        self.store.open_meta(&self.tenant).unwrap()
    }

    /// Objects on disk, once `fs`'s reaper has caught up.
    fn objects(&self, fs: &TenantFs) -> usize {
        fs.settle();
        LocalObjects::new(self.store.tenant_dir(&self.tenant).join("objects"))
            .all()
            .unwrap()
            .len()
    }
}

const CTX: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
    pid: 1,
};

fn file(fs: &TenantFs, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let (a, fh) = fs
        .create(&CTX, parent, name.as_bytes(), 0o644, 0o022, libc::O_RDWR)
        .unwrap();
    fs.write(fh, 0, data).unwrap();
    fs.release(fh).unwrap();
    a.ino
}

fn read_all(fs: &TenantFs, ino: Ino) -> Vec<u8> {
    let fh = fs.open(ino, libc::O_RDONLY).unwrap();
    let data = fs.read(fh, 0, 1 << 20).unwrap();
    fs.release(fh).unwrap();
    data
}

fn names(fs: &TenantFs, dir: Ino) -> Vec<String> {
    let fh = fs.opendir(dir).unwrap();
    let out = fs.readdir(fh, dir, 0, 10_000, false).unwrap();
    fs.releasedir(fh).unwrap();
    out.into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect()
}

#[test]
fn create_write_read_and_attributes() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let (a, fh) = fs
        .create(&CTX, ROOT_INO, b"a", 0o666, 0o022, libc::O_RDWR)
        .unwrap();
    assert_eq!(
        (a.perm, a.uid, a.gid, a.nlink, a.size),
        (0o644, 1000, 1000, 1, 0)
    );
    assert_eq!(fs.write(fh, 3, b"xyz").unwrap(), 3);
    // Live size is visible before the handle is closed.
    assert_eq!(fs.getattr(a.ino).unwrap().size, 6);
    assert_eq!(fs.read(fh, 0, 100).unwrap(), b"\0\0\0xyz");
    assert_eq!(fs.read(fh, 6, 100).unwrap(), b"");
    fs.release(fh).unwrap();
    assert_eq!(
        f.meta().read().inode(a.ino).unwrap().unwrap().size,
        6,
        "written back at release"
    );
    assert_eq!(f.meta().read().usage().unwrap(), (6, 2));
    assert!(matches!(
        fs.create(&CTX, ROOT_INO, b"a", 0o644, 0, libc::O_EXCL),
        Err(FsError::Exists)
    ));
    // Without O_EXCL the kernel is told to look the name up again and open it.
    assert!(matches!(
        fs.create(&CTX, ROOT_INO, b"a", 0o644, 0, 0),
        Err(FsError::Stale)
    ));
    assert!(matches!(
        fs.lookup(ROOT_INO, b"nope"),
        Err(FsError::NotFound)
    ));
    assert!(matches!(fs.lookup(a.ino, b"x"), Err(FsError::NotDir)));
}

#[test]
fn append_handles_write_at_the_end() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "log", b"one\n");
    let fh = fs.open(ino, libc::O_WRONLY | libc::O_APPEND).unwrap();
    fs.write(fh, 0, b"two\n").unwrap();
    fs.release(fh).unwrap();
    assert_eq!(read_all(&fs, ino), b"one\ntwo\n");
    let ro = fs.open(ino, libc::O_RDONLY).unwrap();
    assert!(matches!(fs.write(ro, 0, b"x"), Err(FsError::BadHandle)));
}

#[test]
fn names_are_checked() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let long = vec![b'a'; 256];
    assert!(matches!(
        fs.mkdir(&CTX, ROOT_INO, &long, 0o755, 0),
        Err(FsError::NameTooLong)
    ));
    assert!(matches!(
        fs.lookup(ROOT_INO, &long),
        Err(FsError::NameTooLong)
    ));
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert!(
            matches!(
                fs.mkdir(&CTX, ROOT_INO, bad, 0o755, 0),
                Err(FsError::Invalid)
            ),
            "{bad:?}"
        );
    }
    fs.mkdir(&CTX, ROOT_INO, &vec![b'a'; 255], 0o755, 0)
        .unwrap();
    fs.mkdir(&CTX, ROOT_INO, b"\xff\xfe", 0o755, 0).unwrap();
    assert!(fs.lookup(ROOT_INO, b"\xff\xfe").is_ok());
}

#[test]
fn unlinked_open_file_is_reclaimed_at_last_release() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "tmp", b"data");
    let fh1 = fs.open(ino, libc::O_RDWR).unwrap();
    let fh2 = fs.open(ino, libc::O_RDONLY).unwrap();
    fs.unlink(ROOT_INO, b"tmp").unwrap();
    assert!(matches!(
        fs.lookup(ROOT_INO, b"tmp"),
        Err(FsError::NotFound)
    ));
    assert_eq!(fs.getattr(ino).unwrap().nlink, 0);
    fs.write(fh1, 4, b"+more").unwrap();
    assert_eq!(fs.read(fh2, 0, 100).unwrap(), b"data+more");
    fs.release(fh1).unwrap();
    assert_eq!(f.objects(&fs), 1, "still open once");
    fs.release(fh2).unwrap();
    assert_eq!(f.objects(&fs), 0);
    assert!(f.meta().read().inode(ino).unwrap().is_none());
    assert_eq!(f.meta().read().usage().unwrap(), (0, 1));
    assert!(
        f.meta().read().gc_pending().unwrap().len() <= 1,
        "gc rows go in the next transaction"
    );
    fs.mkdir(&CTX, ROOT_INO, b"d", 0o755, 0).unwrap();
    assert!(f.meta().read().gc_pending().unwrap().is_empty());
}

#[test]
fn hard_links_share_content_and_count() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "a", b"x");
    let d = fs.mkdir(&CTX, ROOT_INO, b"d", 0o755, 0).unwrap().ino;
    assert_eq!(fs.link(ino, d, b"b").unwrap().nlink, 2);
    assert!(matches!(
        fs.link(d, ROOT_INO, b"dl"),
        Err(FsError::NotPermitted)
    ));
    fs.unlink(ROOT_INO, b"a").unwrap();
    assert_eq!(fs.lookup(d, b"b").unwrap().nlink, 1);
    assert_eq!(names(&fs, d), [".", "..", "b"]);
    assert_eq!(read_all(&fs, ino), b"x");
    fs.unlink(d, b"b").unwrap();
    fs.purge_ghosts(true).unwrap();
    assert_eq!(f.objects(&fs), 0);
}

#[test]
fn rename_rules() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let none = RenameFlags::default();
    let a = fs.mkdir(&CTX, ROOT_INO, b"a", 0o755, 0).unwrap().ino;
    let b = fs.mkdir(&CTX, a, b"b", 0o755, 0).unwrap().ino;
    assert!(
        matches!(
            fs.rename(ROOT_INO, b"a", b, b"x", none),
            Err(FsError::Invalid)
        ),
        "no loops"
    );
    let c = fs.mkdir(&CTX, ROOT_INO, b"c", 0o755, 0).unwrap().ino;
    fs.rename(a, b"b", c, b"b", none).unwrap();
    assert_eq!(fs.getattr(a).unwrap().nlink, 2);
    assert_eq!(fs.getattr(c).unwrap().nlink, 3);
    assert_eq!(f.meta().read().dir_parent(b).unwrap(), Some(c));

    let x = file(&fs, ROOT_INO, "x", b"x");
    let y = file(&fs, ROOT_INO, "y", b"y");
    let noreplace = RenameFlags {
        noreplace: true,
        exchange: false,
    };
    assert!(matches!(
        fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", noreplace),
        Err(FsError::Exists)
    ));
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", exchange).unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"x").unwrap().ino, y);
    fs.rename(ROOT_INO, b"x", ROOT_INO, b"y", none).unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"y").unwrap().ino, y);
    fs.purge_ghosts(true).unwrap();
    assert!(
        f.meta().read().inode(x).unwrap().is_none(),
        "the replaced file is gone"
    );
    assert!(matches!(
        fs.rename(ROOT_INO, b"y", ROOT_INO, b"c", none),
        Err(FsError::IsDir)
    ));
    assert!(matches!(
        fs.rename(ROOT_INO, b"c", ROOT_INO, b"y", none),
        Err(FsError::NotDir)
    ));
    assert!(matches!(
        fs.rename(ROOT_INO, b"a", ROOT_INO, b"c", none),
        Err(FsError::NotEmpty)
    ));
    // Exchanging a file and a directory across parents moves the parent links too.
    fs.rename(ROOT_INO, b"y", c, b"b", exchange).unwrap();
    assert_eq!(fs.getattr(c).unwrap().nlink, 2);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 5);
    assert_eq!(f.meta().read().dir_parent(b).unwrap(), Some(ROOT_INO));
}

#[test]
fn readdir_streams_are_snapshots_with_stable_cookies() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    for i in 0..10 {
        file(&fs, ROOT_INO, &format!("f{i}"), b"");
    }
    let fh = fs.opendir(ROOT_INO).unwrap();
    let first = fs.readdir(fh, ROOT_INO, 0, 5, false).unwrap();
    assert_eq!(first[0].name, b".");
    assert_eq!(first[1].name, b"..");
    // Changes after the snapshot do not disturb the stream.
    fs.unlink(ROOT_INO, b"f5").unwrap();
    file(&fs, ROOT_INO, "new", b"");
    let mut seen: Vec<Vec<u8>> = first.iter().map(|e| e.name.clone()).collect();
    let mut offset = first.last().unwrap().cookie;
    loop {
        let batch = fs.readdir(fh, ROOT_INO, offset, 3, false).unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.cookie;
        seen.extend(batch.into_iter().map(|e| e.name));
    }
    assert_eq!(seen.len(), 12);
    assert!(seen.contains(&b"f5".to_vec()) && !seen.contains(&b"new".to_vec()));
    // Rewinding takes a new snapshot.
    let again: Vec<Vec<u8>> = fs
        .readdir(fh, ROOT_INO, 0, 100, true)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(again.contains(&b"new".to_vec()) && !again.contains(&b"f5".to_vec()));
    fs.releasedir(fh).unwrap();
    assert!(matches!(
        fs.readdir(fh, ROOT_INO, 3, 10, false),
        Err(FsError::BadHandle)
    ));
}

#[test]
fn a_read_only_core_refuses_every_change() {
    let f = Fixture::new();
    {
        let (fs, _s) = f.core(false);
        file(&fs, ROOT_INO, "f", b"x");
    }
    let (fs, _s) = f.core(true);
    let ino = fs.lookup(ROOT_INO, b"f").unwrap().ino;
    let ro = |r: FsResult<()>| assert!(matches!(r, Err(FsError::ReadOnly)), "{r:?}");
    ro(fs.create(&CTX, ROOT_INO, b"n", 0o644, 0, 0).map(drop));
    ro(fs.mkdir(&CTX, ROOT_INO, b"n", 0o755, 0).map(drop));
    ro(fs
        .mknod(&CTX, ROOT_INO, b"n", libc::S_IFIFO | 0o644, 0, 0)
        .map(drop));
    ro(fs.symlink(&CTX, ROOT_INO, b"n", b"f").map(drop));
    ro(fs.link(ino, ROOT_INO, b"n").map(drop));
    ro(fs.unlink(ROOT_INO, b"f"));
    ro(fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", RenameFlags::default()));
    ro(fs
        .setattr(
            ino,
            SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .map(drop));
    ro(fs.setxattr(ino, b"user.a", b"1", XattrMode::Any));
    ro(fs.open(ino, libc::O_WRONLY).map(drop));
    assert_eq!(read_all(&fs, ino), b"x");
}

#[test]
fn a_stopped_core_refuses_everything_but_release() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "f", b"x");
    let fh = fs.open(ino, libc::O_RDONLY).unwrap();
    fs.stop(Stop::Revoked);
    assert!(matches!(fs.getattr(ino), Err(FsError::Revoked)));
    assert!(matches!(fs.read(fh, 0, 1), Err(FsError::Revoked)));
    assert!(matches!(fs.lookup(ROOT_INO, b"f"), Err(FsError::Revoked)));
    assert!(matches!(fs.statfs(), Err(FsError::Revoked)));
    assert_eq!(FsError::Revoked.errno(), libc::EKEYREVOKED);
    fs.release(fh).unwrap();
    fs.stop(Stop::Expired);
    assert_eq!(fs.opendir(ROOT_INO).unwrap_err().errno(), libc::EKEYEXPIRED);
}

#[test]
fn only_the_user_xattr_namespace_is_stored() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "f", b"");
    fs.setxattr(ino, b"user.a", b"1", XattrMode::Create)
        .unwrap();
    assert!(matches!(
        fs.setxattr(ino, b"user.a", b"2", XattrMode::Create),
        Err(FsError::Exists)
    ));
    assert!(matches!(
        fs.setxattr(ino, b"user.b", b"2", XattrMode::Replace),
        Err(FsError::NoXattr)
    ));
    assert!(matches!(
        fs.setxattr(ino, b"user.v", &vec![0; 65537], XattrMode::Any),
        Err(FsError::TooBig)
    ));
    for ns in [
        &b"security.x"[..],
        b"trusted.x",
        b"system.posix_acl_access",
        b"tenantfs.x",
        b"user.",
    ] {
        assert!(
            matches!(
                fs.setxattr(ino, ns, b"1", XattrMode::Any),
                Err(FsError::NotSupported)
            ),
            "{ns:?}"
        );
        let read = fs.getxattr(ino, ns);
        if ns.starts_with(b"tenantfs.") || ns == b"user." {
            assert!(matches!(read, Err(FsError::NoXattr)), "{ns:?}");
        } else {
            assert!(matches!(read, Err(FsError::NotSupported)), "{ns:?}");
        }
    }
    assert_eq!(fs.listxattr(ino).unwrap(), b"user.a\0");
    fs.removexattr(ino, b"user.a").unwrap();
    assert!(fs.listxattr(ino).unwrap().is_empty());
}

#[test]
fn recovery_after_a_crash_restores_sizes_and_reclaims_orphans() {
    let f = Fixture::new();
    let (fs, session) = f.core(false);
    let kept = file(&fs, ROOT_INO, "kept", b"abc");
    let (a, writing) = fs
        .create(&CTX, ROOT_INO, b"writing", 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(writing, 0, &[7u8; 10_000]).unwrap();
    let orphan = file(&fs, ROOT_INO, "orphan", b"zzz");
    let held = fs.open(orphan, libc::O_RDONLY).unwrap();
    fs.unlink(ROOT_INO, b"orphan").unwrap();
    let growing = fs.open(kept, libc::O_RDWR).unwrap();
    fs.write(growing, 3, b"defg").unwrap();
    // The daemon dies: no release, no shutdown; its session lock goes with it.
    std::mem::forget(fs);
    drop(session);
    assert_eq!(
        f.meta().read().inode(a.ino).unwrap().unwrap().size,
        0,
        "size was only in memory"
    );

    let (fs, _s) = f.core(false);
    assert_eq!(fs.getattr(a.ino).unwrap().size, 10_000);
    assert_eq!(read_all(&fs, kept), b"abcdefg");
    assert!(fs.getattr(orphan).is_err());
    assert_eq!(f.objects(&fs), 2);
    assert_eq!(f.meta().read().usage().unwrap(), (10_007, 3));
    assert!(
        f.meta()
            .read()
            .sessions_with_state()
            .unwrap()
            .iter()
            .all(|s| s == &_s.id)
    );
    let _ = (held, writing, growing);
}

#[test]
fn a_live_sessions_state_is_left_alone() {
    let f = Fixture::new();
    let (a, _sa) = f.core(false);
    let ino = file(&a, ROOT_INO, "f", b"x");
    let fh = a.open(ino, libc::O_RDONLY).unwrap();
    a.unlink(ROOT_INO, b"f").unwrap();
    // A second mount of the same tenant starts while the first still holds the orphan.
    let (_b, _sb) = f.core(false);
    assert_eq!(a.read(fh, 0, 10).unwrap(), b"x");
    assert_eq!(f.objects(&a), 1);
    a.release(fh).unwrap();
    assert_eq!(f.objects(&a), 0);
}

#[test]
fn sub_tree_root_answers_dotdot_with_itself() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let d = fs.mkdir(&CTX, ROOT_INO, b"d", 0o755, 0).unwrap().ino;
    drop(fs);
    let meta = f.meta();
    let spec = MountSpec {
        root: d,
        ..MountSpec::admin()
    };
    let sub = TenantFs::new(
        meta,
        Arc::new(f.store.objects(&f.tenant)),
        spec,
        "sub".into(),
    )
    .unwrap();
    let fh = sub.opendir(d).unwrap();
    let dots = sub.readdir(fh, d, 0, 2, false).unwrap();
    assert_eq!((dots[1].name.as_slice(), dots[1].ino), (&b".."[..], d));
    assert!(matches!(sub.rmdir(ROOT_INO, b"d"), Err(FsError::Busy)));
}

/// A private tenant (no default entry) and a core acting as `subject`.
fn private_core(f: &Fixture, subject: &str) -> TenantFs {
    let meta = f.meta();
    let spec = MountSpec {
        root: ROOT_INO,
        subject: subject.into(),
        scope: Scope::Write,
        ..MountSpec::admin()
    };
    TenantFs::new(
        meta,
        Arc::new(f.store.objects(&f.tenant)),
        spec,
        subject.into(),
    )
    .unwrap()
}

fn grant(f: &Fixture, ino: Ino, entry: &str) {
    let crate::policy::EntrySpec::Set(subject, rights) = entry.parse().unwrap() else {
        panic!()
    };
    let mut meta = f.meta();
    meta.write(|tx| -> crate::meta::MetaResult<()> {
        tx.set_acl(ino, &subject, rights)?;
        tx.bump_policy()
    })
    .unwrap();
}

fn denied<T: std::fmt::Debug>(r: FsResult<T>) {
    assert!(matches!(r, Err(FsError::Denied)), "{r:?}");
}

#[test]
fn acl_rules_hold_in_the_core() {
    let f = Fixture::new();
    {
        let mut meta = f.meta();
        meta.write(|tx| tx.remove_acl(ROOT_INO, crate::policy::EVERYONE).map(drop))
            .unwrap();
    }
    let admin = {
        let meta = f.meta();
        TenantFs::new(
            meta,
            Arc::new(f.store.objects(&f.tenant)),
            MountSpec::admin(),
            "admin".into(),
        )
        .unwrap()
    };
    let sales = admin.mkdir(&CTX, ROOT_INO, b"sales", 0o777, 0).unwrap().ino;
    let hr = admin.mkdir(&CTX, ROOT_INO, b"hr", 0o777, 0).unwrap().ino;
    let shared = admin
        .mkdir(&CTX, ROOT_INO, b"shared", 0o777, 0)
        .unwrap()
        .ino;
    let secret = file(&admin, hr, "salaries.csv", b"secret");
    let report = file(&admin, shared, "report.txt", b"numbers");
    grant(&f, ROOT_INO, "agent:bot:--x");
    grant(&f, sales, "agent:bot:editor");
    grant(&f, shared, "agent:bot:viewer");
    // Traversal granted at the root is inherited; /hr is closed by an explicit deny.
    grant(&f, hr, "agent:bot:---");

    let bot = private_core(&f, "agent:bot");
    // Writes where it is an editor; it owns what it creates.
    let mine = file(&bot, sales, "lead.txt", b"lead");
    assert_eq!(bot.getattr(mine).unwrap().perm, 0o644);
    // Reads, but cannot write, where it is a viewer; mode bits show it.
    assert_eq!(read_all(&bot, report), b"numbers");
    assert_eq!(bot.getattr(report).unwrap().perm & 0o222, 0);
    denied(bot.open(report, libc::O_WRONLY));
    denied(bot.create(&CTX, shared, b"x", 0o644, 0, 0));
    // No existence oracle where it may not traverse: the same errno for a name that exists.
    denied(bot.lookup(hr, b"salaries.csv"));
    denied(bot.lookup(hr, b"missing"));
    denied(bot.opendir(hr));
    denied(bot.open(secret, libc::O_RDONLY));
    // ln cannot turn a read-only grant into a writable name; mv cannot take from a
    // read-only area.
    denied(bot.link(report, sales, b"report-copy"));
    denied(bot.rename(
        shared,
        b"report.txt",
        sales,
        b"stolen",
        RenameFlags::default(),
    ));
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    denied(bot.rename(sales, b"lead.txt", shared, b"report.txt", exchange));
    assert_eq!(read_all(&admin, report), b"numbers");

    // An explicit deny stops inheritance below it.
    let sub = bot.mkdir(&CTX, sales, b"sub", 0o755, 0).unwrap().ino;
    let inner = file(&bot, sub, "inner", b"x");
    grant(&f, sub, "agent:bot:---");
    assert!(bot.access.refresh(&*bot.meta.lock().read()).unwrap());
    assert_eq!(
        read_all(&bot, inner),
        b"x",
        "the owner entry on the file itself still decides"
    );
    denied(bot.lookup(sub, b"other"));

    // Groups, nested, reach the subject; a revoke reaches an open handle.
    {
        let mut meta = f.meta();
        meta.write(|tx| -> crate::meta::MetaResult<()> {
            tx.add_member("group:outer", "group:inner")?;
            tx.add_member("group:inner", "user:carol")?;
            tx.set_acl(hr, "group:outer", Rights::RX)?;
            tx.bump_policy()
        })
        .unwrap();
    }
    let carol = private_core(&f, "user:carol");
    let fh = carol.open(secret, libc::O_RDONLY).unwrap();
    assert_eq!(carol.read(fh, 0, 100).unwrap(), b"secret");
    // Matching entries at the deciding inode are unioned, so a deny beside a group grant
    // does not cancel it; leaving the group does.
    {
        let mut meta = f.meta();
        meta.write(|tx| -> crate::meta::MetaResult<()> {
            tx.remove_member("group:inner", "user:carol")?;
            tx.bump_policy()
        })
        .unwrap();
    }
    assert!(carol.access.refresh(&*carol.meta.lock().read()).unwrap());
    denied(carol.read(fh, 0, 100));
    carol.release(fh).unwrap();
}

#[test]
fn denials_are_audited_with_the_path() {
    let f = Fixture::new();
    {
        let mut meta = f.meta();
        meta.write(|tx| tx.remove_acl(ROOT_INO, crate::policy::EVERYONE).map(drop))
            .unwrap();
    }
    let log = f.store.audit_log(&f.tenant);
    let spec = MountSpec {
        root: ROOT_INO,
        subject: "user:eve".into(),
        scope: Scope::Write,
        audit: Some(log.clone()),
        rights_cache: access::CACHE_ENTRIES,
    };
    let eve = TenantFs::new(
        f.meta(),
        Arc::new(f.store.objects(&f.tenant)),
        spec,
        "eve".into(),
    )
    .unwrap();
    denied(eve.lookup(ROOT_INO, b"payroll"));
    denied(eve.mkdir(&CTX, ROOT_INO, b"mine", 0o755, 0));
    let records = crate::audit::read(&log, None).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (
            records[0].subject.as_str(),
            records[0].op.as_str(),
            records[0].path.as_str()
        ),
        ("user:eve", "lookup", "/payroll")
    );
    assert_eq!(
        (records[1].op.as_str(), records[1].errno),
        ("mkdir", libc::EACCES)
    );
}

// ---- directory quotas ----------------------------------------------------------------------

fn mkdir(fs: &TenantFs, parent: Ino, name: &str) -> Ino {
    fs.mkdir(&CTX, parent, name.as_bytes(), 0o755, 0)
        .unwrap()
        .ino
}

fn set_quota(f: &Fixture, fs: &TenantFs, dir: Ino, max_bytes: u64, max_inodes: u64) {
    f.meta()
        .write(|tx| crate::quota::set(tx, dir, max_bytes, max_inodes))
        .unwrap();
    fs.refresh_policy().unwrap();
}

/// Every quota's counters against a recount of its subtree, and the tenant's against its
/// inodes: the invariant every op must keep.
fn assert_counts_exact(f: &Fixture) {
    let mut meta = f.meta();
    meta.snapshot(|tx| {
        let held = tx.all_held()?;
        for q in tx.all_dir_quotas()? {
            let (bytes, inodes, reserved) = crate::quota::recount(tx, q.ino, &held)?;
            assert_eq!(
                (q.bytes, q.inodes, q.reserved),
                (bytes, inodes, reserved),
                "quota on {}",
                tx.path_of(q.ino)
            );
        }
        Ok(())
    })
    .unwrap();
}

fn quota_of(f: &Fixture, dir: Ino) -> crate::meta::DirQuota {
    f.meta().read().dir_quota(dir).unwrap().unwrap()
}

const NO_FLAGS: RenameFlags = RenameFlags {
    noreplace: false,
    exchange: false,
};

#[test]
fn directory_quotas_refuse_what_would_pass_them() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let q = mkdir(&fs, ROOT_INO, "q");
    let inner = mkdir(&fs, q, "inner");
    file(&fs, inner, "old", b"12345");
    set_quota(&f, &fs, q, 100, 4);
    // What was there is counted when the quota is set: inner, old.
    assert_eq!((quota_of(&f, q).bytes, quota_of(&f, q).inodes), (5, 2));

    // A write stops at the limit: partial, then EDQUOT.
    let (a, fh) = fs.create(&CTX, q, b"f", 0o644, 0, libc::O_RDWR).unwrap();
    assert_eq!(fs.write(fh, 0, &[7u8; 200]).unwrap(), 95);
    assert!(matches!(fs.write(fh, 95, b"x"), Err(FsError::Quota)));
    fs.release(fh).unwrap();
    assert_eq!(fs.getattr(a.ino).unwrap().size, 95);
    assert_eq!(quota_of(&f, q).bytes, 100);
    // Truncating up and fallocate past it fail too; down is fine.
    assert!(matches!(
        fs.setattr(
            a.ino,
            SetAttr {
                size: Some(101),
                ..Default::default()
            }
        ),
        Err(FsError::Quota)
    ));
    fs.setattr(
        a.ino,
        SetAttr {
            size: Some(90),
            ..Default::default()
        },
    )
    .unwrap();
    // The inode limit: 3 inodes now (inner, old, f), one more fits.
    mkdir(&fs, q, "d");
    assert!(matches!(
        fs.mkdir(&CTX, q, b"e", 0o755, 0),
        Err(FsError::Quota)
    ));
    assert!(matches!(
        fs.symlink(&CTX, inner, b"s", b"t"),
        Err(FsError::Quota)
    ));
    // Outside the quota nothing is limited.
    file(&fs, ROOT_INO, "free", &[1u8; 1000]);
    assert_counts_exact(&f);
}

#[test]
fn nested_quotas_all_hold() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let outer = mkdir(&fs, ROOT_INO, "outer");
    let inner = mkdir(&fs, outer, "inner");
    set_quota(&f, &fs, outer, 1000, 0);
    set_quota(&f, &fs, inner, 0, 2);
    file(&fs, inner, "a", &[1u8; 600]);
    file(&fs, inner, "b", b"");
    // The inner inode limit.
    assert!(matches!(
        fs.create(&CTX, inner, b"c", 0o644, 0, libc::O_RDWR),
        Err(FsError::Quota)
    ));
    // The outer byte limit, from a file in the inner tree and beside it.
    let (_, fh) = fs
        .create(&CTX, outer, b"c", 0o644, 0, libc::O_RDWR)
        .unwrap();
    assert_eq!(fs.write(fh, 0, &[2u8; 600]).unwrap(), 400);
    fs.release(fh).unwrap();
    assert_eq!(quota_of(&f, outer).bytes, 1000);
    assert_eq!(quota_of(&f, inner).bytes, 600);
    assert_counts_exact(&f);
}

#[test]
fn moves_into_a_smaller_quota_are_refused_and_change_nothing() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let small = mkdir(&fs, ROOT_INO, "small");
    let src = mkdir(&fs, ROOT_INO, "src");
    let tree = mkdir(&fs, src, "tree");
    file(&fs, tree, "a", &[1u8; 60]);
    file(&fs, tree, "b", &[1u8; 60]);
    file(&fs, src, "big", &[1u8; 120]);
    file(&fs, src, "fits", &[1u8; 50]);
    set_quota(&f, &fs, small, 100, 0);
    assert!(matches!(
        fs.rename(src, b"big", small, b"big", NO_FLAGS),
        Err(FsError::Quota)
    ));
    assert!(matches!(
        fs.rename(src, b"tree", small, b"tree", NO_FLAGS),
        Err(FsError::Quota)
    ));
    assert_eq!(names(&fs, small), [".", ".."]);
    assert_eq!(quota_of(&f, small).bytes, 0);
    // What fits moves, and moving it out gives the room back.
    fs.rename(src, b"fits", small, b"fits", NO_FLAGS).unwrap();
    assert_eq!(quota_of(&f, small).bytes, 50);
    fs.rename(small, b"fits", ROOT_INO, b"fits", NO_FLAGS)
        .unwrap();
    assert_eq!(quota_of(&f, small).bytes, 0);
    // A tree that fits moves whole; replacing a name gives its room back first.
    fs.rename(tree, b"b", src, b"b", NO_FLAGS).unwrap();
    fs.rename(src, b"tree", small, b"tree", NO_FLAGS).unwrap();
    assert_eq!(
        (quota_of(&f, small).bytes, quota_of(&f, small).inodes),
        (60, 2)
    );
    file(&fs, ROOT_INO, "same", &[1u8; 60]);
    fs.rename(ROOT_INO, b"same", tree, b"a", NO_FLAGS).unwrap();
    assert_eq!(quota_of(&f, small).bytes, 60);
    // RENAME_EXCHANGE swaps what each side holds.
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    assert!(matches!(
        fs.rename(src, b"big", tree, b"a", exchange),
        Err(FsError::Quota)
    ));
    fs.rename(src, b"b", tree, b"a", exchange).unwrap();
    assert_eq!(quota_of(&f, small).bytes, 60);
    assert_counts_exact(&f);
}

#[test]
fn hard_links_count_once_per_quota_and_in_each_quota_they_are_under() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let a = mkdir(&fs, ROOT_INO, "a");
    let b = mkdir(&fs, ROOT_INO, "b");
    let a2 = mkdir(&fs, a, "a2");
    set_quota(&f, &fs, a, 1000, 0);
    set_quota(&f, &fs, b, 150, 0);
    let ino = file(&fs, a, "f", &[1u8; 100]);
    // A second name in the same quota counts once there.
    fs.link(ino, a2, b"g").unwrap();
    assert_eq!((quota_of(&f, a).bytes, quota_of(&f, a).inodes), (100, 2));
    // A name under another quota counts there too, and growth counts in both.
    fs.link(ino, b, b"h").unwrap();
    assert_eq!(quota_of(&f, b).bytes, 100);
    let fh = fs.open(ino, libc::O_RDWR).unwrap();
    assert_eq!(fs.write(fh, 100, &[2u8; 100]).unwrap(), 50);
    fs.release(fh).unwrap();
    assert_eq!(quota_of(&f, a).bytes, 150);
    assert_eq!(quota_of(&f, b).bytes, 150);
    // The tenant counts it once.
    assert_eq!(f.meta().read().usage().unwrap().0, 150);
    // A link into a quota without room is refused.
    let c = mkdir(&fs, ROOT_INO, "c");
    set_quota(&f, &fs, c, 10, 0);
    assert!(matches!(fs.link(ino, c, b"i"), Err(FsError::Quota)));
    assert_counts_exact(&f);
    // Names go one by one; the quota lets go with the last name under it.
    fs.unlink(b, b"h").unwrap();
    assert_eq!(quota_of(&f, b).bytes, 0);
    fs.unlink(a, b"f").unwrap();
    assert_eq!(quota_of(&f, a).bytes, 150);
    fs.rename(a2, b"g", b, b"g", NO_FLAGS).unwrap();
    assert_eq!((quota_of(&f, a).bytes, quota_of(&f, b).bytes), (0, 150));
    assert_eq!(f.meta().read().link_parents(ino).unwrap(), []);
    assert_counts_exact(&f);
}

#[test]
fn an_open_file_unlinked_leaves_the_quota_at_once() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let q = mkdir(&fs, ROOT_INO, "q");
    set_quota(&f, &fs, q, 1000, 0);
    let (a, fh) = fs.create(&CTX, q, b"f", 0o644, 0, libc::O_RDWR).unwrap();
    fs.write(fh, 0, &[1u8; 300]).unwrap();
    fs.flush(fh).unwrap();
    fs.unlink(q, b"f").unwrap();
    assert_eq!((quota_of(&f, q).bytes, quota_of(&f, q).inodes), (0, 0));
    // It still counts for the tenant while open, and may still grow.
    fs.write(fh, 300, &[1u8; 300]).unwrap();
    fs.flush(fh).unwrap();
    assert_eq!(f.meta().read().usage().unwrap().0, 600);
    assert_eq!(quota_of(&f, q).bytes, 0);
    fs.release(fh).unwrap();
    assert_eq!(f.meta().read().usage().unwrap(), (0, 2));
    assert!(fs.getattr(a.ino).is_err());
    assert_counts_exact(&f);
}

#[test]
fn reservations_move_with_a_file_and_are_counted() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let q = mkdir(&fs, ROOT_INO, "q");
    set_quota(&f, &fs, q, 10 << 20, 0);
    let (_, fh) = fs
        .create(&CTX, ROOT_INO, b"f", 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(fh, 0, &[1u8; 4096]).unwrap();
    // Held outside any quota, it enters q with the file: 4 MiB of reservation.
    fs.rename(ROOT_INO, b"f", q, b"f", NO_FLAGS).unwrap();
    assert_eq!(quota_of(&f, q).reserved, RESERVE_CHUNK);
    assert_counts_exact(&f);
    fs.flush(fh).unwrap();
    let got = quota_of(&f, q);
    assert_eq!((got.bytes, got.reserved), (4096, 0));
    fs.release(fh).unwrap();
    assert_counts_exact(&f);
}

/// A scripted mix of every op that moves usage, with the counters checked after each.
#[test]
fn counters_stay_exact_through_a_mixed_workload() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let top = mkdir(&fs, ROOT_INO, "top");
    let dirs = [
        top,
        mkdir(&fs, top, "a"),
        mkdir(&fs, top, "b"),
        mkdir(&fs, ROOT_INO, "c"),
    ];
    let sub = mkdir(&fs, dirs[1], "sub");
    for (i, &d) in dirs.iter().enumerate() {
        set_quota(&f, &fs, d, 1 << 30, 1000 + i as u64);
    }
    set_quota(&f, &fs, sub, 1 << 30, 0);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let all = [dirs[0], dirs[1], dirs[2], dirs[3], sub, ROOT_INO];
    for step in 0..400 {
        let d = all[next(all.len() as u64) as usize];
        let e = all[next(all.len() as u64) as usize];
        let n = format!("n{}", next(6));
        let m = format!("n{}", next(6));
        let _ = match next(7) {
            0 => fs
                .create(&CTX, d, n.as_bytes(), 0o644, 0, libc::O_RDWR)
                .and_then(|(_, fh)| {
                    fs.write(fh, 0, &vec![1u8; next(5000) as usize])?;
                    fs.release(fh)
                }),
            1 => fs.unlink(d, n.as_bytes()),
            2 => fs
                .lookup(d, n.as_bytes())
                .and_then(|a| fs.link(a.ino, e, m.as_bytes()))
                .map(drop),
            3 => fs.rename(d, n.as_bytes(), e, m.as_bytes(), NO_FLAGS),
            4 => fs.lookup(d, n.as_bytes()).and_then(|a| {
                let size = Some(next(9000));
                fs.setattr(
                    a.ino,
                    SetAttr {
                        size,
                        ..Default::default()
                    },
                )
                .map(drop)
            }),
            5 => fs.mkdir(&CTX, d, n.as_bytes(), 0o755, 0).map(drop),
            _ => fs.rmdir(d, n.as_bytes()),
        };
        if step % 20 == 0 {
            assert_counts_exact(&f);
        }
    }
    assert_counts_exact(&f);
}

#[test]
fn a_version_4_store_is_migrated_its_reservations_given_back_and_its_blocks_estimated() {
    let f = Fixture::new();
    let before = {
        let (fs, _s) = f.core(false);
        file(&fs, ROOT_INO, "old", &[7u8; 10_000])
    };
    let path = f.store.tenant_dir(&f.tenant).join("meta.db");
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "DROP TABLE held; DROP TABLE dir_quotas; DROP TABLE links;
         ALTER TABLE inodes DROP COLUMN blocks;
         CREATE TABLE reservations(session TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
         INSERT INTO reservations VALUES ('dead', 4096);
         UPDATE usage SET reserved = 4096;
         UPDATE info SET value = 4 WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(old);
    let meta = f.meta();
    assert_eq!(meta.read().reserved().unwrap(), 0);
    assert!(!meta.read().has_dir_quotas().unwrap());
    // What older builds reported: whole 4 KiB blocks for the length.
    assert_eq!(meta.read().inode(before).unwrap().unwrap().st_blocks(), 24);
    let (fs, _s) = f.core(false);
    file(&fs, ROOT_INO, "works", b"x");
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT value FROM info WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, 6);
}

#[test]
fn new_metadata_files_use_small_pages() {
    let f = Fixture::new();
    assert_eq!(
        f.meta().read().pragma("page_size").unwrap(),
        crate::meta::PAGE_SIZE
    );
}

#[test]
fn cache_sizes_are_what_the_mount_asks_for() {
    let f = Fixture::new();
    let pragmas = |meta: &Meta| -> (i64, i64) {
        let tx = meta.read();
        (
            tx.pragma("cache_size").unwrap(),
            tx.pragma("mmap_size").unwrap(),
        )
    };
    let meta = f.meta();
    let default = (
        -((crate::meta::DB_CACHE / 1024) as i64),
        crate::meta::DB_MAP as i64,
    );
    assert_eq!(pragmas(&meta), default);
    let path = f.store.tenant_dir(&f.tenant).join("meta.db");
    assert_eq!(
        pragmas(&Meta::open_sized(&path, 1 << 20, 0).unwrap()),
        (-1024, 0)
    );

    // A rights cache of 2 entries remembers the last two inodes asked about.
    let access = Access::sized("user:alice", false, &*meta.read(), 2).unwrap();
    let a = file_in_root(&f, "a");
    let b = file_in_root(&f, "b");
    let c = file_in_root(&f, "c");
    for ino in [a, b, c] {
        access.rights(&*meta.read(), ino).unwrap();
    }
    assert_eq!(access.cached(a), None);
    assert!(access.cached(b).is_some() && access.cached(c).is_some());
}

fn file_in_root(f: &Fixture, name: &str) -> Ino {
    let (fs, _s) = f.core(false);
    file(&fs, ROOT_INO, name, b"")
}

#[test]
fn reads_under_one_guard_see_one_committed_state() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "f", b"abc");
    let reader = f.meta();
    {
        let tx = reader.read();
        assert_eq!(tx.inode(ino).unwrap().unwrap().size, 3);
        // Another connection (another mount) commits a change meanwhile...
        fs.setattr(
            ino,
            SetAttr {
                size: Some(10),
                ..Default::default()
            },
        )
        .unwrap();
        // ...which this guard's reads do not see: they share one transaction.
        assert_eq!(tx.inode(ino).unwrap().unwrap().size, 3);
    }
    // The next guard sees it, and a write on this connection finds no transaction left open.
    assert_eq!(reader.read().inode(ino).unwrap().unwrap().size, 10);
    let mut writer = reader;
    writer
        .write(|tx| tx.set_ctime(ino, 1).map_err(FsError::from))
        .unwrap();
}

#[test]
fn a_failed_or_panicking_change_rolls_back_and_leaves_the_connection_usable() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let ino = file(&fs, ROOT_INO, "f", b"abc");
    let mut meta = f.meta();
    let before = meta.read().inode(ino).unwrap().unwrap().ctime;
    let failed: FsResult<()> = meta.write(|tx| {
        tx.set_ctime(ino, before + 1)?;
        Err(FsError::Quota)
    });
    assert!(matches!(failed, Err(FsError::Quota)));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = meta.write(|tx| -> FsResult<()> {
            tx.set_ctime(ino, before + 2)?;
            panic!("mid-change");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(meta.read().inode(ino).unwrap().unwrap().ctime, before);
    meta.write(|tx| tx.set_ctime(ino, before + 3).map_err(FsError::from))
        .unwrap();
    assert_eq!(meta.read().inode(ino).unwrap().unwrap().ctime, before + 3);
}

#[test]
fn listing_queries_come_back_sorted_without_recompiling_per_use() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let dirs: Vec<Ino> = (0..12)
        .map(|i| {
            let d = fs
                .mkdir(&CTX, ROOT_INO, format!("d{i}").as_bytes(), 0o755, 0)
                .unwrap()
                .ino;
            for name in ["zeta", "alpha", "mu"] {
                file(&fs, d, name, b"");
            }
            d
        })
        .collect();
    let mut meta = f.meta();
    meta.write(|tx| -> crate::meta::MetaResult<()> {
        for &d in &dirs {
            for s in ["user:zed", "agent:bot", "group:mid"] {
                tx.set_acl(d, s, Rights::R)?;
            }
            for x in [&b"user.z"[..], b"user.a", b"user.m"] {
                tx.set_xattr(d, x, b"v")?;
            }
        }
        Ok(())
    })
    .unwrap();
    // Debug builds also fail here if SQLite recompiled any of these at every use, as it
    // did while they carried an ORDER BY next to a bound value.
    let tx = meta.read();
    for &d in &dirs {
        let names: Vec<Vec<u8>> = tx.list(d).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, [&b"alpha"[..], b"mu", b"zeta"]);
        let subjects: Vec<String> = tx.acl(d).unwrap().into_iter().map(|e| e.subject).collect();
        // Sorted, then the owner (the creating subject) after them.
        assert_eq!(subjects[..3], ["agent:bot", "group:mid", "user:zed"]);
        assert_eq!(
            tx.xattr_names(d).unwrap(),
            [&b"user.a"[..], b"user.m", b"user.z"]
        );
    }
}

#[test]
fn a_file_removed_while_not_open_is_a_ghost_for_racing_reads_only() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let old = file(&fs, ROOT_INO, "target", b"old content");
    let new = file(&fs, ROOT_INO, "tmp", b"new");
    fs.rename(
        ROOT_INO,
        b"tmp",
        ROOT_INO,
        b"target",
        RenameFlags::default(),
    )
    .unwrap();
    // Usage is given back at once: only the new file and the root count.
    assert_eq!(f.meta().read().usage().unwrap(), (3, 2));
    assert_eq!(f.meta().read().computed_usage().unwrap(), (3, 2));
    // An open that resolved the old name before the rename still reads the old file.
    assert_eq!(read_all(&fs, old), b"old content");
    assert_eq!(fs.getattr(old).unwrap().nlink, 0);
    // A writer gets ESTALE, so the kernel looks the name up and opens the new file.
    assert!(matches!(fs.open(old, libc::O_WRONLY), Err(FsError::Stale)));
    assert!(matches!(
        fs.setattr(
            old,
            SetAttr {
                size: Some(0),
                ..Default::default()
            }
        ),
        Err(FsError::Stale)
    ));
    assert_eq!(fs.lookup(ROOT_INO, b"target").unwrap().ino, new);
    // One opened here when its time is up lives until its last close.
    let fh = fs.open(old, libc::O_RDONLY).unwrap();
    fs.purge_ghosts(true).unwrap();
    assert_eq!(f.objects(&fs), 2);
    assert_eq!(fs.read(fh, 0, 100).unwrap(), b"old content");
    fs.release(fh).unwrap();
    assert_eq!(f.objects(&fs), 1);
    assert!(f.meta().read().inode(old).unwrap().is_none());
    assert!(matches!(fs.open(old, libc::O_RDONLY), Err(FsError::Stale)));
    assert_eq!(f.meta().read().usage().unwrap(), (3, 2));
    // The rest go when theirs is up, or at unmount.
    fs.unlink(ROOT_INO, b"target").unwrap();
    assert_eq!(f.objects(&fs), 1);
    fs.purge_ghosts(false).unwrap();
    assert_eq!(f.objects(&fs), 1, "not due yet");
    std::thread::sleep(ghosts::GRACE);
    fs.purge_ghosts(false).unwrap();
    assert_eq!(f.objects(&fs), 0);
    assert_eq!(f.meta().read().usage().unwrap(), (0, 1));
}

#[test]
fn a_crashed_mounts_ghosts_are_deleted_without_counting_twice() {
    let f = Fixture::new();
    {
        let (fs, s) = f.core(false);
        file(&fs, ROOT_INO, "gone", b"0123456789");
        file(&fs, ROOT_INO, "kept", b"abc");
        fs.unlink(ROOT_INO, b"gone").unwrap();
        // The daemon dies: no shutdown; its session lock goes with it.
        std::mem::forget(fs);
        drop(s);
    }
    let (fs, _s) = f.core(false);
    assert_eq!(f.meta().read().usage().unwrap(), (3, 2));
    assert_eq!(f.objects(&fs), 1);
    assert!(f.meta().read().all_ghosts().unwrap().is_empty());
}

#[test]
fn block_counts_follow_the_content_open_and_closed() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let blocks = |ino| fs.getattr(ino).unwrap().st_blocks();
    let (a, fh) = fs
        .create(&CTX, ROOT_INO, b"f", 0o644, 0o022, libc::O_RDWR)
        .unwrap();
    let ino = a.ino;
    fs.fallocate(fh, 0, 1 << 20, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap();
    assert_eq!(blocks(ino), 2048, "open: the content's blocks");
    fs.release(fh).unwrap();
    assert_eq!(blocks(ino), 2048, "closed: as recorded");
    let fh = fs.open(ino, libc::O_WRONLY).unwrap();
    fs.fallocate(fh, 0, 1 << 20, 0).unwrap();
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(fh, 0, 512 << 10, punch).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(blocks(ino), 1024);
    assert_eq!(f.meta().read().inode(ino).unwrap().unwrap().blocks, 1024);
}

#[test]
fn handles_find_linked_inodes_inside_the_mount_only() {
    let f = Fixture::new();
    let (fs, _s) = f.core(false);
    let d = fs.mkdir(&CTX, ROOT_INO, b"d", 0o755, 0).unwrap().ino;
    let out = fs.mkdir(&CTX, ROOT_INO, b"out", 0o755, 0).unwrap().ino;
    let inner = file(&fs, d, "inner", b"i");
    let shared = file(&fs, out, "shared", b"s");
    let outer = file(&fs, out, "outer", b"o");
    fs.link(shared, d, b"shared").unwrap();
    let gone = file(&fs, d, "gone", b"g");
    fs.unlink(d, b"gone").unwrap();
    drop(fs);
    let spec = MountSpec {
        root: d,
        ..MountSpec::admin()
    };
    let sub = TenantFs::new(
        f.meta(),
        Arc::new(f.store.objects(&f.tenant)),
        spec,
        "sub".into(),
    )
    .unwrap();
    let found = |ino| sub.by_handle(ino).map(|a| a.ino);
    assert_eq!(found(d).unwrap(), d);
    assert_eq!(found(inner).unwrap(), inner);
    assert_eq!(found(shared).unwrap(), shared, "one of its names is inside");
    for ino in [ROOT_INO, out, outer, gone, 1 << 40] {
        assert!(matches!(found(ino), Err(FsError::Stale)), "{ino}");
    }
    assert_eq!(sub.parent_by_handle(d).unwrap().ino, d);
}
