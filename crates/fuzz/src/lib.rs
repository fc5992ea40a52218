//! Fuzz targets for the workspace's parsers and the slot-proof verifier, driven by AFL++
//! through [cargo-afl](https://github.com/rust-fuzz/afl.rs) on the stable toolchain.
//!
//! Each [`Target`] is a plain `fn(&[u8])` that feeds one input to a parser and checks
//! properties beyond "does not panic" (round trips, exact field extraction, differential checks
//! between the two share-header readers, and for proofs the oracle that no mutated proof is ever
//! accepted). A property that does not hold is a panic, which is what AFL++ counts as a crash.
//!
//! - `cargo afl build --release -p fuzz --features afl --bin fuzz-afl` builds the instrumented
//!   binary (`src/bin/afl.rs`, one binary taking the target's name), and `crates/fuzz/run-afl.sh
//!   TARGET [SECONDS]` runs `cargo afl fuzz` on it from the seed corpus in `corpus/<target>/`
//!   with the dictionary in `dict/<target>.dict`.
//! - `cargo test -p fuzz` (no AFL needed) replays every target over its seed corpus plus a few
//!   thousand deterministic mutations: the short run in CI.
//! - `cargo run -p fuzz --bin fuzz-replay -- TARGET FILE…` reproduces a crash AFL++ saved.
//!
//! `docs/fuzzing.md` has the targets, their oracles and measured figures.

pub mod fixtures;
mod proof_targets;
mod targets;

use std::path::{Path, PathBuf};

pub use proof_targets::{encode_verify_input, verify_flags};

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Short name: the AFL binary's argument, the corpus and dictionary file names.
    pub name: &'static str,
    /// What is fuzzed and which properties are checked.
    pub description: &'static str,
    /// Feeds one input to the code under test; panics when a property does not hold.
    pub run: fn(&[u8]),
    /// Largest input worth trying, in bytes (`afl-fuzz -G`, and the replay's mutations).
    pub max_len: usize,
}

/// Every target, in a fixed order.
pub fn all_targets() -> Vec<Target> {
    let mut all = targets::targets();
    all.extend(proof_targets::targets());
    all
}

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    all_targets().into_iter().find(|t| t.name == name)
}

/// `crates/fuzz` in the source tree.
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The seed corpus of a target: `crates/fuzz/corpus/<name>/`.
pub fn corpus_dir(name: &str) -> PathBuf {
    crate_dir().join("corpus").join(name)
}

/// The AFL++ dictionary of a target: `crates/fuzz/dict/<name>.dict`.
pub fn dictionary_path(name: &str) -> PathBuf {
    crate_dir().join("dict").join(format!("{name}.dict"))
}

/// Reads every file of a target's seed corpus, sorted by file name.
pub fn read_corpus(name: &str) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(corpus_dir(name))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            entries.push((file_name, std::fs::read(entry.path())?));
        }
    }
    entries.sort();
    Ok(entries)
}

/// Reads an AFL++ dictionary (`name="value"` or `"value"` lines, `\xNN`, `\\` and `\"`
/// escapes, `#` comments) into its tokens.
pub fn parse_dictionary(text: &str) -> Vec<Vec<u8>> {
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (Some(open), Some(close)) = (line.find('"'), line.rfind('"')) else {
            continue;
        };
        if close <= open {
            continue;
        }
        let mut token = Vec::new();
        let mut bytes = line[open + 1..close].bytes();
        while let Some(b) = bytes.next() {
            if b != b'\\' {
                token.push(b);
                continue;
            }
            match bytes.next() {
                Some(b'x') => {
                    let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                    let value = std::str::from_utf8(&hex)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    token.extend(value);
                }
                Some(other) => token.push(other),
                None => {}
            }
        }
        tokens.push(token);
    }
    tokens
}

/// Panics with an `oracle [target]` message: a property of the target does not hold for this input.
#[track_caller]
pub(crate) fn violated(target: &str, what: impl std::fmt::Display) -> ! {
    panic!("oracle [{target}] {what}")
}
