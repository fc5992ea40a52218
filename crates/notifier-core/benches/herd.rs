//! The herd after a popular change (issue 14): storage-node reads per second after one change
//! of a slot that 1,000 engines watch, with and without spreading their fetches, in one run.
//!
//! A real local grid (tahoe-lafs, 3 storage nodes with web ports for their statistics, one
//! gateway) and the updates server's code beside each storage node. 1,000 simulated engines
//! each hold a subscription to one mutable directory on the first server; when an update
//! comes, each waits as the engine would ([`SpreadPolicy::wait`] with the server's
//! `subscribers` hint) and then lists the directory through the gateway with the engine's own
//! gateway client. The storage nodes' `storage_server.readv` counters are read every 250 ms.
//! The first round does not spread ([`SpreadPolicy::off`]), the second does (the default).
//!
//! `dbus-run-session -- keyctl session - tests/with-desktop-services.sh cargo bench -p notifier-core --bench herd`
//! (`-- --engines N` for another crowd).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use local_grid::{Format, Grid, GridOptions};
use mutable_updates::client::{connect, PATH};
use mutable_updates::message::{ClientMessage, ServerMessage};
use notifier_core::engine::spread::SpreadPolicy;
use notifier_core::net::gateway::Gateway;
use support::InProcessServer;
use tahoe_caps::Cap;
use updates_server::limits::Limits;

/// What one simulated engine saw of one change.
#[derive(Debug, Clone, Copy)]
struct Fetch {
    /// When its fetch started and ended, from the start of the round.
    started: Duration,
    ended: Duration,
    ok: bool,
}

/// The round under way: its policy, the seqnum it waits for, and what was fetched.
struct Round {
    policy: SpreadPolicy,
    seqnum: u64,
    created: Instant,
    fetches: Mutex<Vec<Fetch>>,
    hints: Mutex<Vec<Option<u64>>>,
}

fn engines_from_args() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--engines")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

