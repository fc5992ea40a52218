//! The limits the spec asks a server to enforce, with its defaults, the message-rate meter, the
//! connection budget (global and per address) and the global bound on reply bytes in flight.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
    /// Most connections held at once, handshakes included. The binary sets it well below
    /// `RLIMIT_NOFILE`, keeping a reserve of descriptors for the share watcher
    /// ([`connection_budget_for`]); the excess is refused with 1013 and a reason.
    pub max_connections: usize,
    /// Most connections (beyond `max_connections`) held only to tell them, with a close frame,
    /// that the server is full; further ones are closed at once without a word.
    pub max_refusing: usize,
    /// Most connections from one address still in their TLS or WebSocket handshake.
    pub max_unauthenticated_per_address: usize,
    /// Most authenticated sessions from one address.
    pub max_authenticated_per_address: usize,
    /// Longest time a fragmented message may stay unfinished before the connection is closed
    /// with 1008 (finding 4: a never-finished 1 MiB message held memory for good).
    pub fragment_timeout: Duration,
    /// A session that holds no subscription for this long is closed with 1008 (finding 2).
    pub idle_timeout: Duration,
    /// All replies being written at once (statuses, updates, errors), over every connection,
    /// stay under this many bytes; a reply that would pass it closes its connection with 1013.
    pub max_queued_reply_bytes: usize,
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
            max_connections: 8_192,
            max_refusing: 16,
            max_unauthenticated_per_address: 16,
            max_authenticated_per_address: 128,
            fragment_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_queued_reply_bytes: 256 << 20,
        }
    }
}

/// Descriptors kept back from connections for everything else: the share watcher (its inotify
/// descriptor, the share and folder it has open), the runtime, listeners, the metrics page,
/// standard streams and the connections held only to be refused.
pub fn descriptor_reserve(nofile: u64) -> u64 {
    (nofile / 8).max(64)
}

/// How many connections fit under a descriptor limit of `nofile` (one descriptor each), with
/// [`descriptor_reserve`] and room for the refusal slots kept back; never above `wanted`.
pub fn connection_budget_for(nofile: u64, wanted: usize, refusing: usize) -> usize {
    let spare = nofile
        .saturating_sub(descriptor_reserve(nofile))
        .saturating_sub(refusing as u64);
    usize::try_from(spare).unwrap_or(usize::MAX).min(wanted)
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `max_connections` already.
    ServerFull,
    /// This address holds its share of handshakes already.
    TooManyHandshakes,
    /// This address holds its share of sessions already.
    TooManySessions,
}

impl Refusal {
    /// The close reason sent to the client (≤ 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ServerFull => "server at its connection limit: try again later",
            Refusal::TooManyHandshakes => "too many unfinished handshakes from your address",
            Refusal::TooManySessions => {
                "too many connections from your address: close some and try again later"
            }
        }
    }
}

#[derive(Debug, Default)]
struct PerAddress {
    handshaking: usize,
    authenticated: usize,
}

#[derive(Debug, Default)]
struct BudgetState {
    total: usize,
    refusing: usize,
    by_address: HashMap<IpAddr, PerAddress>,
}

/// Counts connections, globally and per address, and admits or refuses new ones.
#[derive(Debug)]
pub struct ConnectionBudget {
    limits: BudgetLimits,
    state: Mutex<BudgetState>,
}

#[derive(Debug, Clone, Copy)]
struct BudgetLimits {
    total: usize,
    refusing: usize,
    handshaking: usize,
    authenticated: usize,
}

/// One admitted connection's place in the budget, given back on drop.
#[derive(Debug)]
pub struct Admission {
    budget: Arc<ConnectionBudget>,
    address: IpAddr,
    authenticated: bool,
}

/// A connection held only to be told why it is refused; given back on drop.
#[derive(Debug)]
pub struct RefusalSlot {
    budget: Arc<ConnectionBudget>,
}

impl ConnectionBudget {
    /// A budget enforcing `limits`.
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            limits: BudgetLimits {
                total: limits.max_connections,
                refusing: limits.max_refusing,
                handshaking: limits.max_unauthenticated_per_address,
                authenticated: limits.max_authenticated_per_address,
            },
            state: Mutex::new(BudgetState::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `address` into its handshake, or says why not.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admission, Refusal> {
        let mut state = self.state();
        if state.total >= self.limits.total {
            return Err(Refusal::ServerFull);
        }
        let entry = state.by_address.entry(address).or_default();
        if entry.handshaking >= self.limits.handshaking {
            return Err(Refusal::TooManyHandshakes);
        }
        entry.handshaking += 1;
        state.total += 1;
        Ok(Admission {
            budget: Arc::clone(self),
            address,
            authenticated: false,
        })
    }

    /// A slot to hold a refused connection while it is told why; `None` when too many are
    /// held already (then close it at once).
    pub fn refusal_slot(self: &Arc<Self>) -> Option<RefusalSlot> {
        let mut state = self.state();
        if state.refusing >= self.limits.refusing {
            return None;
        }
        state.refusing += 1;
        Some(RefusalSlot {
            budget: Arc::clone(self),
        })
    }

    /// Connections held now (handshakes and sessions, not refusals).
    pub fn connections(&self) -> usize {
        self.state().total
    }

    /// The most connections admitted.
    pub fn max_connections(&self) -> usize {
        self.limits.total
    }
}

impl Admission {
    /// Moves this connection from handshaking to authenticated, if its address has room.
    pub fn authenticate(&mut self) -> Result<(), Refusal> {
        if self.authenticated {
            return Ok(());
        }
        let limit = self.budget.limits.authenticated;
        let mut state = self.budget.state();
        let entry = state.by_address.entry(self.address).or_default();
        if entry.authenticated >= limit {
            return Err(Refusal::TooManySessions);
        }
        entry.handshaking = entry.handshaking.saturating_sub(1);
        entry.authenticated += 1;
        self.authenticated = true;
        Ok(())
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = self.budget.state();
        state.total = state.total.saturating_sub(1);
        let remove = match state.by_address.get_mut(&self.address) {
            Some(entry) => {
                if self.authenticated {
                    entry.authenticated = entry.authenticated.saturating_sub(1);
                } else {
                    entry.handshaking = entry.handshaking.saturating_sub(1);
                }
                entry.handshaking == 0 && entry.authenticated == 0
            }
            None => false,
        };
        if remove {
            state.by_address.remove(&self.address);
        }
    }
}

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        let mut state = self.budget.state();
        state.refusing = state.refusing.saturating_sub(1);
    }
}

