//! The parser targets kept from the in-tree fuzzer: caps, base32, wire messages, NURLs, SPKI,
//! share headers and news files. Each `check_*` returns the property it found broken; `run`
//! turns that into the panic AFL++ counts as a crash.

use std::str::FromStr;

use mutable_updates::message::{ClientMessage, ErrorCode, ServerMessage};
use mutable_updates::nurl::{authorization_header_value, parse_authorization_header, Nurl};
use mutable_updates::pinning::{spki_der, spki_sha256};
use notifier_core::news::{parse_message, render_message, NewsDraft, MAX_TITLE_CHARS};
use tahoe_caps::{base32, Cap, CapRole};
use updates_server::share::{
    parse_share_header, MutableFormat, ShareError, ShareHeader, DATA_OFFSET, MUTABLE_HEADER_LEN,
    MUTABLE_MAGIC_V1, MUTABLE_MAGIC_V2,
};

use crate::Target;

/// What a check found: `Err` names the property that does not hold.
pub(crate) type Outcome = Result<(), String>;

/// Longest error message a parser may produce for any input: errors quote at most a little of
/// the peer's text, so a hostile input cannot make logs or error replies as large as itself.
pub(crate) const MAX_ERROR_LEN: usize = 4096;

/// Runs a check and panics with its finding.
macro_rules! target {
    ($name:literal, $description:literal, $check:path, $max_len:expr) => {
        Target {
            name: $name,
            description: $description,
            run: |input| {
                if let Err(problem) = $check(input) {
                    $crate::violated($name, problem)
                }
            },
            max_len: $max_len,
        }
    };
}
pub(crate) use target;

pub(crate) fn targets() -> Vec<Target> {
    vec![
        target!(
            "caps",
            "tahoe_caps::Cap::from_str: round trip, read_only/verify_cap round trip with the same SI, no key material in errors or Debug",
            check_cap,
            4096
        ),
        target!(
            "base32",
            "tahoe_caps::base32 decode/encode: canonical round trip both ways, encoded_len exact",
            check_base32,
            1024
        ),
        target!(
            "client-message",
            "mutable_updates ClientMessage::parse: round trip, bounded errors",
            check_client_message,
            64 * 1024
        ),
        target!(
            "server-message",
            "mutable_updates ServerMessage::parse: round trip, bounded errors",
            check_server_message,
            64 * 1024
        ),
        target!(
            "nurl",
            "mutable_updates Nurl::from_str and the Authorization header: round trip, swissnum never in errors, Debug or redacted()",
            check_nurl,
            4096
        ),
        target!(
            "spki",
            "mutable_updates pinning::spki_der (DER certificate reader): the SPKI lies inside the input, spki_sha256 agrees",
            check_spki,
            8192
        ),
        target!(
            "share-header",
            "updates_server::share::parse_share_header: the seqnum is exactly the header's, never guessed",
            check_share_header,
            2048
        ),
        target!(
            "news",
            "notifier_core::news::parse_message: clean titles, render/parse round trip",
            check_news,
            80 * 1024
        ),
    ]
}

fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}

pub(crate) fn violation(message: impl Into<String>) -> Outcome {
    Err(message.into())
}

// ---- caps ------------------------------------------------------------------------------------

