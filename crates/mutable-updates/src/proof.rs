//! Verifying a mutable slot's seqnum: a storage or updates server hands a client the slot's
//! signed prefix, the writer's RSA signature over it and (usually) the verification key, and the
//! client checks them against the fingerprint in its cap. A forged share or a hostile server then
//! cannot raise a seqnum, fake one, or claim another slot's: only the holder of the slot's
//! signature (private) key can sign a prefix, and only the key that hashes to the cap's
//! fingerprint is accepted. Pure: no I/O, never panics on any input.
//!
//! # What Tahoe-LAFS 1.20 signs, and how
//!
//! - Every version of a mutable slot starts its share data with a **signed prefix**: SDMF
//!   (version 0) `>BQ32s16sBBQQ` = version, seqnum, root hash, 16-byte salt (IV), k, N, segment
//!   size, data length, 75 bytes; MDMF (version 1) `>BQ32sBBQQ`, the same without the salt,
//!   59 bytes (`allmydata/mutable/layout.py`, `SIGNED_PREFIX` and `MDMFSIGNABLEHEADER`).
//!   [`layout`] has the whole share layout.
//! - The writer signs exactly those bytes with **RSASSA-PSS, SHA-256, MGF1(SHA-256) and a salt
//!   of 32 bytes** (`allmydata/crypto/rsa.py`: `RSA_PSS_SALT_LENGTH = 32`, kept for
//!   compatibility with pycryptopp; Tahoe notes that the "maximum" salt length would break old
//!   signatures). Tahoe verifies with the same fixed 32, so this module does too: the `rsa`
//!   crate's [`rsa::pss::VerifyingKey::new_with_salt_len`] checks the salt length exactly, and
//!   0.9 of that crate has no salt auto-detection anyway. The real shares under
//!   `tests/fixtures/shares/` all carry 32-byte salts.
//! - The **verification key** is stored in every share as the DER `SubjectPublicKeyInfo` of a
//!   2048-bit RSA key (`der_string_from_verifying_key`), and every cap of the slot carries its
//!   **fingerprint**, `tagged_hash("allmydata_mutable_pubkey_to_fingerprint_v1", DER)`
//!   (`allmydata/util/hashutil.py`, `ssk_pubkey_fingerprint_hash`), which Tahoe's servermap
//!   updater checks before trusting a key.
//!
//! # Use
//!
//! ```
//! use mutable_updates::proof::{Freshness, SlotProof};
//! # fn demo(share_file: &[u8], cap: &tahoe_caps::Cap, latest: Option<u64>)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let fingerprint = cap.fingerprint().ok_or("not a mutable cap")?;
//! let proof = SlotProof::from_share_file(share_file)?;
//! let verified = proof.verify(&fingerprint, None)?;
//! match verified.freshness(latest) {
//!     Freshness::Newer => println!("new version {}", verified.seqnum()),
//!     Freshness::Same => {}
//!     Freshness::Older { latest } => println!("replayed {} < {latest}: ignored", verified.seqnum()),
//! }
//! // Keep the key: later proofs may leave it out.
//! let key = verified.verification_key().clone();
//! # let _ = key; Ok(()) }
//! ```
//!
//! # What a proof does not prove
//!
//! A valid proof shows that the slot's writer once signed this seqnum, not that it is the newest:
//! a server can replay an older proof or withhold newer ones. A client must therefore remember the
//! highest seqnum it verified per slot and never go down ([`VerifiedSlot::freshness`]), and can
//! only learn of newer versions from servers that tell it. Two writers publishing at once can also
//! sign two different versions with one seqnum (different root hashes); like Tahoe's servermap,
//! which orders versions by seqnum first, this only compares seqnums.

pub mod layout;

use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use sha2::Sha256;
use thiserror::Error;

pub use layout::{
    ShareError, SignedPrefix, SlotFormat, MAX_SIGNATURE_LEN, MAX_VERIFICATION_KEY_LEN,
    SHARE_DATA_OFFSET,
};

/// PSS salt length of Tahoe's signatures (`allmydata/crypto/rsa.py`, `RSA_PSS_SALT_LENGTH`).
pub const TAHOE_PSS_SALT_LEN: usize = 32;

