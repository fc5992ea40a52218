//! What the page may call. Each command is a thin call into notifier-core; the page gets ids,
//! storage indexes, labels and states — never a cap or a NURL. The only cap that crosses the
//! boundary is the one the user pastes, going in.

use std::path::PathBuf;
use std::sync::Arc;

use notifier_core::caps::{check_watchable, CapStoreError};
use notifier_core::config::{CapEntry, CapKind};
use notifier_core::engine::EngineCommand;
use notifier_core::grid_file::parse_grid_file;
use notifier_core::history::ChangeFilter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tahoe_caps::{Cap, CapRole};
use tauri::{AppHandle, Emitter as _, State};
use tauri_plugin_autostart::ManagerExt as _;
use time::OffsetDateTime;

use crate::app::{self, Core, CHANGED_EVENT};
use crate::settings::{NotifyFor, Settings};
use crate::tray::{self, Pause};

/// A command's failure, as the page shows it: one sentence, never a secret (every error type
/// of notifier-core is written to leave caps out).
#[derive(Debug, thiserror::Error, Serialize)]
#[error("{0}")]
pub struct CommandError(String);

impl CommandError {
    /// The error's sentence (never a secret: every error type of notifier-core leaves caps out).
    pub fn new(error: impl std::fmt::Display) -> Self {
        Self(error.to_string())
    }
}

macro_rules! command_error_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CommandError {
            fn from(error: $t) -> Self {
                Self::new(error)
            }
        }
    )*};
}

command_error_from!(
    CapStoreError,
    notifier_core::servers::ServerStoreError,
    notifier_core::grid_file::GridFileError,
    notifier_core::history::HistoryError,
    crate::settings::SettingsError,
    tauri_plugin_autostart::Error,
);

type Result<T> = std::result::Result<T, CommandError>;
type Shared<'a> = State<'a, Arc<Core>>;

fn changed(app: &AppHandle, core: &Arc<Core>) {
    tray::refresh_with_menu(app, core, true);
    let _ = app.emit(CHANGED_EVENT, ());
}

/// The app's state in one line and in parts (what the tray shows).
#[derive(Debug, Serialize)]
pub struct AppStatus {
    tray_state: crate::state::TrayState,
    summary: String,
    unread: u64,
    paused_until_ms: Option<i64>,
    connected: usize,
    servers: usize,
    notice: Option<String>,
    engine_error: Option<String>,
    keyring_problem: Option<crate::keyring_state::KeyringProblem>,
}

/// The app's state.
#[tauri::command(async)]
pub fn app_status(core: Shared<'_>) -> Result<AppStatus> {
    let unread = core.unread()?;
    let now = OffsetDateTime::now_utc();
    let live = core.live();
    let (connected, servers) = live.connected_servers();
    Ok(AppStatus {
        tray_state: live.tray_state(unread, now),
        summary: live.summary(unread, now),
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
    })
}

/// One watched cap as the Watched page lists it.
#[derive(Debug, Serialize)]
pub struct CapView {
    id: String,
    label: String,
    kind: &'static str,
    si: String,
    muted: bool,
    created_ms: i64,
    subscribed_on: Option<usize>,
    servers: Option<usize>,
    polling: bool,
    last_change: Option<String>,
    last_change_ms: Option<i64>,
    unread: u64,
}

fn kind_word(kind: CapKind) -> &'static str {
    match kind {
        CapKind::Directory => "folder",
        CapKind::File => "file",
    }
}

/// Every watched cap with its status, last change and unread count.
#[tauri::command(async)]
pub fn list_caps(core: Shared<'_>) -> Result<Vec<CapView>> {
    let entries: Vec<CapEntry> = core.caps.list()?;
    let history = core.history();
    let counts = history.unread_counts()?;
    let live = core.live();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let last = history
            .list_changes(&ChangeFilter {
                cap_id: Some(entry.id.clone()),
                unread_only: false,
                limit: Some(1),
            })?
            .into_iter()
            .next();
        let status = live.caps.get(&entry.id);
        out.push(CapView {
            unread: counts
                .by_cap
                .iter()
                .find(|(id, _)| *id == entry.id)
                .map_or(0, |(_, n)| *n),
            kind: kind_word(entry.kind),
            si: entry.storage_index.to_string(),
            muted: entry.muted,
            created_ms: (entry.created.unix_timestamp_nanos() / 1_000_000) as i64,
            subscribed_on: status.map(|s| s.subscribed_on),
            servers: status.map(|s| s.servers),
            polling: status.is_some_and(|s| s.polling),
            last_change_ms: last.as_ref().map(|c| c.at_ms),
            last_change: last.map(|c| c.summary),
            id: entry.id,
            label: entry.label,
        });
    }
    Ok(out)
}

