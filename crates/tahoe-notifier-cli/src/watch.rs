//! `tahoe-notifier watch`: runs the engine host (`notifier_core::host`) without a tray, printing
//! what happens and raising desktop notifications, until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use notifier_core::engine::EngineEvent;
use notifier_core::host::{self, HostCommand, HostEvent, HostOptions};
use notifier_core::magic_folder::bridge::BridgeEvent;
use notifier_core::net::link::LinkState;
use notifier_core::notify::{PolicyConfig, QuietHours};
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
    /// Do not own the `org.tahoe_lafs.Notifier` D-Bus service (the window and `tahoe-notifier
    /// status --live` then cannot reach this process). Without a session bus it is off anyway.
    #[arg(long)]
    no_service: bool,
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

/// Runs the engine host until stopped: the same host the tray runs, without a tray.
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
    // nobody may be there to answer: say so and stop (the tray shows the same as a state).
    ctx.secrets()
        .check_usable()
        .context("cannot watch: the caps and server keys are in the keyring")?;
    let options = HostOptions {
        gateway_url: args.gateway.clone(),
        poll_interval: Duration::from_secs(args.poll_interval.max(1) * 60),
        policy: PolicyConfig {
            coalesce_window: Duration::from_secs_f64(args.coalesce_window),
            ..PolicyConfig::default()
        },
        local_offset,
        desktop: !args.no_desktop,
        // On a machine without a session bus the host runs without its service.
        service: !args.no_service,
        wait_for_keyring: false,
        quiet_hours: args.quiet_hours,
        news_only: args.news_only,
        ..HostOptions::new(ctx.paths().clone(), ctx.secrets())
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let json = ctx.json();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let (handle, commands) = host::channel();
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let stopper = {
            let handle = handle.clone();
            tokio::task::spawn_local(async move {
                notifier_core::host::stop_signal().await;
                handle.send(HostCommand::Quit);
            })
        };
        let window = host::window::Launcher::new(ctx.home().map(Path::to_path_buf), ctx.backend());
        let printer = tokio::task::spawn_local(async move {
            while let Some(event) = events.recv().await {
                match event {
                    HostEvent::Engine(event) => print_event(&event, json),
                    HostEvent::Bridge(event) => print_bridge_event(&event, json),
                    HostEvent::Open(target) => open_window(&window, target.as_deref(), json),
                    HostEvent::State(_) => {}
                }
            }
        });
        let result = host::run(options, handle, commands, events_tx).await;
        stopper.abort();
        let _ = printer.await;
        result.context("the engine stopped")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A notification's "Open" (or a D-Bus `OpenWindow`) while no tray runs: starts the window
/// of an installed app at that item (with this run's `--home` and `--keyring`), or says why not.
fn open_window(window: &host::window::Launcher, target: Option<&str>, json: bool) {
    let at = target.unwrap_or("its last page");
    let text = match window.open(target) {
        Ok(Some(_)) => format!("opening the window at {at}"),
        Ok(None) => format!("showing the open window at {at}"),
        Err(error) => format!(
            "cannot open the window at {at} ({}: {error})",
            host::window::WINDOW_PROGRAM
        ),
    };
    print_event(&EngineEvent::Notice(text), json);
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
