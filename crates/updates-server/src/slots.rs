//! What the endpoint needs to know about slots, whoever watches them.
//!
//! The share-directory watcher implements these for a Tahoe storage node; a storage server written
//! in Rust could implement them from its own write path and embed the endpoint directly.

use std::sync::Arc;

use mutable_updates::proof::SlotProof;
use tahoe_caps::StorageIndex;

/// What this server holds under one storage index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// At least one mutable share; `seqnum` is the highest sequence number among them.
    Mutable {
        /// Current sequence number.
        seqnum: u64,
    },
    /// Shares of an immutable file: they never change.
    Immutable,
    /// No share at all.
    Absent,
}

/// A mutable slot reached a new sequence number on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotChange {
    /// Which slot.
    pub storage_index: StorageIndex,
    /// Its new sequence number.
    pub seqnum: u64,
    /// The proof of that version (signed prefix with this seqnum, signature, key), when the
    /// share it came from holds a readable one. Sent to subscribers that asked for proofs.
    pub proof: Option<Arc<SlotProof>>,
}

impl SlotChange {
    /// A change without a proof (what a source that cannot read shares reports).
    pub fn new(storage_index: StorageIndex, seqnum: u64) -> Self {
        Self {
            storage_index,
            seqnum,
            proof: None,
        }
    }
}

/// Answers "what do you hold under this SI" for status replies.
pub trait SlotDirectory: Send + Sync + 'static {
    /// The slot's current state on this server.
    fn state(&self, storage_index: &StorageIndex) -> SlotState;

    /// The slot's state and, for a mutable slot, the proof of its current version if this
    /// server can read one. The proof's seqnum is the state's: both come from one lookup. The
    /// default knows no proofs.
    fn state_with_proof(
        &self,
        storage_index: &StorageIndex,
    ) -> (SlotState, Option<Arc<SlotProof>>) {
        (self.state(storage_index), None)
    }
}
