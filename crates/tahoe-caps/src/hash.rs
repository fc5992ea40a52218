//! Tahoe's tagged hashes: SHA-256d over `netstring(tag) + data`, and the key derivations built on them.

use sha2::{Digest, Sha256};

use crate::StorageIndex;

/// Tag for signature key → write key.
pub const MUTABLE_WRITEKEY_TAG: &[u8] = b"allmydata_mutable_privkey_to_writekey_v1";
/// Tag for write key → read key.
pub const MUTABLE_READKEY_TAG: &[u8] = b"allmydata_mutable_writekey_to_readkey_v1";
/// Tag for read key → storage index of a mutable slot.
pub const MUTABLE_STORAGE_INDEX_TAG: &[u8] = b"allmydata_mutable_readkey_to_storage_index_v1";
/// Tag for CHK encryption key → storage index of an immutable file.
pub const IMMUTABLE_STORAGE_INDEX_TAG: &[u8] = b"allmydata_immutable_key_to_storage_index_v1";

/// Tag for a mutable slot's verification key (DER SubjectPublicKeyInfo) → the fingerprint in
/// its caps (Tahoe's `MUTABLE_PUBKEY_TAG`).
pub const MUTABLE_PUBKEY_TAG: &[u8] = b"allmydata_mutable_pubkey_to_fingerprint_v1";

/// `len:bytes,`: how Tahoe frames a tag so that no tag is a prefix of another.
pub fn netstring(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 24);
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(data);
    out.push(b',');
    out
}

/// `SHA256(SHA256(netstring(tag) + data))`, all 32 bytes.
pub fn tagged_hash(tag: &[u8], data: &[u8]) -> [u8; 32] {
    let mut inner = Sha256::new();
    inner.update(netstring(tag));
    inner.update(data);
    let first = inner.finalize();
    Sha256::digest(first).into()
}

/// The tagged hash truncated to 16 bytes, as Tahoe uses it for keys and storage indexes.
pub fn tagged_hash_16(tag: &[u8], data: &[u8]) -> [u8; 16] {
    let full = tagged_hash(tag, data);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Write key from the serialized signature (private) key.
pub fn mutable_write_key(signature_key: &[u8]) -> [u8; 16] {
    tagged_hash_16(MUTABLE_WRITEKEY_TAG, signature_key)
}

/// Read key from the write key.
pub fn mutable_read_key(write_key: &[u8; 16]) -> [u8; 16] {
    tagged_hash_16(MUTABLE_READKEY_TAG, write_key)
}

/// Storage index of a mutable slot from its read key.
pub fn mutable_storage_index(read_key: &[u8; 16]) -> StorageIndex {
    StorageIndex::from_bytes(tagged_hash_16(MUTABLE_STORAGE_INDEX_TAG, read_key))
}

/// Fingerprint of a mutable slot's verification key, as in its caps: Tahoe's
/// `ssk_pubkey_fingerprint_hash`, the full 32-byte tagged hash of the key's DER
/// SubjectPublicKeyInfo bytes exactly as stored in the slot's shares.
pub fn mutable_pubkey_fingerprint(verification_key_der: &[u8]) -> [u8; 32] {
    tagged_hash(MUTABLE_PUBKEY_TAG, verification_key_der)
}

/// Storage index of an immutable (CHK) file from its encryption key.
pub fn immutable_storage_index(encryption_key: &[u8; 16]) -> StorageIndex {
    StorageIndex::from_bytes(tagged_hash_16(IMMUTABLE_STORAGE_INDEX_TAG, encryption_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubkey_fingerprint_matches_tahoe() {
        // allmydata.util.hashutil.ssk_pubkey_fingerprint_hash(b"not a real key") in Tahoe 1.20.
        let expected = "5c6fac5d1eaec92541a8293c38cdc8dcd7d1c63bc47616164adbcd2081c002bd";
        let got: String = mutable_pubkey_fingerprint(b"not a real key")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn netstring_frames_length() {
        assert_eq!(netstring(b"abc"), b"3:abc,".to_vec());
        assert_eq!(netstring(b""), b"0:,".to_vec());
    }
}
