//! Where the signed prefix, the signature and the verification key lie in a Tahoe-LAFS 1.20
//! mutable share, and how to cut them out of untrusted bytes without panicking.
//!
//! All multi-byte integers are big-endian. Layouts from `allmydata/mutable/layout.py` and
//! `allmydata/storage/mutable.py` of Tahoe-LAFS 1.20.0:
//!
//! **Container** (the share file on a storage node): 32-byte magic, 20-byte write-enabler node
//! id, 32-byte write enabler, `u64` data length at byte 84, `u64` extra-lease offset, four 92-byte
//! lease slots; the share data starts at byte [`SHARE_DATA_OFFSET`] (468) and is
//! data-length bytes long; extra leases follow it.
//!
//! **SDMF share data** (version 0): the 75-byte signed prefix `>BQ32s16sBBQQ` (version, seqnum,
//! root hash, 16-byte salt/IV, k, N, segment size, data length), then the offsets `>LLLLQQ`
//! (signature, share hash chain, block hash tree, share data, encrypted private key, EOF): a
//! 107-byte header. The verification key runs from byte 107 to the signature offset, the
//! signature from there to the share-hash-chain offset.
//!
//! **MDMF share data** (version 1): the 59-byte signed prefix `>BQ32sBBQQ` (version, seqnum,
//! root hash, k, N, segment size, data length), then eight `u64` offsets (encrypted private key,
//! share hash chain, signature, verification key, end of verification key, share data, block
//! hash tree, EOF): a 123-byte header. The signature runs from its offset to the
//! verification-key offset, the key from there to the end-of-key offset.

use thiserror::Error;

/// Byte offset of the share data in a mutable container (share file): 32 + 20 + 32 + 8 + 8 bytes
/// of header and four 92-byte lease slots. Tahoe's `MutableShareFile.DATA_OFFSET`.
pub const SHARE_DATA_OFFSET: usize = 468;

/// Length of an SDMF signed prefix (`>BQ32s16sBBQQ`).
pub const SDMF_PREFIX_LEN: usize = 75;

/// Length of an MDMF signed prefix (`>BQ32sBBQQ`).
pub const MDMF_PREFIX_LEN: usize = 59;

/// SDMF header: the signed prefix plus the offset table `>LLLLQQ`.
pub const SDMF_HEADER_LEN: usize = SDMF_PREFIX_LEN + 4 * 4 + 2 * 8;

/// MDMF header: the signed prefix plus eight `u64` offsets.
pub const MDMF_HEADER_LEN: usize = MDMF_PREFIX_LEN + 8 * 8;

/// Largest verification key accepted, in bytes. Tahoe writes 2048-bit keys, 294 bytes of DER;
/// the `rsa` crate accepts moduli up to 4096 bits, about 550 bytes of DER.
pub const MAX_VERIFICATION_KEY_LEN: usize = 1024;

/// Largest signature accepted, in bytes: an RSA signature is as long as the modulus, 256 bytes
/// for Tahoe's 2048-bit keys and 512 for the largest key the `rsa` crate accepts.
pub const MAX_SIGNATURE_LEN: usize = 512;

/// Magic of a version-1 mutable container: `Tahoe mutable container v1\n` and five fixed bytes.
pub const CONTAINER_MAGIC_V1: [u8; 32] = *b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e";

/// Magic of a version-2 mutable container (what 1.20 writes): `Tahoe mutable container v2\n`
/// and the first five bytes of `tagged_hash("allmydata_mutable_container_header", that text)`.
pub const CONTAINER_MAGIC_V2: [u8; 32] = *b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";

/// Offset of the container's `u64` data length.
const CONTAINER_DATA_LENGTH_OFFSET: usize = 84;

/// The two mutable share formats, told apart by the share data's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotFormat {
    /// Small Distributed Mutable File, version byte 0: one segment, a 16-byte salt (IV) in the
    /// signed prefix. Caps `URI:SSK…`, `URI:DIR2…`.
    Sdmf,
    /// Medium Distributed Mutable File, version byte 1: per-segment salts outside the prefix.
    /// Caps `URI:MDMF…`, `URI:DIR2-MDMF…`.
    Mdmf,
}

impl SlotFormat {
    /// The format of a version byte (`0` SDMF, `1` MDMF).
    pub fn from_version(version: u8) -> Result<Self, ShareError> {
        match version {
            0 => Ok(Self::Sdmf),
            1 => Ok(Self::Mdmf),
            other => Err(ShareError::UnknownVersion(other)),
        }
    }

    /// The version byte that starts this format's share data and signed prefix.
    pub fn version(self) -> u8 {
        match self {
            Self::Sdmf => 0,
            Self::Mdmf => 1,
        }
    }

