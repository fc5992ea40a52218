//! Reading the header of one share file on a Tahoe storage node.
//!
//! A mutable share file (a "container") starts with a 32-byte magic, then the write-enabler node id
//! (20), the write enabler (32), the data length (u64), the extra-lease offset (u64) and four lease
//! slots of 92 bytes; the share data starts at byte [`DATA_OFFSET`] = 468 in both container versions.
//! The share data starts with a version byte (0 = SDMF, 1 = MDMF) and the big-endian u64 sequence
//! number, so everything we need sits in the first [`MUTABLE_HEADER_LEN`] = 477 bytes. No key is
//! needed to read it.
//!
//! An immutable share file starts with a 4-byte big-endian version (1 or 2) instead, which cannot be
//! mistaken for the ASCII magic.
//!
//! Share files are written in place, so a reader can catch one mid-creation: shorter than the
//! header, or with the data length still zero. Those are reported as [`ShareError::Truncated`] or
//! [`ShareError::Incomplete`], never as a sequence number.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use mutable_updates::proof::SlotProof;
use thiserror::Error;

/// Magic of a version-1 mutable container: the text, then five fixed bytes chosen by Tahoe.
pub const MUTABLE_MAGIC_V1: &[u8; 32] = b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e";

/// Magic of a version-2 mutable container (what Tahoe 1.20 writes): the text, then the first five
/// bytes of the tagged hash `allmydata_mutable_container_header` over the text (`c355219925`, see
/// `tagged_hashes` in `tests/vectors/caps.json`). Unlike v1, the tail is not `7509 44038e`.
pub const MUTABLE_MAGIC_V2: &[u8; 32] = b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";

/// Offset of the share data in a mutable container, both versions.
pub const DATA_OFFSET: usize = 468;

/// Bytes needed to know a mutable share's sequence number: container header, version byte, seqnum.
pub const MUTABLE_HEADER_LEN: usize = DATA_OFFSET + 1 + 8;

/// Bytes needed to know an immutable share's version.
pub const IMMUTABLE_HEADER_LEN: usize = 4;

/// Offset of the big-endian u64 data length in a mutable container.
const DATA_LENGTH_OFFSET: usize = 32 + 20 + 32;

/// Shares of a mutable file: the layout of the share data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MutableFormat {
    /// Small Distributed Mutable File (share data version byte 0).
    Sdmf,
    /// Medium Distributed Mutable File (share data version byte 1).
    Mdmf,
}

/// What the first bytes of a share file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareHeader {
    /// A share of a mutable slot.
    Mutable {
        /// The container version from the magic, 1 or 2.
        container_version: u8,
        /// SDMF or MDMF.
        format: MutableFormat,
        /// The slot's sequence number as this share holds it.
        seqnum: u64,
    },
    /// A share of an immutable file.
    Immutable {
        /// The immutable container version, 1 or 2.
        version: u32,
    },
}

/// Why a share header could not be read.
#[derive(Debug, Error)]
pub enum ShareError {
    /// Opening or reading the file failed (vanished, permission denied, …).
    #[error("cannot read share file {path}: {source}")]
    Io {
        /// The share file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Shorter than its header: most likely caught while being created.
    #[error("share is truncated: {len} bytes, its header needs {needed}")]
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes the header needs.
        needed: usize,
    },
    /// A mutable container whose share data is not written yet (data length below the
    /// version byte + seqnum, or seqnum 0, which Tahoe never publishes: its first seqnum is 1).
    #[error("mutable share has no share data yet (data length {data_length}, seqnum {seqnum})")]
    Incomplete {
        /// The container's data length field.
        data_length: u64,
        /// The seqnum bytes as found.
        seqnum: u64,
    },
    /// Neither a mutable container magic nor an immutable version.
    #[error("unknown share magic {found:?}")]
    UnknownMagic {
        /// The first bytes (up to 32), escaped as ASCII.
        found: String,
    },
    /// A mutable container whose share data version byte is neither SDMF (0) nor MDMF (1).
    #[error("unknown mutable share format byte {0}")]
    UnknownFormat(u8),
}

