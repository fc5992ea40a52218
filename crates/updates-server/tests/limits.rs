//! The spec's limits and lifetime rules, each with its expected close code or reply, against the
//! endpoint library over loopback with an in-memory slot directory (the real-grid tests cover the
//! share watcher and TLS).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mutable_updates::client::{connect_insecure_loopback, InsecureWebSocket, PATH, PATH_REVISED};
use mutable_updates::message::{ClientMessage, ErrorCode, ServerMessage, SubscriptionStatus};
use mutable_updates::nurl::Swissnum;
use tahoe_caps::StorageIndex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use updates_server::endpoint::UpdatesEndpoint;
use updates_server::hub::Hub;
use updates_server::limits::Limits;
use updates_server::slots::{SlotChange, SlotDirectory, SlotState};

#[derive(Default)]
struct MemorySlots(Mutex<HashMap<StorageIndex, SlotState>>);

impl SlotDirectory for MemorySlots {
    fn state(&self, storage_index: &StorageIndex) -> SlotState {
        self.0
            .lock()
            .unwrap()
            .get(storage_index)
            .copied()
            .unwrap_or(SlotState::Absent)
    }
}

fn si(n: u8) -> StorageIndex {
    StorageIndex::from_bytes([n; 16])
}

fn swissnum() -> Swissnum {
    Swissnum::new("limitstestswissnumlimitstest1234".to_owned())
}

