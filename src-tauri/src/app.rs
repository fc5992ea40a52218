//! The app's shared core: the notifier-core stores, the history connection the page reads,
//! the running engine and the live state the tray shows. Everything the commands, the tray
//! and the notification sink touch hangs off one [`Core`] in Tauri's managed state.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use notifier_core::background::{spawn_engine, EngineHandle};
use notifier_core::caps::CapStore;
use notifier_core::config::ConfigFile;
use notifier_core::engine::{EngineCommand, EngineEvent, EngineOptions};
use notifier_core::history::{History, HistoryError};
use notifier_core::keyring_store::SecretStore;
use notifier_core::notify::NotificationSink;
use notifier_core::paths::Paths;
use notifier_core::servers::ServerStore;
use tauri::{AppHandle, Emitter as _};
use time::OffsetDateTime;

use notifier_core::preferences::Preferences as Settings;
use notifier_core::status::{LiveState, TrayState};

/// The event the page listens to: "something changed, refresh what you show".
pub const CHANGED_EVENT: &str = "notifier://changed";
/// The event asking the page to show one item (`change:<id>` or `news:<grid>:<name>`).
pub const OPEN_TARGET_EVENT: &str = "notifier://open-target";

/// How often caps no updates server holds are polled through the gateway, unless
/// `TAHOE_NOTIFIER_POLL_SECONDS` says otherwise (tests use a short one).
const DEFAULT_POLL: Duration = Duration::from_secs(5 * 60);

