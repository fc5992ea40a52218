//! The window's shared core: the notifier-core stores the pages edit, the history they read,
//! and the link to the engine host (`tahoe-notifier-tray`, or `tahoe-notifier watch`) that
//! this process talks to over D-Bus. The window runs no engine: it writes caps, grids and
//! preferences through the same stores and use cases as the CLI, and the host follows them
//! within a second; what is live (servers, subscriptions, pause, keyring) comes from the
//! host's `StateChanged` signal.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use notifier_core::history::History;
use notifier_core::host::client::{ClientError, HostClient};
use notifier_core::host::HostState;
use notifier_core::store::caps::CapStore;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::keyring::{KeyringBackend, SecretStore};
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;
use tauri::{AppHandle, Emitter as _};
use tokio::sync::mpsc;

use notifier_core::status::LiveState;
use notifier_core::store::preferences::Preferences as Settings;

/// The event the page listens to: "something changed, refresh what you show".
pub const CHANGED_EVENT: &str = "notifier://changed";
/// The event asking the page to show one item (`change:<id>` or `news:<grid>:<name>`).
pub const OPEN_TARGET_EVENT: &str = "notifier://open-target";

/// Shows the window, at a target if given.
pub type OpenWindow = fn(&AppHandle, Option<String>);

/// The background process that hosts the engine, started when none runs.
pub const HOST_PROGRAM: &str = "tahoe-notifier-tray";

/// How long the window waits for a host it started to own its bus name.
const HOST_START: Duration = Duration::from_secs(10);

/// What the window asks of the host.
#[derive(Debug, Clone)]
pub enum HostRequest {
    /// Every link reconnects now.
    Reconnect,
    /// `hour`, `tomorrow` or `resume`.
    Pause(String),
}

/// The window's state, shared by the commands and the host link.
pub struct Core {
    /// Where the config and history live.
    pub paths: Paths,
    /// The keyring.
    pub secrets: Arc<dyn SecretStore>,
    /// The keyring's kind, passed on to a host this window starts.
    pub keyring: KeyringBackend,
    /// The `--home` passed on to a host this window starts.
    pub home: Option<PathBuf>,
    /// Watched caps.
    pub caps: CapStore,
    /// Updates servers and grids.
    pub servers: ServerStore,
    /// The local time zone's offset, found before any thread started.
    pub local_offset: time::UtcOffset,
    history: Mutex<History>,
    host: Mutex<HostState>,
    requests: mpsc::UnboundedSender<HostRequest>,
    requests_rx: Mutex<Option<mpsc::UnboundedReceiver<HostRequest>>>,
    pending_target: Mutex<Option<String>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, using the data even if a panicking thread left it poisoned: every value
/// here stays consistent between statements.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// Opens the stores and the history under `paths`.
    pub fn open(
        paths: Paths,
        home: Option<PathBuf>,
        keyring: KeyringBackend,
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
        let history = History::open(&paths.history_db())?;
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let mut waiting = HostState::default();
        waiting.live.last_notice = Some("starting the background process…".to_owned());
        Ok(Core {
            caps: CapStore::new(config.clone(), Arc::clone(&secrets)),
            servers: ServerStore::new(config, Arc::clone(&secrets)),
            paths,
            home,
            keyring,
            secrets,
            local_offset,
            history: Mutex::new(history),
            host: Mutex::new(waiting),
            requests,
            requests_rx: Mutex::new(Some(requests_rx)),
            pending_target: Mutex::new(None),
        })
    }

    /// The history (the host has its own connection).
    pub fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }

    /// The live state, as the host last said.
    pub fn live(&self) -> LiveState {
        lock(&self.host).live.clone()
    }

    /// Forgets a removed cap's live status at once (the host says so within a second too).
    pub fn forget_cap(&self, id: &str) {
        lock(&self.host).live.caps.remove(id);
    }

    /// The preferences as saved now (the host and the CLI write them too).
    pub fn settings(&self) -> Settings {
        Settings::load(self.paths.config_dir()).unwrap_or_default()
    }

    /// Asks the host for `request` (it is sent as soon as the host is reachable).
    pub fn ask_host(&self, request: HostRequest) {
        let _ = self.requests.send(request);
    }

    /// The use cases over this window's folders and keyring.
    pub fn notifier(&self) -> notifier_core::service::Notifier {
        notifier_core::service::Notifier::new(self.paths.clone(), Arc::clone(&self.secrets))
    }

    /// The user's Tahoe node: the one chosen in the app, else `~/.tahoe` if it exists.
    pub fn tahoe_node(
        &self,
    ) -> Result<
        Option<notifier_core::grid::tahoe_node::NodeDir>,
        notifier_core::grid::tahoe_node::NodeDirError,
    > {
        notifier_core::grid::tahoe_node::NodeDir::find(self.settings().tahoe_node_dir.as_deref())
    }

    /// Remembers an item the page should show once it is loaded.
    pub fn set_pending_target(&self, target: Option<String>) {
        *lock(&self.pending_target) = target;
    }

    /// The item the page should show, once.
    pub fn take_pending_target(&self) -> Option<String> {
        lock(&self.pending_target).take()
    }

    /// The bridge's last word about a linked folder (and whether it is a failure).
    pub fn folder_activity(&self, folder: &str) -> Option<(String, bool)> {
        lock(&self.host).folders.get(folder).cloned()
    }

    fn set_host_state(&self, state: HostState) {
        *lock(&self.host) = state;
    }

    fn set_host_problem(&self, problem: String) {
        let mut host = lock(&self.host);
        host.live = LiveState {
            engine_error: Some(problem),
            ..LiveState::default()
        };
    }
}

