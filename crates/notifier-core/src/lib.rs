//! The Tahoe Notifier client engine: turns the user's read-caps into notifications. No CLI
//! and no GUI code: the faces (`tahoe-notifier`, `tahoe-notifier-tray`, the window) are thin
//! crates over this one, and everything here is testable headless.
//!
//! Where to start:
//!
//! - [`host`]: **the engine host**, the one background process: engine, magic-folder bridge,
//!   follower of the files other faces write, notifications with their actions,
//!   Do-Not-Disturb, and the D-Bus service `org.tahoe_lafs.Notifier` ([`host::service`]) with
//!   its client ([`host::client`]). `tahoe-notifier watch` and the tray both run it.
//! - [`service`]: **the use cases** every face calls — add (cap or alias), remove, rename, mute,
//!   import or join a grid, pause, mark read — one behaviour per action.
//! - [`engine`]: subscriptions on every updates server ([`link`]), proofs and seqnums
//!   ([`seqnum`]), listings through the gateway ([`gateway`]), what changed ([`snapshot`],
//!   [`details`]), polling for caps no server holds, and fetches of popular slots spread over
//!   time ([`spread`]).
//! - [`notify`]: the notification policy (coalescing, quiet hours, pause, Do-Not-Disturb,
//!   mutes, per-kind settings) apart from the desktop sink (zbus).
//!
//! Stores and records:
//!
//! - [`paths`]: where files live (`directories`, or `TAHOE_NOTIFIER_HOME` for tests).
//! - [`schema`]: every record of the config file (caps, servers, grids, magic-folder links),
//!   owned by no store; [`config`]: the non-secret config file, written atomically under a
//!   lock, never silently reset; [`preferences`]: the user's settings beside it.
//! - [`keyring_store`]: secrets in the OS keyring (Secret Service, or keyutils on request);
//!   [`keyring_problem`]: why it cannot be used, in words.
//! - [`caps`]: watched caps — the cap in the keyring, the rest in the config.
//! - [`servers`]: updates servers (NURLs) and grids; [`grid_file`]: grid descriptions;
//!   [`invite`]: handing one over magic-wormhole; [`tahoe_node`]: the user's own Tahoe node.
//! - [`history`]: the SQLite history of changes and news, with read/unread state.
//! - [`news`], [`news_feed`]: operator news (Gridsync's newscap format plus front matter).
//! - [`magic_folder`]: the magic-folder bridge (push-triggered polls, participant notifications).
//! - [`status`]: the live state faces draw; [`text`]: cleaning server-supplied text.
//!
//! Caps, swissnums and keys never appear in logs, errors, `Debug` output or files other than the
//! keyring.

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
pub mod schema;
pub mod seqnum;
pub mod servers;
pub mod service;
pub mod snapshot;
pub mod spread;
pub mod status;
pub mod tahoe_node;
pub mod text;
