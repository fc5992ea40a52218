//! The short fuzz run of CI, without AFL++: every target over its whole seed corpus
//! (`crates/fuzz/corpus/<target>/`, crash regressions included), then a fixed number of
//! deterministic mutations of those seeds (bit flips, interesting bytes and numbers, dictionary
//! tokens from `dict/<target>.dict`, deletions, duplications, splices). Any panic, a broken
//! oracle included, fails the test with the target, the input's origin and the input.
//! The long, coverage-guided run is `crates/fuzz/run-afl.sh` (docs/fuzzing.md).

use std::panic::{self, AssertUnwindSafe};

use fuzz::{all_targets, dictionary_path, parse_dictionary, read_corpus, Target};

/// Mutated inputs per target. The proof targets verify an RSA signature for most inputs, which
/// is slow in a debug build: fewer of them.
fn mutations_for(target: &Target) -> u64 {
    match target.name {
        "proof-verify" | "share-file" | "share-data" | "proof-json" => 1500,
        "news" | "client-message" | "server-message" => 3000,
        _ => 5000,
    }
}

/// SplitMix64: a fixed, dependency-free sequence, so a failure reproduces exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INTERESTING_BYTES: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'"', b'\\', b':'];
const INTERESTING_WORDS: [u64; 6] = [0, 1, 2, 1 << 31, 1 << 63, u64::MAX];

fn mutate(
    base: &[u8],
    other: &[u8],
    dictionary: &[Vec<u8>],
    max_len: usize,
    rng: &mut Rng,
) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(10) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
            }
            2 => {
                let at = rng.below(len + 1);
                out.insert(at, rng.next() as u8);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = (1 + rng.below(16)).min(len - at);
                out.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = (1 + rng.below(32)).min(len - at);
                let copy = out[at..at + n].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, copy);
            }
            5 | 6 if !dictionary.is_empty() => {
                let token = &dictionary[rng.below(dictionary.len())];
                let at = rng.below(len + 1);
                let end = if rng.below(2) == 0 {
                    at
                } else {
                    (at + token.len()).min(len)
                };
                out.splice(at..end, token.iter().copied());
            }
            7 => {
                let head = rng.below(len + 1);
                let tail = rng.below(other.len() + 1);
                out.truncate(head);
                out.extend_from_slice(&other[tail..]);
            }
            8 if len > 0 => {
                out.truncate(rng.below(len));
            }
            _ if len >= 8 => {
                let at = rng.below(len - 7);
                let word = INTERESTING_WORDS[rng.below(INTERESTING_WORDS.len())];
                out[at..at + 8].copy_from_slice(&word.to_be_bytes());
            }
            _ => out.push(rng.next() as u8),
        }
    }
    out.truncate(max_len);
    out
}

fn describe(input: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(input).chars().take(300).collect();
    format!("{} bytes: {shown:?}", input.len())
}

fn run_one(target: &Target, origin: &str, input: &[u8], failures: &mut Vec<String>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input))) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_owned());
        failures.push(format!(
            "{} ({origin}): {message}\n    input {}",
            target.name,
            describe(input)
        ));
    }
}

#[test]
fn every_target_holds_on_its_corpus_and_mutations_of_it() {
    // Panics are caught and listed at the end; thousands of default messages would drown them.
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for target in all_targets() {
        let seeds: Vec<Vec<u8>> = read_corpus(target.name)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        let dictionary = std::fs::read_to_string(dictionary_path(target.name))
            .map(|text| parse_dictionary(&text))
            .unwrap_or_default();
        if seeds.is_empty() {
            failures.push(format!("{}: no seed corpus", target.name));
            continue;
        }
        for (n, seed) in seeds.iter().enumerate() {
            run_one(&target, &format!("seed {n}"), seed, &mut failures);
        }
        // One sequence per target, so adding a target does not change the others' inputs.
        let mut rng = Rng(target
            .name
            .bytes()
            .fold(42, |h, b| h.wrapping_mul(31) ^ u64::from(b)));
        let count = mutations_for(&target);
        for n in 0..count {
            let base = &seeds[rng.below(seeds.len())];
            let other = &seeds[rng.below(seeds.len())];
            let input = mutate(base, other, &dictionary, target.max_len, &mut rng);
            run_one(&target, &format!("mutation {n}"), &input, &mut failures);
            if failures.len() > 20 {
                break;
            }
        }
        println!("{}: {} seeds, {count} mutations", target.name, seeds.len());
    }
    panic::set_hook(previous_hook);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
