//! Hostile input against the real `tahoe-updates-server` binary over pinned TLS, beside a
//! synthetic share tree: each case with its expected close code or reply, and the figures it
//! measured printed (`cargo test -p updates-server --test abuse -- --nocapture` shows them).
//!
//! The server runs in its own process with `--exit-when-stdin-closes` and a piped standard input,
//! so it never outlives the test, however the test ends. The whole file takes well under a minute;
//! `TAHOE_NOTIFIER_LONG_TESTS=1` runs heavier variants (more connections, more attempts).
//! Nothing here asserts on time: latencies and timings are printed for docs/reliability.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/share_writer.rs"]
mod share_writer;
use share_writer::write_share;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mutable_updates::client::{connect, SecureWebSocket, PATH};
use mutable_updates::message::{ClientMessage, ErrorCode, ServerMessage, SubscriptionStatus};
use mutable_updates::nurl::{authorization_header_value, Nurl, Swissnum};
use mutable_updates::pinning::pinned_client_config;
use rand::{Rng, SeedableRng};
use tahoe_caps::StorageIndex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// The server's secret in every test; 32 characters like Tahoe's.
const SWISSNUM: &str = "abusetestswissnumabusetestswiss1";

fn long_tests() -> bool {
    std::env::var_os("TAHOE_NOTIFIER_LONG_TESTS").is_some_and(|v| v == "1")
}

fn si(n: u32) -> StorageIndex {
    let mut bytes = [0x5c; 16];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    StorageIndex::from_bytes(bytes)
}

/// The real server on a temporary share tree. Dropping it closes its stdin, which ends it.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    storage: PathBuf,
    nurl: Nurl,
    _work: tempfile::TempDir,
}

