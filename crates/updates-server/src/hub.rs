//! Fan-out: which connection holds which storage index, and delivery of one change to them.
//!
//! The index is keyed by storage index, so a change costs O(subscribers of that SI), not
//! O(connections). Delivery never waits: each connection has a bounded queue, and a connection
//! whose queue is full is told to close (the spec's slow-reader rule) instead of letting memory
//! grow. No lock here is ever held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use mutable_updates::message::{ServerMessage, Update};
use mutable_updates::proof::SlotProof;
use tahoe_caps::StorageIndex;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;
use crate::slots::SlotChange;

/// Identifies one WebSocket connection inside the hub.
pub type ConnectionId = u64;

/// One change on its way to one connection.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The slot that changed and its new seqnum (and proof, if the watcher read one).
    pub change: SlotChange,
    /// Whether this connection asked for proofs of this slot: then `frame` carries the proof
    /// (when there is one), and a batch should too.
    pub with_proof: bool,
    /// The `update` message already rendered, shared by every receiver of this change that
    /// asked the same (with or without proofs).
    pub frame: Utf8Bytes,
    /// When the hub received the change.
    pub published: std::time::Instant,
    /// The popularity hint sent with this change ([`subscriber_hint`]).
    pub subscribers: Option<u64>,
}

/// Fewest connections holding a slot for its updates and statuses to say how many there are:
/// below it, every subscriber may fetch the new version at once, and messages stay exactly
/// the plain v1 ones.
pub const POPULAR_SLOT: usize = 64;

/// The `subscribers` hint of a slot held by `connections` connections: `None` below
/// [`POPULAR_SLOT`], else the count rounded down to a power of two, so that a client learns
/// how many watch a slot only roughly (and the hint changes rarely).
pub fn subscriber_hint(connections: usize) -> Option<u64> {
    if connections < POPULAR_SLOT {
        return None;
    }
    let connections = u64::try_from(connections).unwrap_or(u64::MAX);
    Some(1 << connections.ilog2())
}

/// Raised when a connection must close because its queue overflowed.
#[derive(Debug, Default)]
pub struct OverflowSignal {
    raised: AtomicBool,
    notify: Notify,
}

impl OverflowSignal {
    fn raise(&self) {
        if !self.raised.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Whether the queue has overflowed.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Resolves once the queue has overflowed.
    pub async fn raised(&self) {
        while !self.is_raised() {
            self.notify.notified().await;
        }
    }
}

#[derive(Debug, Clone)]
struct Subscriber {
    queue: mpsc::Sender<Delivery>,
    overflow: Arc<OverflowSignal>,
    /// This subscription asked for proofs (`options.proofs`).
    proofs: bool,
}

/// Told when a storage index gains its first subscriber or loses its last one, e.g. so that a
/// slot source fed by a broker subscribes only to what someone here holds (`cluster::edge`).
///
/// Called with the hub's index locked, so that the calls for one SI come in the order of the
/// changes they report: an implementation must return at once, never lock the hub or wait.
pub trait InterestListener: Send + Sync + 'static {
    /// `storage_index` has its first subscriber.
    fn gained(&self, storage_index: StorageIndex);
    /// `storage_index` lost its last subscriber.
    fn lost(&self, storage_index: StorageIndex);
}