/// The app's state, shared by the commands, the tray and the engine's event pump.
pub struct Core {
    /// Where the config and history live.
    pub paths: Paths,
    /// The keyring.
    pub secrets: Arc<dyn SecretStore>,
    /// Watched caps.
    pub caps: CapStore,
    /// Updates servers and grids.
    pub servers: ServerStore,
    /// The local time zone's offset, found before any thread started (quiet hours).
    pub local_offset: time::UtcOffset,
    history: Mutex<History>,
    live: Mutex<LiveState>,
    settings: Mutex<Settings>,
    engine: Mutex<Option<tokio::sync::mpsc::Sender<EngineCommand>>>,
    engine_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    bridge_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The magic-folder bridge's last word per folder name, for the Settings page.
    folder_activity: Mutex<std::collections::HashMap<String, (String, bool)>>,
    /// Held while the engine restarts: two restarts at once would orphan an engine.
    restarting: Mutex<()>,
    pending_target: Mutex<Option<String>>,
    last_tray: Mutex<Option<(TrayState, String)>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// Hands `command` to the engine, waiting while its queue is full instead of dropping the
/// command (the review's finding 10: a dropped `CapAdded` left a cap unwatched, a dropped
/// `Shutdown` hung the app). The engine no longer waits on the gateway inside its loop, so the
/// queue drains within moments; the bound only guards against an engine that stopped.
fn deliver(
    commands: &tokio::sync::mpsc::Sender<EngineCommand>,
    mut command: EngineCommand,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match commands.try_send(command) {
            Ok(()) => return Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                return Err("the engine has stopped".to_owned())
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(back)) => {
                if std::time::Instant::now() >= deadline {
                    return Err("the engine's queue stayed full for 30 s".to_owned());
                }
                command = back;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Locks a mutex, using the data even if a panicking thread left it poisoned: every value
/// here stays consistent between statements, and the tray must keep working.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// Opens the stores and the history under `paths`.
    pub fn open(
        paths: Paths,
        secrets: Arc<dyn SecretStore>,
        local_offset: time::UtcOffset,
    ) -> anyhow::Result<Core> {
        paths.ensure_dirs().map_err(|e| {
            anyhow::anyhow!(
                "cannot create the folders {} and {}: {e}",
                paths.config_dir().display(),
                paths.data_dir().display()
            )
        })?;
        let config = ConfigFile::new(paths.config_file());
        let settings = Settings::load(paths.config_dir())?;
        let history = History::open(&paths.history_db())?;
        Ok(Core {
            caps: CapStore::new(config.clone(), Arc::clone(&secrets)),
            servers: ServerStore::new(config, Arc::clone(&secrets)),
            paths,
            secrets,
            local_offset,
            history: Mutex::new(history),
            live: Mutex::new(LiveState::default()),
            settings: Mutex::new(settings),
            engine: Mutex::new(None),
            engine_thread: Mutex::new(None),
            bridge_thread: Mutex::new(None),
            folder_activity: Mutex::new(std::collections::HashMap::new()),
            restarting: Mutex::new(()),
            pending_target: Mutex::new(None),
            last_tray: Mutex::new(None),
        })
    }

    /// The history (one connection; the engine has its own).
    pub fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }

    /// The live state.
    pub fn live(&self) -> MutexGuard<'_, LiveState> {
        lock(&self.live)
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// Replaces the settings (already validated and saved).
    pub fn set_settings(&self, settings: Settings) {
        *lock(&self.settings) = settings;
    }

    /// The use cases over this app's folders and keyring.
    pub fn notifier(&self) -> notifier_core::service::Notifier {
        notifier_core::service::Notifier::new(self.paths.clone(), Arc::clone(&self.secrets))
    }

    /// The user's Tahoe node: the one chosen in the app, else `~/.tahoe` if it exists.
    pub fn tahoe_node(
        &self,
    ) -> Result<Option<notifier_core::tahoe_node::NodeDir>, notifier_core::tahoe_node::NodeDirError>
    {
        notifier_core::tahoe_node::NodeDir::find(self.settings().tahoe_node_dir.as_deref())
    }

    /// Unread changes plus unread news.
    pub fn unread(&self) -> Result<u64, HistoryError> {
        let counts = self.history().unread_counts()?;
        Ok(counts.changes + counts.news)
    }

    /// The tray's look and one-line summary now.
    pub fn tray_view(&self) -> (TrayState, String) {
        let unread = self.unread().unwrap_or(0);
        let now = OffsetDateTime::now_utc();
        let live = self.live();
        (
            live.tray_state(unread, now),
            live.summary(unread, now, self.local_offset),
        )
    }

    /// Records the tray's look; returns whether it differs from the last one drawn.
    pub fn tray_changed(&self, view: &(TrayState, String)) -> bool {
        let mut last = lock(&self.last_tray);
        if last.as_ref() == Some(view) {
            return false;
        }
        *last = Some(view.clone());
        true
    }

    /// Remembers an item the page should show once it is loaded.
    pub fn set_pending_target(&self, target: Option<String>) {
        *lock(&self.pending_target) = target;
    }

    /// The item the page should show, once.
    pub fn take_pending_target(&self) -> Option<String> {
        lock(&self.pending_target).take()
    }

    /// Sends a command to the running engine, if any.
    pub fn send(&self, command: EngineCommand) {
        let commands = lock(&self.engine).clone();
        if let Some(commands) = commands {
            if let Err(error) = deliver(&commands, command) {
                tracing::warn!(%error, "the engine did not take a command");
            }
        }
    }

    /// Stops the engine, if running, and waits for its thread and the magic-folder bridge's
    /// (which ends once the engine's event pump stops forwarding changes to it).
    pub fn stop_engine(&self) {
        let commands = lock(&self.engine).take();
        if let Some(commands) = commands {
            if let Err(error) = deliver(&commands, EngineCommand::Shutdown) {
                tracing::warn!(%error, "the engine did not take the shutdown");
            }
        }
        if let Some(thread) = lock(&self.engine_thread).take() {
            let _ = thread.join();
        }
        if let Some(thread) = lock(&self.bridge_thread).take() {
            let _ = thread.join();
        }
    }

    /// Records the bridge's last word about a linked folder, and whether it is a failure.
    pub fn set_folder_activity(&self, folder: &str, text: String, failed: bool) {
        lock(&self.folder_activity).insert(folder.to_owned(), (text, failed));
    }

    /// The bridge's last word about a linked folder (and whether it is a failure), if any
    /// since the app started.
    pub fn folder_activity(&self, folder: &str) -> Option<(String, bool)> {
        lock(&self.folder_activity).get(folder).cloned()
    }
}

/// Starts (or restarts) the engine with the current settings, and a thread that folds its
/// events into the live state and redraws the tray and the page.
pub fn start_engine(app: &AppHandle, core: &Arc<Core>, sink: Arc<dyn NotificationSink>) {
    let _restarting = lock(&core.restarting);
    core.stop_engine();
    core.live().reset_engine_view();
    // Without a usable keyring the engine could read no cap (or would block on an unlock
    // prompt): say so and wait; `watch_keyring` starts the engine once it can be used.
    let problem = notifier_core::keyring_problem::probe(core.secrets.as_ref());
    if let Some(problem) = &problem {
        tracing::warn!(
            kind = ?problem.kind,
            detail = %problem.detail,
            "the keyring cannot be used: waiting for it before watching"
        );
    }
    let waiting = problem.is_some();
    core.live().keyring_problem = problem;
    if waiting {
        crate::tray::refresh(app, core);
        let _ = app.emit(CHANGED_EVENT, ());
        return;
    }
    let poll_interval = std::env::var("TAHOE_NOTIFIER_POLL_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(DEFAULT_POLL, |s| Duration::from_secs(s.max(1)));
    let settings = core.settings();
    let mut options = EngineOptions::new(core.paths.clone(), Arc::clone(&core.secrets));
    options.gateway_url = settings.gateway_url.clone();
    options.poll_interval = poll_interval;
    options.local_offset = core.local_offset;
    // Quiet hours and "news only" are the engine's policy; the pause stays in the app's sink.
    options.policy.quiet_hours = settings.quiet_hours().ok().flatten();
    options.policy.news_only =
        settings.notify_for == notifier_core::preferences::NotifyFor::NewsOnly;
    match spawn_engine(options, Some(Arc::clone(&sink))) {
        Ok(handle) => {
            core.live().engine_error = None;
            let EngineHandle {
                commands,
                events,
                join,
            } = handle;
            // Linked magic-folder folders: the bridge runs beside the engine, as in `watch`.
            let bridge = crate::magic_folder::spawn_bridge(app, core, sink, commands.clone());
            let changes = bridge.as_ref().map(|b| b.changes.clone());
            *lock(&core.bridge_thread) = bridge.map(|b| b.thread);
            *lock(&core.engine) = Some(commands);
            let pump = pump_events(app.clone(), Arc::clone(core), events, join, changes);
            *lock(&core.engine_thread) = pump;
        }
        Err(error) => {
            tracing::error!(%error, "the engine did not start");
            core.live().engine_error = Some(error.to_string());
        }
    }
    crate::tray::refresh(app, core);
    let _ = app.emit(CHANGED_EVENT, ());
}

/// Restarts the engine with the app's own notification sink (after an import, a settings
/// change, or once the keyring can be used).
pub fn restart_engine(app: &AppHandle, core: &Arc<Core>) {
    let sink: Arc<dyn NotificationSink> =
        Arc::new(crate::notify::AppSink::new(app.clone(), Arc::clone(core)));
    start_engine(app, core, sink);
}

/// How often an unusable keyring is looked at again.
const KEYRING_RECHECK: Duration = Duration::from_secs(3);

/// While the keyring is unusable, looks again every few seconds and starts the engine once it
/// can be used (the user unlocked it, or started gnome-keyring).
pub fn watch_keyring(app: &AppHandle, core: &Arc<Core>) {
    let (app, core) = (app.clone(), Arc::clone(core));
    let spawned = std::thread::Builder::new()
        .name("keyring-watch".to_owned())
        .spawn(move || loop {
            std::thread::sleep(KEYRING_RECHECK);
            let was = core.live().keyring_problem.clone();
            if was.is_none() {
                continue;
            }
            let now = notifier_core::keyring_problem::probe(core.secrets.as_ref());
            if now == was {
                continue;
            }
            if now.is_none() {
                tracing::info!("the keyring can be used now: starting to watch");
                restart_engine(&app, &core);
            } else {
                core.live().keyring_problem = now;
                crate::tray::refresh(&app, &core);
                let _ = app.emit(CHANGED_EVENT, ());
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the keyring watch");
    }
}

/// Checks the keyring before an action that stores a secret; an unusable one becomes the
/// app's state (banner, tooltip) and the action's error.
pub fn require_keyring(app: &AppHandle, core: &Arc<Core>) -> Result<(), String> {
    let problem = notifier_core::keyring_problem::probe(core.secrets.as_ref());
    let changed = core.live().keyring_problem != problem;
    if changed {
        core.live().keyring_problem = problem.clone();
        crate::tray::refresh(app, core);
        let _ = app.emit(CHANGED_EVENT, ());
    }
    match problem {
        None => Ok(()),
        Some(problem) => Err(format!(
            "{}: nothing was stored. {}",
            problem.title, problem.message
        )),
    }
}

/// Reads the engine's events on a thread of its own until the engine stops.
fn pump_events(
    app: AppHandle,
    core: Arc<Core>,
    mut events: tokio::sync::mpsc::Receiver<EngineEvent>,
    engine: std::thread::JoinHandle<Result<(), notifier_core::engine::EngineError>>,
    bridge_changes: Option<tokio::sync::mpsc::Sender<notifier_core::engine::ChangeReport>>,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("engine-events".to_owned())
        .spawn(move || {
            while let Some(event) = events.blocking_recv() {
                log_event(&event);
                if let (EngineEvent::Changed(report), Some(bridge)) = (&event, &bridge_changes) {
                    // Never wait on the bridge here: the tray and the page follow this loop.
                    if let Err(error) = bridge.try_send(report.clone()) {
                        tracing::warn!(%error, "the magic-folder bridge did not take a change");
                    }
                }
                core.live().apply(&event);
                let new_change = matches!(event, EngineEvent::Changed(_));
                crate::tray::refresh_with_menu(&app, &core, new_change);
                let _ = app.emit(CHANGED_EVENT, ());
            }
            // The engine stopped: so does the bridge, once it sees the channel closed.
            drop(bridge_changes);
            match engine.join() {
                Ok(Ok(())) => tracing::info!("the engine stopped"),
                Ok(Err(error)) => {
                    tracing::error!(%error, "the engine stopped");
                    core.live().engine_error = Some(error.to_string());
                    crate::tray::refresh(&app, &core);
                }
                Err(_) => {
                    core.live().engine_error = Some("the engine crashed".to_owned());
                    crate::tray::refresh(&app, &core);
                }
            }
        });
    match spawned {
        Ok(thread) => Some(thread),
        Err(error) => {
            tracing::error!(%error, "cannot start the event thread");
            None
        }
    }
}

/// Events in the log: ids, counts and states only (labels and summaries name the user's
/// files, so they stay at debug level; caps never reach an event).
fn log_event(event: &EngineEvent) {
    match event {
        EngineEvent::Server { id, state, .. } => tracing::info!(server = %id, ?state, "server"),
        EngineEvent::CapStatus {
            id,
            subscribed_on,
            servers,
            ..
        } => tracing::info!(cap = %id, subscribed_on, servers, "cap status"),
        EngineEvent::Changed(report) => {
            tracing::info!(cap = %report.cap_id, history_id = report.history_id, "change")
        }
        EngineEvent::News(news) => tracing::info!(grid = %news.grid, "news"),
        EngineEvent::Notice(text) => tracing::info!(notice = %text, "engine notice"),
    }
}

/// Where the app's data lives, for the Settings page.
pub fn data_locations(core: &Core) -> Vec<(String, PathBuf)> {
    vec![
        ("Configuration".to_owned(), core.paths.config_file()),
        ("History".to_owned(), core.paths.history_db()),
        (
            "Preferences".to_owned(),
            core.paths
                .config_dir()
                .join(notifier_core::preferences::PREFERENCES_FILE),
        ),
    ]
}
