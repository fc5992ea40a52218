//! Counters for operators, served in the Prometheus text format on a separate listener.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Live counters of the endpoint. Gauges go up and down; counters only up.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections (gauge).
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Subscriptions over all connections (gauge).
    pub subscriptions: AtomicU64,
    /// `update`/`updates` messages queued to clients.
    pub updates_sent: AtomicU64,
    /// Slot changes received from the watcher.
    pub slot_changes: AtomicU64,
    /// Connections closed because their outgoing queue overflowed.
    pub queue_overflows: AtomicU64,
    /// Upgrade requests refused for a missing or wrong secret.
    pub auth_failures: AtomicU64,
    /// Connections closed for exceeding the message rate.
    pub rate_limited: AtomicU64,
    /// Messages answered with an `error`.
    pub protocol_errors: AtomicU64,
    /// TLS or WebSocket handshakes that failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Time from a change reaching the hub to its update being written to a subscriber's socket.
    pub delivery_latency: LatencyHistogram,
    /// Connections refused at accept or after the upgrade (server full, per-address caps).
    pub connections_refused: AtomicU64,
    /// Sessions closed by a limit: unfinished fragment, no subscription, reply memory.
    pub limit_closes: AtomicU64,
}

/// Upper bounds of the delivery-latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    5_000_000,
];

/// A Prometheus-style cumulative histogram with fixed buckets, updated with atomics only.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn record(&self, latency: std::time::Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(index) = LATENCY_BUCKETS_US.iter().position(|bound| micros <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP tahoe_updates_{name} {help}");
        let _ = writeln!(out, "# TYPE tahoe_updates_{name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS_US.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let seconds = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "tahoe_updates_{name}_bucket{{le=\"{seconds}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "tahoe_updates_{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "tahoe_updates_{name}_sum {sum}");
        let _ = writeln!(out, "tahoe_updates_{name}_count {count}");
    }
}

/// Extra lines a metrics page includes, e.g. the share watcher's figures.
pub trait MetricsSource: Send + Sync + 'static {
    /// Appends Prometheus text-format lines.
    fn write_metrics(&self, out: &mut String);
}

impl Metrics {
    /// Renders every counter in the Prometheus text format.
    pub fn render(&self, extra: Option<&dyn MetricsSource>) -> String {
        let mut out = String::with_capacity(2048);
        let rows: [(&str, &str, &str, &AtomicU64); 12] = [
            (
                "connections_refused_total",
                "counter",
                "Connections refused: server at its connection limit, or an address over its share.",
                &self.connections_refused,
            ),
            (
                "limit_closes_total",
                "counter",
                "Sessions closed by a limit: unfinished fragmented message, no subscription, reply memory.",
                &self.limit_closes,
            ),
            (
                "connections",
                "gauge",
                "Open WebSocket connections.",
                &self.connections,
            ),
            (
                "connections_accepted_total",
                "counter",
                "WebSocket connections accepted.",
                &self.connections_accepted,
            ),
            (
                "subscriptions",
                "gauge",
                "Subscriptions held over all connections.",
                &self.subscriptions,
            ),
            (
                "updates_sent_total",
                "counter",
                "Update messages queued to subscribers.",
                &self.updates_sent,
            ),
            (
                "slot_changes_total",
                "counter",
                "Slot changes seen by the share watcher.",
                &self.slot_changes,
            ),
            (
                "queue_overflows_total",
                "counter",
                "Connections closed because they did not read their updates.",
                &self.queue_overflows,
            ),
            (
                "auth_failures_total",
                "counter",
                "Upgrade requests refused for a missing or wrong secret.",
                &self.auth_failures,
            ),
            (
                "rate_limited_total",
                "counter",
                "Connections closed for sending too many messages.",
                &self.rate_limited,
            ),
            (
                "protocol_errors_total",
                "counter",
                "Client messages answered with an error.",
                &self.protocol_errors,
            ),
            (
                "handshake_failures_total",
                "counter",
                "TLS or WebSocket handshakes that failed or timed out.",
                &self.handshake_failures,
            ),
        ];
        for (name, kind, help, value) in rows {
            write_metric(&mut out, name, kind, help, value.load(Ordering::Relaxed));
        }
        self.delivery_latency.write(
            &mut out,
            "delivery_latency_seconds",
            "Time from a slot change reaching the hub to its update written to a subscriber.",
        );
        if let Some(extra) = extra {
            extra.write_metrics(&mut out);
        }
        out
    }
}