/// What a server sends so that a client can verify a slot's seqnum: the signed prefix, the
/// signature over it and, unless the client is known to have it, the verification key.
///
/// Built from a share ([`from_share_data`](Self::from_share_data),
/// [`from_share_file`](Self::from_share_file)) or from parts received on the wire
/// ([`new`](Self::new)); the raw parts are available for encoding. Construction checks only
/// structure and sizes: nothing in a `SlotProof` is trustworthy before [`verify`](Self::verify).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotProof {
    prefix: SignedPrefix,
    signature: Vec<u8>,
    verification_key: Option<Vec<u8>>,
}

impl SlotProof {
    /// A proof from its raw parts (e.g. decoded from a message): the exact signed-prefix bytes,
    /// the signature, and the DER verification key if sent. Fails if the prefix is not exactly one
    /// SDMF or MDMF prefix, or a part is empty or over [`MAX_SIGNATURE_LEN`] /
    /// [`MAX_VERIFICATION_KEY_LEN`].
    pub fn new(
        prefix: &[u8],
        signature: &[u8],
        verification_key: Option<&[u8]>,
    ) -> Result<Self, ShareError> {
        let prefix = SignedPrefix::parse(prefix)?;
        check_signature_len(signature.len())?;
        if let Some(key) = verification_key {
            check_key_len(key.len())?;
        }
        Ok(Self {
            prefix,
            signature: signature.to_vec(),
            verification_key: verification_key.map(<[u8]>::to_vec),
        })
    }

    /// Cuts the proof out of a mutable share's data (the container's bytes from
    /// [`SHARE_DATA_OFFSET`] on), SDMF or MDMF by its first byte, following the share's offset
    /// table. The data may end anywhere after the signature and key. Errors name what is missing
    /// or impossible (truncated, unknown version, offsets out of order or out of range, oversized
    /// key or signature).
    pub fn from_share_data(data: &[u8]) -> Result<Self, ShareError> {
        let ranges = layout::proof_ranges(data)?;
        let end = ranges.end();
        if data.len() < end {
            return Err(ShareError::Truncated {
                what: "the signature and verification key",
                needed: end as u64,
                available: data.len(),
            });
        }
        let part = |(start, end): (usize, usize)| data.get(start..end).unwrap_or_default();
        let prefix = data.get(..ranges.format.prefix_len()).unwrap_or_default();
        let key = part(ranges.key);
        if key.is_empty() {
            return Err(ShareError::EmptyKey);
        }
        Self::new(prefix, part(ranges.signature), Some(key))
    }

    /// The same from a whole share file as stored on a storage node
    /// (`storage/shares/<si[..2]>/<si>/<shnum>`): checks the mutable-container magic (v1 or v2),
    /// then reads the share data. The file may be cut short after the proof's parts.
    pub fn from_share_file(file: &[u8]) -> Result<Self, ShareError> {
        Self::from_share_data(layout::share_data_of_file(file)?)
    }

    /// How many bytes of share data (from its start) hold the whole proof, read from the header
    /// alone (at least its first 107 bytes for SDMF, 123 for MDMF): lets a server read just that
    /// much of a large share.
    pub fn share_data_needed(header: &[u8]) -> Result<usize, ShareError> {
        layout::proof_ranges(header).map(|r| r.end())
    }

    /// The parsed signed prefix. Its fields (the seqnum too) are only *claimed* until
    /// [`verify`](Self::verify) succeeds.
    pub fn prefix(&self) -> &SignedPrefix {
        &self.prefix
    }

    /// The exact signed-prefix bytes (75 for SDMF, 59 for MDMF).
    pub fn prefix_bytes(&self) -> &[u8] {
        self.prefix.as_bytes()
    }

    /// The RSA-PSS signature over [`prefix_bytes`](Self::prefix_bytes).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The DER SubjectPublicKeyInfo verification key, if the proof carries one.
    pub fn verification_key(&self) -> Option<&[u8]> {
        self.verification_key.as_deref()
    }

    /// The same proof without its key, for a client that already holds the slot's key
    /// (saves about 294 bytes; the client verifies with its [`VerificationKey`]).
    pub fn without_key(mut self) -> Self {
        self.verification_key = None;
        self
    }

