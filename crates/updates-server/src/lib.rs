//! The updates server: tells WebSocket subscribers when a mutable slot on a Tahoe storage node changes.

pub mod slots;