/// What the add form shows while the user pastes.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Validation {
    /// A cap that can be watched.
    Ok {
        /// `folder` or `file`.
        kind: &'static str,
        /// Its storage index.
        si: String,
        /// The cap's form, e.g. `SDMF directory write-cap`.
        form: String,
        /// Whether a write-cap was pasted (the form then warns and offers to keep it).
        is_write: bool,
    },
    /// Not watchable; the message names what is wrong.
    Error {
        /// The message, without the cap.
        error: String,
    },
}

/// Checks pasted text without storing anything.
#[tauri::command(async)]
pub fn validate_cap(text: String) -> Validation {
    match watchable(&text) {
        Ok(cap) => Validation::Ok {
            kind: if cap.is_directory() { "folder" } else { "file" },
            si: cap
                .storage_index()
                .map(|si| si.to_string())
                .unwrap_or_default(),
            form: format!(
                "{} {}",
                cap.kind().short_name(),
                match cap.role() {
                    CapRole::Write => "write-cap",
                    CapRole::Read => "read-cap",
                    CapRole::Verify => "verify-cap",
                }
            ),
            is_write: cap.role() == CapRole::Write,
        },
        Err(error) => Validation::Error { error },
    }
}

/// Parses `text` and applies the cap store's rules (the same errors `add` would give).
fn watchable(text: &str) -> std::result::Result<Cap, String> {
    let cap = Cap::parse(text.trim()).map_err(|e| e.to_string())?;
    check_watchable(&cap).map_err(|e| e.to_string())?;
    Ok(cap)
}

/// The new entry.
#[derive(Debug, Serialize)]
pub struct Added {
    id: String,
    si: String,
}

/// Starts watching a pasted cap (only its read-only form is ever stored).
#[tauri::command(async)]
pub fn add_cap(app: AppHandle, core: Shared<'_>, text: String, label: String) -> Result<Added> {
    let cap = watchable(&text).map_err(CommandError)?;
    app::require_keyring(&app, &core).map_err(CommandError)?;
    let added = core.caps.add(&cap, &label)?;
    core.send(EngineCommand::CapAdded(added.id.clone()));
    changed(&app, &core);
    Ok(Added {
        id: added.id,
        si: added.storage_index.to_string(),
    })
}

/// Renames a watched cap.
#[tauri::command(async)]
pub fn rename_cap(app: AppHandle, core: Shared<'_>, id: String, label: String) -> Result<()> {
    core.caps.rename(&id, &label)?;
    // The engine keeps labels for its notifications: re-adding refreshes them.
    core.send(EngineCommand::CapRemoved(id.clone()));
    core.send(EngineCommand::CapAdded(id));
    changed(&app, &core);
    Ok(())
}

/// Mutes or unmutes a watched cap.
#[tauri::command(async)]
pub fn set_muted(app: AppHandle, core: Shared<'_>, id: String, muted: bool) -> Result<()> {
    core.caps.set_muted(&id, muted)?;
    core.send(EngineCommand::SetMuted { id, muted });
    changed(&app, &core);
    Ok(())
}

/// Stops watching: unsubscribes, then deletes the keyring entry and the config entry.
#[tauri::command(async)]
pub fn remove_cap(app: AppHandle, core: Shared<'_>, id: String) -> Result<()> {
    core.send(EngineCommand::CapRemoved(id.clone()));
    core.caps.remove(&id)?;
    core.live().caps.remove(&id);
    changed(&app, &core);
    Ok(())
}

/// One change as the Activity page shows it.
#[derive(Debug, Serialize)]
pub struct ChangeView {
    id: i64,
    cap_id: String,
    label: String,
    summary: String,
    details: Value,
    at_ms: i64,
    read: bool,
    while_away: bool,
}

/// The history, newest first, optionally of one cap or unread only.
#[tauri::command(async)]
pub fn list_changes(
    core: Shared<'_>,
    cap_id: Option<String>,
    unread_only: Option<bool>,
) -> Result<Vec<ChangeView>> {
    let labels: std::collections::HashMap<String, String> = core
        .caps
        .list()?
        .into_iter()
        .map(|e| (e.id, e.label))
        .collect();
    let records = core.history().list_changes(&ChangeFilter {
        cap_id,
        unread_only: unread_only.unwrap_or(false),
        limit: Some(500),
    })?;
    Ok(records
        .into_iter()
        .map(|r| ChangeView {
            label: labels
                .get(&r.cap_id)
                .cloned()
                .unwrap_or_else(|| "(removed)".to_owned()),
            id: r.id,
            cap_id: r.cap_id,
            summary: r.summary,
            details: r.details,
            at_ms: r.at_ms,
            read: r.read,
            while_away: r.while_away,
        })
        .collect())
}

