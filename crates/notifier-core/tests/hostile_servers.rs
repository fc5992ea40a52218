//! The engine against servers that lie or pry (the security review's findings 3, 5, 6, 19), on a
//! real local grid with the updates server's own code beside each storage node:
//!
//! - a hostile updates server floods `updates` for storage indexes nobody asked about: the
//!   client's memory and database stay flat and an honest server's change still arrives;
//! - two grids: each grid's updates servers hear only of that grid's caps, and no cap of one
//!   grid reaches the other grid's gateway (a recording proxy in front of it);
//! - a second engine on the same home is refused, naming the first.
//!
//! The hostile and recording servers are written here: real TLS (a pinned self-signed
//! certificate) and a real WebSocket, speaking the protocol as a server would, but saying what
//! the test wants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use local_grid::{Format, Grid};
use mutable_updates::message::{ClientMessage, ServerMessage, Status, SubscriptionStatus};
use mutable_updates::nurl::Nurl;
use mutable_updates::pinning::{server_config_from_pem, spki_hash_of_pem};
use notifier_core::engine::{Engine, EngineCommand, EngineError, EngineEvent, EngineOptions};
use notifier_core::grid::description::parse_grid_file;
use notifier_core::net::link::LinkTiming;
use notifier_core::store::caps::CapStore;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;
use support::{secrets, InProcessServer};
use tahoe_caps::{Cap, StorageIndex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

fn grid() -> &'static Grid {
    local_grid::shared().expect("a real Tahoe grid (run tests/bootstrap-python.sh?)")
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

/// What a fake server does after answering a subscribe.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers every subscribe with "subscribed", seqnum 1, and records the SIs.
    Record,
    /// The same, then floods `updates` naming `count` random SIs, `rounds` times.
    Flood { count: usize, rounds: usize },
}

/// An updates server of the test's own: real TLS and WebSocket, scripted answers.
struct FakeServer {
    nurl: Nurl,
    subscribed: Arc<Mutex<BTreeSet<StorageIndex>>>,
    sent_frames: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    async fn start(behaviour: Behaviour) -> FakeServer {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["fake.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let tls =
            server_config_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        let spki = spki_hash_of_pem(cert.pem().as_bytes()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let swissnum = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
        let nurl = Nurl::new(spki, "127.0.0.1".to_owned(), port, swissnum);
        let subscribed = Arc::new(Mutex::new(BTreeSet::new()));
        let sent_frames = Arc::new(Mutex::new(0));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (recorded, sent) = (Arc::clone(&subscribed), Arc::clone(&sent_frames));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (recorded, sent) = (Arc::clone(&recorded), Arc::clone(&sent));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                        return;
                    };
                    while let Some(Ok(frame)) = ws.next().await {
                        let Message::Text(text) = frame else { continue };
                        let Ok(ClientMessage::Subscribe(request)) = ClientMessage::parse(&text)
                        else {
                            continue;
                        };
                        let mut status = Status::new();
                        for index in &request.storage_indexes {
                            if let Some(si) = index.storage_index() {
                                recorded.lock().unwrap().insert(si);
                            }
                            status.push(index.raw.clone(), SubscriptionStatus::Subscribed);
                            status.push_seqnum(index.raw.clone(), 1);
                        }
                        let reply = ServerMessage::Status(status).to_json();
                        if ws.send(Message::Text(reply.into())).await.is_err() {
                            return;
                        }
                        if let Behaviour::Flood { count, rounds } = behaviour {
                            for round in 0..rounds {
                                let frame = flood_frame(count, round as u64);
                                if ws.send(Message::Text(frame.into())).await.is_err() {
                                    return;
                                }
                                *sent.lock().unwrap() += 1;
                            }
                        }
                    }
                });
            }
        });
        FakeServer {
            nurl,
            subscribed,
            sent_frames,
            task,
        }
    }
}

