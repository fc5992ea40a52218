//! `tahoe-notifier caps …`: the watched caps. The caps themselves go to the OS keyring only;
//! the config file keeps the id, label, kind and storage index.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use notifier_core::ids;
use notifier_core::store::config::{CapEntry, CapKind};
use serde_json::json;
use tahoe_caps::Cap;

use notifier_core::grid::tahoe_node::NodeDir;

use crate::context::Context;
use crate::input::read_secret;
use crate::output::{print_json, print_text, shown, table};

/// Manage the watched caps (the caps are kept in the OS keyring only).
#[derive(Debug, clap::Args)]
pub struct CapsArgs {
    #[command(subcommand)]
    command: CapsCommand,
}

#[derive(Debug, Subcommand)]
enum CapsCommand {
    /// Start watching a mutable file or directory. The cap is read from stdin (the first
    /// non-empty line), or asked for without echo when stdin is a terminal; never give it as an
    /// argument. With --alias, the cap of one of your Tahoe aliases is watched instead. Only
    /// the read-cap is ever kept: a write-cap is reduced to it first. Prints the new entry's
    /// id, label, kind and storage index.
    Add(AddArgs),
    /// List the watched caps (never the caps themselves).
    List,
    /// Stop watching: deletes the cap from the keyring and the entry from the config.
    Remove(IdArg),
    /// Change the label of a watched cap.
    Rename {
        /// The entry's id (see `caps list`).
        id: String,
        /// The new label.
        label: String,
    },
    /// Keep recording changes of a cap, but raise no notifications for them.
    Mute(IdArg),
    /// Notify about a muted cap's changes again.
    Unmute(IdArg),
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// The name shown in notifications (default: the alias's name, else the kind and the
    /// start of the storage index).
    #[arg(long)]
    label: Option<String>,
    /// Watch the directory of this Tahoe alias (as `tahoe list-aliases` shows it) instead of a
    /// cap read from stdin.
    #[arg(long, value_name = "NAME")]
    alias: Option<String>,
    /// The grid the cap belongs to, as `servers list` names it: only its updates servers hear
    /// of it and only its gateway sees it. Needed when several grids are imported.
    #[arg(long, value_name = "NAME")]
    grid: Option<String>,
    /// The Tahoe node directory whose aliases --alias reads (default: ~/.tahoe).
    #[arg(long, value_name = "DIR", requires = "alias")]
    node_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct IdArg {
    /// The entry's id (see `caps list`).
    id: String,
}

/// Runs a `caps` subcommand.
pub fn run(ctx: &Context, args: &CapsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        CapsCommand::Add(add_args) => add(ctx, add_args)?,
        CapsCommand::List => list(ctx)?,
        CapsCommand::Remove(IdArg { id }) => remove(ctx, id)?,
        CapsCommand::Rename { id, label } => rename(ctx, id, label)?,
        CapsCommand::Mute(IdArg { id }) => set_muted(ctx, id, true)?,
        CapsCommand::Unmute(IdArg { id }) => set_muted(ctx, id, false)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses an argument that is not an entry id, without repeating it: a user who pastes a cap
/// where an id belongs must not see it echoed into a terminal log or a bug report.
pub fn check_id(id: &str, example: &str) -> anyhow::Result<()> {
    if !ids::is_valid_id(id) {
        bail!(
            "that is not an entry id: ids look like `{example}…` (lowercase letters, digits and \
             dashes); see the list command for them"
        );
    }
    Ok(())
}

fn add(ctx: &Context, args: &AddArgs) -> anyhow::Result<()> {
    let notifier = ctx.notifier();
    let (added, was_write_cap) = match &args.alias {
        Some(alias) => {
            let node = NodeDir::find(args.node_dir.as_deref())?.with_context(|| {
                format!(
                    "cannot add the alias {alias:?}: there is no Tahoe node directory at ~/.tahoe; give --node-dir"
                )
            })?;
            let added = notifier
                .add_alias(&node, alias, args.label.as_deref(), args.grid.as_deref())
                .with_context(|| format!("cannot add the alias {alias:?}"))?;
            (added, false)
        }
        None => {
            let text = read_secret("cap", "tahoe-notifier caps add --label Docs < cap.txt")?;
            let cap: Cap = text
                .parse()
                .context("cannot add the cap: what was given is not a valid Tahoe cap")?;
            drop(text);
            let added = notifier
                .add_cap(&cap, args.label.as_deref(), args.grid.as_deref())
                .context("cannot add the cap")?;
            (added, !cap.is_readonly())
        }
    };
    let entry = notifier
        .caps()
        .entry(&added.id)
        .context("the cap was added, but its entry cannot be read back")?;
    if was_write_cap {
        eprintln!(
            "tahoe-notifier: note: that was a write-cap; only its read-cap was kept (watching \
             needs no more)"
        );
    }
    if ctx.json() {
        let mut value = entry_json(&entry);
        value["cap_kind"] = json!(added.stored_kind);
        print_json(&value)
    } else {
        print_text(&format!(
            "added {}\nlabel:          {}\nkind:           {} ({})\nstorage index:  {}\n",
            entry.id,
            shown(&entry.label),
            kind_word(entry.kind),
            added.stored_kind,
            entry.storage_index,
        ))
    }
}

fn kind_word(kind: CapKind) -> &'static str {
    match kind {
        CapKind::Directory => "directory",
        CapKind::File => "file",
    }
}

/// The JSON form of an entry (the same fields as the config, which holds no secret).
pub fn entry_json(entry: &CapEntry) -> serde_json::Value {
    json!({
        "id": entry.id,
        "label": entry.label,
        "kind": kind_word(entry.kind),
        "storage_index": entry.storage_index.to_string(),
        "muted": entry.muted,
        "created": entry.created.format(&time::format_description::well_known::Rfc3339).ok(),
    })
}

fn list(ctx: &Context) -> anyhow::Result<()> {
    // Listing reads only the config: no keyring access, so it works even when the keyring is
    // locked or absent.
    let entries = ctx
        .cap_store()
        .list()
        .context("cannot list the watched caps")?;
    if ctx.json() {
        return print_json(&serde_json::Value::Array(
            entries.iter().map(entry_json).collect(),
        ));
    }
    if entries.is_empty() {
        return print_text("no caps are watched; add one with `tahoe-notifier caps add`\n");
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                kind_word(e.kind).to_owned(),
                e.storage_index.to_string(),
                flags(e),
                shown(&e.label),
            ]
        })
        .collect();
    print_text(&table(
        &["ID", "KIND", "STORAGE INDEX", "FLAGS", "LABEL"],
        &rows,
    ))
}

