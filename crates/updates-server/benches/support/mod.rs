//! What the updates server's load generators share (`fanout.rs`, `cluster.rs`): starting the
//! real binary in its roles, TLS WebSocket subscribers that time each write to its receipt, and
//! readers of `/proc` and of the server's metrics page.

// Each bench uses a part of it.
#![allow(dead_code)]

#[path = "../../tests/support/share_writer.rs"]
mod share_writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mutable_updates::client::SecureWebSocket;
use mutable_updates::message::{ClientMessage, ServerMessage};
use mutable_updates::nurl::Nurl;
pub use share_writer::write_share;
use tahoe_caps::StorageIndex;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

/// The CPUs of `--pin`: the load generator on one, every server process on the other, so that
/// neither measures the other's work.
pub const LOAD_GENERATOR_CPU: &str = "0";
pub const SERVER_CPU: &str = "1";

/// Runs the load generator `bench` on a runtime of `client_threads` workers, on
/// [`LOAD_GENERATOR_CPU`] only when `pin`.
pub fn run_load_generator<F: std::future::Future>(
    pin: bool,
    client_threads: usize,
    bench: F,
) -> F::Output {
    if pin {
        // Before the runtime's threads exist, so that they inherit the mask.
        let pinned = Command::new("taskset")
            .args(["-c", "-p", LOAD_GENERATOR_CPU])
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .status()
            .expect("taskset (util-linux)");
        assert!(pinned.success(), "taskset could not pin the load generator");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads.max(1))
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench)
}

/// What a server process started by [`start_server`] does.
pub enum Role<'a> {
    /// Watches `storage` and serves clients (`--role single`).
    Single { storage: &'a Path },
    /// Watches `storage` and publishes its changes to the broker at `nats` as `node_id`.
    Watcher {
        storage: &'a Path,
        nats: &'a str,
        node_id: &'a str,
    },
    /// Serves clients, fed by the watchers through the broker at `nats`.
    Edge { nats: &'a str },
}

/// Starts the release binary in `role`, writing what it needs into `work` (certificate, key,
/// swissnum; it writes its NURL to `work/nurl`). With `pin`, on [`SERVER_CPU`]: `taskset` execs
/// the server in place, so the child's pid is the server's.
pub fn start_server(work: &Path, role: Role<'_>, metrics: SocketAddr, pin: bool) -> Child {
    let mut command = on_server_cpu(Path::new(env!("CARGO_BIN_EXE_tahoe-updates-server")), pin);
    command.arg("run");
    match role {
        Role::Single { storage } => {
            client_facing(&mut command, work);
            command.arg("--storage-dir").arg(storage);
        }
        Role::Watcher {
            storage,
            nats,
            node_id,
        } => {
            command
                .args(["--role", "watcher", "--nats", nats, "--node-id", node_id])
                .arg("--storage-dir")
                .arg(storage);
        }
        Role::Edge { nats } => {
            client_facing(&mut command, work);
            command.args(["--role", "edge", "--nats", nats]);
        }
    }
    command
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .arg("--exit-when-stdin-closes")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start tahoe-updates-server")
}

/// The TLS identity and swissnum a client-facing server of the bench is started with.
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub swissnum: PathBuf,
}

pub const BENCH_SWISSNUM: &str = "loadgenswissnumloadgenswissnum12";

