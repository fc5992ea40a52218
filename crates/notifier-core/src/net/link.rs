//! One updates server, kept subscribed: connect, subscribe everything, reconnect with backoff.
//!
//! A link owns one WebSocket at a time. It knows the full set of storage indexes it should hold
//! and sends them again after every reconnect, so the engine never has to. Everything the server
//! says comes out as [`LinkEvent`]s; what to make of a seqnum is the engine's business.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mutable_updates::client::{self, ConnectError};
use mutable_updates::message::{
    ClientMessage, ErrorCode, ProofRequest, ServerMessage, SubscriptionStatus,
};
use mutable_updates::nurl::Nurl;
use mutable_updates::proof::SlotProof;
use rand::Rng;
use tahoe_caps::StorageIndex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::describe::text::clean_line;

/// How a link is doing, for the status the user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Opening the connection.
    Connecting,
    /// Connected and subscribed.
    Connected,
    /// The last attempt failed; the next comes after `retry_in`.
    Failing {
        /// Why, in words for the user (no secrets).
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
}

/// What a server answered for one storage index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionOutcome {
    /// Subscribed; the slot's current seqnum on this server when the server said it.
    Subscribed {
        /// Current seqnum, if the server sent one.
        seqnum: Option<u64>,
        /// The slot proof of that version, if the server offers proofs and could read it
        /// (with the verification key: the link always asks for keys on a new connection).
        proof: Option<Box<SlotProof>>,
        /// About how many connections hold the slot on this server, for popular slots only
        /// (the `subscribers` extension; see [`crate::engine::spread`]).
        subscribers: Option<u64>,
    },
    /// The server holds no share of the slot (asked again after reconnects and hourly).
    NotFound,
    /// Refused for another reason (immutable, malformed, too many, internal).
    Refused {
        /// The machine-readable code.
        code: ErrorCode,
        /// The server's words.
        message: String,
    },
}

/// What a link reports to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The connection state changed.
    State {
        /// The server.
        server: String,
        /// Its new state.
        state: LinkState,
    },
    /// A status entry for one storage index.
    Subscription {
        /// The server.
        server: String,
        /// The slot.
        storage_index: StorageIndex,
        /// What the server said.
        outcome: SubscriptionOutcome,
    },
    /// A live update: the slot reached `seqnum` (`None` from servers without the seqnum extension).
    Update {
        /// The server.
        server: String,
        /// The slot.
        storage_index: StorageIndex,
        /// Its new seqnum.
        seqnum: Option<u64>,
        /// The new version's slot proof (without the key), if the server offers proofs.
        proof: Option<Box<SlotProof>>,
        /// About how many connections hold the slot on this server (popular slots only).
        subscribers: Option<u64>,
    },
}

/// What the engine asks of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCommand {
    /// Hold these storage indexes too.
    Subscribe(Vec<StorageIndex>),
    /// Stop holding these.
    Unsubscribe(Vec<StorageIndex>),
    /// Drop the connection (if any) and connect again now.
    Reconnect,
}

/// Timing of a link; defaults are what users get, tests shorten them.
#[derive(Debug, Clone)]
pub struct LinkTiming {
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Time allowed to connect (TCP, TLS and upgrade).
    pub connect_timeout: Duration,
    /// Silence after which the connection is taken for dead (servers ping every 30 s).
    pub silence_timeout: Duration,
    /// How often storage indexes a server said `not-found` for are asked again.
    pub not_found_retry: Duration,
    /// How long a connection must last before the backoff starts from the beginning again.
    pub stable_after: Duration,
}

impl Default for LinkTiming {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            silence_timeout: Duration::from_secs(75),
            not_found_retry: Duration::from_secs(3600),
            stable_after: Duration::from_secs(10),
        }
    }
}

/// Most storage indexes sent in one subscribe. Each answer carries a slot proof with its key
/// (about 850 bytes of JSON each): a hundred make a status of ~85 kB. A thousand (~1 MiB, still
/// under the message limit) left `watch` with 1,000 caps on three servers at 26.8 MiB RSS
/// against 23.7 MiB, the buffers and parse of three such statuses kept by the allocator.
const SUBSCRIBE_CHUNK: usize = 100;