    /// Bytes of the raw parts together: prefix + signature + key (if any).
    pub fn len_bytes(&self) -> usize {
        self.prefix_bytes().len()
            + self.signature.len()
            + self.verification_key.as_ref().map_or(0, Vec::len)
    }

    /// Verifies the proof for the slot whose caps carry `fingerprint`
    /// ([`tahoe_caps::Cap::fingerprint`]) and returns the verified seqnum and prefix.
    ///
    /// The key used is the proof's own key, which must hash to `fingerprint`
    /// ([`ProofError::FingerprintMismatch`] otherwise); or, when the proof carries none,
    /// `known_key`, kept from an earlier [`VerifiedSlot`], which must also belong to
    /// `fingerprint` ([`ProofError::KnownKeyMismatch`]). A proof whose key equals `known_key`
    /// reuses the parsed key. Then the RSA-PSS signature over the exact prefix bytes must verify
    /// ([`ProofError::BadSignature`]). Never panics.
    pub fn verify(
        &self,
        fingerprint: &[u8; 32],
        known_key: Option<&VerificationKey>,
    ) -> Result<VerifiedSlot, ProofError> {
        let key = match (&self.verification_key, known_key) {
            (Some(der), Some(known)) if known.der == *der => known.clone(),
            (Some(der), _) => {
                let actual = tahoe_caps::hash::mutable_pubkey_fingerprint(der);
                if actual != *fingerprint {
                    return Err(ProofError::FingerprintMismatch);
                }
                VerificationKey::parse(der, actual)?
            }
            (None, Some(known)) => known.clone(),
            (None, None) => return Err(ProofError::NoVerificationKey),
        };
        if key.fingerprint != *fingerprint {
            return Err(ProofError::KnownKeyMismatch);
        }
        key.verify(self.prefix_bytes(), &self.signature)?;
        Ok(VerifiedSlot {
            prefix: self.prefix.clone(),
            key,
        })
    }
}

fn check_signature_len(len: usize) -> Result<(), ShareError> {
    match len {
        0 => Err(ShareError::EmptySignature),
        len if len > MAX_SIGNATURE_LEN => Err(ShareError::SignatureTooLong {
            len,
            max: MAX_SIGNATURE_LEN,
        }),
        _ => Ok(()),
    }
}

fn check_key_len(len: usize) -> Result<(), ShareError> {
    match len {
        0 => Err(ShareError::EmptyKey),
        len if len > MAX_VERIFICATION_KEY_LEN => Err(ShareError::KeyTooLong {
            len,
            max: MAX_VERIFICATION_KEY_LEN,
        }),
        _ => Ok(()),
    }
}

/// A slot's verification key, parsed once: its DER bytes, their fingerprint and the RSA-PSS
/// verifier. A client keeps the one from its first [`VerifiedSlot`] so that later proofs can
/// leave the key out and verify without hashing or parsing it again.
#[derive(Clone)]
pub struct VerificationKey {
    der: Vec<u8>,
    fingerprint: [u8; 32],
    modulus_bits: usize,
    modulus_len: usize,
    verifier: rsa::pss::VerifyingKey<Sha256>,
}

impl VerificationKey {
    /// Parses a DER SubjectPublicKeyInfo RSA key (what Tahoe stores in shares) and computes its
    /// fingerprint. Whether it belongs to a given slot is for the caller to check against
    /// [`fingerprint`](Self::fingerprint); [`SlotProof::verify`] does.
    pub fn from_der(der: &[u8]) -> Result<Self, ProofError> {
        check_key_len(der.len()).map_err(|e| ProofError::MalformedKey(e.to_string()))?;
        Self::parse(der, tahoe_caps::hash::mutable_pubkey_fingerprint(der))
    }

    fn parse(der: &[u8], fingerprint: [u8; 32]) -> Result<Self, ProofError> {
        let key = RsaPublicKey::from_public_key_der(der)
            .map_err(|e| ProofError::MalformedKey(e.to_string()))?;
        Ok(Self {
            der: der.to_vec(),
            fingerprint,
            modulus_bits: key.n().bits(),
            modulus_len: key.size(),
            verifier: rsa::pss::VerifyingKey::new_with_salt_len(key, TAHOE_PSS_SALT_LEN),
        })
    }

