//! The engine host: the one background process of Tahoe Notifier. It runs the engine, the
//! magic-folder bridge, a follower of the config and preferences files (a change made by any
//! face takes effect within [`FOLLOW_INTERVAL`]), the desktop notifications with their actions,
//! a watcher of the desktop's Do-Not-Disturb, and — where there is a session bus — the D-Bus
//! service `org.tahoe_lafs.Notifier` ([`service`]), whose name is the single-instance guard.
//!
//! Faces drive it: `tahoe-notifier watch` prints its [`HostEvent`]s; the tray draws them and
//! sends [`HostCommand`]s; the window talks to the D-Bus service from its own process. There is
//! one host in the code, whichever face runs it.
//!
//! [`run`] needs a current-thread runtime inside a `LocalSet` (the engine keeps the SQLite
//! history across awaits and is not `Send`); [`spawn`] gives it a thread of its own.

pub mod client;
pub mod dnd;
pub mod service;
pub mod window;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use thiserror::Error;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::engine::{Engine, EngineCommand, EngineError, EngineEvent, EngineOptions};
use crate::history::History;
use crate::magic_folder::bridge::{Bridge, BridgeEvent, BridgeOptions};
use crate::net::link::LinkTiming;
use crate::notify::{
    DesktopSink, NotificationAction, NotificationSink, PolicyConfig, RecordingSink,
};
use crate::status::LiveState;
use crate::store::caps::CapStore;
use crate::store::config::ConfigFile;
use crate::store::keyring::SecretStore;
use crate::store::keyring_problem::{probe, KeyringProblem};
use crate::store::paths::Paths;
use crate::store::preferences::Preferences;

