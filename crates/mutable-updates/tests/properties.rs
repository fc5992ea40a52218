//! Property tests: round trips, and no panic on any input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mutable_updates::message::ProofRequest;
use mutable_updates::pinning::spki_sha256;
use mutable_updates::proof::SlotProof;
use mutable_updates::{
    BatchedUpdates, ClientMessage, ErrorCode, Nurl, ProtocolError, RequestedIndex, ServerMessage,
    Status, Subscribe, SubscriptionStatus, Unsubscribe, Update,
};
use proptest::prelude::*;
use tahoe_caps::StorageIndex;

fn storage_index() -> impl Strategy<Value = StorageIndex> {
    any::<[u8; 16]>().prop_map(StorageIndex::from_bytes)
}

/// Mostly valid indexes, some arbitrary text (which must survive escaping unchanged).
fn requested() -> impl Strategy<Value = RequestedIndex> {
    prop_oneof![
        3 => storage_index().prop_map(RequestedIndex::from),
        1 => any::<String>().prop_map(RequestedIndex::new),
    ]
}

fn known_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::MalformedStorageIndex),
        Just(ErrorCode::NotFound),
        Just(ErrorCode::NotMutable),
        Just(ErrorCode::TooManySubscriptions),
        Just(ErrorCode::Internal),
        Just(ErrorCode::MalformedMessage),
        Just(ErrorCode::UnsupportedVersion),
        Just(ErrorCode::UnknownMessage),
        "[a-z][a-z-]{0,20}".prop_map(|c| ErrorCode::from_wire(&c)),
    ]
}

fn subscription_status() -> impl Strategy<Value = SubscriptionStatus> {
    prop_oneof![
        Just(SubscriptionStatus::Subscribed),
        (known_code(), any::<String>())
            .prop_map(|(code, message)| SubscriptionStatus::Refused { code, message }),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            prop::collection::vec(requested(), 0..40),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(sis, delay, proofs)| {
                ClientMessage::Subscribe(Subscribe {
                    storage_indexes: sis,
                    maximum_delay: delay.map(Duration::from_millis),
                    proofs: proofs.map(|keys| {
                        if keys {
                            ProofRequest::WithKeys
                        } else {
                            ProofRequest::WithoutKeys
                        }
                    }),
                })
            }),
        prop::collection::vec(requested(), 0..40).prop_map(|sis| ClientMessage::Unsubscribe(
            Unsubscribe {
                storage_indexes: sis
            }
        )),
    ]
}

/// The proofs of the real Tahoe 1.20 shares under tests/fixtures/shares, with and without keys.
fn fixture_proofs() -> &'static [SlotProof] {
    static PROOFS: std::sync::OnceLock<Vec<SlotProof>> = std::sync::OnceLock::new();
    PROOFS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shares");
        let mut proofs = Vec::new();
        for name in ["sdmf-file.v1.sh0", "mdmf-dir.v2.sh0"] {
            let proof =
                SlotProof::from_share_file(&std::fs::read(dir.join(name)).unwrap()).unwrap();
            proofs.push(proof.clone().without_key());
            proofs.push(proof);
        }
        proofs
    })
}

