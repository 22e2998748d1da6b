//! The tenant audit log: one JSON line per denial in `tenants/<id>/audit.log`, appended and
//! never rewritten. A token bucket bounds how fast it grows, so a denial storm cannot fill the
//! disk; denials past the bucket are counted and the count rides on the next line written.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Lines per second the log accepts on average, and the burst it absorbs.
const RATE: f64 = 50.0;
const BURST: f64 = 500.0;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Unix seconds.
    pub at: i64,
    pub subject: String,
    pub op: String,
    pub path: String,
    pub errno: i32,
    /// Denials dropped by the rate limit just before this one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suppressed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub struct AuditLog {
    path: PathBuf,
    state: Mutex<Bucket>,
}

struct Bucket {
    file: Option<File>,
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl AuditLog {
    pub fn new(path: PathBuf) -> AuditLog {
        AuditLog {
            path,
            state: Mutex::new(Bucket {
                file: None,
                tokens: BURST,
                last: Instant::now(),
                suppressed: 0,
            }),
        }
    }

    /// Records a denial, unless the bucket is empty (then it is counted).
    pub fn deny(&self, subject: &str, op: &str, path: String, errno: i32) {
        let mut b = self.state.lock();
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * RATE).min(BURST);
        b.last = now;
        if b.tokens < 1.0 {
            b.suppressed += 1;
            return;
        }
        b.tokens -= 1.0;
        let record = Record {
            at: crate::time::now_secs(),
            subject: subject.to_string(),
            op: op.to_string(),
            path,
            errno,
            suppressed: std::mem::take(&mut b.suppressed),
        };
        if b.file.is_none() {
            b.file = crate::private::append_file(&self.path).ok();
        }
        let Some(file) = b.file.as_mut() else { return };
        let mut line = serde_json::to_vec(&record).expect("a record serializes");
        line.push(b'\n');
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(error = %e, "cannot append to the audit log");
        }
    }
}

/// Reads a tenant's audit log, oldest first, from `since` (Unix seconds) on.
pub fn read(path: &Path, since: Option<i64>) -> std::io::Result<Vec<Record>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        // A line cut short by a crash is skipped, not fatal.
        if let Ok(r) = serde_json::from_str::<Record>(&line?)
            && since.is_none_or(|s| r.at >= s)
        {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_is_bounded_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::new(path.clone());
        for i in 0..5000 {
            log.deny("user:bob", "lookup", format!("/hr/{i}"), libc::EACCES);
        }
        let written = read(&path, None).unwrap();
        assert!(written.len() <= 510, "{} lines", written.len());
        std::thread::sleep(std::time::Duration::from_millis(50));
        log.deny("user:bob", "open", "/hr/last".into(), libc::EACCES);
        let written = read(&path, None).unwrap();
        let last = written.last().unwrap();
        assert_eq!(last.path, "/hr/last");
        assert!(last.suppressed >= 4000, "{}", last.suppressed);
        assert!(read(&path, Some(last.at + 10)).unwrap().is_empty());
    }
}