/// Resolves when the process is asked to stop: SIGTERM (a service manager, a session ending)
/// or Ctrl-C. How every face that hosts the engine ends its run.
pub async fn stop_signal() {
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

/// The program `name` of Tahoe Notifier: beside the running executable when it is there (the
/// package and a cargo build put them together), else found on `PATH`. How the window starts
/// the tray, the tray the window, and `watch` the window.
pub fn sibling_program(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// How often the host looks at the config and preferences files for changes other faces made.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// How often the host asks whether the keyring can be used, while it cannot.
const KEYRING_RETRY: Duration = Duration::from_secs(2);

/// How the host runs.
#[derive(Clone)]
pub struct HostOptions {
    /// Where the config, preferences and history live.
    pub paths: Paths,
    /// The keyring.
    pub secrets: Arc<dyn SecretStore>,
    /// A gateway that wins over the preferences' and the grids' (`watch --gateway`).
    pub gateway_url: Option<String>,
    /// How often caps no server holds are polled.
    pub poll_interval: Duration,
    /// The links' timing.
    pub link_timing: LinkTiming,
    /// The policy's coalescing settings (the rest comes from the preferences).
    pub policy: PolicyConfig,
    /// The local offset, found before threads existed.
    pub local_offset: time::UtcOffset,
    /// Raise desktop notifications (else they are only recorded).
    pub desktop: bool,
    /// Own `org.tahoe_lafs.Notifier` on the session bus, if there is one.
    pub service: bool,
    /// Wait for an unusable keyring (the tray) instead of failing at once (`watch`).
    pub wait_for_keyring: bool,
    /// Quiet hours for this run, over the preferences' (`watch --quiet-hours`).
    pub quiet_hours: Option<crate::notify::QuietHours>,
    /// News only for this run, over the preferences (`watch --news-only`).
    pub news_only: bool,
}

impl std::fmt::Debug for HostOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOptions")
            .field("paths", &self.paths)
            .field("desktop", &self.desktop)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl HostOptions {
    /// The defaults over `paths` and `secrets`: desktop notifications, the D-Bus service, UTC.
    pub fn new(paths: Paths, secrets: Arc<dyn SecretStore>) -> HostOptions {
        HostOptions {
            paths,
            secrets,
            gateway_url: None,
            poll_interval: crate::engine::DEFAULT_POLL_INTERVAL,
            link_timing: LinkTiming::default(),
            policy: PolicyConfig::default(),
            local_offset: time::UtcOffset::UTC,
            desktop: true,
            service: true,
            wait_for_keyring: true,
            quiet_hours: None,
            news_only: false,
        }
    }
}

/// Why the host could not run.
#[derive(Debug, Error)]
pub enum HostError {
    /// The engine failed to start or stopped with an error.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The keyring cannot be used and the host was not asked to wait for it.
    #[error("the keyring cannot be used: {0}")]
    Keyring(String),
    /// Another engine host owns the D-Bus name already.
    #[error("Tahoe Notifier is running already ({0}): one engine per user session")]
    AlreadyRunning(String),
    /// The preferences could not be read.
    #[error(transparent)]
    Preferences(#[from] crate::store::preferences::PreferencesError),
    /// The magic-folder links could not be read.
    #[error("cannot read the magic-folder links: {0}")]
    MagicFolder(String),
}

/// What the host tells its face.
#[derive(Debug, Clone)]
pub enum HostEvent {
    /// Something the engine reported.
    Engine(EngineEvent),
    /// Something the magic-folder bridge reported.
    Bridge(BridgeEvent),
    /// The live state changed (servers, caps, pause, keyring, unread counts).
    State(Box<HostState>),
    /// A notification's "Open", or a D-Bus `OpenWindow` call: the face shows this item.
    Open(Option<String>),
}

/// The state faces draw: the live state and the unread counts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HostState {
    /// Servers, caps, pause, keyring, notices.
    pub live: LiveState,
    /// Unread changes.
    pub unread_changes: u64,
    /// Unread news.
    pub unread_news: u64,
    /// The last changes, newest first (summary and history id), for the tray's menu.
    pub recent: Vec<(i64, String)>,
    /// The magic-folder bridge's last word per linked folder, and whether it is a failure.
    #[serde(default)]
    pub folders: BTreeMap<String, (String, bool)>,
}

/// What a bridge event means for the state: the folder it is about (if any), a sentence, and
/// whether it is a failure (then also the state's notice).
fn describe_bridge_event(event: &BridgeEvent) -> Option<(Option<&str>, String, bool)> {
    Some(match event {
        BridgeEvent::Poked {
            folder,
            participant,
            elapsed,
        } => (
            Some(folder.as_str()),
            format!(
                "fetched {participant}'s change {:.1} s after it was pushed",
                elapsed.as_secs_f64()
            ),
            false,
        ),
        BridgeEvent::PokeFailed { folder, reason } => (
            Some(folder.as_str()),
            format!(
                "could not ask the daemon to fetch a change now ({reason}); it will at its next poll"
            ),
            true,
        ),
        BridgeEvent::Participants {
            folder,
            added,
            removed,
        } => {
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("now watching {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("no longer watching {}", removed.join(", ")));
            }
            (Some(folder.as_str()), parts.join("; "), false)
        }
        BridgeEvent::Notified { .. } => return None,
        BridgeEvent::Notice(text) => (None, text.clone(), true),
    })
}

/// What a face may ask of the host.
#[derive(Debug, Clone)]
pub enum HostCommand {
    /// Pass this on to the engine.
    Engine(EngineCommand),
    /// Pause notifications until then (`None`: resume).
    Pause(Option<OffsetDateTime>),
    /// Mark every change and news item read.
    MarkAllRead,
    /// Show this item in the window.
    Open(Option<String>),
    /// Stop.
    Quit,
}

/// Where a face sends its commands.
#[derive(Debug, Clone)]
pub struct HostHandle {
    commands: mpsc::UnboundedSender<HostCommand>,
}

impl HostHandle {
    /// Sends `command`; `false` when the host has stopped.
    pub fn send(&self, command: HostCommand) -> bool {
        self.commands.send(command).is_ok()
    }
}

/// A channel pair for [`run`]: the handle faces keep, and the receiver the host reads.
pub fn channel() -> (HostHandle, mpsc::UnboundedReceiver<HostCommand>) {
    let (commands, receiver) = mpsc::unbounded_channel();
    (HostHandle { commands }, receiver)
}

impl HostOptions {
    /// The notification policy of `preferences`, with this run's overrides.
    fn policy(&self, preferences: &Preferences) -> PolicyConfig {
        let mut policy = preferences.policy(self.policy.clone());
        if self.quiet_hours.is_some() {
            policy.quiet_hours = self.quiet_hours;
        }
        policy.news_only |= self.news_only;
        policy
    }
}

/// The history item a notification target names: `change:42` → 42.
fn change_id(target: &str) -> Option<i64> {
    target.strip_prefix("change:")?.parse().ok()
}

/// Runs the host until [`HostCommand::Quit`] or the commands' senders are all gone. Call it
/// inside a `LocalSet` on a current-thread runtime.
pub async fn run(
    options: HostOptions,
    handle: HostHandle,
    mut commands: mpsc::UnboundedReceiver<HostCommand>,
    events: mpsc::UnboundedSender<HostEvent>,
) -> Result<(), HostError> {
    let shared = Arc::new(Mutex::new(HostState::default()));
    let (state_tx, mut state_rx) = tokio::sync::watch::channel(HostState::default());
    // A change edits the shared state (which `GetState` reads) at once; the whole state goes
    // to the face and the bus at most every PUBLISH_INTERVAL. Published per change, 1,000 caps
    // subscribing on 3 servers made 3,000 copies of a 1,000-cap state queue up for the tray
    // (262.8 MiB RSS in the engine bench, and a window opened 10 s late behind them).
    let publishing = std::rc::Rc::new(std::cell::Cell::new(Publishing::default()));
    let publish = {
        let shared = Arc::clone(&shared);
        let publishing = std::rc::Rc::clone(&publishing);
        move |change: &dyn Fn(&mut HostState)| {
            change(&mut shared.lock().unwrap_or_else(PoisonError::into_inner));
            publishing.set(publishing.get().changed(tokio::time::Instant::now()));
        }
    };
    let flush = {
        let shared = Arc::clone(&shared);
        let events = events.clone();
        let publishing = std::rc::Rc::clone(&publishing);
        move || {
            let snapshot = shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            state_tx.send_replace(snapshot.clone());
            let _ = events.send(HostEvent::State(Box::new(snapshot)));
            publishing.set(Publishing {
                last: Some(tokio::time::Instant::now()),
                due: None,
            });
        }
    };
    // The bus name first: a second host learns at once that one runs, before it opens stores.
    let service = if options.service {
        let name = service::bus_name_for(&options.paths);
        match service::start(
            &name,
            Arc::clone(&shared),
            handle.clone(),
            options.local_offset,
        )
        .await
        {
            Ok(service) => service,
            Err(service::ServiceError::NameTaken(owner)) => {
                return Err(HostError::AlreadyRunning(owner))
            }
            Err(error) => {
                tracing::warn!(%error, "no D-Bus service: the window and the CLI cannot reach this host");
                None
            }
        }
    } else {
        None
    };
    // Every change of the state is a `StateChanged` signal for the window (the latest only,
    // when several come faster than the bus takes them).
    let (window_tx, mut window_rx) = mpsc::unbounded_channel::<Option<String>>();
    let signals = service.map(|service| {
        tokio::task::spawn_local(async move {
            loop {
                tokio::select! {
                    changed = state_rx.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let state = state_rx.borrow_and_update().clone();
                        service.state_changed(&state).await;
                    }
                    Some(target) = window_rx.recv() => {
                        service.window_requested(target.as_deref().unwrap_or("")).await;
                    }
                }
            }
        })
    });
    // Every request to show the window goes to the face (which starts one if none runs) and,
    // as `WindowRequested`, to a window that runs already.
    let open_window = |target: Option<String>| {
        let _ = window_tx.send(target.clone());
        let _ = events.send(HostEvent::Open(target));
    };
    // Caps and keys are in the keyring only: without it there is nothing to watch.
    loop {
        match probe(options.secrets.as_ref()) {
            None => {
                publish(&|s| s.live.keyring_problem = None);
                break;
            }
            Some(problem) if options.wait_for_keyring => {
                let problem: KeyringProblem = problem;
                publish(&|s| s.live.keyring_problem = Some(problem.clone()));
                tokio::select! {
                    () = tokio::time::sleep(KEYRING_RETRY) => {}
                    command = commands.recv() => {
                        if matches!(command, None | Some(HostCommand::Quit)) {
                            return Ok(());
                        }
                    }
                }
            }
            Some(problem) => return Err(HostError::Keyring(problem.message)),
        }
    }
    let preferences = Preferences::load(options.paths.config_dir())?;
    publish(&|s| s.live.paused_until = preferences.paused_until);

    let (actions_tx, mut actions) = mpsc::unbounded_channel::<NotificationAction>();
    let sink: Arc<dyn NotificationSink> = if options.desktop {
        Arc::new(DesktopSink::with_action_handler(Arc::new(move |action| {
            let _ = actions_tx.send(action);
        })))
    } else {
        Arc::new(RecordingSink::new())
    };
    let mut running = Running::start(&options, &preferences, &sink, false)?;
    let history = History::open(&options.paths.history_db()).ok();
    let mut history_version = history.as_ref().and_then(|h| h.data_version().ok());
    let counts = Counts::read(history.as_ref());
    publish(&|s| Counts::apply(&counts, s));
    let mut dnd_on = false;
    let mut follower = Follower::new(&options.paths, Arc::clone(&options.secrets), preferences);
    let mut follow = tokio::time::interval(FOLLOW_INTERVAL);
    follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut do_not_disturb = dnd::Watcher::new().await;
    let mut dnd_ticks = tokio::time::interval(dnd::POLL_INTERVAL);
    dnd_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pause_end: Option<tokio::time::Instant> = None;
    loop {
        let pause_timer = async {
            match pause_end {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let publish_due = publishing.get().due;
        let publish_timer = async {
            match publish_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = running.events.recv() => {
                let Some(event) = event else { break };
                let counts_changed = matches!(event, EngineEvent::Changed(_) | EngineEvent::News(_));
                if let (EngineEvent::Changed(report), Some(changes)) = (&event, &running.changes) {
                    let _ = changes.send(report.clone()).await;
                }
                let counts = counts_changed.then(|| Counts::read(history.as_ref())).flatten();
                publish(&|s| {
                    s.live.apply(&event);
                    Counts::apply(&counts, s);
                });
                let _ = events.send(HostEvent::Engine(event));
            }
            Some(event) = running.bridge_events.recv() => {
                if let Some((folder, text, failed)) = describe_bridge_event(&event) {
                    publish(&|s| {
                        if let Some(folder) = folder {
                            s.folders.insert(folder.to_owned(), (text.clone(), failed));
                        }
                        if failed {
                            s.live.last_notice = Some(match folder {
                                Some(folder) => format!("magic-folder \"{folder}\": {text}"),
                                None => format!("magic-folder: {text}"),
                            });
                        }
                    });
                }
                let _ = events.send(HostEvent::Bridge(event));
            }
            command = commands.recv() => match command {
                None | Some(HostCommand::Quit) => break,
                Some(HostCommand::Engine(command)) => {
                    let _ = running.commands.send(command).await;
                }
                Some(HostCommand::Pause(until)) => {
                    let saved = Preferences::update(options.paths.config_dir(), |p| {
                        p.paused_until = until;
                    });
                    if let Err(error) = saved {
                        tracing::warn!(%error, "the pause is not saved");
                    }
                    follower.preferences.paused_until = until;
                    let policy = options.policy(&follower.preferences);
                    let _ = running.commands.send(EngineCommand::Policy(policy)).await;
                    publish(&|s| s.live.paused_until = until);
                }
                Some(HostCommand::MarkAllRead) => {
                    if let Some(history) = &history {
                        let _ = history.mark_all_read(None);
                    }
                    let counts = Counts::read(history.as_ref());
                    publish(&|s| Counts::apply(&counts, s));
                }
                Some(HostCommand::Open(target)) => open_window(target),
            },
            Some(action) = actions.recv() => {
                match action {
                    NotificationAction::Open { target } => open_window(Some(target)),
                    NotificationAction::MarkRead { target, cap_id } => {
                        if let Some(history) = &history {
                            match cap_id {
                                Some(cap) => {
                                    let _ = history.mark_all_read(Some(&cap));
                                }
                                None => {
                                    if let Some(id) = change_id(&target) {
                                        let _ = history.mark_change_read(id);
                                    }
                                }
                            }
                        }
                        let counts = Counts::read(history.as_ref());
                        publish(&|s| Counts::apply(&counts, s));
                    }
                    NotificationAction::Mute { cap_id, duration } => {
                        let until = OffsetDateTime::now_utc() + duration;
                        let saved = Preferences::update(options.paths.config_dir(), |p| {
                            p.muted_until.insert(cap_id.clone(), until.unix_timestamp());
                        });
                        if let Err(error) = saved {
                            tracing::warn!(%error, "the timed mute is not saved");
                        }
                        follower.preferences.muted_until.insert(cap_id, until.unix_timestamp());
                        let policy = options.policy(&follower.preferences);
                        let _ = running.commands.send(EngineCommand::Policy(policy)).await;
                    }
                }
            }
            _ = follow.tick() => {
                // New servers, grids, magic-folder links or gateway: the engine and the bridge
                // start again over them (links reconnect; nothing is reported twice, as after
                // any reconnect).
                if follower.wiring_changed() {
                    tracing::info!("servers, grids, links or the gateway changed: restarting the engine");
                    // The old engine goes first: it holds the home's engine lock.
                    if let Err(error) = running.stop().await {
                        tracing::warn!(%error, "the replaced engine ended with an error");
                    }
                    publish(&|s| s.live.reset_engine_view());
                    running = Running::start(&options, &follower.preferences, &sink, dnd_on)?;
                }
                for command in follower.caps_changed() {
                    let _ = running.commands.send(command).await;
                }
                if let Some(preferences) = follower.preferences_changed() {
                    let policy = options.policy(&preferences);
                    let _ = running.commands.send(EngineCommand::Policy(policy)).await;
                    publish(&|s| s.live.paused_until = preferences.paused_until);
                }
                // Another face may have marked items read (`history mark-read`, the window).
                // Read only after someone committed: the version costs no table read.
                let version = history.as_ref().and_then(|h| h.data_version().ok());
                if version.is_none() || version != history_version {
                    history_version = version;
                    let counts = Counts::read(history.as_ref());
                    let stale = counts.as_ref().is_some_and(|counts| {
                        !counts.shown_in(&shared.lock().unwrap_or_else(PoisonError::into_inner))
                    });
                    if stale {
                        publish(&|s| Counts::apply(&counts, s));
                    }
                }
                // Wake when the pause ends, so the state (and the tray) say so then.
                pause_end = follower
                    .preferences
                    .paused_until
                    .and_then(|until| (until - OffsetDateTime::now_utc()).try_into().ok())
                    .map(|left: Duration| tokio::time::Instant::now() + left);
            }
            _ = dnd_ticks.tick() => {
                if let Some(on) = do_not_disturb.changed().await {
                    tracing::info!(on, "the desktop's Do-Not-Disturb changed");
                    dnd_on = on;
                    let _ = running.commands.send(EngineCommand::DoNotDisturb(on)).await;
                }
            }
            () = pause_timer => {
                pause_end = None;
                publish(&|_| {});
            }
            () = publish_timer => flush(),
        }
    }
    let result = running.stop().await;
    if let Some(signals) = signals {
        signals.abort();
    }
    result.map_err(HostError::from)
}

/// Least time between two publishes of the whole state (see `run`).
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// When the state was last published and when it is next due.
#[derive(Debug, Default, Clone, Copy)]
struct Publishing {
    last: Option<tokio::time::Instant>,
    due: Option<tokio::time::Instant>,
}

impl Publishing {
    /// After a change at `now`: due at once after a quiet spell, else a PUBLISH_INTERVAL after
    /// the last publish (changes meanwhile go out together).
    fn changed(self, now: tokio::time::Instant) -> Publishing {
        let due = self.due.unwrap_or_else(|| {
            self.last
                .map_or(now, |last| (last + PUBLISH_INTERVAL).max(now))
        });
        Publishing {
            due: Some(due),
            ..self
        }
    }
}

/// The engine and the magic-folder bridge, running beside each other on the host's `LocalSet`.
struct Running {
    commands: mpsc::Sender<EngineCommand>,
    events: mpsc::Receiver<EngineEvent>,
    changes: Option<mpsc::Sender<crate::engine::ChangeReport>>,
    bridge_events: mpsc::Receiver<BridgeEvent>,
    engine_task: tokio::task::JoinHandle<Result<(), EngineError>>,
    bridge_task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Opens both over the config and `preferences` as they are now, and starts them.
    fn start(
        options: &HostOptions,
        preferences: &Preferences,
        sink: &Arc<dyn NotificationSink>,
        dnd_on: bool,
    ) -> Result<Running, HostError> {
        let policy = options.policy(preferences);
        let bridge = Bridge::open(BridgeOptions {
            quiet_hours: policy.quiet_hours,
            news_only: policy.news_only,
            local_offset: options.local_offset,
            ..BridgeOptions::new(
                options.paths.clone(),
                Arc::clone(&options.secrets),
                Some(Arc::clone(sink)),
            )
        })
        .map_err(|e| HostError::MagicFolder(e.to_string()))?;
        let engine = Engine::open(
            EngineOptions {
                paths: options.paths.clone(),
                secrets: Arc::clone(&options.secrets),
                gateway_url: options
                    .gateway_url
                    .clone()
                    .or_else(|| preferences.gateway_url.clone()),
                poll_interval: options.poll_interval,
                link_timing: options.link_timing.clone(),
                policy,
                local_offset: options.local_offset,
                spread: crate::engine::spread::SpreadPolicy::default(),
            },
            Some(Arc::clone(sink)),
        )?;
        // Queued before the engine runs: it must never notify a cap the bridge notifies for,
        // nor show what Do-Not-Disturb holds back.
        let delegations = bridge.delegations();
        let (commands, commands_rx) = mpsc::channel(1024 + delegations.len());
        for command in delegations {
            let _ = commands.try_send(command);
        }
        if dnd_on {
            let _ = commands.try_send(EngineCommand::DoNotDisturb(true));
        }
        let (events_tx, events) = mpsc::channel(1024);
        let (changes, changes_rx) = mpsc::channel(1024);
        let (bridge_events_tx, bridge_events) = mpsc::channel(256);
        let engine_task = tokio::task::spawn_local(engine.run(commands_rx, events_tx));
        let bridge_task =
            tokio::task::spawn_local(bridge.run(changes_rx, commands.clone(), bridge_events_tx));
        Ok(Running {
            commands,
            events,
            changes: Some(changes),
            bridge_events,
            engine_task,
            bridge_task,
        })
    }

    /// Stops both and waits for them.
    async fn stop(mut self) -> Result<(), EngineError> {
        let _ = self.commands.send(EngineCommand::Shutdown).await;
        drop(self.commands);
        // The bridge ends once the engine's changes stop.
        drop(self.changes.take());
        // Events still queued are of no use now; the engine must not wait on a full queue.
        self.events.close();
        let result = self.engine_task.await;
        let _ = self.bridge_task.await;
        match result {
            Ok(result) => result,
            Err(error) => {
                tracing::error!(%error, "the engine task failed");
                Ok(())
            }
        }
    }
}

/// A host running on a thread of its own.
#[derive(Debug)]
pub struct SpawnedHost {
    /// Where to send commands.
    pub handle: HostHandle,
    /// What the host reports.
    pub events: mpsc::UnboundedReceiver<HostEvent>,
    /// The thread, which yields how the host ended.
    pub thread: std::thread::JoinHandle<Result<(), HostError>>,
}

/// Unread counts and the last changes, as the history has them.
#[derive(Debug, Clone, PartialEq)]
struct Counts {
    changes: u64,
    news: u64,
    recent: Vec<(i64, String)>,
}

impl Counts {
    /// Read from `history` (`None` when there is none or it cannot be read).
    fn read(history: Option<&History>) -> Option<Counts> {
        let history = history?;
        let counts = history.unread_counts().ok()?;
        let recent = history
            .list_changes(&crate::history::ChangeFilter {
                cap_id: None,
                unread_only: false,
                limit: Some(5),
            })
            .ok()?
            .into_iter()
            .map(|c| (c.id, c.summary))
            .collect();
        Some(Counts {
            changes: counts.changes,
            news: counts.news,
            recent,
        })
    }

    /// Writes `counts`, when known, into `state`.
    fn apply(counts: &Option<Counts>, state: &mut HostState) {
        if let Some(counts) = counts {
            state.unread_changes = counts.changes;
            state.unread_news = counts.news;
            state.recent = counts.recent.clone();
        }
    }

    /// Whether `state` shows these counts already.
    fn shown_in(&self, state: &HostState) -> bool {
        (state.unread_changes, state.unread_news, &state.recent)
            == (self.changes, self.news, &self.recent)
    }
}

/// Runs the host on a thread of its own (its own runtime and `LocalSet`).
pub fn spawn(options: HostOptions) -> std::io::Result<SpawnedHost> {
    let (handle, commands) = channel();
    let (events_tx, events) = mpsc::unbounded_channel();
    let host_handle = handle.clone();
    let thread = std::thread::Builder::new()
        .name("tahoe-notifier-host".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| HostError::MagicFolder(format!("no async runtime: {e}")))?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, run(options, host_handle, commands, events_tx))
        })?;
    Ok(SpawnedHost {
        handle,
        events,
        thread,
    })
}

