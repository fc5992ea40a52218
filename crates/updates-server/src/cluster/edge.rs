//! The edge role's slot source: a [`SlotDirectory`] fed by the broker, subscribing only to the
//! SIs local clients hold, and asking the watchers whenever it may have missed a change.
//!
//! Rules that keep it honest:
//! - The seqnum kept for an SI is the highest any node reported, and only a rise above it is
//!   announced: a watcher that republishes a seqnum, or two nodes reporting one version, make
//!   no second update.
//! - Nothing the broker kept is trusted (it keeps nothing here: plain subjects, no JetStream).
//!   After a (re)connect, and when a watcher (re)appears, the edge asks every watcher for the
//!   seqnums of every SI held here and announces each rise it missed.
//! - A new SI is subscribed on the broker first and asked about after (the subscription
//!   confirmed by a flush), so a change is either in the answer or in a message that follows.
//! - Every decision about an SI's seqnum is made by one task ([`EdgeSource::run`]), the only
//!   one that announces: updates of one SI leave in rising order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tahoe_caps::StorageIndex;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::subjects::{
    change_subject, ChangeNotice, Heartbeat, Query, QueryReply, HEARTBEAT_SUBJECT,
    MAX_QUERY_INDEXES, QUERY_SUBJECT,
};
use super::{BrokerLink, LinkEvent};
use crate::hub::InterestListener;
use crate::metrics::{write_metric, MetricsSource};
use crate::slots::{SlotChange, SlotDirectory, SlotState};

/// Options of the edge.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Longest a query waits for the watchers' replies (less when every live watcher answered).
    pub gather_window: Duration,
    /// A watcher not heard from for this long is no longer waited for.
    pub watcher_expiry: Duration,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            gather_window: Duration::from_millis(300),
            watcher_expiry: Duration::from_secs(3),
        }
    }
}

/// What the edge knows of one SI.
#[derive(Debug, Clone)]
struct Entry {
    /// Highest seqnum reported by any node (and so announced or told in a status).
    seqnum: Option<u64>,
    /// Some node holds immutable shares under it.
    immutable: bool,
    /// A local client holds it: kept current by the broker. Otherwise a recent answer only.
    live: bool,
    /// When a non-live entry was made (swept after a while).
    made: Instant,
}

impl Entry {
    fn new() -> Self {
        Self {
            seqnum: None,
            immutable: false,
            live: false,
            made: Instant::now(),
        }
    }

    fn state(&self) -> SlotState {
        match (self.seqnum, self.immutable) {
            (Some(seqnum), _) => SlotState::Mutable { seqnum },
            (None, true) => SlotState::Immutable,
            (None, false) => SlotState::Absent,
        }
    }
}

/// What the deciding task is told.
#[derive(Debug)]
enum Command {
    Gained(StorageIndex),
    Lost(StorageIndex),
    /// A node's seqnum of an SI (from a change message or a query reply); `asked`: from a query.
    Observed {
        storage_index: StorageIndex,
        seqnum: u64,
        asked: bool,
    },
    /// A watcher was heard from.
    Watcher(String),
    Link(LinkEvent),
}

/// Figures of the edge.
#[derive(Debug, Default)]
struct EdgeStats {
    broker_messages: AtomicU64,
    announced: AtomicU64,
    stale: AtomicU64,
    caught_up: AtomicU64,
    resyncs: AtomicU64,
    queries: AtomicU64,
    bad_messages: AtomicU64,
    subjects: AtomicU64,
    watchers: AtomicU64,
}

struct Shared {
    slots: Mutex<HashMap<StorageIndex, Entry>>,
    /// Watchers heard from, with when.
    watchers: Mutex<HashMap<String, Instant>>,
    commands: mpsc::UnboundedSender<Command>,
    link: Arc<BrokerLink>,
    options: EdgeOptions,
    stats: EdgeStats,
}