/// Longest server-supplied text (a close reason, an error) kept, in characters.
const MAX_SERVER_TEXT: usize = 200;

/// A subscribe for `sis`, asking for slot proofs with their keys: a new connection knows no key.
fn subscribe_message(sis: impl IntoIterator<Item = StorageIndex>) -> String {
    ClientMessage::subscribe_with_proofs(sis, ProofRequest::WithKeys).to_json()
}

/// Exponential backoff with full jitter between half the delay and the delay.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Self {
            next: initial,
            initial,
            max,
        }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // Jitter spreads the reconnects of many clients after a server restart.
        let factor = rand::thread_rng().gen_range(0.5..=1.0);
        base.mul_f64(factor)
    }
}

/// Runs a link until the engine drops its command sender.
pub async fn run_link(
    server: String,
    nurl: Nurl,
    initial: Vec<StorageIndex>,
    timing: LinkTiming,
    mut commands: mpsc::Receiver<LinkCommand>,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut wanted: BTreeSet<StorageIndex> = initial.into_iter().collect();
    let mut backoff = Backoff::new(timing.backoff_initial, timing.backoff_max);
    let report = |state: LinkState| {
        let events = events.clone();
        let server = server.clone();
        async move {
            let _ = events.send(LinkEvent::State { server, state }).await;
        }
    };
    // The proposal's path first; a server that answers 404 there may speak only the revised
    // proposal's path, which is then kept for this server.
    let mut path = client::PATH;
    loop {
        report(LinkState::Connecting).await;
        let mut attempt =
            tokio::time::timeout(timing.connect_timeout, client::connect(&nurl, path)).await;
        if let Ok(Err(ConnectError::HttpStatus { status: 404, .. })) = &attempt {
            let other = if path == client::PATH {
                client::PATH_REVISED
            } else {
                client::PATH
            };
            attempt =
                tokio::time::timeout(timing.connect_timeout, client::connect(&nurl, other)).await;
            if matches!(attempt, Ok(Ok(_))) {
                path = other;
            }
        }
        let reason = match attempt {
            Err(_) => format!("no answer within {} s", timing.connect_timeout.as_secs()),
            Ok(Err(error)) => describe_connect_error(&error),
            Ok(Ok(socket)) => {
                report(LinkState::Connected).await;
                let started = Instant::now();
                let ended = run_connected(
                    &server,
                    socket,
                    &mut wanted,
                    &timing,
                    &mut commands,
                    &events,
                )
                .await;
                if started.elapsed() >= timing.stable_after {
                    backoff.reset();
                }
                match ended {
                    Ended::EngineGone => return,
                    Ended::ReconnectNow => {
                        backoff.reset();
                        continue;
                    }
                    Ended::Lost(reason) => reason,
                }
            }
        };
        let retry_in = backoff.next_delay();
        tracing::info!(
            server,
            reason,
            retry_in_ms = retry_in.as_millis() as u64,
            "updates server unreachable"
        );
        report(LinkState::Failing { reason, retry_in }).await;
        // Keep the wanted set current while waiting, and let a Reconnect cut the wait short.
        let wake = Instant::now() + retry_in;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => break,
                command = commands.recv() => match command {
                    None => return,
                    Some(LinkCommand::Reconnect) => {
                        backoff.reset();
                        break;
                    }
                    Some(command) => apply_to_wanted(&mut wanted, command),
                },
            }
        }
    }
}

fn apply_to_wanted(wanted: &mut BTreeSet<StorageIndex>, command: LinkCommand) {
    match command {
        LinkCommand::Subscribe(sis) => wanted.extend(sis),
        LinkCommand::Unsubscribe(sis) => {
            for si in sis {
                wanted.remove(&si);
            }
        }
        LinkCommand::Reconnect => {}
    }
}

enum Ended {
    EngineGone,
    ReconnectNow,
    Lost(String),
}

