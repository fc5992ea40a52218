//! The limits the spec asks a server to enforce, with its defaults, and the message-rate meter.

use std::time::{Duration, Instant};

/// Limits on one connection. Defaults are the spec's.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted message; larger ones close the connection with 1009.
    pub max_message_bytes: usize,
    /// Most subscriptions one connection may hold; further SIs answer `too-many-subscriptions`.
    pub max_subscriptions: usize,
    /// Sustained message rate above which a client is closed with 1008...
    pub max_messages_per_second: u32,
    /// ...when kept up for this long.
    pub rate_window: Duration,
    /// Outgoing queue length at which a slow reader is closed with 1008.
    pub max_queued_updates: usize,
    /// Interval between pings; two unanswered pings close the connection.
    pub ping_interval: Duration,
    /// Time allowed for the TLS and WebSocket handshakes together (slowloris protection).
    pub handshake_timeout: Duration,
    /// Longest batching delay a client may ask for with `options.maximum-delay`.
    pub max_batch_delay: Duration,
    /// Largest reply the server writes; a larger status closes the connection with 1009.
    pub max_reply_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_subscriptions: 10_000,
            max_messages_per_second: 100,
            rate_window: Duration::from_secs(10),
            max_queued_updates: 1_000,
            ping_interval: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_batch_delay: Duration::from_secs(60),
            max_reply_bytes: 4 << 20,
        }
    }
}

/// A token bucket that holds `rate × window` messages and refills at `rate` per second: empty
/// means the client sent more than `rate` messages per second, sustained over the window.
#[derive(Debug)]
pub struct RateMeter {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
}

impl RateMeter {
    /// A full bucket for `limits`.
    pub fn new(limits: &Limits) -> Self {
        let per_second = f64::from(limits.max_messages_per_second);
        let capacity = per_second * limits.rate_window.as_secs_f64();
        Self {
            tokens: capacity,
            capacity,
            per_second,
            last: Instant::now(),
        }
    }

    /// Counts one message at `now`; `false` once the client is over the limit.
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_within_the_window_is_admitted() {
        let limits = Limits::default();
        let mut meter = RateMeter::new(&limits);
        let now = Instant::now();
        assert!((0..1000).all(|_| meter.admit(now)));
        assert!(!meter.admit(now));
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_admitted() {
        let limits = Limits::default();
        let mut meter = RateMeter::new(&limits);
        let start = Instant::now();
        // 100 messages a second for a minute never empties the bucket.
        for i in 0..6000u32 {
            let at = start + Duration::from_millis(u64::from(i) * 10);
            assert!(meter.admit(at), "message {i} refused");
        }
    }

    #[test]
    fn twice_the_rate_for_ten_seconds_is_refused() {
        let limits = Limits::default();
        let mut meter = RateMeter::new(&limits);
        let start = Instant::now();
        let refused = (0..4000u32)
            .map(|i| start + Duration::from_millis(u64::from(i) * 5))
            .any(|at| !meter.admit(at));
        assert!(refused);
    }
}