/// Bytes of replies being written, over all connections, against one global bound.
#[derive(Debug)]
pub struct ReplyBudget {
    in_flight: AtomicUsize,
    max: usize,
}

/// Bytes reserved in a [`ReplyBudget`], given back on drop.
#[derive(Debug)]
pub struct ReplyBytes<'a> {
    budget: &'a ReplyBudget,
    bytes: usize,
}

impl ReplyBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            max,
        }
    }

    /// Reserves `bytes`, or `None` if that would pass the bound. A reply larger than the whole
    /// bound is admitted only when nothing else is in flight, so no reply is refused for ever.
    pub fn reserve(&self, bytes: usize) -> Option<ReplyBytes<'_>> {
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            let next = current.checked_add(bytes)?;
            if next > self.max && current > 0 {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(ReplyBytes {
                        budget: self,
                        bytes,
                    })
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Bytes reserved now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for ReplyBytes<'_> {
    fn drop(&mut self) {
        self.budget
            .in_flight
            .fetch_sub(self.bytes, Ordering::AcqRel);
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

    fn limits(total: usize, handshaking: usize, authenticated: usize) -> Limits {
        Limits {
            max_connections: total,
            max_refusing: 2,
            max_unauthenticated_per_address: handshaking,
            max_authenticated_per_address: authenticated,
            ..Limits::default()
        }
    }

    #[test]
    fn the_budget_leaves_a_reserve_below_the_descriptor_limit() {
        // 256 descriptors: 64 kept back, 16 for refusals, 176 connections.
        assert_eq!(connection_budget_for(256, 10_000, 16), 176);
        // 1,024 (a shell's default): 128 back.
        assert_eq!(connection_budget_for(1024, 10_000, 16), 880);
        // 65,536 (the unit's): the configured maximum wins.
        assert_eq!(connection_budget_for(65_536, 8_192, 16), 8_192);
        // Absurdly low limits give no connections rather than a wrap-around.
        assert_eq!(connection_budget_for(10, 10_000, 16), 0);
    }

    #[test]
    fn the_global_budget_refuses_the_excess_and_frees_on_drop() {
        let budget = ConnectionBudget::new(&limits(3, 10, 10));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<Admission> = (0..3).map(|_| budget.admit(a).unwrap()).collect();
        assert_eq!(budget.admit(b).unwrap_err(), Refusal::ServerFull);
        assert_eq!(budget.connections(), 3);
        drop(held);
        assert_eq!(budget.connections(), 0);
        assert!(budget.admit(b).is_ok());
    }

    #[test]
    fn per_address_caps_for_handshakes_and_sessions() {
        let budget = ConnectionBudget::new(&limits(100, 2, 3));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = budget.admit(a).unwrap();
        let _second = budget.admit(a).unwrap();
        assert_eq!(budget.admit(a).unwrap_err(), Refusal::TooManyHandshakes);
        // Another address is not held back by a's handshakes.
        assert!(budget.admit(b).is_ok());
        // Finishing a handshake frees its slot for the next one.
        let mut first = first;
        first.authenticate().unwrap();
        let mut sessions = vec![first];
        for _ in 0..2 {
            let mut next = budget.admit(a).unwrap();
            next.authenticate().unwrap();
            sessions.push(next);
        }
        let mut fourth = budget.admit(a).unwrap();
        assert_eq!(fourth.authenticate().unwrap_err(), Refusal::TooManySessions);
        drop(sessions.pop());
        assert!(fourth.authenticate().is_ok());
    }

    #[test]
    fn refusal_slots_are_bounded() {
        let budget = ConnectionBudget::new(&limits(1, 1, 1));
        let one = budget.refusal_slot().unwrap();
        let _two = budget.refusal_slot().unwrap();
        assert!(budget.refusal_slot().is_none());
        drop(one);
        assert!(budget.refusal_slot().is_some());
    }

    #[test]
    fn reply_budget_bounds_bytes_in_flight() {
        let budget = ReplyBudget::new(1000);
        let a = budget.reserve(600).unwrap();
        assert!(budget.reserve(500).is_none());
        let b = budget.reserve(400).unwrap();
        assert_eq!(budget.in_flight(), 1000);
        drop(a);
        drop(b);
        assert_eq!(budget.in_flight(), 0);
        // Larger than the bound, alone: admitted, so that it is not refused for ever.
        let big = budget.reserve(5000).unwrap();
        assert!(budget.reserve(1).is_none());
        drop(big);
    }

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