async fn run_connected(
    server: &str,
    socket: client::SecureWebSocket,
    wanted: &mut BTreeSet<StorageIndex>,
    timing: &LinkTiming,
    commands: &mut mpsc::Receiver<LinkCommand>,
    events: &mpsc::Sender<LinkEvent>,
) -> Ended {
    let (mut sink, mut stream) = socket.split();
    let everything: Vec<StorageIndex> = wanted.iter().copied().collect();
    for chunk in everything.chunks(SUBSCRIBE_CHUNK) {
        let message = subscribe_message(chunk.iter().copied());
        if let Err(error) = sink.send(Message::Text(message.into())).await {
            return Ended::Lost(format!("connection lost while subscribing: {error}"));
        }
    }
    let mut not_found: HashMap<StorageIndex, Instant> = HashMap::new();
    let mut last_heard = Instant::now();
    let mut retry_tick = tokio::time::interval(timing.not_found_retry.min(Duration::from_secs(60)));
    retry_tick.tick().await;
    loop {
        let silence_deadline = last_heard + timing.silence_timeout;
        tokio::select! {
            frame = stream.next() => {
                last_heard = Instant::now();
                match frame {
                    None => return Ended::Lost("the server closed the connection".to_owned()),
                    Some(Err(error)) => return Ended::Lost(format!("connection lost: {error}")),
                    Some(Ok(Message::Close(frame))) => {
                        // A hostile server's reason could hold terminal escapes or bidi tricks.
                        let why = frame.map_or_else(|| "no reason given".to_owned(), |f| format!("{} ({})", clean_line(&f.reason, MAX_SERVER_TEXT), u16::from(f.code)));
                        return Ended::Lost(format!("the server closed the connection: {why}"));
                    }
                    Some(Ok(Message::Text(text))) => {
                        handle_server_text(server, text.as_str(), wanted, &mut not_found, events).await;
                    }
                    // tungstenite answers pings by itself; pongs and binary frames carry nothing for us.
                    Some(Ok(_)) => {}
                }
                // Flush the automatic pong, if any.
                if let Err(error) = sink.flush().await {
                    return Ended::Lost(format!("connection lost: {error}"));
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return Ended::EngineGone };
                let message = match command {
                    LinkCommand::Reconnect => return Ended::ReconnectNow,
                    LinkCommand::Subscribe(sis) => {
                        let fresh: Vec<StorageIndex> = sis.into_iter().filter(|si| wanted.insert(*si)).collect();
                        let mut sent = Ok(());
                        for chunk in fresh.chunks(SUBSCRIBE_CHUNK) {
                            sent = sink.send(Message::Text(subscribe_message(chunk.iter().copied()).into())).await;
                            if sent.is_err() {
                                break;
                            }
                        }
                        if let Err(error) = sent {
                            return Ended::Lost(format!("connection lost: {error}"));
                        }
                        None
                    }
                    LinkCommand::Unsubscribe(sis) => {
                        let held: Vec<StorageIndex> = sis.into_iter().filter(|si| wanted.remove(si)).collect();
                        for si in &held {
                            not_found.remove(si);
                        }
                        (!held.is_empty()).then(|| ClientMessage::unsubscribe(held))
                    }
                };
                if let Some(message) = message {
                    if let Err(error) = sink.send(Message::Text(message.to_json().into())).await {
                        return Ended::Lost(format!("connection lost: {error}"));
                    }
                }
            }
            _ = retry_tick.tick() => {
                // Shares move between servers: ask again about slots this server did not hold.
                let now = Instant::now();
                let due: Vec<StorageIndex> = not_found
                    .iter()
                    .filter(|(si, since)| wanted.contains(si) && now.duration_since(**since) >= timing.not_found_retry)
                    .map(|(si, _)| *si)
                    .collect();
                if !due.is_empty() {
                    for si in &due {
                        not_found.remove(si);
                    }
                    let message = subscribe_message(due);
                    if let Err(error) = sink.send(Message::Text(message.into())).await {
                        return Ended::Lost(format!("connection lost: {error}"));
                    }
                }
            }
            () = tokio::time::sleep_until(silence_deadline) => {
                return Ended::Lost(format!("no word from the server for {} s", timing.silence_timeout.as_secs()));
            }
        }
    }
}

