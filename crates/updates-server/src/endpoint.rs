//! The `/v1/mutable_updates` endpoint: accept, TLS, authenticated upgrade, then a session.
//!
//! This is the embeddable part: give it a [`SlotDirectory`] and a stream of [`SlotChange`]s from
//! any source and it serves the protocol.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mutable_updates::nurl::{parse_authorization_header, Swissnum};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::connection::{run_session, SessionContext};
use crate::frames::FrameWatch;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::limits::{Admission, ConnectionBudget, Refusal, RefusalSlot, ReplyBudget};
use crate::metrics::Metrics;
use crate::slots::{SlotChange, SlotDirectory};

/// The request paths answered: the proposal's, and its later revision's.
pub const ENDPOINT_PATHS: [&str; 2] = ["/v1/mutable_updates", "/v1/mutable-updates"];

/// How long shutdown waits for sessions to say goodbye before it stops waiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The push endpoint, independent of where slot changes come from.
pub struct UpdatesEndpoint {
    context: Arc<SessionContext>,
    budget: Arc<ConnectionBudget>,
    secret_digest: [u8; 32],
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for UpdatesEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdatesEndpoint")
            .field("tls", &self.tls.is_some())
            .field("limits", &self.context.limits)
            .finish_non_exhaustive()
    }
}

impl UpdatesEndpoint {
    /// An endpoint that answers status requests from `slots` and authenticates with `swissnum`.
    ///
    /// `tls: None` serves plain `ws://`; the binary allows that only on loopback and only when
    /// asked explicitly.
    pub fn new(
        slots: Arc<dyn SlotDirectory>,
        swissnum: &Swissnum,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(Arc::clone(&metrics)));
        let budget = ConnectionBudget::new(&limits);
        Self {
            context: Arc::new(SessionContext {
                hub,
                slots,
                replies: ReplyBudget::new(limits.max_queued_reply_bytes),
                limits,
                metrics,
            }),
            budget,
            // Comparing digests keeps the comparison constant-time even across lengths.
            secret_digest: Sha256::digest(swissnum.as_bytes()).into(),
            tls: tls.map(TlsAcceptor::from),
        }
    }

    /// The endpoint's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.context.metrics)
    }

    /// Connections held now (handshakes and sessions) and the most admitted.
    pub fn connection_budget(&self) -> (usize, usize) {
        (self.budget.connections(), self.budget.max_connections())
    }

    /// The subscription index, to publish changes from a source of one's own.
    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.context.hub)
    }

    /// Publishes every change from `changes` until the channel closes.
    pub async fn forward_changes(&self, mut changes: mpsc::Receiver<SlotChange>) {
        while let Some(change) = changes.recv().await {
            self.context
                .metrics
                .slot_changes
                .fetch_add(1, Ordering::Relaxed);
            let (storage_index, seqnum) = (change.storage_index, change.seqnum);
            let delivered = self.context.hub.publish(change);
            tracing::debug!(
                %storage_index,
                seqnum,
                delivered,
                "slot changed"
            );
        }
    }

    /// Accepts connections until `shutdown` turns true, then closes every session with 1001.
    pub async fn serve(&self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        match self.budget.admit(peer.ip()) {
                            Ok(admission) => {
                                let mode = Mode::Session(admission, shutdown.clone());
                                sessions.spawn(self.clone_parts().handle(stream, peer, mode));
                            }
                            Err(refusal) => {
                                self.context.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                                match self.budget.refusal_slot() {
                                    // Told why, within a short deadline, on one of a few slots.
                                    Some(slot) => {
                                        tracing::debug!(%peer, reason = refusal.reason(), "refusing connection");
                                        let mode = Mode::Refuse(refusal, slot);
                                        sessions.spawn(self.clone_parts().handle(stream, peer, mode));
                                    }
                                    // Too many refusals in progress already: close at once.
                                    None => drop(stream),
                                }
                            }
                        }
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        tracing::info!(sessions = sessions.len(), "shutting down: closing sessions");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = sessions.len(),
                "sessions still open after the grace period"
            );
            sessions.abort_all();
        }
    }

    fn clone_parts(&self) -> ConnectionHandler {
        ConnectionHandler {
            context: Arc::clone(&self.context),
            secret_digest: self.secret_digest,
            tls: self.tls.clone(),
        }
    }
}

/// What one accepted connection needs, moved into its task.
struct ConnectionHandler {
    context: Arc<SessionContext>,
    secret_digest: [u8; 32],
    tls: Option<TlsAcceptor>,
}

/// What an accepted connection is for.
enum Mode {
    /// A session, admitted into the budget.
    Session(Admission, watch::Receiver<bool>),
    /// Over the budget: finish the handshake briefly and say why it is refused.
    Refuse(Refusal, RefusalSlot),
}