impl Shared {
    fn slots(&self) -> MutexGuard<'_, HashMap<StorageIndex, Entry>> {
        // Every change under this lock is one insert or field store: a poisoned map is whole.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_watchers(&self) -> usize {
        let expiry = self.options.watcher_expiry;
        let watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        watchers.values().filter(|t| t.elapsed() < expiry).count()
    }

    /// Asks every watcher about `storage_indexes` and gathers the replies.
    async fn query(&self, storage_indexes: &[StorageIndex]) -> Vec<QueryReply> {
        let mut replies = Vec::new();
        for chunk in storage_indexes.chunks(MAX_QUERY_INDEXES) {
            match self.query_chunk(chunk).await {
                Ok(mut got) => replies.append(&mut got),
                Err(error) => tracing::warn!(%error, "a seqnum query failed"),
            }
        }
        replies
    }

    async fn query_chunk(&self, chunk: &[StorageIndex]) -> Result<Vec<QueryReply>, String> {
        self.stats.queries.fetch_add(1, Ordering::Relaxed);
        let client = self.link.client();
        let payload = serde_json::to_vec(&Query {
            storage_indexes: chunk.to_vec(),
        })
        .map_err(|e| e.to_string())?;
        let expected = self.live_watchers();
        let inbox = client.new_inbox();
        let mut answers = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| e.to_string())?;
        client
            .publish_with_reply(QUERY_SUBJECT, inbox, payload.into())
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + self.options.gather_window;
        tokio::time::timeout_at(deadline, client.flush())
            .await
            .map_err(|_| "the broker did not confirm the query in time".to_owned())?
            .map_err(|e| e.to_string())?;
        let mut replies = Vec::new();
        let mut nodes = HashSet::new();
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, answers.next()).await {
            self.stats.broker_messages.fetch_add(1, Ordering::Relaxed);
            match serde_json::from_slice::<QueryReply>(&message.payload) {
                Ok(reply) => {
                    let _ = self.commands.send(Command::Watcher(reply.node.clone()));
                    nodes.insert(reply.node.clone());
                    replies.push(reply);
                    if expected > 0 && nodes.len() >= expected {
                        break;
                    }
                }
                Err(_) => {
                    self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let _ = answers.unsubscribe().await;
        Ok(replies)
    }
}

/// The edge's slot source. Clone it freely: clones share everything.
#[derive(Clone)]
pub struct EdgeSource {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EdgeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeSource")
            .field("connected", &self.shared.link.is_connected())
            .finish_non_exhaustive()
    }
}

/// The deciding task's half, given to [`EdgeSource::run`].
#[derive(Debug)]
pub struct EdgeRunner {
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedReceiver<LinkEvent>,
}

