//! Logging that can never end a mount, and that no tenant can make grow without bound.
//!
//! Invariants:
//! - a log line that cannot be written (a full disk, `2>/dev/full`, a closed pipe) is
//!   dropped and counted, never retried, reported or panicked over; the count is written
//!   with the next line that gets through;
//! - each cause (a log statement's place in the code) writes at most [`BURST`] lines at
//!   once and [`PER_MINUTE`] a minute after that; what it loses is counted and said once it
//!   may write again. A tenant can repeat one request forever; its log costs stay bounded;
//! - a background daemon's log file is moved aside to `NAME.1` past its cap
//!   (`mount --log-max-size`, 16 MiB by default),
//!   so a daemon's logs never take more than twice that.
//!
//! A hand-written filter rather than a crate: tracing-throttle (the one on crates.io)
//! tells causes apart by their field values too, so a tenant varying an inode number in
//! a message would get a fresh budget each time.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tracing::{Event, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Lines one cause may write at once.
pub const BURST: u32 = 20;
/// Lines one cause may write a minute once its burst is spent.
pub const PER_MINUTE: u32 = 10;
/// The smallest cap `log_file` takes: a few lines.
pub const ROTATE_MIN: u64 = 4 << 10;

/// Where log lines go: standard error, which a background daemon points at its log file.
struct Sink {
    /// Lines that could not be written since the last one that could.
    dropped: AtomicU64,
    /// A daemon's log file, once it is known.
    file: Mutex<Option<LogFile>>,
}

struct LogFile {
    path: PathBuf,
    written: u64,
    /// Size at which it is moved aside.
    cap: u64,
}

static SINK: Sink = Sink {
    dropped: AtomicU64::new(0),
    file: Mutex::new(None),
};

impl Sink {
    /// Writes one whole line to standard error; a failure drops it and counts it.
    fn line(&self, buf: &[u8]) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            let note =
                format!("tenantfs: {dropped} log line(s) could not be written and were dropped\n");
            if raw_write(note.as_bytes()).is_ok() {
                self.dropped.fetch_sub(dropped, Ordering::Relaxed);
                self.wrote(note.len());
            }
        }
        match raw_write(buf) {
            Ok(()) => self.wrote(buf.len()),
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts bytes written to a daemon's log file and moves the file aside past the cap.
    fn wrote(&self, n: usize) {
        let mut file = self.file.lock();
        let Some(LogFile { path, written, cap }) = file.as_mut() else {
            return;
        };
        *written += n as u64;
        if *written < *cap {
            return;
        }
        *written = 0;
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        if std::fs::rename(&*path, &old).is_ok()
            && let Ok(new) = open_log(path)
        {
            // Both standard streams, so a panic message lands in the new file too.
            // SAFETY: dup2 onto the standard streams of fds this process owns.
            unsafe {
                libc::dup2(new.as_raw_fd(), 1);
                libc::dup2(new.as_raw_fd(), 2);
            }
        }
    }
}

/// write(2) of the whole buffer to standard error, without Rust's stderr lock or its
/// panics.
fn raw_write(mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: the pointer and length describe `buf`, which outlives the call.
        let n = unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// `eprintln!` that never panics: a message for the user that cannot be written (standard
/// error closed or full) is dropped, as a log line would be.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Opens (creating) a log file for appending, readable by its owner alone.
pub fn open_log(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// From now on standard error is `path`: count what is written there and move it aside
/// at `cap` bytes (at least [`ROTATE_MIN`]).
pub fn log_file(path: &Path, cap: u64) {
    let written = std::fs::metadata(path).map_or(0, |m| m.len());
    *SINK.file.lock() = Some(LogFile {
        path: path.to_path_buf(),
        written,
        cap: cap.max(ROTATE_MIN),
    });
}

/// Lines that could not be written and were not yet reported (for tests and status).
pub fn dropped() -> u64 {
    SINK.dropped.load(Ordering::Relaxed)
}

/// The fmt layer's writer: it gathers one event's line and hands it to the sink whole.
struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            SINK.line(&self.0);
        }
    }
}

/// A cause's budget of lines, as a token bucket.
struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

/// Limits each cause to [`BURST`] lines, then [`PER_MINUTE`].
#[derive(Default)]
pub struct PerCause {
    buckets: Mutex<HashMap<u64, Bucket>>,
}

impl PerCause {
    /// Takes a line from the cause's budget; when lines were dropped before it, says so.
    fn allow(&self, cause: u64, where_: impl FnOnce() -> String) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(cause).or_insert(Bucket {
            tokens: f64::from(BURST),
            last: now,
            suppressed: 0,
        });
        let refill = now.duration_since(b.last).as_secs_f64() * f64::from(PER_MINUTE) / 60.0;
        b.tokens = (b.tokens + refill).min(f64::from(BURST));
        b.last = now;
        if b.tokens < 1.0 {
            b.suppressed += 1;
            return false;
        }
        b.tokens -= 1.0;
        if b.suppressed > 0 {
            let note = format!(
                "tenantfs: {} line(s) from {} were dropped (at most {BURST} at once, then {PER_MINUTE} a minute)\n",
                b.suppressed,
                where_()
            );
            b.suppressed = 0;
            SINK.line(note.as_bytes());
        }
        true
    }
}

impl<S: Subscriber> Filter<S> for PerCause {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        // Lines from the `log` crate (fuser's) share one callsite per level; their own
        // file and line tell the causes apart.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut h = DefaultHasher::new();
        (
            meta.level().as_str(),
            meta.target(),
            meta.file(),
            meta.line(),
        )
            .hash(&mut h);
        self.allow(h.finish(), || {
            format!(
                "{}:{}",
                meta.file().unwrap_or("?"),
                meta.line().unwrap_or(0)
            )
        })
    }
}

/// What is logged unless `TENANTFS_LOG` says otherwise. fuser's session warns at every
/// unmount that its own second unmount failed (`EINVAL`: tenantfs unmounted already), and
/// that is the only warning it has, so its session logs errors only.
const DEFAULT_FILTER: &str = "info,fuser::session=error";

/// Installs the process's subscriber: `TENANTFS_LOG` (default [`DEFAULT_FILTER`]) picks
/// what is logged, to standard error.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENANTFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| LineWriter(Vec::with_capacity(256)))
        .with_target(false)
        .with_ansi(io::stderr().is_terminal())
        // Its report of a failed write is an eprintln!, which panics when standard error is
        // the full file that failed.
        .log_internal_errors(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::Layer::with_filter(
            fmt,
            PerCause::default(),
        ))
        .try_init();
    // A panic is a bug: log it (through the sink, which cannot fail) rather than only to
    // a standard error that may be gone.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "a thread panicked");
        if io::stderr().is_terminal() {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_gets_its_burst_then_a_trickle() {
        let f = PerCause::default();
        let allowed = (0..1000).filter(|_| f.allow(7, String::new)).count();
        assert_eq!(allowed, BURST as usize);
        // Another cause has its own budget.
        assert!(f.allow(8, String::new));
        assert_eq!(f.buckets.lock()[&7].suppressed, 1000 - u64::from(BURST));
    }
}
