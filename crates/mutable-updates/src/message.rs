//! The JSON messages of the mutable-updates v1 protocol, both directions.
//!
//! Every message is one JSON object in one WebSocket text frame, and carries
//! `"tahoe-mutable-notification-version": 1`. Clients send [`ClientMessage`]s (`subscribe`,
//! `unsubscribe`); servers send [`ServerMessage`]s (`status`, `update`, batched `updates`,
//! `error`).
//!
//! Parsing is strict about what it needs and ignores every field it does not know, so that a
//! newer peer's additions never break an older one. A message that cannot be acted on at all
//! yields a [`MessageError`] whose [`ErrorCode`] is `malformed-message`, `unsupported-version` or
//! `unknown-message`; a server answers it with [`MessageError::to_protocol_error`] and keeps the
//! connection. A malformed storage index inside an otherwise valid `subscribe` list is *not* a
//! message error: it is kept in [`RequestedIndex::parsed`] and answered per index.
//!
//! Rendering is done by hand rather than through `serde_json::to_string` so that it cannot fail,
//! keeps the field order of the spec (version first) and keeps the order of status entries
//! (serde_json's own map type sorts keys).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use tahoe_caps::{StorageIndex, StorageIndexError};
use thiserror::Error;

use crate::proof::SlotProof;

/// The field that every message carries, with [`PROTOCOL_VERSION`] as its value.
pub const VERSION_FIELD: &str = "tahoe-mutable-notification-version";

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// How many characters of a peer's text an error message quotes at most, so that a hostile
/// peer cannot make our errors (and logs) as large as its message.
const QUOTE_LIMIT: usize = 64;

// ---------------------------------------------------------------------------------------------
// Error codes and errors
// ---------------------------------------------------------------------------------------------

/// A stable, machine-readable error code: the part of an error string before `": "`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `malformed-storage-index`: a requested storage index is not 26 characters of base32.
    MalformedStorageIndex,
    /// `not-found`: this server holds no share of that slot.
    NotFound,
    /// `not-mutable`: the storage index names immutable shares, which never change.
    NotMutable,
    /// `too-many-subscriptions`: the connection's subscription limit is reached.
    TooManySubscriptions,
    /// `internal`: the server failed for a reason of its own.
    Internal,
    /// `malformed-message`: not JSON, not an object, or a field of the wrong shape.
    MalformedMessage,
    /// `unsupported-version`: the version field is missing or not 1.
    UnsupportedVersion,
    /// `unknown-message`: the message is none of the kinds this peer knows.
    UnknownMessage,
    /// A code this crate does not know, as a newer peer may send. Kept verbatim.
    Other(String),
}

impl ErrorCode {
    /// The code as it appears on the wire, e.g. `"malformed-storage-index"`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::MalformedStorageIndex => "malformed-storage-index",
            Self::NotFound => "not-found",
            Self::NotMutable => "not-mutable",
            Self::TooManySubscriptions => "too-many-subscriptions",
            Self::Internal => "internal",
            Self::MalformedMessage => "malformed-message",
            Self::UnsupportedVersion => "unsupported-version",
            Self::UnknownMessage => "unknown-message",
            Self::Other(code) => code,
        }
    }

    /// The code for a wire string; never fails: unknown codes become [`ErrorCode::Other`].
    pub fn from_wire(code: &str) -> Self {
        match code {
            "malformed-storage-index" => Self::MalformedStorageIndex,
            "not-found" => Self::NotFound,
            "not-mutable" => Self::NotMutable,
            "too-many-subscriptions" => Self::TooManySubscriptions,
            "internal" => Self::Internal,
            "malformed-message" => Self::MalformedMessage,
            "unsupported-version" => Self::UnsupportedVersion,
            "unknown-message" => Self::UnknownMessage,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = std::convert::Infallible;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_wire(code))
    }
}

/// Splits an error string `"<code>: <message>"` at its first colon.
///
/// Lenient on purpose: a peer that leaves out the space, or the message, still yields its code.
fn split_error_text(text: &str) -> (ErrorCode, String) {
    match text.split_once(':') {
        Some((code, rest)) => (
            ErrorCode::from_wire(code.trim()),
            rest.strip_prefix(' ').unwrap_or(rest).to_owned(),
        ),
        None => (ErrorCode::from_wire(text.trim()), String::new()),
    }
}

/// An error as the protocol carries it: a code and a human message, written `"<code>: <message>"`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// The human-readable explanation.
    pub message: String,
}

impl ProtocolError {
    /// A protocol error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Reads the wire form `"<code>: <message>"`.
    pub fn from_wire(text: &str) -> Self {
        let (code, message) = split_error_text(text);
        Self { code, message }
    }

    /// The wire form `"<code>: <message>"`.
    pub fn to_wire(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

/// Why a message could not be acted on at all.
///
/// Its [`code`](Self::code) is one of `malformed-message`, `unsupported-version` or
/// `unknown-message`; its `Display` is `"<code>: <human message>"`, ready to send back as an
/// `error` message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code}: {message}")]
pub struct MessageError {
    code: ErrorCode,
    message: String,
}

impl MessageError {
    fn malformed(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::MalformedMessage,
            message: message.into(),
        }
    }

    fn unsupported(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::UnsupportedVersion,
            message: message.into(),
        }
    }