impl EdgeSource {
    /// A source on `link`; run [`EdgeSource::run`] with the runner, and register the source as
    /// the hub's [`InterestListener`].
    pub fn new(
        link: Arc<BrokerLink>,
        events: mpsc::UnboundedReceiver<LinkEvent>,
        options: EdgeOptions,
    ) -> (Self, EdgeRunner) {
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            slots: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
            commands: commands_tx,
            link,
            options,
            stats: EdgeStats::default(),
        });
        (Self { shared }, EdgeRunner { commands, events })
    }

    /// Decides every seqnum and announces the rises into `changes` (to the endpoint's
    /// `forward_changes`), until `changes` closes.
    pub async fn run(self, runner: EdgeRunner, changes: mpsc::Sender<SlotChange>) {
        let EdgeRunner {
            mut commands,
            mut events,
        } = runner;
        let shared = &self.shared;
        let client = shared.link.client().clone();
        // Broker messages (changes, heartbeats) come back through the command channel.
        let mut subscriptions: HashMap<StorageIndex, AbortHandle> = HashMap::new();
        match client.subscribe(HEARTBEAT_SUBJECT).await {
            Ok(heartbeats) => {
                tokio::spawn(forward_heartbeats(Arc::clone(shared), heartbeats));
            }
            Err(error) => tracing::warn!(%error, "cannot subscribe to watcher heartbeats"),
        }
        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        loop {
            let command = tokio::select! {
                Some(command) = commands.recv() => command,
                Some(event) = events.recv() => Command::Link(event),
                _ = sweep.tick() => {
                    shared.slots().retain(|_, e| e.live || e.made.elapsed() < Duration::from_secs(30));
                    continue;
                }
                else => break,
            };
            // Gather a burst of interest changes: one flush and one query for all of them.
            let mut fresh = Vec::new();
            let mut pending = Some(command);
            while let Some(command) = pending.take().or_else(|| commands.try_recv().ok()) {
                match command {
                    Command::Gained(si) => {
                        if let std::collections::hash_map::Entry::Vacant(slot) =
                            subscriptions.entry(si)
                        {
                            match client.subscribe(change_subject(&si)).await {
                                Ok(subscriber) => {
                                    let task = tokio::spawn(forward_changes(
                                        Arc::clone(shared),
                                        subscriber,
                                    ));
                                    slot.insert(task.abort_handle());
                                    fresh.push(si);
                                }
                                Err(error) => {
                                    tracing::warn!(%error, storage_index = %si, "cannot subscribe");
                                }
                            }
                        }
                    }
                    Command::Lost(si) => {
                        if let Some(task) = subscriptions.remove(&si) {
                            // Dropping the subscriber unsubscribes.
                            task.abort();
                        }
                    }
                    Command::Observed {
                        storage_index,
                        seqnum,
                        asked,
                    } => {
                        let rise = {
                            let mut slots = shared.slots();
                            match slots.get_mut(&storage_index) {
                                Some(entry)
                                    if entry.live
                                        && entry.seqnum.is_none_or(|known| seqnum > known) =>
                                {
                                    entry.seqnum = Some(seqnum);
                                    true
                                }
                                // Not higher, or nobody holds it here: nothing to announce.
                                _ => false,
                            }
                        };
                        if rise {
                            shared.stats.announced.fetch_add(1, Ordering::Relaxed);
                            if asked {
                                shared.stats.caught_up.fetch_add(1, Ordering::Relaxed);
                                tracing::info!(%storage_index, seqnum, "caught up a missed change");
                            }
                            if changes
                                .send(SlotChange::new(storage_index, seqnum))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        } else if !asked {
                            shared.stats.stale.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Command::Watcher(node) => {
                        let appeared = {
                            let mut watchers =
                                shared.watchers.lock().unwrap_or_else(|p| p.into_inner());
                            let expiry = shared.options.watcher_expiry;
                            let before = watchers.insert(node.clone(), Instant::now());
                            before.is_none_or(|t| t.elapsed() >= expiry)
                        };
                        if appeared {
                            tracing::info!(%node, "watcher appeared: asking again");
                            self.resync_all(&subscriptions);
                        }
                    }
                    Command::Link(LinkEvent::Connected) => {
                        tracing::info!("broker connected: asking the watchers for what was missed");
                        self.resync_all(&subscriptions);
                    }
                    Command::Link(LinkEvent::Disconnected) => {}
                }
                if fresh.len() >= MAX_QUERY_INDEXES {
                    break;
                }
            }
            shared
                .stats
                .subjects
                .store(subscriptions.len() as u64, Ordering::Relaxed);
            if !fresh.is_empty() {
                let shared = Arc::clone(shared);
                tokio::spawn(async move {
                    // The SUBs reach the broker before the query: then a change is in the
                    // answer or in a message after it.
                    let _ = shared.link.client().flush().await;
                    ask(&shared, &fresh).await;
                });
            }
        }
    }

    fn resync_all(&self, subscriptions: &HashMap<StorageIndex, AbortHandle>) {
        self.shared.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        let held: Vec<StorageIndex> = subscriptions.keys().copied().collect();
        if held.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            // Subscriptions are re-sent on reconnect before this flush is answered.
            let _ = shared.link.client().flush().await;
            ask(&shared, &held).await;
        });
    }

    /// The link, for the metrics page.
    pub fn link(&self) -> Arc<BrokerLink> {
        Arc::clone(&self.shared.link)
    }
}

/// Queries the watchers and hands every answer to the deciding task.
async fn ask(shared: &Shared, storage_indexes: &[StorageIndex]) {
    for reply in shared.query(storage_indexes).await {
        for (storage_index, seqnum) in reply.mutable {
            let _ = shared.commands.send(Command::Observed {
                storage_index,
                seqnum,
                asked: true,
            });
        }
    }
}

