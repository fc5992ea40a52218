//! The client against a real TLS + WebSocket server on loopback: pinning and authentication.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// tungstenite's callback signature fixes the error type.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mutable_updates::client::{self, ConnectError, PATH};
use mutable_updates::nurl::{authorization_matches, Nurl, Swissnum};
use mutable_updates::pinning::{server_config_from_pem, spki_hash_of_pem};
use mutable_updates::{ClientMessage, ServerMessage};
use tahoe_caps::StorageIndex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy";

struct TestServer {
    addr: SocketAddr,
    /// How many HTTP upgrade requests reached the server: a pin mismatch must leave it at 0.
    upgrades_seen: Arc<AtomicUsize>,
    spki_hash: [u8; 32],
}

fn make_cert() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (made.cert.pem(), made.key_pair.serialize_pem())
}

/// Answers the upgrade only on PATH and only with the right swissnum, then echoes messages.
async fn serve_websocket<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    swissnum: Swissnum,
    upgrades_seen: Arc<AtomicUsize>,
) {
    let callback =
        move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            upgrades_seen.fetch_add(1, Ordering::SeqCst);
            let authorized = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| authorization_matches(v, &swissnum));
            let status = if request.uri().path() != PATH {
                404
            } else if !authorized {
                401
            } else {
                return Ok(response);
            };
            Err(http::Response::builder().status(status).body(None).unwrap())
        };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            let incoming = ClientMessage::parse(text.as_str()).unwrap();
            let ClientMessage::Subscribe(sub) = incoming else {
                continue;
            };
            let mut status = mutable_updates::Status::new();
            for requested in sub.storage_indexes {
                status.push(
                    requested.raw,
                    mutable_updates::SubscriptionStatus::Subscribed,
                );
            }
            let reply = ServerMessage::Status(status).to_json();
            if socket.send(Message::text(reply)).await.is_err() {
                return;
            }
        }
    }
}

async fn start_tls_server(bind: &str) -> Option<TestServer> {
    let (cert_pem, key_pem) = make_cert();
    let config = server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let spki_hash = spki_hash_of_pem(cert_pem.as_bytes()).unwrap();
    let acceptor = TlsAcceptor::from(config);
    let listener = TcpListener::bind(bind).await.ok()?;
    let addr = listener.local_addr().unwrap();
    let upgrades_seen = Arc::new(AtomicUsize::new(0));
    let seen = upgrades_seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_websocket(tls, Swissnum::new(SECRET), seen).await;
                }
            });
        }
    });
    Some(TestServer {
        addr,
        upgrades_seen,
        spki_hash,
    })
}

fn nurl_for(server: &TestServer, secret: &str) -> Nurl {
    Nurl::new(
        server.spki_hash,
        server.addr.ip().to_string(),
        server.addr.port(),
        Swissnum::new(secret),
    )
}

fn assert_no_secret(error: &ConnectError) {
    assert!(!error.to_string().contains(SECRET), "{error}");
    assert!(!format!("{error:?}").contains(SECRET), "{error:?}");
}

async fn echo_round_trip<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let si = StorageIndex::from_bytes([7; 16]);
    socket
        .send(Message::text(ClientMessage::subscribe([si]).to_json()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ServerMessage::Status(status) = ServerMessage::parse(reply.to_text().unwrap()).unwrap()
    else {
        panic!("expected a status")
    };
    assert!(status.get(&si.to_base32()).unwrap().is_subscribed());
}

#[tokio::test]
async fn right_pin_and_swissnum_connect() {
    let server = start_tls_server("127.0.0.1:0").await.unwrap();
    let nurl = nurl_for(&server, SECRET);
    let mut socket = client::connect(&nurl, PATH).await.unwrap();
    echo_round_trip(&mut socket).await;
    assert_eq!(server.upgrades_seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn nurl_text_round_trip_connects() {
    let server = start_tls_server("127.0.0.1:0").await.unwrap();
    let nurl: Nurl = nurl_for(&server, SECRET).to_string().parse().unwrap();
    let mut socket = client::connect(&nurl, PATH).await.unwrap();
    echo_round_trip(&mut socket).await;
}

#[tokio::test]
async fn ipv6_loopback_connects() {
    let Some(server) = start_tls_server("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let nurl: Nurl = nurl_for(&server, SECRET).to_string().parse().unwrap();
    assert!(nurl.to_string().contains("@[::1]:"));
    let mut socket = client::connect(&nurl, PATH).await.unwrap();
    echo_round_trip(&mut socket).await;
}

#[tokio::test]
async fn wrong_pin_is_refused_before_any_http() {
    let server = start_tls_server("127.0.0.1:0").await.unwrap();
    let mut nurl = nurl_for(&server, SECRET);
    nurl.spki_hash[0] ^= 1;
    let error = client::connect(&nurl, PATH).await.unwrap_err();
    assert!(
        matches!(error, ConnectError::PinMismatch { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("server certificate does not match the pinned SPKI hash"),
        "{error}"
    );
    assert_no_secret(&error);
    // Give a wrongly sent request time to arrive, then check that none did.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.upgrades_seen.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn wrong_swissnum_gets_401() {
    let server = start_tls_server("127.0.0.1:0").await.unwrap();
    let nurl = nurl_for(&server, "wrongwrongwrongwrongwrongwrong00");
    let error = client::connect(&nurl, PATH).await.unwrap_err();
    assert!(
        matches!(error, ConnectError::Unauthorized { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("401"), "{error}");
    assert!(!error.to_string().contains("wrongwrong"), "{error}");
}

#[tokio::test]
async fn wrong_path_gets_its_status() {
    let server = start_tls_server("127.0.0.1:0").await.unwrap();
    let nurl = nurl_for(&server, SECRET);
    let error = client::connect(&nurl, "/v1/elsewhere").await.unwrap_err();
    assert!(
        matches!(error, ConnectError::HttpStatus { status: 404, .. }),
        "{error:?}"
    );
    assert_no_secret(&error);
    let error = client::connect(&nurl, "no-slash").await.unwrap_err();
    assert!(
        matches!(error, ConnectError::InvalidRequest(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn refused_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let nurl = Nurl::new([0; 32], "127.0.0.1", port, Swissnum::new(SECRET));
    let error = client::connect(&nurl, PATH).await.unwrap_err();
    assert!(matches!(error, ConnectError::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("<redacted>"), "{error}");
    assert_no_secret(&error);
}

#[tokio::test]
async fn not_tls_at_all() {
    // A server that closes at once: a TLS error, not a pin mismatch.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            drop(tcp);
        }
    });
    let nurl = Nurl::new([0; 32], "127.0.0.1", addr.port(), Swissnum::new(SECRET));
    let error = client::connect(&nurl, PATH).await.unwrap_err();
    assert!(matches!(error, ConnectError::Tls { .. }), "{error:?}");
    assert_no_secret(&error);
}

#[tokio::test]
async fn insecure_loopback_mode() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_websocket(tcp, Swissnum::new(SECRET), seen2.clone()));
        }
    });
    let secret = Swissnum::new(SECRET);
    let mut socket = client::connect_insecure_loopback(addr, &secret, PATH)
        .await
        .unwrap();
    echo_round_trip(&mut socket).await;

    let wrong = Swissnum::new("nope");
    let error = client::connect_insecure_loopback(addr, &wrong, PATH)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConnectError::Unauthorized { .. }),
        "{error:?}"
    );

    let public: SocketAddr = "192.0.2.1:80".parse().unwrap();
    let error = client::connect_insecure_loopback(public, &secret, PATH)
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::NotLoopback(_)), "{error:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}
