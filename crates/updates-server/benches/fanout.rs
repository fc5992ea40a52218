//! Load generator: memory per connection, fan-out latency and delivered updates per second of the
//! real `tahoe-updates-server` binary over TLS.
//!
//! It builds a synthetic share tree in the real on-disk layout, starts the server on it in its own
//! process (the open-file limit is per process), opens N TLS connections with M subscriptions
//! each, then changes shares the way Tahoe does (in-place writes) and times each change from the
//! write to its receipt by every subscriber.
//!
//! `cargo bench -p updates-server --bench fanout -- --connections 10000 --subscriptions 10`
//!
//! `--proofs-compare` instead runs the same fan-out twice in one process against one server, with
//! 1,000 subscribers (`--connections`) of one slot whose share carries a real RSA-PSS signature:
//! first plain v1 subscribers, then subscribers that asked for proofs, and prints the two side by
//! side (latency, server CPU per delivery, bytes per update).
//!
//! `--python-peer-compare` runs one fan-out twice in one process, first against the release
//! binary, then against the Python reference peer (`benches/reference_peer.py`: Twisted and
//! autobahn from the workspace's `.venv`), each with `--connections` subscribers of one slot
//! (1,000 is the reference point), and prints memory per connection, latency and server CPU per
//! delivery side by side. Add `--pin` to keep each server on its own core.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use mutable_updates::message::{ClientMessage, ServerMessage};
use rand::{Rng, SeedableRng};
use support::{
    cpu_ticks, cpu_ticks_self, delivery_histogram, histogram_delta, histogram_percentile_ms,
    percentile, record_receipt, rss_kib, take_latencies_ms, ticks_per_second, timed_write,
    user_system_ticks, write_share, write_syscalls, Pending, FANOUT_LATENCIES, LOAD_GENERATOR_CPU,
    SERVER_CPU,
};
use tahoe_caps::StorageIndex;
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
    /// Compare the fan-out with proofs off and on (see the top of this file).
    #[arg(long)]
    proofs_compare: bool,
    /// Compare the release binary with the Python reference peer (`benches/reference_peer.py`)
    /// at `--connections` subscribers of one slot (see the top of this file).
    #[arg(long)]
    python_peer_compare: bool,
    /// Pin the server to CPU 1 and the load generator to CPU 0 (`taskset`), so that neither
    /// measures the other's work.
    #[arg(long)]
    pin: bool,
    /// Record the server with `perf record -g` during the fan-out phase and print where its
    /// CPU goes (needs `perf` from Debian's linux-perf).
    #[arg(long)]
    profile: bool,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    support::run_load_generator(args.pin, args.client_threads, run(args));
}