impl Server {
    /// Starts the server on a tree holding `slots` (at seqnum 1), with extra `run` arguments.
    async fn start(slots: &[StorageIndex], extra: &[&str]) -> Server {
        let work = tempfile::tempdir().unwrap();
        let storage = work.path().join("storage");
        std::fs::create_dir_all(storage.join("shares")).unwrap();
        for slot in slots {
            write_share(&storage, slot, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["updates.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = work.path().join("cert.pem");
        let key_path = work.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(work.path().join("swissnum"), format!("{SWISSNUM}\n")).unwrap();
        let nurl_path = work.path().join("nurl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tahoe-updates-server"))
            .arg("run")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--storage-dir")
            .arg(&storage)
            .arg("--tls-cert")
            .arg(&cert_path)
            .arg("--tls-key")
            .arg(&key_path)
            .arg("--swissnum-file")
            .arg(work.path().join("swissnum"))
            .arg("--nurl-file")
            .arg(&nurl_path)
            .arg("--exit-when-stdin-closes")
            // Every client of these tests comes from 127.0.0.1, attackers and the legitimate
            // one alike: the per-address caps (tested in tests/fd_flood.rs and limits.rs) are
            // lifted so that each test reaches the limit it is about.
            .args(["--max-handshakes-per-address", "100000"])
            .args(["--max-sessions-per-address", "100000"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start tahoe-updates-server");
        let stdin = child.stdin.take();
        let started = Instant::now();
        let nurl = loop {
            if let Ok(text) = std::fs::read_to_string(&nurl_path) {
                if let Ok(nurl) = text.trim().parse::<Nurl>() {
                    break nurl;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server wrote no NURL within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Server {
            child,
            stdin,
            storage,
            nurl,
            _work: work,
        }
    }

    fn write(&self, storage_index: &StorageIndex, seqnum: u64) {
        write_share(&self.storage, storage_index, seqnum);
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn connect(&self) -> SecureWebSocket {
        connect(&self.nurl, PATH).await.expect("connect")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of /proc/<pid>/status in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[derive(Debug)]
enum Next {
    Message(ServerMessage),
    /// A close frame: its code and its reason (read in failure messages).
    Closed(Option<CloseCode>, #[allow(dead_code)] String),
    /// The connection ended without a close frame (reset, EOF, error).
    Dropped(#[allow(dead_code)] String),
    Nothing,
}

async fn next(socket: &mut SecureWebSocket, wait: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Next::Nothing,
            Ok(None) => return Next::Dropped("end of stream".to_owned()),
            Ok(Some(Err(e))) => return Next::Dropped(e.to_string()),
            Ok(Some(Ok(Message::Text(text)))) => {
                return Next::Message(ServerMessage::parse(text.as_str()).expect("server JSON"))
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Next::Closed(
                    frame.as_ref().map(|f| f.code),
                    frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                )
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Reads until the connection ends; skips updates.
async fn ending(socket: &mut SecureWebSocket, wait: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(socket, left).await {
            Next::Message(_) => {}
            other => return other,
        }
    }
}

async fn subscribe(socket: &mut SecureWebSocket, sis: Vec<StorageIndex>) {
    socket
        .send(Message::Text(
            ClientMessage::subscribe(sis).to_json().into(),
        ))
        .await
        .unwrap();
    match next(socket, Duration::from_secs(10)).await {
        Next::Message(ServerMessage::Status(_)) => {}
        other => panic!("expected a status, got {other:?}"),
    }
}

/// Waits for the update of `storage_index` to `seqnum`; `None` if it does not come in `wait`.
async fn await_update(
    socket: &mut SecureWebSocket,
    storage_index: StorageIndex,
    seqnum: u64,
    wait: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let deadline = started + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next(socket, left).await {
            Next::Message(ServerMessage::Update(update))
                if update.storage_index == storage_index
                    && update.seqnum.is_some_and(|s| s >= seqnum) =>
            {
                return Some(started.elapsed())
            }
            Next::Message(_) => {}
            other => {
                eprintln!("no update of {storage_index} to {seqnum}: {other:?}");
                return None;
            }
        }
    }
}

/// Write-to-receipt latencies of `count` publishes of `storage_index`, starting at `first_seqnum`.
async fn latencies(
    server: &Server,
    socket: &mut SecureWebSocket,
    storage_index: StorageIndex,
    first_seqnum: u64,
    count: u64,
) -> Vec<f64> {
    let mut millis = Vec::new();
    for seqnum in first_seqnum..first_seqnum + count {
        server.write(&storage_index, seqnum);
        let latency = await_update(socket, storage_index, seqnum, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the legitimate client missed seqnum {seqnum}"));
        millis.push(latency.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    millis
}

fn summary(values: &[f64]) -> String {
    if values.is_empty() {
        return "no samples".to_owned();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    let at = |f: f64| sorted[((sorted.len() - 1) as f64 * f).round() as usize];
    format!(
        "n={} mean={mean:.2} p50={:.2} p95={:.2} max={:.2} ms",
        sorted.len(),
        at(0.5),
        at(0.95),
        at(1.0)
    )
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_read_are_dropped_by_policy_and_memory_stays_bounded() {
    let idle_count = if long_tests() { 5_000 } else { 1_000 };
    let hot = si(1);
    let server = Server::start(&[hot], &["--ping-interval", "1"]).await;
    let pid = server.pid();
    let rss_start = proc_kib(pid, "VmRSS");

    // Subscribe and never read again (not even the status, nor the server's pings).
    let nurl = Arc::new(server.nurl.clone());
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..idle_count {
        let nurl = Arc::clone(&nurl);
        let gate = Arc::clone(&gate);
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let mut socket = connect(&nurl, PATH).await.expect("connect");
            socket
                .send(Message::Text(
                    ClientMessage::subscribe([hot]).to_json().into(),
                ))
                .await
                .unwrap();
            socket
        });
    }
    let mut idle = Vec::with_capacity(idle_count);
    while let Some(socket) = connecting.join_next().await {
        idle.push(socket.unwrap());
    }
    let rss_connected = proc_kib(pid, "VmRSS");
    // Connected after the idle ones, so that it is reading (and answering pings) from the start.
    let mut legit = server.connect().await;
    subscribe(&mut legit, vec![hot]).await;

    // Flood the hot slot while the legitimate client reads and the idle ones do not.
    let peak = Arc::new(AtomicU64::new(0));
    let flooding = Arc::new(AtomicUsize::new(1));
    let sampler = {
        let peak = Arc::clone(&peak);
        let flooding = Arc::clone(&flooding);
        tokio::spawn(async move {
            while flooding.load(Ordering::Relaxed) == 1 {
                peak.fetch_max(proc_kib(pid, "VmRSS"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let flood_for = Duration::from_secs(if long_tests() { 20 } else { 6 });
    let started = Instant::now();
    let mut seqnum = 1u64;
    let mut received = 0u64;
    let mut legit_trouble = None;
    while started.elapsed() < flood_for {
        seqnum += 1;
        server.write(&hot, seqnum);
        // Read what has arrived for the legitimate client; the pause paces the writes at about
        // two hundred a second, a publish storm far beyond what one slot sees from Tahoe.
        loop {
            match next(&mut legit, Duration::from_millis(5)).await {
                Next::Message(ServerMessage::Update(_)) => received += 1,
                Next::Message(_) | Next::Nothing => break,
                other => {
                    legit_trouble.get_or_insert(format!("{other:?} at seqnum {seqnum}"));
                    break;
                }
            }
        }
    }
    assert!(
        legit_trouble.is_none(),
        "legitimate client: {legit_trouble:?}"
    );
    // One more write after the storm: the legitimate client must still get it.
    let last = seqnum + 1;
    server.write(&hot, last);
    let legit_got_last = await_update(&mut legit, hot, last, Duration::from_secs(10)).await;
    flooding.store(0, Ordering::Relaxed);
    sampler.await.unwrap();
    let rss_peak = peak.load(Ordering::Relaxed);
    let hwm = proc_kib(pid, "VmHWM");

    // Now see how each idle connection ended.
    let mut endings = tokio::task::JoinSet::new();
    for mut socket in idle {
        endings.spawn(async move { ending(&mut socket, Duration::from_secs(20)).await });
    }
    let (mut policy, mut dropped, mut other) = (0usize, 0usize, Vec::new());
    // The legitimate client keeps reading meanwhile, as a live client does: it must answer the
    // server's pings (every second here; two unanswered ones close a connection).
    loop {
        tokio::select! {
            end = endings.join_next() => match end {
                None => break,
                Some(end) => match end.unwrap() {
                    Next::Closed(Some(CloseCode::Policy), _) => policy += 1,
                    Next::Dropped(_) => dropped += 1,
                    unexpected => other.push(format!("{unexpected:?}")),
                },
            },
            _ = next(&mut legit, Duration::from_millis(200)) => {}
        }
    }
    let _ = next(&mut legit, Duration::from_millis(500)).await;
    let rss_after = proc_kib(pid, "VmRSS");
    println!(
        "{idle_count} idle connections, {} writes in {:.1} s: closed 1008 {policy}, dropped {dropped}, other {}; \
         legitimate client received {received} updates during the flood and seqnum {last} after it ({legit_got_last:?}); \
         server RSS start {rss_start} KiB, connected {rss_connected} KiB, peak {rss_peak} KiB (VmHWM {hwm} KiB), after {rss_after} KiB",
        last - 2,
        flood_for.as_secs_f64(),
        other.len()
    );
    assert!(other.is_empty(), "unexpected endings: {other:?}");
    assert_eq!(policy + dropped, idle_count);
    assert!(
        legit_got_last.is_some(),
        "the legitimate client stopped receiving"
    );
    // The stated bound: 256 MiB for 1,000 stalled TLS connections (5,000 in the long run: 512).
    let bound = if long_tests() { 512 * 1024 } else { 256 * 1024 };
    assert!(hwm < bound, "server peak RSS {hwm} KiB over {bound} KiB");
    // The legitimate client still works after all that.
    let after = latencies(&server, &mut legit, hot, last + 1, 3).await;
    println!("legitimate latency after: {}", summary(&after));
}

#[tokio::test]
async fn a_subscribe_list_of_100000_indexes_is_closed_with_1009() {
    let server = Server::start(&[si(1)], &[]).await;
    let mut socket = server.connect().await;
    let sis: Vec<StorageIndex> = (0..100_000).map(si).collect();
    let text = ClientMessage::subscribe(sis).to_json();
    println!("100,000-SI subscribe: {} bytes", text.len());
    assert!(text.len() > 1 << 20);
    // The server may close before the whole message is written.
    let _ = socket.send(Message::Text(text.into())).await;
    match ending(&mut socket, Duration::from_secs(10)).await {
        Next::Closed(Some(CloseCode::Size), _) => {}
        other => panic!("expected close 1009, got {other:?}"),
    }
    // Others are unaffected.
    let mut other = server.connect().await;
    subscribe(&mut other, vec![si(1)]).await;
}

/// 10,050 real slots and 1,950 unknown ones in one subscribe: the first 10,000 real ones are
/// subscribed, 50 answer too-many-subscriptions, the unknown ones not-found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_past_10000_answer_too_many_subscriptions_and_a_near_1_mib_list_is_survived()
{
    let held: Vec<StorageIndex> = (0..10_050).map(si).collect();
    let server = Server::start(&held, &[]).await;
    let mut sis = held.clone();
    sis.extend((1_000_000..1_001_950).map(si));
    let mut socket = server.connect().await;
    socket
        .send(Message::Text(
            ClientMessage::subscribe(sis.clone()).to_json().into(),
        ))
        .await
        .unwrap();
    let status = match next(&mut socket, Duration::from_secs(30)).await {
        Next::Message(ServerMessage::Status(status)) => status,
        other => panic!("expected a status, got {other:?}"),
    };
    let mut subscribed = 0;
    let mut too_many = 0;
    let mut not_found = 0;
    for (_, entry) in &status.entries {
        match entry {
            SubscriptionStatus::Subscribed => subscribed += 1,
            SubscriptionStatus::Refused {
                code: ErrorCode::TooManySubscriptions,
                ..
            } => too_many += 1,
            SubscriptionStatus::Refused {
                code: ErrorCode::NotFound,
                ..
            } => not_found += 1,
            SubscriptionStatus::Refused { code, .. } => panic!("unexpected refusal {code}"),
        }
    }
    println!(
        "status ({} bytes): {subscribed} subscribed, {too_many} too-many-subscriptions, {not_found} not-found",
        ServerMessage::Status(status.clone()).to_json().len()
    );
    assert_eq!((subscribed, too_many, not_found), (10_000, 50, 1_950));
    server.write(&held[0], 2);
    assert!(
        await_update(&mut socket, held[0], 2, Duration::from_secs(10))
            .await
            .is_some()
    );

    // A list just under the 1 MiB limit (each SI is 29 bytes on the wire) is accepted, but its
    // status reply is over twice as large. Known limitation: the reply exceeds the server's
    // 2 MiB write buffer and the connection is dropped without a close frame; the server and
    // its other clients carry on. Recorded in docs/reliability.md.
    let total = ((1 << 20) - 256) / 29;
    let mut big = held.clone();
    big.extend((2_000_000..).take(total - held.len()).map(si));
    let text = ClientMessage::subscribe(big.clone()).to_json();
    assert!(text.len() < 1 << 20);
    let mut near_limit = server.connect().await;
    near_limit
        .send(Message::Text(text.clone().into()))
        .await
        .unwrap();
    let outcome = match next(&mut near_limit, Duration::from_secs(30)).await {
        Next::Message(ServerMessage::Status(status)) => {
            format!("status with {} entries", status.entries.len())
        }
        other => format!("{other:?}"),
    };
    println!(
        "subscribe of {} SIs ({} bytes): {outcome}",
        big.len(),
        text.len()
    );
    server.write(&held[0], 3);
    assert!(
        await_update(&mut socket, held[0], 3, Duration::from_secs(10))
            .await
            .is_some()
    );
    let mut after = server.connect().await;
    subscribe(&mut after, vec![held[1]]).await;
}

#[tokio::test]
async fn an_invalid_utf8_text_frame_is_closed_with_1007() {
    let server = Server::start(&[si(1)], &[]).await;
    let mut socket = server.connect().await;
    let payload: Vec<u8> = b"{\"subscribe\": [\"\xc3\x28\"]}".to_vec();
    socket
        .send(Message::Frame(Frame::message(
            payload,
            OpCode::Data(Data::Text),
            true,
        )))
        .await
        .unwrap();
    match ending(&mut socket, Duration::from_secs(10)).await {
        Next::Closed(Some(CloseCode::Invalid), _) => {}
        other => panic!("expected close 1007, got {other:?}"),
    }
}

#[tokio::test]
async fn floods_of_bad_messages_get_error_replies_then_1008_and_oversized_ones_1009() {
    let server = Server::start(&[si(1)], &[]).await;
    let pid = server.pid();
    // Within the rate limit (a 1,000-message burst): every bad message gets an error reply.
    let mut socket = server.connect().await;
    let deep = format!(
        r#"{{"tahoe-mutable-notification-version": 1, "subscribe": {}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let bad: [(&str, String); 4] = [
        (
            "invalid JSON",
            "{\"tahoe-mutable-notification-version\": 1, \"subscribe\": [".to_owned(),
        ),
        ("deep nesting", deep),
        (
            "wrong type",
            r#"{"tahoe-mutable-notification-version": 1, "subscribe": "x"}"#.to_owned(),
        ),
        ("not an object", "\"\\ud800\"".to_owned()),
    ];
    for (what, text) in &bad {
        for _ in 0..50 {
            socket
                .send(Message::Text(text.clone().into()))
                .await
                .unwrap();
        }
        for _ in 0..50 {
            match next(&mut socket, Duration::from_secs(10)).await {
                Next::Message(ServerMessage::Error(e)) => {
                    assert_eq!(e.code, ErrorCode::MalformedMessage, "{what}")
                }
                other => panic!("{what}: expected an error reply, got {other:?}"),
            }
        }
    }
    socket
        .send(Message::Binary(vec![0xff; 100].into()))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut socket, Duration::from_secs(10)).await,
        Next::Message(ServerMessage::Error(_))
    ));
    subscribe(&mut socket, vec![si(1)]).await;
    // Past the burst: closed by policy.
    let mut sent = 0;
    for _ in 0..3_000 {
        if socket.send(Message::Text("{".into())).await.is_err() {
            break;
        }
        sent += 1;
    }
    match ending(&mut socket, Duration::from_secs(20)).await {
        Next::Closed(Some(CloseCode::Policy), _) => {}
        other => panic!("expected close 1008 after {sent} messages, got {other:?}"),
    }
    // Twenty connections each sending 2 MiB: 1009 each, and the memory comes back.
    let rss_before = proc_kib(pid, "VmRSS");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let nurl = server.nurl.clone();
        tasks.spawn(async move {
            let mut socket = connect(&nurl, PATH).await.unwrap();
            let big = format!("\"{}\"", "a".repeat(2 << 20));
            let _ = socket.send(Message::Text(big.into())).await;
            ending(&mut socket, Duration::from_secs(20)).await
        });
    }
    while let Some(end) = tasks.join_next().await {
        match end.unwrap() {
            Next::Closed(Some(CloseCode::Size), _) => {}
            other => panic!("expected close 1009, got {other:?}"),
        }
    }
    println!(
        "bad-message floods: 200 error replies, 1008 after {sent} messages; 20 × 2 MiB: all 1009; RSS {rss_before} KiB -> {} KiB (VmHWM {} KiB)",
        proc_kib(pid, "VmRSS"),
        proc_kib(pid, "VmHWM")
    );
}

// ---- authentication ----------------------------------------------------------------------------

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls(nurl: &Nurl) -> TlsStream {
    let tcp = TcpStream::connect((nurl.host.as_str(), nurl.port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let connector = tokio_rustls::TlsConnector::from(pinned_client_config(nurl.spki_hash));
    let name = rustls::pki_types::ServerName::try_from(nurl.host.clone()).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Sends an upgrade request with `authorization` on a fresh TLS connection; returns the status
/// line and the time from the request's last byte to the response's first line.
async fn upgrade_attempt(nurl: &Nurl, authorization: &str) -> (String, Duration) {
    let mut stream = tls(nurl).await;
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: {authorization}\r\n\r\n",
        nurl.authority()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let started = Instant::now();
    let mut response = Vec::new();
    let mut buffer = [0u8; 512];
    while !response.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
        }
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&response);
    (text.lines().next().unwrap_or("").to_owned(), elapsed)
}

fn header_for(secret: &str) -> String {
    authorization_header_value(&Swissnum::new(secret.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_swissnums_in_a_tight_loop_get_401_and_legitimate_clients_keep_working() {
    let hot = si(7);
    let server = Server::start(&[hot], &[]).await;
    let mut legit = server.connect().await;
    subscribe(&mut legit, vec![hot]).await;
    let before = latencies(&server, &mut legit, hot, 2, 20).await;

    let attempts = if long_tests() { 20_000 } else { 2_000 };
    let budget = Duration::from_secs(if long_tests() { 300 } else { 15 });
    let done = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut attackers = tokio::task::JoinSet::new();
    for worker in 0..4u64 {
        let nurl = server.nurl.clone();
        let done = Arc::clone(&done);
        let refused = Arc::clone(&refused);
        attackers.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(worker);
            let started = Instant::now();
            while done.fetch_add(1, Ordering::Relaxed) < attempts && started.elapsed() < budget {
                let guess: String = (0..32)
                    .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz234567"[rng.gen_range(0..32)]))
                    .collect();
                let (status, _) = upgrade_attempt(&nurl, &header_for(&guess)).await;
                if status.contains(" 401 ") {
                    refused.fetch_add(1, Ordering::Relaxed);
                } else {
                    panic!("a wrong swissnum got {status:?}");
                }
            }
        });
    }
    let attack_started = Instant::now();
    let mut during = Vec::new();
    let mut seqnum = 22;
    while !attackers.is_empty() {
        during.extend(latencies(&server, &mut legit, hot, seqnum, 5).await);
        seqnum += 5;
        while let Some(joined) = attackers.try_join_next() {
            joined.unwrap();
        }
    }
    let refused = refused.load(Ordering::Relaxed);
    println!(
        "{refused} wrong-swissnum attempts in {:.1} s ({:.0}/s), all 401",
        attack_started.elapsed().as_secs_f64(),
        refused as f64 / attack_started.elapsed().as_secs_f64()
    );
    println!("legitimate update latency before: {}", summary(&before));
    println!("legitimate update latency during: {}", summary(&during));
    assert!(refused > 0);
    // A correct swissnum still gets in.
    let mut late = server.connect().await;
    subscribe(&mut late, vec![hot]).await;
}

#[tokio::test]
async fn the_401_takes_as_long_for_a_near_miss_as_for_a_wild_guess() {
    let server = Server::start(&[si(1)], &[]).await;
    // Shares 31 of 32 characters with the real swissnum, and none.
    let near = format!("{}2", &SWISSNUM[..31]);
    let wild = "z".repeat(32);
    assert_ne!(near, SWISSNUM);
    let rounds = if long_tests() { 2_000 } else { 200 };
    let (mut near_times, mut wild_times) = (Vec::new(), Vec::new());
    // Interleaved, so that drift in machine load hits both alike.
    for _ in 0..rounds {
        let (status, time) = upgrade_attempt(&server.nurl, &header_for(&near)).await;
        assert!(status.contains(" 401 "), "{status}");
        near_times.push(time.as_secs_f64() * 1000.0);
        let (status, time) = upgrade_attempt(&server.nurl, &header_for(&wild)).await;
        assert!(status.contains(" 401 "), "{status}");
        wild_times.push(time.as_secs_f64() * 1000.0);
    }
    let (status, _) = upgrade_attempt(&server.nurl, &header_for(SWISSNUM)).await;
    assert!(status.contains(" 101 "), "the right swissnum got {status}");
    // Printed, not asserted: the comparison is of SHA-256 digests with `subtle`, so it cannot
    // depend on a shared prefix of the secrets; scheduler noise dwarfs nanoseconds anyway.
    println!(
        "401 time, near miss (31-char prefix): {}",
        summary(&near_times)
    );
    println!(
        "401 time, wild guess:                 {}",
        summary(&wild_times)
    );
}

// ---- slowloris -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_stop_a_legitimate_client_and_are_dropped() {
    let hot = si(3);
    let server = Server::start(&[hot], &[]).await;
    let silent_count = if long_tests() { 2_000 } else { 300 };
    let half_http_count = if long_tests() { 500 } else { 100 };
    // TCP connections that never start TLS.
    let mut silent = Vec::new();
    for _ in 0..silent_count {
        let mut stream = TcpStream::connect((server.nurl.host.as_str(), server.nurl.port))
            .await
            .unwrap();
        // The first bytes of a TLS ClientHello, then nothing.
        stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        silent.push(stream);
    }
    // TLS done, then half an upgrade request.
    let mut half = Vec::new();
    for _ in 0..half_http_count {
        let mut stream = tls(&server.nurl).await;
        stream
            .write_all(format!("GET {PATH} HTTP/1.1\r\nHost: x\r\n").as_bytes())
            .await
            .unwrap();
        stream.flush().await.unwrap();
        half.push(stream);
    }
    let started = Instant::now();
    let mut legit = server.connect().await;
    subscribe(&mut legit, vec![hot]).await;
    let connect_time = started.elapsed();
    let during = latencies(&server, &mut legit, hot, 2, 10).await;
    println!(
        "with {silent_count} silent and {half_http_count} half-upgraded connections: legitimate connect+subscribe {:.1} ms, updates {}",
        connect_time.as_secs_f64() * 1000.0,
        summary(&during)
    );
    // The handshake timeout (10 s for TLS and upgrade together) drops every one of them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut silent_dropped = 0;
    for stream in &mut silent {
        let mut buffer = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await
        {
            silent_dropped += 1;
        }
    }
    let mut half_dropped = 0;
    for stream in &mut half {
        let mut buffer = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await
        {
            half_dropped += 1;
        }
    }
    println!(
        "dropped after {:.1} s: {silent_dropped}/{silent_count} silent, {half_dropped}/{half_http_count} half-upgraded",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(silent_dropped, silent_count);
    assert_eq!(half_dropped, half_http_count);
    // And the legitimate client is still served.
    latencies(&server, &mut legit, hot, 12, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sessions_with_1001_and_exits_even_while_stdin_stays_open() {
    let slot = StorageIndex::from_bytes([7; 16]);
    let mut server = Server::start(&[slot], &[]).await;
    let mut client = server.connect().await;
    client
        .send(Message::Text(
            ClientMessage::subscribe(vec![slot]).to_json().into(),
        ))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut client, Duration::from_secs(10)).await,
        Next::Message(ServerMessage::Status(_))
    ));
    // Stdin stays open (held in `server`): only the signal may stop it.
    let killed = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    match next(&mut client, Duration::from_secs(10)).await {
        Next::Closed(Some(CloseCode::Away), _) => {}
        other => panic!("expected close 1001 on SIGTERM, got {other:?}"),
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server did not exit after SIGTERM while its stdin was open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    println!("exited {:?} after the close frame", started.elapsed());
}
