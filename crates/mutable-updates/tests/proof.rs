//! Slot proofs against real Tahoe-LAFS 1.20 shares (`tests/fixtures/shares/`, see its README):
//! every real proof verifies to the seqnum in its share header, and every alteration a forged
//! share or a hostile server could make is refused with the error naming the failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mutable_updates::proof::{
    Freshness, ProofError, ShareError, SlotFormat, SlotProof, VerificationKey, SHARE_DATA_OFFSET,
};
use proptest::prelude::*;
use tahoe_caps::Cap;

/// One fixture share file: one version of one slot.
#[derive(Debug, Clone)]
struct Share {
    slot: String,
    format: SlotFormat,
    directory: bool,
    cap: Cap,
    file: Vec<u8>,
    seqnum: u64,
}

impl Share {
    fn fingerprint(&self) -> [u8; 32] {
        self.cap.fingerprint().unwrap()
    }

    fn proof(&self) -> SlotProof {
        SlotProof::from_share_file(&self.file).unwrap()
    }

    /// The seqnum as any reader of the share header sees it: big-endian u64 at byte 469.
    fn header_seqnum(&self) -> u64 {
        u64::from_be_bytes(self.file[469..477].try_into().unwrap())
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shares")
}

/// All fixture shares, in `fixtures.json` order: per slot, version 1 then version 2.
fn shares() -> Vec<Share> {
    let dir = fixtures_dir();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("fixtures.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for slot in doc["slots"].as_array().unwrap() {
        let cap: Cap = slot["read_cap"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            cap.storage_index().unwrap().to_string(),
            slot["storage_index"].as_str().unwrap()
        );
        let format = match slot["format"].as_str().unwrap() {
            "SDMF" => SlotFormat::Sdmf,
            "MDMF" => SlotFormat::Mdmf,
            other => panic!("unknown format {other}"),
        };
        for version in slot["versions"].as_array().unwrap() {
            out.push(Share {
                slot: slot["name"].as_str().unwrap().to_owned(),
                format,
                directory: slot["directory"].as_bool().unwrap(),
                cap: cap.clone(),
                file: std::fs::read(dir.join(version["file"].as_str().unwrap())).unwrap(),
                seqnum: version["seqnum"].as_u64().unwrap(),
            });
        }
    }
    out
}

/// Byte ranges of every field of a signed prefix.
fn prefix_fields(format: SlotFormat) -> Vec<(&'static str, std::ops::Range<usize>)> {
    match format {
        SlotFormat::Sdmf => vec![
            ("version", 0..1),
            ("seqnum", 1..9),
            ("root hash", 9..41),
            ("salt", 41..57),
            ("k", 57..58),
            ("N", 58..59),
            ("segment size", 59..67),
            ("data length", 67..75),
        ],
        SlotFormat::Mdmf => vec![
            ("version", 0..1),
            ("seqnum", 1..9),
            ("root hash", 9..41),
            ("k", 41..42),
            ("N", 42..43),
            ("segment size", 43..51),
            ("data length", 51..59),
        ],
    }
}

fn flipped(bytes: &[u8], index: usize, bit: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= 1 << bit;
    out
}

#[test]
fn fixtures_cover_four_slots_in_two_versions() {
    let shares = shares();
    assert_eq!(shares.len(), 8);
    let kinds: Vec<_> = shares
        .iter()
        .map(|s| (s.format, s.directory, s.seqnum))
        .collect();
    for format in [SlotFormat::Sdmf, SlotFormat::Mdmf] {
        for directory in [false, true] {
            for seqnum in [1, 2] {
                assert!(kinds.contains(&(format, directory, seqnum)));
            }
        }
    }
    for share in &shares {
        assert_eq!(share.cap.is_directory(), share.directory, "{}", share.slot);
        assert!(share.cap.is_readonly());
    }
}

#[test]
fn every_real_share_verifies_to_its_header_seqnum() {
    for share in shares() {
        let proof = share.proof();
        assert_eq!(proof.prefix().format(), share.format, "{}", share.slot);
        let verified = proof.verify(&share.fingerprint(), None).unwrap();
        assert_eq!(verified.seqnum(), share.header_seqnum(), "{}", share.slot);
        assert_eq!(verified.seqnum(), share.seqnum, "{}", share.slot);
        assert_eq!(verified.format(), share.format);
        assert_eq!(verified.prefix().as_bytes(), proof.prefix_bytes());
        assert_eq!(
            verified.verification_key().fingerprint(),
            &share.fingerprint()
        );
        // The share-data entry point gives the same proof.
        let data = &share.file[SHARE_DATA_OFFSET..];
        assert_eq!(SlotProof::from_share_data(data).unwrap(), proof);
        // Tahoe's encoding parameters of the grid that wrote them.
        assert_eq!((verified.prefix().k(), verified.prefix().n()), (2, 3));
        assert_eq!(
            verified.prefix().salt().is_some(),
            share.format == SlotFormat::Sdmf
        );
    }
}

#[test]
fn a_flipped_bit_in_every_field_of_the_prefix_breaks_the_signature() {
    for share in shares() {
        let proof = share.proof();
        let fingerprint = share.fingerprint();
        for (field, range) in prefix_fields(share.format) {
            // First and last byte of the field, low and high bit.
            for (index, bit) in [(range.start, 0), (range.end - 1, 7)] {
                let prefix = flipped(proof.prefix_bytes(), index, bit);
                let forged = SlotProof::new(&prefix, proof.signature(), proof.verification_key());
                if field == "version" {
                    // 0 <-> 1 changes the prefix length, anything else is no version: refused
                    // before any signature check, since the bytes are no longer a prefix at all.
                    assert!(
                        matches!(
                            forged,
                            Err(ShareError::UnknownVersion(_) | ShareError::PrefixLength { .. })
                        ),
                        "{} {field}: {forged:?}",
                        share.slot
                    );
                    continue;
                }
                let err = forged.unwrap().verify(&fingerprint, None).unwrap_err();
                assert_eq!(
                    err,
                    ProofError::BadSignature,
                    "{} {field} byte {index}",
                    share.slot
                );
            }
        }
    }
}

#[test]
fn every_single_bit_flip_of_a_prefix_is_refused() {
    let shares = shares();
    for format in [SlotFormat::Sdmf, SlotFormat::Mdmf] {
        let share = shares.iter().find(|s| s.format == format).unwrap();
        let proof = share.proof();
        for index in 0..proof.prefix_bytes().len() {
            for bit in 0..8 {
                let prefix = flipped(proof.prefix_bytes(), index, bit);
                let outcome = SlotProof::new(&prefix, proof.signature(), proof.verification_key())
                    .map_err(|e| e.to_string())
                    .and_then(|p| {
                        p.verify(&share.fingerprint(), None)
                            .map_err(|e| e.to_string())
                    });
                assert!(outcome.is_err(), "{format} byte {index} bit {bit} accepted");
            }
        }
    }
}

#[test]
fn a_forged_seqnum_in_the_share_file_is_refused() {
    for share in shares() {
        for forged_seqnum in [share.seqnum + 1, share.seqnum - 1, u64::MAX] {
            let mut file = share.file.clone();
            file[469..477].copy_from_slice(&forged_seqnum.to_be_bytes());
            let proof = SlotProof::from_share_file(&file).unwrap();
            assert_eq!(proof.prefix().seqnum(), forged_seqnum, "only claimed");
            assert_eq!(
                proof.verify(&share.fingerprint(), None).unwrap_err(),
                ProofError::BadSignature,
                "{} seqnum {forged_seqnum}",
                share.slot
            );
        }
    }
}

#[test]
fn a_flipped_bit_in_the_signature_is_refused() {
    for share in shares() {
        let proof = share.proof();
        let len = proof.signature().len();
        for (index, bit) in [(0, 7), (0, 0), (len / 2, 3), (len - 1, 0)] {
            let signature = flipped(proof.signature(), index, bit);
            let forged =
                SlotProof::new(proof.prefix_bytes(), &signature, proof.verification_key()).unwrap();
            assert_eq!(
                forged.verify(&share.fingerprint(), None).unwrap_err(),
                ProofError::BadSignature,
                "{} signature byte {index}",
                share.slot
            );
        }
    }
}

#[test]
fn a_flipped_bit_in_the_key_is_a_fingerprint_mismatch() {
    for share in shares() {
        let proof = share.proof();
        let key = proof.verification_key().unwrap();
        for index in [0, 30, key.len() / 2, key.len() - 1] {
            let forged_key = flipped(key, index, 1);
            let forged =
                SlotProof::new(proof.prefix_bytes(), proof.signature(), Some(&forged_key)).unwrap();
            assert_eq!(
                forged.verify(&share.fingerprint(), None).unwrap_err(),
                ProofError::FingerprintMismatch,
                "{} key byte {index}",
                share.slot
            );
        }
    }
}

#[test]
fn a_valid_proof_of_one_slot_is_wrong_for_every_other_slot() {
    let shares = shares();
    for a in &shares {
        for b in shares.iter().filter(|b| b.slot != a.slot) {
            assert_eq!(
                a.proof().verify(&b.fingerprint(), None).unwrap_err(),
                ProofError::FingerprintMismatch,
                "{} checked as {}",
                a.slot,
                b.slot
            );
        }
    }
}

#[test]
fn a_proof_without_key_needs_a_known_key_of_the_same_slot() {
    let shares = shares();
    let (v1, v2) = (&shares[0], &shares[1]);
    assert_eq!(v1.slot, v2.slot);
    let keyless = v2.proof().without_key();
    assert_eq!(keyless.verification_key(), None);
    assert_eq!(
        keyless.verify(&v2.fingerprint(), None).unwrap_err(),
        ProofError::NoVerificationKey
    );
    assert_eq!(
        ProofError::NoVerificationKey.to_string(),
        "the proof carries no verification key and no key of this slot is known"
    );

    // The key kept from the first proof verifies the second one.
    let kept = v1
        .proof()
        .verify(&v1.fingerprint(), None)
        .unwrap()
        .verification_key()
        .clone();
    let verified = keyless.verify(&v2.fingerprint(), Some(&kept)).unwrap();
    assert_eq!(verified.seqnum(), 2);
    assert_eq!(verified.verification_key(), &kept);
    // ...and a proof that carries the same key reuses it.
    let with_key = v2.proof().verify(&v2.fingerprint(), Some(&kept)).unwrap();
    assert_eq!(with_key.seqnum(), 2);

    // A known key still cannot make an altered prefix pass.
    let prefix = flipped(keyless.prefix_bytes(), 8, 0);
    let forged = SlotProof::new(&prefix, keyless.signature(), None).unwrap();
    assert_eq!(
        forged.verify(&v2.fingerprint(), Some(&kept)).unwrap_err(),
        ProofError::BadSignature
    );

    // Another slot's key, passed as known, is refused by fingerprint.
    let other = shares.iter().find(|s| s.slot != v1.slot).unwrap();
    let other_key = VerificationKey::from_der(other.proof().verification_key().unwrap()).unwrap();
    assert_eq!(
        keyless
            .verify(&v2.fingerprint(), Some(&other_key))
            .unwrap_err(),
        ProofError::KnownKeyMismatch
    );
    // Even with the fingerprint it does match, it cannot verify this slot's signature.
    assert_eq!(
        keyless
            .verify(&other.fingerprint(), Some(&other_key))
            .unwrap_err(),
        ProofError::BadSignature
    );
}

#[test]
fn a_replayed_older_proof_verifies_to_its_older_seqnum_and_the_caller_refuses_it() {
    let shares = shares();
    for pair in shares.chunks(2) {
        let (old, new) = (&pair[0], &pair[1]);
        assert_eq!(old.slot, new.slot);
        let old_verified = old.proof().verify(&old.fingerprint(), None).unwrap();
        let new_verified = new.proof().verify(&new.fingerprint(), None).unwrap();
        assert!(old_verified.seqnum() < new_verified.seqnum());
        assert_ne!(old_verified.root_hash(), new_verified.root_hash());

        // A client keeps the highest verified seqnum and moves only on Newer.
        let mut latest = None;
        for verified in [&new_verified, &old_verified, &new_verified] {
            match verified.freshness(latest) {
                Freshness::Newer => latest = Some(verified.seqnum()),
                Freshness::Same | Freshness::Older { .. } => {}
            }
        }
        assert_eq!(latest, Some(new_verified.seqnum()), "{}", old.slot);
        assert_eq!(
            old_verified.freshness(latest),
            Freshness::Older {
                latest: new_verified.seqnum()
            }
        );
    }
}

#[test]
fn a_prefix_spliced_with_another_versions_signature_is_refused() {
    let shares = shares();
    for pair in shares.chunks(2) {
        let (old, new) = (pair[0].proof(), pair[1].proof());
        let spliced =
            SlotProof::new(new.prefix_bytes(), old.signature(), new.verification_key()).unwrap();
        assert_eq!(
            spliced.verify(&pair[1].fingerprint(), None).unwrap_err(),
            ProofError::BadSignature
        );
    }
}

#[test]
fn truncated_shares_say_what_is_missing() {
    for share in shares() {
        let data = &share.file[SHARE_DATA_OFFSET..];
        let needed = SlotProof::share_data_needed(data).unwrap();
        assert!(needed < data.len());
        SlotProof::from_share_data(&data[..needed]).unwrap();
        for cut in [0, 1, 50, share.format.header_len() - 1, needed - 1] {
            let err = SlotProof::from_share_data(&data[..cut]).unwrap_err();
            assert!(
                matches!(err, ShareError::Truncated { .. }),
                "{} cut at {cut}: {err}",
                share.slot
            );
        }
    }
    let err = SlotProof::from_share_data(&[7; 200]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown mutable share version 7 (only 0 = SDMF and 1 = MDMF exist)"
    );
}

#[test]
fn oversized_parts_are_refused() {
    let share = &shares()[0];
    let proof = share.proof();
    assert_eq!(
        SlotProof::new(proof.prefix_bytes(), &[1; 513], None).unwrap_err(),
        ShareError::SignatureTooLong { len: 513, max: 512 }
    );
    assert_eq!(
        SlotProof::new(proof.prefix_bytes(), proof.signature(), Some(&[1; 1025])).unwrap_err(),
        ShareError::KeyTooLong {
            len: 1025,
            max: 1024
        }
    );
    assert_eq!(
        SlotProof::new(proof.prefix_bytes(), &[], None).unwrap_err(),
        ShareError::EmptySignature
    );
    // The same through a share whose offsets claim a huge key.
    let mut data = share.file[SHARE_DATA_OFFSET..].to_vec();
    match share.format {
        SlotFormat::Sdmf => {
            // Key up to the signature offset, signature up to the share hash chain's.
            data[75..79].copy_from_slice(&100_000u32.to_be_bytes());
            data[79..83].copy_from_slice(&100_256u32.to_be_bytes());
        }
        SlotFormat::Mdmf => data[91..99].copy_from_slice(&100_000u64.to_be_bytes()),
    }
    assert!(matches!(
        SlotProof::from_share_data(&data).unwrap_err(),
        ShareError::KeyTooLong { .. }
    ));
}

/// Real share files, for mutation.
fn real_file() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let files: Vec<Vec<u8>> = shares().into_iter().map(|s| s.file).collect();
    (0..files.len()).prop_map(move |i| (i, files[i].clone()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = SlotProof::from_share_data(&bytes);
        let _ = SlotProof::from_share_file(&bytes);
        let _ = SlotProof::share_data_needed(&bytes);
        let _ = mutable_updates::proof::SignedPrefix::parse(&bytes);
    }

    #[test]
    fn arbitrary_headers_with_a_real_version_never_panic(
        version in 0u8..2,
        rest in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        let mut data = vec![version];
        data.extend_from_slice(&rest);
        if let Ok(proof) = SlotProof::from_share_data(&data) {
            let key = proof.verification_key().unwrap().to_vec();
            let fingerprint = tahoe_caps::hash::mutable_pubkey_fingerprint(&key);
            prop_assert!(proof.verify(&fingerprint, None).is_err());
        }
    }

    #[test]
    fn arbitrary_parts_never_panic_and_never_verify(
        prefix in proptest::collection::vec(any::<u8>(), 59..=75),
        signature in proptest::collection::vec(any::<u8>(), 0..600),
        key in proptest::collection::vec(any::<u8>(), 0..1100),
        fingerprint in any::<[u8; 32]>(),
    ) {
        if let Ok(proof) = SlotProof::new(&prefix, &signature, Some(&key)) {
            // With the key's own fingerprint the DER parser and verifier see random input.
            let own = tahoe_caps::hash::mutable_pubkey_fingerprint(&key);
            prop_assert!(proof.verify(&own, None).is_err());
            prop_assert!(proof.verify(&fingerprint, None).is_err());
        }
        let _ = VerificationKey::from_der(&key);
    }

    /// Any change to a real share file, or any cut, either fails or still yields the genuine,
    /// signed prefix: no alteration can produce another verified seqnum.
    #[test]
    fn mutated_real_shares_never_verify_to_anything_else(
        (i, file) in real_file(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let share = &shares()[i];
        let mut file = file;
        for (at, xor) in &edits {
            let at = at.index(file.len());
            file[at] ^= xor;
        }
        if do_cut {
            file.truncate(cut.index(file.len()));
        }
        if let Ok(proof) = SlotProof::from_share_file(&file) {
            if let Ok(verified) = proof.verify(&share.fingerprint(), None) {
                let genuine = share.proof();
                prop_assert_eq!(verified.prefix().as_bytes(), genuine.prefix_bytes());
                prop_assert_eq!(verified.seqnum(), share.seqnum);
            }
        }
    }
}
