//! The Tahoe Notifier client engine: turns the user's read-caps into notifications.
//!
//! This crate holds the offline building blocks; the networking (subscribing to updates servers,
//! fetching listings through the gateway) builds on them:
//!
//! - [`paths`]: where files live (`directories`, or `TAHOE_NOTIFIER_HOME` for tests).
//! - [`config`]: the non-secret config file, written atomically, never silently reset.
//! - [`keyring_store`]: secrets in the OS keyring (Secret Service, or keyutils on request).
//! - [`caps`]: watched caps — the cap in the keyring, the rest in the config.
//! - [`servers`]: updates servers (NURLs) and grid-file import.
//! - [`seqnum`]: exactly-once change detection from seqnums.
//! - [`snapshot`]: directory snapshots (no caps, only their hashes), diffs and summary lines.
//! - [`news`]: operator news messages (Gridsync's newscap format plus optional front matter).
//! - [`history`]: the SQLite history of changes and news, with read/unread state.
//! - [`magic_folder`]: the magic-folder bridge (push-triggered polls, participant notifications).
//!
//! Caps, swissnums and keys never appear in logs, errors, `Debug` output or files other than the
//! keyring.

pub mod background;
pub mod caps;
pub mod config;
pub mod details;
pub mod engine;
pub mod gateway;
pub mod grid_file;
pub mod history;
pub mod host;
pub mod ids;
pub mod invite;
pub mod keyring_problem;
pub mod keyring_store;
pub mod link;
pub mod logging;
pub mod magic_folder;
pub mod news;
pub mod news_feed;
pub mod notify;
pub mod paths;
pub mod preferences;
pub mod seqnum;
pub mod servers;
pub mod service;
pub mod snapshot;
pub mod status;
pub mod tahoe_node;
pub mod text;