/// Whether the window may start the engine host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStart {
    /// When none runs (a window the user started).
    IfNoneRuns,
    /// Never: a host started this window, and if it has gone by the time the window links up,
    /// the user quit it meanwhile, so the window closes too.
    Never,
}

/// Keeps the window linked to the engine host on a thread of its own: starts the host if none
/// runs (and `host_start` allows), mirrors its state, shows what it asks the window to show, passes requests on, and
/// closes the window when the host stops (the tray's Quit ends both). `open_window` shows
/// the window at a target (`window::open`; passed in so that this module need not know it).
pub fn link_to_host(
    app: &AppHandle,
    core: &Arc<Core>,
    host_start: HostStart,
    open_window: OpenWindow,
) {
    let Some(requests) = lock(&core.requests_rx).take() else {
        return;
    };
    let (app, core) = (app.clone(), Arc::clone(core));
    let spawned = std::thread::Builder::new()
        .name("host-link".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "cannot start the host link's runtime");
                    return;
                }
            };
            runtime.block_on(host_link(app, core, requests, host_start, open_window));
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the host link");
    }
}

async fn host_link(
    app: AppHandle,
    core: Arc<Core>,
    mut requests: mpsc::UnboundedReceiver<HostRequest>,
    host_start: HostStart,
    open_window: OpenWindow,
) {
    let mut started: Option<std::process::Child> = None;
    loop {
        if host_start == HostStart::Never
            && matches!(
                HostClient::connect(&core.paths).await,
                Err(ClientError::NotRunning)
            )
        {
            tracing::info!("the engine host that opened this window has stopped: closing it");
            app.exit(0);
            return;
        }
        let client = match connect_or_start(&core, &mut started).await {
            Ok(client) => client,
            Err(problem) => {
                tracing::warn!(%problem, "no engine host");
                core.set_host_problem(problem);
                let _ = app.emit(CHANGED_EVENT, ());
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let (Ok(mut states), Ok(mut windows)) =
            (client.state_changes().await, client.window_requests().await)
        else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if let Ok(state) = client.state().await {
            core.set_host_state(state);
            let _ = app.emit(CHANGED_EVENT, ());
        }
        let gone = client.gone();
        tokio::pin!(gone);
        loop {
            tokio::select! {
                Some(state) = states.next() => {
                    core.set_host_state(state);
                    let _ = app.emit(CHANGED_EVENT, ());
                }
                Some(target) = windows.next() => {
                    let target = (!target.is_empty()).then_some(target);
                    let app = app.clone();
                    let _ = app.clone().run_on_main_thread(move || open_window(&app, target));
                }
                Some(request) = requests.recv() => {
                    let result = match &request {
                        HostRequest::Reconnect => client.reconnect().await,
                        HostRequest::Pause(mode) => client.pause(mode).await,
                    };
                    if let Err(error) = result {
                        tracing::warn!(%error, ?request, "the host refused");
                    }
                }
                () = &mut gone => {
                    // The tray's Quit (or `tahoe-notifier` being stopped) ends Tahoe Notifier:
                    // the window goes with it rather than starting the host again.
                    tracing::info!("the engine host stopped: closing the window");
                    app.exit(0);
                    return;
                }
            }
        }
    }
}

/// The host of this window's home; started (once per window) if none runs.
async fn connect_or_start(
    core: &Core,
    started: &mut Option<std::process::Child>,
) -> Result<HostClient, String> {
    match HostClient::connect(&core.paths).await {
        Ok(client) => return Ok(client),
        Err(ClientError::NotRunning) => {}
        Err(error) => return Err(error.to_string()),
    }
    let still_running = started
        .as_mut()
        .is_some_and(|child| matches!(child.try_wait(), Ok(None)));
    if !still_running {
        let program = notifier_core::host::sibling_program(HOST_PROGRAM);
        let mut command = std::process::Command::new(&program);
        if let Some(home) = &core.home {
            command.arg("--home").arg(home);
        }
        command.args(["--keyring", core.keyring.as_str()]);
        // The host outlives the window: its own session, so closing a terminal or the window
        // does not end it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        match command.stdin(std::process::Stdio::null()).spawn() {
            Ok(child) => {
                tracing::info!(pid = child.id(), "started the engine host");
                *started = Some(child);
            }
            Err(error) => {
                return Err(format!(
                    "cannot start the background process {}: {error}",
                    program.display()
                ))
            }
        }
    }
    let deadline = tokio::time::Instant::now() + HOST_START;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(client) = HostClient::connect(&core.paths).await {
            return Ok(client);
        }
    }
    Err("the background process did not start within 10 s".to_owned())
}

/// Checks the keyring before an action that stores a secret.
pub fn require_keyring(core: &Core) -> Result<(), String> {
    match notifier_core::store::keyring_problem::probe(core.secrets.as_ref()) {
        None => Ok(()),
        Some(problem) => Err(format!(
            "{}: nothing was stored. {}",
            problem.title, problem.message
        )),
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
                .join(notifier_core::store::preferences::PREFERENCES_FILE),
        ),
    ]
}