/// A batched `updates` naming `count` SIs nobody subscribed, each with a seqnum.
fn flood_frame(count: usize, round: u64) -> String {
    let sis: Vec<String> = (0..count)
        .map(|i| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
            bytes[8..].copy_from_slice(&round.to_be_bytes());
            StorageIndex::from_bytes(bytes).to_base32()
        })
        .collect();
    let seqnums: Vec<String> = sis
        .iter()
        .map(|si| format!("\"{si}\":{}", u64::MAX - 1))
        .collect();
    format!(
        "{{\"tahoe-mutable-notification-version\":1,\"updates\":[\"{}\"],\"seqnum\":{{{}}}}}",
        sis.join("\",\""),
        seqnums.join(",")
    )
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn count_rows(path: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn options(paths: &Paths) -> EngineOptions {
    let mut options = EngineOptions::new(paths.clone(), secrets());
    options.link_timing = LinkTiming {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..LinkTiming::default()
    };
    options
}

async fn wait_for<T>(
    events: &mut mpsc::Receiver<EngineEvent>,
    timeout: Duration,
    mut pick: impl FnMut(&EngineEvent) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => {
                if let Some(found) = pick(&event) {
                    return Some(found);
                }
            }
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_foreign_sis_leaves_memory_and_database_flat() {
    let grid = grid();
    let honest = InProcessServer::start(&grid.storage_nodes()[0]).await;
    let hostile = FakeServer::start(Behaviour::Flood {
        count: 50_000,
        rounds: 40,
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    paths.ensure_dirs().unwrap();
    let description = serde_json::json!({
        "name": "flooded grid",
        "gateway_url": grid.gateway_url(),
        "updates_servers": [honest.nurl.to_string(), hostile.nurl.to_string()],
    })
    .to_string();
    let secrets = secrets();
    let servers = ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    servers
        .import_grid(&parse_grid_file(&description).unwrap())
        .unwrap();
    let dircap = blocking(move || grid.create_mutable_dir(Format::Sdmf).unwrap()).await;
    let caps = CapStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    let cap_id = caps
        .add(&dircap.parse::<Cap>().unwrap(), "Watched", None)
        .unwrap()
        .id;

    let before_kib = rss_kib();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let engine = Engine::open(options(&paths), None).unwrap();
            let (commands, commands_rx) = mpsc::channel(8);
            let (events_tx, mut events) = mpsc::channel(4096);
            let running = tokio::task::spawn_local(engine.run(commands_rx, events_tx));
            // The flood starts once the engine has subscribed on the hostile server.
            let started = Instant::now();
            let mut early_kib = None;
            while *hostile.sent_frames.lock().unwrap() < 40 {
                if early_kib.is_none() && *hostile.sent_frames.lock().unwrap() >= 10 {
                    early_kib = Some(rss_kib());
                }
                assert!(started.elapsed() < Duration::from_secs(60), "the flood did not happen");
                // Keep the engine's events drained meanwhile.
                let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
            }
            let flood_took = started.elapsed();
            // While the engine digests it, an honest change still comes through.
            let writer = dircap.clone();
            let put_at = Instant::now();
            blocking(move || grid.put_child(&writer, "honest.txt", b"x").unwrap()).await;
            let change = wait_for(&mut events, Duration::from_secs(30), |event| match event {
                EngineEvent::Changed(report) if report.cap_id == cap_id => Some(report.clone()),
                _ => None,
            })
            .await
            .expect("the honest server's change was not reported during the flood");
            assert!(change.summary.contains("honest.txt"), "{change:?}");
            let honest_latency = put_at.elapsed();
            let after_kib = rss_kib();
            let early_kib = early_kib.unwrap_or(before_kib);
            let _ = commands.send(EngineCommand::Shutdown).await;
            running.await.unwrap().unwrap();

            let history = paths.history_db();
            let seqnum_rows = count_rows(&history, "seqnums");
            let server_rows = count_rows(&history, "server_seqnums");
            let change_rows = count_rows(&history, "changes");
            let db_bytes: u64 = std::fs::read_dir(paths.data_dir())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("history"))
                .map(|e| e.metadata().unwrap().len())
                .sum();
            eprintln!(
                "hostile flood: 2 million foreign SIs (40 messages of 50,000, 3.9 MB each) in {flood_took:?}; RSS {before_kib} KiB \
                 before, {early_kib} KiB after 10 messages, {after_kib} KiB after 40 (test process, \
                 the fake server's buffers included); history: {seqnum_rows} seqnum rows, {server_rows} server rows, \
                 {change_rows} changes, {db_bytes} bytes; honest change after {honest_latency:?}"
            );
            assert_eq!(seqnum_rows, 1, "only the watched slot is tracked");
            assert!(server_rows <= 2, "one row per server for the watched slot: {server_rows}");
            assert_eq!(change_rows, 1, "only the honest change is recorded");
            assert!(db_bytes < 2 * 1024 * 1024, "the database stayed small: {db_bytes} bytes");
            // Kept per SI, 1.5 million more SIs would cost well over 100 MiB.
            assert!(
                after_kib < early_kib + 32 * 1024,
                "memory kept growing with the flood: {early_kib} → {after_kib} KiB"
            );
        })
        .await;
    let _ = caps.remove(&cap_id);
}

/// A TCP proxy in front of the gateway that keeps every byte clients sent through it.
struct RecordingProxy {
    url: String,
    seen: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingProxy {
    async fn start(upstream_port: u16) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async {
                        let mut buffer = [0u8; 8192];
                        while let Ok(n) = client_read.read(&mut buffer).await {
                            if n == 0 {
                                break;
                            }
                            recorded.lock().unwrap().extend_from_slice(&buffer[..n]);
                            if server_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                    let _ = tokio::join!(upstream, downstream);
                });
            }
        });
        RecordingProxy { url, seen, task }
    }

    fn saw(&self, needle: &str) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.windows(needle.len()).any(|w| w == needle.as_bytes())
    }
}

