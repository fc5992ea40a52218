//! The bridge task: runs beside an engine, turns changes of linked participants' personal
//! directories into an immediate magic-folder poll and a notification naming the participant.
//!
//! Wiring (what `tahoe-notifier watch` does; the app does the same around `spawn_engine`):
//!
//! 1. [`Bridge::open`], then send the engine every command of [`Bridge::delegations`] before
//!    it reports anything (so the engine's own notification for those caps never shows).
//! 2. Forward every [`EngineEvent::Changed`](crate::engine::EngineEvent::Changed) report to
//!    the bridge's change channel.
//! 3. Run [`Bridge::run`] with the engine's command sender: it sends `CapAdded`, `CapRemoved`
//!    and `DelegateNotifications` as participants come and go.
//!
//! A change of a participant's directory: `PUT /v1/magic-folder/<folder>/poll-remote` at
//! once (retried briefly), and — unless the user muted that participant or chose "conflicts
//! only" — one notification "Shared: alice added report.txt". With "conflicts only" the
//! bridge waits for the poll and asks the daemon for conflicts among the changed files.
//! A change of the collective, and a timer, make it list the participants again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::names::FileChanges;
use super::{
    linked_folders, sync_participants, MagicFolderClient, MagicFolderError, MagicFolderLink,
};
use crate::engine::{ChangeReport, EngineCommand};
use crate::notify::{cap_replace_key, Notification, NotificationSink, QuietHours, Urgency};
use crate::store::caps::{CapStore, CapStoreError};
use crate::store::config::ConfigFile;
use crate::store::keyring::SecretStore;
use crate::store::paths::Paths;

/// How often the participants of every linked folder are listed again by default.
pub const DEFAULT_RELIST_INTERVAL: Duration = Duration::from_secs(300);

/// Waits before the retries of a failed `poll-remote` (the daemon may be restarting).
const POKE_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// How the bridge runs.
#[derive(Clone)]
pub struct BridgeOptions {
    /// Where the config lives (the links and the cap store).
    pub paths: Paths,
    /// The keyring of the cap store.
    pub secrets: Arc<dyn SecretStore>,
    /// Where notifications go (`None`: none are raised).
    pub sink: Option<Arc<dyn NotificationSink>>,
    /// How often participants are listed again (besides on collective changes).
    pub relist_interval: Duration,
    /// No notifications in this daily period (changes are still recorded by the engine).
    pub quiet_hours: Option<QuietHours>,
    /// The user wants news only: no change notifications.
    pub news_only: bool,
    /// The local time zone's offset, for quiet hours.
    pub local_offset: time::UtcOffset,
}

impl BridgeOptions {
    /// Defaults: 5-minute re-listing, no quiet hours, UTC.
    pub fn new(
        paths: Paths,
        secrets: Arc<dyn SecretStore>,
        sink: Option<Arc<dyn NotificationSink>>,
    ) -> Self {
        Self {
            paths,
            secrets,
            sink,
            relist_interval: DEFAULT_RELIST_INTERVAL,
            quiet_hours: None,
            news_only: false,
            local_offset: time::UtcOffset::UTC,
        }
    }
}

impl std::fmt::Debug for BridgeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeOptions")
            .field("paths", &self.paths)
            .field("relist_interval", &self.relist_interval)
            .finish_non_exhaustive()
    }
}

/// What the bridge tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeEvent {
    /// The daemon was asked to poll, and finished the poll after `elapsed`.
    Poked {
        /// The folder.
        folder: String,
        /// Whose change caused it.
        participant: String,
        /// From the change report to the daemon's answer.
        elapsed: Duration,
    },
    /// The daemon could not be asked to poll (it will still poll on its own timer).
    PokeFailed {
        /// The folder.
        folder: String,
        /// Why (no token, no cap).
        reason: String,
    },
    /// Participants came or went.
    Participants {
        /// The folder.
        folder: String,
        /// Newly watched.
        added: Vec<String>,
        /// No longer watched.
        removed: Vec<String>,
    },
    /// A notification was raised.
    Notified {
        /// Its summary line.
        summary: String,
    },
    /// Something else worth a line.
    Notice(String),
}

