//! Runs every fuzz target briefly so that CI covers the parsers with mutated input on every
//! build; `cargo run -p fuzz --release -- all --seconds 600` is the long run.

use std::time::Duration;

use fuzz::{all_targets, run, Budget};

#[test]
fn every_target_runs_briefly_without_findings() {
    fuzz::quiet_panics();
    let mut failures = Vec::new();
    for target in all_targets() {
        // Debug builds are slow: a fixed time per target keeps the test to a few seconds total,
        // and an iteration cap keeps fast machines from spending longer than needed.
        let budget = Budget {
            iterations: 200_000,
            time: Duration::from_millis(600),
        };
        let report = run(&target, budget, 42);
        println!(
            "{}: {} inputs, {} classes, corpus {}",
            target.name, report.iterations, report.classes, report.corpus
        );
        assert!(report.iterations > 0, "{} ran no input", target.name);
        for finding in report.findings {
            failures.push(format!(
                "{}: {} (input {:?})",
                target.name,
                finding.problem,
                String::from_utf8_lossy(&finding.input)
            ));
        }
    }
    let _ = std::panic::take_hook();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_seeds_themselves_hold_every_property() {
    for target in all_targets() {
        let seeds = (target.seeds)();
        assert!(!seeds.is_empty(), "{} has no seeds", target.name);
        for seed in seeds {
            if let fuzz::Verdict::Violation(problem) = (target.check)(&seed) {
                panic!(
                    "{}: seed {:?}: {problem}",
                    target.name,
                    String::from_utf8_lossy(&seed)
                );
            }
        }
    }
}