async fn forward_changes(shared: Arc<Shared>, mut subscriber: async_nats::Subscriber) {
    while let Some(message) = subscriber.next().await {
        shared.stats.broker_messages.fetch_add(1, Ordering::Relaxed);
        let Ok(notice) = serde_json::from_slice::<ChangeNotice>(&message.payload) else {
            shared.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // The subject names the SI: a notice about another one is not believed.
        if message.subject.as_str() != change_subject(&notice.storage_index) {
            shared.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let _ = shared.commands.send(Command::Watcher(notice.node));
        let _ = shared.commands.send(Command::Observed {
            storage_index: notice.storage_index,
            seqnum: notice.seqnum,
            asked: false,
        });
    }
}

async fn forward_heartbeats(shared: Arc<Shared>, mut subscriber: async_nats::Subscriber) {
    while let Some(message) = subscriber.next().await {
        shared.stats.broker_messages.fetch_add(1, Ordering::Relaxed);
        match serde_json::from_slice::<Heartbeat>(&message.payload) {
            Ok(heartbeat) => {
                let _ = shared.commands.send(Command::Watcher(heartbeat.node));
            }
            Err(_) => {
                shared.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl InterestListener for EdgeSource {
    fn gained(&self, storage_index: StorageIndex) {
        let mut slots = self.shared.slots();
        let entry = slots.entry(storage_index).or_insert_with(Entry::new);
        entry.live = true;
        drop(slots);
        let _ = self.shared.commands.send(Command::Gained(storage_index));
    }

    fn lost(&self, storage_index: StorageIndex) {
        self.shared.slots().remove(&storage_index);
        let _ = self.shared.commands.send(Command::Lost(storage_index));
    }
}

impl SlotDirectory for EdgeSource {
    /// A held SI is answered from what the broker keeps current; another is asked of the
    /// watchers (waiting up to the gather window, on a runtime worker set aside for it).
    fn state(&self, storage_index: &StorageIndex) -> SlotState {
        if let Some(entry) = self.shared.slots().get(storage_index) {
            if entry.live {
                return entry.state();
            }
        }
        let replies = match tokio::runtime::Handle::try_current() {
            // Degraded: no one to ask. What a recent answer said, or absent, at once, rather
            // than a gather window per SI of a long subscribe.
            _ if !self.shared.link.is_connected() => Vec::new(),
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                let shared = Arc::clone(&self.shared);
                let si = *storage_index;
                tokio::task::block_in_place(move || {
                    handle.block_on(async move { shared.query(&[si]).await })
                })
            }
            _ => {
                tracing::warn!("the edge needs a multi-threaded runtime to ask the watchers");
                Vec::new()
            }
        };
        let mut slots = self.shared.slots();
        let entry = slots.entry(*storage_index).or_insert_with(Entry::new);
        for reply in replies {
            if reply.immutable.contains(storage_index) {
                entry.immutable = true;
            }
            if let Some(&seqnum) = reply.mutable.get(storage_index) {
                if entry.live {
                    // Held meanwhile: the deciding task announces a rise, in order.
                    let _ = self.shared.commands.send(Command::Observed {
                        storage_index: *storage_index,
                        seqnum,
                        asked: true,
                    });
                } else if entry.seqnum.is_none_or(|known| seqnum > known) {
                    entry.seqnum = Some(seqnum);
                }
            }
        }
        let state = entry.state();
        if matches!(state, SlotState::Absent) && !entry.live {
            slots.remove(storage_index);
        }
        state
    }
}

impl MetricsSource for EdgeSource {
    fn write_metrics(&self, out: &mut String) {
        self.shared.link.write_metrics(out);
        let stats = &self.shared.stats;
        stats
            .watchers
            .store(self.shared.live_watchers() as u64, Ordering::Relaxed);
        let rows = [
            (
                "edge_broker_messages",
                "counter",
                "Messages received from the broker.",
                &stats.broker_messages,
            ),
            (
                "edge_updates_announced",
                "counter",
                "Seqnum rises announced to local subscribers.",
                &stats.announced,
            ),
            (
                "edge_stale_changes",
                "counter",
                "Change messages at or below the seqnum already known (not announced again).",
                &stats.stale,
            ),
            (
                "edge_caught_up",
                "counter",
                "Rises found by asking the watchers, missed on the broker.",
                &stats.caught_up,
            ),
            (
                "edge_resyncs",
                "counter",
                "Times every held SI was asked about again (reconnect, watcher appearing).",
                &stats.resyncs,
            ),
            (
                "edge_queries",
                "counter",
                "Seqnum queries sent to the watchers.",
                &stats.queries,
            ),
            (
                "edge_bad_messages",
                "counter",
                "Malformed broker messages dropped.",
                &stats.bad_messages,
            ),
            (
                "edge_subjects",
                "gauge",
                "Per-SI broker subjects subscribed.",
                &stats.subjects,
            ),
            (
                "edge_watchers",
                "gauge",
                "Watchers heard from recently.",
                &stats.watchers,
            ),
        ];
        for (name, kind, help, value) in rows {
            write_metric(out, name, kind, help, value.load(Ordering::Relaxed));
        }
    }
}
