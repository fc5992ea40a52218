//! `cargo run -p fuzz --release -- <target>|all [--seconds N] [--iterations N] [--seed N]
//! [--out DIR]`: runs fuzz targets for a long time and saves what they find.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fuzz::targets::{all_targets, target};
use fuzz::{quiet_panics, run, Budget, Target};

const USAGE: &str =
    "usage: fuzz <target|all|list> [--seconds N] [--iterations N] [--seed N] [--out DIR]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(which) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut seconds = 60u64;
    let mut iterations = u64::MAX;
    let mut seed = 1u64;
    let mut out = PathBuf::from("target/fuzz-findings");
    while let Some(flag) = args.next() {
        let value = args.next();
        let parsed = value.as_deref().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), parsed) {
            ("--seconds", Some(n)) => seconds = n,
            ("--iterations", Some(n)) => iterations = n,
            ("--seed", Some(n)) => seed = n,
            ("--out", _) if value.is_some() => out = PathBuf::from(value.unwrap_or_default()),
            _ => {
                eprintln!("bad argument {flag}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let chosen: Vec<Target> = match which.as_str() {
        "list" => {
            for t in all_targets() {
                println!("{:16} {}", t.name, t.description);
            }
            return ExitCode::SUCCESS;
        }
        "all" => all_targets(),
        name => match target(name) {
            Some(t) => vec![t],
            None => {
                eprintln!("no target {name:?}; `fuzz list` shows them");
                return ExitCode::from(2);
            }
        },
    };
    quiet_panics();
    let budget = Budget {
        iterations,
        time: Duration::from_secs(seconds),
    };
    let mut found_any = false;
    for t in chosen {
        let report = run(&t, budget, seed);
        println!(
            "{:16} {:>10} inputs in {:>6.1} s ({:>8.0}/s), {:>5} outcome classes, corpus {:>5}, {} findings",
            t.name,
            report.iterations,
            report.elapsed.as_secs_f64(),
            report.iterations as f64 / report.elapsed.as_secs_f64().max(1e-9),
            report.classes,
            report.corpus,
            report.findings.len()
        );
        for (n, finding) in report.findings.iter().enumerate() {
            found_any = true;
            let dir = out.join(t.name);
            let path = dir.join(format!("finding-{n}"));
            let saved = std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, &finding.input))
                .map(|()| path.display().to_string())
                .unwrap_or_else(|e| format!("(not saved: {e})"));
            let shown: String = String::from_utf8_lossy(&finding.input)
                .chars()
                .take(200)
                .collect();
            println!(
                "  {}\n    input ({} bytes, {saved}): {shown:?}",
                finding.problem,
                finding.input.len()
            );
        }
    }
    if found_any {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
