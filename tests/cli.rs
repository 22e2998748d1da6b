//! The CLI contract: what each command prints, accepts and refuses.

mod common;

use common::{BIN, Env};
use std::process::Command;

#[test]
fn init_is_idempotent_and_never_clobbers() {
    let env = Env::new();
    env.tenant("acme");
    let err = env.run(&["init"]);
    assert!(err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("already exists"));
    assert!(
        env.ok(&["tenant", "list"]).contains("acme"),
        "tenant survived a second init"
    );
}

#[test]
fn init_refuses_a_non_empty_foreign_directory() {
    let env = Env::new();
    let foreign = env.dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("precious"), "x").unwrap();
    let err = env.fails(&["--store", foreign.to_str().unwrap(), "init"]);
    assert!(err.contains("not a tenantfs store"), "{err}");
    assert_eq!(
        std::fs::read_to_string(foreign.join("precious")).unwrap(),
        "x"
    );
}

#[test]
fn missing_store_says_how_to_fix() {
    let env = Env::new();
    let missing = env.dir.path().join("nope");
    let err = env.fails(&["--store", missing.to_str().unwrap(), "tenant", "list"]);
    assert!(
        err.contains("store not found") && err.contains("tenantfs init"),
        "{err}"
    );
}

#[test]
fn bad_tenant_ids_are_rejected_with_the_rule() {
    let env = Env::new();
    let long = "a".repeat(64);
    for bad in [
        "Acme",
        "-acme",
        "ac_me",
        "ac.me",
        "",
        long.as_str(),
        "ac/me",
    ] {
        let err = env.fails(&["tenant", "create", "--", bad]);
        assert!(err.contains("1-63 characters"), "{bad}: {err}");
    }
    env.tenant("a");
    env.tenant("9lives");
    let err = env.fails(&["tenant", "create", "a"]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn tenant_list_and_show_json() {
    let env = Env::new();
    env.ok(&["tenant", "create", "acme", "--name", "Acme Corp"]);
    env.tenant("beta");
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["tenant", "list", "--json"])).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "beta"]);
    assert_eq!(list[0]["name"], "Acme Corp");
    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["tenant", "show", "acme", "--json"])).unwrap();
    assert_eq!(show["id"], "acme");
    assert_eq!(show["inodes_used"], 1);
    let err = env.fails(&["tenant", "show", "nobody"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn key_create_prints_only_the_key_and_list_never_shows_it() {
    let env = Env::new();
    env.tenant("acme");
    let out = env.run(&[
        "key",
        "create",
        "--tenant",
        "acme",
        "--subject",
        "agent:bot",
        "--scope",
        "read",
        "--root",
        "/x",
        "--expires",
        "12h",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let key = stdout.trim();
    assert!(key.starts_with("tfs_") && key.len() == 68, "{key}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("agent:bot") && !stderr.contains(key),
        "{stderr}"
    );

    let listing = env.ok(&["key", "list"]);
    assert!(!listing.contains(key));
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["key", "list", "--json", "--tenant", "acme"])).unwrap();
    let k = &json[0];
    for field in [
        "id",
        "tenant",
        "subject",
        "scope",
        "root",
        "expires_at",
        "revoked",
    ] {
        assert!(k.get(field).is_some(), "missing {field}");
    }
    assert_eq!(k["tenant"], "acme");
    assert_eq!(k["subject"], "agent:bot");
    assert_eq!(k["scope"], "read");
    assert_eq!(k["root"], "/x");
    assert_eq!(k["revoked"], false);
    assert!(k["expires_at"].is_string());
    assert!(!serde_json::to_string(&json).unwrap().contains(key));

    // The store keeps a hash, never the key.
    let catalog = match &env.db {
        None => std::fs::read(env.store.join("catalog.db")).unwrap(),
        Some(db) => {
            let row = db
                .client()
                .query_one("SELECT string_agg(k::text, ',') FROM tenantfs.keys k", &[])
                .unwrap();
            row.get::<_, String>(0).into_bytes()
        }
    };
    assert!(!catalog.windows(key.len()).any(|w| w == key.as_bytes()));
}

#[test]
fn key_create_validates_its_inputs() {
    let env = Env::new();
    env.tenant("acme");
    let base = ["key", "create", "--tenant", "acme"];
    let cases: [(&[&str], &str); 6] = [
        (&["--subject", "alice"], "KIND:NAME"),
        (&["--subject", "group:x"], "KIND:NAME"),
        (
            &["--subject", "user:a", "--scope", "root"],
            "possible values",
        ),
        (&["--subject", "user:a", "--expires", "soon"], "90s"),
        (&["--subject", "user:a", "--root", "relative"], "absolute"),
        (&["--subject", "user:a", "--root", "/a/../b"], "'..'"),
    ];
    for (extra, want) in cases {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let err = env.fails(&args);
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    let err = env.fails(&["key", "create", "--tenant", "ghost", "--subject", "user:a"]);
    assert!(err.contains("tenant ghost not found"), "{err}");
}

#[test]
fn revoke_marks_the_key() {
    let env = Env::new();
    env.tenant("acme");
    let (_, id) = env.key("acme", "user:alice", &[]);
    env.ok(&["key", "revoke", &id]);
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["key", "list", "--json"])).unwrap();
    assert_eq!(json[0]["revoked"], true);
    let err = env.fails(&["key", "revoke", "k_doesnotexist"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn a_key_on_argv_is_refused_and_not_echoed() {
    let env = Env::new();
    env.tenant("acme");
    let (file, _) = env.key("acme", "user:alice", &[]);
    let key = std::fs::read_to_string(&file).unwrap();
    let mp = env.mountpoint("m");
    for args in [
        vec!["mount", mp.to_str().unwrap(), key.trim()],
        vec![
            "mount",
            mp.to_str().unwrap(),
            &format!("--key={}", key.trim()),
        ],
    ] {
        let out = env.run(&args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>());
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("--key-file"), "{err}");
        assert!(!err.contains(key.trim()), "the key was echoed: {err}");
    }
    assert!(std::fs::read_dir(&mp).unwrap().next().is_none());
}

#[test]
fn mount_refusals_give_the_reason() {
    let env = Env::new();
    env.tenant("acme");
    let mp = env.mountpoint("m");
    let mpath = mp.to_str().unwrap();

    let bad = env.dir.path().join("bad.key");
    std::fs::write(&bad, "not-a-key\n").unwrap();
    let err = env.fails(&["mount", mpath, "--key-file", bad.to_str().unwrap()]);
    assert!(err.contains("malformed key"), "{err}");

    std::fs::write(&bad, format!("tfs_{}\n", "0".repeat(64))).unwrap();
    let err = env.fails(&["mount", mpath, "--key-file", bad.to_str().unwrap()]);
    assert!(err.contains("unknown key"), "{err}");

    let (revoked, id) = env.key("acme", "user:a", &[]);
    env.ok(&["key", "revoke", &id]);
    let err = env.fails(&["mount", mpath, "--key-file", revoked.to_str().unwrap()]);
    assert!(err.contains("revoked"), "{err}");

    let (expired, _) = env.key("acme", "user:b", &["--expires", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let err = env.fails(&["mount", mpath, "--key-file", expired.to_str().unwrap()]);
    assert!(err.contains("expired"), "{err}");

    let (good, _) = env.key("acme", "user:c", &[]);
    let missing = env.dir.path().join("no-such-dir");
    let err = env.fails(&[
        "mount",
        missing.to_str().unwrap(),
        "--key-file",
        good.to_str().unwrap(),
    ]);
    assert!(err.contains("does not exist"), "{err}");

    let err = env.fails(&["mount", mpath]);
    assert!(err.contains("no key given"), "{err}");

    let _m = env.mount("m", &good, &[]);
    let err = env.fails(&["mount", mpath, "--key-file", good.to_str().unwrap()]);
    assert!(err.contains("already mounted"), "{err}");

    let (rooted, _) = env.key("acme", "user:d", &["--root", "/missing"]);
    let mp2 = env.mountpoint("m2");
    let err = env.fails(&[
        "mount",
        mp2.to_str().unwrap(),
        "--key-file",
        rooted.to_str().unwrap(),
    ]);
    assert!(err.contains("/missing is not a directory"), "{err}");
}

#[test]
fn the_key_is_read_from_env_and_stdin() {
    let env = Env::new();
    env.tenant("acme");
    let (file, _) = env.key("acme", "user:alice", &[]);
    let key = std::fs::read_to_string(&file).unwrap();
    let mp = env.mountpoint("via-env");
    let out = env
        .cmd(&["mount", mp.to_str().unwrap()])
        .env("TENANTFS_KEY", key.trim())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["umount", mp.to_str().unwrap()]);

    let mut child = env
        .cmd(&["mount", mp.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["umount", mp.to_str().unwrap()]);
}

#[test]
fn a_key_file_readable_by_others_gets_a_warning() {
    let env = Env::new();
    env.tenant("acme");
    let (file, _) = env.key("acme", "user:alice", &[]);
    let mp = env.mountpoint("m");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = env.run(&[
        "mount",
        mp.to_str().unwrap(),
        "--key-file",
        file.to_str().unwrap(),
    ]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    env.ok(&["umount", mp.to_str().unwrap()]);
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = env.run(&[
        "mount",
        mp.to_str().unwrap(),
        "--key-file",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("readable by other users"));
    env.ok(&["umount", mp.to_str().unwrap()]);
}

#[test]
fn mounting_records_last_use_and_threads_are_bounded() {
    let env = Env::new();
    env.tenant("acme");
    let (file, id) = env.key("acme", "user:alice", &[]);
    let key_row = || -> serde_json::Value {
        let all: serde_json::Value =
            serde_json::from_str(&env.ok(&["key", "list", "--json"])).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id.as_str())
            .unwrap()
            .clone()
    };
    assert!(key_row()["last_used_at"].is_null());
    let mp = env.mountpoint("m");
    for bad in ["0", "65", "many"] {
        let err = env.fails(&[
            "mount",
            mp.to_str().unwrap(),
            "--threads",
            bad,
            "--key-file",
            file.to_str().unwrap(),
        ]);
        assert!(err.contains("--threads"), "{err}");
    }
    env.ok(&[
        "mount",
        mp.to_str().unwrap(),
        "--threads",
        "1",
        "--key-file",
        file.to_str().unwrap(),
    ]);
    std::fs::write(mp.join("one-thread"), b"ok").unwrap();
    env.ok(&["umount", mp.to_str().unwrap()]);
    assert!(key_row()["last_used_at"].is_string());
}

#[test]
fn umount_refuses_what_is_not_a_tenantfs_mount() {
    let env = Env::new();
    let mp = env.mountpoint("plain");
    let err = env.fails(&["umount", mp.to_str().unwrap()]);
    assert!(err.contains("is not mounted"), "{err}");
}

#[test]
fn version_and_help_on_every_command() {
    let v = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("tenantfs "));
    for cmd in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["tenant", "create", "--help"],
        vec!["tenant", "list", "--help"],
        vec!["tenant", "show", "--help"],
        vec!["key", "create", "--help"],
        vec!["key", "list", "--help"],
        vec!["key", "revoke", "--help"],
        vec!["mount", "--help"],
        vec!["umount", "--help"],
    ] {
        let out = Command::new(BIN).args(&cmd).output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{cmd:?}"
        );
    }
}
