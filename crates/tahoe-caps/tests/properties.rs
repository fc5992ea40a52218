//! Property tests: base32 round trips, and the cap parser never panics, round-trips what it
//! accepts, and never repeats key material in its errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use tahoe_caps::base32::{self, Base32Error};
use tahoe_caps::{Cap, CapError, CapFormat, CapKind, CapRole};

/// A valid cap string of `kind`, built from arbitrary key bytes.
fn build_cap(
    kind: CapKind,
    key: [u8; 16],
    hash: [u8; 32],
    numbers: (u64, u64, u64),
    literal: &[u8],
) -> String {
    let (key, hash) = (base32::encode(&key), base32::encode(&hash));
    let (needed, total, size) = numbers;
    match kind.format() {
        CapFormat::Sdmf | CapFormat::Mdmf => format!("{}{key}:{hash}", kind.prefix()),
        CapFormat::Chk => format!("{}{key}:{hash}:{needed}:{total}:{size}", kind.prefix()),
        CapFormat::Literal => format!("{}{}", kind.prefix(), base32::encode(literal)),
    }
}

fn any_kind() -> impl Strategy<Value = CapKind> {
    (0..CapKind::ALL.len()).prop_map(|index| CapKind::ALL[index])
}

fn valid_cap() -> impl Strategy<Value = (CapKind, String)> {
    (
        any_kind(),
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        any::<(u64, u64, u64)>(),
        proptest::collection::vec(any::<u8>(), 0..60),
    )
        .prop_map(|(kind, key, hash, numbers, literal)| {
            (kind, build_cap(kind, key, hash, numbers, &literal))
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize),
    Truncate(usize),
    DuplicateFrom(usize),
    Prepend(&'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let stray = prop_oneof![
        Just(':'),
        Just('\n'),
        Just('\r'),
        Just(' '),
        Just('A'),
        Just('a'),
        Just('q'),
        Just('0'),
        Just('-'),
        Just('é'),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), stray.clone()).prop_map(|(at, c)| Mutation::Replace(at, c)),
        (any::<usize>(), stray).prop_map(|(at, c)| Mutation::Insert(at, c)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DuplicateFrom),
        prop_oneof![Just("ro."), Just("imm."), Just("ro.ro."), Just(" ")]
            .prop_map(Mutation::Prepend),
    ]
}

fn apply(input: &str, mutation: &Mutation) -> String {
    let mut chars: Vec<char> = input.chars().collect();
    let len = chars.len().max(1);
    match *mutation {
        Mutation::Replace(at, c) => {
            if let Some(slot) = chars.get_mut(at % len) {
                *slot = c;
            }
        }
        Mutation::Insert(at, c) => chars.insert(at % (chars.len() + 1), c),
        Mutation::Delete(at) => {
            if !chars.is_empty() {
                chars.remove(at % len);
            }
        }
        Mutation::Truncate(at) => chars.truncate(at % len),
        Mutation::DuplicateFrom(at) => {
            let tail: Vec<char> = chars[at % len.min(chars.len().max(1))..].to_vec();
            chars.extend(tail);
        }
        Mutation::Prepend(prefix) => {
            let mut prefixed: Vec<char> = prefix.chars().collect();
            prefixed.extend(chars);
            chars = prefixed;
        }
    }
    chars.into_iter().collect()
}

/// Parsing must not panic; a parsed cap must render to a string that parses to the same cap.
fn check_parse_round_trip(input: &str) -> Result<Result<Cap, CapError>, TestCaseError> {
    let result = input.parse::<Cap>();
    if let Ok(cap) = &result {
        let rendered = cap.to_string();
        let reparsed: Cap = rendered
            .parse()
            .map_err(|error| TestCaseError::fail(format!("canonical form refused: {error}")))?;
        prop_assert_eq!(&reparsed, cap);
        prop_assert_eq!(reparsed.to_string(), rendered);
    }
    Ok(result)
}

