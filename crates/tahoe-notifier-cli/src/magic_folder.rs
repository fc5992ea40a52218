//! `tahoe-notifier magic-folder …`: link magic-folder folders to the engine, so that a change
//! of another participant's directory makes the local daemon fetch it at once (while `watch`
//! or the app runs), and say what a longer magic-folder poll interval would save.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use notifier_core::describe::snapshot::human_size;
use notifier_core::magic_folder::poll_interval::{
    self, PollCost, MEASURED_BYTES_PER_DIRECTORY_READ, SUGGESTED_POLL_INTERVAL_SECS,
};
use notifier_core::magic_folder::{self, MagicFolderClient};
use serde_json::json;

use crate::context::Context;
use crate::output::{print_json, print_text, table};

/// Link magic-folder folders: their participants' changes are pushed, and the daemon is told
/// to fetch them at once.
#[derive(Debug, clap::Args)]
pub struct MagicFolderArgs {
    #[command(subcommand)]
    command: MagicFolderCommand,
}

#[derive(Debug, Subcommand)]
enum MagicFolderCommand {
    /// Watch every other participant of the daemon's folders (or of one). Reads the daemon's
    /// API endpoint and token from its config directory (the daemon must be running); the
    /// participants' read-caps go to the keyring. `watch` then runs the bridge.
    Link(LinkArgs),
    /// Stop watching a folder's participants (caps that linking added are removed).
    Unlink(FolderArgs),
    /// List the linked folders.
    Status,
    /// Show what magic-folder's own polling costs for a folder and what a longer interval
    /// saves; with `--set`, change the interval (the daemon must be stopped).
    PollInterval(PollIntervalArgs),
}

#[derive(Debug, clap::Args)]
struct LinkArgs {
    /// The magic-folder daemon's config directory (what `magic-folder --config` is given).
    #[arg(long = "config", value_name = "DIR")]
    config_dir: PathBuf,
    /// Only this folder (default: every folder of the daemon).
    #[arg(long, value_name = "NAME")]
    folder: Option<String>,
    /// Notify only when a participant's change leaves a file in conflict (the daemon still
    /// fetches every change at once).
    #[arg(long)]
    conflicts_only: bool,
}

#[derive(Debug, clap::Args)]
struct FolderArgs {
    /// The magic-folder daemon's config directory.
    #[arg(long = "config", value_name = "DIR")]
    config_dir: PathBuf,
    /// The folder's name.
    #[arg(long, value_name = "NAME")]
    folder: String,
}

#[derive(Debug, clap::Args)]
struct PollIntervalArgs {
    #[command(flatten)]
    folder: FolderArgs,
    /// Set the folder's poll interval to this many seconds. magic-folder has no API for it, so
    /// this edits the folder's state database: only while the daemon is stopped, and only
    /// after you confirm (or with --yes).
    #[arg(long, value_name = "SECONDS")]
    set: Option<u64>,
    /// Do not ask for confirmation.
    #[arg(long, requires = "set")]
    yes: bool,
}