async fn run(args: Args) {
    if args.proofs_compare {
        return compare_proofs(args).await;
    }
    if args.python_peer_compare {
        return compare_python_peer(args).await;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let slots: Vec<StorageIndex> = (0..args.slots.max(1))
        .map(|_| StorageIndex::from_bytes(rng.gen()))
        .collect();
    let storage = work.path().join("storage");
    for si in &slots {
        write_share(&storage, si, 1);
    }
    let (mut server, metrics_address, nurl) =
        support::start_single(work.path(), &storage, args.pin).await;
    // With --pin, `taskset` execs the server in place: the child's pid is the server's.
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
    let connect_started = Instant::now();
    let sockets =
        support::connect_subscribers(&nurl, args.connections, args.connect_concurrency, |index| {
            let mut chosen = vec![slots[0]];
            let mut local = rand::rngs::StdRng::seed_from_u64(index as u64);
            while chosen.len() < args.subscriptions.min(slots.len()) {
                let si = slots[local.gen_range(0..slots.len())];
                if !chosen.contains(&si) {
                    chosen.push(si);
                }
            }
            ClientMessage::subscribe(chosen)
        })
        .await;
    let readers = support::spawn_readers(sockets, &pending, &delivered);
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
    let profile = args
        .profile
        .then(|| start_profile(server_pid, &profile_path()));
    let fanout_cpu_start = (cpu_ticks(server_pid), cpu_ticks_self());
    let fanout_split_start = user_system_ticks(server_pid);
    let fanout_syscalls_start = write_syscalls(server_pid);
    let mut all_delivered_ms = support::timed_writes(
        &pending,
        (&storage, hot),
        2,
        args.fanout_writes,
        args.connections,
        Duration::from_millis(200),
    )
    .await;

    let fanout_cpu = (
        cpu_ticks(server_pid) - fanout_cpu_start.0,
        cpu_ticks_self() - fanout_cpu_start.1,
    );
    let fanout_split = {
        let (user, system) = user_system_ticks(server_pid);
        (user - fanout_split_start.0, system - fanout_split_start.1)
    };
    let fanout_syscalls = write_syscalls(server_pid) - fanout_syscalls_start;
    let profile_report = profile.map(stop_profile);
    let histogram_after = delivery_histogram(metrics_address).await;
    let server_side = histogram_delta(&histogram_after, &histogram_before);

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

    // Latencies of the fan-out phase, gathered by the readers.
    let latencies_ms = take_latencies_ms();
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
        "fan-out cpu, server: user {:.1} µs + kernel {:.1} µs per delivery; {:.2} write syscalls per delivery{}",
        fanout_split.0 as f64 / ticks * 1e6 / fanout_deliveries,
        fanout_split.1 as f64 / ticks * 1e6 / fanout_deliveries,
        fanout_syscalls as f64 / fanout_deliveries,
        if args.pin {
            format!(" (server on CPU {SERVER_CPU}, load generator on CPU {LOAD_GENERATOR_CPU})")
        } else {
            " (2 cores shared)".to_owned()
        },
    );
    if let Some(report) = profile_report {
        println!("fan-out profile, server (perf, self time by symbol):\n{report}");
    }
    println!(
        "fan-out, server side (change reaching the hub to update written to the socket, from the server's histogram): p50 <= {} ms, p99 <= {} ms",
        histogram_percentile_ms(&server_side, 0.50),
        histogram_percentile_ms(&server_side, 0.99),
    );
}

/// Where `--profile` keeps its recording, for `perf report -i` after the run.
fn profile_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fanout-server.perf.data")
}

/// `perf record` of `pid`, with call graphs, until [`stop_profile`].
fn start_profile(pid: u32, data: &Path) -> (Child, PathBuf) {
    let child = Command::new("perf")
        .args(["record", "-F", "999"])
        .arg(
            std::env::var("FANOUT_PERF_CALL_GRAPH")
                .unwrap_or_else(|_| "--call-graph=fp".to_owned()),
        )
        .arg("-p")
        .arg(pid.to_string())
        .arg("-o")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf (linux-perf)");
    (child, data.to_path_buf())
}