/// One news item for the News page.
#[derive(Debug, Serialize)]
pub struct NewsView {
    id: i64,
    grid: String,
    name: String,
    title: String,
    severity: String,
    body: String,
    at_ms: i64,
    expires_ms: Option<i64>,
    read: bool,
}

/// Operator news, newest first, without expired items.
#[tauri::command(async)]
pub fn list_news(core: Shared<'_>) -> Result<Vec<NewsView>> {
    let now = notifier_core::history::now_ms();
    let records = core.history().list_news(false, Some(200))?;
    Ok(records
        .into_iter()
        .filter(|n| n.expires_ms.is_none_or(|e| e > now))
        .map(|n| NewsView {
            title: n.title.clone().unwrap_or_else(|| {
                n.body
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("News")
                    .to_owned()
            }),
            id: n.id,
            grid: n.grid,
            name: n.name,
            severity: n.severity.to_string(),
            body: n.body,
            at_ms: n.at_ms,
            expires_ms: n.expires_ms,
            read: n.read,
        })
        .collect())
}

/// Marks one change read.
#[tauri::command(async)]
pub fn mark_change_read(app: AppHandle, core: Shared<'_>, id: i64) -> Result<()> {
    core.history().mark_change_read(id)?;
    changed(&app, &core);
    Ok(())
}

/// Marks one news item read.
#[tauri::command(async)]
pub fn mark_news_read(app: AppHandle, core: Shared<'_>, id: i64) -> Result<()> {
    core.history().mark_news_read(id)?;
    changed(&app, &core);
    Ok(())
}

/// Marks everything read (or everything of one cap).
#[tauri::command(async)]
pub fn mark_all_read(app: AppHandle, core: Shared<'_>, cap_id: Option<String>) -> Result<u64> {
    let history = core.history();
    let mut marked = history.mark_all_read(cap_id.as_deref())?;
    if cap_id.is_none() {
        for news in history.list_news(true, None)? {
            if history.mark_news_read(news.id)? {
                marked += 1;
            }
        }
    }
    drop(history);
    changed(&app, &core);
    Ok(marked)
}

/// An updates server for the Servers page (no NURL: it holds the swissnum).
#[derive(Debug, Serialize)]
pub struct ServerView {
    id: String,
    name: String,
    address: String,
    grid: Option<String>,
    state: String,
    last_error: Option<String>,
    retry_in_s: Option<u64>,
}

/// A grid for the Servers page.
#[derive(Debug, Serialize)]
pub struct GridView {
    name: String,
    gateway_url: String,
    has_news: bool,
}

/// The Servers page's data.
#[derive(Debug, Serialize)]
pub struct ServersView {
    servers: Vec<ServerView>,
    grids: Vec<GridView>,
}

/// The configured updates servers with their link state, and the grids.
#[tauri::command(async)]
pub fn list_servers(core: Shared<'_>) -> Result<ServersView> {
    let entries = core.servers.list()?;
    let grids = core.servers.grids()?;
    let live = core.live();
    let servers = entries
        .into_iter()
        .map(|e| {
            let status = live.servers.get(&e.id);
            ServerView {
                name: e
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}:{}", e.host, e.port)),
                address: format!("{}:{}", e.host, e.port),
                grid: e.grid.clone(),
                state: status.map_or("not started", |s| s.state).to_owned(),
                last_error: status.and_then(|s| s.last_error.clone()),
                retry_in_s: status.and_then(|s| s.retry_in_s),
                id: e.id,
            }
        })
        .collect();
    Ok(ServersView {
        servers,
        grids: grids
            .into_iter()
            .map(|g| GridView {
                has_news: g.news_id.is_some(),
                name: g.name,
                gateway_url: g.gateway_url,
            })
            .collect(),
    })
}

/// Reconnects every updates server now.
#[tauri::command(async)]
pub fn reconnect(core: Shared<'_>) {
    core.send(EngineCommand::ReconnectAll);
}

/// What an import did.
#[derive(Debug, Serialize)]
pub struct Imported {
    grid: String,
    servers: usize,
}

/// Imports the grid file at `path` (chosen by the user), then restarts the engine so it
/// connects to the new servers. The file's secrets go to the keyring, never to the page.
#[tauri::command(async)]
pub fn import_grid_file(app: AppHandle, core: Shared<'_>, path: String) -> Result<Imported> {
    let path = expand_home(path.trim());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CommandError(format!("cannot read the grid file {}: {e}", path.display())))?;
    let grid = parse_grid_file(&text)?;
    app::require_keyring(&app, &core).map_err(CommandError)?;
    let entry = core.servers.import_grid(&grid)?;
    let core = Arc::clone(&core);
    restart(&app, &core);
    Ok(Imported {
        grid: entry.name,
        servers: grid.updates_servers.len(),
    })
}