/// Follows the files other faces write: the caps in the config, and the preferences.
struct Follower {
    caps: CapStore,
    /// The servers, grids, magic-folder links and gateway the engine was started with.
    wiring: Option<String>,
    /// When the config and preferences were written at the last look at the wiring.
    wiring_written: (Written, Written),
    config_file: PathBuf,
    config_written: Written,
    seen: BTreeMap<String, (String, bool)>,
    config_dir: PathBuf,
    preferences_written: Written,
    preferences: Preferences,
}

/// A file's modification time and size, `None` when it is absent.
type Written = Option<(Option<std::time::SystemTime>, u64)>;

fn written(path: &std::path::Path) -> Written {
    std::fs::metadata(path)
        .ok()
        .map(|meta| (meta.modified().ok(), meta.len()))
}

impl Follower {
    fn new(paths: &Paths, secrets: Arc<dyn SecretStore>, preferences: Preferences) -> Follower {
        let config_file = paths.config_file();
        let caps = CapStore::new(ConfigFile::new(config_file.clone()), secrets);
        let seen = Self::read(&caps).unwrap_or_default();
        let config_dir = paths.config_dir().to_path_buf();
        let wiring = Self::wiring(&config_file, paths.config_dir());
        let wiring_written = (
            written(&config_file),
            written(&Preferences::path(paths.config_dir())),
        );
        Follower {
            wiring,
            wiring_written,
            config_written: written(&config_file),
            config_file,
            caps,
            seen,
            preferences_written: written(&Preferences::path(&config_dir)),
            config_dir,
            preferences,
        }
    }

