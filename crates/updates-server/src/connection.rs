//! One subscriber's WebSocket session after the upgrade: its messages, its updates, its limits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mutable_updates::message::{
    BatchedUpdates, ClientMessage, ErrorCode, ProofRequest, ProtocolError, RequestedIndex,
    ServerMessage, Status, SubscriptionStatus,
};
use mutable_updates::proof::SlotProof;
use tahoe_caps::StorageIndex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::frames::FrameWatch;
use crate::hub::{Delivery, Hub, Registration};
use crate::limits::{Limits, RateMeter, ReplyBudget};
use crate::metrics::Metrics;
use crate::slots::{SlotDirectory, SlotState};

/// What every connection shares.
pub(crate) struct SessionContext {
    pub hub: Arc<Hub>,
    pub slots: Arc<dyn SlotDirectory>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// Bytes of replies being written now, over every connection.
    pub replies: ReplyBudget,
}

/// Why the session ended, for the log and the close frame.
#[derive(Debug)]
enum Ending {
    /// The client closed or vanished; nothing more to send.
    ClientGone,
    /// We close with this code and reason.
    Close(CloseCode, &'static str),
    /// The socket cannot be written any more (stalled or broken): drop it without a close frame.
    Abandon(&'static str),
}

/// Updates held back for a client that asked for batching: one entry per SI in arrival order,
/// found through a hash map, so a window of n distinct hot slots costs O(n), not O(n²)
/// (finding 13).
struct Batch {
    delay: Duration,
    pending: Vec<BatchEntry>,
    positions: HashMap<StorageIndex, usize>,
    deadline: Option<tokio::time::Instant>,
}

/// One slot's latest update in a batch: seqnum, proof (if asked for) and popularity hint.
type BatchEntry = (StorageIndex, u64, Option<Arc<SlotProof>>, Option<u64>);

impl Batch {
    fn new(delay: Duration) -> Self {
        Self {
            delay,
            pending: Vec::new(),
            positions: HashMap::new(),
            deadline: None,
        }
    }

    /// Adds one update; `proof` only for a subscription that asked for proofs.
    fn add(&mut self, update: BatchEntry) {
        let (storage_index, seqnum, ..) = update;
        match self.positions.get(&storage_index) {
            Some(&at) => {
                if let Some(entry) = self.pending.get_mut(at) {
                    if seqnum >= entry.1 {
                        // The proof goes with the seqnum it proves.
                        *entry = update;
                    }
                }
            }
            None => {
                self.positions.insert(storage_index, self.pending.len());
                self.pending.push(update);
            }
        }
        if self.deadline.is_none() {
            self.deadline = Some(tokio::time::Instant::now() + self.delay);
        }
    }

    fn take_message(&mut self) -> Option<Message> {
        self.deadline = None;
        self.positions.clear();
        if self.pending.is_empty() {
            return None;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut proofs = Vec::new();
        let mut subscribers = Vec::new();
        let mut seqnums = Vec::with_capacity(pending.len());
        for (si, seqnum, proof, hint) in pending {
            seqnums.push((si, seqnum));
            if let Some(proof) = proof {
                proofs.push((si, (*proof).clone().without_key()));
            }
            if let Some(hint) = hint {
                subscribers.push((si, hint));
            }
        }
        let message = ServerMessage::Updates(BatchedUpdates {
            storage_indexes: seqnums.iter().map(|(si, _)| *si).collect(),
            seqnums,
            proofs,
            subscribers,
        });
        Some(Message::Text(message.to_json().into()))
    }
}

/// Runs one session until the client leaves, breaks a limit, or the server shuts down.
pub(crate) async fn run_session<S>(
    mut socket: WebSocketStream<FrameWatch<S>>,
    context: Arc<SessionContext>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // One future for the whole session: made anew on every turn, each of 10,000 sessions would
    // register with and leave the one shared shutdown channel's waiter list, under its lock, on
    // every delivery.
    let shutdown_signal = async move {
        let _ = shutdown.changed().await;
    };
    tokio::pin!(shutdown_signal);
    let mut registration = context.hub.register(context.limits.max_queued_updates);
    let overflow = registration.overflow();
    let mut rate = RateMeter::new(&context.limits);
    let mut batch: Option<Batch> = None;
    // One timer per session does the pings and the checks for an unfinished fragmented message
    // and for a session without subscriptions: a limit is enforced within one period of it.
    let limits = &context.limits;
    let period = limits
        .ping_interval
        .min(limits.fragment_timeout)
        .min(limits.idle_timeout)
        .max(Duration::from_millis(10));
    let mut housekeeping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // Missed ticks must not come in a burst: after a stall of this task (a slow write, a busy
    // runtime) a burst would send two pings and count both unanswered within microseconds,
    // closing a client that never had a period to answer.
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Pings every this many ticks (the period divides the ping interval when it is the
    // shortest limit; otherwise pings come up to one period late).
    let ticks_per_ping =
        u32::try_from((limits.ping_interval.as_nanos() / period.as_nanos()).max(1))
            .unwrap_or(u32::MAX);
    let mut ticks_to_ping = ticks_per_ping;
    let mut idle_since = Some(Instant::now());
    let mut unanswered_pings = 0u32;
    let send_timeout = context.limits.ping_interval;
    // When each update now being written was published, for the delivery-latency histogram.
    let mut published: Vec<std::time::Instant> = Vec::new();

    let ending = loop {
        // An overflow fills the queue, which wakes this loop through `next_delivery`: a flag
        // check here is enough, and cheaper on a 10,000-way fan-out than one more waker per turn.
        if overflow.is_raised() {
            break Ending::Close(
                CloseCode::Policy,
                "too many updates queued: reconnect and catch up through seqnum",
            );
        }
        let batch_deadline = batch.as_ref().and_then(|b| b.deadline);
        let outgoing: Vec<Message> = tokio::select! {
            biased;
            () = &mut shutdown_signal => break Ending::Close(CloseCode::Away, "server shutting down"),
            // Reads and writes take turns on the one stream (writes happen after this select):
            // no split, so no lock between two halves on every poll.
            incoming = socket.next() => match incoming {
                None | Some(Ok(Message::Close(_))) => break Ending::ClientGone,
                Some(Err(error)) => break ending_for_read_error(&error),
                // Every frame counts against the rate, pings and pongs too (finding 12): a
                // ping costs us a pong and a flush.
                Some(Ok(_)) if !rate.admit(Instant::now()) => {
                    context.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
                    break Ending::Close(CloseCode::Policy, "more than the allowed messages per second");
                }
                Some(Ok(Message::Text(text))) => {
                    let (reply, asked) = handle_text(text.as_str(), &mut registration, &mut batch, &context);
                    // Idle means holding nothing and not waiting for anything: a session whose
                    // subscribe named only slots this server does not hold (yet) is a client
                    // waiting for them to appear here (it asks again later), not idle; one that
                    // never asked, or unsubscribed from everything, is.
                    idle_since = match (registration.subscription_count(), asked) {
                        (0, Asked::Nothing) => idle_since.or_else(|| Some(Instant::now())),
                        (0, Asked::Unsubscribed) => Some(Instant::now()),
                        _ => None,
                    };
                    // A status has an entry per requested index, so a reply can be many times
                    // its request: past the bound, say so instead of buffering it.
                    if reply.len() > context.limits.max_reply_bytes {
                        break Ending::Close(
                            CloseCode::Size,
                            "the status for that message would be too large: send fewer storage indexes per message",
                        );
                    }
                    vec![reply]
                }
                Some(Ok(Message::Binary(_))) => {
                    context.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    vec![error_message(ErrorCode::MalformedMessage, "messages are JSON in text frames; binary frames are not part of the protocol")]
                }
                Some(Ok(Message::Pong(_))) => {
                    unanswered_pings = 0;
                    Vec::new()
                }
                // tungstenite answers pings itself; the reply goes out with the next write.
                Some(Ok(Message::Ping(_) | Message::Frame(_))) => Vec::new(),
            },
            delivery = registration.next_delivery() => match delivery {
                None => break Ending::Close(CloseCode::Away, "server shutting down"),
                Some(first) => deliveries_to_messages(first, &mut registration, &mut batch, &context.metrics, &mut published),
            },
            () = sleep_until_or_forever(batch_deadline) => {
                batch.as_mut().and_then(Batch::take_message).into_iter().collect()
            }
            _ = housekeeping.tick() => {
                let now = Instant::now();
                if socket
                    .get_ref()
                    .fragment_open_since()
                    .is_some_and(|since| now.saturating_duration_since(since) >= limits.fragment_timeout)
                {
                    context.metrics.limit_closes.fetch_add(1, Ordering::Relaxed);
                    break Ending::Close(CloseCode::Policy, "a fragmented message was left unfinished too long");
                }
                if idle_since.is_some_and(|since| now.saturating_duration_since(since) >= limits.idle_timeout) {
                    context.metrics.limit_closes.fetch_add(1, Ordering::Relaxed);
                    break Ending::Close(CloseCode::Policy, "no subscription held: subscribe, or reconnect when you have something to watch");
                }
                ticks_to_ping -= 1;
                if ticks_to_ping == 0 {
                    ticks_to_ping = ticks_per_ping;
                    if unanswered_pings >= 2 {
                        break Ending::Close(CloseCode::Policy, "no answer to two pings");
                    }
                    unanswered_pings += 1;
                    vec![Message::Ping(Default::default())]
                } else {
                    Vec::new()
                }
            }
        };
        if outgoing.is_empty() {
            // A queued automatic pong still needs a flush.
            if let Err(ending) = flush_or_abandon(&mut socket, send_timeout, &overflow).await {
                break ending;
            }
            continue;
        }
        // Every reply being written counts against one global bound (a non-reader's status
        // would otherwise sit in its write buffer for a whole ping interval).
        let bytes: usize = outgoing.iter().map(Message::len).sum();
        let Some(reserved) = context.replies.reserve(bytes) else {
            context.metrics.limit_closes.fetch_add(1, Ordering::Relaxed);
            break Ending::Close(
                CloseCode::Again,
                "server short of memory for replies: reconnect later",
            );
        };
        let sent = send_all(&mut socket, outgoing, send_timeout, &overflow).await;
        drop(reserved);
        if let Err(ending) = sent {
            break ending;
        }
        for at in published.drain(..) {
            context.metrics.delivery_latency.record(at.elapsed());
        }
    };

    match ending {
        Ending::ClientGone => tracing::debug!(connection = registration.id(), "client closed"),
        Ending::Abandon(reason) => {
            tracing::info!(
                connection = registration.id(),
                reason,
                "dropping connection"
            );
        }
        Ending::Close(code, reason) => {
            tracing::info!(
                connection = registration.id(),
                code = u16::from(code),
                reason,
                "closing connection"
            );
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            // Best effort, and briefly: a peer that does not read gets little more of our time.
            let closing = async {
                socket.send(Message::Close(Some(frame))).await?;
                // Wait for the peer's close reply, so that it reads our frame before the socket
                // goes away (closing at once can reset the connection under its unread data).
                while let Some(Ok(_)) = socket.next().await {}
                Ok::<(), WsError>(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
        }
    }
}

/// Turns one delivery, plus any others already queued, into messages to send now.
fn deliveries_to_messages(
    first: Delivery,
    registration: &mut Registration,
    batch: &mut Option<Batch>,
    metrics: &Metrics,
    published: &mut Vec<std::time::Instant>,
) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut next = Some(first);
    // Draining what is already queued lets one flush carry many updates.
    while let Some(delivery) = next {
        match batch {
            Some(batch) => {
                let proof = delivery
                    .change
                    .proof
                    .as_ref()
                    .filter(|_| delivery.with_proof)
                    .map(Arc::clone);
                batch.add((
                    delivery.change.storage_index,
                    delivery.change.seqnum,
                    proof,
                    delivery.subscribers,
                ));
            }
            None => {
                metrics.updates_sent.fetch_add(1, Ordering::Relaxed);
                published.push(delivery.published);
                messages.push(Message::Text(delivery.frame));
            }
        }
        if messages.len() >= 64 {
            break;
        }
        next = registration.try_next_delivery();
    }
    messages
}

async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn send_all<S>(
    sink: &mut WebSocketStream<FrameWatch<S>>,
    messages: Vec<Message>,
    timeout: Duration,
    overflow: &crate::hub::OverflowSignal,
) -> Result<(), Ending>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // One timer for the whole batch: a timer per frame costs more than the frame on a busy
    // fan-out.
    let write = async {
        for message in messages {
            sink.feed(message).await?;
        }
        sink.flush().await
    };
    let written = tokio::select! {
        // The write almost always completes on its first poll: then the overflow signal is
        // never polled, and never registers a waiter.
        biased;
        written = tokio::time::timeout(timeout, write) => written,
        () = overflow.raised() => return Err(Ending::Abandon("outgoing queue overflowed while the socket was stalled")),
    };
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::ClientGone),
        Err(_) => Err(Ending::Abandon(
            "socket not writable for a whole ping interval",
        )),
    }
}

async fn flush_or_abandon<S>(
    sink: &mut WebSocketStream<FrameWatch<S>>,
    timeout: Duration,
    overflow: &crate::hub::OverflowSignal,
) -> Result<(), Ending>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send_all(sink, Vec::new(), timeout, overflow).await
}

fn ending_for_read_error(error: &WsError) -> Ending {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Ending::Close(CloseCode::Size, "message larger than the server accepts")
        }
        WsError::Capacity(_) => {
            Ending::Close(CloseCode::Size, "frame larger than the server accepts")
        }
        WsError::Utf8(_) => Ending::Close(CloseCode::Invalid, "text frame is not valid UTF-8"),
        WsError::Protocol(_) => Ending::Close(CloseCode::Protocol, "WebSocket protocol violation"),
        _ => Ending::ClientGone,
    }
}

