//! `fuzz-replay TARGET [FILE|DIR]…`: runs a target over inputs (AFL++'s `crashes/` or `queue/`,
//! or the seed corpus when no path is given) without AFL, and says which input panicked.
//! `fuzz-replay list` names the targets.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    if name == "list" {
        for t in fuzz::all_targets() {
            println!("{:16} {}", t.name, t.description);
        }
        return ExitCode::SUCCESS;
    }
    let Some(target) = fuzz::target(&name) else {
        eprintln!("usage: fuzz-replay TARGET [FILE|DIR]…  (fuzz-replay list: the targets)");
        return ExitCode::from(2);
    };
    let mut paths: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if paths.is_empty() {
        paths.push(fuzz::corpus_dir(target.name));
    }
    let mut files = Vec::new();
    for path in paths {
        match std::fs::read_dir(&path) {
            Ok(entries) => {
                let mut inside: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                inside.sort();
                files.extend(inside);
            }
            Err(_) => files.push(path),
        }
    }
    let (mut ran, mut failed) = (0usize, 0usize);
    for file in files {
        let input = match std::fs::read(&file) {
            Ok(input) => input,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        ran += 1;
        if panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input))).is_err() {
            failed += 1;
            eprintln!("^ {} ({} bytes)", file.display(), input.len());
        }
    }
    println!("{}: {ran} inputs, {failed} failed", target.name);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