async fn handle_server_text(
    server: &str,
    text: &str,
    wanted: &BTreeSet<StorageIndex>,
    not_found: &mut HashMap<StorageIndex, Instant>,
    events: &mpsc::Sender<LinkEvent>,
) {
    let message = match ServerMessage::parse(text) {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(server, %error, "unreadable message from the updates server");
            return;
        }
    };
    match message {
        ServerMessage::Status(mut status) => {
            let mut proofs: HashMap<String, SlotProof> =
                std::mem::take(&mut status.proofs).into_iter().collect();
            for (raw, entry) in &status.entries {
                let Ok(storage_index) = raw.parse::<StorageIndex>() else {
                    continue;
                };
                // Unsubscribe confirmations and answers to SIs dropped meanwhile say nothing new.
                if !wanted.contains(&storage_index) {
                    continue;
                }
                let outcome = match entry {
                    SubscriptionStatus::Subscribed => SubscriptionOutcome::Subscribed {
                        seqnum: status.seqnum(raw),
                        proof: proofs.remove(raw.as_str()).map(Box::new),
                        subscribers: status.subscribers(raw),
                    },
                    SubscriptionStatus::Refused {
                        code: ErrorCode::NotFound,
                        ..
                    } => {
                        not_found.insert(storage_index, Instant::now());
                        SubscriptionOutcome::NotFound
                    }
                    SubscriptionStatus::Refused { code, message } => SubscriptionOutcome::Refused {
                        code: code.clone(),
                        message: clean_line(message, MAX_SERVER_TEXT),
                    },
                };
                let event = LinkEvent::Subscription {
                    server: server.to_owned(),
                    storage_index,
                    outcome,
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
        ServerMessage::Update(update) => {
            // A server may only speak of what we asked it about (finding 3: a hostile one made
            // the engine store every SI it invented).
            if !wanted.contains(&update.storage_index) {
                return;
            }
            let event = LinkEvent::Update {
                server: server.to_owned(),
                storage_index: update.storage_index,
                seqnum: update.seqnum,
                proof: update.proof.map(Box::new),
                subscribers: update.subscribers,
            };
            let _ = events.send(event).await;
        }
        ServerMessage::Updates(batch) => {
            // One pass over each list: the old per-SI search of the seqnums was O(n·m).
            let mut seqnums: HashMap<StorageIndex, u64> = batch.seqnums.into_iter().collect();
            let mut proofs: HashMap<StorageIndex, SlotProof> = batch.proofs.into_iter().collect();
            let subscribers: HashMap<StorageIndex, u64> = batch.subscribers.into_iter().collect();
            for storage_index in batch.storage_indexes {
                if !wanted.contains(&storage_index) {
                    continue;
                }
                let event = LinkEvent::Update {
                    server: server.to_owned(),
                    storage_index,
                    seqnum: seqnums.remove(&storage_index),
                    proof: proofs.remove(&storage_index).map(Box::new),
                    subscribers: subscribers.get(&storage_index).copied(),
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
        ServerMessage::Error(error) => {
            tracing::warn!(server, code = error.code.as_str(), message = %clean_line(&error.message, MAX_SERVER_TEXT), "the updates server refused a message");
        }
    }
}

/// A connect error in words for the user; the NURL's secret never appears.
fn describe_connect_error(error: &ConnectError) -> String {
    match error {
        ConnectError::PinMismatch { .. } => {
            "the server's certificate is not the one its NURL pins: refusing to talk to it"
                .to_owned()
        }
        ConnectError::Unauthorized { .. } => {
            "the server refused our swissnum (401): the NURL may be out of date".to_owned()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let mut ceiling = Duration::from_millis(500);
        for _ in 0..12 {
            let delay = backoff.next_delay();
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            assert!(delay >= ceiling / 2, "{delay:?} < half of {ceiling:?}");
            ceiling = (ceiling * 2).min(Duration::from_secs(60));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(500));
    }

    #[test]
    fn commands_while_offline_change_the_wanted_set() {
        let a = StorageIndex::from_bytes([1; 16]);
        let b = StorageIndex::from_bytes([2; 16]);
        let mut wanted = BTreeSet::from([a]);
        apply_to_wanted(&mut wanted, LinkCommand::Subscribe(vec![b]));
        apply_to_wanted(&mut wanted, LinkCommand::Unsubscribe(vec![a]));
        assert_eq!(wanted, BTreeSet::from([b]));
    }
}
