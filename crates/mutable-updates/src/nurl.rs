//! NURLs: how a Tahoe-LAFS storage server (and an updates server beside it) says where it is,
//! which certificate it holds and which secret opens it.
//!
//! Form: `pb://<hash>@<host>:<port>/<swissnum>#v=1`, where `<hash>` is the unpadded URL-safe
//! base64 of the SHA-256 of the server certificate's DER SubjectPublicKeyInfo and `<swissnum>`
//! is the shared secret sent as `Authorization: Tahoe-LAFS <standard base64 of the swissnum>`.
//!
//! The swissnum is a password: [`Swissnum`]'s `Debug` and `Display` redact it, parse errors
//! never quote it, and [`Nurl::redacted`] gives a form safe for logs. Only [`Nurl`]'s `Display`
//! (which must, to be useful) and [`Swissnum::expose_secret`] reveal it.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The scheme every NURL starts with (Foolscap's, kept by Tahoe's HTTP storage protocol).
const SCHEME: &str = "pb://";
/// The `Authorization` scheme of the Tahoe-LAFS HTTP storage protocol.
const AUTH_SCHEME: &str = "Tahoe-LAFS";

/// The shared secret of a NURL: whoever knows it may use the server.
///
/// It holds the swissnum's text exactly as it appears in the NURL (Tahoe makes it 32
/// characters of base32); the `Authorization` header carries the base64 of those bytes.
/// `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Swissnum(String);

impl Swissnum {
    /// Wraps a swissnum as it is, without checking it: for secrets read from a node's own
    /// files (`private/storage.furl`) or from configuration, which the caller vouches for.
    /// A swissnum holding `/`, `#` or other characters outside `A-Z a-z 0-9 - . _ ~` still
    /// authenticates, but a [`Nurl`] made with it renders text that [`Nurl::from_str`] refuses;
    /// use [`Swissnum::parse`] to check.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// Wraps a swissnum, checking that it can stand as the last path part of a NURL: non-empty
    /// and made only of URL-unreserved characters (`A-Z a-z 0-9 - . _ ~`).
    pub fn parse(text: impl Into<String>) -> Result<Self, NurlError> {
        let text = text.into();
        if text.is_empty() {
            return Err(NurlError::EmptySwissnum);
        }
        if !text.bytes().all(is_unreserved) {
            return Err(NurlError::BadSwissnum);
        }
        Ok(Self(text))
    }

    /// The secret's text. Do not log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The secret's bytes, as the `Authorization` header encodes them. Do not log them.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether `presented` equals this secret, in time that does not depend on where they
    /// differ (it does depend on the length, which is not secret: Tahoe's are all 32).
    pub fn ct_eq(&self, presented: &[u8]) -> bool {
        self.as_bytes().ct_eq(presented).into()
    }
}

impl fmt::Debug for Swissnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Swissnum(<redacted>)")
    }
}

impl fmt::Display for Swissnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Swissnum {
    type Err = NurlError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Why a string is not a NURL. Names the part that is wrong and never quotes the swissnum.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NurlError {
    /// It does not start with `pb://`.
    #[error("a NURL starts with \"pb://\"")]
    BadScheme,
    /// There is no `@` between the hash and the host.
    #[error("a NURL has the form pb://<hash>@<host>:<port>/<swissnum>#v=1; the \"@\" after the hash is missing")]
    MissingAt,
    /// The hash is not unpadded URL-safe base64.
    #[error("the NURL's certificate hash is not unpadded URL-safe base64")]
    BadHashEncoding,
    /// The hash decodes, but not to 32 bytes.
    #[error(
        "the NURL's certificate hash must be 32 bytes (43 base64 characters); it is {found} bytes"
    )]
    BadHashLength {
        /// Bytes found.
        found: usize,
    },
    /// No `/<swissnum>` after the host and port.
    #[error("the NURL has no \"/<swissnum>\" path after host and port")]
    MissingSwissnum,
    /// The host is empty or holds characters a host name cannot.
    #[error("the NURL's host is missing or invalid")]
    BadHost,
    /// A `[...]` host is not an IPv6 address.
    #[error("the NURL's bracketed host is not an IPv6 address")]
    BadIpv6Host,
    /// No `:<port>` after the host.
    #[error("the NURL has no \":<port>\" after the host")]
    MissingPort,
    /// The port is not a number from 1 to 65535.
    #[error("the NURL's port must be a number from 1 to 65535")]
    BadPort,
    /// The swissnum is empty.
    #[error("the NURL's swissnum is empty")]
    EmptySwissnum,
    /// The swissnum holds characters outside `A-Z a-z 0-9 - . _ ~` (it is not quoted: secret).
    #[error("the NURL's swissnum may hold only the characters A-Z a-z 0-9 - . _ ~")]
    BadSwissnum,
    /// No `#v=1` fragment.
    #[error("the NURL has no \"#v=1\" fragment")]
    MissingVersion,
    /// A `v=` fragment parameter other than 1.
    #[error("the NURL's version is not 1 (only \"#v=1\" is supported)")]
    UnsupportedVersion,
}

