//! The two network peers of the engine: one [`link`] per updates server (pinned TLS,
//! WebSocket, subscriptions, reconnects) and the Tahoe [`gateway`] that listings are fetched
//! through (caps never leave it in errors or logs).

pub mod gateway;
pub mod link;
