//! API keys: 256 random bits behind a readable prefix. The store keeps only their SHA-256.

use sha2::{Digest, Sha256};

const PREFIX: &str = "tfs_";
const SECRET_HEX: usize = 64;

/// A freshly made key and its public id.
pub struct NewKey {
    pub id: String,
    pub secret: String,
}

pub fn generate() -> NewKey {
    let mut secret = [0u8; 32];
    let mut id = [0u8; 6];
    getrandom::fill(&mut secret).expect("the OS random source is available");
    getrandom::fill(&mut id).expect("the OS random source is available");
    NewKey {
        id: format!("k_{}", hex::encode(id)),
        secret: format!("{PREFIX}{}", hex::encode(secret)),
    }
}

/// Checks a key's shape, so a typo or a wrong file gets a clear message, not "unknown key".
pub fn parse(raw: &str) -> Result<&str, String> {
    let key = raw.trim();
    let body = key.strip_prefix(PREFIX).ok_or_else(|| {
        "malformed key: a tenantfs key starts with 'tfs_'; check that the key file holds the line `tenantfs key create` printed".to_string()
    })?;
    if body.len() != SECRET_HEX || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "malformed key: expected 'tfs_' and {SECRET_HEX} hex digits, got {} characters after the prefix",
            body.len()
        ));
    }
    Ok(key)
}

pub fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Whether an argument looks like a key, so the CLI can refuse keys on argv.
pub fn looks_like_key(arg: &str) -> bool {
    arg.contains(PREFIX) && parse(arg.rsplit(['=', ' ']).next().unwrap_or(arg)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = generate();
        let b = generate();
        assert!(parse(&a.secret).is_ok());
        assert_ne!(a.secret, b.secret);
        assert_ne!(hash(&a.secret), hash(&b.secret));
        assert!(looks_like_key(&a.secret));
        assert!(looks_like_key(&format!("--key={}", a.secret)));
    }

    #[test]
    fn malformed_keys_say_why() {
        assert!(parse("hello").unwrap_err().contains("starts with 'tfs_'"));
        assert!(parse("tfs_abc").unwrap_err().contains("64 hex digits"));
        assert!(parse(&format!("tfs_{}", "z".repeat(64))).is_err());
        let k = generate().secret;
        assert_eq!(parse(&format!("  {k}\n")).unwrap(), k);
    }
}