    fn read(caps: &CapStore) -> Option<BTreeMap<String, (String, bool)>> {
        caps.list().ok().map(|entries| {
            entries
                .into_iter()
                .map(|entry| (entry.id, (entry.label, entry.muted)))
                .collect()
        })
    }

    /// What the engine and bridge are built over, as one comparable text (`None` while the
    /// config cannot be read).
    fn wiring(config_file: &std::path::Path, config_dir: &std::path::Path) -> Option<String> {
        let config = ConfigFile::new(config_file.to_path_buf()).load().ok()?;
        // From the file, not the follower's copy: both files may have been written since.
        let preferences = Preferences::load(config_dir).ok()?;
        serde_json::to_string(&(
            &config.servers,
            &config.grids,
            &config.magic_folder_links,
            &preferences.gateway_url,
        ))
        .ok()
    }

    /// Whether the servers, grids, links or gateway changed since the engine started (then
    /// remembered as seen).
    fn wiring_changed(&mut self) -> bool {
        // Read and parsed only when one of the two files was written since the last look.
        let now_written = (
            written(&self.config_file),
            written(&Preferences::path(&self.config_dir)),
        );
        if now_written == self.wiring_written {
            return false;
        }
        let now = Self::wiring(&self.config_file, &self.config_dir);
        if now.is_some() {
            self.wiring_written = now_written;
        }
        if now.is_none() || now == self.wiring {
            return false;
        }
        self.wiring = now;
        true
    }

