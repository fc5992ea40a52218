//! The typed capability: what it names, what it grants, and how it attenuates.

use std::fmt;

use crate::base32;
use crate::hash;
use crate::kind::{CapFormat, CapKind, CapRole};
use crate::StorageIndex;

/// A parsed Tahoe-LAFS capability.
///
/// Build one with [`str::parse`] (or [`Cap::parse`]); [`fmt::Display`] writes Tahoe's canonical
/// string back. That string is a password: `Display` is the only way key material leaves this
/// type. [`fmt::Debug`] shows the kind and storage index and redacts the keys, and there is
/// deliberately no serde support, so that a cap cannot slip into a config file or a log by accident.
///
/// ```
/// use tahoe_caps::{Cap, CapKind};
/// let cap: Cap = "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a"
///     .parse()?;
/// assert_eq!(cap.kind(), CapKind::DirectoryWrite);
/// let read_cap = cap.read_only();
/// assert_eq!(read_cap.kind(), CapKind::DirectoryRead);
/// assert_eq!(read_cap.storage_index(), cap.storage_index());
/// assert!(!format!("{cap:?}").contains("rvbf3wlbpjwgh3wkcd7n2irdhi"));
/// # Ok::<(), tahoe_caps::CapError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cap {
    pub(crate) kind: CapKind,
    pub(crate) body: Body,
}

/// The fields of a cap. Which variant goes with which [`CapKind`] is fixed by the kind's format
/// and role; only this crate builds caps, so the pairing always holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Body {
    MutableWrite {
        write_key: [u8; 16],
        fingerprint: [u8; 32],
        storage_index: StorageIndex,
    },
    MutableRead {
        read_key: [u8; 16],
        fingerprint: [u8; 32],
        storage_index: StorageIndex,
    },
    MutableVerify {
        storage_index: StorageIndex,
        fingerprint: [u8; 32],
    },
    ChkRead {
        encryption_key: [u8; 16],
        uri_extension_hash: [u8; 32],
        parameters: ChkParameters,
        storage_index: StorageIndex,
    },
    ChkVerify {
        storage_index: StorageIndex,
        uri_extension_hash: [u8; 32],
        parameters: ChkParameters,
    },
    Literal {
        data: Vec<u8>,
    },
}

/// Erasure-coding parameters and size written into immutable (CHK) caps. Not secret.
///
/// Tahoe checks no ranges here (it accepts `k > N` and zeros), so neither does this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChkParameters {
    /// Shares needed to read the file (k).
    pub needed_shares: u64,
    /// Shares written (N).
    pub total_shares: u64,
    /// File size in bytes.
    pub size: u64,
}

impl Cap {
    /// Which of the eighteen forms this is.
    pub fn kind(&self) -> CapKind {
        self.kind
    }

    /// How the data is stored (SDMF, MDMF, CHK or LIT).
    pub fn format(&self) -> CapFormat {
        self.kind.format()
    }

    /// What the holder may do: write, read or verify.
    pub fn role(&self) -> CapRole {
        self.kind.role()
    }

    /// Whether the cap names a mutable slot, whose content can change. True for mutable
    /// verify-caps too (unlike Tahoe's `is_mutable()`, see [`Cap::tahoe_is_mutable`]): a notifier
    /// can watch a slot through any of its caps.
    pub fn is_mutable(&self) -> bool {
        self.kind.is_mutable()
    }

    /// Exactly what Tahoe's `is_mutable()` answers: `false` for mutable verify-caps.
    pub fn tahoe_is_mutable(&self) -> bool {
        self.kind.tahoe_is_mutable()
    }

    /// Whether the cap names a directory.
    pub fn is_directory(&self) -> bool {
        self.kind.is_directory()
    }

    /// Whether the cap cannot modify anything (every kind except the write-caps), as Tahoe's
    /// `is_readonly()` answers.
    pub fn is_readonly(&self) -> bool {
        self.kind.is_readonly()
    }

    /// The storage index servers know the data by; `None` only for literal caps, which carry
    /// their data inline and have no shares.
    pub fn storage_index(&self) -> Option<StorageIndex> {
        match &self.body {
            Body::MutableWrite { storage_index, .. }
            | Body::MutableRead { storage_index, .. }
            | Body::MutableVerify { storage_index, .. }
            | Body::ChkRead { storage_index, .. }
            | Body::ChkVerify { storage_index, .. } => Some(*storage_index),
            Body::Literal { .. } => None,
        }
    }