struct Server {
    address: SocketAddr,
    hub: Arc<Hub>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: Limits) -> Server {
    let slots = MemorySlots::default();
    {
        let mut map = slots.0.lock().unwrap();
        for n in 1..=20 {
            map.insert(si(n), SlotState::Mutable { seqnum: 1 });
        }
        map.insert(si(99), SlotState::Immutable);
    }
    let endpoint = Arc::new(UpdatesEndpoint::new(
        Arc::new(slots),
        &swissnum(),
        None,
        limits,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let hub = endpoint.hub();
    let task = tokio::spawn(async move { endpoint.serve(listener, shutdown_rx).await });
    Server {
        address,
        hub,
        shutdown,
        task,
    }
}

async fn connect(server: &Server) -> InsecureWebSocket {
    connect_insecure_loopback(server.address, &swissnum(), PATH)
        .await
        .unwrap()
}

async fn send_text(socket: &mut InsecureWebSocket, text: impl Into<String>) {
    socket
        .send(Message::Text(text.into().into()))
        .await
        .unwrap();
}

/// Next protocol message, or the close frame's code, skipping pings.
enum Next {
    Message(ServerMessage),
    Closed(Option<CloseCode>),
    Nothing,
}

async fn next(socket: &mut InsecureWebSocket, wait: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Next::Nothing,
            Ok(None) | Ok(Some(Err(_))) => return Next::Closed(None),
            Ok(Some(Ok(Message::Text(text)))) => {
                return Next::Message(ServerMessage::parse(text.as_str()).unwrap())
            }
            Ok(Some(Ok(Message::Close(frame)))) => return Next::Closed(frame.map(|f| f.code)),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Reads until the server closes; returns the close code.
async fn close_code(socket: &mut InsecureWebSocket) -> Option<CloseCode> {
    loop {
        match next(socket, Duration::from_secs(10)).await {
            Next::Closed(code) => return code,
            Next::Nothing => panic!("the server did not close the connection"),
            Next::Message(_) => continue,
        }
    }
}

async fn expect_status(socket: &mut InsecureWebSocket) -> mutable_updates::message::Status {
    match next(socket, Duration::from_secs(5)).await {
        Next::Message(ServerMessage::Status(status)) => status,
        Next::Message(other) => panic!("expected a status, got {other:?}"),
        Next::Closed(code) => panic!("closed ({code:?}) instead of a status"),
        Next::Nothing => panic!("no status"),
    }
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_with_1009() {
    let server = start(Limits {
        max_message_bytes: 1024,
        ..Limits::default()
    })
    .await;
    let mut socket = connect(&server).await;
    let huge = format!(
        r#"{{"tahoe-mutable-notification-version": 1, "subscribe": ["{}"]}}"#,
        "a".repeat(4096)
    );
    send_text(&mut socket, huge).await;
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Size));
}

#[tokio::test]
async fn a_client_over_the_message_rate_is_closed_with_1008() {
    let server = start(Limits {
        max_messages_per_second: 5,
        rate_window: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut socket = connect(&server).await;
    for _ in 0..50 {
        if socket
            .send(Message::Text(
                ClientMessage::subscribe([si(1)]).to_json().into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Policy));
}

#[tokio::test]
async fn a_reader_that_falls_behind_is_closed_with_1008_and_memory_stays_bounded() {
    let server = start(Limits {
        max_queued_updates: 5,
        ..Limits::default()
    })
    .await;
    let mut socket = connect(&server).await;
    send_text(&mut socket, ClientMessage::subscribe([si(1)]).to_json()).await;
    expect_status(&mut socket).await;
    // Many changes at once, faster than the session can drain its queue of five.
    for seqnum in 2..2000 {
        server.hub.publish(SlotChange::new(si(1), seqnum));
    }
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Policy));
}

#[tokio::test]
async fn subscriptions_past_the_limit_answer_too_many_subscriptions() {
    let server = start(Limits {
        max_subscriptions: 2,
        ..Limits::default()
    })
    .await;
    let mut socket = connect(&server).await;
    send_text(
        &mut socket,
        ClientMessage::subscribe([si(1), si(2), si(3)]).to_json(),
    )
    .await;
    let status = expect_status(&mut socket).await;
    assert_eq!(
        status.get(&si(1).to_string()),
        Some(&SubscriptionStatus::Subscribed)
    );
    assert_eq!(
        status.get(&si(2).to_string()),
        Some(&SubscriptionStatus::Subscribed)
    );
    assert!(matches!(
        status.get(&si(3).to_string()),
        Some(SubscriptionStatus::Refused {
            code: ErrorCode::TooManySubscriptions,
            ..
        })
    ));
    // Subscribing again to a held SI is not a new subscription.
    send_text(&mut socket, ClientMessage::subscribe([si(1)]).to_json()).await;
    let status = expect_status(&mut socket).await;
    assert_eq!(
        status.get(&si(1).to_string()),
        Some(&SubscriptionStatus::Subscribed)
    );
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed() {
    let server = start(Limits {
        ping_interval: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut socket = connect(&server).await;
    // Not reading means not answering: tungstenite replies to pings only as it reads.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Policy));
}

#[tokio::test]
async fn a_client_that_reads_stays_connected_across_pings() {
    let server = start(Limits {
        ping_interval: Duration::from_millis(100),
        ..Limits::default()
    })
    .await;
    let mut socket = connect(&server).await;
    assert!(matches!(
        next(&mut socket, Duration::from_millis(800)).await,
        Next::Nothing
    ));
    send_text(&mut socket, ClientMessage::subscribe([si(1)]).to_json()).await;
    expect_status(&mut socket).await;
}

#[tokio::test]
async fn bad_messages_get_error_replies_and_keep_the_connection() {
    let server = start(Limits::default()).await;
    let mut socket = connect(&server).await;
    let cases: [(&str, ErrorCode); 5] = [
        ("{not json", ErrorCode::MalformedMessage),
        ("[1, 2]", ErrorCode::MalformedMessage),
        (r#"{"subscribe": []}"#, ErrorCode::UnsupportedVersion),
        (
            r#"{"tahoe-mutable-notification-version": 2, "subscribe": []}"#,
            ErrorCode::UnsupportedVersion,
        ),
        (
            r#"{"tahoe-mutable-notification-version": 1, "hello": true}"#,
            ErrorCode::UnknownMessage,
        ),
    ];
    for (text, code) in cases {
        send_text(&mut socket, text).await;
        match next(&mut socket, Duration::from_secs(5)).await {
            Next::Message(ServerMessage::Error(error)) => {
                assert_eq!(error.code, code, "for {text}")
            }
            _ => panic!("expected an error reply to {text}"),
        }
    }
    socket
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    match next(&mut socket, Duration::from_secs(5)).await {
        Next::Message(ServerMessage::Error(error)) => {
            assert_eq!(error.code, ErrorCode::MalformedMessage)
        }
        _ => panic!("expected an error reply to a binary frame"),
    }
    let deep = format!(
        r#"{{"tahoe-mutable-notification-version": 1, "subscribe": {}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    send_text(&mut socket, deep).await;
    assert!(matches!(
        next(&mut socket, Duration::from_secs(5)).await,
        Next::Message(ServerMessage::Error(_))
    ));
    // Still serving.
    send_text(
        &mut socket,
        ClientMessage::subscribe([si(1), si(99)]).to_json(),
    )
    .await;
    let status = expect_status(&mut socket).await;
    assert_eq!(
        status.get(&si(1).to_string()),
        Some(&SubscriptionStatus::Subscribed)
    );
    assert!(matches!(
        status.get(&si(99).to_string()),
        Some(SubscriptionStatus::Refused {
            code: ErrorCode::NotMutable,
            ..
        })
    ));
}

#[tokio::test]
async fn maximum_delay_batches_updates_into_one_message() {
    let server = start(Limits::default()).await;
    let mut socket = connect_insecure_loopback(server.address, &swissnum(), PATH_REVISED)
        .await
        .unwrap();
    send_text(
        &mut socket,
        ClientMessage::subscribe_batched([si(1), si(2)], Duration::from_millis(300)).to_json(),
    )
    .await;
    expect_status(&mut socket).await;
    for (n, seqnum) in [(1, 2), (2, 5), (1, 3)] {
        server.hub.publish(SlotChange::new(si(n), seqnum));
    }
    match next(&mut socket, Duration::from_secs(5)).await {
        Next::Message(ServerMessage::Updates(batch)) => {
            assert_eq!(batch.storage_indexes.len(), 2, "{batch:?}");
            assert!(batch.seqnums.contains(&(si(1), 3)));
            assert!(batch.seqnums.contains(&(si(2), 5)));
        }
        _ => panic!("expected one batched updates message"),
    }
    assert!(matches!(
        next(&mut socket, Duration::from_millis(500)).await,
        Next::Nothing
    ));
}

#[tokio::test]
async fn unsubscribed_and_unknown_indexes_get_no_updates() {
    let server = start(Limits::default()).await;
    let mut socket = connect(&server).await;
    send_text(
        &mut socket,
        ClientMessage::subscribe([si(1), si(2), si(50)]).to_json(),
    )
    .await;
    let status = expect_status(&mut socket).await;
    assert!(matches!(
        status.get(&si(50).to_string()),
        Some(SubscriptionStatus::Refused {
            code: ErrorCode::NotFound,
            ..
        })
    ));
    send_text(&mut socket, ClientMessage::unsubscribe([si(1)]).to_json()).await;
    expect_status(&mut socket).await;
    for n in [1, 50, 2] {
        server.hub.publish(SlotChange::new(si(n), 7));
    }
    match next(&mut socket, Duration::from_secs(5)).await {
        Next::Message(ServerMessage::Update(update)) => {
            assert_eq!(update.storage_index, si(2));
            assert_eq!(update.seqnum, Some(7));
        }
        _ => panic!("expected the update for the one held SI"),
    }
    assert!(matches!(
        next(&mut socket, Duration::from_millis(300)).await,
        Next::Nothing
    ));
}

#[tokio::test]
async fn shutdown_closes_every_session_with_1001() {
    let server = start(Limits::default()).await;
    let mut first = connect(&server).await;
    let mut second = connect(&server).await;
    send_text(&mut first, ClientMessage::subscribe([si(1)]).to_json()).await;
    expect_status(&mut first).await;
    server.shutdown.send(true).unwrap();
    assert_eq!(close_code(&mut first).await, Some(CloseCode::Away));
    assert_eq!(close_code(&mut second).await, Some(CloseCode::Away));
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_slowloris_upgrade_is_dropped_after_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    stream
        .write_all(b"GET /v1/mutable_updates HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the half-sent upgrade was not dropped"
    );
}

#[tokio::test]
async fn a_status_larger_than_the_reply_bound_closes_with_1009() {
    let server = start(Limits {
        max_reply_bytes: 64 * 1024,
        ..Limits::default()
    })
    .await;
    let mut socket = connect(&server).await;
    // Short, distinct, malformed entries: each costs a few bytes to send and a long refusal to
    // answer, so the status is many times the request.
    let items: Vec<String> = (0..2_000).map(|n| format!("\"x{n}\"")).collect();
    let request = format!(
        r#"{{"tahoe-mutable-notification-version": 1, "subscribe": [{}]}}"#,
        items.join(",")
    );
    assert!(request.len() < 64 * 1024);
    send_text(&mut socket, request).await;
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Size));
}

// ---- issue 12: connection budget, fragments, pings, idleness, one handshake deadline ----------

/// Reads until the server closes; returns the close code and reason.
async fn close_frame(
    socket: &mut InsecureWebSocket,
    wait: Duration,
) -> (Option<CloseCode>, String) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("the server did not close the connection within {wait:?}"),
            Ok(None) | Ok(Some(Err(_))) => return (None, String::new()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return (
                    frame.as_ref().map(|f| f.code),
                    frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                )
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test]
async fn past_the_global_budget_connections_are_refused_with_1013_and_a_reason() {
    let server = start(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let mut first = connect(&server).await;
    let _second = connect(&server).await;
    let mut third = connect(&server).await;
    let (code, reason) = close_frame(&mut third, Duration::from_secs(5)).await;
    assert_eq!(code, Some(CloseCode::Again));
    assert!(reason.contains("connection limit"), "{reason}");
    // The admitted ones are unaffected.
    send_text(&mut first, ClientMessage::subscribe([si(1)]).to_json()).await;
    assert!(expect_status(&mut first)
        .await
        .get(&si(1).to_string())
        .is_some());
    // A place freed is a place for the next one.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = connect(&server).await;
    send_text(&mut fourth, ClientMessage::subscribe([si(2)]).to_json()).await;
    expect_status(&mut fourth).await;
    let _ = server.shutdown.send(true);
}

#[tokio::test]
async fn one_address_gets_only_its_share_of_sessions() {
    let server = start(Limits {
        max_authenticated_per_address: 2,
        ..Limits::default()
    })
    .await;
    let _a = connect(&server).await;
    let _b = connect(&server).await;
    let mut c = connect(&server).await;
    let (code, reason) = close_frame(&mut c, Duration::from_secs(5)).await;
    assert_eq!(code, Some(CloseCode::Again));
    assert!(reason.contains("your address"), "{reason}");
    let _ = server.shutdown.send(true);
}

#[tokio::test]
async fn a_fragmented_message_left_unfinished_closes_with_1008() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let server = start(Limits {
        fragment_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut socket = connect(&server).await;
    let started = std::time::Instant::now();
    let first = Frame::message(vec![b'['; 60_000], OpCode::Data(Data::Text), false);
    socket.send(Message::Frame(first)).await.unwrap();
    // We keep answering pings (the client library does), which used to keep it open for good.
    let (code, reason) = close_frame(&mut socket, Duration::from_secs(5)).await;
    let after = started.elapsed();
    assert_eq!(code, Some(CloseCode::Policy), "{reason}");
    assert!(reason.contains("fragmented"), "{reason}");
    assert!(
        after >= Duration::from_millis(300),
        "closed after {after:?}"
    );
    println!("unfinished fragment closed after {after:?} (limit 300 ms)");
    // A fragmented message that is finished in time is fine.
    let mut socket = connect(&server).await;
    let text = ClientMessage::subscribe([si(3)]).to_json();
    let (head, tail) = text.split_at(10);
    socket
        .send(Message::Frame(Frame::message(
            head.as_bytes().to_vec(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
    socket
        .send(Message::Frame(Frame::message(
            tail.as_bytes().to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
    expect_status(&mut socket).await;
    // Reading (so answering pings) past the fragment limit: nothing closes it.
    assert!(matches!(
        next(&mut socket, Duration::from_millis(700)).await,
        Next::Nothing
    ));
    send_text(&mut socket, ClientMessage::subscribe([si(4)]).to_json()).await;
    expect_status(&mut socket).await;
    let _ = server.shutdown.send(true);
}

#[tokio::test]
async fn a_ping_flood_is_counted_by_the_rate_meter_and_closed_with_1008() {
    let server = start(Limits {
        max_messages_per_second: 20,
        rate_window: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut socket = connect(&server).await;
    let mut sent = 0;
    let code = loop {
        if socket
            .send(Message::Ping(vec![0u8; 125].into()))
            .await
            .is_err()
        {
            break close_code(&mut socket).await;
        }
        sent += 1;
        if sent % 10 == 0 {
            if let Next::Closed(code) = next(&mut socket, Duration::from_millis(1)).await {
                break code;
            }
        }
        assert!(sent < 10_000, "no close after {sent} pings");
    };
    assert_eq!(code, Some(CloseCode::Policy));
    println!("ping flood closed with 1008 after {sent} pings (limit 20/s over 1 s)");
    let _ = server.shutdown.send(true);
}

#[tokio::test]
async fn a_session_that_holds_and_awaits_nothing_times_out_others_stay() {
    let server = start(Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut idle = connect(&server).await;
    let mut busy = connect(&server).await;
    send_text(&mut busy, ClientMessage::subscribe([si(5)]).to_json()).await;
    expect_status(&mut busy).await;
    // Waiting for a slot this server does not hold yet is not idleness.
    let mut waiting = connect(&server).await;
    send_text(&mut waiting, ClientMessage::subscribe([si(77)]).to_json()).await;
    expect_status(&mut waiting).await;
    // Never asking for anything is; so is unsubscribing from everything.
    let mut emptied = connect(&server).await;
    send_text(&mut emptied, ClientMessage::subscribe([si(6)]).to_json()).await;
    expect_status(&mut emptied).await;
    send_text(&mut emptied, ClientMessage::unsubscribe([si(6)]).to_json()).await;
    expect_status(&mut emptied).await;
    let (code, _) = close_frame(&mut emptied, Duration::from_secs(5)).await;
    assert_eq!(code, Some(CloseCode::Policy));
    let (code, reason) = close_frame(&mut idle, Duration::from_secs(5)).await;
    assert_eq!(code, Some(CloseCode::Policy));
    assert!(reason.contains("no subscription"), "{reason}");
    assert!(matches!(
        next(&mut busy, Duration::from_millis(900)).await,
        Next::Nothing
    ));
    server.hub.publish(SlotChange::new(si(5), 2));
    assert!(matches!(
        next(&mut busy, Duration::from_secs(2)).await,
        Next::Message(ServerMessage::Update(_))
    ));
    let _ = server.shutdown.send(true);
}

/// Finding 11: the TLS handshake and the upgrade share one deadline. A client slow in both
/// (TLS after 60 % of the deadline, then the upgrade request dripped a byte at a time) is
/// dropped at the deadline, not after twice it.
#[tokio::test]
async fn tls_and_upgrade_together_get_one_handshake_deadline() {
    use tokio::io::AsyncWriteExt as _;
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = generated.cert.pem();
    let key_pem = generated.key_pair.serialize_pem();
    let tls =
        mutable_updates::pinning::server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
            .unwrap();
    let spki = mutable_updates::pinning::spki_hash_of_pem(cert_pem.as_bytes()).unwrap();
    let deadline = Duration::from_millis(1000);
    let endpoint = Arc::new(UpdatesEndpoint::new(
        Arc::new(MemorySlots::default()),
        &swissnum(),
        Some(tls),
        Limits {
            handshake_timeout: deadline,
            ..Limits::default()
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move { endpoint.serve(listener, shutdown_rx).await });

    let started = std::time::Instant::now();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(deadline.mul_f64(0.6)).await;
    let connector =
        tokio_rustls::TlsConnector::from(mutable_updates::pinning::pinned_client_config(spki));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1".to_owned()).unwrap();
    let mut stream = connector
        .connect(name, tcp)
        .await
        .expect("TLS within the deadline");
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let mut dropped_after = None;
    for byte in request.bytes() {
        if stream.write_all(&[byte]).await.is_err() || stream.flush().await.is_err() {
            dropped_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > deadline * 3 {
            break;
        }
    }
    // A write may still succeed just after the close: read to see the end for sure.
    let dropped_after = match dropped_after {
        Some(at) => at,
        None => panic!("still open {:?} after connecting", started.elapsed()),
    };
    println!("slow TLS (600 ms) + slow upgrade: dropped {dropped_after:?} after connect (deadline {deadline:?})");
    assert!(
        dropped_after < deadline + Duration::from_millis(400),
        "{dropped_after:?}"
    );
    let _ = shutdown.send(true);
}
