//! `tahoe-notifier`: the command-line face of Tahoe Notifier.
//!
//! Each subcommand lives in its own module, which exposes a clap `Args` struct and a `run`
//! function returning `anyhow::Result<ExitCode>`; adding one means adding a module and a
//! [`Command`] variant. Caps and NURLs are passwords: no subcommand takes one in argv (other users
//! can read it from the process list), they come from stdin, a hidden prompt or files.
//!
//! `--home`, `--keyring` and `--json` are global options (accepted before or after the
//! subcommand). Subcommands get them through [`context::Context`] (or, for `si`, the `json`
//! flag) and must not define options of the same names, which clap would reject.
//!
//! Exit codes: 0 when the command did what was asked, 1 when it failed, 2 for a usage error
//! (clap's own code for bad arguments).

mod caps;
mod context;
mod history;
mod input;
mod magic_folder;
mod news;
mod output;
mod pause;
mod running;
mod servers;
mod si;
mod status;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};
use notifier_core::store::keyring::KeyringBackend;

use crate::context::Context;

/// Exit code for a command that failed (clap uses 2 for usage errors).
const EXIT_FAILED: u8 = 1;

/// Push notifications for Tahoe-LAFS mutable files and directories.
#[derive(Debug, Parser)]
#[command(name = "tahoe-notifier", version)]
struct Cli {
    /// Folder for all of the notifier's files (config and history). Default: the
    /// TAHOE_NOTIFIER_HOME environment variable, else the platform's config and data folders.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,

    /// Which OS keyring holds the caps and server secrets. `keyutils` (the kernel key store)
    /// needs no desktop session but forgets everything at reboot.
    #[arg(long, global = true, value_enum, default_value_t = KeyringChoice::SecretService)]
    keyring: KeyringChoice,

    /// Print the output as JSON (for scripts) instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

/// The `--keyring` values; a clap enum so that `--help` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KeyringChoice {
    /// The freedesktop Secret Service (gnome-keyring, KWallet).
    SecretService,
    /// The Linux kernel key store (secrets vanish at reboot).
    Keyutils,
}

impl From<KeyringChoice> for KeyringBackend {
    fn from(choice: KeyringChoice) -> Self {
        match choice {
            KeyringChoice::SecretService => KeyringBackend::SecretService,
            KeyringChoice::Keyutils => KeyringBackend::Keyutils,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add, list, rename, mute or remove watched caps (kept in the OS keyring).
    Caps(caps::CapsArgs),
    /// Add, list, import or remove updates servers and grids.
    Servers(servers::ServersArgs),
    /// Show recorded changes and news; mark them read.
    History(history::HistoryArgs),
    /// Show the configuration, the keyring in use and unread counts.
    Status(status::StatusArgs),
    /// Print the storage index of each cap read from standard input.
    Si(si::SiArgs),
    /// Pause notifications for an hour or until tomorrow morning, or resume them.
    Pause(pause::PauseArgs),
    /// Run the engine: subscribe every cap on every server, print and notify changes.
    Watch(watch::WatchArgs),
    /// Publish operator news to the grid's news directory.
    News(news::NewsArgs),
    /// Link magic-folder folders: participants' changes are pushed and fetched at once.
    MagicFolder(magic_folder::MagicFolderArgs),
    /// Write the man pages and shell completions of this program (used when building the
    /// packages; hidden from --help).
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
}

#[derive(Debug, Args)]
struct GenerateDocsArgs {
    /// Folder to write man/ and completions/ into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(&cli) {
        Ok(code) => code,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line: what failed, then why. No
            // error in this program carries a secret (the stores' errors never do, and inputs
            // are never quoted back).
            eprintln!("tahoe-notifier: error: {error:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    // `si` and `generate-docs` touch no notifier files and no keyring, so they must work even
    // where no home folder exists (a package build).
    match &cli.command {
        Command::Si(args) => return si::run(args, cli.json),
        Command::GenerateDocs(args) => return generate_docs(args),
        _ => {}
    }
    let ctx = Context::new(cli.home.as_deref(), cli.keyring.into(), cli.json)?;
    match &cli.command {
        Command::Caps(args) => caps::run(&ctx, args),
        Command::Servers(args) => servers::run(&ctx, args),
        Command::History(args) => history::run(&ctx, args),
        Command::Status(args) => status::run(&ctx, args),
        Command::Si(args) => si::run(args, cli.json),
        Command::Watch(args) => watch::run(&ctx, args),
        Command::Pause(args) => pause::run(&ctx, args),
        Command::News(args) => news::run(&ctx, args),
        Command::MagicFolder(args) => magic_folder::run(&ctx, args),
        Command::GenerateDocs(args) => generate_docs(args),
    }
}

fn generate_docs(args: &GenerateDocsArgs) -> anyhow::Result<ExitCode> {
    for path in cli_docs::write_docs(Cli::command(), &args.out)? {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr only when asked for with `RUST_LOG`: by default the command's own output
/// and errors say everything, and the library's logs would repeat it.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty()) {
        notifier_core::logging::init_stderr("off");
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

    #[test]
    fn generate_docs_is_hidden_and_writes_a_page_per_subcommand() {
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("generate-docs"), "{help}");
        let out = tempfile::tempdir().unwrap();
        let cli =
            Cli::try_parse_from(["t", "generate-docs", "--out", out.path().to_str().unwrap()])
                .unwrap();
        assert_eq!(run(&cli).unwrap(), ExitCode::SUCCESS);
        for page in [
            "tahoe-notifier.1",
            "tahoe-notifier-watch.1",
            "tahoe-notifier-caps-add.1",
        ] {
            assert!(out.path().join("man").join(page).is_file(), "{page}");
        }
        assert!(!out
            .path()
            .join("man/tahoe-notifier-generate-docs.1")
            .exists());
        assert!(out.path().join("completions/bash/tahoe-notifier").is_file());
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let a =
            Cli::try_parse_from(["t", "--json", "--keyring", "keyutils", "caps", "list"]).unwrap();
        let b =
            Cli::try_parse_from(["t", "caps", "list", "--json", "--keyring", "keyutils"]).unwrap();
        for cli in [a, b] {
            assert!(cli.json);
            assert_eq!(cli.keyring, KeyringChoice::Keyutils);
        }
        let default = Cli::try_parse_from(["t", "status"]).unwrap();
        assert_eq!(default.keyring, KeyringChoice::SecretService);
        assert!(Cli::try_parse_from(["t", "--keyring", "plaintext", "status"]).is_err());
    }
}