/// The SI → subscribers index shared by all connections.
pub struct Hub {
    by_storage_index: RwLock<HashMap<StorageIndex, HashMap<ConnectionId, Subscriber>>>,
    next_connection: AtomicU64,
    metrics: Arc<Metrics>,
    interest: std::sync::OnceLock<Arc<dyn InterestListener>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("watched_storage_indexes", &self.watched_storage_indexes())
            .field("interest_listener", &self.interest.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            by_storage_index: RwLock::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            metrics,
            interest: std::sync::OnceLock::new(),
        }
    }

    /// Sets the one listener told of first and last subscribers; `false` if one is set already.
    /// Set it before serving: SIs subscribed earlier are not reported.
    pub fn set_interest_listener(&self, listener: Arc<dyn InterestListener>) -> bool {
        self.interest.set(listener).is_ok()
    }

    /// Registers a connection with an outgoing queue of `queue_capacity` deliveries.
    pub fn register(self: &Arc<Self>, queue_capacity: usize) -> Registration {
        let (queue, receiver) = mpsc::channel(queue_capacity.max(1));
        Registration {
            id: self.next_connection.fetch_add(1, Ordering::Relaxed),
            hub: Arc::clone(self),
            subscriber: Subscriber {
                queue,
                overflow: Arc::new(OverflowSignal::default()),
                proofs: false,
            },
            receiver,
            subscribed: HashMap::new(),
        }
    }

    /// Delivers one change to every connection subscribed to its SI; returns how many got it.
    pub fn publish(&self, change: SlotChange) -> usize {
        let subscribers = self.read();
        let Some(connections) = subscribers.get(&change.storage_index) else {
            return 0;
        };
        let hint = subscriber_hint(connections.len());
        let render = |proof: Option<SlotProof>| {
            Utf8Bytes::from(
                ServerMessage::Update(Update {
                    storage_index: change.storage_index,
                    seqnum: Some(change.seqnum),
                    proof,
                    subscribers: hint,
                })
                .to_json(),
            )
        };
        // Each form rendered once, and only if someone wants it. Updates never carry the key:
        // a client keeps it from its status (docs/mutable-updates-v1.md, "proofs").
        let mut plain: Option<Utf8Bytes> = None;
        let mut proved: Option<Utf8Bytes> = None;
        let mut delivered = 0;
        let published = std::time::Instant::now();
        for subscriber in connections.values() {
            let frame = match (&change.proof, subscriber.proofs) {
                (Some(proof), true) => proved
                    .get_or_insert_with(|| render(Some((**proof).clone().without_key())))
                    .clone(),
                _ => plain.get_or_insert_with(|| render(None)).clone(),
            };
            let delivery = Delivery {
                change: change.clone(),
                with_proof: subscriber.proofs,
                frame,
                published,
                subscribers: hint,
            };
            match subscriber.queue.try_send(delivery) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !subscriber.overflow.is_raised() {
                        self.metrics.queue_overflows.fetch_add(1, Ordering::Relaxed);
                    }
                    subscriber.overflow.raise();
                }
                // The connection is closing; its registration removes it shortly.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        delivered
    }

    /// The `subscribers` hint of each of `storage_indexes` ([`subscriber_hint`]), under one lock.
    pub fn subscriber_hints(&self, storage_indexes: &[StorageIndex]) -> Vec<Option<u64>> {
        let subscribers = self.read();
        storage_indexes
            .iter()
            .map(|si| subscribers.get(si).and_then(|c| subscriber_hint(c.len())))
            .collect()
    }

    /// Number of distinct storage indexes with at least one subscriber.
    pub fn watched_storage_indexes(&self) -> usize {
        self.read().len()
    }

    fn read(
        &self,
    ) -> RwLockReadGuard<'_, HashMap<StorageIndex, HashMap<ConnectionId, Subscriber>>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is a
        // single insert or remove), so a poisoned lock is still safe to use.
        self.by_storage_index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(
        &self,
    ) -> RwLockWriteGuard<'_, HashMap<StorageIndex, HashMap<ConnectionId, Subscriber>>> {
        self.by_storage_index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection's place in the hub: its queue, its subscriptions, and its overflow signal.
/// Dropping it removes every subscription of the connection.
#[derive(Debug)]
pub struct Registration {
    id: ConnectionId,
    hub: Arc<Hub>,
    subscriber: Subscriber,
    receiver: mpsc::Receiver<Delivery>,
    /// Held storage indexes, each with whether it asked for proofs.
    subscribed: HashMap<StorageIndex, bool>,
}

impl Registration {
    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Number of storage indexes this connection holds.
    pub fn subscription_count(&self) -> usize {
        self.subscribed.len()
    }

    /// Whether this connection already holds `storage_index`.
    pub fn is_subscribed(&self, storage_index: &StorageIndex) -> bool {
        self.subscribed.contains_key(storage_index)
    }

