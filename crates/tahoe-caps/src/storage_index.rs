//! The 16-byte storage index that names a slot (mutable) or a share set (immutable) on servers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::base32::{self, DecodeExactError};

/// A storage index: 16 bytes, written as 26 characters of Tahoe base32.
///
/// It is not a secret: servers see it on every request. It is what a client subscribes to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageIndex([u8; 16]);

/// Why a string is not a storage index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StorageIndexError {
    /// Not 26 characters long.
    #[error("a storage index has 26 characters, this has {found}")]
    WrongLength {
        /// Characters found.
        found: usize,
    },
    /// 26 characters, but not canonical base32.
    #[error("a storage index is base32: {0}")]
    Base32(#[from] base32::Base32Error),
}

impl StorageIndex {
    /// Length in bytes.
    pub const LEN: usize = 16;
    /// Length of the base32 text form.
    pub const TEXT_LEN: usize = 26;

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The base32 text, as Tahoe prints it and as the wire protocol carries it.
    pub fn to_base32(&self) -> String {
        base32::encode(&self.0)
    }

    /// The folder that holds this index's shares, relative to a node's `storage/shares/`:
    /// the first two base32 characters, then the whole index.
    pub fn share_dir(&self) -> String {
        let text = self.to_base32();
        format!("{}/{}", &text[..2], text)
    }
}

impl FromStr for StorageIndex {
    type Err = StorageIndexError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match base32::decode_exact::<16>(text) {
            Ok(bytes) => Ok(Self(bytes)),
            Err(DecodeExactError::WrongLength { found, .. }) => {
                Err(StorageIndexError::WrongLength { found })
            }
            Err(DecodeExactError::Base32(e)) => Err(StorageIndexError::Base32(e)),
        }
    }
}

impl fmt::Display for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base32())
    }
}

impl fmt::Debug for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageIndex({})", self.to_base32())
    }
}

impl Serialize for StorageIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base32())
    }
}

impl<'de> Deserialize<'de> for StorageIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let si: StorageIndex = "3zuybt32gbkka6auscupso6swe".parse().unwrap();
        assert_eq!(si.to_string(), "3zuybt32gbkka6auscupso6swe");
        assert_eq!(si.share_dir(), "3z/3zuybt32gbkka6auscupso6swe");
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(
            "abc".parse::<StorageIndex>(),
            Err(StorageIndexError::WrongLength { found: 3 })
        );
        assert!(matches!(
            "3zuybt32gbkka6auscupso6swE".parse::<StorageIndex>(),
            Err(StorageIndexError::Base32(_))
        ));
    }
}
