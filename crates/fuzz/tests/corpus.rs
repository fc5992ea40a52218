//! The seed corpus in `crates/fuzz/corpus/<target>/`: that it is there for every target and
//! small, and (ignored by default) the generator that wrote its `seed-*` files:
//!
//! ```sh
//! cargo test -p fuzz --test corpus -- --ignored write_seed_corpus
//! ```
//!
//! Files not named `seed-*` (inputs AFL++ found worth keeping, crash regressions) are left alone.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::str::FromStr;

use fuzz::fixtures::{slots, SHARE_FILES};
use fuzz::{all_targets, corpus_dir, dictionary_path, encode_verify_input, verify_flags};
use mutable_updates::message::{
    BatchedUpdates, ClientMessage, ErrorCode, ProofRequest, ProtocolError, ServerMessage, Status,
    SubscriptionStatus, Update,
};
use mutable_updates::nurl::{Nurl, Swissnum};
use mutable_updates::proof::{SlotProof, SHARE_DATA_OFFSET};
use tahoe_caps::{Cap, StorageIndex};

/// The whole corpus stays well under this.
const MAX_CORPUS_BYTES: u64 = 1024 * 1024;

#[test]
fn every_target_has_a_small_seed_corpus_and_a_dictionary() {
    let mut total = 0u64;
    for target in all_targets() {
        let files = fuzz::read_corpus(target.name).unwrap_or_default();
        assert!(!files.is_empty(), "{}: no seed corpus", target.name);
        for (name, bytes) in &files {
            assert!(
                bytes.len() <= target.max_len,
                "{}/{name}: {} bytes, over the target's {}",
                target.name,
                bytes.len(),
                target.max_len
            );
            total += bytes.len() as u64;
        }
        let dictionary = std::fs::read_to_string(dictionary_path(target.name)).unwrap();
        assert!(
            !fuzz::parse_dictionary(&dictionary).is_empty(),
            "{}: empty dictionary",
            target.name
        );
    }
    assert!(total < MAX_CORPUS_BYTES, "seed corpus is {total} bytes");
}

#[test]
#[ignore = "rewrites the committed seed corpus"]
fn write_seed_corpus() {
    let mut all: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
    all.insert("caps", cap_seeds());
    all.insert("base32", base32_seeds());
    all.insert("client-message", client_message_seeds());
    all.insert("server-message", server_message_seeds());
    all.insert("nurl", nurl_seeds());
    all.insert("spki", spki_seeds());
    all.insert("share-header", share_header_seeds());
    all.insert("news", news_seeds());
    all.insert("share-file", share_file_seeds());
    all.insert("share-data", share_data_seeds());
    all.insert("proof-json", proof_json_seeds());
    all.insert("proof-verify", proof_verify_seeds());
    for target in all_targets() {
        let seeds = all.remove(target.name).unwrap();
        let dir = corpus_dir(target.name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                std::fs::remove_file(path).unwrap();
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (n, seed) in seeds.into_iter().enumerate() {
            if seen.insert(seed.clone()) {
                std::fs::write(dir.join(format!("seed-{n:03}")), seed).unwrap();
            }
        }
    }
    assert!(all.is_empty(), "seeds for no target: {:?}", all.keys());
}

// ---- caps and base32 ---------------------------------------------------------------------------

const CAP_VECTORS: &str = include_str!("../../../tests/vectors/caps.json");

fn collect_cap_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if s.contains("URI:") => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_cap_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_cap_strings(v, out)),
        _ => {}
    }
}

/// Real caps of Tahoe-LAFS's own test vectors: one per (kind, length), so that every kind and
/// every key size is there without hundreds of near-duplicates.
fn real_caps() -> Vec<String> {
    let vectors: serde_json::Value = serde_json::from_str(CAP_VECTORS).unwrap();
    let mut found = Vec::new();
    collect_cap_strings(&vectors, &mut found);
    found.sort();
    found.dedup();
    let mut by_shape = BTreeMap::new();
    for cap in found {
        let kind: String = cap.split(':').take(2).collect::<Vec<_>>().join(":");
        by_shape.entry((kind, cap.len())).or_insert(cap);
    }
    by_shape.into_values().collect()
}

