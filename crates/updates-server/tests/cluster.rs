//! The watcher and edge roles on a real `nats-server`: three share trees, each with a watcher
//! process, two edge processes (the second reaching the broker through a fault proxy), and
//! WebSocket clients spread over both edges that fail over between them.
//!
//! One cluster is set up once and taken through five phases, each asserting what its clients
//! received: (1) every change reaches every subscriber exactly once; (2) an edge SIGKILLed, its
//! clients move to the other edge and miss nothing; (3) the broker killed and restarted, the
//! edges report degraded and recover, and a change written meanwhile is announced; (4) a
//! watcher restarted announces nothing twice; (5) a partition between an edge and the broker
//! heals without loss. Skipped, with the reason printed, when `nats-server` is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/share_writer.rs"]
mod share_writer;
use share_writer::write_share;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use local_grid::nats::{NatsOptions, NatsServer};
use mutable_updates::client::{connect, PATH};
use mutable_updates::message::{ClientMessage, ServerMessage};
use mutable_updates::nurl::Nurl;
use tahoe_caps::StorageIndex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const SWISSNUM: &str = "cluster-test-swissnum";
const SLOTS: u32 = 4;
const CLIENTS: usize = 6;

fn si(n: u32) -> StorageIndex {
    let mut bytes = [0xc1; 16];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    StorageIndex::from_bytes(bytes)
}

fn free_port() -> u16 {
    local_grid::free_port().expect("a free port")
}

/// A child process ended (killed) when dropped.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Process {
    fn kill(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The broker on `port` (the same across a restart, so that clients find it again).
fn start_nats(binary: &Path, port: u16) -> NatsServer {
    let options = NatsOptions {
        port,
        ..NatsOptions::default()
    };
    NatsServer::start(binary, &options).expect("start nats-server")
}

fn server_command(role: &str, nats: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tahoe-updates-server"));
    command
        .arg("run")
        .args(["--role", role, "--nats", nats])
        .args(["--broker-ping-interval", "1"])
        .arg("--exit-when-stdin-closes")
        .env("RUST_LOG", "info,async_nats=warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    command
}

fn spawn(mut command: Command, log: &Path) -> Process {
    let log = std::fs::File::create(log).expect("log file");
    let mut child = command
        .stderr(log)
        .spawn()
        .expect("start tahoe-updates-server");
    let stdin = child.stdin.take();
    Process { child, stdin }
}

/// Metrics ports of the watchers, fixed so that a restarted watcher keeps its own.
fn watcher_metrics_port(work: &Path, index: usize) -> u16 {
    let path = work.join(format!("watcher{index}.metrics-port"));
    if let Some(port) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
    {
        return port;
    }
    let port = free_port();
    std::fs::write(&path, port.to_string()).unwrap();
    port
}

fn start_watcher(work: &Path, index: usize, nats: &str) -> Process {
    let mut command = server_command("watcher", nats);
    let metrics = watcher_metrics_port(work, index);
    command
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .arg("--storage-dir")
        .arg(work.join(format!("node{index}")))
        .args(["--node-id", &format!("node{index}")]);
    spawn(command, &work.join(format!("watcher{index}.log")))
}

struct EdgeSetup {
    listen: u16,
    metrics: u16,
    nats: String,
}

fn start_edge(work: &Path, index: usize, setup: &EdgeSetup) -> Process {
    let mut command = server_command("edge", &setup.nats);
    command
        .args(["--listen", &format!("127.0.0.1:{}", setup.listen)])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", setup.metrics)])
        .arg("--tls-cert")
        .arg(work.join(format!("edge{index}.cert.pem")))
        .arg("--tls-key")
        .arg(work.join(format!("edge{index}.key.pem")))
        .arg("--swissnum-file")
        .arg(work.join("swissnum"))
        .arg("--nurl-file")
        .arg(work.join(format!("edge{index}.nurl")));
    spawn(command, &work.join(format!("edge{index}.log")))
}

async fn metrics(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut text))
        .await
        .ok()?
        .ok()?;
    Some(text)
}

