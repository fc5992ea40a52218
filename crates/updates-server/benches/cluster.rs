//! Issue 14's figures for the NATS deployment, beside the single process, in one run: fan-out
//! latency at equal subscribers, CPU per delivery, memory per connection (connections per GiB)
//! and broker messages per change.
//!
//! One synthetic share tree (as `fanout.rs` builds it) is watched by a `--role single` server
//! and by a `--role watcher` that publishes to a real `nats-server`, from which one `--role
//! edge` serves. N TLS WebSocket clients subscribe to one hot slot, first on the single server
//! (phase A), then, after they left, on the edge (phase B); in each phase K in-place writes of
//! the hot slot's share are timed from the write to their receipt by every client. The
//! broker's own counters (`/varz`) are read over the writes and over a quiet interval as long,
//! whose messages (the watcher's heartbeats) are subtracted to leave the change messages. CPU is
//! read from the threads' `schedstat` (ns): the watcher and the broker spend too little per
//! change for `stat`'s 10 ms ticks.
//!
//! `cargo bench -p updates-server --bench cluster -- --connections 2000 [--pin]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use clap::Parser;
use local_grid::nats::{MessageCounts, NatsOptions, NatsServer};
use mutable_updates::nurl::Nurl;
use rand::{Rng, SeedableRng};
use support::{
    cpu_ns, delivery_histogram, free_address, histogram_delta, histogram_percentile_ms, metric,
    metrics_page, percentile, rss_kib, start_server, take_latencies_ms, wait_for_nurl, write_share,
    Role, SERVER_CPU,
};
use tahoe_caps::StorageIndex;

