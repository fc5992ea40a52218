//! Short random ids for config entries and keyring entries.
//!
//! Ids are random rather than derived from a cap or storage index so that nothing about a cap can
//! be learnt from an id (ids appear in logs, in the config file and as keyring user names).

use thiserror::Error;

/// Random bytes per id: 80 bits, written as 16 base32 characters.
const ID_BYTES: usize = 10;

/// The OS random source failed.
#[derive(Debug, Error)]
#[error("the operating system's random number source failed: {0}")]
pub struct IdError(getrandom::Error);

/// A new id: `prefix` then 16 lowercase base32 characters, e.g. `cap-7k2m…`.
pub fn new_id(prefix: &str) -> Result<String, IdError> {
    let mut bytes = [0u8; ID_BYTES];
    getrandom::getrandom(&mut bytes).map_err(IdError)?;
    Ok(format!("{prefix}{}", tahoe_caps::base32::encode(&bytes)))
}

/// Whether `id` looks like an id this crate made (used to refuse odd keyring user names).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_unique_and_valid() {
        let a = new_id("cap-").unwrap();
        let b = new_id("cap-").unwrap();
        assert!(a.starts_with("cap-"));
        assert_eq!(a.len(), 4 + 16);
        assert_ne!(a, b);
        assert!(is_valid_id(&a));
    }

    #[test]
    fn odd_ids_are_invalid() {
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("Cap"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"a".repeat(65)));
    }
}
