//! Every entry of `tests/vectors/caps.json`, produced by the real Tahoe-LAFS 1.20 code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;
use tahoe_caps::{base32, hash, Cap, CapKind, CapRole, StorageIndex};

fn vectors() -> &'static Value {
    static VECTORS: OnceLock<Value> = OnceLock::new();
    VECTORS.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/caps.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        serde_json::from_str(&text).unwrap()
    })
}

/// The entries of one section, checked to number exactly `expected` so that an emptied or
/// truncated file fails instead of passing vacuously.
fn section(name: &str, expected: usize) -> &'static [Value] {
    let entries = vectors()[name]
        .as_array()
        .unwrap_or_else(|| panic!("section {name} missing"));
    assert_eq!(entries.len(), expected, "entries in section {name}");
    entries
}

fn text<'a>(entry: &'a Value, field: &str) -> &'a str {
    entry[field]
        .as_str()
        .unwrap_or_else(|| panic!("field {field} is not a string in {entry}"))
}

fn optional_text<'a>(entry: &'a Value, field: &str) -> Option<&'a str> {
    match &entry[field] {
        Value::Null => None,
        Value::String(value) => Some(value),
        other => panic!("field {field} is neither null nor a string: {other}"),
    }
}

fn flag(entry: &Value, field: &str) -> bool {
    entry[field]
        .as_bool()
        .unwrap_or_else(|| panic!("field {field} is not a bool in {entry}"))
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn array16(bytes: &[u8]) -> [u8; 16] {
    bytes.try_into().unwrap()
}

fn kind_by_tahoe_name(name: &str) -> CapKind {
    CapKind::ALL
        .into_iter()
        .find(|kind| kind.tahoe_class_name() == name)
        .unwrap_or_else(|| panic!("no kind for Tahoe class {name}"))
}

fn si_text(cap: &Cap) -> Option<String> {
    cap.storage_index().map(|si| si.to_string())
}

/// Runs of base32-looking characters (10 or more) from the input: anything an error message
/// must not repeat.
fn key_like_runs(input: &str) -> Vec<&str> {
    input
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|run| run.len() >= 10)
        .collect()
}

#[test]
fn caps() {
    let entries = section("caps", 450);
    let mut per_kind = std::collections::BTreeMap::new();
    for entry in entries {
        let input = text(entry, "cap");
        let cap: Cap = input.parse().unwrap_or_else(|error| panic!("{error}"));
        let kind = kind_by_tahoe_name(text(entry, "kind"));
        *per_kind.entry(kind).or_insert(0) += 1;
        assert_eq!(cap.kind(), kind);
        assert_eq!(cap.to_string(), input);
        assert_eq!(
            si_text(&cap).as_deref(),
            optional_text(entry, "storage_index")
        );
        assert_eq!(cap.tahoe_is_mutable(), flag(entry, "mutable"), "{input}");
        assert_eq!(cap.is_readonly(), flag(entry, "readonly"), "{input}");
        assert_eq!(cap.is_directory(), flag(entry, "is_directory"), "{input}");
        assert_eq!(cap.format().as_str(), text(entry, "format"));
        assert_eq!(cap.role().as_str(), text(entry, "role"));
        // Slot mutability is Tahoe's answer, except for mutable verify-caps.
        let mutable_verify = cap.role() == CapRole::Verify && cap.format().is_mutable();
        assert_eq!(cap.is_mutable(), flag(entry, "mutable") || mutable_verify);

        let read_only = cap.read_only();
        assert_eq!(read_only.to_string(), text(entry, "readonly_cap"));
        assert!(read_only.is_readonly());
        assert_eq!(read_only.storage_index(), cap.storage_index());

        let verify = cap.verify_cap();
        assert_eq!(
            verify.as_ref().map(ToString::to_string).as_deref(),
            optional_text(entry, "verify_cap")
        );
        if let Some(verify) = verify {
            assert_eq!(verify.role(), CapRole::Verify);
            assert_eq!(verify.storage_index(), cap.storage_index());
        }
        if entry.get("note").is_some() {
            assert_eq!(cap.verify_cap().as_ref(), Some(&cap), "{input}");
        }
    }
    assert_eq!(per_kind.len(), 18, "every kind is covered");
    assert!(per_kind.values().all(|&count| count == 25));
}

