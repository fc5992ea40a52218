//! Cap string → [`Cap`], accepting exactly what Tahoe-LAFS 1.20's `allmydata.uri.from_string`
//! accepts, with two deliberate exceptions (both stricter, see [`parse_cap`]).

use std::str::FromStr;

use crate::base32::{self, DecodeExactError};
use crate::cap::{Body, Cap, ChkParameters};
use crate::error::{CapError, CapPart, NotACapHint};
use crate::hash;
use crate::kind::{CapFormat, CapKind, CapRole};
use crate::StorageIndex;

/// `imm.` before a cap claims it is deeply immutable.
const IMMUTABLE_CLAIM: &str = "imm.";
/// `ro.` before a cap claims it is read-only.
const READ_ONLY_CLAIM: &str = "ro.";
const URI_PREFIX: &str = "URI:";
/// Longest unknown kind name an error may repeat. Kind names are upper case and short; a key is
/// lower-case base32 of 26 characters or more, so a name within these rules cannot be a key.
const MAX_SHOWN_KIND_LEN: usize = 20;

impl Cap {
    /// Parses a cap string; the same as `text.parse::<Cap>()`.
    pub fn parse(text: &str) -> Result<Cap, CapError> {
        parse_cap(text)
    }
}

impl FromStr for Cap {
    type Err = CapError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_cap(text)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    None,
    ReadOnly,
    Immutable,
}

/// Parses a cap string.
///
/// Follows Tahoe 1.20: one optional `ro.` or `imm.` prefix (a write-cap behind `ro.` and a mutable
/// read or write-cap behind `imm.` are refused; verify and immutable caps accept both); a single
/// trailing `\n` is tolerated (Python's `$` matches before it); MDMF caps may carry extra
/// `:`-separated fields after the fingerprint, which are dropped; CHK numbers may have leading zeros.
///
/// Stricter than Tahoe in two places: `URI:CHK-Verifier:` and `URI:DIR2-CHK-Verifier:` caps must
/// end after the size (Tahoe's pattern for them has no end anchor and ignores anything that
/// follows), and CHK numbers must fit in a `u64` (Python's integers are unbounded).
pub(crate) fn parse_cap(input: &str) -> Result<Cap, CapError> {
    let text = input.strip_suffix('\n').unwrap_or(input);
    if text.is_empty() {
        return Err(CapError::Empty);
    }
    let (claim, unclaimed) = if let Some(rest) = text.strip_prefix(IMMUTABLE_CLAIM) {
        (Claim::Immutable, rest)
    } else if let Some(rest) = text.strip_prefix(READ_ONLY_CLAIM) {
        (Claim::ReadOnly, rest)
    } else {
        (Claim::None, text)
    };
    let Some(after_uri) = unclaimed.strip_prefix(URI_PREFIX) else {
        return Err(CapError::NotACap {
            hint: not_a_cap_hint(unclaimed),
        });
    };
    let (kind_name, body) = match after_uri.split_once(':') {
        Some((name, body)) => (name, Some(body)),
        None => (after_uri, None),
    };
    let Some(kind) = CapKind::ALL
        .into_iter()
        .find(|kind| kind.short_name() == kind_name)
    else {
        return Err(CapError::UnknownKind {
            kind: is_safe_kind_name(kind_name).then(|| kind_name.to_owned()),
        });
    };
    check_claim(kind, claim)?;
    let Some(body) = body else {
        return Err(CapError::WrongFieldCount { kind, found: 0 });
    };
    let body = match kind.format() {
        CapFormat::Sdmf => parse_mutable(kind, body, false)?,
        CapFormat::Mdmf => parse_mutable(kind, body, true)?,
        CapFormat::Chk => parse_chk(kind, body)?,
        CapFormat::Literal => Body::Literal {
            data: parse_literal(kind, body)?,
        },
    };
    Ok(Cap { kind, body })
}

/// Refuses the prefix claims Tahoe refuses: `ro.` on a write-cap, `imm.` on a mutable read or
/// write-cap. Verify-caps grant no access to content, so Tahoe lets either claim pass.
fn check_claim(kind: CapKind, claim: Claim) -> Result<(), CapError> {
    let writable = kind.role() == CapRole::Write;
    let mutable_content = kind.tahoe_is_mutable();
    match claim {
        Claim::Immutable if mutable_content => Err(CapError::MutableCapMarkedImmutable { kind }),
        Claim::ReadOnly if writable => Err(CapError::WriteCapMarkedReadOnly { kind }),
        _ => Ok(()),
    }
}