/// What a linked cap id stands for.
#[derive(Debug, Clone)]
enum Role {
    Collective { link: usize },
    Participant { link: usize, name: String },
}

/// The bridge's state; see the module docs.
pub struct Bridge {
    options: BridgeOptions,
    caps: CapStore,
    config: ConfigFile,
    links: Vec<MagicFolderLink>,
    clients: HashMap<PathBuf, MagicFolderClient>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

/// A finished `poll-remote` request, with what to notify afterwards.
struct PokeDone {
    folder: String,
    participant: String,
    elapsed: Duration,
    result: Result<(), MagicFolderError>,
    /// For "conflicts only": the change to check for conflicts.
    conflicts_check: Option<(ChangeReport, FileChanges)>,
}

impl Bridge {
    /// Loads the links from the config.
    pub fn open(options: BridgeOptions) -> Result<Self, MagicFolderError> {
        let config = ConfigFile::new(options.paths.config_file());
        let caps = CapStore::new(config.clone(), Arc::clone(&options.secrets));
        let links = linked_folders(&config)?;
        Ok(Self {
            options,
            caps,
            config,
            links,
            clients: HashMap::new(),
        })
    }

    /// Whether no folder is linked.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The linked folders.
    pub fn links(&self) -> &[MagicFolderLink] {
        &self.links
    }

    /// The commands that hand the linked caps' notifications to the bridge; send them to the
    /// engine before it runs (or before anything else).
    pub fn delegations(&self) -> Vec<EngineCommand> {
        self.links
            .iter()
            .flat_map(MagicFolderLink::cap_ids)
            .map(|id| EngineCommand::DelegateNotifications {
                id: id.to_owned(),
                delegated: true,
            })
            .collect()
    }

    fn role(&self, cap_id: &str) -> Option<Role> {
        self.links.iter().enumerate().find_map(|(index, link)| {
            if link.collective.as_ref().is_some_and(|c| c.cap_id == cap_id) {
                return Some(Role::Collective { link: index });
            }
            link.participants
                .iter()
                .find(|p| p.cap.cap_id == cap_id)
                .map(|p| Role::Participant {
                    link: index,
                    name: p.name.clone(),
                })
        })
    }

    fn client(&mut self, link: usize) -> Result<MagicFolderClient, MagicFolderError> {
        let dir = self.links[link].config_dir.clone();
        if let Some(client) = self.clients.get(&dir) {
            return Ok(client.clone());
        }
        let client = MagicFolderClient::new(&dir)?;
        self.clients.insert(dir, client.clone());
        Ok(client)
    }