/// A parsed NURL: `pb://<hash>@<host>:<port>/<swissnum>#v=1`.
///
/// `host` is held without brackets (`::1`, not `[::1]`) so that it can be handed to a socket
/// connect as it is; rendering adds the brackets back. `Debug` redacts the swissnum; `Display`
/// renders the whole NURL **including the secret** (it is what one hands to a client), so use
/// [`Nurl::redacted`] for logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Nurl {
    /// SHA-256 over the DER SubjectPublicKeyInfo of the server's certificate.
    pub spki_hash: [u8; 32],
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    swissnum: Swissnum,
}

impl fmt::Debug for Nurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nurl")
            .field("spki_hash", &URL_SAFE_NO_PAD.encode(self.spki_hash))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("swissnum", &self.swissnum)
            .finish()
    }
}

impl Nurl {
    /// Assembles a NURL from its parts. `host` may be given with or without IPv6 brackets.
    pub fn new(
        spki_hash: [u8; 32],
        host: impl Into<String>,
        port: u16,
        swissnum: Swissnum,
    ) -> Self {
        let host = host.into();
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(inner) => inner.to_owned(),
            None => host,
        };
        Self {
            spki_hash,
            host,
            port,
            swissnum,
        }
    }

    /// The shared secret.
    pub fn swissnum(&self) -> &Swissnum {
        &self.swissnum
    }

    /// The same NURL on another port: how an updates server beside a storage node is named.
    pub fn with_port(&self, port: u16) -> Self {
        Self {
            port,
            ..self.clone()
        }
    }

    /// The hash as it appears in the NURL: unpadded URL-safe base64.
    pub fn spki_hash_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.spki_hash)
    }

    /// `host:port`, with brackets around an IPv6 host: the authority part of a URL.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The NURL with the swissnum replaced by `<redacted>`: safe for logs and error messages.
    pub fn redacted(&self) -> String {
        format!(
            "{SCHEME}{}@{}/<redacted>#v=1",
            self.spki_hash_base64(),
            self.authority()
        )
    }
}

/// Renders the full NURL, **secret included**. Use [`Nurl::redacted`] for anything logged.
/// Extra fragment parameters that parsing tolerated are not kept: it always ends in `#v=1`.
impl fmt::Display for Nurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}@{}/{}#v=1",
            self.spki_hash_base64(),
            self.authority(),
            self.swissnum.expose_secret()
        )
    }
}

impl FromStr for Nurl {
    type Err = NurlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text.strip_prefix(SCHEME).ok_or(NurlError::BadScheme)?;

        // The fragment first: it is the only part that may hold '#', '&' and '='.
        let (rest, fragment) = rest.split_once('#').ok_or(NurlError::MissingVersion)?;
        check_fragment(fragment)?;

        let (hash, rest) = rest.split_once('@').ok_or(NurlError::MissingAt)?;
        let spki_hash = parse_hash(hash)?;

        let (authority, swissnum) = rest.split_once('/').ok_or(NurlError::MissingSwissnum)?;
        let (host, port) = parse_authority(authority)?;
        let swissnum = Swissnum::parse(swissnum)?;

        Ok(Self {
            spki_hash,
            host,
            port,
            swissnum,
        })
    }
}

/// Requires `v=1` among `&`- or `;`-separated fragment parameters; ignores the others, which a
/// later version of the format may add.
fn check_fragment(fragment: &str) -> Result<(), NurlError> {
    let mut found = None;
    for param in fragment.split(['&', ';']) {
        if let Some(value) = param.strip_prefix("v=") {
            found = Some(value == "1");
        }
    }
    match found {
        Some(true) => Ok(()),
        Some(false) => Err(NurlError::UnsupportedVersion),
        None => Err(NurlError::MissingVersion),
    }
}

fn parse_hash(hash: &str) -> Result<[u8; 32], NurlError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(hash)
        .map_err(|_| NurlError::BadHashEncoding)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| NurlError::BadHashLength { found: bytes.len() })
}

fn parse_authority(authority: &str) -> Result<(String, u16), NurlError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']').ok_or(NurlError::BadIpv6Host)?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| NurlError::BadIpv6Host)?;
        let port = after.strip_prefix(':').ok_or(NurlError::MissingPort)?;
        (inner, port)
    } else {
        let (host, port) = authority.rsplit_once(':').ok_or(NurlError::MissingPort)?;
        // A bare IPv6 address (several colons) would be ambiguous: brackets are required.
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(NurlError::BadHost);
        }
        (host, port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NurlError::BadPort);
    }
    let port: u16 = port.parse().map_err(|_| NurlError::BadPort)?;
    if port == 0 {
        return Err(NurlError::BadPort);
    }
    Ok((host.to_owned(), port))
}

