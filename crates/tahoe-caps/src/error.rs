//! Why a string is not a cap.
//!
//! Every message names the part that is wrong and what was expected, and none carries the input
//! or any piece of it that could be key material: callers may log these errors freely.

use std::fmt;

use thiserror::Error;

use crate::base32::Base32Error;
use crate::kind::CapKind;

/// A named field of a cap string, used to say which one is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapPart {
    /// The 16-byte write key of a mutable write-cap.
    WriteKey,
    /// The 16-byte read key of a mutable read-cap.
    ReadKey,
    /// The 16-byte storage index of a verify-cap.
    StorageIndex,
    /// The 32-byte hash of a mutable slot's verification key.
    Fingerprint,
    /// The 16-byte encryption key of an immutable (CHK) read-cap.
    EncryptionKey,
    /// The 32-byte URI extension block hash of an immutable cap.
    UriExtensionHash,
    /// The number of shares needed to read an immutable file (k).
    NeededShares,
    /// The total number of shares of an immutable file (N).
    TotalShares,
    /// The size of an immutable file in bytes.
    Size,
    /// The content carried by a literal cap.
    LiteralData,
}

impl CapPart {
    /// Lower-case human name, e.g. `read key`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CapPart::WriteKey => "write key",
            CapPart::ReadKey => "read key",
            CapPart::StorageIndex => "storage index",
            CapPart::Fingerprint => "fingerprint",
            CapPart::EncryptionKey => "encryption key",
            CapPart::UriExtensionHash => "URI extension hash",
            CapPart::NeededShares => "needed-shares number",
            CapPart::TotalShares => "total-shares number",
            CapPart::Size => "size",
            CapPart::LiteralData => "literal data",
        }
    }
}

impl fmt::Display for CapPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Extra advice for input that does not start with `URI:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotACapHint {
    /// Nothing more specific to say.
    None,
    /// The input starts with whitespace.
    LeadingWhitespace,
    /// The input starts with `uri:` in lower case.
    LowerCaseUri,
    /// The input looks like a web-gateway URL (`http://…/uri/URI:…`).
    WebGatewayUrl,
    /// The input looks URL-encoded (`URI%3A…`).
    UrlEncoded,
}

impl fmt::Display for NotACapHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotACapHint::None => "",
            NotACapHint::LeadingWhitespace => "; it starts with whitespace",
            NotACapHint::LowerCaseUri => "; the `URI:` prefix must be upper case",
            NotACapHint::WebGatewayUrl => {
                "; it looks like a web-gateway URL: the cap is the part after `/uri/`, URL-decoded"
            }
            NotACapHint::UrlEncoded => "; it looks URL-encoded: decode `%3A` to `:` first",
        })
    }
}