/// Reads the first bytes of a share file and parses them; reads at most [`MUTABLE_HEADER_LEN`] bytes.
pub fn read_share_header(path: &Path) -> Result<ShareHeader, ShareError> {
    let io_error = |source| ShareError::Io {
        path: path.to_owned(),
        source,
    };
    // Opening a FIFO for reading blocks until a writer comes, which would stall the watcher (and
    // the server's start-up scan) for good: only regular files are opened.
    let metadata = std::fs::metadata(path).map_err(io_error)?;
    if !metadata.is_file() {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mut file = File::open(path).map_err(io_error)?;
    let mut buf = [0u8; MUTABLE_HEADER_LEN];
    let mut filled = 0;
    // A short read is no end of file: loop until the header is full or the file ends.
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    parse_share_header(&buf[..filled])
}

/// Most bytes read from the start of a share file to find its proof: the container header, the
/// share data's header, and (MDMF) the encrypted private key and share hash chain that lie before
/// the signature and key. Real shares need about 1 KiB (SDMF) or 2.5 KiB (MDMF); a share whose
/// offsets point further is served without a proof.
pub const MAX_PROOF_READ: usize = 64 * 1024;

/// First read of a share: enough for the header and, for nearly every real share, its proof.
const FIRST_READ: usize = 4096;

/// What one read of a share file found: its header and, for a mutable share, the slot proof of
/// the version it holds (`None` when the share's proof cannot be cut out: an old or damaged share,
/// or one caught mid-write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRead {
    /// The header, as [`read_share_header`] gives it.
    pub header: ShareHeader,
    /// The signed prefix, signature and verification key of a mutable share, unverified.
    pub proof: Option<SlotProof>,
}

/// Reads a share's header and, for a mutable share, its slot proof: at most [`MAX_PROOF_READ`]
/// bytes, in one read for nearly every share. An unreadable proof is no error (the seqnum is
/// then served unproven); an unreadable header is, as in [`read_share_header`].
pub fn read_share(path: &Path) -> Result<ShareRead, ShareError> {
    let io_error = |source| ShareError::Io {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(io_error)?;
    if !metadata.is_file() {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mut file = File::open(path).map_err(io_error)?;
    let mut buf = vec![0u8; FIRST_READ];
    let filled = fill(&mut file, &mut buf).map_err(io_error)?;
    buf.truncate(filled);
    let header = parse_share_header(&buf)?;
    if !matches!(header, ShareHeader::Mutable { .. }) {
        return Ok(ShareRead {
            header,
            proof: None,
        });
    }
    let data = buf.get(DATA_OFFSET..).unwrap_or_default();
    let needed = SlotProof::share_data_needed(data)
        .ok()
        .and_then(|n| n.checked_add(DATA_OFFSET))
        .filter(|&n| n <= MAX_PROOF_READ);
    let Some(needed) = needed else {
        return Ok(ShareRead {
            header,
            proof: None,
        });
    };
    if needed > buf.len() && filled == FIRST_READ {
        let have = buf.len();
        buf.resize(needed, 0);
        let more = fill(&mut file, &mut buf[have..]).map_err(io_error)?;
        buf.truncate(have + more);
    }
    let proof = SlotProof::from_share_file(&buf).ok();
    Ok(ShareRead { header, proof })
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn fill(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether an I/O error is a passing shortage (descriptors, memory, a busy or failing device)
/// after which the same read is worth trying again, rather than a fact about the file.
pub fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::EAGAIN
                | libc::EIO
                | libc::ENOMEM
                | libc::EINTR
                | libc::ENOBUFS
        )
    ) || matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::TimedOut
    )
}

