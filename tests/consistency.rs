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
