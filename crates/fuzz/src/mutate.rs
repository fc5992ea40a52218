//! The structure-aware mutator: byte-level damage plus edits that know what the formats look
//! like (separators, quotes, brackets, numbers, base32 case, UTF-8 sequences).

use rand::rngs::StdRng;
use rand::Rng;

/// Tokens every format gets: JSON and cap punctuation, edge-case numbers, awkward Unicode and
/// invalid UTF-8.
const COMMON_TOKENS: &[&[u8]] = &[
    b":",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"\n",
    b"\r\n",
    b"\t",
    b" ",
    b"0",
    b"-1",
    b"-0",
    b"1e999",
    b"0.5",
    b"18446744073709551615",
    b"18446744073709551616",
    b"9223372036854775808",
    b"340282366920938463463374607431768211456",
    b"null",
    b"true",
    "\u{feff}".as_bytes(),
    "\u{202e}".as_bytes(),
    "\u{10ffff}".as_bytes(),
    "é".as_bytes(),
    "\u{0}".as_bytes(),
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xff",
];

/// Interesting single bytes.
const SPECIAL_BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'"', b':', b'/', b'#', b'@', b'\n', b'-',
];

/// Interesting 64-bit values for binary fields.
const SPECIAL_WORDS: &[u64] = &[
    0,
    1,
    2,
    8,
    9,
    0x7f,
    0xff,
    u32::MAX as u64,
    i64::MAX as u64,
    u64::MAX - 1,
    u64::MAX,
];

/// Makes new inputs from corpus entries.
#[derive(Debug, Clone)]
pub struct Mutator {
    dictionary: Vec<&'static [u8]>,
    max_len: usize,
}

impl Mutator {
    /// A mutator that also inserts the target's `dictionary` and keeps inputs to `max_len` bytes.
    pub fn new(dictionary: &'static [&'static [u8]], max_len: usize) -> Self {
        let mut all: Vec<&'static [u8]> = dictionary.to_vec();
        all.extend_from_slice(COMMON_TOKENS);
        Self {
            dictionary: all,
            max_len: max_len.max(1),
        }
    }

    /// A new input: `base` with one to four stacked edits; `other` is material for splices.
    pub fn mutate(&self, base: &[u8], other: &[u8], rng: &mut StdRng) -> Vec<u8> {
        let mut data = base.to_vec();
        let rounds = 1 + rng.gen_range(0..4);
        for _ in 0..rounds {
            self.edit(&mut data, other, rng);
        }
        data.truncate(self.max_len);
        data
    }

    fn edit(&self, data: &mut Vec<u8>, other: &[u8], rng: &mut StdRng) {
        match rng.gen_range(0..16) {
            0 => flip_bit(data, rng),
            1 => set_byte(data, rng),
            2 | 3 => self.insert_token(data, rng),
            4 => self.replace_with_token(data, rng),
            5 => delete_range(data, rng),
            6 => repeat_range(data, rng, self.max_len),
            7 => truncate(data, rng),
            8 => splice(data, other, rng),
            9 => insert_from(data, other, rng),
            10 => big_number(data, rng),
            11 => swap_case(data, rng),
            12 => nest(data, rng, self.max_len),
            13 => put_word(data, rng),
            14 => insert_unicode(data, rng),
            _ => swap_ranges(data, rng),
        }
    }

    fn insert_token(&self, data: &mut Vec<u8>, rng: &mut StdRng) {
        let token = self.dictionary[rng.gen_range(0..self.dictionary.len())];
        let at = rng.gen_range(0..=data.len());
        data.splice(at..at, token.iter().copied());
    }

    fn replace_with_token(&self, data: &mut Vec<u8>, rng: &mut StdRng) {
        let token = self.dictionary[rng.gen_range(0..self.dictionary.len())];
        let (start, end) = range(data.len(), rng);
        data.splice(start..end, token.iter().copied());
    }
}

/// A random `start..end` inside `len` (possibly empty), biased to short ranges.
fn range(len: usize, rng: &mut StdRng) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    let start = rng.gen_range(0..len);
    let longest = (len - start).min(if rng.gen_bool(0.8) { 16 } else { len });
    (start, start + rng.gen_range(0..=longest))
}

fn flip_bit(data: &mut [u8], rng: &mut StdRng) {
    if !data.is_empty() {
        let at = rng.gen_range(0..data.len());
        data[at] ^= 1 << rng.gen_range(0..8);
    }
}

fn set_byte(data: &mut [u8], rng: &mut StdRng) {
    if !data.is_empty() {
        let at = rng.gen_range(0..data.len());
        data[at] = if rng.gen_bool(0.5) {
            SPECIAL_BYTES[rng.gen_range(0..SPECIAL_BYTES.len())]
        } else {
            rng.gen()
        };
    }
}

fn delete_range(data: &mut Vec<u8>, rng: &mut StdRng) {
    let (start, end) = range(data.len(), rng);
    data.drain(start..end);
}

