//! Targets for slot proofs (`mutable_updates::proof`, `message/proofs.rs`): cutting a proof out
//! of a share file or share data, the `proof`/`proofs` JSON of server messages, and
//! `SlotProof::verify` against the fixed real keys of [`crate::fixtures`].
//!
//! The shared oracle ([`check_acceptance`]): whatever the input, a proof that verifies for a
//! fixture slot's fingerprint carries exactly the prefix and signature of one of that slot's
//! real versions, with that slot's key, and the verified seqnum is the prefix's; and a real
//! version with the real key always verifies. A mutated prefix or signature is never accepted.

use mutable_updates::message::ServerMessage;
use mutable_updates::proof::{
    ProofError, SignedPrefix, SlotProof, VerificationKey, SHARE_DATA_OFFSET,
};
use updates_server::share::{parse_share_header, MutableFormat, ShareHeader};

use crate::fixtures::{slots, Slot};
use crate::targets::{target, violation, Outcome, MAX_ERROR_LEN};
use crate::Target;

pub(crate) fn targets() -> Vec<Target> {
    vec![
        target!(
            "share-file",
            "SlotProof::from_share_file: the proof is the file's own bytes, agrees with from_share_data and with updates-server's header reader; verifies only if genuine",
            check_share_file,
            8192
        ),
        target!(
            "share-data",
            "SlotProof::from_share_data / share_data_needed / SignedPrefix::parse: consistent, minimal; verifies only if genuine",
            check_share_data,
            8192
        ),
        target!(
            "proof-json",
            "ServerMessage::parse of status/update/updates with proofs: round trip; no parsed proof verifies unless genuine",
            check_proof_json,
            64 * 1024
        ),
        target!(
            "proof-verify",
            "SlotProof::new + verify against a real slot's key with a mutated prefix, signature and key: never panics, never accepts a mutated proof",
            check_proof_verify,
            2048
        ),
    ]
}

/// The acceptance oracle for one proof against every fixture slot, with and without the
/// slot's known key.
fn check_acceptance(what: &str, proof: &SlotProof) -> Outcome {
    for slot in slots() {
        check_against(what, proof, slot, None)?;
        check_against(what, proof, slot, Some(&slot.key))?;
    }
    Ok(())
}

fn check_against(
    what: &str,
    proof: &SlotProof,
    slot: &Slot,
    known: Option<&VerificationKey>,
) -> Outcome {
    let result = proof.verify(&slot.fingerprint, known);
    let genuine = slot.is_genuine(proof.prefix_bytes(), proof.signature());
    let real_key = proof
        .verification_key()
        .is_none_or(|der| der == slot.key.der());
    let usable_key = proof.verification_key().is_some() || known.is_some();
    let known_text = if known.is_some() { "known" } else { "no" };
    match result {
        Ok(verified) => {
            if !genuine {
                return violation(format!(
                    "{what}: a proof that is no real version of {} verified ({known_text} key)",
                    slot.name
                ));
            }
            if !real_key || verified.verification_key().der() != slot.key.der() {
                return violation(format!("{what}: verified with a key not {}'s", slot.name));
            }
            if verified.seqnum() != proof.prefix().seqnum()
                || verified.prefix().as_bytes() != proof.prefix_bytes()
            {
                return violation(format!("{what}: the verified prefix is not the proof's"));
            }
            Ok(())
        }
        Err(error) => {
            if genuine && real_key && usable_key {
                return violation(format!(
                    "{what}: a real version of {} with its key was refused: {error}",
                    slot.name
                ));
            }
            let message = error.to_string();
            if message.len() > MAX_ERROR_LEN {
                return violation(format!("{what}: proof error longer than 4 KiB"));
            }
            Ok(())
        }
    }
}

fn check_share_error(what: &str, error: &impl std::fmt::Display) -> Outcome {
    if error.to_string().len() > 512 {
        return violation(format!("{what}: error message longer than 512 bytes"));
    }
    Ok(())
}

/// `SlotProof::from_share_data` on `data` and what must follow from it.
fn check_data_proof(what: &str, data: &[u8]) -> Result<Option<SlotProof>, String> {
    let needed = SlotProof::share_data_needed(data);
    let proof = match SlotProof::from_share_data(data) {
        Ok(proof) => proof,
        Err(error) => {
            check_share_error(what, &error)?;
            return Ok(None);
        }
    };
    let prefix_len = proof.prefix_bytes().len();
    if data.get(..prefix_len) != Some(proof.prefix_bytes()) {
        return Err(format!("{what}: the prefix is not the data's first bytes"));
    }
    match SignedPrefix::parse(&data[..prefix_len]) {
        Ok(prefix) if &prefix == proof.prefix() => {}
        _ => return Err(format!("{what}: SignedPrefix::parse disagrees")),
    }
    let needed = match needed {
        Ok(n) if n <= data.len() => n,
        other => {
            return Err(format!(
                "{what}: a proof of {} bytes of data, but share_data_needed says {other:?}",
                data.len()
            ))
        }
    };
    // What share_data_needed names is enough, and no byte less is.
    if SlotProof::from_share_data(&data[..needed]).as_ref() != Ok(&proof) {
        return Err(format!(
            "{what}: the first {needed} bytes give another proof"
        ));
    }
    if SlotProof::from_share_data(&data[..needed - 1]).is_ok() {
        return Err(format!(
            "{what}: a proof from {} bytes though {needed} are needed",
            needed - 1
        ));
    }
    for (name, part) in [
        ("signature", Some(proof.signature())),
        ("key", proof.verification_key()),
    ] {
        let Some(part) = part else {
            return Err(format!("{what}: a proof from share data without a key"));
        };
        if part.is_empty() || !data[..needed].windows(part.len()).any(|w| w == part) {
            return Err(format!("{what}: the {name} is not a part of the data"));
        }
    }
    check_acceptance(what, &proof)?;
    Ok(Some(proof))
}