    /// The DER SubjectPublicKeyInfo bytes, as stored in shares.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Tahoe's fingerprint of this key, as carried in the slot's caps.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Size of the RSA modulus in bits (2048 for every key Tahoe makes).
    pub fn modulus_bits(&self) -> usize {
        self.modulus_bits
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), ProofError> {
        if signature.len() != self.modulus_len {
            return Err(ProofError::SignatureLength {
                len: signature.len(),
                expected: self.modulus_len,
            });
        }
        let signature =
            rsa::pss::Signature::try_from(signature).map_err(|_| ProofError::BadSignature)?;
        self.verifier
            .verify(message, &signature)
            .map_err(|_| ProofError::BadSignature)
    }
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fingerprint = tahoe_caps::base32::encode(&self.fingerprint);
        f.debug_struct("VerificationKey")
            .field("fingerprint", &fingerprint)
            .field("modulus_bits", &self.modulus_bits)
            .finish_non_exhaustive()
    }
}

impl PartialEq for VerificationKey {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for VerificationKey {}

/// The outcome of a successful [`SlotProof::verify`]: a prefix that the slot's writer signed,
/// and the key that proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSlot {
    prefix: SignedPrefix,
    key: VerificationKey,
}

impl VerifiedSlot {
    /// The verified sequence number.
    pub fn seqnum(&self) -> u64 {
        self.prefix.seqnum()
    }

    /// The verified root hash: names the content of this version.
    pub fn root_hash(&self) -> &[u8; 32] {
        self.prefix.root_hash()
    }

    /// SDMF or MDMF.
    pub fn format(&self) -> SlotFormat {
        self.prefix.format()
    }

    /// The whole verified prefix (k, N, sizes, SDMF salt).
    pub fn prefix(&self) -> &SignedPrefix {
        &self.prefix
    }

    /// The slot's key; keep it to verify later proofs that leave the key out.
    pub fn verification_key(&self) -> &VerificationKey {
        &self.key
    }

    /// What this verified seqnum means to a client whose highest verified seqnum for the slot so
    /// far is `latest` (`None`: none yet). The proof cannot know what came before; the caller
    /// keeps `latest` and must ignore [`Freshness::Older`], a replayed old proof, so that no
    /// server can make it go back. Update `latest` only on [`Freshness::Newer`].
    pub fn freshness(&self, latest: Option<u64>) -> Freshness {
        match latest {
            None => Freshness::Newer,
            Some(latest) => match self.seqnum().cmp(&latest) {
                std::cmp::Ordering::Greater => Freshness::Newer,
                std::cmp::Ordering::Equal => Freshness::Same,
                std::cmp::Ordering::Less => Freshness::Older { latest },
            },
        }
    }
}

/// How a verified seqnum compares with the highest one a client verified before
/// ([`VerifiedSlot::freshness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Higher than anything seen (or the first): a new version; remember it.
    Newer,
    /// The seqnum already seen.
    Same,
    /// Lower than one already verified: a replayed older proof. Genuine but stale: ignore it.
    Older {
        /// The highest seqnum verified before.
        latest: u64,
    },
}

