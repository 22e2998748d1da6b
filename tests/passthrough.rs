//! Passthrough reads (`tenant set --passthrough-reads on`): read-only opens read the object
//! straight through the kernel. They must read the same bytes, live beside writers of the
//! same file, and give up exactly what SEMANTICS.md says: metering and revocation of
//! descriptors opened before a revoke.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::{Env, wait_until};

const LEN: usize = 1 << 20;

fn content() -> Vec<u8> {
    (0..LEN).map(|i| (i * 7 % 251) as u8).collect()
}

fn bytes_read(env: &Env, tenant: &str) -> u64 {
    let all: serde_json::Value =
        serde_json::from_str(&env.ok(&["usage", "--tenant", tenant, "--json"])).unwrap();
    all[0]["bytes_read"].as_u64().unwrap()
}

fn read_all(p: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    File::open(p).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn passthrough_reads_skip_the_daemon_and_only_when_the_tenant_allows_it() {
    let env = Env::new();
    let data = content();
    let mut metered = Vec::new();
    // Off; on; on with a byte rate limit, which passthrough reads would slip past.
    for (on, rate) in [("off", "0"), ("on", "0"), ("on", "1G")] {
        let tenant = format!("t-{on}-{}", rate.to_lowercase());
        env.tenant(&tenant);
        env.ok(&["tenant", "set", &tenant, "--passthrough-reads", on]);
        env.ok(&["tenant", "set", &tenant, "--max-bytes-per-sec", rate]);
        let (key, _) = env.key(&tenant, "user:alice", &[]);
        let m = env.mount(&tenant, &key, &[]);
        fs::write(m.p("f"), &data).unwrap();
        for _ in 0..3 {
            assert!(read_all(&m.p("f")) == data, "passthrough {on}: wrong bytes");
        }
        // Unmounting records the mount's metering.
        drop(m);
        metered.push(bytes_read(&env, &tenant));
    }
    eprintln!("bytes read that reached the daemon (off, on, on + rate limit): {metered:?}");
    assert!(metered[0] >= 3 * LEN as u64, "{metered:?}");
    assert_eq!(metered[1], 0, "passthrough reads reached the daemon");
    assert!(metered[2] >= 3 * LEN as u64, "{metered:?}");
    let shown = env.ok(&["tenant", "show", "t-on-0"]);
    assert!(shown.contains("passthrough: yes"), "{shown}");
    let err = env.fails(&["tenant", "set", "t-on-0", "--passthrough-reads", "maybe"]);
    assert!(err.contains("on or off"), "{err}");
}

#[test]
fn writers_and_passthrough_readers_share_a_file() {
    let env = Env::new();
    env.tenant("acme");
    env.ok(&["tenant", "set", "acme", "--passthrough-reads", "on"]);
    let (key, _) = env.key("acme", "user:alice", &[]);
    let m = env.mount("m", &key, &[]);
    let other = env.mounted_tenant_again("other");
    fs::write(m.p("f"), content()).unwrap();

    // Readers first (passthrough). The kernel sends the release of `fs::write`'s handle
    // after `close` returns, and a reader opened before the daemon hears of it rightly goes
    // through the daemon; so open until a reader passes through, which a writer's ETXTBSY
    // shows. A writer in another mount goes ahead, and the readers see what it writes, in
    // place and past the old end.
    let mut passing = None;
    wait_until(Duration::from_secs(5), || {
        let r = File::open(m.p("f")).unwrap();
        match OpenOptions::new().append(true).open(m.p("f")) {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => passing = Some(r),
            Err(e) => panic!("{e}"),
            Ok(_) => {}
        }
        passing.is_some()
    })
    .expect("no read-only open passed through");
    let reader = passing.unwrap();
    let second = File::open(m.p("f")).unwrap();
    let writer = OpenOptions::new().write(true).open(other.p("f")).unwrap();
    writer.write_all_at(b"NEW!", 0).unwrap();
    writer.write_all_at(b"tail", LEN as u64).unwrap();
    drop(writer);
    let mut buf = [0u8; 4];
    reader.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"NEW!");
    second.read_exact_at(&mut buf, LEN as u64).unwrap();
    assert_eq!(&buf, b"tail");
    // In this mount a writer must wait for them, as for a running program: ETXTBSY, not
    // the kernel's bare EIO. Truncating by name does not need an open and goes ahead.
    let busy = OpenOptions::new().append(true).open(m.p("f")).unwrap_err();
    assert_eq!(busy.raw_os_error(), Some(libc::ETXTBSY), "{busy}");
    fs::File::options()
        .write(true)
        .open(other.p("f"))
        .unwrap()
        .set_len(5)
        .unwrap();
    let mut all = Vec::new();
    (&reader).read_to_end(&mut all).unwrap();
    let head = [&b"NEW!"[..], &content()[4..5]].concat();
    assert_eq!(all, head);
    drop((reader, second));

    // Once they are closed, a writer opens here at once (the daemon may hear of the
    // closes just after the open; it waits for them rather than refuse), and readers beside
    // a writer go through the daemon.
    for _ in 0..20 {
        let r = File::open(m.p("f")).unwrap();
        drop(r);
        let w = OpenOptions::new().write(true).open(m.p("f")).unwrap();
        w.write_all_at(b"more", 0).unwrap();
        assert_eq!(&read_all(&m.p("f"))[..4], b"more");
    }
    // A file just created is open for writing: readers beside it go through the daemon
    // (a passthrough open beside the creator's would fail in the kernel).
    let mut made = File::create(m.p("g")).unwrap();
    std::io::Write::write_all(&mut made, b"fresh").unwrap();
    assert_eq!(read_all(&m.p("g")), b"fresh");
    drop(made);
    drop((m, other));
    env.fsck_clean("acme");
}

/// The price of passthrough, shown rather than assumed: after a revoke, a descriptor
/// opened before it keeps reading the object, even content written after the revoke, until
/// it is closed. Without passthrough the same read fails once the mount has ended.
#[test]
fn a_revoke_ends_daemon_reads_but_not_passthrough_descriptors() {
    let env = Env::new();
    env.tenant("acme");
    let (writer_key, _) = env.key("acme", "user:alice", &[]);
    let w = env.mount("w", &writer_key, &[]);
    fs::write(w.p("f"), b"before the revoke").unwrap();

    for on in ["off", "on"] {
        env.ok(&["tenant", "set", "acme", "--passthrough-reads", on]);
        let (key, id) = env.key("acme", "agent:reader", &[]);
        let r = env.mount(&format!("r-{on}"), &key, &[]);
        let held = File::open(r.p("f")).unwrap();
        let mut buf = [0u8; 17];
        held.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"before the revoke");

        env.ok(&["key", "revoke", &id]);
        assert!(
            wait_until(Duration::from_secs(5), || !r.is_mounted()).is_some(),
            "the revoked mount stayed up"
        );
        fs::write(w.p("f"), b"after the revoke!").unwrap();
        let after = held.read_at(&mut buf, 0);
        match on {
            "off" => assert!(after.is_err(), "read {after:?} after the revoke"),
            _ => {
                assert_eq!(after.unwrap(), 17);
                assert_eq!(&buf, b"after the revoke!");
            }
        }
        drop(held);
        fs::write(w.p("f"), b"before the revoke").unwrap();
    }
}