    /// Length of this format's signed prefix: [`SDMF_PREFIX_LEN`] or [`MDMF_PREFIX_LEN`].
    pub fn prefix_len(self) -> usize {
        match self {
            Self::Sdmf => SDMF_PREFIX_LEN,
            Self::Mdmf => MDMF_PREFIX_LEN,
        }
    }

    /// Length of this format's header (signed prefix plus offset table).
    pub fn header_len(self) -> usize {
        match self {
            Self::Sdmf => SDMF_HEADER_LEN,
            Self::Mdmf => MDMF_HEADER_LEN,
        }
    }
}

impl std::fmt::Display for SlotFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sdmf => "SDMF",
            Self::Mdmf => "MDMF",
        })
    }
}

/// Why bytes could not be read as a share, a signed prefix or the parts of a proof. Each says
/// what was wrong and where, never the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShareError {
    /// The input ends before something that must be there.
    #[error("truncated: {what} needs {needed} bytes, only {available} present")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes it needs (counted from the start of the input).
        needed: u64,
        /// Bytes there are.
        available: usize,
    },
    /// The version byte is neither 0 (SDMF) nor 1 (MDMF).
    #[error("unknown mutable share version {0} (only 0 = SDMF and 1 = MDMF exist)")]
    UnknownVersion(u8),
    /// A signed prefix of the wrong length for the version it starts with.
    #[error("a {format} signed prefix is {expected} bytes, got {len}")]
    PrefixLength {
        /// The format its version byte names.
        format: SlotFormat,
        /// The length that format needs.
        expected: usize,
        /// The length given.
        len: usize,
    },
    /// An offset in the share's offset table points somewhere impossible.
    #[error("bad offsets: {0}")]
    BadOffsets(String),
    /// The verification key is longer than [`MAX_VERIFICATION_KEY_LEN`].
    #[error("verification key of {len} bytes is over the {max}-byte limit")]
    KeyTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The signature is longer than [`MAX_SIGNATURE_LEN`].
    #[error("signature of {len} bytes is over the {max}-byte limit")]
    SignatureTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The signature is empty.
    #[error("the signature is empty")]
    EmptySignature,
    /// The verification key is present but empty.
    #[error("the verification key is empty")]
    EmptyKey,
    /// The file does not start with a mutable container magic.
    #[error("not a mutable share file: no `Tahoe mutable container v1/v2` magic")]
    NotAMutableContainer,
}

/// The signed prefix of one version of a mutable slot: exactly the bytes the writer signed, and
/// the fields parsed from them.
///
/// Parsing checks only the structure (version byte and length). Nothing here is trustworthy
/// until [`SlotProof::verify`](super::SlotProof::verify) has checked the signature over
/// [`as_bytes`](Self::as_bytes); the field values are whatever the writer signed (Tahoe does not
/// sign impossible ones, but a parser has no business judging them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedPrefix {
    bytes: Vec<u8>,
    format: SlotFormat,
    seqnum: u64,
    root_hash: [u8; 32],
    salt: Option<[u8; 16]>,
    k: u8,
    n: u8,
    segment_size: u64,
    data_length: u64,
}

