//! The server under connection churn: the real `tahoe-updates-server` beside a storage node of a
//! real local grid, while clients connect, subscribe and disconnect in a loop, and others keep
//! their subscriptions and must keep getting every update. The server's RSS and open file
//! descriptors are sampled and printed; after the churn its descriptors must come back to what
//! the holders alone need.
//!
//! Default: 2,000 churn connections and 200 holders; `TAHOE_NOTIFIER_LONG_TESTS=1`: 10,000 and
//! 1,000. Figures are printed (`-- --nocapture`); nothing asserts on time. Abuse cases (clients
//! that never read, floods, slowloris, wrong swissnums) are in `abuse.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use local_grid::{Format, Grid};
use mutable_updates::client::{connect, SecureWebSocket, PATH};
use mutable_updates::message::{ClientMessage, ServerMessage};
use mutable_updates::nurl::Nurl;
use tahoe_caps::{Cap, StorageIndex};
use tokio_tungstenite::tungstenite::Message;
use updates_server::share::{read_share_header, ShareHeader};

fn long_tests() -> bool {
    std::env::var_os("TAHOE_NOTIFIER_LONG_TESTS").is_some_and(|v| v == "1")
}

/// The real server beside one storage node; dropping it closes its stdin, which ends it.
struct Server {
    child: Child,
    metrics: std::net::SocketAddr,
    _stdin: Option<ChildStdin>,
    nurl: Nurl,
    _scratch: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(node_dir: &Path) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let nurl_file = scratch.path().join("nurl");
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tahoe-updates-server"))
            .arg("run")
            .arg("--node-dir")
            .arg(node_dir)
            .args(["--listen", "127.0.0.1:0", "--exit-when-stdin-closes"])
            // Holders and churners all come from 127.0.0.1: lift the per-address caps, which
            // have tests of their own (limits.rs, fd_flood.rs).
            .args(["--max-sessions-per-address", "100000"])
            .args(["--max-handshakes-per-address", "100000"])
            .arg("--nurl-file")
            .arg(&nurl_file)
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start tahoe-updates-server");
        let stdin = child.stdin.take();
        let started = Instant::now();
        let nurl = loop {
            if let Ok(text) = std::fs::read_to_string(&nurl_file) {
                if let Ok(nurl) = text.trim().parse::<Nurl>() {
                    break nurl;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server wrote no NURL within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            metrics,
            _stdin: stdin,
            nurl,
            _scratch: scratch,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A value from the metrics page (`tahoe_updates_<name>`).
    async fn metric(&self, name: &str) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut page = String::new();
        stream.read_to_string(&mut page).await.unwrap();
        let prefix = format!("tahoe_updates_{name} ");
        page.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} on the metrics page"))
    }
}

/// RSS in KiB and open descriptors of a process.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_kib: u64,
    fds: usize,
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    Usage { rss_kib, fds }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn seqnum_on_disk(grid: &Grid, node: usize, si: &StorageIndex) -> u64 {
    let dir = grid.storage_nodes()[node]
        .storage_dir
        .join("shares")
        .join(si.share_dir());
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| match read_share_header(&entry.path()) {
            Ok(ShareHeader::Mutable { seqnum, .. }) => Some(seqnum),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

async fn subscribe(socket: &mut SecureWebSocket, si: StorageIndex) -> Option<u64> {
    socket
        .send(Message::Text(
            ClientMessage::subscribe([si]).to_json().into(),
        ))
        .await
        .ok()?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(text) = frame {
            if let Ok(ServerMessage::Status(status)) = ServerMessage::parse(text.as_str()) {
                return status.seqnum(&si.to_string());
            }
        }
    }
}

/// What one holder saw.
#[derive(Debug, Default)]
struct HolderLog {
    seqnums: Vec<u64>,
    ended: Option<String>,
}

/// Keeps a subscription and records every seqnum announced for `si` until `stop`.
async fn hold(
    mut socket: SecureWebSocket,
    si: StorageIndex,
    log: Arc<Mutex<HolderLog>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let frame = match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
            Err(_) => continue,
            Ok(frame) => frame,
        };
        let text = match frame {
            None => {
                log.lock().unwrap().ended = Some("end of stream".to_owned());
                return;
            }
            Some(Err(error)) => {
                log.lock().unwrap().ended = Some(error.to_string());
                return;
            }
            Some(Ok(Message::Close(frame))) => {
                log.lock().unwrap().ended = Some(format!("closed: {frame:?}"));
                return;
            }
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => {
                // Send the automatic pong.
                let _ = socket.flush().await;
                continue;
            }
        };
        let seqnums: Vec<u64> = match ServerMessage::parse(text.as_str()) {
            Ok(ServerMessage::Update(update)) if update.storage_index == si => {
                update.seqnum.into_iter().collect()
            }
            Ok(ServerMessage::Updates(batch)) => batch
                .seqnums
                .iter()
                .filter(|(s, _)| *s == si)
                .map(|(_, n)| *n)
                .collect(),
            _ => Vec::new(),
        };
        log.lock().unwrap().seqnums.extend(seqnums);
    }
    let _ = socket.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_keep_every_update_while_thousands_connect_and_disconnect() {
    let (churn_total, holders_total, parallel) = if long_tests() {
        (10_000, 1_000, 16)
    } else {
        (2_000, 200, 8)
    };
    let grid: &'static Grid =
        local_grid::shared().expect("a real Tahoe grid (run tests/bootstrap-python.sh?)");
    let node = 0;
    let server = Server::start(&grid.storage_nodes()[node].dir);
    let pid = server.pid();
    let dircap =
        tokio::task::spawn_blocking(move || grid.create_mutable_dir(Format::Sdmf).unwrap())
            .await
            .unwrap();
    let si = dircap.parse::<Cap>().unwrap().storage_index().unwrap();
    // The share may reach this node a moment after the gateway answers.
    for _ in 0..100 {
        if seqnum_on_disk(grid, node, &si) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seqnum_on_disk(grid, node, &si) > 0,
        "storage node {node} holds no share of the new folder"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = usage(pid);

    // The holders.
    let connecting = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut holders = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..holders_total {
        let mut socket = connect(&server.nurl, PATH).await.expect("holder connects");
        let first = subscribe(&mut socket, si).await.expect("holder subscribes");
        let log = Arc::new(Mutex::new(HolderLog {
            seqnums: vec![first],
            ended: None,
        }));
        tasks.push(tokio::spawn(hold(
            socket,
            si,
            Arc::clone(&log),
            Arc::clone(&stop),
        )));
        holders.push(log);
    }
    let holders_connected = connecting.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_holders = usage(pid);
    let gauges_with_holders = (
        server.metric("connections").await,
        server.metric("subscriptions").await,
    );

    // The writer: one publish through the gateway after another until the churn ends.
    let churn_done = Arc::new(AtomicBool::new(false));
    let writer = {
        let churn_done = Arc::clone(&churn_done);
        let dircap = dircap.clone();
        tokio::task::spawn_blocking(move || {
            let mut produced = Vec::new();
            let mut n = 0;
            loop {
                let done = churn_done.load(Ordering::Relaxed);
                grid.put_child(&dircap, &format!("file-{n:04}"), b"x")
                    .unwrap();
                produced.push(seqnum_on_disk(grid, node, &si));
                n += 1;
                if done {
                    // One more publish after the churn: the holders must see it too.
                    return produced;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // The churn: connect, subscribe, leave (half politely, half by dropping the socket).
    let churned = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(Mutex::new(with_holders));
    // RSS each time another quarter of the churn is done: growth that stops is the allocator
    // settling, growth that goes on would be a leak.
    let quarters = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let peak = Arc::clone(&peak);
        let churn_done = Arc::clone(&churn_done);
        let churned = Arc::clone(&churned);
        let quarters = Arc::clone(&quarters);
        tokio::spawn(async move {
            while !churn_done.load(Ordering::Relaxed) {
                let now = usage(pid);
                {
                    let mut quarters = quarters.lock().unwrap();
                    let done = churned.load(Ordering::Relaxed);
                    if done * 4 >= (quarters.len() + 1) * churn_total && quarters.len() < 4 {
                        quarters.push(now.rss_kib);
                    }
                }
                {
                    let mut peak = peak.lock().unwrap();
                    peak.rss_kib = peak.rss_kib.max(now.rss_kib);
                    peak.fds = peak.fds.max(now.fds);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let churn_started = Instant::now();
    let mut loops = Vec::new();
    for lane in 0..parallel {
        let nurl = server.nurl.clone();
        let churned = Arc::clone(&churned);
        let failed = Arc::clone(&failed);
        loops.push(tokio::spawn(async move {
            let mut i = lane;
            while i < churn_total {
                match connect(&nurl, PATH).await {
                    Ok(mut socket) => {
                        if subscribe(&mut socket, si).await.is_none() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        if i % 2 == 0 {
                            let _ = socket.close(None).await;
                        }
                        drop(socket);
                        churned.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += parallel;
            }
        }));
    }
    for lane in loops {
        lane.await.unwrap();
    }
    let churn_took = churn_started.elapsed();
    churn_done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    {
        let mut quarters = quarters.lock().unwrap();
        if quarters.len() < 4 {
            quarters.push(usage(pid).rss_kib);
        }
    }
    let quarters: Vec<String> = quarters
        .lock()
        .unwrap()
        .iter()
        .map(|kib| format!("{:.1}", mib(*kib)))
        .collect();
    let produced = writer.await.unwrap();
    let last = *produced.last().unwrap();

    // Every holder must get the last publish; give the server time to catch up.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !holders
            .iter()
            .all(|log| log.lock().unwrap().seqnums.contains(&last))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Descriptors of the churned connections must be released: wait for them (bounded).
    let fd_deadline = Instant::now() + Duration::from_secs(30);
    let mut after = usage(pid);
    while after.fds > with_holders.fds && Instant::now() < fd_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = usage(pid);
    }
    let peak = *peak.lock().unwrap();
    let gauges_after = (
        server.metric("connections").await,
        server.metric("subscriptions").await,
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let holders_gone = usage(pid);

    let ended: Vec<String> = holders
        .iter()
        .filter_map(|log| log.lock().unwrap().ended.clone())
        .collect();
    let got_last = holders
        .iter()
        .filter(|log| log.lock().unwrap().seqnums.contains(&last))
        .count();
    let got_all = holders
        .iter()
        .filter(|log| {
            let seen = &log.lock().unwrap().seqnums;
            produced.iter().all(|seqnum| seen.contains(seqnum))
        })
        .count();
    let fewest = holders
        .iter()
        .map(|log| {
            let seen = &log.lock().unwrap().seqnums;
            produced
                .iter()
                .filter(|seqnum| seen.contains(seqnum))
                .count()
        })
        .min()
        .unwrap_or(0);
    let out_of_order = holders
        .iter()
        .filter(|log| log.lock().unwrap().seqnums.windows(2).any(|w| w[0] >= w[1]))
        .count();
    let churned = churned.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "churn: {churned} connections churned ({failed} failed) by {parallel} loops in {:.1} s ({:.0}/s), {holders_total} holders connected in {:.1} s",
        churn_took.as_secs_f64(),
        churned as f64 / churn_took.as_secs_f64(),
        holders_connected.as_secs_f64()
    );
    println!(
        "churn: {} publishes during the churn (seqnums {}..={last}); holders with every one {got_all}/{holders_total}, with the last {got_last}/{holders_total}, fewest seen by one holder {fewest}; out of order {out_of_order}; holders dropped {}",
        produced.len(),
        produced.first().unwrap(),
        ended.len()
    );
    println!(
        "churn: server RSS {:.1} MiB idle, {:.1} MiB with the holders, peak {:.1} MiB, {:.1} MiB after the churn, {:.1} MiB after the holders left",
        mib(idle.rss_kib),
        mib(with_holders.rss_kib),
        mib(peak.rss_kib),
        mib(after.rss_kib),
        mib(holders_gone.rss_kib)
    );
    println!(
        "churn: server RSS after each quarter of the churn: {} MiB",
        quarters.join(", ")
    );
    println!(
        "churn: server gauges (connections, subscriptions) {gauges_with_holders:?} with the holders, {gauges_after:?} after the churn"
    );
    println!(
        "churn: server fds {} idle, {} with the holders, peak {}, {} after the churn, {} after the holders left",
        idle.fds, with_holders.fds, peak.fds, after.fds, holders_gone.fds
    );

    assert_eq!(failed, 0, "churn connections failed");
    assert_eq!(
        gauges_after, gauges_with_holders,
        "the churned connections left connections or subscriptions behind"
    );
    assert!(
        ended.is_empty(),
        "holders were dropped: {:?}",
        &ended[..ended.len().min(5)]
    );
    assert_eq!(got_last, holders_total, "holders missed the last publish");
    assert_eq!(
        got_all,
        holders_total,
        "holders missed publishes (fewest seen: {fewest} of {})",
        produced.len()
    );
    assert_eq!(out_of_order, 0, "a holder saw a seqnum go down or repeat");
    assert!(
        after.fds <= with_holders.fds,
        "the churned connections' descriptors were not released: {} with the holders, {} after",
        with_holders.fds,
        after.fds
    );
    assert!(
        holders_gone.fds <= idle.fds,
        "descriptors not released after the holders left: {} idle, {} after",
        idle.fds,
        holders_gone.fds
    );
}