#[test]
fn mutable_key_chains() {
    for entry in section("mutable_key_chains", 25) {
        let signature_key = hex(text(entry, "signature_key_hex"));
        let write_key = hash::mutable_write_key(&signature_key);
        assert_eq!(write_key.to_vec(), hex(text(entry, "writekey_hex")));
        assert_eq!(base32::encode(&write_key), text(entry, "writekey_b32"));
        let read_key = hash::mutable_read_key(&write_key);
        assert_eq!(read_key.to_vec(), hex(text(entry, "readkey_hex")));
        assert_eq!(base32::encode(&read_key), text(entry, "readkey_b32"));
        let storage_index = hash::mutable_storage_index(&read_key);
        assert_eq!(storage_index.to_string(), text(entry, "storage_index"));
        assert_eq!(
            storage_index.as_bytes().to_vec(),
            hex(text(entry, "storage_index_hex"))
        );

        let write_cap: Cap = text(entry, "sdmf_writecap").parse().unwrap();
        assert_eq!(write_cap.kind(), CapKind::SdmfFileWrite);
        assert_eq!(write_cap.storage_index(), Some(storage_index));
        let fingerprint = text(entry, "fingerprint_b32");
        assert_eq!(
            write_cap.to_string(),
            format!("URI:SSK:{}:{fingerprint}", text(entry, "writekey_b32"))
        );
        assert_eq!(
            write_cap.read_only().to_string(),
            text(entry, "sdmf_readcap")
        );
        assert_eq!(
            write_cap.verify_cap().unwrap().to_string(),
            text(entry, "sdmf_verifycap")
        );
        let read_cap: Cap = text(entry, "sdmf_readcap").parse().unwrap();
        assert_eq!(read_cap.storage_index(), Some(storage_index));
    }
}

#[test]
fn chk_key_chains() {
    for entry in section("chk_key_chains", 10) {
        let key = hex(text(entry, "key_hex"));
        assert_eq!(base32::encode(&key), text(entry, "key_b32"));
        let storage_index = hash::immutable_storage_index(&array16(&key));
        assert_eq!(storage_index.to_string(), text(entry, "storage_index"));
        assert_eq!(
            storage_index.as_bytes().to_vec(),
            hex(text(entry, "storage_index_hex"))
        );
    }
}

#[test]
fn tagged_hashes() {
    let mut with_five_byte_truncation = 0;
    for entry in section("tagged_hashes", 34) {
        let tag = text(entry, "tag").as_bytes();
        let data = hex(text(entry, "data_hex"));
        assert_eq!(hash::netstring(tag), hex(text(entry, "netstring_tag_hex")));
        let full = hash::tagged_hash(tag, &data);
        assert_eq!(full.to_vec(), hex(text(entry, "sha256d_hex")));
        assert_eq!(
            hash::tagged_hash_16(tag, &data).to_vec(),
            hex(text(entry, "truncated_16_hex"))
        );
        if let Some(five) = optional_text(entry, "truncated_5_hex") {
            assert_eq!(full[..5].to_vec(), hex(five));
            with_five_byte_truncation += 1;
        }
    }
    assert!(with_five_byte_truncation > 0);
}

#[test]
fn base32_encoding() {
    for entry in section("base32", 30) {
        let bytes = hex(text(entry, "bytes_hex"));
        let encoded = text(entry, "base32");
        assert_eq!(base32::encode(&bytes), encoded);
        assert_eq!(base32::decode(encoded).unwrap(), bytes);
        assert_eq!(encoded.len(), base32::encoded_len(bytes.len()));
    }
}

