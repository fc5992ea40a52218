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
//! - [`engine`]: subscriptions on every updates server, proofs and seqnums
//!   ([`engine::seqnum`]), what changed, polling for caps no server holds, and fetches of
//!   popular slots spread over time ([`engine::spread`]).
//! - [`notify`]: the notification policy (coalescing, quiet hours, pause, Do-Not-Disturb,
//!   mutes, per-kind settings) apart from the desktop sink (zbus).
//!
//! The modules, by concern (each folder's own guide says more):
//!
//! - [`schema`]: every record of the config file (caps, servers, grids, magic-folder links),
//!   owned by no store.
//! - [`store`]: what is kept between runs — the config file, preferences, the keyring, watched
//!   caps, updates servers and grids, and where the files live.
//! - [`history`]: the SQLite history of changes and news, with read/unread state.
//! - [`net`]: the engine's peers — a link per updates server and the Tahoe gateway.
//! - [`describe`]: what changed, in words, from two listings; cleaning server-supplied text.
//! - [`grid`]: joining a grid — grid descriptions, invites over magic-wormhole, the user's own
//!   Tahoe node and its aliases.
//! - [`news`]: operator news (Gridsync's newscap format plus front matter) and its feed.
//! - [`magic_folder`]: the magic-folder bridge (push-triggered polls, participant notifications).
//! - [`status`]: the live state faces draw; [`ids`]: short ids of records; [`logging`]: the
//!   log filter that keeps secrets out.
//!
//! Caps, swissnums and keys never appear in logs, errors, `Debug` output or files other than the
//! keyring.

pub mod describe;
pub mod engine;
pub mod grid;
pub mod history;
pub mod host;
pub mod ids;
pub mod logging;
pub mod magic_folder;
pub mod net;
pub mod news;
pub mod notify;
pub mod schema;
pub mod service;
pub mod status;
pub mod store;