/// Writes a fresh self-signed certificate, its key and the bench's swissnum into `work`.
pub fn write_identity(work: &Path) -> Identity {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["updates.test".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let identity = Identity {
        cert: work.join("cert.pem"),
        key: work.join("key.pem"),
        swissnum: work.join("swissnum"),
    };
    std::fs::write(&identity.cert, cert.pem()).expect("cert file");
    std::fs::write(&identity.key, key.serialize_pem()).expect("key file");
    std::fs::write(&identity.swissnum, format!("{BENCH_SWISSNUM}\n")).expect("swissnum");
    identity
}

/// A command running `program`, on [`SERVER_CPU`] only when `pin` (`taskset` execs it in place,
/// so the child's pid is the program's).
fn on_server_cpu(program: &Path, pin: bool) -> Command {
    if pin {
        let mut command = Command::new("taskset");
        command.args(["-c", SERVER_CPU]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Identity {
    /// The flags that hand it to a server: the release binary and the Python peer take the
    /// same ones.
    fn pass_to(&self, command: &mut Command) {
        command
            .arg("--tls-cert")
            .arg(&self.cert)
            .arg("--tls-key")
            .arg(&self.key)
            .arg("--swissnum-file")
            .arg(&self.swissnum);
    }
}

/// The identity and limits of a server that clients connect to.
fn client_facing(command: &mut Command, work: &Path) {
    command.args(["--listen", "127.0.0.1:0"]);
    write_identity(work).pass_to(command);
    command
        .arg("--nurl-file")
        .arg(work.join("nurl"))
        .args(["--max-queued-updates", "1000"])
        // One address opens every connection here.
        .args(["--max-connections", "100000"])
        .args(["--max-sessions-per-address", "100000"])
        .args(["--max-handshakes-per-address", "100000"]);
}

/// Starts the Python reference peer (`benches/reference_peer.py`, on the workspace's `.venv`
/// from `tests/bootstrap.sh`, or the interpreter `TAHOE_NOTIFIER_PYTHON` names) on `storage`,
/// on [`SERVER_CPU`] when `pin`, and waits until it listens: the peer and its NURL.
pub async fn start_python_peer(work: &Path, storage: &Path, pin: bool) -> (Child, Nurl) {
    let python = std::env::var_os("TAHOE_NOTIFIER_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference_peer.py");
    let identity = write_identity(work);
    let port_file = work.join("peer-port");
    let spki_hash = mutable_updates::pinning::spki_hash_of_pem(
        &std::fs::read(&identity.cert).expect("cert file"),
    )
    .expect("the bench's certificate");
    let mut command = on_server_cpu(&python, pin);
    command.arg(&script).arg("--storage-dir").arg(storage);
    identity.pass_to(&mut command);
    let mut peer = command
        .arg("--port-file")
        .arg(&port_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "could not start the Python peer with {} (run tests/bootstrap.sh): {e}",
                python.display()
            )
        });
    for _ in 0..200 {
        if let Some(port) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok())
        {
            let swissnum = mutable_updates::nurl::Swissnum::new(BENCH_SWISSNUM);
            return (peer, Nurl::new(spki_hash, "127.0.0.1", port, swissnum));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = peer.kill();
    let _ = peer.wait();
    panic!("the Python peer did not listen within 10 s");
}

/// Starts a `--role single` server on `storage` and waits until it serves: the server, its
/// metrics address and its NURL.
pub async fn start_single(work: &Path, storage: &Path, pin: bool) -> (Child, SocketAddr, Nurl) {
    let metrics = free_address();
    let server = start_server(work, Role::Single { storage }, metrics, pin);
    let nurl = wait_for_nurl(&work.join("nurl")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    (server, metrics, nurl)
}

/// A loopback address free right now, for a metrics page.
pub fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
}

pub async fn wait_for_nurl(path: &PathBuf) -> Nurl {
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

// ---- subscribers --------------------------------------------------------------------------------

/// A write the readers are waiting to see.
pub struct PendingWrite {
    pub written_at: Instant,
    pub received: AtomicUsize,
}

pub type Pending = Arc<RwLock<HashMap<(StorageIndex, u64), Arc<PendingWrite>>>>;

/// Write-to-receipt times (µs) of every awaited write, filled by the readers.
pub static FANOUT_LATENCIES: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Subscribers of one slot, each read by its own task (see [`subscribe_to_hot`]).
pub struct HotSubscribers {
    /// The writes the readers wait for; [`timed_writes`] fills it.
    pub pending: Pending,
    pub readers: Vec<tokio::task::JoinHandle<()>>,
    /// Connecting and subscribing all of them took this long, in seconds.
    pub connect_s: f64,
}

/// `connections` subscribers of `hot` at `nurl`, opened `concurrency` at a time, each with a
/// reader that times every awaited write.
pub async fn subscribe_to_hot(
    nurl: &Nurl,
    connections: usize,
    concurrency: usize,
    hot: StorageIndex,
) -> HotSubscribers {
    let pending: Pending = Arc::new(RwLock::new(HashMap::new()));
    let delivered = Arc::new(AtomicUsize::new(0));
    let connect_started = Instant::now();
    let sockets = connect_subscribers(nurl, connections, concurrency, |_| {
        ClientMessage::subscribe([hot])
    })
    .await;
    let connect_s = connect_started.elapsed().as_secs_f64();
    let readers = spawn_readers(sockets, &pending, &delivered);
    HotSubscribers {
        pending,
        readers,
        connect_s,
    }
}

/// Opens `connections` TLS WebSockets to `nurl` (`concurrency` at a time), each sending
/// `subscribe(its index)`, and returns them with the length of their status once each has had it.
pub async fn connect_subscribers(
    nurl: &Nurl,
    connections: usize,
    concurrency: usize,
    subscribe: impl Fn(usize) -> ClientMessage,
) -> Vec<(SecureWebSocket, usize)> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut connect_tasks = tokio::task::JoinSet::new();
    for index in 0..connections {
        let subscribe = subscribe(index).to_json();
        let nurl = nurl.clone();
        let gate = Arc::clone(&gate);
        connect_tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            let mut socket = mutable_updates::client::connect(&nurl, "/v1/mutable_updates")
                .await
                .expect("connect");
            socket
                .send(Message::Text(subscribe.into()))
                .await
                .expect("send subscribe");
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(ServerMessage::Status(_)) = ServerMessage::parse(text.as_str()) {
                            break (socket, text.len());
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("connection {index} ended before its status: {other:?}"),
                }
            }
        });
    }
    let mut sockets = Vec::with_capacity(connections);
    while let Some(joined) = connect_tasks.join_next().await {
        sockets.push(joined.expect("connect task"));
    }
    sockets
}