#[test]
fn base32_decoding_verdicts() {
    let entries = section("base32_decode", 23);
    let accepted = entries.iter().filter(|e| flag(e, "accepted")).count();
    assert!(accepted > 0 && accepted < entries.len());
    for entry in entries {
        let input = text(entry, "input");
        let result = base32::decode(input);
        if flag(entry, "accepted") {
            assert_eq!(
                result.unwrap(),
                hex(text(entry, "bytes_hex")),
                "{}",
                text(entry, "reason")
            );
        } else {
            assert!(result.is_err(), "should refuse: {}", text(entry, "reason"));
        }
    }
}

#[test]
fn parse_verdicts() {
    let entries = section("parse_verdicts", 85);
    let (mut accepted, mut refused) = (0, 0);
    for entry in entries {
        let input = text(entry, "input");
        let reason = text(entry, "reason");
        let result = input.parse::<Cap>();
        if flag(entry, "accepted") {
            accepted += 1;
            let cap = result.unwrap_or_else(|error| panic!("{reason}: refused with {error}"));
            assert_eq!(
                cap.kind(),
                kind_by_tahoe_name(text(entry, "kind")),
                "{reason}"
            );
            assert_eq!(cap.to_string(), text(entry, "canonical"), "{reason}");
            assert_eq!(
                si_text(&cap).as_deref(),
                optional_text(entry, "storage_index"),
                "{reason}"
            );
            let differs = entry.get("canonical_differs").is_some_and(|v| v == true);
            assert_eq!(input != cap.to_string(), differs, "{reason}");
        } else {
            refused += 1;
            let error = result.expect_err(reason);
            let message = error.to_string();
            let debug = format!("{error:?}");
            for run in key_like_runs(input) {
                assert!(
                    !message.contains(run) && !debug.contains(run),
                    "{reason}: error repeats input: {message}"
                );
            }
            assert!(
                input.len() < 26 || !message.contains(input),
                "{reason}: {message}"
            );
        }
    }
    assert_eq!((accepted, refused), (23, 62));
}

#[test]
fn share_paths() {
    for entry in section("share_paths", 36) {
        let storage_index: StorageIndex = text(entry, "storage_index").parse().unwrap();
        assert_eq!(storage_index.share_dir(), text(entry, "shares_subdir"));
    }
}

#[test]
fn grid_observed() {
    let entries = section("grid_observed", 7);
    for entry in entries {
        let how = text(entry, "created_with");
        let cap: Cap = text(entry, "cap").parse().unwrap();
        assert_eq!(cap.to_string(), text(entry, "cap"), "{how}");
        assert_eq!(cap.read_only().to_string(), text(entry, "ro_uri"), "{how}");
        assert_eq!(
            cap.verify_cap().map(|v| v.to_string()).as_deref(),
            optional_text(entry, "verify_uri"),
            "{how}"
        );
        assert_eq!(
            si_text(&cap).as_deref(),
            optional_text(entry, "storage_index_from_dump_cap"),
            "{how}"
        );
        assert_eq!(
            cap.is_directory(),
            text(entry, "wapi_kind") == "dirnode",
            "{how}"
        );
        let shares = entry["shares_on_disk"].as_array().unwrap();
        if let Some(si) = cap.storage_index() {
            assert_eq!(shares.len(), 3, "{how}");
            for share in shares {
                let path = text(share, "path");
                let folder = format!("storage/shares/{}/", si.share_dir());
                assert!(path.starts_with(&folder), "{how}: {path}");
                // Mutable share files carry a seqnum at byte 469, immutable ones a container version.
                assert_eq!(share.get("seqnum_at_469").is_some(), cap.is_mutable());
            }
        } else {
            assert!(shares.is_empty(), "{how}");
        }
    }
}
