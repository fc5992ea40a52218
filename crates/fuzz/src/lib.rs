//! Fuzzing of the workspace's parsers on the stable toolchain.
//!
//! `cargo fuzz` needs nightly (libFuzzer's coverage instrumentation), which this project cannot
//! rely on, so this crate is the equivalent that runs anywhere `cargo test` does: each
//! [`Target`] feeds a parser inputs made by a structure-aware [`Mutator`] from a seed corpus (real
//! caps, messages, NURLs, certificates, share headers, news files) and checks properties beyond
//! "does not panic": round trips where the format has a renderer, exact seqnum extraction for
//! share headers, and that error texts never quote key material from the input.
//!
//! It is coverage-blind: instead of edge coverage, an input whose *outcome class* (which `Ok`
//! shape or which error, numbers stripped) was not seen before joins the corpus. That keeps
//! inputs that reach new parser branches without instrumentation.
//!
//! `cargo run -p fuzz --release -- <target> --seconds 600` runs one target long; the crate's test
//! runs every target for a moment in CI.

pub mod mutate;
pub mod targets;

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use mutate::Mutator;
pub use targets::all_targets;

/// What one input did, as far as the engine cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The properties hold; the string names the outcome class (used as cheap feedback).
    Fine(String),
    /// A property does not hold: the text says which.
    Violation(String),
}

/// One parser under test.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Short name, used on the command line.
    pub name: &'static str,
    /// What is parsed.
    pub description: &'static str,
    /// Starting inputs.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens worth inserting: keywords, separators, edge-case numbers of this format.
    pub dictionary: &'static [&'static [u8]],
    /// Largest input generated, in bytes.
    pub max_len: usize,
    /// Parses one input and checks the properties.
    pub check: fn(&[u8]) -> Verdict,
}

/// How long a run lasts: whichever limit comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Most inputs tried.
    pub iterations: u64,
    /// Longest run.
    pub time: Duration,
}

/// One input that broke a property or panicked.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The input.
    pub input: Vec<u8>,
    /// The property violated, or the panic message.
    pub problem: String,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Inputs tried.
    pub iterations: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Distinct outcome classes seen.
    pub classes: usize,
    /// Corpus size at the end (seeds plus inputs with new outcome classes).
    pub corpus: usize,
    /// Problems found, at most one per distinct problem text.
    pub findings: Vec<Finding>,
}

/// Most entries the corpus grows to; further new classes still count but are not kept.
const MAX_CORPUS: usize = 4096;
/// Most findings kept per run (the first of each distinct problem).
const MAX_FINDINGS: usize = 32;

/// Runs `target` until the budget is spent. Deterministic for a given `seed` and iteration count.
pub fn run(target: &Target, budget: Budget, seed: u64) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let mutator = Mutator::new(target.dictionary, target.max_len);
    let mut corpus: Vec<Vec<u8>> = (target.seeds)();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut classes: HashSet<String> = HashSet::new();
    let mut problems: HashSet<String> = HashSet::new();
    let mut report = Report::default();
    let started = Instant::now();

    // The seeds themselves first: a broken seed is a finding like any other.
    let seeds = corpus.clone();
    for input in seeds {
        judge(target, &input, &mut classes, &mut problems, &mut report);
        report.iterations += 1;
    }
    while report.iterations < budget.iterations {
        // Checking the clock every input would cost more than some parsers.
        if report.iterations % 64 == 0 && started.elapsed() >= budget.time {
            break;
        }
        let base = &corpus[rng.gen_range(0..corpus.len())];
        let other = &corpus[rng.gen_range(0..corpus.len())];
        let input = mutator.mutate(base, other, &mut rng);
        if judge(target, &input, &mut classes, &mut problems, &mut report)
            && corpus.len() < MAX_CORPUS
        {
            corpus.push(input);
        }
        report.iterations += 1;
    }
    report.elapsed = started.elapsed();
    report.classes = classes.len();
    report.corpus = corpus.len();
    report
}

/// Runs one input; `true` when its outcome class is new.
fn judge(
    target: &Target,
    input: &[u8],
    classes: &mut HashSet<String>,
    problems: &mut HashSet<String>,
    report: &mut Report,
) -> bool {
    let verdict = panic::catch_unwind(AssertUnwindSafe(|| (target.check)(input)));
    let problem = match verdict {
        Ok(Verdict::Fine(class)) => return classes.insert(class),
        Ok(Verdict::Violation(problem)) => problem,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            format!("panic: {message}")
        }
    };
    // Problems quote what they found; the first line, cut short, tells one problem from another.
    let problem: String = problem
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    let kind: String = problem.chars().take(60).collect();
    if problems.insert(kind) && report.findings.len() < MAX_FINDINGS {
        report.findings.push(Finding {
            input: input.to_vec(),
            problem,
        });
    }
    false
}

/// Silences the default panic message while fuzzing (panics are caught and reported as
/// findings; thousands of backtraces would drown them).
pub fn quiet_panics() {
    panic::set_hook(Box::new(|_| {}));
}

/// An outcome class from a text: digits are dropped so that numbers in error messages do not
/// make every input look new.
pub fn class_of(prefix: &str, text: &str) -> String {
    let mut class = String::with_capacity(prefix.len() + 1 + text.len().min(120));
    class.push_str(prefix);
    class.push(':');
    class.extend(text.chars().filter(|c| !c.is_ascii_digit()).take(120));
    class
}