    /// The fingerprint of a mutable slot's verification (RSA public) key, carried by every
    /// mutable cap: Tahoe's `ssk_pubkey_fingerprint_hash`, a tagged SHA-256d of the key's DER
    /// SubjectPublicKeyInfo (see [`hash::mutable_pubkey_fingerprint`]). It is what lets a holder
    /// of any cap check that a share's key, and so its signed seqnum, belongs to this slot.
    /// Not secret (verify-caps carry it too). `None` for immutable and literal caps.
    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        match &self.body {
            Body::MutableWrite { fingerprint, .. }
            | Body::MutableRead { fingerprint, .. }
            | Body::MutableVerify { fingerprint, .. } => Some(*fingerprint),
            _ => None,
        }
    }

    /// The erasure-coding parameters and size of an immutable (CHK) cap; `None` for other kinds.
    pub fn chk_parameters(&self) -> Option<ChkParameters> {
        match &self.body {
            Body::ChkRead { parameters, .. } | Body::ChkVerify { parameters, .. } => {
                Some(*parameters)
            }
            _ => None,
        }
    }

    /// The read-only cap for the same file or directory: a write-cap becomes its read-cap
    /// (read key = hash of the write key); every other cap is returned unchanged.
    pub fn read_only(&self) -> Cap {
        match &self.body {
            Body::MutableWrite {
                write_key,
                fingerprint,
                storage_index,
            } => Cap {
                kind: self.kind.read_only(),
                body: Body::MutableRead {
                    read_key: hash::mutable_read_key(write_key),
                    fingerprint: *fingerprint,
                    storage_index: *storage_index,
                },
            },
            _ => self.clone(),
        }
    }

    /// The verify-cap for the same file or directory, which lets a holder check shares but not
    /// read them; a verify-cap maps to itself. `None` for literal caps, which have no shares.
    ///
    /// Tahoe 1.20 itself fails (`AssertionError`) on `URI:DIR2-MDMF-Verifier:` and
    /// `URI:DIR2-CHK-Verifier:` caps here; this returns the cap itself, as for every verify-cap.
    pub fn verify_cap(&self) -> Option<Cap> {
        let kind = self.kind.verify()?;
        let body = match &self.body {
            Body::MutableWrite {
                fingerprint,
                storage_index,
                ..
            }
            | Body::MutableRead {
                fingerprint,
                storage_index,
                ..
            }
            | Body::MutableVerify {
                fingerprint,
                storage_index,
            } => Body::MutableVerify {
                storage_index: *storage_index,
                fingerprint: *fingerprint,
            },
            Body::ChkRead {
                uri_extension_hash,
                parameters,
                storage_index,
                ..
            }
            | Body::ChkVerify {
                uri_extension_hash,
                parameters,
                storage_index,
            } => Body::ChkVerify {
                storage_index: *storage_index,
                uri_extension_hash: *uri_extension_hash,
                parameters: *parameters,
            },
            Body::Literal { .. } => return None,
        };
        Some(Cap { kind, body })
    }
}

impl fmt::Display for Cap {
    /// Tahoe's canonical string. This prints key material: never log it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.prefix())?;
        match &self.body {
            Body::MutableWrite {
                write_key: key,
                fingerprint,
                ..
            }
            | Body::MutableRead {
                read_key: key,
                fingerprint,
                ..
            } => write!(f, "{}:{}", base32::encode(key), base32::encode(fingerprint)),
            Body::MutableVerify {
                storage_index,
                fingerprint,
            } => write!(f, "{storage_index}:{}", base32::encode(fingerprint)),
            Body::ChkRead {
                encryption_key,
                uri_extension_hash,
                parameters,
                ..
            } => write!(
                f,
                "{}:{}:{}:{}:{}",
                base32::encode(encryption_key),
                base32::encode(uri_extension_hash),
                parameters.needed_shares,
                parameters.total_shares,
                parameters.size
            ),
            Body::ChkVerify {
                storage_index,
                uri_extension_hash,
                parameters,
            } => write!(
                f,
                "{storage_index}:{}:{}:{}:{}",
                base32::encode(uri_extension_hash),
                parameters.needed_shares,
                parameters.total_shares,
                parameters.size
            ),
            Body::Literal { data } => f.write_str(&base32::encode(data)),
        }
    }
}

impl fmt::Debug for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cap")
            .field("kind", &self.kind)
            .field("storage_index", &self.storage_index())
            .field("keys", &Redacted)
            .finish()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Redacted.fmt(f)
    }
}

/// Stands in for key material in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR_WRITE: &str =
        "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

    #[test]
    fn debug_redacts_every_key() {
        let cap = Cap::parse(DIR_WRITE).unwrap();
        let debug = format!("{cap:?} {:?} {:?}", cap.read_only(), cap.verify_cap());
        assert!(debug.contains("<redacted>"));
        assert!(debug.contains("DirectoryWrite"));
        assert!(debug.contains("3zuybt32gbkka6auscupso6swe"));
        for secret in [
            "rvbf3wlbpjwgh3wkcd7n2irdhi",
            "uk4r3cnhlj2wyiah6zcj3ndhwi",
            "s7yrvzsra4",
        ] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(!format!("{:#?}", cap.body).contains("rvbf3"));
    }

    #[test]
    fn every_mutable_form_carries_the_same_fingerprint() {
        let cap = Cap::parse(DIR_WRITE).unwrap();
        // base32 s7yrvzsra4cq… decoded by Tahoe's own base32.a2b.
        let expected: [u8; 32] = [
            0x97, 0xf1, 0x1a, 0xe6, 0x51, 0x07, 0x05, 0x06, 0xa6, 0x8a, 0x02, 0xf0, 0xe1, 0x61,
            0xaf, 0x37, 0xf8, 0x6c, 0xb9, 0x07, 0x87, 0x38, 0xc3, 0x70, 0xf0, 0x7e, 0x8d, 0x3b,
            0x58, 0x3b, 0xad, 0x38,
        ];
        assert_eq!(cap.fingerprint(), Some(expected));
        assert_eq!(cap.read_only().fingerprint(), Some(expected));
        assert_eq!(cap.verify_cap().unwrap().fingerprint(), Some(expected));
        let literal = Cap::parse("URI:LIT:nbswy3dp").unwrap();
        assert_eq!(literal.fingerprint(), None);
    }

    #[test]
    fn attenuates_write_to_read_to_verify() {
        let cap = Cap::parse(DIR_WRITE).unwrap();
        assert_eq!(
            cap.read_only().to_string(),
            "URI:DIR2-RO:uk4r3cnhlj2wyiah6zcj3ndhwi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a"
        );
        assert_eq!(
            cap.verify_cap().map(|verify| verify.to_string()).as_deref(),
            Some("URI:DIR2-Verifier:3zuybt32gbkka6auscupso6swe:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a")
        );
    }
}