fn error_message(code: ErrorCode, message: &str) -> Message {
    let reply = ServerMessage::Error(ProtocolError {
        code,
        message: message.to_owned(),
    });
    Message::Text(reply.to_json().into())
}

/// Answers one text message: a `status` for (un)subscribe, an `error` for anything else.
/// What a client message asked for, for the idle rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// A subscribe naming at least one well-formed storage index.
    Subscribed,
    /// An unsubscribe.
    Unsubscribed,
    /// Nothing that counts: an error, a subscribe of malformed indexes only.
    Nothing,
}

fn handle_text(
    text: &str,
    registration: &mut Registration,
    batch: &mut Option<Batch>,
    context: &SessionContext,
) -> (Message, Asked) {
    let message = match ClientMessage::parse(text) {
        Ok(message) => message,
        Err(error) => {
            context
                .metrics
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
            return (
                Message::Text(
                    ServerMessage::Error(error.to_protocol_error())
                        .to_json()
                        .into(),
                ),
                Asked::Nothing,
            );
        }
    };
    let mut asked = Asked::Nothing;
    let status = match message {
        ClientMessage::Subscribe(subscribe) => {
            if subscribe.storage_indexes.iter().any(|si| si.parsed.is_ok()) {
                asked = Asked::Subscribed;
            }
            if let Some(delay) = subscribe.maximum_delay {
                let delay = delay.min(context.limits.max_batch_delay);
                match batch {
                    Some(batch) => batch.delay = delay,
                    None => *batch = Some(Batch::new(delay)),
                }
            }
            subscribe_status(
                &subscribe.storage_indexes,
                subscribe.proofs,
                registration,
                context,
            )
        }
        ClientMessage::Unsubscribe(unsubscribe) => {
            asked = Asked::Unsubscribed;
            let mut seen = HashSet::new();
            let mut entries = Vec::new();
            let mut parsed = Vec::new();
            for requested in &unsubscribe.storage_indexes {
                if !seen.insert(requested.raw.as_str()) {
                    continue;
                }
                match &requested.parsed {
                    Ok(si) => {
                        parsed.push(*si);
                        entries.push((requested.raw.clone(), SubscriptionStatus::Subscribed));
                    }
                    Err(error) => entries.push((
                        requested.raw.clone(),
                        refused(ErrorCode::MalformedStorageIndex, error.to_string()),
                    )),
                }
            }
            registration.unsubscribe_all(&parsed);
            Status {
                entries,
                ..Status::default()
            }
        }
    };
    (
        Message::Text(ServerMessage::Status(status).to_json().into()),
        asked,
    )
}