/// Why a proof did not verify. Each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The proof carries no verification key and the caller knows none for this slot.
    #[error("the proof carries no verification key and no key of this slot is known")]
    NoVerificationKey,
    /// The proof's key does not hash to the cap's fingerprint: another slot's key or a forged one.
    #[error("wrong key: the proof's verification key does not hash to the cap's fingerprint")]
    FingerprintMismatch,
    /// The known key given to [`SlotProof::verify`] belongs to another slot.
    #[error("wrong known key: the known verification key belongs to another fingerprint")]
    KnownKeyMismatch,
    /// The key hashes to the fingerprint but is not a DER SubjectPublicKeyInfo RSA key the `rsa`
    /// crate accepts (at most 4096 bits).
    #[error("malformed verification key: {0}")]
    MalformedKey(String),
    /// The signature is not as long as the key's modulus.
    #[error("signature is {len} bytes, the key needs exactly {expected}")]
    SignatureLength {
        /// Its length.
        len: usize,
        /// The key's modulus length in bytes.
        expected: usize,
    },
    /// The RSA-PSS signature does not verify over the signed prefix with the slot's key: the
    /// prefix (seqnum, root hash, …) or the signature was altered.
    #[error("bad signature: the RSA-PSS signature over the signed prefix does not verify")]
    BadSignature,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SDMF_FILE: &[u8] = include_bytes!("../tests/fixtures/shares/sdmf-file.v1.sh0");
    const MDMF_FILE: &[u8] = include_bytes!("../tests/fixtures/shares/mdmf-file.v1.sh0");

    fn fingerprint_of(proof: &SlotProof) -> [u8; 32] {
        tahoe_caps::hash::mutable_pubkey_fingerprint(proof.verification_key().unwrap())
    }

    #[test]
    fn real_shares_have_tahoe_sizes() {
        for (file, format) in [(SDMF_FILE, SlotFormat::Sdmf), (MDMF_FILE, SlotFormat::Mdmf)] {
            let proof = SlotProof::from_share_file(file).unwrap();
            assert_eq!(proof.prefix().format(), format);
            assert_eq!(proof.signature().len(), 256);
            assert_eq!(proof.verification_key().unwrap().len(), 294);
            let verified = proof.verify(&fingerprint_of(&proof), None).unwrap();
            assert_eq!(verified.verification_key().modulus_bits(), 2048);
            let data = &file[SHARE_DATA_OFFSET..];
            let needed = SlotProof::share_data_needed(&data[..123]).unwrap();
            assert_eq!(SlotProof::from_share_data(&data[..needed]).unwrap(), proof);
            assert!(SlotProof::from_share_data(&data[..needed - 1]).is_err());
        }
    }

    #[test]
    fn a_share_of_another_format_is_refused() {
        let mut file = SDMF_FILE.to_vec();
        file[0] = b't';
        assert_eq!(
            SlotProof::from_share_file(&file).unwrap_err(),
            ShareError::NotAMutableContainer
        );
        assert!(matches!(
            SlotProof::from_share_file(&SDMF_FILE[..400]).unwrap_err(),
            ShareError::Truncated { .. }
        ));
    }

    #[test]
    fn malformed_key_that_matches_its_fingerprint_is_reported() {
        let proof = SlotProof::from_share_file(SDMF_FILE).unwrap();
        let garbage = [0x30u8, 0x03, 0x02, 0x01, 0x00];
        let forged =
            SlotProof::new(proof.prefix_bytes(), proof.signature(), Some(&garbage)).unwrap();
        let fingerprint = tahoe_caps::hash::mutable_pubkey_fingerprint(&garbage);
        assert!(matches!(
            forged.verify(&fingerprint, None),
            Err(ProofError::MalformedKey(_))
        ));
    }

    #[test]
    fn short_signature_is_a_length_error() {
        let proof = SlotProof::from_share_file(MDMF_FILE).unwrap();
        let short = SlotProof::new(
            proof.prefix_bytes(),
            &proof.signature()[1..],
            proof.verification_key(),
        )
        .unwrap();
        assert_eq!(
            short.verify(&fingerprint_of(&proof), None).unwrap_err(),
            ProofError::SignatureLength {
                len: 255,
                expected: 256
            }
        );
    }

    #[test]
    fn freshness_orders_by_seqnum() {
        let proof = SlotProof::from_share_file(SDMF_FILE).unwrap();
        let verified = proof.verify(&fingerprint_of(&proof), None).unwrap();
        assert_eq!(verified.seqnum(), 1);
        assert_eq!(verified.freshness(None), Freshness::Newer);
        assert_eq!(verified.freshness(Some(0)), Freshness::Newer);
        assert_eq!(verified.freshness(Some(1)), Freshness::Same);
        assert_eq!(verified.freshness(Some(2)), Freshness::Older { latest: 2 });
    }

    #[test]
    fn debug_shows_the_fingerprint_not_the_key() {
        let proof = SlotProof::from_share_file(SDMF_FILE).unwrap();
        let key = VerificationKey::from_der(proof.verification_key().unwrap()).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("modulus_bits: 2048"), "{debug}");
        assert!(debug.contains(&tahoe_caps::base32::encode(key.fingerprint())));
    }
}
