//! What readers see while others change names, in one mount and across two mounts of one
//! tenant, held against a directory on the host's disk where the host is the reference.

mod common;

use std::fs;
use std::io::Write;

use common::{Env, errno_of};

#[test]
fn an_o_creat_open_after_another_mount_made_the_name_opens_it() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    // Mount a remembers the name is absent.
    assert!(fs::metadata(a.p("made-in-b")).is_err());
    fs::write(b.p("made-in-b"), b"from b").unwrap();
    let mut f = fs::File::options()
        .read(true)
        .append(true)
        .create(true)
        .open(a.p("made-in-b"))
        .expect("O_CREAT without O_EXCL opens the file another mount made");
    f.write_all(b", then a").unwrap();
    drop(f);
    assert_eq!(fs::read(b.p("made-in-b")).unwrap(), b"from b, then a");
    // With O_EXCL it is EEXIST, as on a local disk.
    assert!(fs::metadata(a.p("made-too")).is_err());
    fs::write(b.p("made-too"), b"x").unwrap();
    let e = fs::File::options()
        .write(true)
        .create_new(true)
        .open(a.p("made-too"))
        .unwrap_err();
    assert_eq!(errno_of(e), libc::EEXIST);
    drop((a, b));
    env.fsck_clean("acme");
}

#[test]
fn a_descriptor_whose_file_another_mount_unlinked_still_truncates_and_stats() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    fs::write(a.p("f"), b"some content here").unwrap();
    let f = fs::File::options()
        .read(true)
        .write(true)
        .open(a.p("f"))
        .unwrap();
    fs::remove_file(b.p("f")).unwrap();
    f.set_len(4)
        .expect("ftruncate after the other mount's unlink");
    let st = nix::sys::stat::fstat(&f).expect("fstat after the other mount's unlink");
    assert_eq!(st.st_size, 4);
    assert_eq!(st.st_nlink, 0);
    f.sync_all().unwrap();
    drop(f);
    drop((a, b));
    env.fsck_clean("acme");
}

/// Saves `dir/target` atomically (write a temporary, rename it over) until `stop`, each
/// version a whole 4 KiB of one letter.
fn replace_until(dir: &std::path::Path, stop: &std::sync::atomic::AtomicBool) -> usize {
    use std::sync::atomic::Ordering;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let tmp = dir.join(format!(".target.{n}.tmp"));
        fs::write(&tmp, vec![b'a' + (n % 26) as u8; 4096]).unwrap();
        fs::rename(&tmp, dir.join("target")).unwrap();
        n += 1;
    }
    n
}