fn proof() -> impl Strategy<Value = SlotProof> {
    (0..fixture_proofs().len()).prop_map(|i| fixture_proofs()[i].clone())
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (
            prop::collection::hash_map(any::<String>(), subscription_status(), 0..30),
            prop::collection::hash_map(any::<String>(), any::<u64>(), 0..30),
            prop::collection::hash_map(any::<String>(), proof(), 0..4),
            prop::collection::hash_map(any::<String>(), any::<u64>(), 0..4),
        )
            .prop_map(
                |(entries, seqnums, proofs, subscribers)| ServerMessage::Status(Status {
                    entries: entries.into_iter().collect(),
                    seqnums: seqnums.into_iter().collect(),
                    proofs: proofs.into_iter().collect(),
                    subscribers: subscribers.into_iter().collect(),
                })
            ),
        (
            storage_index(),
            prop::option::of(any::<u64>()),
            prop::option::of(proof()),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(storage_index, seqnum, proof, subscribers)| {
                ServerMessage::Update(Update {
                    storage_index,
                    seqnum,
                    proof,
                    subscribers,
                })
            }),
        (
            prop::collection::vec(storage_index(), 0..30),
            prop::collection::hash_map(storage_index(), any::<u64>(), 0..30),
            prop::collection::hash_map(storage_index(), proof(), 0..4),
            prop::collection::hash_map(storage_index(), any::<u64>(), 0..4),
        )
            .prop_map(|(storage_indexes, seqnums, proofs, subscribers)| {
                ServerMessage::Updates(BatchedUpdates {
                    storage_indexes,
                    seqnums: seqnums.into_iter().collect(),
                    proofs: proofs.into_iter().collect(),
                    subscribers: subscribers.into_iter().collect(),
                })
            }),
        (known_code(), any::<String>())
            .prop_map(|(code, message)| ServerMessage::Error(ProtocolError::new(code, message))),
    ]
}

/// JSON-ish text: more likely than random bytes to get past the first character.
fn jsonish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        r#"[\[\]{}",:0-9a-z\- ]{0,200}"#,
        r#"\{"tahoe-mutable-notification-version": ?[0-9.\-"]{1,4}, ?"(subscribe|unsubscribe|status|update|updates|error|seqnum|options)": ?[\[\]{}",:0-9a-z\- ]{0,120}\}"#,
    ]
}

proptest! {
    #[test]
    fn client_messages_round_trip(message in client_message()) {
        let json = message.to_json();
        prop_assert_eq!(ClientMessage::parse(&json).unwrap(), message);
        // The output is JSON that serde_json agrees with.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&value["tahoe-mutable-notification-version"], &serde_json::json!(1));
    }

    #[test]
    fn server_messages_round_trip(message in server_message()) {
        let json = message.to_json();
        prop_assert_eq!(ServerMessage::parse(&json).unwrap(), message);
    }

    #[test]
    fn client_parse_never_panics(text in jsonish()) {
        let _ = ClientMessage::parse(&text);
    }

    #[test]
    fn server_parse_never_panics(text in jsonish()) {
        let _ = ServerMessage::parse(&text);
    }

    #[test]
    fn nurl_parse_never_panics(text in any::<String>()) {
        let _ = text.parse::<Nurl>();
    }

    #[test]
    fn nurl_parse_near_valid_never_panics(text in r"pb://[A-Za-z0-9_\-=+]{0,50}@[\[\]a-z0-9.:]{0,20}:[0-9\-]{0,7}/[a-z0-9%/]{0,40}(#[v=0-9&;]{0,10})?") {
        if let Ok(nurl) = text.parse::<Nurl>() {
            // Whatever parses renders to something that parses to the same.
            prop_assert_eq!(nurl.to_string().parse::<Nurl>().unwrap(), nurl);
        }
    }

    #[test]
    fn nurl_round_trip(hash in any::<[u8; 32]>(), port in 1u16.., secret in "[a-z2-7]{32}", v6 in any::<bool>()) {
        let host = if v6 { "::1" } else { "10.0.0.1" };
        let nurl = Nurl::new(hash, host, port, secret.parse().unwrap());
        prop_assert_eq!(nurl.to_string().parse::<Nurl>().unwrap(), nurl);
    }

    #[test]
    fn spki_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = spki_sha256(&bytes);
    }

    #[test]
    fn spki_never_panics_on_mangled_certificates(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let mut der = CERT.with(|c| c.clone());
        for (at, byte) in flips {
            let i = at.index(der.len());
            der[i] = byte;
        }
        let len = cut.index(der.len() + 1);
        let _ = spki_sha256(&der[..len]);
    }
}

thread_local! {
    static CERT: Vec<u8> = rcgen::generate_simple_self_signed(vec!["x".to_owned()])
        .unwrap()
        .cert
        .der()
        .to_vec();
}
