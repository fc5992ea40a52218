//! `tahoe-notifier pause hour|tomorrow|resume`: holds notifications back (they are still
//! recorded) until then. Through the running host when there is one, so that it and the tray
//! follow at once; else in the preferences, which the host reads when it starts.

use std::process::ExitCode;

use anyhow::Context as _;
use notifier_core::host::service::pause_until;
use serde_json::json;
use time::OffsetDateTime;

use crate::context::Context;
use crate::output::{print_json, print_text};
use crate::running::with_host;

/// Pause notifications, or resume them.
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// `hour` (for an hour), `tomorrow` (until 08:00 local time tomorrow) or `resume`.
    #[arg(value_parser = ["hour", "tomorrow", "resume"])]
    until: String,
}

/// Runs `pause`.
pub fn run(ctx: &Context, args: &PauseArgs) -> anyhow::Result<ExitCode> {
    // Asked before any thread exists (the time crate refuses after).
    let local_offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    ctx.ensure_dirs()?;
    let until = pause_until(&args.until, OffsetDateTime::now_utc(), local_offset)
        .map_err(anyhow::Error::msg)?;
    let through_host = with_host(ctx.paths(), async |client| client.pause(&args.until).await)?;
    if through_host.is_none() {
        ctx.notifier()
            .pause(until)
            .context("cannot save the pause in the preferences")?;
    }
    let shown = until.map(|until| {
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
        until
            .to_offset(local_offset)
            .format(&format)
            .unwrap_or_else(|_| until.to_string())
    });
    if ctx.json() {
        print_json(&json!({
            "paused_until": until.map(|u| u.unix_timestamp()),
            "running_host": through_host.is_some(),
        }))?;
    } else {
        match shown {
            Some(at) => print_text(&format!(
                "notifications paused until {at}; changes are still recorded\n"
            ))?,
            None => print_text("notifications resumed\n")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
