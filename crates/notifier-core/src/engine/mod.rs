//! The engine: keeps every watched cap subscribed on every updates server, turns seqnum rises
//! into exactly one described change each, records them and hands them to a notification sink.
//!
//! One task owns all state (the stores, the SQLite history, the per-server links' reports), so
//! nothing here needs a lock. Links run as their own tasks and talk to it through channels.
//!
//! Notifications go through a [`NotificationPolicy`] run as its own task ([`run_policy`]): the
//! engine hands it every recorded change and news message and never waits for the desktop, so
//! a slow D-Bus round trip or a coalescing window does not hold up the links.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tahoe_caps::{Cap, StorageIndex};
use thiserror::Error;
use tokio::sync::mpsc;

mod changes;
pub mod details;
pub mod seqnum;
pub mod spread;

use crate::describe::snapshot::Snapshot;
use crate::engine::seqnum::{SeqnumTracker, Source};
use crate::engine::spread::SpreadPolicy;
use crate::history::{History, HistoryError};
use crate::net::gateway::Gateway;
use crate::net::link::{self, LinkCommand, LinkEvent, LinkState, LinkTiming, SubscriptionOutcome};
use crate::news::feed::NewsFeed;
use crate::notify::{
    run_policy, Notification, NotificationPolicy, NotificationSink, PolicyConfig, PolicyInput,
    Urgency,
};
use crate::store::caps::{CapStore, CapStoreError};
use crate::store::config::ConfigFile;
use crate::store::keyring::SecretStore;
use crate::store::paths::Paths;
use crate::store::servers::{ServerStore, ServerStoreError};

/// How the engine runs.
#[derive(Clone)]
pub struct EngineOptions {
    /// Where the config and history live.
    pub paths: Paths,
    /// The keyring holding caps and NURLs.
    pub secrets: Arc<dyn SecretStore>,
    /// The gateway to fetch listings through; `None` takes the first grid's.
    pub gateway_url: Option<String>,
    /// How often caps that no updates server holds are polled through the gateway.
    pub poll_interval: Duration,
    /// Reconnect and liveness timing of the links.
    pub link_timing: LinkTiming,
    /// Quiet hours, news-only and coalescing. Its `muted_caps` are ignored: the engine takes
    /// them from the cap store (and [`EngineCommand::SetMuted`]).
    pub policy: PolicyConfig,
    /// The local time zone's offset, for quiet hours. Find it before threads exist (e.g.
    /// `UtcOffset::current_local_offset` at the start of `main`): later it may be unavailable.
    pub local_offset: time::UtcOffset,
    /// How the fetches of popular slots' new versions are spread over time.
    pub spread: SpreadPolicy,
}

/// One polled cap: its slot, its id, and its listing or why there is none.
type Polled = (StorageIndex, String, Result<Snapshot, String>);

/// How often caps that no updates server holds are polled by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// First listings fetched at once through the gateway (see [`Engine::fetch_queued_baselines`]).
const MAX_BASELINE_FETCHES: usize = crate::net::gateway::MAX_CONCURRENT_REQUESTS;

impl EngineOptions {
    /// Options with the defaults: the grid's gateway, 5-minute polling, default link timing,
    /// the default policy and UTC for quiet hours.
    pub fn new(paths: Paths, secrets: Arc<dyn SecretStore>) -> Self {
        Self {
            paths,
            secrets,
            gateway_url: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            link_timing: LinkTiming::default(),
            policy: PolicyConfig::default(),
            local_offset: time::UtcOffset::UTC,
            spread: SpreadPolicy::default(),
        }
    }
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("paths", &self.paths)
            .field("poll_interval", &self.poll_interval)
            .field("policy", &self.policy)
            .field("local_offset", &self.local_offset)
            .field("spread", &self.spread)
            .finish_non_exhaustive()
    }
}