/// Stops `perf record` and returns the top of its report: self time by DSO and symbol.
fn stop_profile((mut child, data): (Child, PathBuf)) -> String {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    // `perf report` of the recording, one way of counting or the other, as text.
    let report = |counting: &str, sort: &str| -> String {
        let output = Command::new("perf")
            .args([
                "report", "--stdio", counting, "--sort", sort, "-g", "none", "-i",
            ])
            .arg(&data)
            .stderr(Stdio::null())
            .output()
            .expect("perf report");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let by_symbol = report("--no-children", "dso,sym")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .take(25)
        .collect::<Vec<_>>()
        .join("\n");
    // Inclusive shares of the stages a delivery passes through. On loopback the receiving
    // socket's TCP processing (softirq) runs on the sending CPU and is charged to the server;
    // on a network it is the client machine's work.
    let inclusive = report("--children", "sym");
    let share = |symbol: &str| -> f64 {
        inclusive
            .lines()
            .find(|line| line.split_whitespace().last() == Some(symbol))
            .and_then(|line| line.split_whitespace().next())
            .and_then(|percent| percent.trim_end_matches('%').parse().ok())
            .unwrap_or(0.0)
    };
    format!(
        "{by_symbol}\nstages (inclusive): system calls {:.1}% (of which writev {:.1}%), loopback receive path of the clients' sockets (softirq) {:.1}%, waking the clients' readers {:.1}%",
        share("do_syscall_64"),
        share("do_writev"),
        share("handle_softirqs"),
        share("sock_def_readable"),
    )
}

// ---- proofs on versus off -----------------------------------------------------------------------

/// A slot's writer: signs each new version the way Tahoe does (RSA-PSS, SHA-256, 32-byte salt).
struct Writer {
    signing: rsa::pss::SigningKey<sha2::Sha256>,
    key_der: Vec<u8>,
    rng: rand::rngs::StdRng,
}

impl Writer {
    fn new() -> Self {
        use rsa::pkcs8::EncodePublicKey as _;
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
        let key_der = private
            .to_public_key()
            .to_public_key_der()
            .expect("DER")
            .as_bytes()
            .to_vec();
        Self {
            signing: rsa::pss::SigningKey::new_with_salt_len(private, 32),
            key_der,
            rng,
        }
    }

    fn fingerprint(&self) -> [u8; 32] {
        tahoe_caps::hash::mutable_pubkey_fingerprint(&self.key_der)
    }

    /// Writes an SDMF share of version `seqnum` in place: signed prefix, offsets, key, signature.
    fn write(&mut self, storage: &Path, si: &StorageIndex, seqnum: u64) {
        use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
        let mut prefix = Vec::with_capacity(75);
        prefix.push(0u8);
        prefix.extend_from_slice(&seqnum.to_be_bytes());
        prefix.extend_from_slice(&[0x11; 32]); // root hash
        prefix.extend_from_slice(&[0x22; 16]); // salt
        prefix.extend_from_slice(&[1, 1]); // k, N
        prefix.extend_from_slice(&64u64.to_be_bytes()); // segment size
        prefix.extend_from_slice(&64u64.to_be_bytes()); // data length
        let signature = self.signing.sign_with_rng(&mut self.rng, &prefix).to_vec();
        let key_at = 107u32;
        let signature_at = key_at + self.key_der.len() as u32;
        let rest_at = signature_at + signature.len() as u32;
        let mut data = prefix;
        for offset in [signature_at, rest_at, rest_at, rest_at] {
            data.extend_from_slice(&offset.to_be_bytes());
        }
        for offset in [u64::from(rest_at), u64::from(rest_at)] {
            data.extend_from_slice(&offset.to_be_bytes());
        }
        data.extend_from_slice(&self.key_der);
        data.extend_from_slice(&signature);
        let dir = storage.join("shares").join(si.share_dir());
        std::fs::create_dir_all(&dir).expect("share dir");
        let path = dir.join("0");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .expect("open share");
        let mut header = vec![0u8; DATA_OFFSET];
        header[..32].copy_from_slice(MUTABLE_MAGIC_V2);
        header[84..92].copy_from_slice(&(data.len() as u64).to_be_bytes());
        header.extend_from_slice(&data);
        file.write_all(&header).expect("write share");
    }
}

/// What every side-by-side fan-out of this file measures, whatever else it compares.
struct FanoutFigures {
    /// Write-to-receipt times of every delivery, sorted.
    latencies_ms: Vec<f64>,
    /// Write-to-last-receipt time of each write, sorted.
    last_receipt_ms: Vec<f64>,
    cpu_per_delivery_us: f64,
}

impl FanoutFigures {
    fn new(mut last_receipt_ms: Vec<f64>, server_cpu_s: f64, deliveries: usize) -> Self {
        last_receipt_ms.sort_by(|a, b| a.total_cmp(b));
        Self {
            latencies_ms: take_latencies_ms(),
            last_receipt_ms,
            cpu_per_delivery_us: server_cpu_s * 1e6 / deliveries.max(1) as f64,
        }
    }

    /// Prints their rows of a Markdown table with one column for `a`, one for `b`.
    fn print_rows(a: &Self, b: &Self) {
        let row = |name: &str, f: &dyn Fn(&Self) -> String| {
            println!("| {name} | {} | {} |", f(a), f(b));
        };
        row("write-to-receipt p50 ms", &|p| {
            format!("{:.1}", percentile(&p.latencies_ms, 0.5))
        });
        row("write-to-receipt p99 ms", &|p| {
            format!("{:.1}", percentile(&p.latencies_ms, 0.99))
        });
        row("write-to-last-receipt p50 ms", &|p| {
            format!("{:.1}", percentile(&p.last_receipt_ms, 0.5))
        });
        row("deliveries received", &|p| p.latencies_ms.len().to_string());
        row("server CPU µs per delivery", &|p| {
            format!("{:.1}", p.cpu_per_delivery_us)
        });
    }
}

struct Phase {
    proofs: bool,
    figures: FanoutFigures,
    bytes_per_update: f64,
    status_bytes: f64,
    verified: bool,
}

async fn compare_proofs(args: Args) {
    let work = tempfile::tempdir().expect("temp dir");
    let storage = work.path().join("storage");
    let hot = StorageIndex::from_bytes([0x5a; 16]);
    let mut writer = Writer::new();
    writer.write(&storage, &hot, 1);
    let (mut server, _, nurl) = support::start_single(work.path(), &storage, args.pin).await;
    let pid = server.id();
    let mut seqnum = 1u64;
    let mut phases = Vec::new();
    for proofs in [false, true] {
        let pending: Pending = Arc::new(RwLock::new(HashMap::new()));
        let bytes = Arc::new(AtomicUsize::new(0));
        let updates = Arc::new(AtomicUsize::new(0));
        let verified_ok = Arc::new(AtomicUsize::new(0));
        let sockets =
            support::connect_subscribers(&nurl, args.connections, args.connect_concurrency, |_| {
                if proofs {
                    ClientMessage::subscribe_with_proofs(
                        [hot],
                        mutable_updates::message::ProofRequest::WithKeys,
                    )
                } else {
                    ClientMessage::subscribe([hot])
                }
            })
            .await;
        let mut readers = Vec::new();
        let mut status_bytes = 0usize;
        let fingerprint = writer.fingerprint();
        let key = mutable_updates::proof::VerificationKey::from_der(&writer.key_der).expect("key");
        for (mut socket, status_len) in sockets {
            status_bytes += status_len;
            let pending = Arc::clone(&pending);
            let bytes = Arc::clone(&bytes);
            let updates = Arc::clone(&updates);
            let verified_ok = Arc::clone(&verified_ok);
            let check = readers.is_empty().then(|| key.clone());
            readers.push(tokio::spawn(async move {
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(ServerMessage::Update(update)) = ServerMessage::parse(text.as_str())
                    else {
                        continue;
                    };
                    bytes.fetch_add(text.len(), Ordering::Relaxed);
                    updates.fetch_add(1, Ordering::Relaxed);
                    // One reader checks every proof it gets against the writer's fingerprint.
                    if let (Some(key), Some(proof)) = (&check, &update.proof) {
                        if proof
                            .verify(&fingerprint, Some(key))
                            .is_ok_and(|v| Some(v.seqnum()) == update.seqnum)
                        {
                            verified_ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if let Some(seqnum) = update.seqnum {
                        record_receipt(&pending, update.storage_index, seqnum);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        FANOUT_LATENCIES.lock().unwrap().clear();
        let cpu_start = cpu_ticks(pid);
        let mut last_receipt_ms = Vec::new();
        for _ in 0..args.fanout_writes {
            seqnum += 1;
            let (last_ms, _) = timed_write(&pending, hot, seqnum, args.connections, || {
                writer.write(&storage, &hot, seqnum)
            })
            .await;
            last_receipt_ms.push(last_ms);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let server_cpu_s = (cpu_ticks(pid) - cpu_start) as f64 / ticks_per_second();
        let received = updates.load(Ordering::Relaxed).max(1);
        phases.push(Phase {
            proofs,
            figures: FanoutFigures::new(
                last_receipt_ms,
                server_cpu_s,
                args.fanout_writes * args.connections,
            ),
            bytes_per_update: bytes.load(Ordering::Relaxed) as f64 / received as f64,
            status_bytes: status_bytes as f64 / args.connections.max(1) as f64,
            verified: !proofs || verified_ok.load(Ordering::Relaxed) == args.fanout_writes,
        });
        for reader in readers {
            reader.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "fan-out, {} subscribers of one slot, {} writes each way (same server, same run):",
        args.connections, args.fanout_writes
    );
    println!("| | proofs off | proofs on |\n|---|---|---|");
    let row = |name: &str, f: &dyn Fn(&Phase) -> String| {
        println!("| {name} | {} | {} |", f(&phases[0]), f(&phases[1]));
    };
    FanoutFigures::print_rows(&phases[0].figures, &phases[1].figures);
    row("bytes per update message", &|p| {
        format!("{:.0}", p.bytes_per_update)
    });
    row("bytes per status (1 SI, with-keys)", &|p| {
        format!("{:.0}", p.status_bytes)
    });
    row("proofs verified by a reader", &|p| {
        if p.proofs {
            p.verified.to_string()
        } else {
            "-".to_owned()
        }
    });
}

// ---- the release binary versus the Python reference peer ----------------------------------------

struct ServerPhase {
    name: &'static str,
    rss_per_connection_kib: f64,
    connect_s: f64,
    figures: FanoutFigures,
}

/// One fan-out against the server `pid` at `nurl`: `--connections` subscribers of `hot`, then
/// `--fanout-writes` writes from `first_seqnum` on.
async fn measure_server(
    name: &'static str,
    (pid, nurl): (u32, &mutable_updates::nurl::Nurl),
    (storage, hot): (&Path, StorageIndex),
    first_seqnum: u64,
    args: &Args,
) -> ServerPhase {
    let rss_before = rss_kib(pid);
    let support::HotSubscribers {
        pending,
        readers,
        connect_s,
    } = support::subscribe_to_hot(nurl, args.connections, args.connect_concurrency, hot).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = rss_kib(pid);
    FANOUT_LATENCIES.lock().unwrap().clear();
    let cpu_start = cpu_ticks(pid);
    let last_receipt_ms = support::timed_writes(
        &pending,
        (storage, hot),
        first_seqnum,
        args.fanout_writes,
        args.connections,
        Duration::from_millis(200),
    )
    .await;
    let cpu_s = (cpu_ticks(pid) - cpu_start) as f64 / ticks_per_second();
    for reader in readers {
        reader.abort();
    }
    ServerPhase {
        name,
        rss_per_connection_kib: rss_connected.saturating_sub(rss_before) as f64
            / args.connections.max(1) as f64,
        connect_s,
        figures: FanoutFigures::new(
            last_receipt_ms,
            cpu_s,
            args.fanout_writes * args.connections,
        ),
    }
}

async fn compare_python_peer(args: Args) {
    let hot = StorageIndex::from_bytes([0x3c; 16]);
    let mut phases = Vec::new();
    let mut seqnum = 1u64;
    for peer in [false, true] {
        let work = tempfile::tempdir().expect("temp dir");
        let storage = work.path().join("storage");
        write_share(&storage, &hot, seqnum);
        let (mut server, nurl, name) = if peer {
            let (server, nurl) = support::start_python_peer(work.path(), &storage, args.pin).await;
            (
                server,
                nurl,
                "Python peer (Twisted + autobahn, 50 ms polling)",
            )
        } else {
            let (server, _, nurl) = support::start_single(work.path(), &storage, args.pin).await;
            (server, nurl, "tahoe-updates-server")
        };
        let phase = measure_server(
            name,
            (server.id(), &nurl),
            (&storage, hot),
            seqnum + 1,
            &args,
        )
        .await;
        seqnum += 1 + args.fanout_writes as u64;
        drop(server.stdin.take());
        let _ = server.kill();
        let _ = server.wait();
        phases.push(phase);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "fan-out, {} subscribers of one slot, {} writes 200 ms apart, each server in turn (same run{}):",
        args.connections,
        args.fanout_writes,
        if args.pin {
            format!(", server on CPU {SERVER_CPU}, load generator on CPU {LOAD_GENERATOR_CPU}")
        } else {
            ", 2 cores shared".to_owned()
        }
    );
    println!(
        "| | {} | {} |\n|---|---|---|",
        phases[0].name, phases[1].name
    );
    let row = |name: &str, f: &dyn Fn(&ServerPhase) -> String| {
        println!("| {name} | {} | {} |", f(&phases[0]), f(&phases[1]));
    };
    row("RSS per connection, KiB", &|p| {
        format!("{:.1}", p.rss_per_connection_kib)
    });
    row("connect + subscribe all, s", &|p| {
        format!("{:.1}", p.connect_s)
    });
    FanoutFigures::print_rows(&phases[0].figures, &phases[1].figures);
}
