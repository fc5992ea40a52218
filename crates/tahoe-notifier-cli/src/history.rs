//! `tahoe-notifier history`: the recorded changes and news, newest first, and marking them read.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use notifier_core::history::{ChangeFilter, ChangeRecord, NewsRecord};
use serde_json::{json, Value};

use crate::caps::check_id;
use crate::context::Context;
use crate::output::{print_json, print_text, rfc3339_ms, shown};

/// Show the recorded changes (and, unless --cap is given, the grids' news), newest first.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HistoryArgs {
    #[command(subcommand)]
    command: Option<HistoryCommand>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only the changes of this watched cap (its id, see `caps list`).
    #[arg(long, value_name = "ID")]
    cap: Option<String>,
    /// Only what is not marked read yet.
    #[arg(long)]
    unread: bool,
    /// At most this many changes (and this many news messages).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum HistoryCommand {
    /// Mark one change (or, with --news, one news message) read, or everything with --all.
    MarkRead(MarkReadArgs),
}

#[derive(Debug, clap::Args)]
struct MarkReadArgs {
    /// The number of the change (or news message) as `history` shows it.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    id: Option<i64>,
    /// Mark everything read: all changes and all news, or with --cap only that cap's changes.
    #[arg(long)]
    all: bool,
    /// With --all: only this cap's changes.
    #[arg(long, value_name = "ID", requires = "all")]
    cap: Option<String>,
    /// The number is a news message's, not a change's.
    #[arg(long, conflicts_with = "all")]
    news: bool,
}

/// Runs `history` or `history mark-read`.
pub fn run(ctx: &Context, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        None => list(ctx, &args.list)?,
        Some(HistoryCommand::MarkRead(mark)) => mark_read(ctx, mark)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Context, args: &ListArgs) -> anyhow::Result<()> {
    if let Some(cap) = &args.cap {
        check_id(cap, "cap-")?;
    }
    let labels: HashMap<String, String> = ctx
        .cap_store()
        .list()
        .context("cannot read the watched caps")?
        .into_iter()
        .map(|e| (e.id, e.label))
        .collect();
    let (changes, news) = match ctx.existing_history()? {
        None => (Vec::new(), Vec::new()),
        Some(history) => {
            let filter = ChangeFilter {
                cap_id: args.cap.clone(),
                unread_only: args.unread,
                limit: args.limit,
            };
            let changes = history
                .list_changes(&filter)
                .context("cannot read the changes from the history")?;
            // News belongs to grids, not caps: a per-cap listing leaves it out.
            let news = if args.cap.is_some() {
                Vec::new()
            } else {
                history
                    .list_news(args.unread, args.limit)
                    .context("cannot read the news from the history")?
            };
            (changes, news)
        }
    };
    if ctx.json() {
        return print_json(&json!({
            "changes": changes.iter().map(|c| change_json(c, &labels)).collect::<Vec<_>>(),
            "news": news.iter().map(news_json).collect::<Vec<_>>(),
        }));
    }
    let mut text = String::new();
    if changes.is_empty() {
        text.push_str(if args.unread {
            "no unread changes\n"
        } else {
            "no changes recorded yet\n"
        });
    }
    for change in &changes {
        text.push_str(&format!(
            "#{:<5} {}  {}{}: {}{}\n",
            change.id,
            rfc3339_ms(change.at_ms),
            if change.read { "" } else { "* " },
            label_of(&change.cap_id, &labels),
            shown(&change.summary),
            if change.while_away {
                " (while away)"
            } else {
                ""
            },
        ));
    }
    if args.cap.is_none() {
        if news.is_empty() {
            text.push_str(if args.unread {
                "no unread news\n"
            } else {
                "no news\n"
            });
        }
        for item in &news {
            text.push_str(&format!(
                "news #{:<5} {}  {}[{}] {}: {}\n",
                item.id,
                rfc3339_ms(item.at_ms),
                if item.read { "" } else { "* " },
                item.severity,
                shown(&item.grid),
                shown(item.title.as_deref().unwrap_or(&item.name)),
            ));
        }
    }
    if changes.iter().any(|c| !c.read) || news.iter().any(|n| !n.read) {
        text.push_str("(* = unread; mark with `tahoe-notifier history mark-read`)\n");
    }
    print_text(&text)
}

/// The cap's label, or its id when the cap has since been removed.
fn label_of(cap_id: &str, labels: &HashMap<String, String>) -> String {
    labels
        .get(cap_id)
        .map_or_else(|| format!("{cap_id} (removed)"), |label| shown(label))
}

fn change_json(change: &ChangeRecord, labels: &HashMap<String, String>) -> Value {
    json!({
        "id": change.id,
        "cap_id": change.cap_id,
        "label": labels.get(&change.cap_id),
        "storage_index": change.storage_index.to_string(),
        "seqnum": change.seqnum,
        "while_away": change.while_away,
        "summary": change.summary,
        "details": change.details,
        "at": rfc3339_ms(change.at_ms),
        "read": change.read,
    })
}

fn news_json(news: &NewsRecord) -> Value {
    json!({
        "id": news.id,
        "grid": news.grid,
        "name": news.name,
        "title": news.title,
        "severity": news.severity.as_str(),
        "body": news.body,
        "expires": news.expires_ms.map(rfc3339_ms),
        "at": rfc3339_ms(news.at_ms),
        "read": news.read,
    })
}

fn mark_read(ctx: &Context, args: &MarkReadArgs) -> anyhow::Result<()> {
    if let Some(cap) = &args.cap {
        check_id(cap, "cap-")?;
    }
    let history = ctx.existing_history()?;
    let marked: u64 = if args.all {
        ctx.notifier()
            .mark_all_read(args.cap.as_deref())
            .context("cannot mark the history read")?
    } else {
        let Some(id) = args.id else {
            bail!("give the number of a change or news message, or --all");
        };
        let what = if args.news { "news message" } else { "change" };
        let found = match &history {
            None => false,
            Some(history) if args.news => history
                .mark_news_read(id)
                .with_context(|| format!("cannot mark the {what} #{id} read"))?,
            Some(history) => history
                .mark_change_read(id)
                .with_context(|| format!("cannot mark the {what} #{id} read"))?,
        };
        if !found {
            bail!("there is no {what} #{id} in the history; see `tahoe-notifier history`");
        }
        1
    };
    if ctx.json() {
        print_json(&json!({ "marked_read": marked }))
    } else {
        print_text(&format!("marked {marked} read\n"))
    }
}