/// `muted` or `-`.
fn flags(entry: &CapEntry) -> String {
    if entry.muted { "muted" } else { "-" }.to_owned()
}

fn remove(ctx: &Context, id: &str) -> anyhow::Result<()> {
    check_id(id, "cap-")?;
    // The same use case as the window's: keyring, config and the cap's history go.
    let removed = ctx
        .notifier()
        .remove_cap(id)
        .with_context(|| format!("cannot remove the cap {id}"))?;
    if ctx.json() {
        print_json(&json!({ "removed": entry_json(&removed) }))
    } else {
        print_text(&format!(
            "removed {} ({}); the cap was deleted from the {} keyring\n",
            removed.id,
            shown(&removed.label),
            ctx.backend()
        ))
    }
}

fn rename(ctx: &Context, id: &str, label: &str) -> anyhow::Result<()> {
    check_id(id, "cap-")?;
    ctx.notifier()
        .rename_cap(id, label)
        .with_context(|| format!("cannot rename the cap {id}"))?;
    let entry = ctx
        .cap_store()
        .entry(id)
        .context("cannot read the renamed entry")?;
    if ctx.json() {
        print_json(&entry_json(&entry))
    } else {
        print_text(&format!(
            "renamed {} to {}\n",
            entry.id,
            shown(&entry.label)
        ))
    }
}

fn set_muted(ctx: &Context, id: &str, muted: bool) -> anyhow::Result<()> {
    check_id(id, "cap-")?;
    let verb = if muted { "mute" } else { "unmute" };
    ctx.notifier()
        .set_muted(id, muted)
        .with_context(|| format!("cannot {verb} the cap {id}"))?;
    let entry = ctx
        .cap_store()
        .entry(id)
        .context("cannot read the changed entry")?;
    if ctx.json() {
        print_json(&entry_json(&entry))
    } else {
        print_text(&format!(
            "{} {} ({})\n",
            if muted { "muted" } else { "unmuted" },
            entry.id,
            shown(&entry.label)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_without_echo() {
        assert!(check_id("cap-abcdefghijklmnop", "cap-").is_ok());
        let err = check_id("URI:DIR2-RO:secretsecret:more", "cap-").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
