//! The app's state as the sidebar and the tray show it.

use serde::Serialize;
use time::OffsetDateTime;

use super::{Result, Shared};

/// The app's state in one line and in parts (what the tray shows).
#[derive(Debug, Serialize)]
pub struct AppStatus {
    tray_state: notifier_core::status::TrayState,
    summary: String,
    unread: u64,
    paused_until_ms: Option<i64>,
    connected: usize,
    servers: usize,
    notice: Option<String>,
    engine_error: Option<String>,
    keyring_problem: Option<notifier_core::store::keyring_problem::KeyringProblem>,
    /// Caps watched (the sidebar's count).
    watched: usize,
    /// Unread changes and unread news, apart (the sidebar's badges).
    unread_changes: u64,
    unread_news: u64,
    /// Whether anything is set up yet: with nothing, the window opens on the welcome page.
    configured: bool,
}

/// The app's state.
#[tauri::command(async)]
pub fn app_status(core: Shared<'_>) -> Result<AppStatus> {
    let counts = core.history().unread_counts()?;
    let unread = counts.changes + counts.news;
    let watched = core.caps.list()?.len();
    let configured = watched > 0
        || !core.servers.list()?.is_empty()
        || !core.servers.grids()?.is_empty()
        || core.settings().gateway_url.is_some();
    let now = OffsetDateTime::now_utc();
    let live = core.live();
    let (connected, servers) = live.connected_servers();
    Ok(AppStatus {
        tray_state: live.tray_state(unread, now),
        summary: live.status_line(unread, now, core.local_offset),
        unread,
        paused_until_ms: live
            .paused_until
            .filter(|_| live.is_paused(now))
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
        connected,
        servers,
        notice: live.last_notice.clone(),
        engine_error: live.engine_error.clone(),
        keyring_problem: live.keyring_problem.clone(),
        watched,
        unread_changes: counts.changes,
        unread_news: counts.news,
        configured,
    })
}
