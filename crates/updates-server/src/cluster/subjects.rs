//! The broker's subjects and the JSON carried on them, shared by the watcher and edge roles.
//!
//! - `tahoe.mutable.<si-base32>`: a [`ChangeNotice`], published by a watcher when a slot's
//!   seqnum rises on its node. Edges subscribe per SI, only to what their clients hold.
//! - `tahoe.mutable-query`: a [`Query`] (request/reply). Every watcher answers with a
//!   [`QueryReply`] of what its share headers say now; the asker gathers replies for a short
//!   window. No queue group: each node holds its own shares.
//! - `tahoe.mutable-watchers`: a [`Heartbeat`] from each watcher every second, so that an edge
//!   knows how many replies to wait for and notices a watcher that (re)appears.
//!
//! Every payload is parsed as untrusted input: a malformed one is dropped and counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tahoe_caps::StorageIndex;

/// Prefix of the per-SI change subjects.
pub const CHANGE_PREFIX: &str = "tahoe.mutable.";
/// Subject of seqnum queries.
pub const QUERY_SUBJECT: &str = "tahoe.mutable-query";
/// Subject of watcher heartbeats.
pub const HEARTBEAT_SUBJECT: &str = "tahoe.mutable-watchers";
/// Most storage indexes in one query (each reply stays far below the broker's 1 MiB payload).
pub const MAX_QUERY_INDEXES: usize = 500;

/// The subject carrying changes of one slot.
pub fn change_subject(storage_index: &StorageIndex) -> String {
    format!("{CHANGE_PREFIX}{}", storage_index.to_base32())
}

/// One slot's seqnum rose on one storage node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNotice {
    /// The node's identity (its certificate's SPKI hash, or its `--node-id`).
    pub node: String,
    /// Which slot.
    pub storage_index: StorageIndex,
    /// Its new seqnum on that node.
    pub seqnum: u64,
}

/// "What are the seqnums of these slots on your node?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The slots asked about (at most [`MAX_QUERY_INDEXES`] are answered).
    pub storage_indexes: Vec<StorageIndex>,
}

/// One watcher's answer: what its share headers say now. Absent slots are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryReply {
    /// The answering node.
    pub node: String,
    /// Mutable slots held, each with its highest seqnum on this node.
    #[serde(default)]
    pub mutable: BTreeMap<StorageIndex, u64>,
    /// Storage indexes holding immutable shares.
    #[serde(default)]
    pub immutable: Vec<StorageIndex>,
}

/// "This watcher is alive."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The watcher's node.
    pub node: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_token_per_si_and_replies_round_trip() {
        let si = StorageIndex::from_bytes([7; 16]);
        let subject = change_subject(&si);
        assert!(subject.starts_with(CHANGE_PREFIX));
        assert!(!subject[CHANGE_PREFIX.len()..].contains('.'));
        let reply = QueryReply {
            node: "n".to_owned(),
            mutable: BTreeMap::from([(si, 4)]),
            immutable: vec![],
        };
        let text = serde_json::to_string(&reply).unwrap_or_default();
        let back: QueryReply = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, reply);
        assert!(serde_json::from_str::<ChangeNotice>("{\"node\":1}").is_err());
    }
}
