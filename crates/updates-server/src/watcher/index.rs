//! The part of the watcher that other threads read: slot states and counters.
//!
//! Only the watcher thread writes here, once per slot whose state actually changed; lookups take a
//! read lock on a hash map and never touch the disk, so the endpoint can answer status requests
//! without waiting on I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use mutable_updates::proof::SlotProof;
use tahoe_caps::StorageIndex;

use super::WatcherStats;
use crate::slots::SlotState;

/// A slot's state with the proof of its current version.
type Entry = (SlotState, Option<Arc<SlotProof>>);

/// Slot states as last seen on disk, plus the watcher's counters.
#[derive(Debug, Default)]
pub(super) struct SharedIndex {
    /// Only `Mutable` and `Immutable` are stored; a missing key means `Absent`.
    /// Each with the proof of its current version, when one could be read and checked.
    slots: RwLock<HashMap<StorageIndex, Entry>>,
    pub(super) mutable_slots: AtomicU64,
    pub(super) immutable_slots: AtomicU64,
    pub(super) events_processed: AtomicU64,
    pub(super) changes_emitted: AtomicU64,
    pub(super) rescans: AtomicU64,
    pub(super) skipped_reads: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) pending_retries: AtomicU64,
    pub(super) torn_proofs: AtomicU64,
    pub(super) watches: AtomicU64,
    pub(super) unwatched_dirs: AtomicU64,
    pub(super) watch_limit_hit: AtomicBool,
    pub(super) last_lag_us: AtomicU64,
    pub(super) max_lag_us: AtomicU64,
}

impl SharedIndex {
    /// The state of one slot.
    pub(super) fn state(&self, storage_index: &StorageIndex) -> SlotState {
        // A poisoned lock only means a writer panicked mid-insert; the map itself is still whole.
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots
            .get(storage_index)
            .map_or(SlotState::Absent, |(state, _)| *state)
    }

    /// The state of one slot with the proof of its current version.
    pub(super) fn state_with_proof(
        &self,
        storage_index: &StorageIndex,
    ) -> (SlotState, Option<Arc<SlotProof>>) {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots
            .get(storage_index)
            .cloned()
            .unwrap_or((SlotState::Absent, None))
    }

    /// Records a slot's new state and keeps the per-kind counts in step.
    pub(super) fn set(&self, storage_index: StorageIndex, state: SlotState) {
        self.set_with_proof(storage_index, state, None);
    }

    /// Records a slot's new state with the proof of its version (for a mutable slot).
    pub(super) fn set_with_proof(
        &self,
        storage_index: StorageIndex,
        state: SlotState,
        proof: Option<Arc<SlotProof>>,
    ) {
        let old = {
            let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
            match state {
                SlotState::Absent => slots.remove(&storage_index),
                _ => slots.insert(storage_index, (state, proof)),
            }
        };
        let old = old.map_or(SlotState::Absent, |(state, _)| state);
        self.count(old, false);
        self.count(state, true);
    }

    fn count(&self, state: SlotState, added: bool) {
        let counter = match state {
            SlotState::Mutable { .. } => &self.mutable_slots,
            SlotState::Immutable => &self.immutable_slots,
            SlotState::Absent => return,
        };
        if added {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Adds one to a counter.
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time from an event's arrival to its change being handed over.
    pub(super) fn record_lag(&self, micros: u64) {
        self.last_lag_us.store(micros, Ordering::Relaxed);
        self.max_lag_us.fetch_max(micros, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    pub(super) fn stats(&self) -> WatcherStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WatcherStats {
            mutable_slots: get(&self.mutable_slots),
            immutable_slots: get(&self.immutable_slots),
            events_processed: get(&self.events_processed),
            changes_emitted: get(&self.changes_emitted),
            rescans: get(&self.rescans),
            skipped_reads: get(&self.skipped_reads),
            retries: get(&self.retries),
            pending_retries: get(&self.pending_retries),
            torn_proofs: get(&self.torn_proofs),
            watches: get(&self.watches),
            unwatched_dirs: get(&self.unwatched_dirs),
            watch_limit_hit: self.watch_limit_hit.load(Ordering::Relaxed),
            last_lag_us: get(&self.last_lag_us),
            max_lag_us: get(&self.max_lag_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_counts() {
        let index = SharedIndex::default();
        let a = StorageIndex::from_bytes([1; 16]);
        let b = StorageIndex::from_bytes([2; 16]);
        index.set(a, SlotState::Mutable { seqnum: 1 });
        index.set(a, SlotState::Mutable { seqnum: 2 });
        index.set(b, SlotState::Immutable);
        assert_eq!(index.state(&a), SlotState::Mutable { seqnum: 2 });
        let stats = index.stats();
        assert_eq!((stats.mutable_slots, stats.immutable_slots), (1, 1));
        index.set(a, SlotState::Absent);
        index.set(a, SlotState::Absent);
        assert_eq!(index.state(&a), SlotState::Absent);
        assert_eq!(index.stats().mutable_slots, 0);
    }
}