impl SignedPrefix {
    /// Parses exactly one signed prefix: 75 bytes starting with version 0 (SDMF) or 59 bytes
    /// starting with version 1 (MDMF). Anything else is an error; never panics.
    pub fn parse(bytes: &[u8]) -> Result<Self, ShareError> {
        let version = *bytes.first().ok_or(ShareError::Truncated {
            what: "the signed prefix's version byte",
            needed: 1,
            available: 0,
        })?;
        let format = SlotFormat::from_version(version)?;
        if bytes.len() != format.prefix_len() {
            return Err(ShareError::PrefixLength {
                format,
                expected: format.prefix_len(),
                len: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes, "the signed prefix");
        r.skip(1)?;
        let seqnum = r.u64()?;
        let root_hash = r.array::<32>()?;
        let salt = match format {
            SlotFormat::Sdmf => Some(r.array::<16>()?),
            SlotFormat::Mdmf => None,
        };
        let k = r.u8()?;
        let n = r.u8()?;
        let segment_size = r.u64()?;
        let data_length = r.u64()?;
        Ok(Self {
            bytes: bytes.to_vec(),
            format,
            seqnum,
            root_hash,
            salt,
            k,
            n,
            segment_size,
            data_length,
        })
    }

    /// The exact bytes that were signed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SDMF or MDMF (the version byte).
    pub fn format(&self) -> SlotFormat {
        self.format
    }

    /// The version byte: 0 for SDMF, 1 for MDMF.
    pub fn version(&self) -> u8 {
        self.format.version()
    }

    /// The sequence number of this version of the slot (1 for a new slot, +1 per publish).
    pub fn seqnum(&self) -> u64 {
        self.seqnum
    }

    /// Root of the share hash tree: names the content of this version.
    pub fn root_hash(&self) -> &[u8; 32] {
        &self.root_hash
    }

    /// The 16-byte salt (IV) of an SDMF version; `None` for MDMF, whose salts are per segment
    /// and outside the signed prefix.
    pub fn salt(&self) -> Option<&[u8; 16]> {
        self.salt.as_ref()
    }

    /// Shares needed to read this version (Tahoe's `k`).
    pub fn k(&self) -> u8 {
        self.k
    }

    /// Shares written for this version (Tahoe's `N`).
    pub fn n(&self) -> u8 {
        self.n
    }

    /// Segment size in bytes.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Length of the (plaintext) content in bytes.
    pub fn data_length(&self) -> u64 {
        self.data_length
    }
}

/// The three parts of a proof as byte ranges of some share data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProofRanges {
    pub format: SlotFormat,
    pub signature: (usize, usize),
    pub key: (usize, usize),
}

impl ProofRanges {
    /// Bytes of share data the proof needs: the end of whichever part ends last.
    pub fn end(&self) -> usize {
        self.signature
            .1
            .max(self.key.1)
            .max(self.format.header_len())
    }
}

/// Reads the header of some share data and returns where its signature and key lie. Needs only
/// the header (107 or 123 bytes); the ranges are checked to be ordered and bounded, not to lie
/// within `header` (see [`ProofRanges::end`]).
pub(super) fn proof_ranges(header: &[u8]) -> Result<ProofRanges, ShareError> {
    let version = *header.first().ok_or(ShareError::Truncated {
        what: "share data's version byte",
        needed: 1,
        available: 0,
    })?;
    let format = SlotFormat::from_version(version)?;
    let what = match format {
        SlotFormat::Sdmf => "the SDMF header",
        SlotFormat::Mdmf => "the MDMF header",
    };
    let mut r = Reader::new(header, what);
    r.skip(format.prefix_len())?;
    let header_len = format.header_len() as u64;
    let (sig_start, sig_end, key_start, key_end) = match format {
        SlotFormat::Sdmf => {
            let signature = u64::from(r.u32()?);
            let share_hash_chain = u64::from(r.u32()?);
            r.skip(4 + 4 + 8 + 8)?;
            (signature, share_hash_chain, header_len, signature)
        }
        SlotFormat::Mdmf => {
            r.skip(8 + 8)?; // encrypted private key, share hash chain
            let signature = r.u64()?;
            let key = r.u64()?;
            let key_end = r.u64()?;
            r.skip(8 * 3)?;
            (signature, key, key, key_end)
        }
    };
    let limit = |name: &str, offset: u64| -> Result<usize, ShareError> {
        // Far more than a proof ever needs; keeps every later addition in range.
        const MAX_OFFSET: u64 = 1 << 40;
        if offset > MAX_OFFSET {
            return Err(ShareError::BadOffsets(format!(
                "{name} offset {offset} is beyond any share"
            )));
        }
        usize::try_from(offset)
            .map_err(|_| ShareError::BadOffsets(format!("{name} offset {offset} does not fit")))
    };
    if sig_start < header_len || key_start < header_len {
        return Err(ShareError::BadOffsets(format!(
            "signature at {sig_start} or key at {key_start} lies inside the {header_len}-byte \
             {format} header"
        )));
    }
    if sig_end < sig_start {
        return Err(ShareError::BadOffsets(format!(
            "signature ends at {sig_end}, before it starts at {sig_start}"
        )));
    }
    if key_end < key_start {
        return Err(ShareError::BadOffsets(format!(
            "verification key ends at {key_end}, before it starts at {key_start}"
        )));
    }
    let key_len = key_end - key_start;
    if key_len > MAX_VERIFICATION_KEY_LEN as u64 {
        return Err(ShareError::KeyTooLong {
            len: usize::try_from(key_len).unwrap_or(usize::MAX),
            max: MAX_VERIFICATION_KEY_LEN,
        });
    }
    let sig_len = sig_end - sig_start;
    if sig_len > MAX_SIGNATURE_LEN as u64 {
        return Err(ShareError::SignatureTooLong {
            len: usize::try_from(sig_len).unwrap_or(usize::MAX),
            max: MAX_SIGNATURE_LEN,
        });
    }
    Ok(ProofRanges {
        format,
        signature: (
            limit("signature", sig_start)?,
            limit("signature end", sig_end)?,
        ),
        key: (limit("key", key_start)?, limit("key end", key_end)?),
    })
}

/// The share data of a whole mutable share file: checks the magic and returns the bytes from
/// [`SHARE_DATA_OFFSET`] for the container's data length, or up to the end of `file` if it was
/// cut short (a reader may read only the head of a file; the proof parser then reports anything
/// missing).
pub(super) fn share_data_of_file(file: &[u8]) -> Result<&[u8], ShareError> {
    let magic = file.get(..32).ok_or(ShareError::Truncated {
        what: "the container magic",
        needed: 32,
        available: file.len(),
    })?;
    if magic != CONTAINER_MAGIC_V1 && magic != CONTAINER_MAGIC_V2 {
        return Err(ShareError::NotAMutableContainer);
    }
    let mut r = Reader::new(file, "the container header");
    r.skip(CONTAINER_DATA_LENGTH_OFFSET)?;
    let data_length = r.u64()?;
    if file.len() < SHARE_DATA_OFFSET {
        return Err(ShareError::Truncated {
            what: "the container header and leases",
            needed: SHARE_DATA_OFFSET as u64,
            available: file.len(),
        });
    }
    let rest = &file[SHARE_DATA_OFFSET..];
    let len = usize::try_from(data_length).map_or(rest.len(), |n| n.min(rest.len()));
    Ok(&rest[..len])
}

/// A bounds-checked big-endian cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            pos: 0,
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ShareError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(ShareError::Truncated {
                what: self.what,
                needed: (self.pos as u64).saturating_add(n as u64),
                available: self.bytes.len(),
            }),
        }
    }

    fn skip(&mut self, n: usize) -> Result<(), ShareError> {
        self.take(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ShareError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ShareError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, ShareError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ShareError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sdmf_prefix() -> Vec<u8> {
        let mut p = vec![0u8];
        p.extend_from_slice(&7u64.to_be_bytes());
        p.extend_from_slice(&[0xaa; 32]);
        p.extend_from_slice(&[0xbb; 16]);
        p.extend_from_slice(&[3, 10]);
        p.extend_from_slice(&1000u64.to_be_bytes());
        p.extend_from_slice(&999u64.to_be_bytes());
        p
    }

    #[test]
    fn header_lengths_match_tahoe() {
        // struct.calcsize(HEADER) and struct.calcsize(MDMFHEADER) in layout.py.
        assert_eq!(SDMF_HEADER_LEN, 107);
        assert_eq!(MDMF_HEADER_LEN, 123);
    }

    #[test]
    fn v2_magic_is_the_tagged_hash() {
        let text = b"Tahoe mutable container v2\n";
        let hash = tahoe_caps::hash::tagged_hash(b"allmydata_mutable_container_header", text);
        assert_eq!(&CONTAINER_MAGIC_V2[..27], text);
        assert_eq!(&CONTAINER_MAGIC_V2[27..], &hash[..5]);
    }

    #[test]
    fn parses_an_sdmf_prefix() {
        let p = SignedPrefix::parse(&sdmf_prefix()).unwrap();
        assert_eq!(p.format(), SlotFormat::Sdmf);
        assert_eq!(p.seqnum(), 7);
        assert_eq!(p.root_hash(), &[0xaa; 32]);
        assert_eq!(p.salt(), Some(&[0xbb; 16]));
        assert_eq!((p.k(), p.n()), (3, 10));
        assert_eq!((p.segment_size(), p.data_length()), (1000, 999));
        assert_eq!(p.as_bytes(), &sdmf_prefix()[..]);
    }

    #[test]
    fn prefix_errors_are_precise() {
        assert_eq!(
            SignedPrefix::parse(&[]).unwrap_err().to_string(),
            "truncated: the signed prefix's version byte needs 1 bytes, only 0 present"
        );
        assert_eq!(
            SignedPrefix::parse(&[2; 75]).unwrap_err(),
            ShareError::UnknownVersion(2)
        );
        let mut mdmf_claimed = sdmf_prefix();
        mdmf_claimed[0] = 1;
        assert_eq!(
            SignedPrefix::parse(&mdmf_claimed).unwrap_err().to_string(),
            "a MDMF signed prefix is 59 bytes, got 75"
        );
    }

    #[test]
    fn offsets_inside_the_header_are_refused() {
        let mut header = sdmf_prefix();
        header.extend_from_slice(&50u32.to_be_bytes()); // signature inside the header
        header.extend_from_slice(&[0; 4 * 3 + 16]);
        assert!(matches!(
            proof_ranges(&header),
            Err(ShareError::BadOffsets(m)) if m.contains("inside the 107-byte SDMF header")
        ));
    }

    #[test]
    fn huge_offsets_are_refused_not_overflowed() {
        let mut header = vec![1u8];
        header.extend_from_slice(&[0; MDMF_PREFIX_LEN - 1]);
        for offset in [0, 0, u64::MAX - 10, u64::MAX - 5, u64::MAX, 0, 0, 0] {
            header.extend_from_slice(&offset.to_be_bytes());
        }
        assert!(matches!(
            proof_ranges(&header),
            Err(ShareError::BadOffsets(m)) if m.contains("beyond any share")
        ));
    }
}