fn cap_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = real_caps().into_iter().map(String::into_bytes).collect();
    seeds.push(b"URI:LIT:".to_vec());
    seeds.push(b"ro.URI:SSK-RO:aaaaaaaaaaaaaaaaaaaaaaaaaa:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n".to_vec());
    seeds
}

/// The base32 fields of real caps (keys, fingerprints, storage indexes) and a few raw byte
/// strings of every length class.
fn base32_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for cap in real_caps().iter().take(12) {
        for field in cap.split(':').skip(2) {
            if field.len() >= 2
                && field
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
            {
                seeds.push(field.as_bytes().to_vec());
            }
        }
    }
    for len in 0..=5 {
        seeds.push(tahoe_caps::base32::encode(&vec![0xa5; len]).into_bytes());
    }
    seeds.push(vec![0x00, 0xff, 0x80, 0x7f, 0x01]);
    seeds.truncate(40);
    seeds
}

// ---- protocol messages ---------------------------------------------------------------------------

fn sample_indexes() -> Vec<StorageIndex> {
    (0u8..4)
        .map(|n| StorageIndex::from_bytes([n.wrapping_mul(37).wrapping_add(1); 16]))
        .collect()
}

/// The storage index of each fixture slot (from its read-cap) and its genuine proofs.
fn real_slots() -> Vec<(StorageIndex, Vec<SlotProof>)> {
    let fixtures: serde_json::Value = serde_json::from_str(include_str!(
        "../../mutable-updates/tests/fixtures/shares/fixtures.json"
    ))
    .unwrap();
    fixtures["slots"]
        .as_array()
        .unwrap()
        .iter()
        .zip(slots())
        .map(|(json, slot)| {
            let cap = Cap::from_str(json["read_cap"].as_str().unwrap()).unwrap();
            (cap.storage_index().unwrap(), slot.genuine.clone())
        })
        .collect()
}

fn client_message_seeds() -> Vec<Vec<u8>> {
    let sis = sample_indexes();
    let seeds = vec![
        ClientMessage::subscribe(sis.clone()).to_json(),
        ClientMessage::subscribe_batched(sis.clone(), std::time::Duration::from_millis(250))
            .to_json(),
        ClientMessage::subscribe_with_proofs(sis.clone(), ProofRequest::WithKeys).to_json(),
        ClientMessage::subscribe_with_proofs(sis[..2].to_vec(), ProofRequest::WithoutKeys)
            .to_json(),
        ClientMessage::unsubscribe(sis[..1].to_vec()).to_json(),
        r#"{"tahoe-mutable-notification-version": 1, "subscribe": ["not-an-si", 7, null]}"#
            .to_owned(),
        r#"{"tahoe-mutable-notification-version": 1, "subscribe": [], "options": {"maximum-delay": 60000, "future": true}}"#
            .to_owned(),
        r#"{"tahoe-mutable-notification-version": 1.0, "unsubscribe": ["AAAAAAAAAAAAAAAAAAAAAAAAAA"]}"#.to_owned(),
        r#"{"tahoe-mutable-notification-version": 1, "subscribe": ["a"], "subscribe": ["b"]}"#.to_owned(),
        String::new(),
    ];
    seeds.into_iter().map(String::into_bytes).collect()
}

fn server_message_seeds() -> Vec<Vec<u8>> {
    let sis = sample_indexes();
    let mut status = Status::new();
    status.push(sis[0].to_string(), SubscriptionStatus::Subscribed);
    status.push_seqnum(sis[0].to_string(), 7);
    status.push(
        "bogus",
        SubscriptionStatus::refused(ErrorCode::MalformedStorageIndex, "not base32"),
    );
    status.push(
        sis[1].to_string(),
        SubscriptionStatus::refused(ErrorCode::TooManySubscriptions, "limit is 10000"),
    );
    let messages = [
        ServerMessage::Status(status),
        ServerMessage::Update(Update {
            storage_index: sis[2],
            seqnum: Some(u64::MAX),
            proof: None,
            subscribers: None,
        }),
        ServerMessage::Update(Update {
            storage_index: sis[2],
            seqnum: None,
            proof: None,
            subscribers: None,
        }),
        ServerMessage::Updates(BatchedUpdates {
            storage_indexes: sis.clone(),
            seqnums: vec![(sis[0], 1), (sis[3], 99)],
            proofs: Vec::new(),
            subscribers: Vec::new(),
        }),
        ServerMessage::Error(ProtocolError::new(
            ErrorCode::MalformedMessage,
            "expected value at line 1 column 1",
        )),
        ServerMessage::Error(ProtocolError::new(
            ErrorCode::Other("future-code".to_owned()),
            "",
        )),
    ];
    let mut seeds: Vec<Vec<u8>> = messages.iter().map(|m| m.to_json().into_bytes()).collect();
    // One proof-bearing message of each kind as well (the proof-json target has the rest).
    seeds.extend(proof_json_seeds().into_iter().take(3));
    seeds
}

