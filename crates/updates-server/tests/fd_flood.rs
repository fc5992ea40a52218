//! Issue 12, finding 2 on a real grid: `tahoe-updates-server` started with 256 file descriptors
//! (soft and hard, so it cannot raise them), flooded with idle authenticated connections from
//! many more clients than it has room for. It must keep delivering the next change to a
//! subscriber connected before the flood, refuse the excess with a clear close (1013 and a
//! reason), and, once the flood leaves, tell a new subscriber the current seqnum.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use local_grid::Format;
use mutable_updates::client;
use mutable_updates::message::{ClientMessage, ServerMessage, Status};
use mutable_updates::nurl::Nurl;
use tahoe_caps::{Cap, StorageIndex};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const PATH: &str = "/v1/mutable_updates";
const NOFILE: &str = "256";
const FLOOD: usize = 300;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

struct Server {
    child: Child,
    nurl: Nurl,
    metrics: std::net::SocketAddr,
    _scratch: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(node_dir: &Path) -> Server {
    let scratch = tempfile::tempdir().unwrap();
    let nurl_file = scratch.path().join("nurl");
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(env!("CARGO_BIN_EXE_tahoe-updates-server"))
        .args(["run", "--listen", "127.0.0.1:0", "--exit-when-stdin-closes"])
        .arg("--node-dir")
        .arg(node_dir)
        .arg("--nurl-file")
        .arg(&nurl_file)
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        // All clients here share 127.0.0.1: lift the per-address cap so that the global
        // budget is what the flood runs into (the per-address caps have tests of their own).
        .args(["--max-sessions-per-address", "100000"])
        .args(["--max-handshakes-per-address", "100000"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tahoe-updates-server under prlimit");
    for _ in 0..300 {
        if let Ok(text) = std::fs::read_to_string(&nurl_file) {
            if let Ok(nurl) = text.trim().parse() {
                return Server {
                    child,
                    nurl,
                    metrics,
                    _scratch: scratch,
                };
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no NURL within 15 s");
}

fn metric(server: &Server, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.metrics).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    page.lines()
        .find_map(|line| line.strip_prefix(&format!("tahoe_updates_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

async fn subscribe(socket: &mut Socket, si: &StorageIndex) -> Status {
    socket
        .send(Message::Text(
            ClientMessage::subscribe([*si]).to_json().into(),
        ))
        .await
        .unwrap();
    loop {
        match next(socket, Duration::from_secs(10)).await {
            Next::Message(ServerMessage::Status(status)) => return status,
            Next::Message(_) => continue,
            other => panic!("expected a status, got {other:?}"),
        }
    }
}

#[derive(Debug)]
enum Next {
    Message(ServerMessage),
    Closed(Option<CloseCode>, String),
    Silent,
}

async fn next(socket: &mut Socket, wait: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Next::Silent,
            Ok(None) | Ok(Some(Err(_))) => return Next::Closed(None, String::new()),
            Ok(Some(Ok(Message::Text(text)))) => {
                return Next::Message(ServerMessage::parse(text.as_str()).unwrap())
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Next::Closed(
                    frame.as_ref().map(|f| f.code),
                    frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                )
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_at_256_descriptors_flooded_with_idle_sessions_still_delivers_and_refuses_clearly()
{
    let grid = local_grid::shared().expect("start a real Tahoe grid");
    let dircap = grid.create_mutable_dir(Format::Sdmf).unwrap();
    let si = dircap.parse::<Cap>().unwrap().storage_index().unwrap();
    let (index, node) = grid
        .storage_nodes()
        .iter()
        .enumerate()
        .find(|(_, node)| {
            node.storage_dir
                .join("shares")
                .join(si.share_dir())
                .is_dir()
        })
        .expect("a node holds the new slot");
    let server = start(&node.dir);
    let pid = server.child.id();
    println!("serving storage node {index} under prlimit --nofile={NOFILE}:{NOFILE}");

    // The subscriber from before the flood.
    let mut early = client::connect(&server.nurl, PATH).await.unwrap();
    let status = subscribe(&mut early, &si).await;
    let start_seqnum = status
        .seqnum(&si.to_string())
        .expect("subscribed with a seqnum");

    // The flood: idle authenticated sessions, far more than 256 descriptors hold.
    let started = Instant::now();
    let mut held = Vec::new();
    let mut refused = Vec::new();
    let mut failed = 0usize;
    for _ in 0..FLOOD {
        match client::connect(&server.nurl, PATH).await {
            Ok(mut socket) => match next(&mut socket, Duration::from_millis(300)).await {
                Next::Silent => held.push(socket),
                Next::Closed(code, reason) => refused.push((code, reason)),
                Next::Message(other) => panic!("unexpected {other:?}"),
            },
            Err(_) => failed += 1,
        }
    }
    let fds_during = open_fds(pid);
    let budget_total = metric(&server, "connections");
    println!(
        "flood: {FLOOD} tried in {:.1} s: {} held, {} refused with a close frame, {} failed to connect; server fds {fds_during} of {NOFILE}; open sessions {budget_total}",
        started.elapsed().as_secs_f64(),
        held.len(),
        refused.len(),
        failed
    );
    assert!(!refused.is_empty(), "the excess must be refused");
    for (code, reason) in &refused {
        assert_eq!(*code, Some(CloseCode::Again), "refused with 1013: {reason}");
        assert!(
            reason.contains("connection limit"),
            "a clear reason: {reason:?}"
        );
    }
    assert!(
        held.len() >= 100,
        "the budget should hold well over 100 sessions, held {}",
        held.len()
    );
    assert!(
        fds_during < 256,
        "the server stays below its descriptor limit"
    );

    // The next change reaches the early subscriber while the flood is held.
    let publish_started = Instant::now();
    grid.put_child(&dircap, "during-flood.txt", b"x").unwrap();
    let during_seqnum = match next(&mut early, Duration::from_secs(15)).await {
        Next::Message(ServerMessage::Update(update)) => {
            assert_eq!(update.storage_index, si);
            update.seqnum.expect("a seqnum")
        }
        other => panic!("the early subscriber got no update during the flood: {other:?}"),
    };
    assert!(during_seqnum > start_seqnum);
    println!(
        "update during the flood: seqnum {start_seqnum} -> {during_seqnum} delivered {} ms after the publish began",
        publish_started.elapsed().as_millis()
    );
    // A new connection during the flood is refused clearly, not left hanging.
    let mut late = client::connect(&server.nurl, PATH).await.unwrap();
    match next(&mut late, Duration::from_secs(5)).await {
        Next::Closed(Some(CloseCode::Again), reason) => {
            println!("during the flood a newcomer is told: {reason:?}")
        }
        other => panic!("a newcomer during the flood: {other:?}"),
    }

    // Publish once more while held, then let the flood go.
    grid.put_child(&dircap, "still-flooded.txt", b"y").unwrap();
    let held_seqnum = match next(&mut early, Duration::from_secs(15)).await {
        Next::Message(ServerMessage::Update(update)) => update.seqnum.unwrap(),
        other => panic!("second update during the flood: {other:?}"),
    };
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // After the flood: a new subscriber sees the seqnum now on disk.
    let on_disk = updates_server::share::read_share_header(
        &node.storage_dir.join("shares").join(si.share_dir()).join(
            std::fs::read_dir(node.storage_dir.join("shares").join(si.share_dir()))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .file_name(),
        ),
    )
    .unwrap();
    let updates_server::share::ShareHeader::Mutable { seqnum: disk, .. } = on_disk else {
        panic!("not mutable")
    };
    let mut after = client::connect(&server.nurl, PATH).await.unwrap();
    let status = subscribe(&mut after, &si).await;
    let seen = status.seqnum(&si.to_string()).unwrap();
    println!(
        "after the flood: new subscriber told seqnum {seen}, on disk {disk}; skipped reads {}, retries {}, refused {}",
        metric(&server, "watcher_skipped_reads_total"),
        metric(&server, "watcher_retries_total"),
        metric(&server, "connections_refused_total")
    );
    assert_eq!(seen, disk);
    assert_eq!(seen, held_seqnum);
}
