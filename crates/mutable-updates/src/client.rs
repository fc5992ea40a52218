//! A small client: open a pinned, authenticated WebSocket to an updates server.
//!
//! [`connect`] does what the protocol asks of a client: TCP, TLS pinned to the NURL's SPKI hash
//! (a mismatch ends the connection before any HTTP byte is sent), then the WebSocket upgrade
//! with `Authorization: Tahoe-LAFS <swissnum>`. It sets no timeout of its own; wrap it in
//! `tokio::time::timeout` where a hung server must not hang the caller.
//!
//! Errors never carry the swissnum: messages name the server by its redacted NURL at most.

use std::io;
use std::net::SocketAddr;

use http::header::AUTHORIZATION;
use http::HeaderValue;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

use crate::nurl::{authorization_header_value, Nurl, Swissnum};
use crate::pinning::{is_pin_mismatch, pinned_client_config};

/// The endpoint path of the original proposal.
pub const PATH: &str = "/v1/mutable_updates";
/// The endpoint path of the proposal's revision; servers answer on both.
pub const PATH_REVISED: &str = "/v1/mutable-updates";

/// Read and write buffer size of a client WebSocket. tungstenite's defaults (128 KiB each)
/// would be wasted on a connection that mostly idles.
pub const BUFFER_SIZE: usize = 8 * 1024;
/// The largest message a client accepts. A status for 10,000 indexes is about 0.5 MiB.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// A pinned TLS WebSocket to an updates server.
pub type SecureWebSocket = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;
/// A plain WebSocket to a development server on loopback.
pub type InsecureWebSocket = WebSocketStream<TcpStream>;

/// Why a connection could not be opened.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The TCP connection failed (refused, unreachable, name not resolved...).
    #[error("could not connect to {server}: {source}")]
    Connect {
        /// The server, with its swissnum redacted.
        server: String,
        /// The socket error.
        source: io::Error,
    },
    /// The server's certificate is not the one the NURL pins.
    #[error("TLS with {server} failed: server certificate does not match the pinned SPKI hash")]
    PinMismatch {
        /// The server, with its swissnum redacted.
        server: String,
    },
    /// Another TLS failure (protocol, handshake signature, connection closed...).
    #[error("TLS with {server} failed: {reason}")]
    Tls {
        /// The server, with its swissnum redacted.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered `401 Unauthorized`: the swissnum is wrong.
    #[error("{server} refused the swissnum (HTTP 401 Unauthorized)")]
    Unauthorized {
        /// The server, with its swissnum redacted.
        server: String,
    },
    /// The server answered the upgrade with another HTTP status (e.g. 404: no updates here).
    #[error("{server} answered the WebSocket upgrade with HTTP {status}")]
    HttpStatus {
        /// The server, with its swissnum redacted.
        server: String,
        /// The status code.
        status: u16,
    },
    /// The WebSocket handshake failed otherwise.
    #[error("WebSocket handshake with {server} failed: {reason}")]
    WebSocket {
        /// The server, with its swissnum redacted.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The request could not be built (a bad path, for instance).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// `connect_insecure_loopback` was given an address that is not loopback.
    #[error("plain ws:// is allowed only to a loopback address, not {0}")]
    NotLoopback(SocketAddr),
}

/// The WebSocket settings every client connection uses: small buffers, bounded messages.
pub fn client_websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(BUFFER_SIZE)
        .write_buffer_size(BUFFER_SIZE)
        .max_write_buffer_size(4 * BUFFER_SIZE + MAX_MESSAGE_SIZE)
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
}

/// Builds the upgrade request with the (sensitive-marked) `Authorization` header.
fn upgrade_request(url: &str, swissnum: &Swissnum) -> Result<Request, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::InvalidRequest(e.to_string()))?;
    let mut value = HeaderValue::from_str(&authorization_header_value(swissnum))
        .map_err(|_| ConnectError::InvalidRequest("unusable swissnum".to_owned()))?;
    // Keeps the value out of http's Debug output.
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(request)
}

fn check_path(path: &str) -> Result<(), ConnectError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(ConnectError::InvalidRequest(
            "the path must start with \"/\"".to_owned(),
        ))
    }
}

fn classify_ws_error(server: String, error: WsError) -> ConnectError {
    match error {
        WsError::Http(response) if response.status() == http::StatusCode::UNAUTHORIZED => {
            ConnectError::Unauthorized { server }
        }
        WsError::Http(response) => ConnectError::HttpStatus {
            server,
            status: response.status().as_u16(),
        },
        other => ConnectError::WebSocket {
            server,
            reason: other.to_string(),
        },
    }
}

/// Opens a pinned, authenticated WebSocket to the updates server named by `nurl`, at `path`
/// (usually [`PATH`]).
pub async fn connect(nurl: &Nurl, path: &str) -> Result<SecureWebSocket, ConnectError> {
    check_path(path)?;
    let server = nurl.redacted();
    let request = upgrade_request(
        &format!("wss://{}{path}", nurl.authority()),
        nurl.swissnum(),
    )?;
    tracing::debug!(%server, path, "connecting");

    let tcp = TcpStream::connect((nurl.host.as_str(), nurl.port))
        .await
        .map_err(|source| ConnectError::Connect {
            server: server.clone(),
            source,
        })?;
    // Messages are small and latency matters more than packet count.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }

    // The name is not checked (the pin is), but rustls needs one; an IP address sends no SNI.
    // A host that is no valid DNS name (Tor, odd names) gets a fixed placeholder.
    let server_name = ServerName::try_from(nurl.host.clone())
        .or_else(|_| ServerName::try_from("tahoe-storage.invalid"))
        .map_err(|_| ConnectError::InvalidRequest("no usable TLS server name".to_owned()))?;
    let connector = TlsConnector::from(pinned_client_config(nurl.spki_hash));
    let tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| classify_tls_error(server.clone(), e))?;

    let (socket, _response) =
        tokio_tungstenite::client_async_with_config(request, tls, Some(client_websocket_config()))
            .await
            .map_err(|e| classify_ws_error(server.clone(), e))?;
    tracing::debug!(%server, "connected");
    Ok(socket)
}

fn classify_tls_error(server: String, error: io::Error) -> ConnectError {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(e) if is_pin_mismatch(e) => ConnectError::PinMismatch { server },
        Some(e) => ConnectError::Tls {
            server,
            reason: e.to_string(),
        },
        None => ConnectError::Tls {
            server,
            reason: error.to_string(),
        },
    }
}

/// Opens a plain `ws://` WebSocket to a server in insecure development mode. Refuses any
/// address that is not loopback, as the protocol demands.
pub async fn connect_insecure_loopback(
    addr: SocketAddr,
    swissnum: &Swissnum,
    path: &str,
) -> Result<InsecureWebSocket, ConnectError> {
    if !addr.ip().is_loopback() {
        return Err(ConnectError::NotLoopback(addr));
    }
    check_path(path)?;
    let server = format!("ws://{addr}");
    let request = upgrade_request(&format!("ws://{addr}{path}"), swissnum)?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ConnectError::Connect {
            server: server.clone(),
            source,
        })?;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let (socket, _response) =
        tokio_tungstenite::client_async_with_config(request, tcp, Some(client_websocket_config()))
            .await
            .map_err(|e| classify_ws_error(server, e))?;
    Ok(socket)
}