/// Opens `dir/target` `opens` times while another thread replaces it through `writer`;
/// returns the errno of every failed open or read, and any torn content seen.
fn read_while_replaced(
    reader: &std::path::Path,
    writer: &std::path::Path,
    opens: usize,
) -> Vec<String> {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    fs::write(writer.join("target"), vec![b'z'; 4096]).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let saver = s.spawn(|| replace_until(writer, &stop));
        let mut bad = Vec::new();
        for _ in 0..opens {
            let mut buf = Vec::new();
            match fs::File::open(reader.join("target")).and_then(|mut f| f.read_to_end(&mut buf)) {
                Ok(_) if buf.len() == 4096 && buf.iter().all(|&c| c == buf[0]) => {}
                Ok(_) => bad.push(format!("torn: {} bytes", buf.len())),
                Err(e) => bad.push(format!("{e}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(saver.join().unwrap() > 0);
        bad
    })
}

#[test]
fn opens_racing_atomic_saves_always_open_the_old_or_the_new_file() {
    let host = tempfile::tempdir().unwrap();
    assert_eq!(
        read_while_replaced(host.path(), host.path(), 2_000),
        Vec::<String>::new()
    );
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    let same = read_while_replaced(&a.path, &a.path, 10_000);
    assert!(
        same.is_empty(),
        "in one mount, {} of 10,000 failed: {:?}",
        same.len(),
        &same[..same.len().min(5)]
    );
    let across = read_while_replaced(&b.path, &a.path, 10_000);
    assert!(
        across.is_empty(),
        "across mounts, {} of 10,000 failed: {:?}",
        across.len(),
        &across[..across.len().min(5)]
    );
    drop((a, b));
    env.fsck_clean("acme");
}

/// Appends `lines` JSON lines tagged `who` to `path` with `O_APPEND`, one descriptor for all
/// of them (`long_lived`) or one per line.
fn append_lines(path: &std::path::Path, who: &str, lines: usize, long_lived: bool) {
    let open = || {
        fs::File::options()
            .append(true)
            .create(true)
            .open(path)
            .unwrap()
    };
    let mut f = open();
    for i in 0..lines {
        if !long_lived {
            f = open();
        }
        let line = format!(
            "{{\"who\":\"{who}\",\"n\":{i},\"pad\":\"{}\"}}\n",
            "x".repeat(i % 50)
        );
        f.write_all(line.as_bytes()).unwrap();
    }
}

/// Every line two writers appended, whole and once each.
fn check_lines(content: &str, lines: usize) {
    let mut seen = std::collections::HashSet::new();
    for l in content.lines() {
        assert!(
            l.starts_with("{\"who\":\"") && l.ends_with("\"}"),
            "torn line {l:?}"
        );
        assert!(seen.insert(l.to_string()), "line twice: {l:?}");
    }
    assert_eq!(seen.len(), 2 * lines, "lines lost");
}

#[test]
fn appends_from_two_mounts_all_land_whole() {
    let host = tempfile::tempdir().unwrap();
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    for long_lived in [false, true] {
        let name = format!("log-{long_lived}.jsonl");
        let (pa, pb) = (a.p(&name), b.p(&name));
        fs::write(&pa, b"").unwrap();
        std::thread::scope(|s| {
            s.spawn(|| append_lines(&pa, "a", 500, long_lived));
            s.spawn(|| append_lines(&pb, "b", 500, long_lived));
        });
        check_lines(&fs::read_to_string(&pa).unwrap(), 500);
        check_lines(&fs::read_to_string(&pb).unwrap(), 500);
        // The same on the host's disk.
        let ph = host.path().join(&name);
        std::thread::scope(|s| {
            s.spawn(|| append_lines(&ph, "a", 500, long_lived));
            s.spawn(|| append_lines(&ph, "b", 500, long_lived));
        });
        check_lines(&fs::read_to_string(&ph).unwrap(), 500);
        assert_eq!(
            fs::metadata(&pa).unwrap().len(),
            fs::metadata(&ph).unwrap().len()
        );
    }
    // An O_APPEND descriptor (direct I/O) can still be mapped shared, as on a local disk.
    let mapped = "import mmap; f = open('log-true.jsonl', 'a+b'); \
                  m = mmap.mmap(f.fileno(), 0); print(m[:8].decode())";
    assert_eq!(
        common::sh(&a.path, &format!("python3 -c \"{mapped}\"")).trim(),
        "{\"who\":\""
    );
    drop((a, b));
    env.fsck_clean("acme");
}

#[test]
fn tail_f_in_one_mount_follows_appends_made_in_another() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    fs::write(a.p("app.log"), b"start\n").unwrap();
    for follow in ["-f", "-F"] {
        let mut tail = std::process::Command::new("tail")
            .args([follow, "-s", "0.2", "-n", "+1"])
            .arg(b.p("app.log"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = tail.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                if tx.send((l.unwrap(), Instant::now())).is_err() {
                    break;
                }
            }
        });
        let mut log = fs::File::options()
            .append(true)
            .open(a.p("app.log"))
            .unwrap();
        let mut late = Duration::ZERO;
        let mut waiting = |want: &str, since: Instant| loop {
            let (l, at) = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("tail saw the line");
            if l == want {
                late = late.max(at - since);
                break;
            }
        };
        waiting("start", Instant::now());
        for i in 0..12 {
            let line = format!("{follow} line {i}");
            let at = Instant::now();
            writeln!(log, "{line}").unwrap();
            waiting(&line, at);
        }
        tail.kill().unwrap();
        tail.wait().unwrap();
        assert!(
            late < Duration::from_secs(2),
            "a line took {late:?} to show"
        );
    }
    drop((a, b));
    env.fsck_clean("acme");
}