/// Why the engine could not start or had to stop.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The cap store failed.
    #[error(transparent)]
    Caps(#[from] CapStoreError),
    /// The server store failed.
    #[error(transparent)]
    Servers(#[from] ServerStoreError),
    /// The history database failed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The configured gateway URL is unusable.
    #[error("the gateway URL is unusable: {0}")]
    Gateway(String),
    /// Another engine (a `watch`, the tray) runs on the same home already.
    #[error("another Tahoe Notifier engine is running on {home} already ({holder}): stop it first, or use another --home")]
    AlreadyRunning {
        /// The data folder.
        home: String,
        /// Who holds it, as it wrote itself into the lock file (process id and name).
        holder: String,
    },
    /// The engine's lock file could not be used.
    #[error("cannot use the engine's lock file {path}: {source}")]
    Lock {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Takes the home's engine lock (`engine.lock` in the data folder), writing this process's id
/// and name into it, or says who holds it: two engines on one home recorded and notified
/// every change twice (the review's finding 6).
fn take_engine_lock(paths: &Paths) -> Result<std::fs::File, EngineError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let dir = paths.data_dir();
    let path = dir.join("engine.lock");
    let lock_error = |source| EngineError::Lock {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(lock_error)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = crate::describe::text::clean_line(holder.trim(), 100);
            return Err(EngineError::AlreadyRunning {
                home: dir.display().to_string(),
                holder: if holder.is_empty() {
                    "a process that wrote no id".to_owned()
                } else {
                    holder
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(e)),
    }
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tahoe-notifier".to_owned());
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "process {} ({name})", std::process::id());
    let _ = file.flush();
    Ok(file)
}

/// What the engine tells its owner (the CLI's `watch`, the tray app).
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// A server's connection state changed.
    Server {
        /// Server id.
        id: String,
        /// Name to show.
        name: String,
        /// New state.
        state: LinkState,
    },
    /// Where a cap is subscribed: "subscribed on k of n".
    CapStatus {
        /// Cap id.
        id: String,
        /// Its label.
        label: String,
        /// Servers holding the subscription.
        subscribed_on: usize,
        /// Servers configured.
        servers: usize,
        /// Whether it falls back to polling the gateway (no server holds it).
        polling: bool,
    },
    /// A watched cap changed.
    Changed(ChangeReport),
    /// Operator news arrived.
    News(NewsReport),
    /// Something the user should know that is not a change.
    Notice(String),
}

/// A change as recorded and notified.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeReport {
    /// History row id.
    pub history_id: i64,
    /// Cap id.
    pub cap_id: String,
    /// The slot.
    pub storage_index: StorageIndex,
    /// The new seqnum (0 for a change found by polling without one).
    pub seqnum: u64,
    /// Whether it happened while away.
    pub while_away: bool,
    /// One line, e.g. "Team Docs: added report.pdf, 2 more".
    pub summary: String,
    /// More text for the notification body.
    pub body: String,
    /// Whether the user muted this cap (recorded, not notified).
    pub muted: bool,
    /// The structured details recorded in the history (for a directory: `added`, `modified`
    /// and `removed` child names, counts), for owners that describe changes themselves.
    pub details: serde_json::Value,
}

/// A news message as recorded and notified.
#[derive(Debug, Clone, PartialEq)]
pub struct NewsReport {
    /// Grid name.
    pub grid: String,
    /// Heading.
    pub title: String,
    /// Text.
    pub body: String,
    /// Critical news is urgent.
    pub urgency: Urgency,
}

/// What the owner may ask of a running engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineCommand {
    /// A cap was added to the store: subscribe it everywhere.
    CapAdded(String),
    /// A cap is being removed: unsubscribe it.
    CapRemoved(String),
    /// The user muted or unmuted a cap (already stored with `CapStore::set_muted`): its changes
    /// are still recorded, but notified only when not muted.
    SetMuted {
        /// Cap id.
        id: String,
        /// Whether it is muted now.
        muted: bool,
    },
    /// The owner raises this cap's notifications itself (the magic-folder bridge does, to name
    /// the participant and unmangle file names): the engine still records and reports its
    /// changes but hands them to no notification sink. Not stored: an owner that stops
    /// delegating, or a new engine, notifies as usual.
    DelegateNotifications {
        /// Cap id.
        id: String,
        /// Whether the owner notifies from now on.
        delegated: bool,
    },
    /// A cap's label changed in the store: its next notifications use the new one.
    CapChanged(String),
    /// The notification policy's settings changed (quiet hours, news only, pause, timed mutes,
    /// alert settings); the engine keeps its own list of muted caps.
    Policy(PolicyConfig),
    /// The desktop's Do-Not-Disturb went on or off.
    DoNotDisturb(bool),
    /// Reconnect every server now.
    ReconnectAll,
    /// Stop.
    Shutdown,
}

/// What a storage index stands for.
#[derive(Debug, Clone)]
enum Watched {
    Cap(WatchedCap),
    /// A grid's news directory (its root or its `v1`).
    News {
        grid: String,
        /// The news cap's key fingerprint, to verify its slots' proofs.
        fingerprint: [u8; 32],
    },
}

impl Watched {
    /// The grid whose servers and gateway this slot belongs to.
    fn grid(&self) -> Option<&str> {
        match self {
            Self::Cap(cap) => cap.grid.as_deref(),
            Self::News { grid, .. } => Some(grid),
        }
    }
}

#[derive(Debug, Clone)]
struct WatchedCap {
    id: String,
    label: String,
    cap: Cap,
    muted: bool,
    /// Its grid (see [`crate::store::config::CapEntry::grid`]), resolved.
    grid: Option<String>,
}

struct ServerLink {
    name: String,
    commands: mpsc::Sender<LinkCommand>,
    state: LinkState,
    /// The grid the server came with: it hears only of that grid's slots (finding 19).
    grid: Option<String>,
}