fn not_a_cap_hint(text: &str) -> NotACapHint {
    let starts_with_ignoring_case = |prefix: &str| {
        text.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    if text.starts_with(|c: char| c.is_whitespace()) {
        NotACapHint::LeadingWhitespace
    } else if starts_with_ignoring_case(URI_PREFIX) {
        NotACapHint::LowerCaseUri
    } else if starts_with_ignoring_case("URI%3A") {
        NotACapHint::UrlEncoded
    } else if (starts_with_ignoring_case("http://") || starts_with_ignoring_case("https://"))
        && text.contains("/uri/")
    {
        NotACapHint::WebGatewayUrl
    } else {
        NotACapHint::None
    }
}

/// Whether an unknown kind name may appear in an error: short, starting with an upper-case
/// letter, and made only of ASCII letters, digits and `-`.
fn is_safe_kind_name(name: &str) -> bool {
    (1..=MAX_SHOWN_KIND_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `<key or storage index>:<fingerprint>`, plus `:<anything>` for MDMF.
fn parse_mutable(kind: CapKind, body: &str, allow_extensions: bool) -> Result<Body, CapError> {
    let mut fields = body.splitn(3, ':');
    let (Some(first), Some(fingerprint)) = (fields.next(), fields.next()) else {
        let found = usize::from(!body.is_empty());
        return Err(CapError::WrongFieldCount { kind, found });
    };
    // Tahoe's MDMF pattern ends in `(:|$)`: whatever follows that colon is ignored.
    if fields.next().is_some() && !allow_extensions {
        let found = body.split(':').count();
        return Err(CapError::WrongFieldCount { kind, found });
    }
    let role = kind.role();
    let key_part = match role {
        CapRole::Write => CapPart::WriteKey,
        CapRole::Read => CapPart::ReadKey,
        CapRole::Verify => CapPart::StorageIndex,
    };
    let key = parse_fixed::<16>(kind, key_part, first)?;
    let fingerprint = parse_fixed::<32>(kind, CapPart::Fingerprint, fingerprint)?;
    Ok(match role {
        CapRole::Write => Body::MutableWrite {
            write_key: key,
            fingerprint,
            storage_index: hash::mutable_storage_index(&hash::mutable_read_key(&key)),
        },
        CapRole::Read => Body::MutableRead {
            read_key: key,
            fingerprint,
            storage_index: hash::mutable_storage_index(&key),
        },
        CapRole::Verify => Body::MutableVerify {
            storage_index: StorageIndex::from_bytes(key),
            fingerprint,
        },
    })
}

/// `<key or storage index>:<URI extension hash>:<k>:<N>:<size>`.
fn parse_chk(kind: CapKind, body: &str) -> Result<Body, CapError> {
    let fields: Vec<&str> = if body.is_empty() {
        Vec::new()
    } else {
        body.split(':').collect()
    };
    let [first, uri_extension_hash, needed, total, size] = fields[..] else {
        return Err(CapError::WrongFieldCount {
            kind,
            found: fields.len(),
        });
    };
    let is_verify = kind.role() == CapRole::Verify;
    let key_part = if is_verify {
        CapPart::StorageIndex
    } else {
        CapPart::EncryptionKey
    };
    let key = parse_fixed::<16>(kind, key_part, first)?;
    let uri_extension_hash =
        parse_fixed::<32>(kind, CapPart::UriExtensionHash, uri_extension_hash)?;
    let parameters = ChkParameters {
        needed_shares: parse_number(kind, CapPart::NeededShares, needed)?,
        total_shares: parse_number(kind, CapPart::TotalShares, total)?,
        size: parse_number(kind, CapPart::Size, size)?,
    };
    Ok(if is_verify {
        Body::ChkVerify {
            storage_index: StorageIndex::from_bytes(key),
            uri_extension_hash,
            parameters,
        }
    } else {
        Body::ChkRead {
            encryption_key: key,
            uri_extension_hash,
            parameters,
            storage_index: hash::immutable_storage_index(&key),
        }
    })
}

/// Any canonical base32, the empty string included (the empty file).
fn parse_literal(kind: CapKind, body: &str) -> Result<Vec<u8>, CapError> {
    check_characters(kind, CapPart::LiteralData, body)?;
    base32::decode(body).map_err(|reason| CapError::NotBase32 {
        kind,
        part: CapPart::LiteralData,
        reason,
    })
}

fn parse_fixed<const N: usize>(
    kind: CapKind,
    part: CapPart,
    text: &str,
) -> Result<[u8; N], CapError> {
    check_characters(kind, part, text)?;
    base32::decode_exact::<N>(text).map_err(|error| match error {
        DecodeExactError::WrongLength { found, expected } => CapError::WrongLength {
            kind,
            part,
            found,
            expected,
        },
        DecodeExactError::Base32(reason) => CapError::NotBase32 { kind, part, reason },
    })
}

/// Python's `[0-9]+` then `int()`: leading zeros allowed, signs and anything else refused.
fn parse_number(kind: CapKind, part: CapPart, text: &str) -> Result<u64, CapError> {
    check_characters(kind, part, text)?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CapError::NotANumber { kind, part });
    }
    text.parse()
        .map_err(|_| CapError::NumberTooLarge { kind, part })
}

/// Refuses whitespace, control and non-ASCII characters with their position, which says more
/// than "wrong length" when a stray `\r` or a look-alike letter is the real problem.
fn check_characters(kind: CapKind, part: CapPart, text: &str) -> Result<(), CapError> {
    // Every byte before the first non-ASCII one is a whole character, so byte index = char index.
    for (position, byte) in text.bytes().enumerate() {
        if byte.is_ascii_whitespace() || byte.is_ascii_control() {
            return Err(CapError::Whitespace {
                kind,
                part,
                position,
            });
        }
        if !byte.is_ascii() {
            return Err(CapError::NonAscii {
                kind,
                part,
                position,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_KEY: &str = "uk4r3cnhlj2wyiah6zcj3ndhwi";
    const FINGERPRINT: &str = "s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

    fn ssk_ro(key: &str, fingerprint: &str) -> String {
        format!("URI:SSK-RO:{key}:{fingerprint}")
    }

    #[test]
    fn says_which_part_has_the_wrong_length() {
        let error = Cap::parse(&ssk_ro(&READ_KEY[..25], FINGERPRINT)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "URI:SSK-RO: read key has 25 characters, expected 26"
        );
    }

    #[test]
    fn names_short_unknown_kinds_only() {
        let error = Cap::parse(&format!("URI:SSK-RX:{READ_KEY}:{FINGERPRINT}")).unwrap_err();
        assert_eq!(
            error,
            CapError::UnknownKind {
                kind: Some("SSK-RX".into())
            }
        );
        let error = Cap::parse(&format!("URI:{READ_KEY}:{FINGERPRINT}")).unwrap_err();
        assert_eq!(error, CapError::UnknownKind { kind: None });
        let error = Cap::parse(&format!("URI:SSK-RO {READ_KEY}:{FINGERPRINT}")).unwrap_err();
        assert_eq!(error, CapError::UnknownKind { kind: None });
    }

    #[test]
    fn reports_stray_whitespace_with_its_position() {
        let error = Cap::parse(&format!("{}\r\n", ssk_ro(READ_KEY, FINGERPRINT))).unwrap_err();
        assert_eq!(
            error,
            CapError::Whitespace {
                kind: CapKind::SdmfFileRead,
                part: CapPart::Fingerprint,
                position: 52
            }
        );
    }

    #[test]
    fn prefix_claims_follow_tahoe() {
        let verify = format!("URI:SSK-Verifier:3zuybt32gbkka6auscupso6swe:{FINGERPRINT}");
        assert!(Cap::parse(&format!("imm.{verify}")).is_ok());
        assert!(Cap::parse(&format!("ro.{verify}")).is_ok());
        assert_eq!(
            Cap::parse(&format!("imm.{}", ssk_ro(READ_KEY, FINGERPRINT))),
            Err(CapError::MutableCapMarkedImmutable {
                kind: CapKind::SdmfFileRead
            })
        );
        assert_eq!(
            Cap::parse(&format!("ro.URI:DIR2-MDMF:{READ_KEY}:{FINGERPRINT}")),
            Err(CapError::WriteCapMarkedReadOnly {
                kind: CapKind::MdmfDirectoryWrite
            })
        );
        // `imm.` also forbids writing, and Tahoe reports the immutability first.
        assert_eq!(
            Cap::parse(&format!("imm.URI:SSK:{READ_KEY}:{FINGERPRINT}")),
            Err(CapError::MutableCapMarkedImmutable {
                kind: CapKind::SdmfFileWrite
            })
        );
    }

    #[test]
    fn chk_numbers_must_fit_and_be_digits() {
        let chk = |size: &str| {
            Cap::parse(&format!(
                "URI:CHK:yj27gsxnavvnn2uo5ssbsl5b7y:{FINGERPRINT}:3:10:{size}"
            ))
        };
        assert!(chk("18446744073709551615").is_ok());
        assert!(matches!(
            chk("18446744073709551616"),
            Err(CapError::NumberTooLarge { .. })
        ));
        assert!(matches!(chk("+1"), Err(CapError::NotANumber { .. })));
        assert!(matches!(chk(""), Err(CapError::NotANumber { .. })));
    }

    #[test]
    fn hints_at_common_mistakes() {
        let hint = |text: &str| match Cap::parse(text) {
            Err(CapError::NotACap { hint }) => hint,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(hint(" URI:LIT:"), NotACapHint::LeadingWhitespace);
        assert_eq!(hint("uri:LIT:"), NotACapHint::LowerCaseUri);
        assert_eq!(hint("URI%3ALIT%3A"), NotACapHint::UrlEncoded);
        assert_eq!(
            hint("http://127.0.0.1:3456/uri/URI:LIT:"),
            NotACapHint::WebGatewayUrl
        );
        assert_eq!(hint("ro.ro.URI:LIT:"), NotACapHint::None);
    }

    #[test]
    fn missing_colon_after_a_known_kind_is_a_field_count_error() {
        assert_eq!(
            Cap::parse("URI:LIT"),
            Err(CapError::WrongFieldCount {
                kind: CapKind::LiteralFile,
                found: 0
            })
        );
        assert_eq!(
            Cap::parse("URI:SSK-RO:"),
            Err(CapError::WrongFieldCount {
                kind: CapKind::SdmfFileRead,
                found: 0
            })
        );
    }
}
