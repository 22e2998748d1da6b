//! Faults a test can inject into a debug build through the environment, for paths no
//! request can reach on purpose (a bug). Release builds have none of this.

use std::sync::OnceLock;

/// Looking up this name panics (`TENANTFS_FAULT_PANIC_ON_LOOKUP`).
fn panic_name() -> Option<&'static [u8]> {
    static NAME: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var_os("TENANTFS_FAULT_PANIC_ON_LOOKUP")
            .map(std::os::unix::ffi::OsStringExt::into_vec)
    })
    .as_deref()
}

pub(super) fn at_lookup(name: &[u8]) {
    if panic_name() == Some(name) {
        panic!(
            "fault injected: lookup of {}",
            String::from_utf8_lossy(name)
        );
    }
}