/// The engine's state, owned by its one task.
pub struct Engine {
    options: EngineOptions,
    caps: CapStore,
    servers: ServerStore,
    history: History,
    tracker: SeqnumTracker,
    /// Each grid's gateway (the key is the grid's name; `None`: caps of no grid).
    gateways: HashMap<Option<String>, Gateway>,
    /// The user's own gateway, when given (`--gateway`, the app's setting): used for every grid.
    own_gateway: Option<Gateway>,
    /// Why a grid has no gateway, said once per grid.
    gateway_problems: Vec<String>,
    /// The grid a cap of no grid belongs to: the only one, when there is exactly one.
    default_grid: Option<String>,
    describing: changes::Describing,
    /// A round of polling under way (see [`Engine::poll_unsubscribed`]).
    polls: tokio::task::JoinSet<Vec<Polled>>,
    /// Held while the engine lives: one engine per home (finding 6).
    _lock: std::fs::File,
    watched: HashMap<StorageIndex, Watched>,
    outcomes: HashMap<StorageIndex, BTreeMap<String, SubscriptionOutcome>>,
    links: BTreeMap<String, ServerLink>,
    news_feeds: HashMap<String, NewsFeed>,
    /// News directories whose first subscription answer has been seen: a `v1` found late may
    /// already hold a message that its baseline seqnum would hide, so the first answer refreshes.
    news_confirmed: std::collections::HashSet<StorageIndex>,
    /// Listings being fetched for caps that have no snapshot yet, so that their first change
    /// can say what was added rather than "first look".
    baselines: tokio::task::JoinSet<(String, Result<Snapshot, details::Unavailable>)>,
    /// First listings waiting for one of the [`MAX_BASELINE_FETCHES`] slots: a thousand caps
    /// added at once must not open a thousand gateway connections (nor hold their buffers).
    baseline_queue: std::collections::VecDeque<(String, Cap, Option<String>)>,
    /// Where notifications go; handed to the policy task when the engine runs.
    sink: Option<Arc<dyn NotificationSink>>,
    /// The policy's configuration, muted caps included (sent to the policy task on change).
    policy: PolicyConfig,
    /// Input of the running policy task (`None` without a sink).
    notifications: Option<mpsc::Sender<PolicyInput>>,
    /// Caps whose notifications the owner raises ([`EngineCommand::DelegateNotifications`]).
    delegated: std::collections::HashSet<String>,
    /// The latest `subscribers` hint of each popular slot ([`crate::engine::spread`]).
    popularity: HashMap<StorageIndex, u64>,
    /// News refreshes waiting out their spread; each ends with its grid's name.
    news_waits: tokio::task::JoinSet<String>,
    /// Grids with a news refresh waiting in `news_waits`.
    news_waiting: std::collections::HashSet<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("watched", &self.watched.len())
            .field("servers", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the stores and the history; nothing runs until [`Engine::run`].
    pub fn open(
        options: EngineOptions,
        sink: Option<Arc<dyn NotificationSink>>,
    ) -> Result<Self, EngineError> {
        let lock = take_engine_lock(&options.paths)?;
        let config_file = options.paths.config_file();
        let caps = CapStore::new(
            ConfigFile::new(config_file.clone()),
            Arc::clone(&options.secrets),
        );
        let servers = ServerStore::new(ConfigFile::new(config_file), Arc::clone(&options.secrets));
        if let Err(error) = caps.recover() {
            tracing::warn!(%error, "cannot finish an interrupted change of the caps yet");
        }
        let history_path = options.paths.history_db();
        let history = History::open(&history_path)?;
        let tracker = SeqnumTracker::open(&history_path)?;
        let own_gateway = options
            .gateway_url
            .as_deref()
            .map(Gateway::new)
            .transpose()
            .map_err(|e| EngineError::Gateway(e.to_string()))?;
        let grids = servers.grids()?;
        let mut gateways = HashMap::new();
        let mut gateway_problems = Vec::new();
        for grid in &grids {
            if crate::grid::description::is_plain_http_remote(&grid.gateway_url)
                && !grid.allow_plain_http
            {
                gateway_problems.push(format!(
                    "the grid {}'s gateway is plain http:// to another machine: caps would cross \
                     the network unencrypted, so none is sent there; import the grid again \
                     with --allow-plain-http if you trust that network",
                    grid.name
                ));
                continue;
            }
            match Gateway::new(&grid.gateway_url) {
                Ok(gateway) => {
                    gateways.insert(Some(grid.name.clone()), gateway);
                }
                Err(error) => gateway_problems.push(format!(
                    "the grid {}'s gateway is unusable: {error}",
                    grid.name
                )),
            }
        }
        let default_grid = match grids.as_slice() {
            [only] => Some(only.name.clone()),
            _ => None,
        };
        let options_policy = options.policy.clone();
        Ok(Self {
            options,
            caps,
            servers,
            history,
            tracker,
            gateways,
            own_gateway,
            gateway_problems,
            default_grid,
            describing: changes::Describing::default(),
            polls: tokio::task::JoinSet::new(),
            _lock: lock,
            watched: HashMap::new(),
            outcomes: HashMap::new(),
            links: BTreeMap::new(),
            news_feeds: HashMap::new(),
            news_confirmed: std::collections::HashSet::new(),
            baselines: tokio::task::JoinSet::new(),
            baseline_queue: std::collections::VecDeque::new(),
            sink,
            policy: PolicyConfig {
                muted_caps: std::collections::HashSet::new(),
                ..options_policy
            },
            notifications: None,
            delegated: std::collections::HashSet::new(),
            popularity: HashMap::new(),
            news_waits: tokio::task::JoinSet::new(),
            news_waiting: std::collections::HashSet::new(),
        })
    }

    /// Runs until `commands` asks to stop or closes.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<EngineCommand>,
        events: mpsc::Sender<EngineEvent>,
    ) -> Result<(), EngineError> {
        self.load_caps(&events).await?;
        self.load_news(&events).await?;
        let policy_task = self.start_policy();
        let (link_events_tx, mut link_events) = mpsc::channel(4096);
        self.start_links(&link_events_tx)?;
        if self.links.is_empty() {
            self.notice(&events, "no updates servers configured: join a grid (tahoe-notifier servers join) or import its grid file; polling the gateway meanwhile".to_owned()).await;
        }
        for problem in std::mem::take(&mut self.gateway_problems) {
            self.notice(&events, problem).await;
        }
        let mut poll = tokio::time::interval(self.options.poll_interval);
        // After a suspend, one poll, not one per missed period.
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(EngineCommand::Shutdown) => break,
                    Some(command) => self.handle_command(command, &events).await,
                },
                Some(event) = link_events.recv() => self.handle_link_event(event, &events).await,
                Some(Ok((cap_id, fetched))) = self.baselines.join_next(), if !self.baselines.is_empty() => {
                    self.store_baseline(&cap_id, fetched);
                    self.fetch_queued_baselines();
                }
                Some(done) = self.describing.tasks.join_next(), if !self.describing.tasks.is_empty() => {
                    match done {
                        Ok(done) => self.described(done, &events).await,
                        Err(error) => tracing::warn!(%error, "a change description task failed"),
                    }
                }
                Some(waited) = self.news_waits.join_next(), if !self.news_waits.is_empty() => {
                    if let Ok(grid) = waited {
                        self.news_waiting.remove(&grid);
                        self.refresh_news(&grid, &events).await;
                    }
                }
                _ = poll.tick() => self.poll_unsubscribed(),
                Some(round) = self.polls.join_next(), if !self.polls.is_empty() => {
                    match round {
                        Ok(round) => self.polled(round, &events).await,
                        Err(error) => tracing::warn!(%error, "a polling task failed"),
                    }
                }
            }
        }
        // Closing the policy's input makes it show the bursts still being coalesced, then end.
        self.notifications = None;
        if let Some(task) = policy_task {
            if let Err(error) = task.await {
                tracing::warn!(%error, "the notification task failed");
            }
        }
        Ok(())
    }

    /// Starts the notification policy task, if there is a sink to deliver to.
    fn start_policy(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let sink = self.sink.take()?;
        // Roomy: a burst of changes must not make the engine wait for the desktop.
        let (input, inputs) = mpsc::channel(1024);
        self.notifications = Some(input);
        Some(tokio::spawn(run_policy(
            NotificationPolicy::new(self.policy.clone()),
            inputs,
            sink,
            self.options.local_offset,
        )))
    }

    /// Hands a change or news message to the policy task.
    async fn notify(&self, input: PolicyInput) {
        if let Some(notifications) = &self.notifications {
            if notifications.send(input).await.is_err() {
                tracing::warn!("the notification task is gone; notification not shown");
            }
        }
    }

    /// Records whether `cap_id` is muted in the policy's configuration and sends it on. A cap
    /// whose notifications are delegated to the owner stays muted for the policy.
    async fn set_policy_muted(&mut self, cap_id: &str, muted: bool) {
        let muted = muted || self.delegated.contains(cap_id);
        let changed = if muted {
            self.policy.muted_caps.insert(cap_id.to_owned())
        } else {
            self.policy.muted_caps.remove(cap_id)
        };
        if changed {
            self.notify(PolicyInput::Config(self.policy.clone())).await;
        }
    }

    async fn load_caps(&mut self, events: &mpsc::Sender<EngineEvent>) -> Result<(), EngineError> {
        for entry in self.caps.list()? {
            match self.caps.get_cap(&entry.id) {
                Ok(cap) => {
                    if entry.muted {
                        self.policy.muted_caps.insert(entry.id.clone());
                    }
                    let watched = WatchedCap {
                        id: entry.id,
                        label: entry.label,
                        cap,
                        muted: entry.muted,
                        grid: entry.grid.or_else(|| self.default_grid.clone()),
                    };
                    self.start_baseline(&watched);
                    self.watched
                        .insert(entry.storage_index, Watched::Cap(watched));
                }
                Err(error) => {
                    let _ = events
                        .send(EngineEvent::Notice(format!(
                            "\"{}\" cannot be watched: {error}",
                            entry.label
                        )))
                        .await;
                }
            }
        }
        Ok(())
    }

    /// Fetches a first listing in the background for a cap that has no snapshot yet.
    fn start_baseline(&mut self, cap: &WatchedCap) {
        if self.gateway_for(cap.grid.as_deref()).is_none() {
            return;
        }
        if matches!(self.history.load_snapshot(&cap.id), Ok(Some(_))) {
            return;
        }
        self.baseline_queue
            .push_back((cap.id.clone(), cap.cap.clone(), cap.grid.clone()));
        self.fetch_queued_baselines();
    }

    /// The gateway that may see caps of `grid`: the user's own, else the grid's.
    fn gateway_for(&self, grid: Option<&str>) -> Option<&Gateway> {
        self.own_gateway
            .as_ref()
            .or_else(|| self.gateways.get(&grid.map(str::to_owned)))
    }

    /// Tells the owner something that is not a change.
    async fn notice(&self, events: &mpsc::Sender<EngineEvent>, text: String) {
        let _ = events.send(EngineEvent::Notice(text)).await;
    }

    /// Starts queued first listings while fewer than [`MAX_BASELINE_FETCHES`] are running.
    fn fetch_queued_baselines(&mut self) {
        while self.baselines.len() < MAX_BASELINE_FETCHES {
            let Some((id, read_cap, grid)) = self.baseline_queue.pop_front() else {
                break;
            };
            let Some(gateway) = self.gateway_for(grid.as_deref()).cloned() else {
                continue;
            };
            self.baselines.spawn(async move {
                let fetched = details::fetch_state(Some(&gateway), &read_cap).await;
                (id, fetched)
            });
        }
    }

    fn store_baseline(&mut self, cap_id: &str, fetched: Result<Snapshot, details::Unavailable>) {
        match fetched {
            // A change described meanwhile stored a newer snapshot: keep that one.
            Ok(snapshot) if matches!(self.history.load_snapshot(cap_id), Ok(None)) => {
                if let Err(error) = self.history.save_snapshot(cap_id, &snapshot) {
                    tracing::warn!(cap = cap_id, %error, "cannot store the first snapshot");
                }
            }
            Ok(_) => {}
            Err(details::Unavailable(reason)) => {
                tracing::info!(
                    cap = cap_id,
                    reason,
                    "no first listing; the first change will say less"
                );
            }
        }
    }

    /// Watches each grid's news directory and its `v1` (a new message changes `v1`, not the
    /// root; a replaced `v1` or a new `v2` changes the root).
    async fn load_news(&mut self, events: &mpsc::Sender<EngineEvent>) -> Result<(), EngineError> {
        for grid in self.servers.grids()? {
            let Some(news_cap) = self.servers.news_cap(&grid.name)? else {
                continue;
            };
            let (Some(root), Some(fingerprint)) =
                (news_cap.storage_index(), news_cap.fingerprint())
            else {
                continue;
            };
            let news = Watched::News {
                grid: grid.name.clone(),
                fingerprint,
            };
            self.watched.insert(root, news);
            let mut feed = NewsFeed::new(grid.name.clone(), news_cap);
            if let Some(gateway) = self.gateway_for(Some(&grid.name)) {
                match feed.refresh(gateway, &self.history).await {
                    Ok(refresh) => {
                        // `v1` is a directory of its own: its proofs are checked
                        // against its own key.
                        if let (Some(v1), Some(fingerprint)) =
                            (refresh.v1_storage_index, refresh.v1_fingerprint)
                        {
                            self.watched.insert(
                                v1,
                                Watched::News {
                                    grid: grid.name.clone(),
                                    fingerprint,
                                },
                            );
                        }
                        // Messages already there at start are history, not news: record quietly.
                        if refresh.upgrade_required {
                            let _ = events
                                .send(EngineEvent::Notice(format!(
                                    "the news of grid {} needs a newer Tahoe Notifier",
                                    grid.name
                                )))
                                .await;
                        }
                    }
                    Err(error) => {
                        let _ = events
                            .send(EngineEvent::Notice(format!(
                                "news of grid {} unavailable: {error}",
                                grid.name
                            )))
                            .await;
                    }
                }
            }
            self.news_feeds.insert(grid.name.clone(), feed);
        }
        Ok(())
    }

    fn start_links(&mut self, link_events: &mpsc::Sender<LinkEvent>) -> Result<(), EngineError> {
        for entry in self.servers.list()? {
            let wanted: Vec<StorageIndex> = self
                .watched
                .iter()
                .filter(|(_, w)| w.grid() == entry.grid.as_deref())
                .map(|(si, _)| *si)
                .collect();
            let nurl = self.servers.nurl(&entry.id)?;
            let name = entry
                .name
                .clone()
                .unwrap_or_else(|| format!("{}:{}", entry.host, entry.port));
            let (commands, receiver) = mpsc::channel(256);
            tokio::spawn(link::run_link(
                entry.id.clone(),
                nurl,
                wanted.clone(),
                self.options.link_timing.clone(),
                receiver,
                link_events.clone(),
            ));
            self.links.insert(
                entry.id,
                ServerLink {
                    name,
                    commands,
                    state: LinkState::Connecting,
                    grid: entry.grid.clone(),
                },
            );
        }
        Ok(())
    }

    async fn handle_command(&mut self, command: EngineCommand, events: &mpsc::Sender<EngineEvent>) {
        match command {
            EngineCommand::CapAdded(id) => {
                let added = self
                    .caps
                    .entry(&id)
                    .and_then(|entry| self.caps.get_cap(&id).map(|cap| (entry, cap)));
                match added {
                    Ok((entry, cap)) => {
                        let si = entry.storage_index;
                        self.set_policy_muted(&entry.id, entry.muted).await;
                        let watched = WatchedCap {
                            id: entry.id,
                            label: entry.label,
                            cap,
                            muted: entry.muted,
                            grid: entry.grid.or_else(|| self.default_grid.clone()),
                        };
                        self.start_baseline(&watched);
                        let grid = watched.grid.clone();
                        self.watched.insert(si, Watched::Cap(watched));
                        self.send_to_grid(grid.as_deref(), LinkCommand::Subscribe(vec![si]))
                            .await;
                    }
                    Err(error) => {
                        self.notice(events, format!("cannot watch the new cap: {error}"))
                            .await;
                    }
                }
            }
            EngineCommand::CapRemoved(id) => {
                let found = self.watched.iter().find_map(|(si, watched)| match watched {
                    Watched::Cap(cap) if cap.id == id => Some(*si),
                    _ => None,
                });
                self.baseline_queue.retain(|(queued, _, _)| *queued != id);
                if let Some(si) = found {
                    let grid = self
                        .watched
                        .remove(&si)
                        .and_then(|w| w.grid().map(str::to_owned));
                    self.outcomes.remove(&si);
                    self.describing.keys.remove(&si);
                    // A cap added again starts afresh (finding 1: a poisoned seqnum used to
                    // survive removing and re-adding the cap).
                    if let Err(error) = self.tracker.forget(&si) {
                        tracing::warn!(%error, "cannot forget a removed cap's seqnums");
                    }
                    self.send_to_grid(grid.as_deref(), LinkCommand::Unsubscribe(vec![si]))
                        .await;
                }
                self.set_policy_muted(&id, false).await;
            }
            EngineCommand::SetMuted { id, muted } => {
                for watched in self.watched.values_mut() {
                    if let Watched::Cap(cap) = watched {
                        if cap.id == id {
                            cap.muted = muted;
                        }
                    }
                }
                self.set_policy_muted(&id, muted).await;
            }
            EngineCommand::DelegateNotifications { id, delegated } => {
                if delegated {
                    self.delegated.insert(id.clone());
                } else {
                    self.delegated.remove(&id);
                }
                let user_muted = self.watched.values().any(
                    |watched| matches!(watched, Watched::Cap(cap) if cap.id == id && cap.muted),
                );
                self.set_policy_muted(&id, user_muted).await;
            }
            EngineCommand::CapChanged(id) => match self.caps.entry(&id) {
                Ok(entry) => {
                    for watched in self.watched.values_mut() {
                        if let Watched::Cap(cap) = watched {
                            if cap.id == id {
                                cap.label = entry.label.clone();
                                cap.muted = entry.muted;
                            }
                        }
                    }
                    self.set_policy_muted(&id, entry.muted).await;
                }
                Err(error) => {
                    tracing::debug!(%error, "a changed cap is gone already");
                }
            },
            EngineCommand::Policy(config) => {
                self.policy = PolicyConfig {
                    muted_caps: std::mem::take(&mut self.policy.muted_caps),
                    ..config
                };
                self.notify(PolicyInput::Config(self.policy.clone())).await;
            }
            EngineCommand::DoNotDisturb(on) => self.notify(PolicyInput::DoNotDisturb(on)).await,
            EngineCommand::ReconnectAll => self.broadcast(LinkCommand::Reconnect).await,
            EngineCommand::Shutdown => {}
        }
    }

    async fn broadcast(&self, command: LinkCommand) {
        for link in self.links.values() {
            let _ = link.commands.send(command.clone()).await;
        }
    }

    /// Sends `command` to the links of `grid`'s servers only.
    async fn send_to_grid(&self, grid: Option<&str>, command: LinkCommand) {
        for link in self.links.values().filter(|l| l.grid.as_deref() == grid) {
            let _ = link.commands.send(command.clone()).await;
        }
    }

    async fn handle_link_event(&mut self, event: LinkEvent, events: &mpsc::Sender<EngineEvent>) {
        match event {
            LinkEvent::State { server, state } => {
                if let Some(link) = self.links.get_mut(&server) {
                    link.state = state.clone();
                    let _ = events
                        .send(EngineEvent::Server {
                            id: server,
                            name: link.name.clone(),
                            state,
                        })
                        .await;
                }
            }
            LinkEvent::Subscription {
                server,
                storage_index,
                outcome,
            } => {
                if let SubscriptionOutcome::Subscribed { subscribers, .. } = &outcome {
                    self.note_popularity(storage_index, *subscribers);
                }
                let claim = match &outcome {
                    SubscriptionOutcome::Subscribed {
                        seqnum: Some(seqnum),
                        proof,
                        ..
                    } => self.claim(&server, storage_index, Some(*seqnum), proof.as_deref()),
                    _ => None,
                };
                self.outcomes
                    .entry(storage_index)
                    .or_default()
                    .insert(server.clone(), outcome);
                self.report_cap_status(storage_index, events).await;
                if let Some(claim) = claim {
                    self.observe(&server, storage_index, claim, Source::Resubscribe, events)
                        .await;
                    if let Some(Watched::News { grid, .. }) =
                        self.watched.get(&storage_index).cloned()
                    {
                        if self.news_confirmed.insert(storage_index) {
                            self.refresh_news(&grid, events).await;
                        }
                    }
                }
            }
            LinkEvent::Update {
                server,
                storage_index,
                seqnum,
                proof,
                subscribers,
            } => {
                self.note_popularity(storage_index, subscribers);
                if let Some(claim) = self.claim(&server, storage_index, seqnum, proof.as_deref()) {
                    self.observe(&server, storage_index, claim, Source::Live, events)
                        .await;
                }
            }
        }
    }

    /// Keeps the latest `subscribers` hint of a slot: a server that sends none says the slot
    /// is not popular (or does not know the extension).
    fn note_popularity(&mut self, si: StorageIndex, subscribers: Option<u64>) {
        match subscribers {
            Some(n) => {
                self.popularity.insert(si, n);
            }
            None => {
                self.popularity.remove(&si);
            }
        }
    }

    /// How long to wait before fetching what changed in `si`: spread over the slot's audience.
    fn spread_wait(&self, si: &StorageIndex) -> Duration {
        self.options
            .spread
            .wait(self.popularity.get(si).copied(), &mut rand::thread_rng())
    }

    /// Refreshes a grid's news now, or after its spread wait when its news slot is popular
    /// (one waiting refresh per grid fetches whatever is newest when it runs).
    async fn refresh_news_spread(
        &mut self,
        grid: &str,
        si: StorageIndex,
        events: &mpsc::Sender<EngineEvent>,
    ) {
        if self.news_waiting.contains(grid) {
            return;
        }
        let wait = self.spread_wait(&si);
        if wait.is_zero() {
            self.refresh_news(grid, events).await;
            return;
        }
        tracing::debug!(
            grid,
            wait_ms = wait.as_millis(),
            "news of a popular grid: fetching after a spread wait"
        );
        self.news_waiting.insert(grid.to_owned());
        let grid = grid.to_owned();
        self.news_waits.spawn(async move {
            tokio::time::sleep(wait).await;
            grid
        });
    }

    async fn report_cap_status(&self, si: StorageIndex, events: &mpsc::Sender<EngineEvent>) {
        let Some(Watched::Cap(cap)) = self.watched.get(&si) else {
            return;
        };
        let subscribed_on = self.subscribed_on(&si);
        let _ = events
            .send(EngineEvent::CapStatus {
                id: cap.id.clone(),
                label: cap.label.clone(),
                subscribed_on,
                servers: self.links.len(),
                polling: subscribed_on == 0,
            })
            .await;
    }

    fn subscribed_on(&self, si: &StorageIndex) -> usize {
        self.outcomes.get(si).map_or(0, |by_server| {
            by_server
                .iter()
                .filter(|(server, outcome)| {
                    matches!(outcome, SubscriptionOutcome::Subscribed { .. })
                        && self
                            .links
                            .get(*server)
                            .is_some_and(|link| link.state == LinkState::Connected)
                })
                .count()
        })
    }

    async fn refresh_news(&mut self, grid: &str, events: &mpsc::Sender<EngineEvent>) {
        let gateway = self.gateway_for(Some(grid)).cloned();
        let (Some(gateway), Some(feed)) = (gateway.as_ref(), self.news_feeds.get_mut(grid)) else {
            return;
        };
        let refresh = match feed.refresh(gateway, &self.history).await {
            Ok(refresh) => refresh,
            Err(error) => {
                let _ = events
                    .send(EngineEvent::Notice(format!(
                        "news of grid {grid} unavailable: {error}"
                    )))
                    .await;
                return;
            }
        };
        // `v1` is a directory of its own: its proofs are checked against its own key.
        if let (Some(v1), Some(fingerprint)) = (refresh.v1_storage_index, refresh.v1_fingerprint) {
            if let std::collections::hash_map::Entry::Vacant(entry) = self.watched.entry(v1) {
                entry.insert(Watched::News {
                    grid: grid.to_owned(),
                    fingerprint,
                });
                self.send_to_grid(Some(grid), LinkCommand::Subscribe(vec![v1]))
                    .await;
            }
        }
        if refresh.upgrade_required {
            let _ = events
                .send(EngineEvent::Notice(format!(
                    "the news of grid {grid} needs a newer Tahoe Notifier"
                )))
                .await;
        }
        for message in refresh.new_messages {
            if message.is_expired(time::OffsetDateTime::now_utc()) {
                continue;
            }
            let urgency = Urgency::from(message.severity);
            let title = message.heading();
            let report = NewsReport {
                grid: grid.to_owned(),
                title: title.clone(),
                body: message.body.clone(),
                urgency,
            };
            self.notify(PolicyInput::News(Notification {
                summary: format!("{grid}: {title}"),
                body: message.body.clone(),
                urgency,
                target: Some(format!("news:{grid}:{}", message.name)),
                replace_key: None,
            }))
            .await;
            let _ = events.send(EngineEvent::News(report)).await;
        }
    }

    /// Caps no updates server holds are polled through the gateway: push where possible,
    /// never silence. The listings are fetched off the engine's loop (four at a time); their
    /// results come back through [`Engine::polled`].
    fn poll_unsubscribed(&mut self) {
        if !self.polls.is_empty() {
            // The last round is still under way (a slow gateway): skip this tick.
            return;
        }
        let orphans: Vec<(StorageIndex, WatchedCap)> = self
            .watched
            .iter()
            .filter_map(|(si, watched)| match watched {
                Watched::Cap(cap) if self.subscribed_on(si) == 0 => Some((*si, cap.clone())),
                _ => None,
            })
            .collect();
        let mut jobs = Vec::new();
        for (si, cap) in orphans {
            if let Some(gateway) = self.gateway_for(cap.grid.as_deref()).cloned() {
                jobs.push((si, cap.id.clone(), cap.cap.read_only(), gateway));
            }
        }
        if jobs.is_empty() {
            return;
        }
        tracing::debug!(caps = jobs.len(), "poll round started");
        self.polls.spawn(async move {
            use futures_util::StreamExt as _;
            futures_util::stream::iter(jobs)
                .map(|(si, id, cap, gateway)| async move {
                    let listed = gateway.list(&cap).await.map_err(|e| e.to_string());
                    (si, id, listed)
                })
                .buffer_unordered(MAX_BASELINE_FETCHES)
                .collect::<Vec<_>>()
                .await
        });
    }

    /// One round of polling came back: record and notify what changed.
    async fn polled(&mut self, round: Vec<Polled>, events: &mpsc::Sender<EngineEvent>) {
        tracing::debug!(caps = round.len(), "poll round back");
        for (si, cap_id, listed) in round {
            let Some(Watched::Cap(cap)) = self.watched.get(&si).cloned() else {
                continue;
            };
            if cap.id != cap_id {
                continue;
            }
            // A server took the cap back while the round ran: its status seqnum reports what
            // changed meanwhile, and this listing, fetched before, may be older than the one
            // that report stored (it would then be told as a change of its own).
            if self.subscribed_on(&si) > 0 {
                tracing::debug!(cap = %cap.id, "polled listing dropped: the cap is subscribed again");
                continue;
            }
            match listed {
                Ok(listing) => {
                    if let Some(description) = details::describe_polled_snapshot(
                        &self.history,
                        &cap.id,
                        &cap.label,
                        listing,
                    ) {
                        tracing::debug!(cap = %cap.id, "polled listing differs from the last one");
                        // Polling cannot know the seqnum: 0, as `ChangeReport::seqnum` says.
                        self.record_and_notify(&cap, si, 0, false, description, events)
                            .await;
                    }
                }
                Err(error) => {
                    self.notice(
                        events,
                        format!("\"{}\" could not be polled: {error}", cap.label),
                    )
                    .await;
                }
            }
        }
    }
}