/// Why a string is not a cap Tahoe-LAFS would accept.
///
/// Holds no key material: only kinds, part names, counts and positions.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CapError {
    /// The input is empty.
    #[error("empty input: expected a cap such as `URI:DIR2-RO:…`")]
    Empty,
    /// The input does not start with `URI:` (after an optional `ro.` or `imm.`).
    #[error("not a cap: a cap starts with `URI:` (optionally after `ro.` or `imm.`){hint}")]
    NotACap {
        /// More specific advice, if any.
        hint: NotACapHint,
    },
    /// `URI:` followed by a kind this crate does not know.
    #[error(
        "unknown cap kind{}: expected one of {}",
        DisplayKindName(kind.as_deref()),
        DisplayAllPrefixes
    )]
    UnknownKind {
        /// The kind's name (between `URI:` and the next colon), only when it is short and cannot
        /// be key material; `None` otherwise.
        kind: Option<String>,
    },
    /// A write-cap behind `ro.`, which claims a read-only cap. Tahoe refuses this too.
    #[error(
        "a {} write-cap cannot carry the `ro.` prefix, which claims a read-only cap",
        kind.prefix()
    )]
    WriteCapMarkedReadOnly {
        /// The write-cap's kind.
        kind: CapKind,
    },
    /// A mutable read or write-cap behind `imm.`, which claims an immutable one. Tahoe refuses
    /// this too.
    #[error(
        "a {} cap names a mutable slot and cannot carry the `imm.` prefix, which claims an immutable one",
        kind.prefix()
    )]
    MutableCapMarkedImmutable {
        /// The cap's kind.
        kind: CapKind,
    },
    /// The wrong number of colon-separated fields after the kind prefix.
    #[error(
        "a {} cap has {found} colon-separated field{} after the prefix, expected {}",
        kind.prefix(),
        if *found == 1 { "" } else { "s" },
        field_layout(*kind)
    )]
    WrongFieldCount {
        /// The cap's kind.
        kind: CapKind,
        /// Fields found (an empty remainder counts as zero).
        found: usize,
    },
    /// A field contains whitespace or a control character (a single trailing newline after the
    /// whole cap is tolerated, as Tahoe does).
    #[error(
        "{} {part} contains whitespace or a control character at character {position}; \
         a cap has none",
        kind.prefix()
    )]
    Whitespace {
        /// The cap's kind.
        kind: CapKind,
        /// The offending field.
        part: CapPart,
        /// Zero-based index of the character within the field.
        position: usize,
    },
    /// A field contains a non-ASCII character.
    #[error("{} {part} contains a non-ASCII character at character {position}", kind.prefix())]
    NonAscii {
        /// The cap's kind.
        kind: CapKind,
        /// The offending field.
        part: CapPart,
        /// Zero-based index of the character within the field.
        position: usize,
    },
    /// A fixed-size base32 field of the wrong length.
    #[error("{} {part} has {found} characters, expected {expected}", kind.prefix())]
    WrongLength {
        /// The cap's kind.
        kind: CapKind,
        /// The offending field.
        part: CapPart,
        /// Characters found.
        found: usize,
        /// Characters expected.
        expected: usize,
    },
    /// A field that is not canonical Tahoe base32.
    #[error("{} {part} is not base32: {reason}", kind.prefix())]
    NotBase32 {
        /// The cap's kind.
        kind: CapKind,
        /// The offending field.
        part: CapPart,
        /// What is wrong with it.
        reason: Base32Error,
    },
    /// A numeric field that is empty or holds something other than the digits 0-9.
    #[error("{} {part} is not a decimal number (only the digits 0-9 are allowed)", kind.prefix())]
    NotANumber {
        /// The cap's kind.
        kind: CapKind,
        /// The offending field.
        part: CapPart,
    },
    /// A numeric field larger than this crate can hold.
    #[error("{} {part} is larger than {}", kind.prefix(), u64::MAX)]
    NumberTooLarge {
        /// The cap's kind.
        kind: CapKind,
        /// The offending field.
        part: CapPart,
    },
}

/// The fields a kind expects after its prefix, for error messages.
fn field_layout(kind: CapKind) -> &'static str {
    match kind {
        CapKind::SdmfFileWrite | CapKind::DirectoryWrite => "2 (write key, fingerprint)",
        CapKind::SdmfFileRead | CapKind::DirectoryRead => "2 (read key, fingerprint)",
        CapKind::SdmfFileVerify | CapKind::DirectoryVerify => "2 (storage index, fingerprint)",
        CapKind::MdmfFileWrite | CapKind::MdmfDirectoryWrite => {
            "at least 2 (write key, fingerprint, then optional extension fields)"
        }
        CapKind::MdmfFileRead | CapKind::MdmfDirectoryRead => {
            "at least 2 (read key, fingerprint, then optional extension fields)"
        }
        CapKind::MdmfFileVerify | CapKind::MdmfDirectoryVerify => {
            "at least 2 (storage index, fingerprint, then optional extension fields)"
        }
        CapKind::ChkFileRead | CapKind::ImmutableDirectoryRead => {
            "5 (encryption key, URI extension hash, needed shares, total shares, size)"
        }
        CapKind::ChkFileVerify | CapKind::ImmutableDirectoryVerify => {
            "5 (storage index, URI extension hash, needed shares, total shares, size)"
        }
        CapKind::LiteralFile | CapKind::LiteralDirectory => "1 (literal data)",
    }
}

struct DisplayKindName<'a>(Option<&'a str>);

impl fmt::Display for DisplayKindName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " `URI:{name}:`"),
            None => Ok(()),
        }
    }
}

struct DisplayAllPrefixes;

impl fmt::Display for DisplayAllPrefixes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, kind) in CapKind::ALL.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            f.write_str(kind.prefix())?;
        }
        Ok(())
    }
}