#[derive(Debug, Parser)]
#[command(about = "The NATS deployment of tahoe-updates-server against the single process")]
struct Args {
    /// WebSocket connections subscribed to the hot slot, in each phase.
    #[arg(long, default_value_t = 2_000)]
    connections: usize,
    /// Writes to the hot slot in each phase.
    #[arg(long, default_value_t = 20)]
    fanout_writes: usize,
    /// Pause after each write, in milliseconds.
    #[arg(long, default_value_t = 200)]
    write_interval_ms: u64,
    /// Mutable slots in the synthetic share tree (only the first one is written).
    #[arg(long, default_value_t = 1_000)]
    slots: usize,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Every server process (single, watcher, edge, nats-server) on CPU 1, the load generator
    /// on CPU 0 (`taskset`).
    #[arg(long)]
    pin: bool,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A server process, ended when dropped (it also ends when our end of its stdin closes).
struct Server {
    child: Child,
    metrics: SocketAddr,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let args = Args::parse();
    support::run_load_generator(args.pin, args.client_threads, run(args));
}

/// What one phase measured.
struct Phase {
    connect_s: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    latencies_ms: Vec<f64>,
    last_receipt_ms: Vec<f64>,
    server_side: Vec<(f64, u64)>,
    /// CPU seconds over the writes, by process name.
    cpu_s: HashMap<&'static str, f64>,
    /// Broker messages over the writes, and over a quiet interval as long.
    broker_writes: MessageCounts,
    broker_quiet: MessageCounts,
    /// Edge and watcher counters over the writes (phase B).
    edge_broker_messages: u64,
    watcher_published: u64,
}

async fn run(args: Args) {
    let nats_binary = NatsServer::binary()
        .expect("nats-server is not installed (apt-get install nats-server; tests/bootstrap.sh)");
    let work = tempfile::tempdir().expect("temp dir");
    let storage = work.path().join("storage");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let slots: Vec<StorageIndex> = (0..args.slots.max(1))
        .map(|_| StorageIndex::from_bytes(rng.gen()))
        .collect();
    for si in &slots {
        write_share(&storage, si, 1);
    }
    let hot = slots[0];

    let nats = NatsServer::start(
        &nats_binary,
        &NatsOptions {
            monitoring: true,
            cpus: args.pin.then(|| SERVER_CPU.to_owned()),
            ..NatsOptions::default()
        },
    )
    .expect("start nats-server");
    nats.wait_ready(Duration::from_secs(10))
        .expect("nats-server ready");
    let nats_pid = nats.pid().expect("nats-server runs");
    let single = spawn(
        work.path(),
        "single",
        Role::Single { storage: &storage },
        &args,
    );
    let watcher = spawn(
        work.path(),
        "watcher",
        Role::Watcher {
            storage: &storage,
            nats: &nats.url(),
            node_id: "bench-node",
        },
        &args,
    );
    let edge = spawn(work.path(), "edge", Role::Edge { nats: &nats.url() }, &args);
    let single_nurl = wait_for_nurl(&work.path().join("single/nurl")).await;
    let edge_nurl = wait_for_nurl(&work.path().join("edge/nurl")).await;
    wait_for_metric(edge.metrics, "tahoe_updates_edge_watchers", 1).await;
    wait_for_metric(edge.metrics, "tahoe_updates_broker_connected", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "setup: {} slots; {} connections subscribed to one hot slot, {} writes {} ms apart per phase; {}",
        slots.len(),
        args.connections,
        args.fanout_writes,
        args.write_interval_ms,
        if args.pin {
            "servers and nats-server on CPU 1, load generator on CPU 0"
        } else {
            "2 cores shared by everything"
        }
    );

    let processes = [
        ("single", single.pid()),
        ("watcher", watcher.pid()),
        ("edge", edge.pid()),
        ("nats-server", nats_pid),
    ];
    let single_phase = phase(
        &args,
        &single_nurl,
        &single,
        &processes,
        &nats,
        (&storage, hot, 2),
        None,
    )
    .await;
    let edge_phase = phase(
        &args,
        &edge_nurl,
        &edge,
        &processes,
        &nats,
        (&storage, hot, 2 + args.fanout_writes as u64),
        Some(&watcher),
    )
    .await;
    drop((single, watcher, edge));
    print_table(&args, &single_phase, &edge_phase);
}

fn spawn(work: &Path, name: &str, role: Role<'_>, args: &Args) -> Server {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).expect("server dir");
    let metrics = free_address();
    Server {
        child: start_server(&dir, role, metrics, args.pin),
        metrics,
    }
}

async fn wait_for_metric(metrics: SocketAddr, name: &str, wanted: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&metrics_page(metrics).await, name) != Some(wanted) {
        assert!(Instant::now() < deadline, "{name} never reached {wanted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// N clients on `server`, K timed writes, then a quiet interval as long; the clients leave.
async fn phase(
    args: &Args,
    nurl: &Nurl,
    server: &Server,
    processes: &[(&'static str, u32)],
    nats: &NatsServer,
    (storage, hot, first_seqnum): (&Path, StorageIndex, u64),
    watcher: Option<&Server>,
) -> Phase {
    let rss_before_kib = rss_kib(server.pid());
    let support::HotSubscribers {
        pending,
        readers,
        connect_s,
    } = support::subscribe_to_hot(nurl, args.connections, args.connect_concurrency, hot).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_kib = rss_kib(server.pid());

    let (edge_before, published_before) = cluster_counters(server, watcher).await;
    let histogram_before = delivery_histogram(server.metrics).await;
    let cpu_before: Vec<u64> = processes.iter().map(|(_, pid)| cpu_ns(*pid)).collect();
    let broker_before = nats.message_counts().expect("varz");
    take_latencies_ms();
    let writes_started = Instant::now();
    let mut last_receipt_ms = support::timed_writes(
        &pending,
        (storage, hot),
        first_seqnum,
        args.fanout_writes,
        args.connections,
        Duration::from_millis(args.write_interval_ms),
    )
    .await;
    let writes_took = writes_started.elapsed();
    let broker_after = nats.message_counts().expect("varz");
    let cpu_s = processes
        .iter()
        .zip(cpu_before)
        .map(|((name, pid), before)| (*name, cpu_ns(*pid).saturating_sub(before) as f64 / 1e9))
        .collect();
    let server_side = histogram_delta(&delivery_histogram(server.metrics).await, &histogram_before);
    let (edge_after, published_after) = cluster_counters(server, watcher).await;
    let latencies_ms = take_latencies_ms();

    // The same clients, no writes, as long: what the broker carries anyway.
    let quiet_before = nats.message_counts().expect("varz");
    tokio::time::sleep(writes_took).await;
    let broker_quiet = nats.message_counts().expect("varz") - quiet_before;

    for reader in readers {
        reader.abort();
    }
    wait_for_metric(server.metrics, "tahoe_updates_connections", 0).await;
    last_receipt_ms.sort_by(|a, b| a.total_cmp(b));
    Phase {
        connect_s,
        rss_before_kib,
        rss_after_kib,
        latencies_ms,
        last_receipt_ms,
        server_side,
        cpu_s,
        broker_writes: broker_after - broker_before,
        broker_quiet,
        edge_broker_messages: edge_after - edge_before,
        watcher_published: published_after - published_before,
    }
}

/// Broker messages the edge `server` took, and changes the `watcher` published (0 for
/// what is not an edge or not there).
async fn cluster_counters(server: &Server, watcher: Option<&Server>) -> (u64, u64) {
    let taken = metric(
        &metrics_page(server.metrics).await,
        "tahoe_updates_edge_broker_messages",
    );
    let published = match watcher {
        Some(watcher) => metric(
            &metrics_page(watcher.metrics).await,
            "tahoe_updates_cluster_changes_published",
        ),
        None => None,
    };
    (taken.unwrap_or(0), published.unwrap_or(0))
}

fn print_table(args: &Args, single: &Phase, edge: &Phase) {
    let writes = args.fanout_writes.max(1) as f64;
    let deliveries = writes * args.connections.max(1) as f64;
    let kib_per_connection = |p: &Phase| {
        p.rss_after_kib.saturating_sub(p.rss_before_kib) as f64 / args.connections.max(1) as f64
    };
    let cpu_us =
        |p: &Phase, name: &str, per: f64| p.cpu_s.get(name).copied().unwrap_or(0.0) * 1e6 / per;
    // Change messages only: what the broker carried over the writes, less what it carries in
    // as long without them (heartbeats).
    let per_change = |p: &Phase, pick: fn(&MessageCounts) -> u64| {
        (pick(&p.broker_writes) as f64 - pick(&p.broker_quiet) as f64) / writes
    };
    println!(
        "\n| {} writes × {} subscribers | single process (phase A) | watcher → nats-server → edge (phase B) |",
        args.fanout_writes, args.connections
    );
    println!("| --- | --- | --- |");
    let row = |name: &str, f: &dyn Fn(&Phase) -> String| {
        println!("| {name} | {} | {} |", f(single), f(edge));
    };
    row("subscribers of the hot slot", &|_| {
        args.connections.to_string()
    });
    row("connect + subscribe, s", &|p| format!("{:.1}", p.connect_s));
    row(&format!("deliveries (of {deliveries})"), &|p| {
        p.latencies_ms.len().to_string()
    });
    row("write → receipt p50, ms", &|p| {
        format!("{:.1}", percentile(&p.latencies_ms, 0.50))
    });
    row("write → receipt p99, ms", &|p| {
        format!("{:.1}", percentile(&p.latencies_ms, 0.99))
    });
    row("write → last receipt p50 / max, ms", &|p| {
        format!(
            "{:.1} / {:.1}",
            percentile(&p.last_receipt_ms, 0.50),
            p.last_receipt_ms.last().copied().unwrap_or(0.0)
        )
    });
    row(
        "serving process: hub → socket p50 / p99, ms (histogram bounds)",
        &|p| {
            format!(
                "≤ {} / ≤ {}",
                histogram_percentile_ms(&p.server_side, 0.50),
                histogram_percentile_ms(&p.server_side, 0.99)
            )
        },
    );
    println!(
        "| CPU per delivery, serving process, µs | {:.1} (single) | {:.1} (edge) |",
        cpu_us(single, "single", deliveries),
        cpu_us(edge, "edge", deliveries)
    );
    println!(
        "| CPU per change, watcher / nats-server, µs | - (in the single process) | {:.0} / {:.0} |",
        cpu_us(edge, "watcher", writes),
        cpu_us(edge, "nats-server", writes)
    );
    let all_edge: f64 = ["edge", "watcher", "nats-server"]
        .iter()
        .map(|name| cpu_us(edge, name, deliveries))
        .sum();
    println!(
        "| CPU per delivery, all server processes, µs | {:.1} | {all_edge:.1} |",
        cpu_us(single, "single", deliveries),
    );
    row("serving process RSS before → after, MiB", &|p| {
        format!(
            "{:.1} → {:.1}",
            p.rss_before_kib as f64 / 1024.0,
            p.rss_after_kib as f64 / 1024.0
        )
    });
    row("KiB per connection", &|p| {
        format!("{:.1}", kib_per_connection(p))
    });
    row("connections per GiB of RSS", &|p| {
        format!("{:.0}", 1024.0 * 1024.0 / kib_per_connection(p).max(0.001))
    });
    row("broker in / out msgs over the writes (raw)", &|p| {
        format!("{} / {}", p.broker_writes.in_msgs, p.broker_writes.out_msgs)
    });
    row("broker in / out msgs over as long without writes", &|p| {
        format!("{} / {}", p.broker_quiet.in_msgs, p.broker_quiet.out_msgs)
    });
    row(
        "broker msgs (bytes) per change, in / out (quiet subtracted)",
        &|p| {
            format!(
                "{:.2} / {:.2} ({:.0} / {:.0} B)",
                per_change(p, |c| c.in_msgs),
                per_change(p, |c| c.out_msgs),
                per_change(p, |c| c.in_bytes),
                per_change(p, |c| c.out_bytes)
            )
        },
    );
    println!(
        "| changes published by the watcher / broker msgs taken by the edge (heartbeats included), per write | - | {:.2} / {:.2} |",
        edge.watcher_published as f64 / writes,
        edge.edge_broker_messages as f64 / writes
    );
    println!(
        "\nPhase A's broker traffic is the watcher publishing the same writes with no edge subscribed to the slot; \
         CPU per change of watcher and nats-server are over phase B's writes (heartbeats included)."
    );
}
