//! `tahoe-notifier watch`: runs the engine headless, printing what happens and raising desktop
//! notifications, until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use notifier_core::engine::{Engine, EngineCommand, EngineEvent, EngineOptions};
use notifier_core::link::{LinkState, LinkTiming};
use notifier_core::magic_folder::bridge::{Bridge, BridgeEvent, BridgeOptions};
use notifier_core::notify::{DesktopSink, NotificationSink, PolicyConfig, QuietHours};
use serde_json::json;

use crate::context::Context;

/// Options of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Print events only; raise no desktop notifications.
    #[arg(long)]
    no_desktop: bool,
    /// Minutes between gateway polls of caps that no updates server holds.
    #[arg(long, default_value_t = 5, value_name = "MINUTES")]
    poll_interval: u64,
    /// The gateway to fetch listings through, instead of the imported grid's.
    #[arg(long, value_name = "URL")]
    gateway: Option<String>,
    /// Daily quiet period in local time, e.g. `22:00-07:00`: only critical news is shown then
    /// (everything is still recorded in the history).
    #[arg(long, value_name = "HH:MM-HH:MM", value_parser = parse_quiet_hours)]
    quiet_hours: Option<QuietHours>,
    /// Show news only: changes are recorded in the history but not notified.
    #[arg(long)]
    news_only: bool,
    /// Seconds without a change of a cap after which its burst of changes is shown as one
    /// notification (replacing the one shown for the burst's first change).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS", value_parser = parse_seconds)]
    coalesce_window: f64,
}

/// Parses `HH:MM-HH:MM` (local time; may span midnight).
fn parse_quiet_hours(text: &str) -> Result<QuietHours, String> {
    let format = time::macros::format_description!("[hour]:[minute]");
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| "expected HH:MM-HH:MM, e.g. 22:00-07:00".to_owned())?;
    let parse = |part: &str| {
        time::Time::parse(part.trim(), &format)
            .map_err(|e| format!("{part:?} is not a time of day HH:MM: {e}"))
    };
    Ok(QuietHours {
        start: parse(start)?,
        end: parse(end)?,
    })
}

/// Parses a non-negative number of seconds of at most a day.
fn parse_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|e| format!("{text:?} is not a number of seconds: {e}"))?;
    if (0.0..=86_400.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err("expected 0 to 86400 seconds".to_owned())
    }
}