/// Spawns a [`read_updates`] task on each of `sockets`.
pub fn spawn_readers(
    sockets: Vec<(SecureWebSocket, usize)>,
    pending: &Pending,
    delivered: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    sockets
        .into_iter()
        .map(|(socket, _)| {
            tokio::spawn(read_updates(
                socket,
                Arc::clone(pending),
                Arc::clone(delivered),
            ))
        })
        .collect()
}

/// Reads updates until the connection ends, counting them in `delivered` and timing those
/// of a write in `pending`.
pub async fn read_updates<S>(
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
        record_receipt(&pending, update.storage_index, seqnum);
    }
}

/// Counts one receipt of `seqnum` of `storage_index`, if a write of it is awaited.
pub fn record_receipt(pending: &Pending, storage_index: StorageIndex, seqnum: u64) {
    let record = pending
        .read()
        .unwrap()
        .get(&(storage_index, seqnum))
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

/// Awaits `seqnum` of `storage_index`, runs `write` (which makes it), and waits up to 10 s
/// for `expected` receipts. Returns the time from the write to the last receipt (or to the
/// end of the wait) in ms, and the receipts counted.
pub async fn timed_write(
    pending: &Pending,
    storage_index: StorageIndex,
    seqnum: u64,
    expected: usize,
    write: impl FnOnce(),
) -> (f64, usize) {
    let record = Arc::new(PendingWrite {
        written_at: Instant::now(),
        received: AtomicUsize::new(0),
    });
    pending
        .write()
        .unwrap()
        .insert((storage_index, seqnum), Arc::clone(&record));
    write();
    let deadline = Instant::now() + Duration::from_secs(10);
    while record.received.load(Ordering::Acquire) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (
        record.written_at.elapsed().as_secs_f64() * 1000.0,
        record.received.load(Ordering::Acquire),
    )
}

/// `writes` in-place writes of `hot`'s share under `storage`, seqnums from `first_seqnum`, each
/// awaited by `expected` readers (see [`timed_write`]) and followed by a pause of `pause`.
/// Returns each write's time to its last receipt, in ms.
pub async fn timed_writes(
    pending: &Pending,
    (storage, hot): (&Path, StorageIndex),
    first_seqnum: u64,
    writes: usize,
    expected: usize,
    pause: Duration,
) -> Vec<f64> {
    let mut last_receipts_ms = Vec::with_capacity(writes);
    for write in 0..writes {
        let seqnum = first_seqnum + write as u64;
        let (last_receipt_ms, received) = timed_write(pending, hot, seqnum, expected, || {
            write_share(storage, &hot, seqnum)
        })
        .await;
        last_receipts_ms.push(last_receipt_ms);
        if received < expected {
            println!("fan-out write {write}: only {received} of {expected} received within 10 s");
        }
        tokio::time::sleep(pause).await;
    }
    last_receipts_ms
}

/// The write-to-receipt times gathered so far, in ms, sorted; and forgets them.
pub fn take_latencies_ms() -> Vec<f64> {
    let mut latencies: Vec<f64> = std::mem::take(&mut *FANOUT_LATENCIES.lock().unwrap())
        .into_iter()
        .map(|micros| f64::from(micros) / 1000.0)
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

// ---- the server's metrics page ------------------------------------------------------------------

pub async fn metrics_page(metrics: SocketAddr) -> String {
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
    page
}

/// A counter or gauge without labels.
pub fn metric(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The server's cumulative delivery-latency buckets: (upper bound in seconds, count).
pub async fn delivery_histogram(metrics: SocketAddr) -> Vec<(f64, u64)> {
    metrics_page(metrics)
        .await
        .lines()
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

/// The buckets filled between two readings of [`delivery_histogram`].
pub fn histogram_delta(after: &[(f64, u64)], before: &[(f64, u64)]) -> Vec<(f64, u64)> {
    after
        .iter()
        .zip(before)
        .map(|((bound, after), (_, before))| (*bound, after - before))
        .collect()
}

/// The smallest bucket bound (ms) under which `fraction` of the observations fall.
pub fn histogram_percentile_ms(cumulative: &[(f64, u64)], fraction: f64) -> f64 {
    let total = cumulative.last().map_or(0, |(_, count)| *count);
    let wanted = (total as f64 * fraction).ceil() as u64;
    cumulative
        .iter()
        .find(|(_, count)| *count >= wanted)
        .map_or(f64::INFINITY, |(bound, _)| bound * 1000.0)
}

// ---- /proc ----------------------------------------------------------------------------------------

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User and kernel CPU ticks of `pid`.
pub fn user_system_ticks(pid: u32) -> (u64, u64) {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

pub fn cpu_ticks(pid: u32) -> u64 {
    let (user, system) = user_system_ticks(pid);
    user + system
}

pub fn cpu_ticks_self() -> u64 {
    let (user, system) = stat_ticks("/proc/self/stat");
    user + system
}

fn stat_ticks(path: &str) -> (u64, u64) {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
    (field(11), field(12))
}

/// CPU time `pid`'s live threads have run, in ns (`/proc/<pid>/task/*/schedstat`): finer than
/// the 10 ms ticks of `stat`, for processes that work a few hundred µs per change. Threads that
/// have exited are not counted.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

pub fn ticks_per_second() -> f64 {
    100.0
}

/// Write-family syscalls `pid` made (`syscw` of `/proc/<pid>/io`: `write`, `writev`, `sendmsg`).
pub fn write_syscalls(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("syscw:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