    /// Adds subscriptions without proofs (idempotent) under one lock acquisition.
    pub fn subscribe_all(&mut self, storage_indexes: &[StorageIndex]) {
        self.subscribe_all_with(storage_indexes, false);
    }

    /// Adds subscriptions (idempotent) under one lock acquisition; `proofs`: their updates carry
    /// proofs. Subscribing again to a held SI sets its `proofs` to the latest subscribe's.
    pub fn subscribe_all_with(&mut self, storage_indexes: &[StorageIndex], proofs: bool) {
        let mut fresh = 0u64;
        let changed: Vec<StorageIndex> = storage_indexes
            .iter()
            .copied()
            .filter(|si| match self.subscribed.insert(*si, proofs) {
                None => {
                    fresh += 1;
                    true
                }
                Some(before) => before != proofs,
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        let subscriber = Subscriber {
            proofs,
            ..self.subscriber.clone()
        };
        let mut index = self.hub.write();
        let interest = self.hub.interest.get();
        for si in &changed {
            let connections = index.entry(*si).or_default();
            if connections.is_empty() {
                if let Some(listener) = interest {
                    listener.gained(*si);
                }
            }
            connections.insert(self.id, subscriber.clone());
        }
        drop(index);
        self.hub
            .metrics
            .subscriptions
            .fetch_add(fresh, Ordering::Relaxed);
    }

    /// Removes subscriptions; SIs it does not hold are ignored.
    pub fn unsubscribe_all(&mut self, storage_indexes: &[StorageIndex]) {
        let held: Vec<StorageIndex> = storage_indexes
            .iter()
            .copied()
            .filter(|si| self.subscribed.remove(si).is_some())
            .collect();
        self.remove_from_index(&held);
    }

    /// The next change for this connection, or `None` once the hub is gone.
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        self.receiver.recv().await
    }

    /// A change already queued, without waiting.
    pub fn try_next_delivery(&mut self) -> Option<Delivery> {
        self.receiver.try_recv().ok()
    }

    /// Resolves once this connection's queue has overflowed.
    pub fn overflow(&self) -> Arc<OverflowSignal> {
        Arc::clone(&self.subscriber.overflow)
    }

    fn remove_from_index(&self, storage_indexes: &[StorageIndex]) {
        if storage_indexes.is_empty() {
            return;
        }
        let mut index = self.hub.write();
        let interest = self.hub.interest.get();
        for si in storage_indexes {
            if let Some(connections) = index.get_mut(si) {
                connections.remove(&self.id);
                if connections.is_empty() {
                    index.remove(si);
                    if let Some(listener) = interest {
                        listener.lost(*si);
                    }
                }
            }
        }
        drop(index);
        self.hub
            .metrics
            .subscriptions
            .fetch_sub(storage_indexes.len() as u64, Ordering::Relaxed);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let held: Vec<StorageIndex> = self.subscribed.drain().map(|(si, _)| si).collect();
        self.remove_from_index(&held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn si(n: u8) -> StorageIndex {
        StorageIndex::from_bytes([n; 16])
    }

    fn hub() -> Arc<Hub> {
        Arc::new(Hub::new(Arc::new(Metrics::default())))
    }

    #[test]
    fn the_subscriber_hint_is_absent_below_a_popular_slot_and_a_power_of_two_above() {
        assert_eq!(subscriber_hint(0), None);
        assert_eq!(subscriber_hint(POPULAR_SLOT - 1), None);
        assert_eq!(subscriber_hint(POPULAR_SLOT), Some(64));
        assert_eq!(subscriber_hint(1000), Some(512));
        assert_eq!(subscriber_hint(1024), Some(1024));
        assert_eq!(subscriber_hint(10_000), Some(8192));
    }

    #[tokio::test]
    async fn updates_of_a_popular_slot_say_about_how_many_hold_it() {
        let hub = hub();
        let mut quiet = hub.register(8);
        quiet.subscribe_all(&[si(1)]);
        let mut crowd: Vec<Registration> = (0..100).map(|_| hub.register(8)).collect();
        for registration in &mut crowd {
            registration.subscribe_all(&[si(2)]);
        }
        assert_eq!(hub.publish(SlotChange::new(si(1), 2)), 1);
        let lone = quiet.next_delivery().await.unwrap();
        assert_eq!(lone.subscribers, None);
        assert!(!lone.frame.as_str().contains("subscribers"));
        assert_eq!(hub.publish(SlotChange::new(si(2), 7)), 100);
        let popular = crowd[99].next_delivery().await.unwrap();
        assert_eq!(popular.subscribers, Some(64));
        assert!(popular.frame.as_str().ends_with(",\"subscribers\":64}"));
        assert_eq!(
            hub.subscriber_hints(&[si(1), si(2), si(3)]),
            vec![None, Some(64), None]
        );
    }

    #[tokio::test]
    async fn delivers_only_to_subscribers_of_that_index() {
        let hub = hub();
        let mut a = hub.register(8);
        let mut b = hub.register(8);
        a.subscribe_all(&[si(1), si(2)]);
        b.subscribe_all(&[si(2)]);
        let delivered = hub.publish(SlotChange::new(si(1), 5));
        assert_eq!(delivered, 1);
        let got = a.next_delivery().await.unwrap();
        assert_eq!(got.change.seqnum, 5);
        assert!(got.frame.as_str().contains("\"seqnum\":5"));
        assert!(b.try_next_delivery().is_none());
    }

    #[test]
    fn subscribing_twice_does_not_double_updates() {
        let hub = hub();
        let mut a = hub.register(8);
        a.subscribe_all(&[si(1)]);
        a.subscribe_all(&[si(1), si(1)]);
        assert_eq!(a.subscription_count(), 1);
        assert_eq!(hub.publish(SlotChange::new(si(1), 2)), 1);
        assert_eq!(hub.metrics.subscriptions.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn dropping_a_registration_removes_its_subscriptions() {
        let hub = hub();
        let mut a = hub.register(8);
        a.subscribe_all(&[si(1), si(2)]);
        assert_eq!(hub.watched_storage_indexes(), 2);
        drop(a);
        assert_eq!(hub.watched_storage_indexes(), 0);
        assert_eq!(hub.metrics.subscriptions.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_queue_raises_overflow_once() {
        let hub = hub();
        let mut a = hub.register(2);
        a.subscribe_all(&[si(1)]);
        for seqnum in 1..=5 {
            hub.publish(SlotChange::new(si(1), seqnum));
        }
        assert!(a.overflow().is_raised());
        assert_eq!(hub.metrics.queue_overflows.load(Ordering::Relaxed), 1);
    }

    #[derive(Default)]
    struct Interest(std::sync::Mutex<Vec<(bool, StorageIndex)>>);

    impl InterestListener for Interest {
        fn gained(&self, storage_index: StorageIndex) {
            self.0.lock().unwrap().push((true, storage_index));
        }
        fn lost(&self, storage_index: StorageIndex) {
            self.0.lock().unwrap().push((false, storage_index));
        }
    }

    #[test]
    fn the_interest_listener_hears_only_first_and_last_subscribers() {
        let hub = hub();
        let interest = Arc::new(Interest::default());
        assert!(hub.set_interest_listener(Arc::clone(&interest) as Arc<dyn InterestListener>));
        let mut a = hub.register(8);
        let mut b = hub.register(8);
        a.subscribe_all(&[si(1)]);
        b.subscribe_all(&[si(1), si(2)]);
        a.subscribe_all_with(&[si(1)], true);
        a.unsubscribe_all(&[si(1)]);
        drop(b);
        let mut heard = interest.0.lock().unwrap().clone();
        // A dropped registration leaves its SIs in no particular order.
        heard[2..].sort();
        assert_eq!(
            heard,
            vec![(true, si(1)), (true, si(2)), (false, si(1)), (false, si(2))]
        );
    }

    #[test]
    fn unsubscribe_stops_delivery() {
        let hub = hub();
        let mut a = hub.register(8);
        a.subscribe_all(&[si(1)]);
        a.unsubscribe_all(&[si(1), si(9)]);
        assert_eq!(hub.publish(SlotChange::new(si(1), 3)), 0);
    }
}
