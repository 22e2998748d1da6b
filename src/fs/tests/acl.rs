//! ACLs in the core: rights, denials and their audit.

use super::*;

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
