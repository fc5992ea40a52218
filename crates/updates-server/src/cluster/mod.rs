//! A deployment that outgrows one process: watchers and edges joined by a NATS broker.
//!
//! - A **watcher** ([`watcher_role`]) runs beside each storage node: the share watcher's changes
//!   go onto the broker, one subject per SI, and it answers seqnum queries from its headers.
//! - An **edge** ([`edge`]) serves `/v1/mutable_updates` with its own identity. It subscribes
//!   only to the SIs its clients hold, keeps the highest seqnum over all nodes, and, whenever it
//!   may have missed something (start, broker reconnect, a watcher appearing), asks the watchers
//!   again instead of trusting anything the broker kept.
//! - [`subjects`]: the subjects and their JSON.
//! - [`BrokerLink`] (here): one broker connection, its state for the metrics page and the logs.
//!
//! See the repository's `docs/scaling.md` for the layout and the operator's side.

pub mod edge;
pub mod subjects;
pub mod watcher_role;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;

use crate::metrics::{write_metric, MetricsSource};

/// Why a role could not start.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The broker URL carries a user or password: secrets never go in argv.
    #[error(
        "the broker URL must not carry credentials (they would be visible in the process list)"
    )]
    CredentialsInUrl,
    /// The broker client refused the options or the address.
    #[error("cannot set up the broker connection: {0}")]
    Connect(String),
    /// A subscription could not be made.
    #[error("cannot subscribe on the broker: {0}")]
    Subscribe(String),
}

/// What the broker connection did, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// (Re)connected: subscriptions are back, but anything published meanwhile was not seen.
    Connected,
    /// Lost the broker: degraded until [`LinkEvent::Connected`].
    Disconnected,
}

/// Options of the broker connection.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Client name shown by the broker (`tahoe-updates-server edge`).
    pub name: String,
    /// How often the broker is pinged: a silent partition is noticed after two missed pongs.
    pub ping_interval: Duration,
    /// Longest wait between reconnect attempts.
    pub max_reconnect_delay: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            name: "tahoe-updates-server".to_owned(),
            ping_interval: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(2),
        }
    }
}

/// One broker connection that reconnects by itself forever.
#[derive(Debug)]
pub struct BrokerLink {
    client: async_nats::Client,
    connected: Arc<AtomicBool>,
    disconnects: Arc<AtomicU64>,
}

impl BrokerLink {
    /// Connects in the background (the role starts even while the broker is down) and returns
    /// the link with its events.
    pub async fn connect(
        url: &str,
        options: LinkOptions,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<LinkEvent>), ClusterError> {
        if url_has_credentials(url) {
            return Err(ClusterError::CredentialsInUrl);
        }
        let connected = Arc::new(AtomicBool::new(false));
        let disconnects = Arc::new(AtomicU64::new(0));
        let (events_tx, events) = mpsc::unbounded_channel();
        let callback = {
            let connected = Arc::clone(&connected);
            let disconnects = Arc::clone(&disconnects);
            move |event: async_nats::Event| {
                let connected = Arc::clone(&connected);
                let disconnects = Arc::clone(&disconnects);
                let events_tx = events_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            connected.store(true, Ordering::Release);
                            tracing::info!("broker connected");
                            let _ = events_tx.send(LinkEvent::Connected);
                        }
                        async_nats::Event::Disconnected => {
                            connected.store(false, Ordering::Release);
                            disconnects.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("broker unreachable: degraded until it returns");
                            let _ = events_tx.send(LinkEvent::Disconnected);
                        }
                        other => tracing::info!(event = %other, "broker event"),
                    }
                }
            }
        };
        let max_delay = options.max_reconnect_delay;
        let client = async_nats::ConnectOptions::new()
            .name(options.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .ping_interval(options.ping_interval)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(move |attempts| {
                let millis = 100u64.saturating_mul(attempts as u64);
                Duration::from_millis(millis).min(max_delay)
            })
            .event_callback(callback)
            .connect(url)
            .await
            .map_err(|e| ClusterError::Connect(e.to_string()))?;
        Ok((
            Arc::new(Self {
                client,
                connected,
                disconnects,
            }),
            events,
        ))
    }

    /// The broker client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Whether the broker is reachable now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

impl MetricsSource for BrokerLink {
    fn write_metrics(&self, out: &mut String) {
        let connected = self.is_connected();
        write_metric(
            out,
            "broker_connected",
            "gauge",
            "1 while the NATS broker is reachable, 0 while degraded.",
            u64::from(connected),
        );
        let _ = std::fmt::Write::write_fmt(
            out,
            format_args!(
                "# HELP tahoe_updates_broker_state The role's broker state (one line is 1).\n\
                 # TYPE tahoe_updates_broker_state gauge\n\
                 tahoe_updates_broker_state{{state=\"ok\"}} {}\n\
                 tahoe_updates_broker_state{{state=\"degraded\"}} {}\n",
                u64::from(connected),
                u64::from(!connected)
            ),
        );
        write_metric(
            out,
            "broker_disconnects",
            "counter",
            "Times the broker connection was lost.",
            self.disconnects.load(Ordering::Relaxed),
        );
    }
}

/// Whether `url` (one or several, comma-separated) names a user or password.
fn url_has_credentials(url: &str) -> bool {
    url.split(',').any(|one| {
        let rest = one.split_once("://").map_or(one, |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or(rest);
        authority.contains('@')
    })
}

#[cfg(test)]
mod tests {
    use super::url_has_credentials;

    #[test]
    fn credentials_in_the_url_are_noticed() {
        assert!(url_has_credentials("nats://user:pw@127.0.0.1:4222"));
        assert!(url_has_credentials("nats://a:4222,nats://t@b:4222"));
        assert!(!url_has_credentials("nats://127.0.0.1:4222"));
        assert!(!url_has_credentials("127.0.0.1:4222"));
    }
}
