//! Load generator: memory per connection, fan-out latency and delivered updates per second of the
//! real `tahoe-updates-server` binary over TLS.
//!
//! It builds a synthetic share tree in the real on-disk layout, starts the server on it in its own
//! process (the open-file limit is per process), opens N TLS connections with M subscriptions
//! each, then changes shares the way Tahoe does (in-place writes) and times each change from the
//! write to its receipt by every subscriber.
//!
//! `cargo bench -p updates-server --bench fanout -- --connections 10000 --subscriptions 10`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use mutable_updates::message::{ClientMessage, ServerMessage};
use mutable_updates::nurl::Nurl;
use rand::{Rng, SeedableRng};
use tahoe_caps::StorageIndex;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use updates_server::share::{DATA_OFFSET, MUTABLE_MAGIC_V2};

#[derive(Debug, Parser)]
#[command(about = "Load generator for tahoe-updates-server")]
struct Args {
    /// WebSocket connections to hold open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Subscriptions per connection: the hot slot plus this many minus one random slots.
    #[arg(long, default_value_t = 10)]
    subscriptions: usize,
    /// Mutable slots in the synthetic share tree.
    #[arg(long, default_value_t = 1_000)]
    slots: usize,
    /// Writes to the hot slot (subscribed by every connection) in the fan-out phase.
    #[arg(long, default_value_t = 20)]
    fanout_writes: usize,
    /// Length of the throughput phase.
    #[arg(long, default_value_t = 5)]
    throughput_seconds: u64,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Worker threads of the load generator's runtime (the server has its own process).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A write the readers are waiting to see.
struct PendingWrite {
    written_at: Instant,
    received: AtomicUsize,
}

type Pending = Arc<RwLock<HashMap<(StorageIndex, u64), Arc<PendingWrite>>>>;

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let work = tempfile::tempdir().expect("temp dir");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let slots: Vec<StorageIndex> = (0..args.slots.max(1))
        .map(|_| StorageIndex::from_bytes(rng.gen()))
        .collect();
    let storage = work.path().join("storage");
    for si in &slots {
        write_share(&storage, si, 1);
    }
    let metrics_address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port");
    let mut server = start_server(work.path(), &storage, metrics_address);
    let nurl = wait_for_nurl(&work.path().join("nurl")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server_pid = server.id();
    let rss_before = rss_kib(server_pid);
    let cpu_start = (cpu_ticks(server_pid), cpu_ticks_self());

    println!(
        "setup: {} slots, {} connections x {} subscriptions, server RSS before {} KiB",
        slots.len(),
        args.connections,
        args.subscriptions,
        rss_before
    );

    // Connect and subscribe.
    let pending: Pending = Arc::new(RwLock::new(HashMap::new()));
    let delivered = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let connect_started = Instant::now();
    let mut readers = Vec::with_capacity(args.connections);
    let mut connect_tasks = tokio::task::JoinSet::new();
    for index in 0..args.connections {
        let mut chosen = vec![slots[0]];
        let mut local = rand::rngs::StdRng::seed_from_u64(index as u64);
        while chosen.len() < args.subscriptions.min(slots.len()) {
            let si = slots[local.gen_range(0..slots.len())];
            if !chosen.contains(&si) {
                chosen.push(si);
            }
        }
        let nurl = nurl.clone();
        let gate = Arc::clone(&gate);
        connect_tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            let mut socket = mutable_updates::client::connect(&nurl, "/v1/mutable_updates")
                .await
                .expect("connect");
            socket
                .send(Message::Text(
                    ClientMessage::subscribe(chosen).to_json().into(),
                ))
                .await
                .expect("send subscribe");
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(ServerMessage::Status(_)) = ServerMessage::parse(text.as_str()) {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("connection {index} ended before its status: {other:?}"),
                }
            }
            socket
        });
    }
    while let Some(joined) = connect_tasks.join_next().await {
        let socket = joined.expect("connect task");
        let pending = Arc::clone(&pending);
        let delivered = Arc::clone(&delivered);
        readers.push(tokio::spawn(read_updates(socket, pending, delivered)));
    }
    let connect_time = connect_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = rss_kib(server_pid);
    let per_connection =
        (rss_connected.saturating_sub(rss_before)) as f64 / args.connections.max(1) as f64;
    println!(
        "memory: {} connections subscribed in {:.1} s; server RSS {} KiB -> {} KiB = {:.1} KiB per connection",
        args.connections,
        connect_time.as_secs_f64(),
        rss_before,
        rss_connected,
        per_connection
    );

    // Fan-out: one write to the hot slot reaches every connection.
    let hot = slots[0];
    let histogram_before = delivery_histogram(metrics_address).await;
    let fanout_cpu_start = (cpu_ticks(server_pid), cpu_ticks_self());
    let mut latencies_ms: Vec<f64> = Vec::new();
    let mut all_delivered_ms: Vec<f64> = Vec::new();
    for write in 0..args.fanout_writes {
        let seqnum = 2 + write as u64;
        let record = Arc::new(PendingWrite {
            written_at: Instant::now(),
            received: AtomicUsize::new(0),
        });
        pending
            .write()
            .unwrap()
            .insert((hot, seqnum), Arc::clone(&record));
        write_share(&storage, &hot, seqnum);
        let deadline = Instant::now() + Duration::from_secs(10);
        while record.received.load(Ordering::Acquire) < args.connections
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let received = record.received.load(Ordering::Acquire);
        all_delivered_ms.push(record.written_at.elapsed().as_secs_f64() * 1000.0);
        if received < args.connections {
            println!(
                "fan-out write {write}: only {received} of {} received within 10 s",
                args.connections
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let fanout_cpu = (
        cpu_ticks(server_pid) - fanout_cpu_start.0,
        cpu_ticks_self() - fanout_cpu_start.1,
    );
    let histogram_after = delivery_histogram(metrics_address).await;
    let server_side: Vec<(f64, u64)> = histogram_after
        .iter()
        .zip(&histogram_before)
        .map(|((bound, after), (_, before))| (*bound, after - before))
        .collect();

    // Throughput: every slot but the hot one, written round-robin as fast as the disk allows.
    let delivered_before = delivered.load(Ordering::Relaxed);
    let throughput_started = Instant::now();
    let mut seqnums: Vec<u64> = vec![1; slots.len()];
    let mut writes = 0usize;
    while throughput_started.elapsed() < Duration::from_secs(args.throughput_seconds) {
        for (index, si) in slots.iter().enumerate().skip(1) {
            seqnums[index] += 1;
            write_share(&storage, si, seqnums[index]);
            writes += 1;
            if writes.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
        // The hot slot too: ten thousand deliveries per write.
        let seqnum = 2 + args.fanout_writes as u64 + writes as u64;
        write_share(&storage, &hot, seqnum);
        writes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let write_window = throughput_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered_in_window = delivered.load(Ordering::Relaxed) - delivered_before;
    let window = throughput_started.elapsed();
    let cpu_end = (cpu_ticks(server_pid), cpu_ticks_self());
    println!(
        "throughput: {writes} share writes in {:.1} s; {delivered_in_window} updates delivered in {:.1} s = {:.0} updates/s",
        write_window.as_secs_f64(),
        window.as_secs_f64(),
        delivered_in_window as f64 / window.as_secs_f64()
    );
    let ticks = ticks_per_second();
    let elapsed = connect_started.elapsed().as_secs_f64();
    println!(
        "cpu over the run ({elapsed:.1} s): server {:.1} s, load generator {:.1} s (2 cores shared)",
        (cpu_end.0 - cpu_start.0) as f64 / ticks,
        (cpu_end.1 - cpu_start.1) as f64 / ticks,
    );

    for reader in readers {
        reader.abort();
    }
    let _ = server.kill();
    let _ = server.wait();

    // Latencies of the fan-out phase, gathered by the readers into the shared histogram.
    let histogram = FANOUT_LATENCIES.lock().unwrap();
    latencies_ms.extend(histogram.iter().map(|micros| f64::from(*micros) / 1000.0));
    drop(histogram);
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    all_delivered_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "fan-out: {} writes to a slot with {} subscribers, {} deliveries: write-to-receipt p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; write-to-last-receipt p50 {:.1} ms, max {:.1} ms",
        args.fanout_writes,
        args.connections,
        latencies_ms.len(),
        percentile(&latencies_ms, 0.50),
        percentile(&latencies_ms, 0.99),
        latencies_ms.last().copied().unwrap_or(0.0),
        percentile(&all_delivered_ms, 0.50),
        all_delivered_ms.last().copied().unwrap_or(0.0),
    );
    // CPU per delivery varies much less with the machine's load than latency does: the figure
    // to compare builds by on a shared machine.
    let fanout_deliveries = (args.fanout_writes * args.connections).max(1) as f64;
    println!(
        "fan-out cpu: server {:.1} µs per delivery, load generator {:.1} µs per receipt ({:.2} s and {:.2} s over the phase, including its 200 ms pauses)",
        fanout_cpu.0 as f64 / ticks * 1e6 / fanout_deliveries,
        fanout_cpu.1 as f64 / ticks * 1e6 / fanout_deliveries,
        fanout_cpu.0 as f64 / ticks,
        fanout_cpu.1 as f64 / ticks,
    );
    println!(
        "fan-out, server side (change reaching the hub to update written to the socket, from the server's histogram): p50 <= {} ms, p99 <= {} ms",
        histogram_percentile_ms(&server_side, 0.50),
        histogram_percentile_ms(&server_side, 0.99),
    );
}

/// The server's cumulative delivery-latency buckets: (upper bound in seconds, count).
async fn delivery_histogram(metrics: std::net::SocketAddr) -> Vec<(f64, u64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics)
        .await
        .expect("metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .expect("request");
    let mut page = String::new();
    stream.read_to_string(&mut page).await.expect("page");
    page.lines()
        .filter_map(|line| line.strip_prefix("tahoe_updates_delivery_latency_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The smallest bucket bound (ms) under which `fraction` of the observations fall.
fn histogram_percentile_ms(cumulative: &[(f64, u64)], fraction: f64) -> f64 {
    let total = cumulative.last().map_or(0, |(_, count)| *count);
    let wanted = (total as f64 * fraction).ceil() as u64;
    cumulative
        .iter()
        .find(|(_, count)| *count >= wanted)
        .map_or(f64::INFINITY, |(bound, _)| bound * 1000.0)
}

static FANOUT_LATENCIES: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

async fn read_updates<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    pending: Pending,
    delivered: Arc<AtomicUsize>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(ServerMessage::Update(update)) = ServerMessage::parse(text.as_str()) else {
            continue;
        };
        delivered.fetch_add(1, Ordering::Relaxed);
        let Some(seqnum) = update.seqnum else {
            continue;
        };
        let record = pending
            .read()
            .unwrap()
            .get(&(update.storage_index, seqnum))
            .cloned();
        if let Some(record) = record {
            let micros = record
                .written_at
                .elapsed()
                .as_micros()
                .min(u128::from(u32::MAX)) as u32;
            FANOUT_LATENCIES.lock().unwrap().push(micros);
            record.received.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Writes a share the way a Tahoe storage server publishes: the file is created once, then
/// rewritten in place.
fn write_share(storage: &Path, si: &StorageIndex, seqnum: u64) {
    let dir = storage.join("shares").join(si.share_dir());
    let path = dir.join("0");
    if !path.exists() {
        std::fs::create_dir_all(&dir).expect("share dir");
        let share_data_length: u64 = 1 + 8 + 64;
        let mut header = vec![0u8; DATA_OFFSET + share_data_length as usize];
        header[..32].copy_from_slice(MUTABLE_MAGIC_V2);
        // The container's data-length field follows the magic, write-enabler node id and secret.
        header[84..92].copy_from_slice(&share_data_length.to_be_bytes());
        std::fs::write(&path, header).expect("share file");
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open share");
    file.seek(SeekFrom::Start(DATA_OFFSET as u64))
        .expect("seek");
    let mut data = [0u8; 9];
    data[1..].copy_from_slice(&seqnum.to_be_bytes());
    file.write_all(&data).expect("write seqnum");
}

fn start_server(work: &Path, storage: &Path, metrics: std::net::SocketAddr) -> Child {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["updates.test".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let cert_path = work.join("cert.pem");
    let key_path = work.join("key.pem");
    std::fs::write(&cert_path, cert.pem()).expect("cert file");
    std::fs::write(&key_path, key.serialize_pem()).expect("key file");
    std::fs::write(work.join("swissnum"), "loadgenswissnumloadgenswissnum12\n").expect("swissnum");
    Command::new(env!("CARGO_BIN_EXE_tahoe-updates-server"))
        .arg("run")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--storage-dir")
        .arg(storage)
        .arg("--tls-cert")
        .arg(&cert_path)
        .arg("--tls-key")
        .arg(&key_path)
        .arg("--swissnum-file")
        .arg(work.join("swissnum"))
        .arg("--nurl-file")
        .arg(work.join("nurl"))
        .args(["--max-queued-updates", "1000"])
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .arg("--exit-when-stdin-closes")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start tahoe-updates-server")
}

async fn wait_for_nurl(path: &PathBuf) -> Nurl {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(nurl) = text.trim().parse() {
                return nurl;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server wrote no NURL within 10 s");
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

fn cpu_ticks_self() -> u64 {
    stat_ticks("/proc/self/stat")
}

fn stat_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    utime + stime
}

fn ticks_per_second() -> f64 {
    100.0
}