    /// The engine commands that tell it of caps added, removed, renamed or muted by another
    /// face since the last look (nothing when the file was not written).
    fn caps_changed(&mut self) -> Vec<EngineCommand> {
        let now_written = written(&self.config_file);
        if now_written == self.config_written {
            return Vec::new();
        }
        // A config being rewritten (or unreadable for a moment) is looked at again next time.
        let Some(now) = Self::read(&self.caps) else {
            return Vec::new();
        };
        self.config_written = now_written;
        let mut commands = Vec::new();
        for (id, (label, muted)) in &now {
            match self.seen.get(id) {
                None => commands.push(EngineCommand::CapAdded(id.clone())),
                Some((old_label, was_muted)) => {
                    if old_label != label {
                        commands.push(EngineCommand::CapChanged(id.clone()));
                    }
                    if was_muted != muted {
                        commands.push(EngineCommand::SetMuted {
                            id: id.clone(),
                            muted: *muted,
                        });
                    }
                }
            }
        }
        for id in self.seen.keys().filter(|id| !now.contains_key(*id)) {
            commands.push(EngineCommand::CapRemoved(id.clone()));
        }
        self.seen = now;
        commands
    }

    /// The preferences, when another face changed them since the last look.
    fn preferences_changed(&mut self) -> Option<Preferences> {
        let now_written = written(&Preferences::path(&self.config_dir));
        if now_written == self.preferences_written {
            return None;
        }
        let preferences = Preferences::load(&self.config_dir).ok()?;
        self.preferences_written = now_written;
        if preferences == self.preferences {
            return None;
        }
        self.preferences = preferences.clone();
        Some(preferences)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_goes_out_at_once_after_a_quiet_spell_and_a_burst_goes_out_together() {
        let start = tokio::time::Instant::now();
        let quiet = Publishing::default().changed(start);
        assert_eq!(quiet.due, Some(start), "nothing published yet: at once");
        let published = Publishing {
            last: Some(start),
            due: None,
        };
        let burst = published
            .changed(start + Duration::from_millis(10))
            .changed(start + Duration::from_millis(60));
        assert_eq!(
            burst.due,
            Some(start + PUBLISH_INTERVAL),
            "a burst after a publish waits for the interval, once"
        );
        let later = published.changed(start + Duration::from_secs(5));
        assert_eq!(later.due, Some(start + Duration::from_secs(5)));
    }
}