    fn unknown(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::UnknownMessage,
            message: message.into(),
        }
    }

    /// `MalformedMessage`, `UnsupportedVersion` or `UnknownMessage`.
    pub fn code(&self) -> ErrorCode {
        self.code.clone()
    }

    /// The human part of the error, without the code.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `error` payload to send back to the peer.
    pub fn to_protocol_error(&self) -> ProtocolError {
        ProtocolError::new(self.code.clone(), self.message.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Client messages
// ---------------------------------------------------------------------------------------------

/// One storage index as a client wrote it in a request.
///
/// The raw text is kept because the server's `status` reply is keyed by exactly the text the
/// client sent, including text that is not a storage index at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedIndex {
    /// The string as it appeared in the request.
    pub raw: String,
    /// The storage index it names, or why it names none (→ `malformed-storage-index`).
    pub parsed: Result<StorageIndex, StorageIndexError>,
}

impl RequestedIndex {
    /// Parses `raw`, keeping it whatever the outcome.
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let parsed = raw.parse();
        Self { raw, parsed }
    }

    /// The storage index, if the text was one.
    pub fn storage_index(&self) -> Option<StorageIndex> {
        self.parsed.as_ref().ok().copied()
    }
}

impl From<StorageIndex> for RequestedIndex {
    fn from(si: StorageIndex) -> Self {
        Self {
            raw: si.to_base32(),
            parsed: Ok(si),
        }
    }
}

/// `{"subscribe": [...], "options": {"maximum-delay": <ms>}}`: start hearing about these slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The requested storage indexes, in request order, duplicates included.
    pub storage_indexes: Vec<RequestedIndex>,
    /// `options.maximum-delay`: ask for batched `updates` at most this long after the first
    /// change of a batch. Carried in whole milliseconds; sub-millisecond parts are dropped.
    pub maximum_delay: Option<Duration>,
    /// **extension** `options.proofs`: ask for a slot proof of each subscribed index in the
    /// status and in every later update of it, so that the client can verify the seqnums.
    pub proofs: Option<ProofRequest>,
}

/// `{"unsubscribe": [...]}`: stop hearing about these slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The storage indexes to drop, in request order.
    pub storage_indexes: Vec<RequestedIndex>,
}

/// A message from a client to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Start hearing about slots; answered by one `status`.
    Subscribe(Subscribe),
    /// Stop hearing about slots; answered by one `status`.
    Unsubscribe(Unsubscribe),
}

impl ClientMessage {
    /// A `subscribe` for these storage indexes, without options.
    pub fn subscribe(sis: impl IntoIterator<Item = StorageIndex>) -> Self {
        Self::Subscribe(Subscribe {
            storage_indexes: sis.into_iter().map(RequestedIndex::from).collect(),
            maximum_delay: None,
            proofs: None,
        })
    }

    /// A `subscribe` that also asks for slot proofs, with or without the verification keys.
    pub fn subscribe_with_proofs(
        sis: impl IntoIterator<Item = StorageIndex>,
        proofs: ProofRequest,
    ) -> Self {
        Self::Subscribe(Subscribe {
            storage_indexes: sis.into_iter().map(RequestedIndex::from).collect(),
            maximum_delay: None,
            proofs: Some(proofs),
        })
    }

    /// A `subscribe` that also asks for batched updates, at most `maximum_delay` late.
    pub fn subscribe_batched(
        sis: impl IntoIterator<Item = StorageIndex>,
        maximum_delay: Duration,
    ) -> Self {
        Self::Subscribe(Subscribe {
            storage_indexes: sis.into_iter().map(RequestedIndex::from).collect(),
            maximum_delay: Some(maximum_delay),
            proofs: None,
        })
    }

    /// An `unsubscribe` for these storage indexes.
    pub fn unsubscribe(sis: impl IntoIterator<Item = StorageIndex>) -> Self {
        Self::Unsubscribe(Unsubscribe {
            storage_indexes: sis.into_iter().map(RequestedIndex::from).collect(),
        })
    }

    /// Parses one client message (what a server receives).
    ///
    /// Items of a list are counted from 0 in error messages, as in JSON Pointer.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let envelope = parse_envelope(text, Side::Client)?;
        check_version(envelope.version.as_ref())?;
        match (envelope.subscribe, envelope.unsubscribe) {
            (Some(_), Some(_)) => Err(MessageError::malformed(
                "a message carries \"subscribe\" or \"unsubscribe\", not both",
            )),
            (Some(list), None) => {
                let (maximum_delay, proofs) = parse_options(envelope.options)?;
                Ok(Self::Subscribe(Subscribe {
                    storage_indexes: requested_list("subscribe", list)?,
                    maximum_delay,
                    proofs,
                }))
            }
            (None, Some(list)) => Ok(Self::Unsubscribe(Unsubscribe {
                storage_indexes: requested_list("unsubscribe", list)?,
            })),
            (None, None) => Err(MessageError::unknown(
                "a client message must carry \"subscribe\" or \"unsubscribe\"",
            )),
        }
    }

    /// The wire form of this message.
    pub fn to_json(&self) -> String {
        let (field, list) = match self {
            Self::Subscribe(s) => ("subscribe", &s.storage_indexes),
            Self::Unsubscribe(u) => ("unsubscribe", &u.storage_indexes),
        };
        let mut out = String::with_capacity(64 + list.len() * 29);
        start_message(&mut out);
        out.push(',');
        push_json_string(&mut out, field);
        out.push_str(":[");
        for (i, item) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, &item.raw);
        }
        out.push(']');
        if let Self::Subscribe(Subscribe {
            maximum_delay,
            proofs,
            ..
        }) = self
        {
            let mut options = Vec::new();
            if let Some(delay) = maximum_delay {
                let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                let mut text = String::from("\"maximum-delay\":");
                push_u64(&mut text, millis);
                options.push(text);
            }
            if let Some(proofs) = proofs {
                options.push(format!("\"proofs\":\"{}\"", proofs.as_str()));
            }
            if !options.is_empty() {
                out.push_str(",\"options\":{");
                out.push_str(&options.join(","));
                out.push('}');
            }
        }
        out.push('}');
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Server messages
// ---------------------------------------------------------------------------------------------