/// What a real updates server sends to a client that subscribed with proofs: a status with the
/// proofs of the slots' current versions (with keys, then without), an update and a batch with
/// proofs (never with keys), each made from the real shares.
fn proof_json_seeds() -> Vec<Vec<u8>> {
    let real = real_slots();
    let mut messages = Vec::new();
    let mut with_keys = Status::new();
    let mut without_keys = Status::new();
    for (si, proofs) in &real {
        let latest = proofs.last().unwrap();
        with_keys.push(si.to_string(), SubscriptionStatus::Subscribed);
        with_keys.push_seqnum(si.to_string(), latest.prefix().seqnum());
        with_keys.push_proof(si.to_string(), latest.clone());
        without_keys.push(si.to_string(), SubscriptionStatus::Subscribed);
        without_keys.push_seqnum(si.to_string(), latest.prefix().seqnum());
        without_keys.push_proof(si.to_string(), latest.clone().without_key());
    }
    let (si, proofs) = &real[0];
    messages.push(ServerMessage::Update(Update {
        storage_index: *si,
        seqnum: Some(2),
        proof: Some(proofs[1].clone().without_key()),
        subscribers: Some(1024),
    }));
    messages.push(ServerMessage::Updates(BatchedUpdates {
        storage_indexes: real.iter().map(|(si, _)| *si).collect(),
        seqnums: real.iter().map(|(si, _)| (*si, 2)).collect(),
        proofs: real
            .iter()
            .map(|(si, proofs)| (*si, proofs[1].clone().without_key()))
            .collect(),
        subscribers: real.iter().map(|(si, _)| (*si, 4096)).collect(),
    }));
    messages.push(ServerMessage::Status(without_keys));
    messages.push(ServerMessage::Status(with_keys));
    // Each slot's other version on its own, with its key.
    for (si, proofs) in &real[1..] {
        let mut status = Status::new();
        status.push(si.to_string(), SubscriptionStatus::Subscribed);
        status.push_seqnum(si.to_string(), 1);
        status.push_proof(si.to_string(), proofs[0].clone());
        messages.push(ServerMessage::Status(status));
    }
    messages.iter().map(|m| m.to_json().into_bytes()).collect()
}

// ---- NURL, SPKI --------------------------------------------------------------------------------

fn nurl_seeds() -> Vec<Vec<u8>> {
    let hash = [0x5a; 32];
    let mut seeds: Vec<Vec<u8>> = [
        Nurl::new(
            hash,
            "127.0.0.1",
            3457,
            Swissnum::new("abcdefghijklmnopqrstuvwxyz234567"),
        ),
        Nurl::new(hash, "[::1]", 1, Swissnum::new("x")),
        Nurl::new(hash, "storage.example.org", 65535, Swissnum::new("A-._~z")),
    ]
    .iter()
    .map(|n| n.to_string().into_bytes())
    .collect();
    seeds.push(
        b"pb://WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo@tor.onion:3457/secretswissnum#v=1&x=2;y"
            .to_vec(),
    );
    seeds.push(b"Tahoe-LAFS c2VjcmV0c3dpc3NudW0=".to_vec());
    seeds
}

fn spki_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let algorithms = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ];
    for algorithm in algorithms {
        let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
        let params = rcgen::CertificateParams::new(vec!["fuzz.test".to_owned()]).unwrap();
        seeds.push(params.self_signed(&key).unwrap().der().to_vec());
    }
    seeds
}