/// Parses the beginning of a share file. Pure and total: any input gives a header or an error.
pub fn parse_share_header(bytes: &[u8]) -> Result<ShareHeader, ShareError> {
    let container_version = if bytes.starts_with(MUTABLE_MAGIC_V2) {
        Some(2)
    } else if bytes.starts_with(MUTABLE_MAGIC_V1) {
        Some(1)
    } else {
        None
    };
    if let Some(container_version) = container_version {
        return parse_mutable(bytes, container_version);
    }
    // A container caught within its first 32 bytes: a prefix of a known magic.
    if bytes.len() < MUTABLE_MAGIC_V1.len()
        && (MUTABLE_MAGIC_V1.starts_with(bytes) || MUTABLE_MAGIC_V2.starts_with(bytes))
    {
        return Err(ShareError::Truncated {
            len: bytes.len(),
            needed: MUTABLE_HEADER_LEN,
        });
    }
    match bytes.first_chunk::<IMMUTABLE_HEADER_LEN>() {
        Some(head) => match u32::from_be_bytes(*head) {
            version @ (1 | 2) => Ok(ShareHeader::Immutable { version }),
            _ => Err(unknown_magic(bytes)),
        },
        // Shorter than 4 bytes and no magic prefix: only 0, 1 or 2 leading zero bytes could still
        // become an immutable version; anything else is garbage already.
        None if bytes.iter().all(|&b| b == 0) => Err(ShareError::Truncated {
            len: bytes.len(),
            needed: IMMUTABLE_HEADER_LEN,
        }),
        None => Err(unknown_magic(bytes)),
    }
}

fn parse_mutable(bytes: &[u8], container_version: u8) -> Result<ShareHeader, ShareError> {
    let Some(header) = bytes.first_chunk::<MUTABLE_HEADER_LEN>() else {
        return Err(ShareError::Truncated {
            len: bytes.len(),
            needed: MUTABLE_HEADER_LEN,
        });
    };
    let data_length = be_u64(header, DATA_LENGTH_OFFSET);
    let seqnum = be_u64(header, DATA_OFFSET + 1);
    if data_length < (MUTABLE_HEADER_LEN - DATA_OFFSET) as u64 || seqnum == 0 {
        return Err(ShareError::Incomplete {
            data_length,
            seqnum,
        });
    }
    let format = match header[DATA_OFFSET] {
        0 => MutableFormat::Sdmf,
        1 => MutableFormat::Mdmf,
        other => return Err(ShareError::UnknownFormat(other)),
    };
    Ok(ShareHeader::Mutable {
        container_version,
        format,
        seqnum,
    })
}

/// Big-endian u64 at `offset`; the callers pass offsets inside the fixed-size header.
fn be_u64(header: &[u8; MUTABLE_HEADER_LEN], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&header[offset..offset + 8]);
    u64::from_be_bytes(word)
}