/// The outcome for one storage index of a `subscribe` or `unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// JSON `true`: subscribed (or, for `unsubscribe`, removed or never held).
    Subscribed,
    /// JSON `"<code>: <message>"`: refused, and why.
    Refused {
        /// The machine-readable reason.
        code: ErrorCode,
        /// The human-readable reason.
        message: String,
    },
}

impl SubscriptionStatus {
    /// A refusal with this code and message.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    /// Whether the index is subscribed.
    pub fn is_subscribed(&self) -> bool {
        matches!(self, Self::Subscribed)
    }
}

/// `{"status": {...}, "seqnum": {...}}`: the answer to one `subscribe` or `unsubscribe`.
///
/// Both are JSON objects keyed by the raw storage-index text of the request. Entries render in
/// the order they are held. Several entries with one key (a request may name an index twice)
/// collapse to one: at the first one's place, with the last one's value, as a map insert would.
/// [`push`](Self::push) is O(1) and leaves collapsing to rendering, so that building a status
/// for a huge request stays linear.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// One outcome per requested index.
    pub entries: Vec<(String, SubscriptionStatus)>,
    /// **extension**: the current seqnum of each subscribed index.
    pub seqnums: Vec<(String, u64)>,
    /// **extension** `proofs`: a slot proof of each subscribed index's current version, when
    /// the subscribe asked for them.
    pub proofs: Vec<(String, SlotProof)>,
    /// **extension** `subscribers`: for popular slots only, about how many connections hold
    /// each index on this server ([`Update::subscribers`]).
    pub subscribers: Vec<(String, u64)>,
}

impl Status {
    /// An empty status.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the outcome for one requested index.
    pub fn push(&mut self, raw_index: impl Into<String>, status: SubscriptionStatus) {
        self.entries.push((raw_index.into(), status));
    }

    /// Adds the current seqnum of one index.
    pub fn push_seqnum(&mut self, raw_index: impl Into<String>, seqnum: u64) {
        self.seqnums.push((raw_index.into(), seqnum));
    }

    /// Adds the proof of one index's current version.
    pub fn push_proof(&mut self, raw_index: impl Into<String>, proof: SlotProof) {
        self.proofs.push((raw_index.into(), proof));
    }

    /// Adds how many connections hold one popular index.
    pub fn push_subscribers(&mut self, raw_index: impl Into<String>, subscribers: u64) {
        self.subscribers.push((raw_index.into(), subscribers));
    }

    /// How many connections hold `raw_index`, when the server said (popular slots only).
    pub fn subscribers(&self, raw_index: &str) -> Option<u64> {
        self.subscribers
            .iter()
            .rev()
            .find(|(key, _)| key == raw_index)
            .map(|(_, n)| *n)
    }

    /// The proof sent for `raw_index`.
    pub fn proof(&self, raw_index: &str) -> Option<&SlotProof> {
        self.proofs
            .iter()
            .rev()
            .find(|(key, _)| key == raw_index)
            .map(|(_, proof)| proof)
    }

    /// The outcome for `raw_index` (the last one, if it appears more than once).
    pub fn get(&self, raw_index: &str) -> Option<&SubscriptionStatus> {
        self.entries
            .iter()
            .rev()
            .find(|(key, _)| key == raw_index)
            .map(|(_, status)| status)
    }

    /// The seqnum reported for `raw_index`.
    pub fn seqnum(&self, raw_index: &str) -> Option<u64> {
        self.seqnums
            .iter()
            .rev()
            .find(|(key, _)| key == raw_index)
            .map(|(_, seqnum)| *seqnum)
    }

    /// Collapses duplicate keys in place, in O(n), as rendering would.
    pub fn dedup(&mut self) {
        collapse_duplicates(&mut self.entries);
        collapse_duplicates(&mut self.seqnums);
        collapse_duplicates(&mut self.proofs);
        collapse_duplicates(&mut self.subscribers);
    }
}

/// `{"update": "<si>", "seqnum": 8}`: one change of one subscribed slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The slot that changed.
    pub storage_index: StorageIndex,
    /// **extension**: its new seqnum.
    pub seqnum: Option<u64>,
    /// **extension** `proof`: the new version's slot proof (never with the key), for a slot
    /// subscribed with proofs.
    pub proof: Option<SlotProof>,
    /// **extension** `subscribers`: present for popular slots only — about how many
    /// connections hold this slot on this server (a power of two, rounded down), so that its
    /// subscribers can spread their fetches of the new version instead of all reading it from
    /// the storage nodes at once.
    pub subscribers: Option<u64>,
}

