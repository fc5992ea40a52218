//! The mutable-updates v1 protocol: how a Tahoe-LAFS storage server tells its clients that a
//! mutable file or directory changed, instead of making them poll.
//!
//! A client opens a WebSocket to `/v1/mutable_updates` on an updates server that runs beside a
//! storage node, subscribes to the *storage indexes* of the slots it cares about (public,
//! derived from caps without revealing them), and gets one `update` message per new version,
//! with the slot's sequence number. The full contract is `shared/spec/mutable-updates-v1.md`;
//! this crate is the code both sides share:
//!
//! - [`message`]: every JSON message in both directions, strict parsing with precise,
//!   code-prefixed errors (`malformed-message`, `unsupported-version`, `unknown-message`), and
//!   rendering that keeps the order of status entries.
//! - [`nurl`]: `pb://<spki-hash>@<host>:<port>/<swissnum>#v=1`, the address-plus-credentials a
//!   Tahoe storage server announces, and the `Authorization: Tahoe-LAFS <base64>` header built
//!   from its secret swissnum. The swissnum is redacted from every `Debug`, error and log line.
//! - [`pinning`]: TLS without certificate authorities: the client accepts exactly the
//!   certificate whose SubjectPublicKeyInfo hashes to the NURL's pin, and servers load Tahoe's
//!   `node.pem`. Always the *ring* provider, never a process default.
//! - [`client`]: `connect(&nurl, PATH)` — TCP, pinned TLS, authenticated WebSocket upgrade.
//! - [`proof`]: verifying a slot's seqnum without trusting the server: a mutable share's signed
//!   prefix, Tahoe's RSA-PSS signature over it and the verification key, checked against the
//!   cap's fingerprint (pure; real Tahoe 1.20 shares as test fixtures).
//!
//! ```
//! use mutable_updates::{ClientMessage, ServerMessage, Status, SubscriptionStatus, ErrorCode, Nurl};
//! use tahoe_caps::StorageIndex;
//!
//! // A client subscribes...
//! let si: StorageIndex = "3zuybt32gbkka6auscupso6swe".parse().unwrap();
//! let wire = ClientMessage::subscribe([si]).to_json();
//! assert_eq!(
//!     wire,
//!     r#"{"tahoe-mutable-notification-version":1,"subscribe":["3zuybt32gbkka6auscupso6swe"]}"#
//! );
//!
//! // ...the server parses it and answers with one status entry per requested index.
//! let ClientMessage::Subscribe(request) = ClientMessage::parse(&wire).unwrap() else { unreachable!() };
//! let mut status = Status::new();
//! for index in &request.storage_indexes {
//!     match index.parsed {
//!         Ok(_) => status.push(index.raw.clone(), SubscriptionStatus::Subscribed),
//!         Err(e) => status.push(
//!             index.raw.clone(),
//!             SubscriptionStatus::refused(ErrorCode::MalformedStorageIndex, e.to_string()),
//!         ),
//!     }
//! }
//! status.push_seqnum(si.to_base32(), 7);
//! let reply = ServerMessage::Status(status).to_json();
//! assert!(reply.contains(r#""seqnum":{"3zuybt32gbkka6auscupso6swe":7}"#));
//!
//! // A message that cannot be acted on gets an error reply and the connection stays open.
//! let bad = ClientMessage::parse(r#"{"tahoe-mutable-notification-version": 1, "subscribe": [1]}"#)
//!     .unwrap_err();
//! assert_eq!(
//!     bad.to_string(),
//!     "malformed-message: subscribe must be a list of storage-index strings; item 0 is a number"
//! );
//!
//! // NURLs print their secret only through Display; logs use `redacted()`.
//! let nurl: Nurl = "pb://zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE@127.0.0.1:47002/ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy#v=1"
//!     .parse()
//!     .unwrap();
//! assert!(nurl.redacted().ends_with("/<redacted>#v=1"));
//! assert!(!format!("{nurl:?}").contains("ce3vpscm"));
//! ```

pub mod client;
pub mod message;
pub mod nurl;
pub mod pinning;
pub mod proof;

pub use client::{connect, connect_insecure_loopback, ConnectError};
pub use message::{
    BatchedUpdates, ClientMessage, ErrorCode, MessageError, ProtocolError, RequestedIndex,
    ServerMessage, Status, Subscribe, SubscriptionStatus, Unsubscribe, Update, PROTOCOL_VERSION,
    VERSION_FIELD,
};
pub use nurl::{authorization_header_value, parse_authorization_header, Nurl, NurlError, Swissnum};
pub use pinning::{
    pinned_client_config, server_config_from_pem, spki_hash_of_pem, spki_sha256, CertificateError,
    TlsSetupError,
};
pub use proof::{Freshness, ProofError, ShareError, SlotProof, VerificationKey, VerifiedSlot};
