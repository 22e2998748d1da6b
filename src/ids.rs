//! Names users type: tenant ids, subjects, scopes, and durations, each parsed once here with
//! an error that says what a valid one looks like.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A tenant id: 1–63 characters of `[a-z0-9-]`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl FromStr for TenantId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok_len = (1..=63).contains(&s.len());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_start = s.bytes().next().is_some_and(|b| b != b'-');
        if ok_len && ok_chars && ok_start {
            Ok(TenantId(s.to_string()))
        } else {
            Err(format!(
                "invalid tenant id {s:?}: use 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
            ))
        }
    }
}

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a key acts as: `user:alice`, `agent:bot`, `service:ci`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Subject {
    pub kind: SubjectKind,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    User,
    Agent,
    Service,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::Agent => "agent",
            SubjectKind::Service => "service",
        }
    }
}

impl FromStr for Subject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid subject {s:?}: write KIND:NAME with KIND user, agent or service, e.g. user:alice"
            )
        };
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        let kind = match kind {
            "user" => SubjectKind::User,
            "agent" => SubjectKind::Agent,
            "service" => SubjectKind::Service,
            _ => return Err(bad()),
        };
        check_subject_name(name)?;
        Ok(Subject {
            kind,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.name)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.to_string()
    }
}

/// The NAME of a subject: 1-128 characters of letters, digits and `. _ @ -`.
pub fn check_subject_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid subject name {name:?}: use 1-128 characters of letters, digits and . _ @ -"
        ))
    }
}

/// What a key may do: a ceiling on every op of its mounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            _ => Err(format!("invalid scope {s:?}: use read, write or admin")),
        }
    }
}

/// A size like `512K`, `100M`, `10G` or `1T` (powers of 1024), or plain bytes; 0 means
/// unlimited where a limit is meant.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| {
            format!("invalid size {s:?} ({e}): write bytes or a number with K, M, G or T, e.g. 10G")
        })
}

/// A duration like `90s`, `15m`, `12h` or `30d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}): write e.g. 90s, 15m, 12h or 30d"))?;
    if d.is_zero() {
        return Err(format!(
            "invalid duration {s:?}: it must be longer than zero"
        ));
    }
    Ok(d)
}

/// A key's root: an absolute path inside the tenant, normalised, with no `.` or `..`.
pub fn parse_root(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "invalid root {s:?}: write an absolute path inside the tenant, e.g. /projects/x"
        ));
    }
    let mut parts = Vec::new();
    for c in s.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." {
            return Err(format!("invalid root {s:?}: '.' and '..' are not allowed"));
        }
        if c.len() > 255 {
            return Err(format!(
                "invalid root {s:?}: a component is longer than 255 bytes"
            ));
        }
        parts.push(c);
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["a", "acme", "0x", "a-b", &"a".repeat(63)] {
            assert!(ok.parse::<TenantId>().is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "a/b", "é", &"a".repeat(64)] {
            let err = bad.parse::<TenantId>().unwrap_err();
            assert!(err.contains("1-63 characters"), "{err}");
        }
    }

    #[test]
    fn subjects() {
        assert_eq!(
            "user:alice".parse::<Subject>().unwrap().to_string(),
            "user:alice"
        );
        assert_eq!(
            "agent:bot-1".parse::<Subject>().unwrap().kind,
            SubjectKind::Agent
        );
        for bad in ["alice", "group:x", "user:", "user:a b", "root:x"] {
            assert!(bad.parse::<Subject>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 43200);
        assert_eq!(parse_duration("30d").unwrap().as_secs(), 30 * 86400);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("1536").unwrap(), 1536);
        assert_eq!(parse_size("1K").unwrap(), 1024);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        for bad in ["", "ten", "-1", "1X"] {
            assert!(
                parse_size(bad).unwrap_err().contains("K, M, G or T"),
                "{bad}"
            );
        }
    }

    #[test]
    fn roots() {
        assert_eq!(parse_root("/a//b/").unwrap(), "/a/b");
        assert_eq!(parse_root("/").unwrap(), "/");
        assert!(parse_root("a").is_err());
        assert!(parse_root("/a/../b").is_err());
    }
}