/// `{"updates": ["<si>", ...], "seqnum": {"<si>": 9}}`: the batched form, sent to a connection
/// that asked for `maximum-delay`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchedUpdates {
    /// The slots that changed.
    pub storage_indexes: Vec<StorageIndex>,
    /// Their new seqnums.
    pub seqnums: Vec<(StorageIndex, u64)>,
    /// **extension** `proofs`: the new versions' slot proofs, for slots subscribed with proofs.
    pub proofs: Vec<(StorageIndex, SlotProof)>,
    /// **extension** `subscribers`: for popular slots only, as [`Update::subscribers`].
    pub subscribers: Vec<(StorageIndex, u64)>,
}

/// A message from a server to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The answer to one `subscribe` or `unsubscribe`.
    Status(Status),
    /// One change of one slot.
    Update(Update),
    /// Several changes, batched.
    Updates(BatchedUpdates),
    /// A client message could not be acted on at all.
    Error(ProtocolError),
}

impl From<MessageError> for ServerMessage {
    fn from(error: MessageError) -> Self {
        Self::Error(error.to_protocol_error())
    }
}

impl ServerMessage {
    /// Parses one server message (what a client receives). Accepts `update` and `updates` alike.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let envelope = parse_envelope(text, Side::Server)?;
        check_version(envelope.version.as_ref())?;
        let kinds: Vec<&str> = [
            ("status", envelope.status.is_some()),
            ("update", envelope.update.is_some()),
            ("updates", envelope.updates.is_some()),
            ("error", envelope.error.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(name, _)| name)
        .collect();
        if kinds.len() > 1 {
            return Err(MessageError::malformed(format!(
                "a server message carries one of \"status\", \"update\", \"updates\" or \"error\"; this one has \"{}\"",
                kinds.join("\", \"")
            )));
        }
        let Envelope {
            status,
            seqnum,
            update,
            updates,
            error,
            proof,
            proofs,
            subscribers,
            ..
        } = envelope;
        if let Some(status) = status {
            let mut status = parse_status(status, seqnum)?;
            status.proofs = parse_proof_map(proofs)?;
            status.subscribers = parse_subscriber_map(subscribers)?;
            return Ok(Self::Status(status));
        }
        if let Some(update) = update {
            let mut update = parse_update(update, seqnum)?;
            update.proof = match &proof {
                None | Some(Value::Null) => None,
                Some(value) => Some(proofs::parse("the update's proof", value)?),
            };
            update.subscribers =
                match subscribers {
                    None | Some(Loose::Other(Value::Null)) => None,
                    Some(Loose::Other(Value::Number(n))) if n.as_u64().is_some() => n.as_u64(),
                    Some(Loose::Other(other)) => {
                        return Err(MessageError::malformed(format!(
                            "subscribers of an update must be a non-negative integer; it is {}",
                            kind(&other)
                        )))
                    }
                    Some(Loose::Object(_)) => return Err(MessageError::malformed(
                        "subscribers of an update must be a non-negative integer; it is an object",
                    )),
                };
            return Ok(Self::Update(update));
        }
        if let Some(updates) = updates {
            let mut batch = parse_updates(updates, seqnum)?;
            batch.proofs = parse_proof_map(proofs)?
                .into_iter()
                .map(|(key, proof)| Ok((parse_si("proofs key", &key)?, proof)))
                .collect::<Result<_, MessageError>>()?;
            batch.subscribers = parse_subscriber_map(subscribers)?
                .into_iter()
                .map(|(key, n)| Ok((parse_si("subscribers key", &key)?, n)))
                .collect::<Result<_, MessageError>>()?;
            return Ok(Self::Updates(batch));
        }
        if let Some(error) = error {
            return match error {
                Value::String(text) => Ok(Self::Error(ProtocolError::from_wire(&text))),
                other => Err(MessageError::malformed(format!(
                    "error must be a string; it is {}",
                    kind(&other)
                ))),
            };
        }
        Err(MessageError::unknown(
            "a server message must carry \"status\", \"update\", \"updates\" or \"error\"",
        ))
    }