fn check_share_data(input: &[u8]) -> Outcome {
    check_data_proof("share-data", input).map(|_| ())
}

fn check_share_file(input: &[u8]) -> Outcome {
    let header = parse_share_header(input);
    let proof = match SlotProof::from_share_file(input) {
        Ok(proof) => proof,
        Err(error) => return check_share_error("share-file", &error),
    };
    let Some(data) = input.get(SHARE_DATA_OFFSET..) else {
        return violation("share-file: a proof from a file shorter than its header");
    };
    // The container's data length bounds the share data, as in the parser.
    let data_length = input
        .get(84..92)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX);
    let data = &data[..data_length.min(data.len())];
    match check_data_proof("share-file", data)? {
        Some(same) if same == proof => {}
        other => {
            return violation(format!(
                "share-file: from_share_data of the file's data gives {other:?}"
            ))
        }
    }
    // updates-server reads the seqnum from the same header for its announcements: when both
    // readers accept a file they must agree on it.
    if let Ok(ShareHeader::Mutable { format, seqnum, .. }) = header {
        let same_format = matches!(
            (format, proof.prefix().version()),
            (MutableFormat::Sdmf, 0) | (MutableFormat::Mdmf, 1)
        );
        if seqnum != proof.prefix().seqnum() || !same_format {
            return violation(format!(
                "share-file: updates-server reads seqnum {seqnum} ({format:?}), the proof {} (version {})",
                proof.prefix().seqnum(),
                proof.prefix().version()
            ));
        }
    }
    Ok(())
}

fn check_proof_json(input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    let message = match ServerMessage::parse(&text) {
        Ok(message) => message,
        Err(error) => {
            if error.message().len() > MAX_ERROR_LEN {
                return violation("proof-json: error message longer than 4 KiB");
            }
            return Ok(());
        }
    };
    match ServerMessage::parse(&message.to_json()) {
        Ok(again) if again == message => {}
        other => {
            return violation(format!(
                "proof-json: round trip of {message:?} gave {other:?}"
            ))
        }
    }
    let proofs: Vec<&SlotProof> = match &message {
        ServerMessage::Status(status) => status.proofs.iter().map(|(_, p)| p).collect(),
        ServerMessage::Update(update) => update.proof.iter().collect(),
        ServerMessage::Updates(batch) => batch.proofs.iter().map(|(_, p)| p).collect(),
        ServerMessage::Error(_) => Vec::new(),
    };
    for proof in proofs {
        check_acceptance("proof-json", proof)?;
    }
    Ok(())
}

/// Bits of the `proof-verify` input's flags byte.
pub mod verify_flags {
    /// The proof carries a key.
    pub const WITH_KEY: u8 = 1;
    /// ... and that key is the input's last bytes (else the slot's real key).
    pub const KEY_FROM_INPUT: u8 = 2;
    /// `verify` is given the slot's key as the known key.
    pub const KNOWN_KEY: u8 = 4;
}

/// The `proof-verify` input: `[slot, flags, prefix…, sig_len_hi, sig_len_lo, signature…,
/// key…]`. The slot byte picks a fixture slot (modulo 4); the prefix is 75 bytes when its first
/// byte is 0 (SDMF), 59 when 1 (MDMF), else at most 75; the key part is used with
/// [`verify_flags::KEY_FROM_INPUT`].
pub fn encode_verify_input(
    slot: u8,
    flags: u8,
    prefix: &[u8],
    signature: &[u8],
    key: &[u8],
) -> Vec<u8> {
    let mut out = vec![slot, flags];
    out.extend_from_slice(prefix);
    let len = u16::try_from(signature.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(signature);
    out.extend_from_slice(key);
    out
}

fn check_proof_verify(input: &[u8]) -> Outcome {
    let [slot_byte, flags, rest @ ..] = input else {
        return Ok(());
    };
    let slot = &slots()[usize::from(*slot_byte) % slots().len()];
    let prefix_len = match rest.first() {
        Some(0) => 75,
        Some(1) => 59,
        _ => 75,
    }
    .min(rest.len());
    let (prefix, rest) = rest.split_at(prefix_len);
    let (signature, key) = match rest {
        [hi, lo, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
            rest.split_at(len)
        }
        _ => (rest, &[][..]),
    };
    let key = match (
        flags & verify_flags::WITH_KEY,
        flags & verify_flags::KEY_FROM_INPUT,
    ) {
        (0, _) => None,
        (_, 0) => Some(slot.key.der()),
        _ => Some(key),
    };
    let known = (flags & verify_flags::KNOWN_KEY != 0).then_some(&slot.key);
    let proof = match SlotProof::new(prefix, signature, key) {
        Ok(proof) => proof,
        Err(error) => return check_share_error("proof-verify", &error),
    };
    check_against("proof-verify", &proof, slot, known)?;
    // Without any key there is nothing to verify with: always that error, never another.
    if key.is_none() && known.is_none() {
        match proof.verify(&slot.fingerprint, None) {
            Err(ProofError::NoVerificationKey) => {}
            other => return violation(format!("proof-verify: no key at all gave {other:?}")),
        }
    }
    Ok(())
}