fn main() {
    let engines = engines_from_args();
    let grid = Grid::start(GridOptions {
        storage_web: true,
        ..GridOptions::default()
    })
    .expect("a real local grid (tests/bootstrap-python.sh)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&grid, engines));
}

async fn run(grid: &Grid, engines: usize) {
    let limits = Limits {
        max_connections: 100_000,
        max_authenticated_per_address: 100_000,
        max_unauthenticated_per_address: 100_000,
        ..Limits::default()
    };
    let server = InProcessServer::start_with_limits(&grid.storage_nodes()[0], limits).await;
    let writer = {
        let dircap = grid.create_mutable_dir(Format::Sdmf).unwrap();
        for n in 0..5 {
            grid.put_child(&dircap, &format!("notice-{n}.txt"), b"maintenance")
                .unwrap();
        }
        dircap
    };
    let cap: Cap = writer.parse().unwrap();
    let read_cap = cap.read_only();
    let si = cap.storage_index().unwrap();
    let gateway = Gateway::new(grid.gateway_url()).unwrap();
    let round: Arc<RwLock<Option<Arc<Round>>>> = Arc::new(RwLock::new(None));
    let subscribed = Arc::new(AtomicUsize::new(0));

    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(engines);
    for index in 0..engines {
        let nurl = server.nurl.clone();
        let round = Arc::clone(&round);
        let gateway = gateway.clone();
        let read_cap = read_cap.clone();
        let subscribed = Arc::clone(&subscribed);
        tasks.push(tokio::spawn(async move {
            let mut socket = loop {
                match connect(&nurl, PATH).await {
                    Ok(socket) => break socket,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            socket
                .send(ClientMessage::subscribe([si]).to_json().into())
                .await
                .unwrap();
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(index as u64);
            while let Some(Ok(message)) = socket.next().await {
                let Ok(text) = message.to_text() else {
                    continue;
                };
                match ServerMessage::parse(text) {
                    Ok(ServerMessage::Status(_)) => {
                        subscribed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ServerMessage::Update(update)) => {
                        let Some(current) = round.read().unwrap().clone() else {
                            continue;
                        };
                        if update.seqnum != Some(current.seqnum) {
                            continue;
                        }
                        current.hints.lock().unwrap().push(update.subscribers);
                        let wait = current.policy.wait(update.subscribers, &mut rng);
                        let gateway = gateway.clone();
                        let read_cap = read_cap.clone();
                        // As the engine does: the fetch runs beside the link, which keeps
                        // answering pings.
                        tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            let started = current.created.elapsed();
                            let ok = gateway.list(&read_cap).await.is_ok();
                            let ended = current.created.elapsed();
                            current
                                .fetches
                                .lock()
                                .unwrap()
                                .push(Fetch { started, ended, ok });
                        });
                    }
                    _ => {}
                }
            }
        }));
    }
    while subscribed.load(Ordering::Relaxed) < engines {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "herd: {engines} simulated engines subscribed on one updates server in {:.1} s",
        connect_started.elapsed().as_secs_f64()
    );

    let mut reports = Vec::new();
    for (name, policy) in [
        ("without spreading", SpreadPolicy::off()),
        ("with spreading", SpreadPolicy::default()),
    ] {
        reports.push((
            name,
            one_round(grid, &writer, &round, policy, engines).await,
        ));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    println!(
        "\n| {engines} engines, one change | {} | {} |",
        reports[0].0, reports[1].0
    );
    println!("| --- | --- | --- |");
    for (label, pick) in [
        ("subscribers hint received", 0usize),
        ("fetches done (failed)", 1),
        ("storage-node reads (readv) in all", 2),
        ("storage-node reads per second, peak 1 s", 3),
        ("busiest second after the PUT answer", 4),
        ("last fetch done after the PUT answer", 5),
        ("fetch time through the gateway p50 / p99", 6),
        ("seconds with reads", 7),
        ("storage-node reads per second, mean over those seconds", 8),
    ] {
        println!(
            "| {label} | {} | {} |",
            reports[0].1[pick], reports[1].1[pick]
        );
    }
    for task in tasks {
        task.abort();
    }
}

/// One change of the slot, then the storage nodes' reads until every engine has fetched.
async fn one_round(
    grid: &Grid,
    writer: &str,
    round: &Arc<RwLock<Option<Arc<Round>>>>,
    policy: SpreadPolicy,
    engines: usize,
) -> Vec<String> {
    let seqnum = current_seqnum(grid, writer).unwrap_or(0);
    let next = Arc::new(Round {
        policy,
        seqnum: seqnum + 1,
        created: Instant::now(),
        fetches: Mutex::new(Vec::new()),
        hints: Mutex::new(Vec::new()),
    });
    let readv_before = readv_total(grid);
    *round.write().unwrap() = Some(Arc::clone(&next));
    let put_started = Instant::now();
    // Blocking calls to the grid leave the runtime's other worker to the engines.
    tokio::task::block_in_place(|| {
        grid.put_child(writer, &format!("posted-{}.txt", seqnum + 1), b"news")
            .unwrap()
    });
    // Times are taken from the PUT's answer, as the engine bench does.
    let answered_after = put_started.elapsed();
    let mut samples: Vec<(Duration, u64)> = vec![(Duration::ZERO, readv_total(grid))];
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let at = next.created.elapsed().saturating_sub(answered_after);
        samples.push((at, readv_total(grid)));
        let done = next.fetches.lock().unwrap().len();
        if done >= engines || Instant::now() > deadline {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    samples.push((
        next.created.elapsed().saturating_sub(answered_after),
        readv_total(grid),
    ));
    let fetches = next.fetches.lock().unwrap().clone();
    let hints = next.hints.lock().unwrap().clone();
    let (peak, busiest, active) = per_second(&samples);
    let total = samples.last().map_or(0, |(_, n)| *n) - readv_before;
    let mut durations: Vec<f64> = fetches
        .iter()
        .map(|f| (f.ended - f.started).as_secs_f64())
        .collect();
    durations.sort_by(f64::total_cmp);
    let last = fetches
        .iter()
        .map(|f| f.ended.saturating_sub(answered_after))
        .max()
        .unwrap_or_default();
    let failed = fetches.iter().filter(|f| !f.ok).count();
    vec![
        hints
            .iter()
            .find_map(|h| *h)
            .map_or("none".to_owned(), |h| h.to_string()),
        format!("{} ({failed})", fetches.len()),
        total.to_string(),
        peak.to_string(),
        format!("{busiest}–{} s", busiest + 1),
        format!("{:.1} s", last.as_secs_f64()),
        format!(
            "{:.2} s / {:.2} s",
            percentile(&durations, 0.5),
            percentile(&durations, 0.99)
        ),
        active.to_string(),
        format!("{:.0}", total as f64 / active.max(1) as f64),
    ]
}

/// The slot's seqnum as the first storage node's share header has it.
fn current_seqnum(grid: &Grid, writer: &str) -> Option<u64> {
    let cap: Cap = writer.parse().ok()?;
    let si = cap.storage_index()?.to_base32();
    let node = &grid.storage_nodes()[0];
    let folder = node.storage_dir.join("shares").join(&si[..2]).join(&si);
    let share = std::fs::read_dir(folder).ok()?.flatten().next()?.path();
    let bytes = std::fs::read(share).ok()?;
    // The container header, then the share's version byte, then the seqnum.
    bytes
        .get(469..477)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

fn readv_total(grid: &Grid) -> u64 {
    tokio::task::block_in_place(|| {
        grid.storage_nodes()
            .iter()
            .map(|node| node.readv_count().unwrap_or(0))
            .sum()
    })
}

/// From cumulative samples: the most reads in one whole second, which second that was, and
/// how many seconds saw any read.
fn per_second(samples: &[(Duration, u64)]) -> (u64, u64, usize) {
    let end = samples.last().map_or(0, |(at, _)| at.as_secs());
    let at_second = |second: u64| -> u64 {
        // The count at the last sample taken by that second.
        samples
            .iter()
            .take_while(|(at, _)| at.as_secs_f64() <= second as f64)
            .last()
            .map_or(0, |(_, n)| *n)
    };
    let mut peak = (0, 0);
    let mut active = 0;
    for second in 0..end {
        let reads = at_second(second + 1).saturating_sub(at_second(second));
        if reads > 0 {
            active += 1;
        }
        if reads > peak.0 {
            peak = (reads, second);
        }
    }
    (peak.0, peak.1, active)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