/// Runs a `magic-folder` subcommand.
pub fn run(ctx: &Context, args: &MagicFolderArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        MagicFolderCommand::Link(link) => run_link(ctx, link),
        MagicFolderCommand::Unlink(folder) => run_unlink(ctx, folder),
        MagicFolderCommand::Status => run_status(ctx),
        MagicFolderCommand::PollInterval(poll) => run_poll_interval(ctx, poll),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_link(ctx: &Context, args: &LinkArgs) -> anyhow::Result<ExitCode> {
    ctx.ensure_dirs()?;
    let client = MagicFolderClient::new(&args.config_dir)?;
    let caps = ctx.cap_store();
    let config = ctx.config_file();
    let outcomes = runtime()?.block_on(magic_folder::link_folders(
        &client,
        &caps,
        &config,
        args.folder.as_deref(),
        args.conflicts_only,
    ))?;
    if outcomes.is_empty() {
        bail!(
            "the magic-folder daemon of {} has no folders yet: add or join one first",
            args.config_dir.display()
        );
    }
    if ctx.json() {
        let folders: Vec<_> = outcomes
            .iter()
            .map(|o| {
                let cost = PollCost::estimate(
                    o.participants.len() as u64,
                    o.poll_interval,
                    SUGGESTED_POLL_INTERVAL_SECS,
                    MEASURED_BYTES_PER_DIRECTORY_READ,
                );
                json!({
                    "folder": o.folder, "own_name": o.own_name, "participants": o.participants,
                    "new_cap_ids": o.added_cap_ids, "poll_interval": o.poll_interval,
                    "suggested_poll_interval": SUGGESTED_POLL_INTERVAL_SECS,
                    "estimated_bytes_per_hour_saved": cost.bytes_per_hour_saved(),
                    "conflicts_only": args.conflicts_only,
                })
            })
            .collect();
        print_json(&json!({"linked": folders}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    for outcome in &outcomes {
        let watching = if outcome.participants.is_empty() {
            "no other participants yet (new ones are picked up while watch runs)".to_owned()
        } else {
            format!("watching {}", outcome.participants.join(", "))
        };
        text.push_str(&format!(
            "linked {:?}: {watching}; you are {}{}\n",
            outcome.folder,
            outcome.own_name,
            if args.conflicts_only {
                "; notifying conflicts only"
            } else {
                ""
            }
        ));
        text.push_str(&suggestion_text(
            &args.config_dir,
            &outcome.folder,
            outcome.participants.len() as u64,
            outcome.poll_interval,
        ));
    }
    text.push_str(
        "The bridge runs while `tahoe-notifier watch` (or the app) runs: it asks the daemon to \
         fetch each participant's change at once.\n",
    );
    print_text(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The poll-interval suggestion for a folder, with the exact steps to apply it.
fn suggestion_text(config_dir: &Path, folder: &str, others: u64, current: u64) -> String {
    if current >= SUGGESTED_POLL_INTERVAL_SECS {
        return format!(
            "  magic-folder polls {folder:?} every {current} s already: nothing to change.\n"
        );
    }
    let cost = PollCost::estimate(
        others,
        current,
        SUGGESTED_POLL_INTERVAL_SECS,
        MEASURED_BYTES_PER_DIRECTORY_READ,
    );
    format!(
        "  magic-folder polls {folder:?} every {current} s ({:.0} polls/hour, {} directory reads \
         each, ≈{}/hour). Linked, a poll every {} s is enough as a safety net (≈{}/hour, \
         saving ≈{}/hour).\n  magic-folder has no API to change it; to apply: stop the daemon, \
         run `tahoe-notifier magic-folder poll-interval --config {} --folder {folder:?} --set {}`, \
         start the daemon.\n",
        cost.polls_per_hour_now,
        cost.reads_per_poll,
        human_size(cost.bytes_per_hour_now),
        SUGGESTED_POLL_INTERVAL_SECS,
        human_size(cost.bytes_per_hour_suggested),
        human_size(cost.bytes_per_hour_saved()),
        config_dir.display(),
        SUGGESTED_POLL_INTERVAL_SECS,
    )
}

fn run_unlink(ctx: &Context, args: &FolderArgs) -> anyhow::Result<ExitCode> {
    let removed = magic_folder::unlink_folder(
        &ctx.cap_store(),
        &ctx.config_file(),
        &args.config_dir,
        &args.folder,
    )?;
    if ctx.json() {
        print_json(&json!({"unlinked": args.folder, "removed_cap_ids": removed}))?;
    } else {
        print_text(&format!(
            "unlinked {:?}: {} watched directories removed\n",
            args.folder,
            removed.len()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_status(ctx: &Context) -> anyhow::Result<ExitCode> {
    let links = magic_folder::linked_folders(&ctx.config_file())?;
    if ctx.json() {
        let links: Vec<_> = links
            .iter()
            .map(|l| {
                json!({
                    "config_dir": l.config_dir, "folder": l.folder, "own_name": l.own_name,
                    "participants": l.participants.iter().map(|p| json!({"name": p.name, "cap_id": p.cap.cap_id})).collect::<Vec<_>>(),
                    "collective_cap_id": l.collective.as_ref().map(|c| &c.cap_id),
                    "conflicts_only": l.conflicts_only,
                    "daemon_running": poll_interval::daemon_running(&l.config_dir),
                })
            })
            .collect();
        print_json(&json!({"links": links}))?;
        return Ok(ExitCode::SUCCESS);
    }
    if links.is_empty() {
        print_text(
            "no magic-folder folders linked (tahoe-notifier magic-folder link --config DIR)\n",
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = links
        .iter()
        .map(|l| {
            vec![
                l.folder.clone(),
                l.participants
                    .iter()
                    .map(|p| p.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                if l.conflicts_only {
                    "conflicts only"
                } else {
                    "every change"
                }
                .to_owned(),
                if poll_interval::daemon_running(&l.config_dir) {
                    "running"
                } else {
                    "stopped"
                }
                .to_owned(),
                l.config_dir.display().to_string(),
            ]
        })
        .collect();
    print_text(&table(
        &["FOLDER", "PARTICIPANTS", "NOTIFY", "DAEMON", "CONFIG"],
        &rows,
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn run_poll_interval(ctx: &Context, args: &PollIntervalArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.folder.config_dir;
    let folder = &args.folder.folder;
    let Some(seconds) = args.set else {
        // Report only: needs the running daemon for the interval and participants.
        let client = MagicFolderClient::new(dir)?;
        let (info, participants) = runtime()?.block_on(async {
            let folders = client.folders().await?;
            let info = folders
                .into_iter()
                .find(|f| &f.name == folder)
                .ok_or_else(|| magic_folder::MagicFolderError::UnknownFolder {
                    folder: folder.clone(),
                    known: Vec::new(),
                })?;
            let participants = client.participants(folder).await?;
            Ok::<_, magic_folder::MagicFolderError>((info, participants))
        })?;
        let others = participants.len().saturating_sub(1) as u64;
        if ctx.json() {
            let cost = PollCost::estimate(
                others,
                info.poll_interval,
                SUGGESTED_POLL_INTERVAL_SECS,
                MEASURED_BYTES_PER_DIRECTORY_READ,
            );
            print_json(&json!({
                "folder": folder, "poll_interval": info.poll_interval,
                "suggested_poll_interval": SUGGESTED_POLL_INTERVAL_SECS,
                "directory_reads_per_poll": cost.reads_per_poll,
                "estimated_bytes_per_hour": cost.bytes_per_hour_now,
                "estimated_bytes_per_hour_suggested": cost.bytes_per_hour_suggested,
                "estimated_bytes_per_hour_saved": cost.bytes_per_hour_saved(),
            }))?;
        } else {
            print_text(&suggestion_text(dir, folder, others, info.poll_interval))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!("changing magic-folder's poll interval needs your confirmation: run it in a terminal, or add --yes");
        }
        print!(
            "magic-folder has no API for this: the poll interval of {folder:?} is changed in its \
             state database ({}), which the daemon reads when it starts. Change it to {seconds} s? [y/N] ",
            dir.display()
        );
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            print_text("not changed\n")?;
            return Ok(ExitCode::from(1));
        }
    }
    let previous = poll_interval::apply(dir, folder, seconds)?;
    if ctx.json() {
        print_json(&json!({"folder": folder, "previous": previous, "poll_interval": seconds}))?;
    } else {
        print_text(&format!(
            "poll interval of {folder:?}: {previous} s → {seconds} s (start the daemon for it to take effect)\n"
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