fn metric(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls an edge's metric until `wanted` holds; returns how long that took.
async fn wait_metric(port: u16, name: &str, wanted: impl Fn(u64) -> bool, what: &str) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    loop {
        if let Some(page) = metrics(port).await {
            if metric(&page, name).is_some_and(&wanted) {
                return started.elapsed();
            }
        }
        assert!(Instant::now() < deadline, "{what}: {name} never as wanted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy that can cut every connection through it and refuse new ones until restored.
struct FaultProxy {
    cut: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl FaultProxy {
    async fn start(listen: u16, target: u16) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", listen))
            .await
            .expect("bind proxy");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let proxy = FaultProxy {
            cut: Arc::clone(&cut),
            generation: generation.clone(),
        };
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if cut.load(Ordering::Acquire) {
                    drop(inbound);
                    continue;
                }
                let mut cuts = generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

/// What one client saw.
#[derive(Debug, Default)]
struct Record {
    /// Highest seqnum per SI, from statuses and updates.
    latest: HashMap<StorageIndex, u64>,
    /// Every update: (connection number, SI, seqnum).
    updates: Vec<(u32, StorageIndex, u64)>,
    /// Connections made (1 = never failed over).
    connections: u32,
    /// Rises first learnt from a status after a reconnect (the catch-up).
    caught_up_by_status: u32,
    /// Which edge the current connection is on.
    edge: usize,
}

/// A client that subscribes to every slot through `nurls[first]` and, when that connection
/// ends, moves on to the next NURL (round-robin) and subscribes again.
fn spawn_client(nurls: Arc<Vec<Nurl>>, first: usize, record: Arc<Mutex<Record>>) {
    tokio::spawn(async move {
        let sis: Vec<StorageIndex> = (0..SLOTS).map(si).collect();
        let mut turn = first;
        loop {
            let edge = turn % nurls.len();
            turn += 1;
            let Ok(Ok(mut socket)) =
                tokio::time::timeout(Duration::from_secs(3), connect(&nurls[edge], PATH)).await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let connection = {
                let mut record = record.lock().unwrap();
                record.connections += 1;
                record.edge = edge;
                record.connections
            };
            let subscribe = ClientMessage::subscribe(sis.clone()).to_json();
            if socket.send(Message::Text(subscribe.into())).await.is_err() {
                continue;
            }
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(parsed) = ServerMessage::parse(text.as_str()) else {
                    continue;
                };
                let mut record = record.lock().unwrap();
                match parsed {
                    ServerMessage::Status(status) => {
                        for (raw, seqnum) in status.seqnums {
                            let Ok(storage_index) = raw.parse::<StorageIndex>() else {
                                continue;
                            };
                            let latest = record.latest.entry(storage_index).or_default();
                            if seqnum > *latest {
                                let first_status = *latest == 0;
                                *latest = seqnum;
                                if connection > 1 && !first_status {
                                    record.caught_up_by_status += 1;
                                }
                            }
                        }
                    }
                    ServerMessage::Update(update) => {
                        let seqnum = update.seqnum.unwrap_or(0);
                        record
                            .updates
                            .push((connection, update.storage_index, seqnum));
                        let latest = record.latest.entry(update.storage_index).or_default();
                        *latest = (*latest).max(seqnum);
                    }
                    _ => {}
                }
            }
        }
    });
}

struct Cluster {
    work: tempfile::TempDir,
    nats_binary: PathBuf,
    nats_port: u16,
    nats: NatsServer,
    watchers: Vec<Process>,
    edges: Vec<Process>,
    edge_setups: Vec<EdgeSetup>,
    proxy: FaultProxy,
    records: Vec<Arc<Mutex<Record>>>,
    seqnum: u64,
}

impl Cluster {
    fn node(&self, index: usize) -> PathBuf {
        self.work.path().join(format!("node{index}"))
    }

    /// Publishes `seqnum` of every slot on every node, as a Tahoe publish does to each share.
    fn publish(&mut self, seqnum: u64) {
        for node in 0..3 {
            for n in 0..SLOTS {
                write_share(&self.node(node), &si(n), seqnum);
            }
        }
        self.seqnum = seqnum;
    }

    /// Waits until every client knows seqnum `seqnum` of every slot; returns how long it took.
    async fn all_reach(&self, seqnum: u64, what: &str) -> Duration {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        loop {
            let behind: Vec<String> = self
                .records
                .iter()
                .enumerate()
                .filter_map(|(i, record)| {
                    let record = record.lock().unwrap();
                    let lowest = (0..SLOTS)
                        .map(|n| record.latest.get(&si(n)).copied().unwrap_or(0))
                        .min()
                        .unwrap_or(0);
                    (lowest < seqnum)
                        .then(|| format!("client {i} at {lowest} on edge {}", record.edge))
                })
                .collect();
            if behind.is_empty() {
                return started.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not every client reached seqnum {seqnum}: {behind:?} (logs in {})",
                self.work.path().display()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Asserts that no client was told one seqnum of one slot twice on one connection, nor,
    /// when `across_connections`, ever.
    fn assert_no_duplicates(&self, across_connections: bool, what: &str) {
        for (i, record) in self.records.iter().enumerate() {
            let record = record.lock().unwrap();
            let mut seen = HashMap::new();
            for (connection, storage_index, seqnum) in &record.updates {
                let key = if across_connections {
                    (0, *storage_index, *seqnum)
                } else {
                    (*connection, *storage_index, *seqnum)
                };
                *seen.entry(key).or_insert(0u32) += 1;
            }
            let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
            assert!(
                twice.is_empty(),
                "{what}: client {i} was told twice: {twice:?}"
            );
        }
    }

    fn updates_total(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.lock().unwrap().updates.len())
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_and_edges_on_a_real_broker_survive_edge_broker_watcher_and_partition_faults() {
    let Some(nats_binary) = NatsServer::binary() else {
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server; tests/bootstrap.sh does)");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("swissnum"), format!("{SWISSNUM}\n")).unwrap();
    for node in 0..3 {
        for n in 0..SLOTS {
            write_share(&work.path().join(format!("node{node}")), &si(n), 1);
        }
    }
    for edge in 0..2 {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![format!("edge{edge}.test")])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(work.path().join(format!("edge{edge}.cert.pem")), cert.pem()).unwrap();
        std::fs::write(
            work.path().join(format!("edge{edge}.key.pem")),
            key.serialize_pem(),
        )
        .unwrap();
    }
    let nats_port = free_port();
    let proxy_port = free_port();
    let nats = start_nats(&nats_binary, nats_port);
    nats.wait_ready(Duration::from_secs(10))
        .expect("nats-server listening");
    let proxy = FaultProxy::start(proxy_port, nats_port).await;
    let direct = format!("nats://127.0.0.1:{nats_port}");
    let watchers: Vec<Process> = (0..3)
        .map(|i| start_watcher(work.path(), i, &direct))
        .collect();
    let edge_setups = vec![
        EdgeSetup {
            listen: free_port(),
            metrics: free_port(),
            nats: direct.clone(),
        },
        // The second edge reaches the broker through the fault proxy (phase 5).
        EdgeSetup {
            listen: free_port(),
            metrics: free_port(),
            nats: format!("nats://127.0.0.1:{proxy_port}"),
        },
    ];
    let edges: Vec<Process> = (0..2)
        .map(|i| start_edge(work.path(), i, &edge_setups[i]))
        .collect();
    let mut nurls = Vec::new();
    for (edge, setup) in edge_setups.iter().enumerate() {
        let path = work.path().join(format!("edge{edge}.nurl"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let nurl = loop {
            if let Some(nurl) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<Nurl>().ok())
            {
                break nurl;
            }
            assert!(Instant::now() < deadline, "edge {edge} wrote no NURL");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        nurls.push(nurl);
        wait_metric(
            setup.metrics,
            "tahoe_updates_edge_watchers",
            |n| n == 3,
            "start-up",
        )
        .await;
    }
    let nurls = Arc::new(nurls);
    let records: Vec<Arc<Mutex<Record>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    for (i, record) in records.iter().enumerate() {
        spawn_client(Arc::clone(&nurls), i % 2, Arc::clone(record));
    }
    let mut cluster = Cluster {
        work,
        nats_binary,
        nats_port,
        nats,
        watchers,
        edges,
        edge_setups,
        proxy,
        records,
        seqnum: 1,
    };
    let subscribed = cluster.all_reach(1, "subscribe").await;
    println!("{CLIENTS} clients over 2 edges subscribed to {SLOTS} slots each in {subscribed:?}");

    // 1. Every change reaches every subscriber exactly once.
    let mut latencies = Vec::new();
    for seqnum in 2..=11 {
        cluster.publish(seqnum);
        latencies.push(cluster.all_reach(seqnum, "phase 1").await);
    }
    for (i, record) in cluster.records.iter().enumerate() {
        let record = record.lock().unwrap();
        for n in 0..SLOTS {
            let told: Vec<u64> = record
                .updates
                .iter()
                .filter(|(_, s, _)| *s == si(n))
                .map(|(_, _, q)| *q)
                .collect();
            assert_eq!(
                told,
                (2..=11).collect::<Vec<_>>(),
                "phase 1: client {i}, slot {n}"
            );
        }
    }
    latencies.sort();
    let broker_messages: u64 = {
        let mut total = 0;
        for setup in &cluster.edge_setups {
            let page = metrics(setup.metrics).await.unwrap_or_default();
            total += metric(&page, "tahoe_updates_edge_broker_messages").unwrap_or(0);
        }
        total
    };
    println!(
        "phase 1: 10 publishes x {SLOTS} slots x 3 nodes -> {} updates to {CLIENTS} clients, each exactly once; \
         write-to-all-clients latency min {:?} median {:?} max {:?}; broker messages received by both edges so far {broker_messages}",
        cluster.updates_total(),
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );

    // 2. An edge SIGKILLed: its clients move to the other edge and miss nothing.
    cluster.edges[0].kill();
    let killed = Instant::now();
    cluster.publish(12);
    cluster.all_reach(12, "phase 2, during failover").await;
    let failed_over = killed.elapsed();
    cluster.publish(13);
    cluster.all_reach(13, "phase 2, after failover").await;
    cluster.assert_no_duplicates(false, "phase 2");
    let (moved, by_status): (u32, u32) = cluster.records.iter().fold((0, 0), |(m, c), r| {
        let r = r.lock().unwrap();
        (m + u32::from(r.connections > 1), c + r.caught_up_by_status)
    });
    assert!(
        moved >= (CLIENTS / 2) as u32,
        "phase 2: only {moved} clients reconnected"
    );
    println!(
        "phase 2: edge 0 SIGKILLed; {moved} clients reconnected to edge 1 and every client knew seqnum 12 \
         {failed_over:?} after the kill ({by_status} rises learnt through the status seqnum)"
    );
    // Edge 0 back (same port and identity): a restarted edge answers from the watchers.
    cluster.edges[0] = start_edge(cluster.work.path(), 0, &cluster.edge_setups[0]);
    wait_metric(
        cluster.edge_setups[0].metrics,
        "tahoe_updates_broker_connected",
        |v| v == 1,
        "edge 0 restart",
    )
    .await;

    // 3. The broker killed and restarted on the same port.
    cluster.nats.kill();
    let down = Instant::now();
    for edge in 0..2 {
        wait_metric(
            cluster.edge_setups[edge].metrics,
            "tahoe_updates_broker_connected",
            |v| v == 0,
            "phase 3, degraded",
        )
        .await;
    }
    let noticed = down.elapsed();
    let page = metrics(cluster.edge_setups[1].metrics)
        .await
        .unwrap_or_default();
    assert!(
        page.contains("tahoe_updates_broker_state{state=\"degraded\"} 1"),
        "{page}"
    );
    let mut published_before = Vec::new();
    for node in 0..3 {
        let port = watcher_metrics_port(cluster.work.path(), node);
        let page = metrics(port).await.unwrap_or_default();
        published_before
            .push(metric(&page, "tahoe_updates_cluster_changes_published").unwrap_or(0));
    }
    cluster.publish(14);
    // The watchers saw the write while the broker was away (handed to their broker client).
    for (node, before) in published_before.into_iter().enumerate() {
        let port = watcher_metrics_port(cluster.work.path(), node);
        wait_metric(
            port,
            "tahoe_updates_cluster_changes_published",
            |n| n >= before + u64::from(SLOTS),
            "phase 3, watcher saw the write",
        )
        .await;
    }
    let caught_before: u64 = {
        let mut total = 0;
        for setup in &cluster.edge_setups {
            let page = metrics(setup.metrics).await.unwrap_or_default();
            total += metric(&page, "tahoe_updates_edge_caught_up").unwrap_or(0);
        }
        total
    };
    cluster.nats = start_nats(&cluster.nats_binary, cluster.nats_port);
    let restarted = Instant::now();
    for edge in 0..2 {
        wait_metric(
            cluster.edge_setups[edge].metrics,
            "tahoe_updates_broker_connected",
            |v| v == 1,
            "phase 3, recovered",
        )
        .await;
    }
    let recovered = restarted.elapsed();
    let announced = cluster
        .all_reach(14, "phase 3, change written while the broker was down")
        .await;
    let caught_after: u64 = {
        let mut total = 0;
        for setup in &cluster.edge_setups {
            let page = metrics(setup.metrics).await.unwrap_or_default();
            total += metric(&page, "tahoe_updates_edge_caught_up").unwrap_or(0);
        }
        total
    };
    cluster.publish(15);
    cluster.all_reach(15, "phase 3, after recovery").await;
    cluster.assert_no_duplicates(false, "phase 3");
    println!(
        "phase 3: broker killed; both edges degraded after {noticed:?}; restarted, reconnected after {recovered:?}; \
         the change written while it was down reached every client {announced:?} after reconnection \
         ({} rises caught up by asking the watchers)",
        caught_after - caught_before
    );

    // 4. A watcher restarted: nothing announced twice.
    let before = cluster.updates_total();
    cluster.watchers[1].kill();
    for edge in 0..2 {
        wait_metric(
            cluster.edge_setups[edge].metrics,
            "tahoe_updates_edge_watchers",
            |n| n == 2,
            "phase 4, watcher gone",
        )
        .await;
    }
    let resyncs_before = metric(
        &metrics(cluster.edge_setups[0].metrics)
            .await
            .unwrap_or_default(),
        "tahoe_updates_edge_resyncs",
    )
    .unwrap_or(0);
    cluster.watchers[1] = start_watcher(cluster.work.path(), 1, &direct);
    for edge in 0..2 {
        wait_metric(
            cluster.edge_setups[edge].metrics,
            "tahoe_updates_edge_watchers",
            |n| n == 3,
            "phase 4, watcher back",
        )
        .await;
    }
    wait_metric(
        cluster.edge_setups[0].metrics,
        "tahoe_updates_edge_resyncs",
        |n| n > resyncs_before,
        "phase 4, resync",
    )
    .await;
    cluster.publish(16);
    cluster.all_reach(16, "phase 4").await;
    cluster.assert_no_duplicates(false, "phase 4");
    let added = cluster.updates_total() - before;
    assert_eq!(
        added,
        CLIENTS * SLOTS as usize,
        "phase 4: one update per client and slot, no more"
    );
    println!("phase 4: watcher 1 restarted (edges asked again); then one publish gave exactly {added} updates ({CLIENTS} clients x {SLOTS} slots)");

    // 5. A partition between edge 1 and the broker heals without loss.
    cluster.proxy.cut();
    let cut = Instant::now();
    wait_metric(
        cluster.edge_setups[1].metrics,
        "tahoe_updates_broker_connected",
        |v| v == 0,
        "phase 5, partition",
    )
    .await;
    let noticed = cut.elapsed();
    cluster.publish(17);
    cluster.proxy.restore();
    let restored = Instant::now();
    cluster
        .all_reach(17, "phase 5, change written during the partition")
        .await;
    let healed = restored.elapsed();
    cluster.publish(18);
    cluster.all_reach(18, "phase 5, after the partition").await;
    cluster.assert_no_duplicates(false, "phase 5");
    println!("phase 5: edge 1 cut from the broker, degraded after {noticed:?}; restored, the change written meanwhile reached every client {healed:?} later");
}