/// The `Authorization` header value for a swissnum: `Tahoe-LAFS <standard base64 of its bytes>`.
///
/// The value holds the secret in a reversible form: mark the header sensitive and never log it.
pub fn authorization_header_value(swissnum: &Swissnum) -> String {
    format!("{AUTH_SCHEME} {}", STANDARD.encode(swissnum.as_bytes()))
}

/// The secret bytes of an `Authorization: Tahoe-LAFS <base64>` header value, or `None` if the
/// value has another scheme or is not base64. The scheme is matched case-insensitively, as HTTP
/// auth schemes are; padding is optional. Compare the result with [`Swissnum::ct_eq`].
pub fn parse_authorization_header(value: &str) -> Option<Vec<u8>> {
    let value = value.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case(AUTH_SCHEME) {
        return None;
    }
    let encoded = encoded.trim();
    STANDARD.decode(encoded).ok().or_else(|| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded)
            .ok()
    })
}

/// Whether an `Authorization` header value carries exactly `expected`, compared in constant
/// time. A convenience for servers.
pub fn authorization_matches(value: &str, expected: &Swissnum) -> bool {
    parse_authorization_header(value).is_some_and(|presented| expected.ct_eq(&presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "pb://zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE@127.0.0.1:47002/ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy#v=1";
    const SECRET: &str = "ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy";

    fn with(part_old: &str, part_new: &str) -> String {
        EXAMPLE.replacen(part_old, part_new, 1)
    }

    #[test]
    fn example_round_trips() {
        let nurl: Nurl = EXAMPLE.parse().unwrap();
        assert_eq!(nurl.host, "127.0.0.1");
        assert_eq!(nurl.port, 47002);
        assert_eq!(nurl.swissnum().expose_secret(), SECRET);
        assert_eq!(
            nurl.spki_hash_base64(),
            "zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE"
        );
        assert_eq!(nurl.to_string(), EXAMPLE);
        assert_eq!(
            nurl.redacted(),
            "pb://zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE@127.0.0.1:47002/<redacted>#v=1"
        );
        let rebuilt = Nurl::new(nurl.spki_hash, "127.0.0.1", 47002, Swissnum::new(SECRET));
        assert_eq!(rebuilt, nurl);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let nurl: Nurl = EXAMPLE.parse().unwrap();
        let debug = format!("{nurl:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("redacted"));
        assert_eq!(format!("{}", nurl.swissnum()), "<redacted>");
        assert!(!format!("{:?}", nurl.swissnum()).contains(SECRET));
    }

    #[test]
    fn with_port_changes_only_the_port() {
        let nurl: Nurl = EXAMPLE.parse().unwrap();
        let other = nurl.with_port(47003);
        assert_eq!(other.port, 47003);
        assert_eq!(other.to_string(), EXAMPLE.replace("47002", "47003"));
    }

    #[test]
    fn ipv6_hosts() {
        let text = with("127.0.0.1", "[::1]");
        let nurl: Nurl = text.parse().unwrap();
        assert_eq!(nurl.host, "::1");
        assert_eq!(nurl.authority(), "[::1]:47002");
        assert_eq!(nurl.to_string(), text);
        assert_eq!(
            Nurl::new(nurl.spki_hash, "[::1]", 47002, nurl.swissnum().clone()),
            nurl
        );
        assert_eq!(
            with("127.0.0.1", "[::zz]").parse::<Nurl>(),
            Err(NurlError::BadIpv6Host)
        );
        assert_eq!(
            with("127.0.0.1", "[::1").parse::<Nurl>(),
            Err(NurlError::BadIpv6Host)
        );
        assert_eq!(
            with("127.0.0.1", "::1").parse::<Nurl>(),
            Err(NurlError::BadHost)
        );
    }

    #[test]
    fn host_names() {
        let nurl: Nurl = with("127.0.0.1", "storage-1.example.org").parse().unwrap();
        assert_eq!(nurl.host, "storage-1.example.org");
        assert_eq!(
            with("127.0.0.1", "").parse::<Nurl>(),
            Err(NurlError::BadHost)
        );
        assert_eq!(
            with("127.0.0.1", "a b").parse::<Nurl>(),
            Err(NurlError::BadHost)
        );
    }

    #[test]
    fn bad_hash() {
        // 42 characters decode to 31 bytes.
        let short = with(
            "zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE",
            "zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJP",
        );
        assert!(matches!(
            short.parse::<Nurl>(),
            Err(NurlError::BadHashEncoding | NurlError::BadHashLength { .. })
        ));
        let short = with(
            "zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE",
            "zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08z",
        );
        assert_eq!(
            short.parse::<Nurl>(),
            Err(NurlError::BadHashLength { found: 30 })
        );
        let padded = with(
            "zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE",
            "zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE=",
        );
        assert_eq!(padded.parse::<Nurl>(), Err(NurlError::BadHashEncoding));
        let standard = with("-", "+");
        assert_eq!(standard.parse::<Nurl>(), Err(NurlError::BadHashEncoding));
        assert_eq!(
            NurlError::BadHashLength { found: 29 }.to_string(),
            "the NURL's certificate hash must be 32 bytes (43 base64 characters); it is 29 bytes"
        );
    }

    #[test]
    fn bad_port() {
        for port in ["", "0", "65536", "-1", "+80", "80a", "99999999999999999999"] {
            assert_eq!(
                with("47002", port).parse::<Nurl>(),
                Err(NurlError::BadPort),
                "{port}"
            );
        }
        assert_eq!(
            with(":47002", "").parse::<Nurl>(),
            Err(NurlError::MissingPort)
        );
        assert_eq!(with("47002", "65535").parse::<Nurl>().unwrap().port, 65535);
    }

    #[test]
    fn fragment() {
        assert_eq!(
            with("#v=1", "").parse::<Nurl>(),
            Err(NurlError::MissingVersion)
        );
        assert_eq!(
            with("#v=1", "#").parse::<Nurl>(),
            Err(NurlError::MissingVersion)
        );
        assert_eq!(
            with("#v=1", "#v=2").parse::<Nurl>(),
            Err(NurlError::UnsupportedVersion)
        );
        let extra: Nurl = with("#v=1", "#v=1&x=y").parse().unwrap();
        assert_eq!(extra.to_string(), EXAMPLE, "extra parameters are dropped");
        assert!(with("#v=1", "#x=y;v=1").parse::<Nurl>().is_ok());
    }

    #[test]
    fn structure_errors_never_echo_the_secret() {
        let cases = [
            ("pb://", "http://", NurlError::BadScheme),
            ("@", "", NurlError::MissingAt),
            ("/ce3", "ce3", NurlError::MissingSwissnum),
            (SECRET, "", NurlError::EmptySwissnum),
            (
                SECRET,
                "ce3vpscmnqkoksnaaxq7/vpmhqgr4yqsy",
                NurlError::BadSwissnum,
            ),
            (
                SECRET,
                "ce3vpscmnqkok%20snaaxq7vpmhqgr4yqsy",
                NurlError::BadSwissnum,
            ),
        ];
        for (old, new, expected) in cases {
            let text = with(old, new);
            let err = text.parse::<Nurl>().unwrap_err();
            assert_eq!(err, expected, "{text}");
            assert!(!err.to_string().contains("ce3vpscmnqkok"), "{err}");
            assert!(!format!("{err:?}").contains("ce3vpscmnqkok"), "{err:?}");
        }
    }

    #[test]
    fn swissnum_checking() {
        assert_eq!(Swissnum::parse(""), Err(NurlError::EmptySwissnum));
        assert_eq!(Swissnum::parse("a/b"), Err(NurlError::BadSwissnum));
        assert_eq!(Swissnum::parse(SECRET).unwrap().expose_secret(), SECRET);
        // `new` takes the caller's word for it.
        assert_eq!(Swissnum::new("a/b").as_bytes(), b"a/b");
    }

    #[test]
    fn authorization_header() {
        let swissnum = Swissnum::new(SECRET);
        let value = authorization_header_value(&swissnum);
        assert_eq!(
            value,
            "Tahoe-LAFS Y2UzdnBzY21ucWtva3NuYWF4cTd2cG1ocWdyNHlxc3k="
        );
        assert_eq!(
            parse_authorization_header(&value).as_deref(),
            Some(SECRET.as_bytes())
        );
        assert_eq!(
            parse_authorization_header("tahoe-lafs Y2UzdnBzY21ucWtva3NuYWF4cTd2cG1ocWdyNHlxc3k")
                .as_deref(),
            Some(SECRET.as_bytes())
        );
        assert!(authorization_matches(&value, &swissnum));
        assert!(!authorization_matches(&value, &Swissnum::new("other")));
        assert_eq!(parse_authorization_header("Bearer abc"), None);
        assert_eq!(parse_authorization_header("Tahoe-LAFS !!!"), None);
        assert_eq!(parse_authorization_header("Tahoe-LAFS"), None);
        assert_eq!(parse_authorization_header(""), None);
    }
}