/// Longest a refused connection is held to be told why.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(3);

impl ConnectionHandler {
    async fn handle(self, stream: TcpStream, peer: SocketAddr, mode: Mode) {
        // One deadline for the TLS and the WebSocket handshakes together (finding 11: each had
        // its own, so a slow client was held twice as long as the spec says).
        let allowed = match &mode {
            Mode::Session(..) => self.context.limits.handshake_timeout,
            Mode::Refuse(..) => self.context.limits.handshake_timeout.min(REFUSAL_DEADLINE),
        };
        let deadline = tokio::time::Instant::now() + allowed;
        match self.tls.clone() {
            Some(acceptor) => {
                let handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream)).await;
                match handshake {
                    Ok(Ok(tls_stream)) => self.upgrade(tls_stream, peer, deadline, mode).await,
                    Ok(Err(error)) => {
                        self.context
                            .metrics
                            .handshake_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                    }
                    Err(_) => {
                        self.context
                            .metrics
                            .handshake_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            }
            None => self.upgrade(stream, peer, deadline, mode).await,
        }
    }

    async fn upgrade<S>(
        self,
        stream: S,
        peer: SocketAddr,
        deadline: tokio::time::Instant,
        mode: Mode,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limits = &self.context.limits;
        // Small buffers: a server holding thousands of idle subscribers pays for them per socket.
        let config = WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0)
            .max_write_buffer_size(limits.max_reply_bytes + 64 * 1024)
            .max_message_size(Some(limits.max_message_bytes))
            .max_frame_size(Some(limits.max_message_bytes));
        let secret_digest = self.secret_digest;
        let metrics = Arc::clone(&self.context.metrics);
        #[allow(clippy::result_large_err)] // the signature is tungstenite's callback type
        let check = move |request: &Request, response: Response| {
            check_upgrade(request, response, &secret_digest, &metrics)
        };
        let upgraded = tokio::time::timeout_at(
            deadline,
            tokio_tungstenite::accept_hdr_async_with_config(
                FrameWatch::new(stream),
                check,
                Some(config),
            ),
        )
        .await;
        let mut socket = match upgraded {
            Ok(Ok(socket)) => socket,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "WebSocket upgrade refused or failed");
                return;
            }
            Err(_) => {
                self.context
                    .metrics
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "WebSocket upgrade timed out");
                return;
            }
        };
        let (mut admission, shutdown) = match mode {
            Mode::Session(admission, shutdown) => (admission, shutdown),
            Mode::Refuse(refusal, _slot) => {
                close_refused(&mut socket, refusal).await;
                return;
            }
        };
        if let Err(refusal) = admission.authenticate() {
            self.context
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, reason = refusal.reason(), "refusing session");
            drop(admission);
            close_refused(&mut socket, refusal).await;
            return;
        }
        let metrics = Arc::clone(&self.context.metrics);
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, "subscriber connected");
        run_session(socket, Arc::clone(&self.context), shutdown).await;
        metrics.connections.fetch_sub(1, Ordering::Relaxed);
        drop(admission);
    }
}

/// Closes a refused connection with 1013 (try again later) and the reason, briefly waiting for
/// the client's reply so that it reads the frame before the socket goes.
async fn close_refused<S>(socket: &mut WebSocketStream<S>, refusal: Refusal)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Again,
        reason: Utf8Bytes::from_static(refusal.reason()),
    };
    let closing = async {
        socket.send(Message::Close(Some(frame))).await?;
        while let Some(Ok(_)) = socket.next().await {}
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
}

/// Refuses the upgrade unless the path is the endpoint's and the secret is right.
#[allow(clippy::result_large_err)] // the signature is tungstenite's callback type
fn check_upgrade(
    request: &Request,
    response: Response,
    secret_digest: &[u8; 32],
    metrics: &Metrics,
) -> Result<Response, ErrorResponse> {
    if !ENDPOINT_PATHS.contains(&request.uri().path()) {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            "this server answers only /v1/mutable_updates",
        ));
    }
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_authorization_header);
    let authorized = presented.is_some_and(|secret| {
        let digest: [u8; 32] = Sha256::digest(&secret).into();
        bool::from(digest.ct_eq(secret_digest))
    });
    if !authorized {
        metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        return Err(refusal(
            StatusCode::UNAUTHORIZED,
            "missing or wrong Authorization: Tahoe-LAFS <swissnum>",
        ));
    }
    Ok(response)
}

fn refusal(status: StatusCode, body: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{body}\n")));
    *response.status_mut() = status;
    response
}