fn unknown_magic(bytes: &[u8]) -> ShareError {
    let shown = &bytes[..bytes.len().min(MUTABLE_MAGIC_V1.len())];
    ShareError::UnknownMagic {
        found: shown.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mutable container in Tahoe's layout with the given seqnum and share data version byte.
    fn mutable_share(magic: &[u8; 32], format_byte: u8, seqnum: u64, total_len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; total_len.max(MUTABLE_HEADER_LEN)];
        bytes[..32].copy_from_slice(magic);
        bytes[32..52].fill(0x11); // write-enabler node id
        bytes[52..84].fill(0x22); // write enabler
        let data_length = (bytes.len() - DATA_OFFSET) as u64;
        bytes[84..92].copy_from_slice(&data_length.to_be_bytes());
        let file_len = bytes.len() as u64;
        bytes[92..100].copy_from_slice(&file_len.to_be_bytes());
        bytes[DATA_OFFSET] = format_byte;
        bytes[DATA_OFFSET + 1..MUTABLE_HEADER_LEN].copy_from_slice(&seqnum.to_be_bytes());
        bytes
    }

    #[test]
    fn v2_magic_tail_is_the_tagged_hash_of_the_text() {
        let text = b"Tahoe mutable container v2\n";
        let hash = tahoe_caps::hash::tagged_hash(b"allmydata_mutable_container_header", text);
        assert_eq!(&MUTABLE_MAGIC_V2[..27], text);
        assert_eq!(&MUTABLE_MAGIC_V2[27..], &hash[..5]);
    }

    #[test]
    fn parses_mutable_v1_and_v2() {
        let v2 = mutable_share(MUTABLE_MAGIC_V2, 1, 0x0102_0304_0506_0708, 600);
        assert_eq!(
            parse_share_header(&v2).unwrap(),
            ShareHeader::Mutable {
                container_version: 2,
                format: MutableFormat::Mdmf,
                seqnum: 0x0102_0304_0506_0708
            }
        );
        let v1 = mutable_share(MUTABLE_MAGIC_V1, 0, 7, MUTABLE_HEADER_LEN);
        assert_eq!(
            parse_share_header(&v1).unwrap(),
            ShareHeader::Mutable {
                container_version: 1,
                format: MutableFormat::Sdmf,
                seqnum: 7
            }
        );
    }

    #[test]
    fn parses_immutable() {
        for version in [1u32, 2] {
            let mut bytes = version.to_be_bytes().to_vec();
            bytes.extend_from_slice(&[0; 16]);
            assert_eq!(
                parse_share_header(&bytes).unwrap(),
                ShareHeader::Immutable { version }
            );
        }
        assert!(matches!(
            parse_share_header(&3u32.to_be_bytes()),
            Err(ShareError::UnknownMagic { .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_mutable_share_is_truncated_not_a_seqnum() {
        let full = mutable_share(MUTABLE_MAGIC_V2, 0, 5, MUTABLE_HEADER_LEN);
        for len in 0..MUTABLE_HEADER_LEN {
            match parse_share_header(&full[..len]) {
                Err(ShareError::Truncated { len: found, .. }) => assert_eq!(found, len),
                other => panic!("prefix of {len} bytes gave {other:?}"),
            }
        }
    }

    #[test]
    fn container_without_share_data_is_incomplete() {
        // What Tahoe leaves right after creating a container: data length 0.
        let mut bytes = mutable_share(MUTABLE_MAGIC_V2, 0, 0, MUTABLE_HEADER_LEN);
        bytes[84..92].copy_from_slice(&0u64.to_be_bytes());
        assert!(matches!(
            parse_share_header(&bytes),
            Err(ShareError::Incomplete { data_length: 0, .. })
        ));
        // Data length set but the seqnum not written yet.
        let hole = mutable_share(MUTABLE_MAGIC_V2, 0, 0, 600);
        assert!(matches!(
            parse_share_header(&hole),
            Err(ShareError::Incomplete { seqnum: 0, .. })
        ));
    }

    #[test]
    fn unknown_magic_and_format_are_named() {
        let err = parse_share_header(b"Tahoe mutable container v3\n\x00\x00\x00\x00\x00 and more")
            .unwrap_err();
        assert!(
            err.to_string().contains("Tahoe mutable container v3"),
            "{err}"
        );
        let bad_tail = mutable_share(
            b"Tahoe mutable container v2\n\x75\x09\x44\x03\x8e",
            0,
            1,
            500,
        );
        assert!(matches!(
            parse_share_header(&bad_tail),
            Err(ShareError::UnknownMagic { .. })
        ));
        let bad_format = mutable_share(MUTABLE_MAGIC_V2, 7, 1, 500);
        assert!(matches!(
            parse_share_header(&bad_format),
            Err(ShareError::UnknownFormat(7))
        ));
        assert!(matches!(
            parse_share_header(b"xy"),
            Err(ShareError::UnknownMagic { .. })
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep standing in for a fuzzer: every length, several fill bytes,
        // with and without a magic in front.
        for fill in [0u8, 1, 0x54, 0xff] {
            for len in 0..=MUTABLE_HEADER_LEN + 2 {
                let mut bytes = vec![fill; len];
                let _ = parse_share_header(&bytes);
                let magic_len = len.min(32);
                bytes[..magic_len].copy_from_slice(&MUTABLE_MAGIC_V1[..magic_len]);
                let _ = parse_share_header(&bytes);
            }
        }
    }

    #[test]
    fn read_share_header_reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0");
        std::fs::write(&path, mutable_share(MUTABLE_MAGIC_V2, 1, 42, 4096)).unwrap();
        assert!(matches!(
            read_share_header(&path).unwrap(),
            ShareHeader::Mutable { seqnum: 42, .. }
        ));
        std::fs::write(&path, &MUTABLE_MAGIC_V2[..]).unwrap();
        assert!(matches!(
            read_share_header(&path),
            Err(ShareError::Truncated { len: 32, .. })
        ));
        assert!(matches!(
            read_share_header(&dir.path().join("missing")),
            Err(ShareError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound
        ));
    }
}
