//! The watcher role: beside one storage node, puts its share watcher's changes on the broker and
//! answers seqnum queries from the node's share headers (the source of truth).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::subjects::{
    change_subject, ChangeNotice, Heartbeat, Query, QueryReply, HEARTBEAT_SUBJECT,
    MAX_QUERY_INDEXES, QUERY_SUBJECT,
};
use super::{BrokerLink, ClusterError};
use crate::metrics::{write_metric, MetricsSource};
use crate::slots::{SlotChange, SlotDirectory, SlotState};

/// How often a watcher says it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a change waits to be handed to the broker client before it is dropped (an edge
/// learns it anyway when it next asks: after its own reconnect, or on this watcher's return).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Figures of the watcher role.
#[derive(Debug, Default)]
pub struct WatcherRoleStats {
    /// Changes published.
    pub published: AtomicU64,
    /// Changes that could not be handed to the broker.
    pub publish_failures: AtomicU64,
    /// Queries answered.
    pub queries: AtomicU64,
    /// Queries dropped as malformed.
    pub bad_queries: AtomicU64,
}

/// A running watcher role.
#[derive(Debug)]
pub struct WatcherRole {
    link: Arc<BrokerLink>,
    stats: Arc<WatcherRoleStats>,
}

impl WatcherRole {
    /// Answers queries from `slots` and publishes every change from `changes` as `node`.
    /// Runs until the broker client is dropped; spawn it.
    pub async fn start(
        link: Arc<BrokerLink>,
        node: String,
        slots: Arc<dyn SlotDirectory>,
        changes: mpsc::Receiver<SlotChange>,
    ) -> Result<Self, ClusterError> {
        let stats = Arc::new(WatcherRoleStats::default());
        let queries = link
            .client()
            .subscribe(QUERY_SUBJECT)
            .await
            .map_err(|e| ClusterError::Subscribe(e.to_string()))?;
        tokio::spawn(answer_queries(
            link.client().clone(),
            node.clone(),
            Arc::clone(&slots),
            queries,
            Arc::clone(&stats),
        ));
        tokio::spawn(heartbeats(link.client().clone(), node.clone()));
        tokio::spawn(publish_changes(
            link.client().clone(),
            node,
            changes,
            Arc::clone(&stats),
        ));
        Ok(Self { link, stats })
    }
}

async fn answer_queries(
    client: async_nats::Client,
    node: String,
    slots: Arc<dyn SlotDirectory>,
    mut queries: async_nats::Subscriber,
    stats: Arc<WatcherRoleStats>,
) {
    while let Some(message) = queries.next().await {
        let Some(reply_to) = message.reply else {
            continue;
        };
        let query: Query = match serde_json::from_slice(&message.payload) {
            Ok(query) => query,
            Err(error) => {
                stats.bad_queries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "malformed query dropped");
                continue;
            }
        };
        let mut reply = QueryReply {
            node: node.clone(),
            ..QueryReply::default()
        };
        for si in query.storage_indexes.iter().take(MAX_QUERY_INDEXES) {
            match slots.state(si) {
                SlotState::Mutable { seqnum } => {
                    reply.mutable.insert(*si, seqnum);
                }
                SlotState::Immutable => reply.immutable.push(*si),
                SlotState::Absent => {}
            }
        }
        let payload = match serde_json::to_vec(&reply) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(%error, "cannot encode a query reply");
                continue;
            }
        };
        stats.queries.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = client.publish(reply_to, payload.into()).await {
            tracing::debug!(%error, "cannot send a query reply");
        }
    }
    tracing::warn!("the query subscription ended");
}

async fn heartbeats(client: async_nats::Client, node: String) {
    let payload: bytes::Bytes = match serde_json::to_vec(&Heartbeat { node }) {
        Ok(payload) => payload.into(),
        Err(_) => return,
    };
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Dropped while the broker is away: a heartbeat is worth nothing late.
        let _ = tokio::time::timeout(
            HEARTBEAT_INTERVAL,
            client.publish(HEARTBEAT_SUBJECT, payload.clone()),
        )
        .await;
    }
}

async fn publish_changes(
    client: async_nats::Client,
    node: String,
    mut changes: mpsc::Receiver<SlotChange>,
    stats: Arc<WatcherRoleStats>,
) {
    while let Some(change) = changes.recv().await {
        let notice = ChangeNotice {
            node: node.clone(),
            storage_index: change.storage_index,
            seqnum: change.seqnum,
        };
        let Ok(payload) = serde_json::to_vec(&notice) else {
            continue;
        };
        let subject = change_subject(&change.storage_index);
        let sent =
            tokio::time::timeout(PUBLISH_TIMEOUT, client.publish(subject, payload.into())).await;
        match sent {
            Ok(Ok(())) => {
                stats.published.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(storage_index = %change.storage_index, seqnum = change.seqnum, "published");
            }
            _ => {
                stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    storage_index = %change.storage_index,
                    seqnum = change.seqnum,
                    "cannot hand a change to the broker; edges learn it when they next ask"
                );
            }
        }
    }
}

impl MetricsSource for WatcherRole {
    fn write_metrics(&self, out: &mut String) {
        self.link.write_metrics(out);
        let rows = [
            (
                "cluster_changes_published",
                "counter",
                "Slot changes published to the broker.",
                &self.stats.published,
            ),
            (
                "cluster_publish_failures",
                "counter",
                "Slot changes the broker client could not take.",
                &self.stats.publish_failures,
            ),
            (
                "cluster_queries_answered",
                "counter",
                "Seqnum queries answered.",
                &self.stats.queries,
            ),
            (
                "cluster_bad_queries",
                "counter",
                "Malformed seqnum queries dropped.",
                &self.stats.bad_queries,
            ),
        ];
        for (name, kind, help, value) in rows {
            write_metric(out, name, kind, help, value.load(Ordering::Relaxed));
        }
    }
}
