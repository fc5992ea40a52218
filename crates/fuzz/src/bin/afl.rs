//! The AFL++ harness: `fuzz-afl TARGET` (`fuzz-afl --max-len TARGET`: its input size limit), built by `cargo afl build --release -p fuzz --features
//! afl` and run by `cargo afl fuzz` (see `run-afl.sh`). Persistent mode: one process runs many
//! inputs; a panic (a crash or a broken oracle) aborts it, which AFL++ records as a crash.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut name = args.next().unwrap_or_default();
    // `fuzz-afl --max-len TARGET` prints the target's input size limit (run-afl.sh: -G).
    let print_max_len = name == "--max-len";
    if print_max_len {
        name = args.next().unwrap_or_default();
    }
    let Some(target) = fuzz::target(&name) else {
        eprintln!("usage: fuzz-afl TARGET; targets:");
        for t in fuzz::all_targets() {
            eprintln!("  {:16} {}", t.name, t.description);
        }
        return ExitCode::from(2);
    };
    if print_max_len {
        println!("{}", target.max_len);
        return ExitCode::SUCCESS;
    }
    // Load the fixture keys before the fork server starts, not once per child.
    let _ = fuzz::fixtures::slots();
    let run = target.run;
    afl::fuzz!(|data: &[u8]| {
        run(data);
    });
    ExitCode::SUCCESS
}
