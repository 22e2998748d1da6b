//! The kernel's caches (pages, negative entries) stay coherent between two mounts of one
//! tenant: a change in one shows in the other once the attribute TTL passes.

mod common;

use std::fs;
use std::io::Read;
use std::time::Duration;

use common::{Env, wait_until};

fn read(p: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    fs::File::open(p).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn pages_cached_in_one_mount_follow_a_change_made_in_another() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    fs::write(a.p("f"), b"old content").unwrap();
    // b reads it twice; its pages are cached.
    assert!(wait_until(Duration::from_secs(3), || b.p("f").exists()).is_some());
    assert_eq!(read(&b.p("f")), b"old content");
    assert_eq!(read(&b.p("f")), b"old content");
    // The same length, so only the content and the times change.
    std::thread::sleep(Duration::from_millis(20));
    fs::write(a.p("f"), b"new content").unwrap();
    let took = wait_until(Duration::from_secs(3), || read(&b.p("f")) == b"new content");
    assert!(took.is_some(), "b kept serving its stale pages");
    eprintln!("b saw the change after {took:?}");
}

#[test]
fn a_name_remembered_as_absent_appears_once_made_elsewhere() {
    let env = Env::new();
    let a = env.mounted_tenant("acme", "a");
    let b = env.mounted_tenant_again("b");
    // Missing in b, twice: the second answer can come from the kernel's negative entry.
    assert!(!b.p("late").exists());
    assert!(!b.p("late").exists());
    fs::write(a.p("late"), b"here").unwrap();
    let took = wait_until(Duration::from_secs(3), || b.p("late").exists());
    assert!(took.is_some(), "b never saw the new name");
    assert_eq!(read(&b.p("late")), b"here");
    // In the mount that made it, it is there at once.
    fs::remove_file(b.p("late")).unwrap();
    assert!(!b.p("late").exists());
    fs::write(b.p("late"), b"again").unwrap();
    assert_eq!(read(&b.p("late")), b"again");
}
