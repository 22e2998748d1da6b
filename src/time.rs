//! Wall-clock helpers. Inode times are i64 nanoseconds since the Unix epoch, which
//! covers ±292 years and survives a round trip through SQLite unchanged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the epoch, negative before it.
pub type Nanos = i64;

pub fn now_nanos() -> Nanos {
    to_nanos(SystemTime::now())
}

pub fn now_secs() -> i64 {
    now_nanos().div_euclid(1_000_000_000)
}

pub fn to_nanos(t: SystemTime) -> Nanos {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

pub fn from_nanos(n: Nanos) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

/// RFC 3339 in UTC, to the second, for listings.
pub fn format_secs(secs: i64) -> String {
    humantime::format_rfc3339_seconds(from_nanos(secs.saturating_mul(1_000_000_000))).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_trip_both_sides_of_the_epoch() {
        for n in [0, 1, -1, 1_700_000_000_123_456_789, -86_400_000_000_001] {
            assert_eq!(to_nanos(from_nanos(n)), n);
        }
    }
}