/// `:`-separated fields that look like key material: base32 (Tahoe's lower-case alphabet), and
/// long enough (16 bytes are 26 characters; from 16 characters on a field is treated as secret).
fn secret_looking_fields(text: &str) -> impl Iterator<Item = &str> {
    // The first two fields are `URI` and the kind, which errors may name.
    text.split(':').skip(2).filter(|field| {
        field.len() >= 16
            && field
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

/// The kind field of a would-be cap: after the first `URI:`, up to the next `:`.
fn unknown_kind_field(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once("URI:")?;
    Some(rest.split_once(':').map_or(rest, |(kind, _)| kind))
}

fn check_cap(input: &[u8]) -> Outcome {
    let text = text(input);
    match Cap::from_str(&text) {
        Ok(cap) => {
            let canonical = cap.to_string();
            match Cap::from_str(&canonical) {
                Ok(again) if again == cap => {}
                Ok(_) => return violation("cap: parse(to_string(cap)) differs from cap"),
                Err(e) => {
                    return violation(format!("cap: its own canonical form does not parse: {e}"))
                }
            }
            // The read key of a read-cap, the write key of a write-cap: never in Debug output.
            let debug = format!("{cap:?}");
            let secret =
                matches!(cap.role(), CapRole::Write | CapRole::Read) && !canonical.contains("LIT:");
            if secret {
                if let Some(key) = canonical.split(':').nth(2) {
                    if debug.contains(key) {
                        return violation("cap: Debug shows the key");
                    }
                }
            }
            // Derivations must not panic and must stay parseable.
            let read_only = cap.read_only();
            if Cap::from_str(&read_only.to_string()).ok() != Some(read_only.clone()) {
                return violation("cap: read_only() does not round-trip");
            }
            if let Some(verify) = cap.verify_cap() {
                if Cap::from_str(&verify.to_string()).ok() != Some(verify.clone()) {
                    return violation("cap: verify_cap() does not round-trip");
                }
                if verify.storage_index() != cap.storage_index() {
                    return violation("cap: verify_cap() has another storage index");
                }
            }
            let _ = cap.chk_parameters();
            Ok(())
        }
        Err(error) => {
            let mut message = error.to_string();
            let mut debug = format!("{error:?}");
            // An unknown kind is named in the error by design when it is short and looks like a
            // kind name (tahoe-caps' is_safe_kind_name, at most 20 characters: never a whole
            // 26-character key). Its letters may also occur in a later field; that field is then
            // not what the error quotes.
            if let Some(kind) = unknown_kind_field(&text) {
                let quoted = format!("`URI:{kind}:`");
                if message.contains(&quoted) {
                    if kind.len() > 20 {
                        return violation(format!(
                            "cap: error names a kind of {} chars",
                            kind.len()
                        ));
                    }
                    message = message.replace(&quoted, "`URI:<kind>:`");
                    debug = debug.replace(&format!("{kind:?}"), "<kind>");
                }
            }
            for field in secret_looking_fields(&text) {
                if message.contains(field) || debug.contains(field) {
                    return violation(format!(
                        "cap: error quotes a key-sized field of the input: {message}"
                    ));
                }
            }
            if message.len() > MAX_ERROR_LEN {
                return violation("cap: error message longer than 4 KiB");
            }
            Ok(())
        }
    }
}

// ---- base32 ----------------------------------------------------------------------------------

fn check_base32(input: &[u8]) -> Outcome {
    // Any bytes encode, and decode back to themselves.
    let encoded = base32::encode(input);
    if encoded.len() != base32::encoded_len(input.len()) {
        return violation("base32: encode's length is not encoded_len");
    }
    match base32::decode(&encoded) {
        Ok(decoded) if decoded == input => {}
        Ok(_) => return violation("base32: decode(encode(x)) != x"),
        Err(e) => return violation(format!("base32: own encoding does not decode: {e}")),
    }
    // Any text that decodes is the one canonical encoding of what it decodes to.
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(());
    };
    match base32::decode(text) {
        Ok(decoded) if base32::encode(&decoded) == text => Ok(()),
        Ok(_) => violation("base32: a non-canonical text decodes"),
        Err(e) if e.to_string().len() > 200 => violation("base32: error longer than 200 bytes"),
        Err(_) => Ok(()),
    }
}

// ---- protocol messages -----------------------------------------------------------------------

fn check_client_message(input: &[u8]) -> Outcome {
    let text = text(input);
    match ClientMessage::parse(&text) {
        Ok(message) => {
            let wire = message.to_json();
            match ClientMessage::parse(&wire) {
                Ok(again) if again == message => {}
                Ok(again) => {
                    return violation(format!(
                        "client message: round trip differs: {message:?} became {again:?}"
                    ))
                }
                Err(e) => {
                    return violation(format!(
                        "client message: own rendering does not parse: {}",
                        e.message()
                    ))
                }
            }
            Ok(())
        }
        Err(error) => check_message_error("client message", &error.code(), error.message()),
    }
}

fn check_message_error(what: &str, code: &ErrorCode, message: &str) -> Outcome {
    // A message that does not parse is refused with one of the three codes of the spec.
    if !matches!(
        code,
        ErrorCode::MalformedMessage | ErrorCode::UnsupportedVersion | ErrorCode::UnknownMessage
    ) {
        return violation(format!("{what}: parse error with code {code}"));
    }
    if message.len() > MAX_ERROR_LEN {
        return violation(format!(
            "{what}: error message of {} bytes (over 4 KiB)",
            message.len()
        ));
    }
    Ok(())
}

fn check_server_message(input: &[u8]) -> Outcome {
    let text = text(input);
    match ServerMessage::parse(&text) {
        Ok(message) => {
            let wire = message.to_json();
            match ServerMessage::parse(&wire) {
                Ok(again) if again == message => {}
                Ok(again) => {
                    return violation(format!(
                        "server message: round trip differs: {message:?} became {again:?}"
                    ))
                }
                Err(e) => {
                    return violation(format!(
                        "server message: own rendering does not parse: {}",
                        e.message()
                    ))
                }
            }
            Ok(())
        }
        Err(error) => check_message_error("server message", &error.code(), error.message()),
    }
}

// ---- NURL ------------------------------------------------------------------------------------

/// The swissnum-looking part of a would-be NURL: after the first `/` behind the `@`, before `#`.
fn presented_swissnum(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("pb://")?;
    let before_fragment = rest.split_once('#').map_or(rest, |(head, _)| head);
    let (_, after_at) = before_fragment.split_once('@')?;
    let (_, swissnum) = after_at.split_once('/')?;
    Some(swissnum)
}

fn check_nurl(input: &[u8]) -> Outcome {
    let text = text(input);
    // The Authorization header parser sees whatever a client sends: it must not panic.
    let _ = parse_authorization_header(&text);
    match Nurl::from_str(&text) {
        Ok(nurl) => {
            match Nurl::from_str(&nurl.to_string()) {
                Ok(again) if again == nurl => {}
                Ok(_) => return violation("nurl: round trip differs"),
                Err(e) => return violation(format!("nurl: own rendering does not parse: {e}")),
            }
            let secret = nurl.swissnum().expose_secret();
            // A secret short enough to occur by chance in the host or hash proves nothing.
            let public = format!("{}{}", nurl.spki_hash_base64(), nurl.authority());
            // Nor does one that is a word of the Debug template (`swissnum`, `redacted`).
            let template = "Nurl { spki_hash: host: port: swissnum: Swissnum(<redacted>) }";
            if secret.len() >= 8 && !public.contains(secret) && !template.contains(secret) {
                if format!("{nurl:?}").contains(secret) {
                    return violation("nurl: Debug shows the swissnum");
                }
                if nurl.redacted().contains(secret) {
                    return violation("nurl: redacted() shows the swissnum");
                }
            }
            let value = authorization_header_value(nurl.swissnum());
            if parse_authorization_header(&value).as_deref() != Some(nurl.swissnum().as_bytes()) {
                return violation("nurl: the Authorization header does not round-trip");
            }
            Ok(())
        }
        Err(error) => {
            let message = error.to_string();
            if let Some(secret) = presented_swissnum(&text) {
                if secret.len() >= 8 && message.contains(secret) {
                    return violation("nurl: error quotes the swissnum");
                }
            }
            Ok(())
        }
    }
}

// ---- SPKI ------------------------------------------------------------------------------------

fn check_spki(input: &[u8]) -> Outcome {
    match spki_der(input) {
        Ok(spki) => {
            // The SPKI must be a piece of the certificate, not something made up.
            let inside = input
                .windows(spki.len().max(1))
                .any(|window| window == spki)
                || spki.is_empty();
            if !inside {
                return violation("spki: the SPKI is not a part of the input");
            }
            if spki_sha256(input).is_err() {
                return violation("spki: spki_der succeeds but spki_sha256 fails");
            }
            Ok(())
        }
        Err(error) => {
            let message = error.to_string();
            if message.len() > MAX_ERROR_LEN {
                return violation("spki: error message longer than 4 KiB");
            }
            Ok(())
        }
    }
}

// ---- share headers ---------------------------------------------------------------------------

fn be_u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let word: [u8; 8] = bytes.get(offset..offset + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(word))
}

fn check_share_header(input: &[u8]) -> Outcome {
    match parse_share_header(input) {
        Ok(ShareHeader::Mutable {
            container_version,
            format,
            seqnum,
        }) => {
            if input.len() < MUTABLE_HEADER_LEN {
                return violation("share: a seqnum from a header shorter than 477 bytes");
            }
            let magic = match container_version {
                1 => MUTABLE_MAGIC_V1,
                2 => MUTABLE_MAGIC_V2,
                _ => return violation("share: container version neither 1 nor 2"),
            };
            if !input.starts_with(magic) {
                return violation("share: container version does not match the magic");
            }
            if be_u64_at(input, DATA_OFFSET + 1) != Some(seqnum) || seqnum == 0 {
                return violation("share: seqnum is not the header's bytes 469..477");
            }
            let expected_format = match input[DATA_OFFSET] {
                0 => MutableFormat::Sdmf,
                1 => MutableFormat::Mdmf,
                _ => return violation("share: unknown format byte accepted"),
            };
            if format != expected_format {
                return violation("share: format does not match the format byte");
            }
            if be_u64_at(input, 84).is_none_or(|length| length < 9) {
                return violation("share: a seqnum from a container with no share data");
            }
            Ok(())
        }
        Ok(ShareHeader::Immutable { version }) => {
            let first: Option<[u8; 4]> = input.get(..4).and_then(|head| head.try_into().ok());
            if first.map(u32::from_be_bytes) != Some(version) || !(1..=2).contains(&version) {
                return violation("share: immutable version is not the first four bytes");
            }
            Ok(())
        }
        Err(error) => {
            let message = error.to_string();
            if message.len() > 512 {
                return violation(format!(
                    "share: error message of {} bytes for a {}-byte header",
                    message.len(),
                    input.len()
                ));
            }
            // Parsing bytes in memory has no I/O to fail.
            if matches!(error, ShareError::Io { .. }) {
                return violation("share: an I/O error from parsing bytes");
            }
            Ok(())
        }
    }
}

// ---- news ------------------------------------------------------------------------------------

fn check_news(input: &[u8]) -> Outcome {
    const NAME: &str = "2024-05-01T12:00:00.000000.txt";
    match parse_message(NAME, input) {
        Ok(message) => {
            if let Some(title) = &message.title {
                if title.chars().any(char::is_control) {
                    return violation("news: title holds control characters");
                }
                if title.chars().count() > MAX_TITLE_CHARS {
                    return violation("news: title longer than the limit");
                }
            }
            if message
                .body
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
            {
                return violation("news: body holds control characters");
            }
            let heading = message.heading();
            if heading.chars().any(char::is_control) {
                return violation("news: heading holds control characters");
            }
            // What we read, published again, reads back the same.
            let draft = NewsDraft {
                title: message.title.clone(),
                severity: message.severity,
                expires: message.expires,
                body: message.body.clone(),
            };
            if let Ok(rendered) = render_message(&draft) {
                match parse_message(NAME, rendered.as_bytes()) {
                    Ok(again) => {
                        if again.title != message.title
                            || again.severity != message.severity
                            || again.expires != message.expires
                            || again.body != message.body
                        {
                            return violation(format!(
                                "news: render/parse round trip differs: {:?} became {:?}",
                                draft,
                                (again.title, again.severity, again.expires, again.body)
                            ));
                        }
                    }
                    Err(e) => return violation(format!("news: own rendering does not parse: {e}")),
                }
            }
            Ok(())
        }
        Err(_) => Ok(()),
    }
}