// ---- shares and proofs -----------------------------------------------------------------------

const MAGIC_V1: &[u8; 32] = b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e";
const MAGIC_V2: &[u8; 32] = b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";

fn mutable_header(magic: &[u8; 32], format: u8, seqnum: u64, data_length: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 477 + 40];
    bytes[..32].copy_from_slice(magic);
    bytes[32..84].fill(0xab);
    bytes[84..92].copy_from_slice(&data_length.to_be_bytes());
    bytes[468] = format;
    bytes[469..477].copy_from_slice(&seqnum.to_be_bytes());
    bytes
}

fn share_header_seeds() -> Vec<Vec<u8>> {
    let mut immutable = 2u32.to_be_bytes().to_vec();
    immutable.extend_from_slice(&[0x77; 40]);
    let mut seeds = vec![
        mutable_header(MAGIC_V2, 0, 5, 2000),
        mutable_header(MAGIC_V1, 1, 1, 9),
        mutable_header(MAGIC_V2, 1, u64::MAX, u64::MAX),
        mutable_header(MAGIC_V2, 0, 0, 0),
        mutable_header(MAGIC_V1, 0, 3, 2000)[..300].to_vec(),
        immutable,
        vec![0, 0],
    ];
    // The heads of the real share files (what the server's watcher reads).
    for (_, file) in SHARE_FILES {
        seeds.push(file[..600].to_vec());
    }
    seeds
}

fn share_file_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = SHARE_FILES.iter().map(|(_, f)| f.to_vec()).collect();
    // A file cut right after the proof, as a server reading just that much sees it.
    let (_, file) = SHARE_FILES[2];
    let needed = SlotProof::share_data_needed(&file[SHARE_DATA_OFFSET..]).unwrap();
    seeds.push(file[..SHARE_DATA_OFFSET + needed].to_vec());
    seeds
}

fn share_data_seeds() -> Vec<Vec<u8>> {
    SHARE_FILES
        .iter()
        .map(|(_, file)| {
            let data = &file[SHARE_DATA_OFFSET..];
            let needed = SlotProof::share_data_needed(data).unwrap();
            data[..needed].to_vec()
        })
        .collect()
}

fn proof_verify_seeds() -> Vec<Vec<u8>> {
    use verify_flags::{KEY_FROM_INPUT, KNOWN_KEY, WITH_KEY};
    let mut seeds = Vec::new();
    for (n, slot) in slots().iter().enumerate() {
        let index = u8::try_from(n).unwrap();
        for proof in &slot.genuine {
            for flags in [WITH_KEY, WITH_KEY | KEY_FROM_INPUT, KNOWN_KEY] {
                let key: &[u8] = if flags & KEY_FROM_INPUT != 0 {
                    slot.key.der()
                } else {
                    &[]
                };
                seeds.push(encode_verify_input(
                    index,
                    flags,
                    proof.prefix_bytes(),
                    proof.signature(),
                    key,
                ));
            }
        }
    }
    // The first slot's prefix with the other slot's signature, and no key at all.
    let (a, b) = (&slots()[0], &slots()[2]);
    seeds.push(encode_verify_input(
        0,
        WITH_KEY,
        a.genuine[0].prefix_bytes(),
        b.genuine[0].signature(),
        &[],
    ));
    seeds.push(encode_verify_input(
        0,
        0,
        a.genuine[1].prefix_bytes(),
        a.genuine[1].signature(),
        &[],
    ));
    seeds
}

// ---- news ------------------------------------------------------------------------------------

fn news_seeds() -> Vec<Vec<u8>> {
    [
        "---\ntitle: Maintenance tonight\nseverity: warning\nexpires: 2030-01-01T00:00:00Z\n---\n\nThe grid is down from 22:00 to 23:00.\n",
        "Plain text without a front matter.\nSecond line.\n",
        "---\ntitle: \"quoted: with colon\"\n---\n---\nA body that starts with a fence.\n",
        "\u{feff}---\r\nseverity: CRITICAL\r\n---\r\nWindows line ends\r\n",
        "---\nnot a pair\n---\nmalformed front matter stays text\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
