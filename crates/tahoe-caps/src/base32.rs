//! Tahoe-LAFS base32: the lowercase RFC 3548 alphabet, no padding.
//!
//! Tahoe refuses strings whose unused trailing bits are not zero, so that every byte string has
//! exactly one encoding. We do the same: a cap that decodes must re-encode to the same text.

use thiserror::Error;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Maps an ASCII byte to its 5-bit value, or `0xff` when it is not in the alphabet.
const fn decode_table() -> [u8; 256] {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 32 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
}
const DECODE: [u8; 256] = decode_table();

/// Why a string is not valid Tahoe base32. Never carries the input itself: it may be key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Base32Error {
    /// A character outside `a-z2-7` (upper case, padding and the digits 0, 1, 8, 9 included).
    #[error("character {position} is not in Tahoe's base32 alphabet (a-z, 2-7)")]
    InvalidCharacter {
        /// Zero-based index of the first offending character.
        position: usize,
    },
    /// No byte string encodes to this many characters.
    #[error("{length} characters is not a possible base32 length")]
    ImpossibleLength {
        /// Length of the rejected string.
        length: usize,
    },
    /// The last character sets bits that no byte uses: not the canonical encoding.
    #[error("the last character has non-zero unused bits (not canonical base32)")]
    NonCanonicalTrailingBits,
}

/// Number of base32 characters that encode `bytes` bytes.
pub const fn encoded_len(bytes: usize) -> usize {
    (bytes * 8).div_ceil(5)
}

/// Encodes bytes as lowercase, unpadded base32.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(data.len()));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &byte in data {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[usize::from((buffer >> bits) & 0x1f)] as char);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)] as char);
    }
    out
}

/// Decodes canonical Tahoe base32.
pub fn decode(text: &str) -> Result<Vec<u8>, Base32Error> {
    let input = text.as_bytes();
    // Lengths 1, 3 and 6 mod 8 leave 5 or more spare bits: no byte string encodes to them.
    if matches!(input.len() % 8, 1 | 3 | 6) {
        return Err(Base32Error::ImpossibleLength {
            length: input.len(),
        });
    }
    let mut out = Vec::with_capacity(input.len() * 5 / 8);
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for (position, &c) in input.iter().enumerate() {
        let value = DECODE[usize::from(c)];
        if value == 0xff {
            return Err(Base32Error::InvalidCharacter { position });
        }
        buffer = (buffer << 5) | u16::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    if buffer != 0 {
        return Err(Base32Error::NonCanonicalTrailingBits);
    }
    Ok(out)
}

/// Decodes into a fixed-size array, checking the character count first.
pub(crate) fn decode_exact<const N: usize>(text: &str) -> Result<[u8; N], DecodeExactError> {
    if text.len() != encoded_len(N) {
        return Err(DecodeExactError::WrongLength {
            found: text.len(),
            expected: encoded_len(N),
        });
    }
    let bytes = decode(text).map_err(DecodeExactError::Base32)?;
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeExactError {
    WrongLength { found: usize, expected: usize },
    Base32(Base32Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bytes_take_26_characters() {
        assert_eq!(encode(&[0u8; 16]).len(), 26);
        assert_eq!(encode(&[0u8; 32]).len(), 52);
    }

    #[test]
    fn trailing_bits_must_be_zero() {
        let mut good = "a".repeat(25);
        good.push('q');
        assert!(decode(&good).is_ok());
        let mut bad = "a".repeat(25);
        bad.push('r');
        assert_eq!(decode(&bad), Err(Base32Error::NonCanonicalTrailingBits));
    }

    #[test]
    fn rejects_upper_case_and_digits_outside_alphabet() {
        assert_eq!(
            decode("aB"),
            Err(Base32Error::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            decode("a0"),
            Err(Base32Error::InvalidCharacter { position: 1 })
        );
    }
}