/// Runs the engine until stopped.
pub fn run(ctx: &Context, args: &WatchArgs) -> anyhow::Result<ExitCode> {
    // Asked first: the time crate refuses once other threads exist (they could change TZ).
    let local_offset = match time::UtcOffset::current_local_offset() {
        Ok(offset) => offset,
        Err(_) if args.quiet_hours.is_some() => {
            print_event(
                &EngineEvent::Notice(
                    "the local time zone is unknown: quiet hours are taken as UTC".to_owned(),
                ),
                ctx.json(),
            );
            time::UtcOffset::UTC
        }
        Err(_) => time::UtcOffset::UTC,
    };
    ctx.ensure_dirs()?;
    // An absent or locked keyring would leave every cap unwatched, or block on an unlock prompt
    // nobody may be there to answer: say so and stop (the tray app shows the same as a state).
    ctx.secrets()
        .check_usable()
        .context("cannot watch: the caps and server keys are in the keyring")?;
    let sink: Option<Arc<dyn NotificationSink>> = if args.no_desktop {
        None
    } else {
        Some(Arc::new(DesktopSink::new()))
    };
    // Linked magic-folder folders: the bridge notifies for their participants itself.
    let bridge = Bridge::open(BridgeOptions {
        quiet_hours: args.quiet_hours,
        news_only: args.news_only,
        local_offset,
        ..BridgeOptions::new(ctx.paths().clone(), ctx.secrets(), sink.clone())
    })
    .context("cannot read the magic-folder links")?;
    let options = EngineOptions {
        paths: ctx.paths().clone(),
        secrets: ctx.secrets(),
        gateway_url: args.gateway.clone(),
        poll_interval: Duration::from_secs(args.poll_interval.max(1) * 60),
        link_timing: LinkTiming::default(),
        policy: PolicyConfig {
            quiet_hours: args.quiet_hours,
            news_only: args.news_only,
            coalesce_window: Duration::from_secs_f64(args.coalesce_window),
            ..PolicyConfig::default()
        },
        local_offset,
    };
    let engine = Engine::open(options, sink).context("cannot start the engine")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let json = ctx.json();
    let cap_store = ctx.cap_store();
    let config_file = ctx.paths().config_file();
    runtime.block_on(async move {
        // Queued before the engine runs, so that it never notifies for a linked cap itself.
        let delegations = bridge.delegations();
        let (commands, commands_rx) = tokio::sync::mpsc::channel(16 + delegations.len());
        for command in delegations {
            let _ = commands.try_send(command);
        }
        let (events_tx, mut events) = tokio::sync::mpsc::channel(1024);
        let (changes_tx, changes_rx) = tokio::sync::mpsc::channel(1024);
        let (bridge_events_tx, mut bridge_events) = tokio::sync::mpsc::channel(256);
        let bridge_task = bridge.run(changes_rx, commands.clone(), bridge_events_tx);
        let printer = async {
            while let Some(event) = events.recv().await {
                print_event(&event, json);
                if let EngineEvent::Changed(report) = event {
                    let _ = changes_tx.send(report).await;
                }
            }
            // The engine stopped: so does the bridge.
            drop(changes_tx);
        };
        let bridge_printer = async {
            while let Some(event) = bridge_events.recv().await {
                print_bridge_event(&event, json);
            }
        };
        let stopper = async {
            wait_for_stop_signal().await;
            let _ = commands.send(EngineCommand::Shutdown).await;
        };
        let follower = follow_cap_store(cap_store, config_file, commands.clone());
        // The engine owns the SQLite history, which is not thread-safe: it runs on this thread,
        // beside the printer and the signal handler.
        let (result, (), (), (), ()) = tokio::join!(
            engine.run(commands_rx, events_tx),
            printer,
            async {
                // The follower never ends on its own: the stop signal ends it.
                tokio::select! {
                    () = stopper => {}
                    () = follower => {}
                }
            },
            bridge_task,
            bridge_printer
        );
        result.context("the engine stopped")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// How often `watch` looks for caps added, removed, renamed or muted by other commands.
const CAP_STORE_CHECK: Duration = Duration::from_secs(2);

/// Tells the engine about caps that other `tahoe-notifier` commands (or the app) add, remove,
/// rename or mute while `watch` runs: they share the config file, so its cap list is compared
/// every [`CAP_STORE_CHECK`] with the one seen before, when the file's modification time or
/// size says it was written.
async fn follow_cap_store(
    store: notifier_core::caps::CapStore,
    config_file: std::path::PathBuf,
    commands: tokio::sync::mpsc::Sender<EngineCommand>,
) {
    let written = || {
        std::fs::metadata(&config_file)
            .ok()
            .map(|meta| (meta.modified().ok(), meta.len()))
    };
    let mut last_written = written();
    let read = |store: &notifier_core::caps::CapStore| {
        store.list().ok().map(|entries| {
            entries
                .into_iter()
                .map(|entry| (entry.id, (entry.label, entry.muted)))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
    };
    let mut seen = read(&store).unwrap_or_default();
    let mut ticks = tokio::time::interval(CAP_STORE_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now_written = written();
        if now_written == last_written {
            continue;
        }
        // A config being rewritten (or unreadable for a moment) is looked at again next time.
        let Some(now) = read(&store) else { continue };
        last_written = now_written;
        for (id, (label, muted)) in &now {
            let command = match seen.get(id) {
                None => EngineCommand::CapAdded(id.clone()),
                Some((old_label, _)) if old_label != label => EngineCommand::CapAdded(id.clone()),
                Some((_, was_muted)) if was_muted != muted => EngineCommand::SetMuted {
                    id: id.clone(),
                    muted: *muted,
                },
                Some(_) => continue,
            };
            if commands.send(command).await.is_err() {
                return;
            }
        }
        for id in seen.keys().filter(|id| !now.contains_key(*id)) {
            if commands
                .send(EngineCommand::CapRemoved(id.clone()))
                .await
                .is_err()
            {
                return;
            }
        }
        seen = now;
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print_event(event: &EngineEvent, json: bool) {
    let line = if json {
        event_json(event).to_string()
    } else {
        event_text(event)
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (a pipe whose reader left) must not stop the engine.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn print_bridge_event(event: &BridgeEvent, json: bool) {
    let line = if json {
        match event {
            BridgeEvent::Poked {
                folder,
                participant,
                elapsed,
            } => json!({"event": "magic-folder-poll", "folder": folder,
                "participant": participant, "seconds": elapsed.as_secs_f64()}),
            BridgeEvent::PokeFailed { folder, reason } => {
                json!({"event": "magic-folder-poll-failed", "folder": folder, "reason": reason})
            }
            BridgeEvent::Participants {
                folder,
                added,
                removed,
            } => json!({"event": "magic-folder-participants", "folder": folder,
                "added": added, "removed": removed}),
            BridgeEvent::Notified { summary } => {
                json!({"event": "magic-folder-notified", "summary": summary})
            }
            BridgeEvent::Notice(text) => json!({"event": "notice", "text": text}),
        }
        .to_string()
    } else {
        match event {
            BridgeEvent::Poked {
                folder,
                participant,
                elapsed,
            } => format!(
                "magic-folder: {folder}: fetched {participant}'s change ({:.1} s)",
                elapsed.as_secs_f64()
            ),
            BridgeEvent::PokeFailed { folder, reason } => {
                format!("magic-folder: {folder}: could not ask the daemon to poll: {reason}")
            }
            BridgeEvent::Participants {
                folder,
                added,
                removed,
            } => format!(
                "magic-folder: {folder}: participants added [{}], removed [{}]",
                added.join(", "),
                removed.join(", ")
            ),
            BridgeEvent::Notified { summary } => format!("notified: {summary}"),
            BridgeEvent::Notice(text) => format!("notice: {text}"),
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn state_words(state: &LinkState) -> String {
    match state {
        LinkState::Connecting => "connecting".to_owned(),
        LinkState::Connected => "connected".to_owned(),
        LinkState::Failing { reason, retry_in } => {
            format!(
                "failing: {reason} (retry in {:.1} s)",
                retry_in.as_secs_f64()
            )
        }
    }
}

fn event_text(event: &EngineEvent) -> String {
    match event {
        EngineEvent::Server { name, state, .. } => format!("server {name}: {}", state_words(state)),
        EngineEvent::CapStatus {
            label,
            subscribed_on,
            servers,
            polling,
            ..
        } => {
            if *polling && *servers > 0 {
                format!("\"{label}\": subscribed on {subscribed_on} of {servers} servers; polling the gateway meanwhile")
            } else {
                format!("\"{label}\": subscribed on {subscribed_on} of {servers} servers")
            }
        }
        EngineEvent::Changed(report) => {
            let mut text = format!("changed: {}", report.summary);
            if report.muted {
                text.push_str(" (muted)");
            }
            text
        }
        EngineEvent::News(news) => format!(
            "news from {}: {} — {}",
            news.grid,
            news.title,
            first_line(&news.body)
        ),
        EngineEvent::Notice(notice) => format!("notice: {notice}"),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn event_json(event: &EngineEvent) -> serde_json::Value {
    match event {
        EngineEvent::Server { id, name, state } => json!({
            "event": "server", "id": id, "name": name, "state": state_words(state),
            "connected": *state == LinkState::Connected,
        }),
        EngineEvent::CapStatus {
            id,
            label,
            subscribed_on,
            servers,
            polling,
        } => json!({
            "event": "cap-status", "id": id, "label": label,
            "subscribed_on": subscribed_on, "servers": servers, "polling": polling,
        }),
        EngineEvent::Changed(report) => json!({
            "event": "changed", "history_id": report.history_id, "cap_id": report.cap_id,
            "storage_index": report.storage_index.to_string(), "seqnum": report.seqnum,
            "while_away": report.while_away, "summary": report.summary, "body": report.body,
            "muted": report.muted,
        }),
        EngineEvent::News(news) => json!({
            "event": "news", "grid": news.grid, "title": news.title, "body": news.body,
            "urgency": format!("{:?}", news.urgency).to_lowercase(),
        }),
        EngineEvent::Notice(notice) => json!({"event": "notice", "text": notice}),
    }
}