fn repeat_range(data: &mut Vec<u8>, rng: &mut StdRng, max_len: usize) {
    let (start, end) = range(data.len(), rng);
    if start == end {
        return;
    }
    let piece = data[start..end].to_vec();
    let times = if rng.gen_bool(0.1) {
        // Now and then a long run, to reach size and depth limits.
        max_len / piece.len()
    } else {
        rng.gen_range(1..8)
    };
    let mut repeated = Vec::with_capacity(piece.len() * times);
    for _ in 0..times {
        if repeated.len() + data.len() >= max_len {
            break;
        }
        repeated.extend_from_slice(&piece);
    }
    data.splice(end..end, repeated);
}

fn truncate(data: &mut Vec<u8>, rng: &mut StdRng) {
    if !data.is_empty() {
        let keep = rng.gen_range(0..data.len());
        data.truncate(keep);
    }
}

/// The head of `data` with the tail of `other`.
fn splice(data: &mut Vec<u8>, other: &[u8], rng: &mut StdRng) {
    let cut = rng.gen_range(0..=data.len());
    let from = rng.gen_range(0..=other.len());
    data.truncate(cut);
    data.extend_from_slice(&other[from..]);
}

fn insert_from(data: &mut Vec<u8>, other: &[u8], rng: &mut StdRng) {
    let (start, end) = range(other.len(), rng);
    let at = rng.gen_range(0..=data.len());
    data.splice(at..at, other[start..end].iter().copied());
}

/// Replaces a run of ASCII digits (or inserts one) with an edge-case decimal number.
fn big_number(data: &mut Vec<u8>, rng: &mut StdRng) {
    let numbers: [&[u8]; 8] = [
        b"0",
        b"1",
        b"65535",
        b"65536",
        b"4294967296",
        b"18446744073709551615",
        b"18446744073709551616",
        b"99999999999999999999999999999999999999",
    ];
    let number = numbers[rng.gen_range(0..numbers.len())];
    let digits: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit())
        .collect();
    if digits.is_empty() {
        let at = rng.gen_range(0..=data.len());
        data.splice(at..at, number.iter().copied());
        return;
    }
    let start = digits[rng.gen_range(0..digits.len())];
    let end = (start..data.len())
        .find(|&i| !data[i].is_ascii_digit())
        .unwrap_or(data.len());
    data.splice(start..end, number.iter().copied());
}

/// Base32 is lower case in Tahoe: upper case letters test case handling.
fn swap_case(data: &mut [u8], rng: &mut StdRng) {
    let (start, end) = range(data.len(), rng);
    for byte in &mut data[start..end] {
        if byte.is_ascii_alphabetic() {
            *byte ^= 0x20;
        }
    }
}

/// Wraps a range in brackets or braces, sometimes many times deep.
fn nest(data: &mut Vec<u8>, rng: &mut StdRng, max_len: usize) {
    let (open, close) = if rng.gen_bool(0.5) {
        (b'[', b']')
    } else {
        (b'{', b'}')
    };
    let depth = if rng.gen_bool(0.1) {
        (max_len.saturating_sub(data.len()) / 2).min(100_000)
    } else {
        rng.gen_range(1..4)
    };
    let (start, end) = range(data.len(), rng);
    data.splice(end..end, std::iter::repeat_n(close, depth));
    data.splice(start..start, std::iter::repeat_n(open, depth));
}

/// Overwrites eight bytes with a big-endian edge-case word: binary length and seqnum fields.
fn put_word(data: &mut [u8], rng: &mut StdRng) {
    if data.len() < 8 {
        return;
    }
    let word = SPECIAL_WORDS[rng.gen_range(0..SPECIAL_WORDS.len())];
    // Share headers keep their numbers at fixed offsets; hit those often.
    let at = match rng.gen_range(0..4) {
        0 if data.len() >= 92 => 84,
        1 if data.len() >= 477 => 469,
        _ => rng.gen_range(0..=data.len() - 8),
    };
    data[at..at + 8].copy_from_slice(&word.to_be_bytes());
}

fn insert_unicode(data: &mut Vec<u8>, rng: &mut StdRng) {
    let c = loop {
        let candidate = match rng.gen_range(0..4) {
            0 => rng.gen_range(0x80..0x800),
            1 => rng.gen_range(0x800..0x10000),
            2 => rng.gen_range(0x10000..0x110000),
            _ => rng.gen_range(0..0x20),
        };
        if let Some(c) = char::from_u32(candidate) {
            break c;
        }
    };
    let mut buffer = [0u8; 4];
    let at = rng.gen_range(0..=data.len());
    data.splice(at..at, c.encode_utf8(&mut buffer).bytes());
}

fn swap_ranges(data: &mut [u8], rng: &mut StdRng) {
    if data.len() < 2 {
        return;
    }
    let a = rng.gen_range(0..data.len());
    let b = rng.gen_range(0..data.len());
    data.swap(a, b);
}
