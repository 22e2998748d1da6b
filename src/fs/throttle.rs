//! Token buckets that slow a mount down to its share of the tenant's rate limits. They delay
//! ops rather than fail them; a bucket may go into debt by one request, which the next
//! request waits out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Default)]
pub struct Throttle {
    /// Whether either rate is set: every op checks this, and takes no lock when it is not.
    on: AtomicBool,
    ops: Mutex<Bucket>,
    bytes: Mutex<Bucket>,
}

struct Bucket {
    /// Tokens a second; 0 is unlimited.
    rate: u64,
    tokens: f64,
    last: Instant,
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket {
            rate: 0,
            tokens: 0.0,
            last: Instant::now(),
        }
    }
}

impl Bucket {
    /// Takes `n` tokens; returns how long the caller must wait first.
    fn take(&mut self, n: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let rate = self.rate as f64;
        // A second's worth is the most a bucket holds: the burst.
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(rate);
        self.last = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }

    fn set(&mut self, rate: u64) {
        if rate != self.rate {
            self.rate = rate;
            self.tokens = rate as f64;
            self.last = Instant::now();
        }
    }
}

impl Throttle {
    /// Sets this mount's share: ops and bytes a second, 0 for unlimited.
    pub fn set(&self, ops: u64, bytes: u64) {
        self.ops.lock().set(ops);
        self.bytes.lock().set(bytes);
        self.on.store(ops > 0 || bytes > 0, Ordering::Relaxed);
    }

    /// Waits, if need be, before one op.
    pub fn op(&self) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let wait = self.ops.lock().take(1);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Waits, if need be, after moving `n` bytes.
    pub fn bytes(&self, n: u64) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let wait = self.bytes.lock().take(n);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_a_second_and_then_paces() {
        let mut b = Bucket::default();
        assert_eq!(b.take(1_000_000), Duration::ZERO, "unlimited");
        b.set(100);
        for _ in 0..100 {
            assert_eq!(
                b.take(1),
                Duration::ZERO,
                "the first second's worth is a burst"
            );
        }
        let wait = b.take(50);
        assert!(
            wait >= Duration::from_millis(490) && wait <= Duration::from_millis(510),
            "{wait:?}"
        );
    }
}
