//! The updates server: tells WebSocket subscribers when a mutable slot on a Tahoe storage node changes.

pub(crate) mod connection;
pub mod endpoint;
pub mod frames;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod share;
pub mod slots;
pub mod watcher;