    /// The wire form of this message.
    pub fn to_json(&self) -> String {
        match self {
            Self::Status(status) => render_status(status),
            Self::Update(update) => {
                let mut out = String::with_capacity(96);
                start_message(&mut out);
                out.push_str(",\"update\":\"");
                out.push_str(&update.storage_index.to_base32());
                out.push('"');
                if let Some(seqnum) = update.seqnum {
                    out.push_str(",\"seqnum\":");
                    push_u64(&mut out, seqnum);
                }
                if let Some(proof) = &update.proof {
                    out.push_str(",\"proof\":");
                    proofs::render(&mut out, proof);
                }
                if let Some(subscribers) = update.subscribers {
                    out.push_str(",\"subscribers\":");
                    push_u64(&mut out, subscribers);
                }
                out.push('}');
                out
            }
            Self::Updates(batch) => {
                let mut out = String::with_capacity(
                    64 + batch.storage_indexes.len() * 29 + batch.seqnums.len() * 40,
                );
                start_message(&mut out);
                out.push_str(",\"updates\":[");
                for (i, si) in batch.storage_indexes.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    out.push_str(&si.to_base32());
                    out.push('"');
                }
                out.push(']');
                if !batch.seqnums.is_empty() {
                    let keyed: Vec<(String, u64)> = batch
                        .seqnums
                        .iter()
                        .map(|(si, n)| (si.to_base32(), *n))
                        .collect();
                    out.push_str(",\"seqnum\":");
                    render_object(&mut out, &keyed, |out, n| push_u64(out, *n));
                }
                if !batch.proofs.is_empty() {
                    let keyed: Vec<(String, &SlotProof)> = batch
                        .proofs
                        .iter()
                        .map(|(si, proof)| (si.to_base32(), proof))
                        .collect();
                    out.push_str(",\"proofs\":");
                    render_object(&mut out, &keyed, |out, proof| proofs::render(out, proof));
                }
                if !batch.subscribers.is_empty() {
                    let keyed: Vec<(String, u64)> = batch
                        .subscribers
                        .iter()
                        .map(|(si, n)| (si.to_base32(), *n))
                        .collect();
                    out.push_str(",\"subscribers\":");
                    render_object(&mut out, &keyed, |out, n| push_u64(out, *n));
                }
                out.push('}');
                out
            }
            Self::Error(error) => {
                let mut out = String::with_capacity(64 + error.message.len());
                start_message(&mut out);
                out.push_str(",\"error\":");
                push_json_string(&mut out, &error.to_wire());
                out.push('}');
                out
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing: the envelope
// ---------------------------------------------------------------------------------------------

/// Which direction a message travels; decides which top-level fields are worth keeping.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Client → server.
    Client,
    /// Server → client.
    Server,
}

/// A top-level field value that may be an object whose member order matters.
///
/// serde_json's `Map` sorts its keys (without the `preserve_order` feature, which we do not turn
/// on because it would change the map type for the whole workspace), so objects are collected
/// here as ordered pairs instead.
enum Loose {
    Object(Vec<(String, Value)>),
    Other(Value),
}

/// The top-level fields this side cares about; unknown fields are skipped unparsed.
#[derive(Default)]
struct Envelope {
    version: Option<Value>,
    subscribe: Option<Value>,
    unsubscribe: Option<Value>,
    options: Option<Value>,
    status: Option<Loose>,
    seqnum: Option<Loose>,
    update: Option<Value>,
    updates: Option<Value>,
    error: Option<Value>,
    proof: Option<Value>,
    proofs: Option<Loose>,
    subscribers: Option<Loose>,
}

// Lives on the stack for one parse only; boxing would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
enum TopLevel {
    Object(Envelope, Option<&'static str>),
    NotObject(&'static str),
}

#[derive(Clone, Copy)]
enum Key {
    Version,
    Subscribe,
    Unsubscribe,
    Options,
    Status,
    Seqnum,
    Update,
    Updates,
    Error,
    Proof,
    Proofs,
    Subscribers,
    Unknown,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            // Matching on the borrowed text avoids allocating a String per key.
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    VERSION_FIELD => Key::Version,
                    "subscribe" => Key::Subscribe,
                    "unsubscribe" => Key::Unsubscribe,
                    "options" => Key::Options,
                    "status" => Key::Status,
                    "seqnum" => Key::Seqnum,
                    "update" => Key::Update,
                    "updates" => Key::Updates,
                    "error" => Key::Error,
                    "proof" => Key::Proof,
                    "proofs" => Key::Proofs,
                    "subscribers" => Key::Subscribers,
                    _ => Key::Unknown,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct TopLevelSeed(Side);

impl<'de> DeserializeSeed<'de> for TopLevelSeed {
    type Value = TopLevel;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<TopLevel, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor(self.0))
    }
}

struct TopLevelVisitor(Side);

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
        // Skip without building anything: only the fact that it is an array matters.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::NotObject("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let side = self.0;
        let mut envelope = Envelope::default();
        let mut duplicate = None;

        /// Stores a value into its slot, noting (once) a field given twice.
        fn store<T>(
            slot: &mut Option<T>,
            value: T,
            name: &'static str,
            duplicate: &mut Option<&'static str>,
        ) {
            if slot.is_some() {
                duplicate.get_or_insert(name);
            } else {
                *slot = Some(value);
            }
        }

        while let Some(key) = map.next_key::<Key>()? {
            match (side, key) {
                (_, Key::Version) => {
                    let v = map.next_value()?;
                    store(&mut envelope.version, v, VERSION_FIELD, &mut duplicate);
                }
                (Side::Client, Key::Subscribe) => {
                    let v = map.next_value()?;
                    store(&mut envelope.subscribe, v, "subscribe", &mut duplicate);
                }
                (Side::Client, Key::Unsubscribe) => {
                    let v = map.next_value()?;
                    store(&mut envelope.unsubscribe, v, "unsubscribe", &mut duplicate);
                }
                (Side::Client, Key::Options) => {
                    let v = map.next_value()?;
                    store(&mut envelope.options, v, "options", &mut duplicate);
                }
                (Side::Server, Key::Status) => {
                    let v = map.next_value()?;
                    store(&mut envelope.status, v, "status", &mut duplicate);
                }
                (Side::Server, Key::Seqnum) => {
                    let v = map.next_value()?;
                    store(&mut envelope.seqnum, v, "seqnum", &mut duplicate);
                }
                (Side::Server, Key::Update) => {
                    let v = map.next_value()?;
                    store(&mut envelope.update, v, "update", &mut duplicate);
                }
                (Side::Server, Key::Updates) => {
                    let v = map.next_value()?;
                    store(&mut envelope.updates, v, "updates", &mut duplicate);
                }
                (Side::Server, Key::Error) => {
                    let v = map.next_value()?;
                    store(&mut envelope.error, v, "error", &mut duplicate);
                }
                (Side::Server, Key::Proof) => {
                    let v = map.next_value()?;
                    store(&mut envelope.proof, v, "proof", &mut duplicate);
                }
                (Side::Server, Key::Proofs) => {
                    let v = map.next_value()?;
                    store(&mut envelope.proofs, v, "proofs", &mut duplicate);
                }
                (Side::Server, Key::Subscribers) => {
                    let v = map.next_value()?;
                    store(&mut envelope.subscribers, v, "subscribers", &mut duplicate);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(TopLevel::Object(envelope, duplicate))
    }
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LooseVisitor;
        impl<'de> Visitor<'de> for LooseVisitor {
            type Value = Loose;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Loose, E> {
                Ok(Loose::Other(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose, E> {
                Ok(Loose::Other(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose, E> {
                Ok(Loose::Other(Value::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose, E> {
                Ok(Loose::Other(Value::from(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
                Ok(Loose::Other(Value::String(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Loose, E> {
                Ok(Loose::Other(Value::String(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
                Ok(Loose::Other(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Value>()? {
                    items.push(item);
                }
                Ok(Loose::Other(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Loose::Object(entries))
            }
        }
        deserializer.deserialize_any(LooseVisitor)
    }
}

/// Parses the JSON and sorts out the top-level fields; checks nothing about their content.
fn parse_envelope(text: &str, side: Side) -> Result<Envelope, MessageError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // serde_json's recursion limit (128) stays on, so deep nesting is an error, not a crash.
    let top = TopLevelSeed(side)
        .deserialize(&mut deserializer)
        .and_then(|top| deserializer.end().map(|()| top))
        .map_err(|e| MessageError::malformed(format!("not valid JSON: {e}")))?;
    match top {
        TopLevel::NotObject(what) => Err(MessageError::malformed(format!(
            "a message must be a JSON object; this is {what}"
        ))),
        TopLevel::Object(_, Some(field)) => Err(MessageError::malformed(format!(
            "the field \"{field}\" appears more than once"
        ))),
        TopLevel::Object(envelope, None) => Ok(envelope),
    }
}

fn check_version(version: Option<&Value>) -> Result<(), MessageError> {
    let wrong_type = |what: &str| {
        MessageError::unsupported(format!(
            "\"{VERSION_FIELD}\" must be the integer {PROTOCOL_VERSION}; it is {what}"
        ))
    };
    match version {
        None => Err(MessageError::unsupported(format!(
            "the message has no \"{VERSION_FIELD}\" field"
        ))),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                if v == PROTOCOL_VERSION {
                    Ok(())
                } else {
                    Err(MessageError::unsupported(format!(
                        "version {v} is not supported; this peer speaks version {PROTOCOL_VERSION}"
                    )))
                }
            } else if let Some(v) = n.as_i64() {
                Err(MessageError::unsupported(format!(
                    "version {v} is not supported; this peer speaks version {PROTOCOL_VERSION}"
                )))
            } else {
                Err(wrong_type("a non-integer number"))
            }
        }
        Some(other) => Err(wrong_type(kind(other))),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing: field contents
// ---------------------------------------------------------------------------------------------

/// A JSON value's kind, as error messages name it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most [`QUOTE_LIMIT`] characters of a peer's text, for error messages.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

fn requested_list(field: &str, value: Value) -> Result<Vec<RequestedIndex>, MessageError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                // The string is moved, not copied: one allocation per index in all.
                Value::String(raw) => Ok(RequestedIndex::new(raw)),
                other => Err(MessageError::malformed(format!(
                    "{field} must be a list of storage-index strings; item {i} is {}",
                    kind(&other)
                ))),
            })
            .collect(),
        other => Err(MessageError::malformed(format!(
            "{field} must be a list of storage-index strings; it is {}",
            kind(&other)
        ))),
    }
}

fn parse_options(
    options: Option<Value>,
) -> Result<(Option<Duration>, Option<ProofRequest>), MessageError> {
    let map = match options {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(MessageError::malformed(format!(
                "options must be an object; it is {}",
                kind(&other)
            )))
        }
    };
    let delay = match map.get("maximum-delay") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => return Err(MessageError::malformed(format!(
                "options.maximum-delay must be a whole, non-negative number of milliseconds; it is {n}"
            ))),
        },
        Some(other) => return Err(MessageError::malformed(format!(
            "options.maximum-delay must be a whole, non-negative number of milliseconds; it is {}",
            kind(other)
        ))),
    };
    let proofs = match map.get("proofs") {
        None => None,
        Some(value) => ProofRequest::parse(value)?,
    };
    Ok((delay, proofs))
}

fn parse_status(status: Loose, seqnum: Option<Loose>) -> Result<Status, MessageError> {
    let raw_entries = match status {
        Loose::Object(entries) => entries,
        Loose::Other(other) => {
            return Err(MessageError::malformed(format!(
                "status must be an object; it is {}",
                kind(&other)
            )))
        }
    };
    let mut entries = Vec::with_capacity(raw_entries.len());
    for (key, value) in raw_entries {
        let status = match value {
            Value::Bool(true) => SubscriptionStatus::Subscribed,
            Value::String(text) => {
                let (code, message) = split_error_text(&text);
                SubscriptionStatus::Refused { code, message }
            }
            other => {
                return Err(MessageError::malformed(format!(
                    "status entry {} must be true or an error string; it is {}",
                    quote(&key),
                    kind(&other)
                )))
            }
        };
        entries.push((key, status));
    }
    let mut seqnums = match seqnum {
        None | Some(Loose::Other(Value::Null)) => Vec::new(),
        Some(Loose::Object(raw)) => {
            let mut seqnums = Vec::with_capacity(raw.len());
            for (key, value) in raw {
                let seqnum = value.as_u64().ok_or_else(|| {
                    MessageError::malformed(format!(
                        "seqnum entry {} must be a non-negative integer; it is {}",
                        quote(&key),
                        kind(&value)
                    ))
                })?;
                seqnums.push((key, seqnum));
            }
            seqnums
        }
        Some(Loose::Other(other)) => {
            return Err(MessageError::malformed(format!(
                "seqnum of a status must be an object; it is {}",
                kind(&other)
            )))
        }
    };
    collapse_duplicates(&mut entries);
    collapse_duplicates(&mut seqnums);
    Ok(Status {
        entries,
        seqnums,
        proofs: Vec::new(),
        subscribers: Vec::new(),
    })
}

fn parse_si(what: &str, text: &str) -> Result<StorageIndex, MessageError> {
    text.parse().map_err(|e| {
        MessageError::malformed(format!(
            "{what} {} is not a storage index: {e}",
            quote(text)
        ))
    })
}

fn parse_update(update: Value, seqnum: Option<Loose>) -> Result<Update, MessageError> {
    let storage_index = match update {
        Value::String(text) => parse_si("update", &text)?,
        other => {
            return Err(MessageError::malformed(format!(
                "update must be a storage-index string; it is {}",
                kind(&other)
            )))
        }
    };
    let seqnum = match seqnum {
        None | Some(Loose::Other(Value::Null)) => None,
        Some(Loose::Other(Value::Number(n))) if n.as_u64().is_some() => n.as_u64(),
        Some(Loose::Other(other)) => {
            return Err(MessageError::malformed(format!(
                "seqnum of an update must be a non-negative integer; it is {}",
                match &other {
                    Value::Number(_) => "a negative or fractional number",
                    other => kind(other),
                }
            )))
        }
        Some(Loose::Object(_)) => {
            return Err(MessageError::malformed(
                "seqnum of an update must be a non-negative integer; it is an object",
            ))
        }
    };
    Ok(Update {
        storage_index,
        seqnum,
        proof: None,
        subscribers: None,
    })
}

fn parse_updates(updates: Value, seqnum: Option<Loose>) -> Result<BatchedUpdates, MessageError> {
    let storage_indexes = match updates {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => parse_si(&format!("updates item {i}"), text),
                other => Err(MessageError::malformed(format!(
                    "updates must be a list of storage-index strings; item {i} is {}",
                    kind(other)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(MessageError::malformed(format!(
                "updates must be a list of storage-index strings; it is {}",
                kind(&other)
            )))
        }
    };
    let seqnums = match seqnum {
        None | Some(Loose::Other(Value::Null)) => Vec::new(),
        Some(Loose::Object(raw)) => {
            let mut seqnums = Vec::with_capacity(raw.len());
            for (key, value) in raw {
                let si = parse_si("seqnum key", &key)?;
                let n = value.as_u64().ok_or_else(|| {
                    MessageError::malformed(format!(
                        "seqnum entry {} must be a non-negative integer; it is {}",
                        quote(&key),
                        kind(&value)
                    ))
                })?;
                seqnums.push((si, n));
            }
            collapse_duplicates(&mut seqnums);
            seqnums
        }
        Some(Loose::Other(other)) => {
            return Err(MessageError::malformed(format!(
                "seqnum of updates must be an object; it is {}",
                kind(&other)
            )))
        }
    };
    Ok(BatchedUpdates {
        storage_indexes,
        seqnums,
        proofs: Vec::new(),
        subscribers: Vec::new(),
    })
}

/// The `proofs` object of a status or batch: storage-index text → proof, in order.
fn parse_proof_map(proofs: Option<Loose>) -> Result<Vec<(String, SlotProof)>, MessageError> {
    match proofs {
        None | Some(Loose::Other(Value::Null)) => Ok(Vec::new()),
        Some(Loose::Object(raw)) => {
            let mut out = Vec::with_capacity(raw.len());
            for (key, value) in raw {
                let proof = proofs::parse(&format!("proofs entry {}", quote(&key)), &value)?;
                out.push((key, proof));
            }
            collapse_duplicates(&mut out);
            Ok(out)
        }
        Some(Loose::Other(other)) => Err(MessageError::malformed(format!(
            "proofs must be an object; it is {}",
            kind(&other)
        ))),
    }
}

/// The `subscribers` object of a status or batch: storage-index text → connections, in order.
fn parse_subscriber_map(subscribers: Option<Loose>) -> Result<Vec<(String, u64)>, MessageError> {
    match subscribers {
        None | Some(Loose::Other(Value::Null)) => Ok(Vec::new()),
        Some(Loose::Object(raw)) => {
            let mut out = Vec::with_capacity(raw.len());
            for (key, value) in raw {
                let n = value.as_u64().ok_or_else(|| {
                    MessageError::malformed(format!(
                        "subscribers entry {} must be a non-negative integer; it is {}",
                        quote(&key),
                        kind(&value)
                    ))
                })?;
                out.push((key, n));
            }
            collapse_duplicates(&mut out);
            Ok(out)
        }
        Some(Loose::Other(other)) => Err(MessageError::malformed(format!(
            "subscribers must be an object; it is {}",
            kind(&other)
        ))),
    }
}

/// Keeps one entry per key: at the first one's place, with the last one's value. O(n).
fn collapse_duplicates<K: Eq + std::hash::Hash + Clone, V>(entries: &mut Vec<(K, V)>) {
    if entries.len() < 2 {
        return;
    }
    let mut first_place: HashMap<K, usize> = HashMap::with_capacity(entries.len());
    let mut kept: Vec<(K, V)> = Vec::with_capacity(entries.len());
    for (key, value) in entries.drain(..) {
        match first_place.get(&key) {
            Some(&place) => {
                if let Some(slot) = kept.get_mut(place) {
                    slot.1 = value;
                }
            }
            None => {
                first_place.insert(key.clone(), kept.len());
                kept.push((key, value));
            }
        }
    }
    *entries = kept;
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

fn start_message(out: &mut String) {
    out.push_str("{\"");
    out.push_str(VERSION_FIELD);
    out.push_str("\":");
    push_u64(out, PROTOCOL_VERSION);
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    push_escaped(out, text);
    out.push('"');
}

/// Appends `text` escaped for the inside of a JSON string literal.
fn push_escaped(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut clean_from = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape: Option<&str> = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => Some(""),
            _ => None,
        };
        if let Some(escape) = escape {
            // `byte` is ASCII, so `i` and `i + 1` are char boundaries.
            out.push_str(&text[clean_from..i]);
            if escape.is_empty() {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            } else {
                out.push_str(escape);
            }
            clean_from = i + 1;
        }
    }
    out.push_str(&text[clean_from..]);
}

/// Appends a number without an intermediate String.
fn push_u64(out: &mut String, n: u64) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = write!(out, "{n}");
}

/// Renders `entries` as a JSON object, collapsing duplicate keys like [`collapse_duplicates`].
fn render_object<V>(out: &mut String, entries: &[(String, V)], render: impl Fn(&mut String, &V)) {
    out.push('{');
    let mut first = true;
    let mut emit = |out: &mut String, key: &str, value: &V| {
        if !first {
            out.push(',');
        }
        first = false;
        push_json_string(out, key);
        out.push(':');
        render(out, value);
    };
    if entries.len() < 2 {
        for (key, value) in entries {
            emit(out, key, value);
        }
    } else {
        // Last value of each key, emitted at the key's first place.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
        for (i, (key, _)) in entries.iter().enumerate() {
            last.insert(key.as_str(), i);
        }
        if last.len() == entries.len() {
            for (key, value) in entries {
                emit(out, key, value);
            }
        } else {
            let mut seen: HashSet<&str> = HashSet::with_capacity(last.len());
            for (key, _) in entries {
                if seen.insert(key.as_str()) {
                    let value = last
                        .get(key.as_str())
                        .and_then(|&i| entries.get(i))
                        .map(|(_, v)| v);
                    if let Some(value) = value {
                        emit(out, key, value);
                    }
                }
            }
        }
    }
    out.push('}');
}

fn render_status(status: &Status) -> String {
    let mut out = String::with_capacity(64 + status.entries.len() * 36 + status.seqnums.len() * 40);
    start_message(&mut out);
    out.push_str(",\"status\":");
    render_object(&mut out, &status.entries, |out, entry| match entry {
        SubscriptionStatus::Subscribed => out.push_str("true"),
        SubscriptionStatus::Refused { code, message } => {
            out.push('"');
            push_escaped(out, code.as_str());
            out.push_str(": ");
            push_escaped(out, message);
            out.push('"');
        }
    });
    if !status.seqnums.is_empty() {
        out.push_str(",\"seqnum\":");
        render_object(&mut out, &status.seqnums, |out, n| push_u64(out, *n));
    }
    if !status.proofs.is_empty() {
        out.push_str(",\"proofs\":");
        render_object(&mut out, &status.proofs, proofs::render);
    }
    if !status.subscribers.is_empty() {
        out.push_str(",\"subscribers\":");
        render_object(&mut out, &status.subscribers, |out, n| push_u64(out, *n));
    }
    out.push('}');
    out
}

mod proofs;
#[cfg(test)]
mod tests;

pub use proofs::ProofRequest;