    /// Runs until `changes` closes (the engine stopped) or `commands` does.
    pub async fn run(
        mut self,
        mut changes: mpsc::Receiver<ChangeReport>,
        commands: mpsc::Sender<EngineCommand>,
        events: mpsc::Sender<BridgeEvent>,
    ) {
        let mut pokes: JoinSet<PokeDone> = JoinSet::new();
        let mut relist = tokio::time::interval(self.options.relist_interval);
        relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Some(report) => self.on_change(report, &mut pokes, &commands, &events).await,
                    None => break,
                },
                // The first tick is immediate: participants added while we were away.
                _ = relist.tick() => self.relist_all(&commands, &events).await,
                Some(done) = pokes.join_next(), if !pokes.is_empty() => {
                    if let Ok(done) = done {
                        self.on_poke_done(done, &events).await;
                    }
                }
            }
            if commands.is_closed() {
                break;
            }
        }
        // Pokes in flight are left to finish on their own: the daemon polls either way.
        pokes.detach_all();
    }

    async fn on_change(
        &mut self,
        report: ChangeReport,
        pokes: &mut JoinSet<PokeDone>,
        commands: &mpsc::Sender<EngineCommand>,
        events: &mpsc::Sender<BridgeEvent>,
    ) {
        let received = Instant::now();
        match self.role(&report.cap_id) {
            None => {}
            Some(Role::Collective { link }) => {
                self.relist(link, commands, events).await;
            }
            Some(Role::Participant { link, name }) => {
                let client = match self.client(link) {
                    Ok(client) => client,
                    Err(error) => {
                        let _ = events
                            .send(BridgeEvent::PokeFailed {
                                folder: self.links[link].folder.clone(),
                                reason: error.to_string(),
                            })
                            .await;
                        return;
                    }
                };
                let folder = self.links[link].folder.clone();
                let files = FileChanges::from_details(&report.details);
                let conflicts_only = self.links[link].conflicts_only;
                let conflicts_check = if conflicts_only && !files.is_empty() {
                    Some((report.clone(), files.clone()))
                } else {
                    None
                };
                let poke_folder = folder.clone();
                let participant = name.clone();
                pokes.spawn(async move {
                    let result = poke_with_retry(&client, &poke_folder).await;
                    PokeDone {
                        folder: poke_folder,
                        participant,
                        elapsed: received.elapsed(),
                        result,
                        conflicts_check,
                    }
                });
                if !conflicts_only && !files.is_empty() && !report.muted {
                    let mut summary = files.summary(&folder, &name);
                    if report.while_away {
                        summary.push_str(&format!(" ({})", crate::engine::details::WHILE_AWAY));
                    }
                    let notification = Notification {
                        summary,
                        body: files.body(),
                        urgency: Urgency::Normal,
                        target: Some(format!("change:{}", report.history_id)),
                        replace_key: Some(cap_replace_key(&report.cap_id)),
                    };
                    self.deliver(notification, events).await;
                }
            }
        }
    }

    async fn on_poke_done(&mut self, done: PokeDone, events: &mpsc::Sender<BridgeEvent>) {
        match done.result {
            Ok(()) => {
                let _ = events
                    .send(BridgeEvent::Poked {
                        folder: done.folder.clone(),
                        participant: done.participant.clone(),
                        elapsed: done.elapsed,
                    })
                    .await;
            }
            Err(error) => {
                tracing::warn!(folder = %done.folder, %error, "magic-folder poll-remote failed");
                let _ = events
                    .send(BridgeEvent::PokeFailed {
                        folder: done.folder.clone(),
                        reason: error.to_string(),
                    })
                    .await;
            }
        }
        let Some((report, files)) = done.conflicts_check else {
            return;
        };
        if report.muted {
            return;
        }
        let Some(link) = self.links.iter().position(|l| l.folder == done.folder) else {
            return;
        };
        let conflicts = match self.client(link) {
            Ok(client) => client.conflicts(&done.folder).await,
            Err(error) => Err(error),
        };
        let conflicts = match conflicts {
            Ok(conflicts) => conflicts,
            Err(error) => {
                let _ = events
                    .send(BridgeEvent::Notice(format!(
                        "cannot ask magic-folder for conflicts in {}: {error}",
                        done.folder
                    )))
                    .await;
                return;
            }
        };
        let conflicted: Vec<&String> = files
            .paths()
            .filter(|path| conflicts.contains_key(*path))
            .collect();
        let Some(first) = conflicted.first() else {
            return;
        };
        let folder = crate::describe::text::clean_line(&done.folder, 60);
        let participant = crate::describe::text::clean_line(&done.participant, 60);
        let mut summary = format!(
            "{folder}: conflict in {} with {participant}",
            crate::describe::text::clean_line(first, 60)
        );
        if conflicted.len() > 1 {
            summary.push_str(&format!(", {} more", conflicted.len() - 1));
        }
        let body = format!(
            "magic-folder kept both versions of: {}",
            conflicted
                .iter()
                .take(10)
                .map(|p| crate::describe::text::clean_line(p, 60))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.deliver(
            Notification {
                summary,
                body,
                urgency: Urgency::Normal,
                target: Some(format!("change:{}", report.history_id)),
                replace_key: Some(cap_replace_key(&report.cap_id)),
            },
            events,
        )
        .await;
    }

    async fn deliver(&self, notification: Notification, events: &mpsc::Sender<BridgeEvent>) {
        if self.options.news_only {
            return;
        }
        if let Some(quiet) = self.options.quiet_hours {
            let now = time::OffsetDateTime::now_utc()
                .to_offset(self.options.local_offset)
                .time();
            if quiet.contains(now) {
                return;
            }
        }
        let Some(sink) = self.options.sink.clone() else {
            return;
        };
        let summary = notification.summary.clone();
        // A desktop delivery is a blocking D-Bus round trip.
        let delivered = tokio::task::spawn_blocking(move || sink.deliver(&notification)).await;
        match delivered {
            Ok(Ok(_)) => {
                let _ = events.send(BridgeEvent::Notified { summary }).await;
            }
            Ok(Err(error)) => {
                let _ = events
                    .send(BridgeEvent::Notice(format!(
                        "notification not shown: {error}"
                    )))
                    .await;
            }
            Err(_) => {}
        }
    }

    /// Lists every linked folder's participants again, and picks up links made or removed
    /// since (by `tahoe-notifier magic-folder link` while this runs, or the app).
    async fn relist_all(
        &mut self,
        commands: &mpsc::Sender<EngineCommand>,
        events: &mpsc::Sender<BridgeEvent>,
    ) {
        match linked_folders(&self.config) {
            Ok(stored) => self.adopt_links(stored, commands).await,
            Err(error) => {
                let _ = events
                    .send(BridgeEvent::Notice(format!(
                        "cannot read the magic-folder links: {error}"
                    )))
                    .await;
            }
        }
        for link in 0..self.links.len() {
            self.relist(link, commands, events).await;
        }
    }

    /// Makes `stored` the links: caps of new links are added to the engine and delegated,
    /// caps of links gone are handed back (or removed, when the cap store no longer has them).
    async fn adopt_links(
        &mut self,
        stored: Vec<MagicFolderLink>,
        commands: &mpsc::Sender<EngineCommand>,
    ) {
        let old: Vec<String> = self
            .links
            .iter()
            .flat_map(|l| l.cap_ids().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let new: Vec<String> = stored
            .iter()
            .flat_map(|l| l.cap_ids().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        for id in new.iter().filter(|id| !old.contains(id)) {
            let _ = commands
                .send(EngineCommand::DelegateNotifications {
                    id: id.clone(),
                    delegated: true,
                })
                .await;
            let _ = commands.send(EngineCommand::CapAdded(id.clone())).await;
        }
        for id in old.iter().filter(|id| !new.contains(id)) {
            self.release_cap(id, commands).await;
        }
        self.links = stored;
    }

    /// Stops delegating `id`; removes it from the engine if the cap store no longer has it.
    async fn release_cap(&self, id: &str, commands: &mpsc::Sender<EngineCommand>) {
        if matches!(self.caps.entry(id), Err(CapStoreError::UnknownId(_))) {
            let _ = commands
                .send(EngineCommand::CapRemoved(id.to_owned()))
                .await;
        }
        let _ = commands
            .send(EngineCommand::DelegateNotifications {
                id: id.to_owned(),
                delegated: false,
            })
            .await;
    }

    async fn relist(
        &mut self,
        link: usize,
        commands: &mpsc::Sender<EngineCommand>,
        events: &mpsc::Sender<BridgeEvent>,
    ) {
        let folder = self.links[link].folder.clone();
        let synced = match self.client(link) {
            Ok(client) => sync_participants(&client, &self.caps, &self.config, &folder).await,
            Err(error) => Err(error),
        };
        let sync = match synced {
            Ok(sync) => sync,
            Err(error) => {
                let _ = events
                    .send(BridgeEvent::Notice(format!(
                        "cannot list the participants of {folder}: {error}"
                    )))
                    .await;
                return;
            }
        };
        if sync.is_empty() {
            return;
        }
        for (_, id) in &sync.added {
            let _ = commands
                .send(EngineCommand::DelegateNotifications {
                    id: id.clone(),
                    delegated: true,
                })
                .await;
            let _ = commands.send(EngineCommand::CapAdded(id.clone())).await;
        }
        for (_, id) in &sync.removed {
            self.release_cap(id, commands).await;
        }
        if let Ok(stored) = linked_folders(&self.config) {
            self.links = stored;
        }
        let _ = events
            .send(BridgeEvent::Participants {
                folder,
                added: sync.added.into_iter().map(|(name, _)| name).collect(),
                removed: sync.removed.into_iter().map(|(name, _)| name).collect(),
            })
            .await;
    }
}

/// `poll-remote`, retried a few times over ~3.5 s when the daemon does not answer.
async fn poke_with_retry(client: &MagicFolderClient, folder: &str) -> Result<(), MagicFolderError> {
    let mut result = client.poll_remote(folder).await;
    for delay in POKE_RETRY_DELAYS {
        match &result {
            Ok(()) => break,
            // The daemon answered with a refusal: asking again will not help.
            Err(MagicFolderError::Status { .. } | MagicFolderError::Unauthorized { .. }) => break,
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        result = client.poll_remote(folder).await;
    }
    result
}

#[cfg(test)]
mod tests {
    //! The bridge against a scripted stand-in for the daemon's API (the real daemon is in
    //! `tests/magic_folder_grid.rs`): what it asks, what it notifies.
    #![allow(clippy::unwrap_used)]

    use std::path::Path;
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::magic_folder::{LinkedCap, LinkedParticipant};
    use crate::notify::RecordingSink;
    use crate::store::keyring::MemorySecretStore;
    use tahoe_caps::Cap;

    const COLLECTIVE: &str =
        "URI:DIR2-RO:272nxlgxylwa6dwm3s7fynfp4u:vftuiuwodoqscnhnl54kcu4qbmhlk5jcor7yfqjwzx75wr2btutq";
    const BOB: &str =
        "URI:DIR2-RO:4droqmlg7gj6ngcokx5ihv52qq:uudgasuc4ususizl5ngo5ar3zphkutw5z5zj6nucggzq2ne3mbjq";
    const ALICE: &str =
        "URI:DIR2-RO:6j3b2lgs7zu2sgzuri4txcmmqy:yoomkseqkiu235hmkhxiveu7ja65rtzrfls54saieqqqn3dpbvmq";
    const TOKEN: &str = "test-token-123";

    /// Serves magic-folder's answers for folder "Shared" (participants bob and alice, a
    /// conflict on docs/report.txt); records each request line and whether it carried the token.
    async fn fake_daemon(config_dir: &Path) -> Arc<Mutex<Vec<(String, bool)>>> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        std::fs::write(config_dir.join("api_token"), TOKEN).unwrap();
        std::fs::write(
            config_dir.join("api_client_endpoint"),
            format!("tcp:127.0.0.1:{port}\n"),
        )
        .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let line = request.lines().next().unwrap_or("").to_owned();
                    let authorized = request
                        .lines()
                        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {TOKEN}")));
                    record.lock().unwrap().push((line.clone(), authorized));
                    let body = if line.contains("/participants") {
                        serde_json::json!({"bob": {"personal_dmd": BOB}, "alice": {"personal_dmd": ALICE}})
                    } else if line.contains("/conflicts") {
                        serde_json::json!({"docs/report.txt": ["alice"]})
                    } else if line.contains("include_secret_information") {
                        serde_json::json!({"Shared": {"name": "Shared", "author": {"name": "bob"},
                            "poll_interval": 60, "collective_dircap": COLLECTIVE, "upload_dircap": BOB}})
                    } else {
                        serde_json::json!({})
                    };
                    let body = body.to_string();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        seen
    }

    struct Running {
        _home: tempfile::TempDir,
        changes: mpsc::Sender<ChangeReport>,
        sink: Arc<RecordingSink>,
        seen: Arc<Mutex<Vec<(String, bool)>>>,
        alice_id: String,
        _commands: mpsc::Receiver<EngineCommand>,
    }

    async fn start(conflicts_only: bool) -> Running {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path());
        paths.ensure_dirs().unwrap();
        let daemon_dir = home.path().join("mf");
        std::fs::create_dir(&daemon_dir).unwrap();
        let seen = fake_daemon(&daemon_dir).await;
        let secrets: Arc<dyn SecretStore> = Arc::new(MemorySecretStore::default());
        let config = ConfigFile::new(paths.config_file());
        let caps = CapStore::new(config.clone(), Arc::clone(&secrets));
        let collective = caps
            .add(&Cap::parse(COLLECTIVE).unwrap(), "c", None)
            .unwrap();
        let alice = caps
            .add(&Cap::parse(ALICE).unwrap(), "alice in Shared", None)
            .unwrap();
        config
            .update(|c| {
                c.magic_folder_links.push(MagicFolderLink {
                    config_dir: daemon_dir.clone(),
                    folder: "Shared".to_owned(),
                    own_name: "bob".to_owned(),
                    collective: Some(LinkedCap {
                        cap_id: collective.id.clone(),
                        added_by_link: true,
                    }),
                    participants: vec![LinkedParticipant {
                        name: "alice".to_owned(),
                        cap: LinkedCap {
                            cap_id: alice.id.clone(),
                            added_by_link: true,
                        },
                    }],
                    conflicts_only,
                });
                Ok::<_, crate::store::config::ConfigError>(())
            })
            .unwrap();
        let sink = Arc::new(RecordingSink::new());
        let bridge = Bridge::open(BridgeOptions::new(
            paths,
            secrets,
            Some(Arc::clone(&sink) as Arc<dyn NotificationSink>),
        ))
        .unwrap();
        assert_eq!(bridge.delegations().len(), 2);
        let (changes, changes_rx) = mpsc::channel(16);
        let (commands_tx, commands) = mpsc::channel(64);
        let (events_tx, mut events) = mpsc::channel(64);
        tokio::spawn(bridge.run(changes_rx, commands_tx, events_tx));
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        Running {
            _home: home,
            changes,
            sink,
            seen,
            alice_id: alice.id,
            _commands: commands,
        }
    }

    fn report(cap_id: &str) -> ChangeReport {
        ChangeReport {
            history_id: 7,
            cap_id: cap_id.to_owned(),
            storage_index: Cap::parse(ALICE).unwrap().storage_index().unwrap(),
            seqnum: 3,
            while_away: false,
            summary: "alice in Shared: added docs@_report.txt".to_owned(),
            body: String::new(),
            muted: false,
            details: serde_json::json!({"kind": "directory", "added": ["docs@_report.txt"],
                "modified": ["@metadata"], "removed": [],
                "counts": {"added": 1, "modified": 1, "removed": 0}}),
        }
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// The app runs the bridge on its multi-threaded runtime: its future must be `Send`.
    #[test]
    fn the_bridge_can_run_on_any_runtime_thread() {
        fn assert_send<T: Send>(_: &T) {}
        let home = tempfile::tempdir().unwrap();
        let secrets: Arc<dyn SecretStore> = Arc::new(MemorySecretStore::default());
        let bridge =
            Bridge::open(BridgeOptions::new(Paths::under(home.path()), secrets, None)).unwrap();
        let (_changes, changes_rx) = mpsc::channel(1);
        let (commands, _commands_rx) = mpsc::channel(1);
        let (events, _events_rx) = mpsc::channel(1);
        let run = bridge.run(changes_rx, commands, events);
        assert_send(&run);
    }

    #[tokio::test]
    async fn a_participant_change_asks_the_daemon_to_poll_and_notifies_unmangled() {
        let running = start(false).await;
        running
            .changes
            .send(report(&running.alice_id))
            .await
            .unwrap();
        let seen = Arc::clone(&running.seen);
        wait_until("poll-remote", || {
            seen.lock()
                .unwrap()
                .iter()
                .any(|(line, _)| line.starts_with("PUT /v1/magic-folder/Shared/poll-remote"))
        })
        .await;
        assert!(running.seen.lock().unwrap().iter().all(|(_, auth)| *auth));
        let shown = running.sink.delivered();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].summary, "Shared: alice added docs/report.txt");
        assert_eq!(shown[0].target.as_deref(), Some("change:7"));
    }

    #[tokio::test]
    async fn conflicts_only_notifies_a_conflict_after_the_poll() {
        let running = start(true).await;
        running
            .changes
            .send(report(&running.alice_id))
            .await
            .unwrap();
        let sink = Arc::clone(&running.sink);
        wait_until("the conflict notification", || !sink.delivered().is_empty()).await;
        let shown = running.sink.delivered();
        assert_eq!(shown.len(), 1);
        assert_eq!(
            shown[0].summary,
            "Shared: conflict in docs/report.txt with alice"
        );
        let lines: Vec<String> = running
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _)| l.clone())
            .collect();
        let poll = lines
            .iter()
            .position(|l| l.contains("/poll-remote"))
            .unwrap();
        let conflicts = lines.iter().position(|l| l.contains("/conflicts")).unwrap();
        assert!(
            poll < conflicts,
            "conflicts asked before the poll: {lines:?}"
        );
    }
}