/// The error must not repeat any 26-character piece of the input after its `URI:` kind, nor
/// contain any 26-character run of key-like characters at all.
fn check_error_hides_keys(input: &str, error: &CapError) -> Result<(), TestCaseError> {
    for shown in [error.to_string(), format!("{error:?}")] {
        let mut run = 0;
        for c in shown.chars() {
            run = if c.is_ascii_lowercase() || c.is_ascii_digit() {
                run + 1
            } else {
                0
            };
            prop_assert!(run < 26, "key-like run in error: {}", shown);
        }
        let key_part: Vec<char> = input.chars().collect();
        for window in key_part.windows(26) {
            let window: String = window.iter().collect();
            prop_assert!(!shown.contains(&window), "error repeats input: {}", shown);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let encoded = base32::encode(&bytes);
        prop_assert_eq!(encoded.len(), base32::encoded_len(bytes.len()));
        prop_assert_eq!(base32::decode(&encoded).unwrap(), bytes);
    }

    #[test]
    fn base32_decode_never_panics_and_is_canonical(text in ".{0,80}") {
        if let Ok(bytes) = base32::decode(&text) {
            prop_assert_eq!(base32::encode(&bytes), text);
        }
    }

    #[test]
    fn base32_decode_of_alphabet_strings_is_canonical(text in "[a-z2-7]{0,80}") {
        match base32::decode(&text) {
            Ok(bytes) => prop_assert_eq!(base32::encode(&bytes), text),
            Err(Base32Error::ImpossibleLength { length }) => {
                prop_assert!(matches!(length % 8, 1 | 3 | 6));
            }
            Err(Base32Error::NonCanonicalTrailingBits) => {
                prop_assert!(!matches!(text.len() % 8, 0 | 1 | 3 | 6));
            }
            Err(Base32Error::InvalidCharacter { position }) => {
                prop_assert!(false, "alphabet character refused at {}", position);
            }
        }
    }

    #[test]
    fn parse_arbitrary_strings(input in ".{0,200}") {
        if let Err(error) = check_parse_round_trip(&input)? {
            check_error_hides_keys(&input, &error)?;
        }
    }

    #[test]
    fn parse_cap_shaped_strings(
        input in "(ro\\.|imm\\.)?URI:(SSK|SSK-RO|MDMF-RO|DIR2|DIR2-MDMF-Verifier|CHK|CHK-Verifier|LIT|DIR2-LIT|X)?:[a-z2-7:0-9]{0,140}\n?"
    ) {
        if let Err(error) = check_parse_round_trip(&input)? {
            check_error_hides_keys(&input, &error)?;
        }
    }

    #[test]
    fn valid_caps_parse_and_attenuate_consistently((kind, input) in valid_cap()) {
        let cap = check_parse_round_trip(&input)?.unwrap();
        prop_assert_eq!(cap.kind(), kind);
        prop_assert_eq!(cap.to_string(), input.as_str());
        prop_assert_eq!(cap.storage_index().is_none(), kind.format() == CapFormat::Literal);

        let read_only = cap.read_only();
        prop_assert!(read_only.is_readonly());
        prop_assert_eq!(read_only.storage_index(), cap.storage_index());
        prop_assert_eq!(read_only.read_only(), read_only.clone());
        prop_assert_eq!(read_only.verify_cap(), cap.verify_cap());
        if let Some(verify) = cap.verify_cap() {
            prop_assert_eq!(verify.role(), CapRole::Verify);
            prop_assert_eq!(verify.storage_index(), cap.storage_index());
            prop_assert_eq!(verify.verify_cap(), Some(verify.clone()));
            check_parse_round_trip(&verify.to_string())?.unwrap();
        }
        check_parse_round_trip(&read_only.to_string())?.unwrap();

        let debug = format!("{cap:?}");
        let body = &input[kind.prefix().len()..];
        for field in body.split(':').filter(|field| field.len() >= 26) {
            // A verify-cap's storage index is public and may be shown.
            if cap.storage_index().map(|si| si.to_string()).as_deref() != Some(field) {
                prop_assert!(!debug.contains(field), "Debug shows a key: {}", debug);
            }
        }
    }

    #[test]
    fn mutated_caps_never_panic_or_leak(
        (_kind, valid) in valid_cap(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let input = mutations.iter().fold(valid, |text, mutation| apply(&text, mutation));
        if let Err(error) = check_parse_round_trip(&input)? {
            check_error_hides_keys(&input, &error)?;
        }
    }
}
