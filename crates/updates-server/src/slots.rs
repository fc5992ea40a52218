//! What the endpoint needs to know about slots, whoever watches them.
//!
//! The share-directory watcher implements these for a Tahoe storage node; a storage server written
//! in Rust could implement them from its own write path and embed the endpoint directly.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotChange {
    /// Which slot.
    pub storage_index: StorageIndex,
    /// Its new sequence number.
    pub seqnum: u64,
}

/// Answers "what do you hold under this SI" for status replies.
pub trait SlotDirectory: Send + Sync + 'static {
    /// The slot's current state on this server.
    fn state(&self, storage_index: &StorageIndex) -> SlotState;
}
