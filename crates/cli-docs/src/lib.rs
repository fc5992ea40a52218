//! Man pages and shell completions written from a program's own clap definition.
//!
//! The packages (`packaging/build.sh`) ship documentation generated from the very `Command`
//! the binary parses with, so a new option cannot be missing from its man page. Each binary
//! calls [`write_docs`] from a hidden subcommand (`generate-docs --out DIR`), the way ripgrep
//! offers `--generate`: the generator runs the real definition, not a copy of it.
//!
//! Layout under the output folder, as `packaging/build.sh` and the cargo-deb assets expect:
//!
//! - `man/<name>.1`, one page for the program and one for every visible subcommand at every
//!   level (`tahoe-notifier-caps-add.1`), plain roff: cargo-deb gzips pages under
//!   `usr/share/man` as Debian policy asks;
//! - `completions/bash/<bin>`, `completions/zsh/_<bin>`, `completions/fish/<bin>.fish`, the
//!   names bash-completion, zsh and fish look up for the command `<bin>`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;
use thiserror::Error;

/// The manual every page says it belongs to (roff's `.TH` fifth field).
pub const MANUAL: &str = "Tahoe Notifier";

/// Why the documentation could not be written.
#[derive(Debug, Error)]
#[error("cannot write {path}: {source}")]
pub struct DocsError {
    /// The file or folder being written.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// Writes the man pages and the bash, zsh and fish completions of `command` under `out_dir`
/// (created if missing), and returns the files written.
///
/// `command` is the program's whole definition, e.g. `Cli::command()`; its name is the name of
/// the binary. Hidden subcommands (such as the generator itself) get no page.
pub fn write_docs(command: Command, out_dir: &Path) -> Result<Vec<PathBuf>, DocsError> {
    // clap's implicit `help` subcommand would otherwise get a page of its own.
    let mut command = command.disable_help_subcommand(true);
    // Fills in each subcommand's display name ("tahoe-notifier-caps-add"), which names its page.
    command.build();
    let bin = command.get_name().to_owned();
    let source = match command.get_version() {
        Some(version) => format!("{bin} {version}"),
        None => bin.clone(),
    };

    let mut written = Vec::new();
    let man_dir = out_dir.join("man");
    create_dir(&man_dir)?;
    write_pages(&command, &source, &man_dir, &mut written)?;

    for (shell, folder, file_name) in [
        (Shell::Bash, "bash", bin.clone()),
        (Shell::Zsh, "zsh", format!("_{bin}")),
        (Shell::Fish, "fish", format!("{bin}.fish")),
    ] {
        let dir = out_dir.join("completions").join(folder);
        create_dir(&dir)?;
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, &bin, &mut script);
        let path = dir.join(file_name);
        write_file(&path, &script)?;
        written.push(path);
    }
    Ok(written)
}

/// The page of `command`, then those of its visible subcommands, depth first.
fn write_pages(
    command: &Command,
    source: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), DocsError> {
    let man = clap_mangen::Man::new(command.clone())
        .source(source)
        .manual(MANUAL);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page).map_err(|source| DocsError {
        path: path.clone(),
        source,
    })?;
    write_file(&path, &page)?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, source, dir, written)?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), DocsError> {
    std::fs::create_dir_all(dir).map_err(|source| DocsError {
        path: dir.to_owned(),
        source,
    })
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), DocsError> {
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(|source| DocsError {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::{Arg, ArgAction};

    fn sample() -> Command {
        Command::new("sample")
            .version("1.2.3")
            .about("A sample program")
            .arg(
                Arg::new("json")
                    .long("json")
                    .action(ArgAction::SetTrue)
                    .help("Print JSON"),
            )
            .subcommand(
                Command::new("caps")
                    .about("Manage caps")
                    .subcommand(Command::new("add").about("Add a cap")),
            )
            .subcommand(Command::new("generate-docs").hide(true))
    }

    #[test]
    fn a_page_per_visible_subcommand_and_three_completions() {
        let out = tempfile::tempdir().unwrap();
        let written = write_docs(sample(), out.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(out.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "man/sample.1",
                "man/sample-caps.1",
                "man/sample-caps-add.1",
                "completions/bash/sample",
                "completions/zsh/_sample",
                "completions/fish/sample.fish",
            ]
        );
        let top = std::fs::read_to_string(out.path().join("man/sample.1")).unwrap();
        assert!(top.contains("sample 1.2.3"), "{top}");
        assert!(top.contains(MANUAL), "{top}");
        assert!(top.contains("json"), "{top}");
        assert!(
            !top.contains("generate\\-docs"),
            "hidden subcommand listed: {top}"
        );
        // A subcommand's page carries the program's version, not an empty one.
        let sub = std::fs::read_to_string(out.path().join("man/sample-caps-add.1")).unwrap();
        assert!(sub.contains("sample 1.2.3"), "{sub}");
        let bash = std::fs::read_to_string(out.path().join("completions/bash/sample")).unwrap();
        assert!(bash.contains("complete") && bash.contains("caps"), "{bash}");
    }
}