impl MetricsSource for crate::watcher::ShareWatcher {
    fn write_metrics(&self, out: &mut String) {
        let stats = self.stats();
        let rows: [(&str, &str, &str, u64); 14] = [
            (
                "watcher_mutable_slots",
                "gauge",
                "Mutable slots indexed.",
                stats.mutable_slots,
            ),
            (
                "watcher_immutable_slots",
                "gauge",
                "Immutable share sets indexed.",
                stats.immutable_slots,
            ),
            (
                "watcher_events_total",
                "counter",
                "inotify events handled.",
                stats.events_processed,
            ),
            (
                "watcher_changes_total",
                "counter",
                "Slot changes emitted.",
                stats.changes_emitted,
            ),
            (
                "watcher_rescans_total",
                "counter",
                "Directory rescans.",
                stats.rescans,
            ),
            (
                "watcher_skipped_reads_total",
                "counter",
                "Share reads skipped (truncated, unreadable, unknown).",
                stats.skipped_reads,
            ),
            (
                "watcher_retries_total",
                "counter",
                "Folder or share reads that failed for a passing reason (EMFILE, EAGAIN, EIO) and were tried again.",
                stats.retries,
            ),
            (
                "watcher_pending_retries",
                "gauge",
                "Folders waiting to be read again after a passing failure.",
                stats.pending_retries,
            ),
            (
                "watcher_torn_proofs_total",
                "counter",
                "Share proofs not served because they did not verify under their own key.",
                stats.torn_proofs,
            ),
            (
                "watcher_watches",
                "gauge",
                "inotify watches held.",
                stats.watches,
            ),
            (
                "watcher_unwatched_dirs",
                "gauge",
                "Directories without a watch, rescanned periodically.",
                stats.unwatched_dirs,
            ),
            (
                "watcher_watch_limit_hit",
                "gauge",
                "1 once the inotify watch limit was reached.",
                u64::from(stats.watch_limit_hit),
            ),
            (
                "watcher_lag_microseconds",
                "gauge",
                "Event-to-change lag of the last change.",
                stats.last_lag_us,
            ),
            (
                "watcher_max_lag_microseconds",
                "gauge",
                "Largest event-to-change lag seen.",
                stats.max_lag_us,
            ),
        ];
        for (name, kind, help, value) in rows {
            write_metric(out, name, kind, help, value);
        }
    }
}

/// One metric with its help and type lines.
pub fn write_metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP tahoe_updates_{name} {help}");
    let _ = writeln!(out, "# TYPE tahoe_updates_{name} {kind}");
    let _ = writeln!(out, "tahoe_updates_{name} {value}");
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
///
/// A deliberately tiny HTTP/1.0 responder: the page is for a scraper on the same machine, and a
/// full HTTP stack would add more code to audit than it saves.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    extra: Option<Arc<dyn MetricsSource>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((mut stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let extra = extra.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut request)).await;
            let Ok(Ok(length)) = read else { return };
            let (status, body) = if request[..length].starts_with(b"GET /metrics") {
                ("200 OK", metrics.render(extra.as_deref()))
            } else {
                ("404 Not Found", "only /metrics is served here\n".to_owned())
            };
            let response = format!(
                "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(error) = stream.write_all(response.as_bytes()).await {
                tracing::debug!(%peer, %error, "metrics client went away");
            }
        });
    }
}

/// The address a metrics listener is allowed on without `--metrics-public`.
pub fn is_loopback(address: &SocketAddr) -> bool {
    address.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_in_prometheus_text() {
        let metrics = Metrics::default();
        metrics.connections.store(3, Ordering::Relaxed);
        let text = metrics.render(None);
        assert!(text.contains("# TYPE tahoe_updates_connections gauge"));
        assert!(text.contains("tahoe_updates_connections 3\n"));
        assert!(text.contains("tahoe_updates_queue_overflows_total 0\n"));
    }

    #[test]
    fn latency_histogram_is_cumulative() {
        let metrics = Metrics::default();
        metrics
            .delivery_latency
            .record(std::time::Duration::from_micros(300));
        metrics
            .delivery_latency
            .record(std::time::Duration::from_millis(30));
        let text = metrics.render(None);
        assert!(
            text.contains("tahoe_updates_delivery_latency_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tahoe_updates_delivery_latency_seconds_bucket{le=\"0.05\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("tahoe_updates_delivery_latency_seconds_count 2\n"));
    }
}
