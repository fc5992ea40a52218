//! `tahoe-notifier`: the command-line face of Tahoe Notifier.
//!
//! Each subcommand lives in its own module, which exposes a clap `Args` struct and a
//! `run(&Args) -> anyhow::Result<ExitCode>`; adding one means adding a module and a [`Command`]
//! variant. Caps are passwords: no subcommand takes one in argv (other users can read it from
//! the process list), they come from stdin or files.

mod si;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a failure that stopped the command (as opposed to bad input lines).
const EXIT_FATAL: u8 = 2;

/// Push notifications for Tahoe-LAFS mutable files and directories.
#[derive(Debug, Parser)]
#[command(name = "tahoe-notifier", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Si(si::SiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Si(args) => si::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tahoe-notifier: error: {error:#}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