fn restart(app: &AppHandle, core: &Arc<Core>) {
    app::restart_engine(app, core);
}

pub(crate) fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The Settings page's data.
#[derive(Debug, Serialize)]
pub struct SettingsView {
    gateway_url: Option<String>,
    quiet_start: Option<String>,
    quiet_end: Option<String>,
    notify_for: NotifyFor,
    autostart: bool,
    keyring: String,
    locations: Vec<Location>,
}

/// One place where data lives.
#[derive(Debug, Serialize)]
pub struct Location {
    what: String,
    path: String,
}

/// The settings and where data lives.
#[tauri::command(async)]
pub fn get_settings(app: AppHandle, core: Shared<'_>) -> Result<SettingsView> {
    let settings = core.settings();
    let (quiet_start, quiet_end) = match settings.quiet_hours {
        Some((start, end)) => (Some(start), Some(end)),
        None => (None, None),
    };
    let mut locations: Vec<Location> = app::data_locations(&core)
        .into_iter()
        .map(|(what, path)| Location {
            what,
            path: path.display().to_string(),
        })
        .collect();
    let keyring = core.secrets.backend();
    locations.push(Location {
        what: "Caps and server keys".to_owned(),
        path: match keyring {
            notifier_core::keyring_store::KeyringBackend::SecretService => {
                "the desktop keyring (Secret Service), service \"tahoe-notifier\"".to_owned()
            }
            notifier_core::keyring_store::KeyringBackend::Keyutils => {
                "the kernel keyring (forgotten at reboot)".to_owned()
            }
        },
    });
    Ok(SettingsView {
        gateway_url: settings.gateway_url,
        quiet_start,
        quiet_end,
        notify_for: settings.notify_for,
        autostart: app.autolaunch().is_enabled().unwrap_or(false),
        keyring: keyring.to_string(),
        locations,
    })
}

/// Settings as the page sends them.
#[derive(Debug, Deserialize)]
pub struct SettingsInput {
    gateway_url: Option<String>,
    quiet_start: Option<String>,
    quiet_end: Option<String>,
    notify_for: NotifyFor,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Checks and saves the settings; a change restarts the engine with them.
#[tauri::command(async)]
pub fn set_settings(app: AppHandle, core: Shared<'_>, settings: SettingsInput) -> Result<()> {
    let quiet_hours = match (
        non_empty(settings.quiet_start),
        non_empty(settings.quiet_end),
    ) {
        (Some(start), Some(end)) => Some((start, end)),
        (None, None) => None,
        _ => return Err(CommandError::new(crate::settings::SettingsError::BadTime)),
    };
    let new = Settings {
        gateway_url: non_empty(settings.gateway_url),
        quiet_hours,
        notify_for: settings.notify_for,
    };
    new.validate()?;
    new.save(core.paths.config_dir())?;
    let changed = core.settings() != new;
    core.set_settings(new);
    // The engine reads the gateway and its notification policy when it starts.
    if changed {
        let core = Arc::clone(&core);
        restart(&app, &core);
    }
    Ok(())
}

/// Turns starting at login on or off.
#[tauri::command(async)]
pub fn set_autostart(app: AppHandle, enabled: bool) -> Result<bool> {
    let launcher = app.autolaunch();
    if enabled {
        launcher.enable()?;
    } else {
        launcher.disable()?;
    }
    Ok(launcher.is_enabled()?)
}

/// Pauses notifications (`hour`, `tomorrow`) or resumes them (`resume`).
#[tauri::command(async)]
pub fn pause(app: AppHandle, core: Shared<'_>, mode: String) -> Result<()> {
    let how = match mode.as_str() {
        "hour" => Pause::OneHour,
        "tomorrow" => Pause::UntilTomorrow,
        "resume" => Pause::Resume,
        _ => return Err(CommandError(format!("unknown pause mode {mode:?}"))),
    };
    tray::pause(&app, &core, how);
    Ok(())
}

/// Closes (and so destroys) the window: Ctrl+W on the page. The app stays in the tray.
#[tauri::command(async)]
pub fn close_window(app: AppHandle) -> Result<()> {
    use tauri::Manager as _;
    if let Some(window) = app.get_webview_window(crate::window::MAIN) {
        window.close().map_err(CommandError::new)?;
    }
    Ok(())
}

/// The item a notification click or tray entry asked to show, once.
#[tauri::command(async)]
pub fn take_open_target(core: Shared<'_>) -> Option<String> {
    core.take_pending_target()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason_that_does_not_echo_it() {
        let Validation::Error { error } = validate_cap("hello world secret".to_owned()) else {
            panic!("garbage accepted");
        };
        assert!(error.contains("not a cap"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