fn refused(code: ErrorCode, message: String) -> SubscriptionStatus {
    SubscriptionStatus::Refused { code, message }
}

/// Subscribes to every mutable slot this server holds and says why the others were refused.
fn subscribe_status(
    requested: &[RequestedIndex],
    proofs: Option<ProofRequest>,
    registration: &mut Registration,
    context: &SessionContext,
) -> Status {
    let mut seen = HashSet::with_capacity(requested.len());
    let mut entries = Vec::with_capacity(requested.len());
    let mut accepted: Vec<(usize, StorageIndex)> = Vec::new();
    let mut room = context
        .limits
        .max_subscriptions
        .saturating_sub(registration.subscription_count());
    for item in requested {
        if !seen.insert(item.raw.as_str()) {
            continue;
        }
        let si = match &item.parsed {
            Ok(si) => *si,
            Err(error) => {
                entries.push((
                    item.raw.clone(),
                    refused(ErrorCode::MalformedStorageIndex, error.to_string()),
                ));
                continue;
            }
        };
        let status = match context.slots.state(&si) {
            SlotState::Absent => refused(
                ErrorCode::NotFound,
                "this server holds no share of that slot".to_owned(),
            ),
            SlotState::Immutable => refused(
                ErrorCode::NotMutable,
                "this server holds immutable shares under that storage index; they never change"
                    .to_owned(),
            ),
            SlotState::Mutable { .. } if registration.is_subscribed(&si) => {
                SubscriptionStatus::Subscribed
            }
            SlotState::Mutable { .. } if room == 0 => refused(
                ErrorCode::TooManySubscriptions,
                format!(
                    "this connection already holds {} subscriptions, the most this server allows",
                    context.limits.max_subscriptions
                ),
            ),
            SlotState::Mutable { .. } => {
                room -= 1;
                SubscriptionStatus::Subscribed
            }
        };
        if matches!(status, SubscriptionStatus::Subscribed) {
            accepted.push((entries.len(), si));
        }
        entries.push((item.raw.clone(), status));
    }
    let storage_indexes: Vec<StorageIndex> = accepted.iter().map(|(_, si)| *si).collect();
    registration.subscribe_all_with(&storage_indexes, proofs.is_some());
    // Read the seqnum only after subscribing: a publish in between is then either in this
    // status or in an update that follows it, never in neither.
    let mut seqnums = Vec::with_capacity(accepted.len());
    let mut proof_entries = Vec::new();
    let hints = context.hub.subscriber_hints(&storage_indexes);
    let mut subscribers = Vec::new();
    for ((position, si), hint) in accepted.into_iter().zip(hints) {
        let (state, proof) = match proofs {
            Some(_) => context.slots.state_with_proof(&si),
            None => (context.slots.state(&si), None),
        };
        match state {
            SlotState::Mutable { seqnum } => {
                let raw = entries[position].0.clone();
                // A proof is of the version the status names, or it is left out.
                if let Some(proof) = proof.filter(|p| p.prefix().seqnum() == seqnum) {
                    let proof = match proofs {
                        Some(ProofRequest::WithKeys) => (*proof).clone(),
                        _ => (*proof).clone().without_key(),
                    };
                    proof_entries.push((raw.clone(), proof));
                }
                if let Some(hint) = hint {
                    subscribers.push((raw.clone(), hint));
                }
                seqnums.push((raw, seqnum));
            }
            _ => {
                // Deleted between the two reads: report what is true now.
                registration.unsubscribe_all(&[si]);
                entries[position].1 = refused(
                    ErrorCode::NotFound,
                    "this server holds no share of that slot".to_owned(),
                );
            }
        }
    }
    Status {
        entries,
        seqnums,
        proofs: proof_entries,
        subscribers,
    }
}