/// The key part of a cap (`URI:DIR2-RO:<key>:<fingerprint>` → `<key>`): what must not leak.
fn cap_key(cap: &str) -> String {
    cap.split(':').nth(2).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_grids_servers_and_gateway_see_only_that_grids_caps() {
    let grid = grid();
    let server_a = FakeServer::start(Behaviour::Record).await;
    let server_b = FakeServer::start(Behaviour::Record).await;
    let gateway_a = RecordingProxy::start(grid.gateway_port()).await;
    let gateway_b = RecordingProxy::start(grid.gateway_port()).await;
    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    paths.ensure_dirs().unwrap();
    let secrets = secrets();
    let servers = ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    for (name, server, gateway) in [
        ("grid A", &server_a, &gateway_a),
        ("grid B", &server_b, &gateway_b),
    ] {
        let description = serde_json::json!({
            "name": name,
            "gateway_url": gateway.url,
            "updates_servers": [server.nurl.to_string()],
        })
        .to_string();
        servers
            .import_grid(&parse_grid_file(&description).unwrap())
            .unwrap();
    }
    let (folder_a, folder_b) = blocking(move || {
        (
            grid.create_mutable_dir(Format::Sdmf).unwrap(),
            grid.create_mutable_dir(Format::Sdmf).unwrap(),
        )
    })
    .await;
    let caps = CapStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    let cap_a: Cap = folder_a.parse().unwrap();
    let cap_b: Cap = folder_b.parse().unwrap();
    let id_a = caps.add(&cap_a, "A's folder", Some("grid A")).unwrap().id;
    let id_b = caps.add(&cap_b, "B's folder", Some("grid B")).unwrap().id;
    let (si_a, si_b) = (
        cap_a.storage_index().unwrap(),
        cap_b.storage_index().unwrap(),
    );

    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let engine = Engine::open(options(&paths), None).unwrap();
            let (commands, commands_rx) = mpsc::channel(8);
            let (events_tx, mut events) = mpsc::channel(1024);
            let running = tokio::task::spawn_local(engine.run(commands_rx, events_tx));
            let started = Instant::now();
            while !(server_a.subscribed.lock().unwrap().contains(&si_a)
                && server_b.subscribed.lock().unwrap().contains(&si_b)
                && gateway_a.saw(&cap_key(&cap_a.read_only().to_string()))
                && gateway_b.saw(&cap_key(&cap_b.read_only().to_string())))
            {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "each grid's server and gateway should hear of its own cap"
                );
                let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
            }
            let _ = commands.send(EngineCommand::Shutdown).await;
            running.await.unwrap().unwrap();
        })
        .await;
    assert_eq!(
        *server_a.subscribed.lock().unwrap(),
        BTreeSet::from([si_a]),
        "grid A's server heard of grid B's cap"
    );
    assert_eq!(*server_b.subscribed.lock().unwrap(), BTreeSet::from([si_b]));
    for (proxy, other, what) in [
        (&gateway_a, &cap_b, "grid B's cap reached grid A's gateway"),
        (&gateway_b, &cap_a, "grid A's cap reached grid B's gateway"),
    ] {
        assert!(
            !proxy.saw(&cap_key(&other.read_only().to_string())),
            "{what}"
        );
        assert!(
            !proxy.saw(&cap_key(&other.to_string())),
            "{what} (write-cap)"
        );
    }
    let _ = caps.remove(&id_a);
    let _ = caps.remove(&id_b);
}

#[tokio::test]
async fn a_second_engine_on_one_home_is_refused_naming_the_first() {
    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    paths.ensure_dirs().unwrap();
    let first = Engine::open(options(&paths), None).unwrap();
    let Err(error) = Engine::open(options(&paths), None) else {
        panic!("two engines opened on one home");
    };
    assert!(
        matches!(error, EngineError::AlreadyRunning { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("process {}", std::process::id())),
        "names the holder: {text}"
    );
    drop(first);
    Engine::open(options(&paths), None).expect("free again once the first engine is gone");
}
