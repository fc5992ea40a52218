//! Faults, with nothing lost: a driver makes random changes across many caps on a real local
//! grid while it SIGKILLs and restarts the real `tahoe-updates-server` processes, cuts and stalls
//! the engine's connections through a TCP proxy on loopback, and restarts the engine itself. At
//! the end every change must be reported exactly once (by seqnum) and the engine must have
//! recovered from every fault by itself.
//!
//! Short by default (a few minutes on 2 cores); `TAHOE_NOTIFIER_LONG_TESTS=1` runs the full
//! 1,000 changes over 50 caps with 10 kills, 2 engine restarts, each proxy fault 3 times, and
//! the default ping and silence timeouts. `TAHOE_NOTIFIER_FAULTS_SEED=N` replays a run. The
//! report is printed (`-- --nocapture`); nothing asserts on time.
//!
//! Accounting, per cap: the seqnums the driver produced (read back from the share files on the
//! storage nodes after each write) against the seqnums the engine reported. A report with seqnum
//! N covers every change since the previous report up to N (changes while away are coalesced by
//! design). A change is *reported* if a report covers it, *lost* if none does (its seqnum is
//! above the cap's last report), and a seqnum reported twice for a cap is *duplicated*.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "faults/proxy.rs"]
mod proxy;
#[path = "faults/server_process.rs"]
mod server_process;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_grid::{Format, Grid};
use notifier_core::engine::{Engine, EngineCommand, EngineEvent, EngineOptions};
use notifier_core::grid::description::parse_grid_file;
use notifier_core::net::link::{LinkState, LinkTiming};
use notifier_core::notify::{PolicyConfig, RecordingSink};
use notifier_core::store::caps::CapStore;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::keyring::SecretStore;
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;
use proxy::{FaultProxy, Mode};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use server_process::ServerProcess;
use tahoe_caps::{Cap, StorageIndex};
use tokio::sync::mpsc;
use updates_server::share::{read_share_header, ShareHeader};

fn long_tests() -> bool {
    std::env::var_os("TAHOE_NOTIFIER_LONG_TESTS").is_some_and(|v| v == "1")
}

/// The size of a run.
#[derive(Debug, Clone)]
struct Plan {
    changes: usize,
    caps: usize,
    kills: usize,
    engine_restarts: usize,
    /// How often each proxy fault (cut, half-open, stop-reading, silence) is injected.
    proxy_rounds: usize,
    /// The servers' `--ping-interval`.
    ping_interval_s: u64,
    /// The engine's silence timeout (its option; the default is 75 s).
    silence_timeout: Duration,
    /// How long a stalled connection is held open by the proxy.
    hold: Duration,
    /// How often the engine polls caps that no server holds (its option; default 5 min).
    poll_interval: Duration,
    /// How long every server stays down at once (a few polls long), once per run.
    all_down: Duration,
}

impl Plan {
    fn short() -> Self {
        Self {
            changes: 120,
            caps: 12,
            kills: 3,
            engine_restarts: 1,
            proxy_rounds: 1,
            ping_interval_s: 2,
            silence_timeout: Duration::from_secs(6),
            hold: Duration::from_secs(20),
            poll_interval: Duration::from_secs(4),
            all_down: Duration::from_secs(10),
        }
    }

    fn long() -> Self {
        Self {
            changes: 1_000,
            caps: 50,
            kills: 10,
            engine_restarts: 2,
            proxy_rounds: 3,
            // The defaults users get.
            ping_interval_s: 30,
            silence_timeout: LinkTiming::default().silence_timeout,
            hold: Duration::from_secs(180),
            // Shorter than the default 5 minutes so that the all-down fault sees a few polls.
            poll_interval: Duration::from_secs(30),
            all_down: Duration::from_secs(80),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    /// Every server SIGKILLed at once for `Plan::all_down`: the engine falls back to polling.
    AllDown,
    EngineRestart,
    Proxy(Mode),
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "SIGKILL + restart",
            Self::AllDown => "all servers down",
            Self::EngineRestart => "engine restart",
            Self::Proxy(mode) => mode.name(),
        }
    }
}

/// A fault as injected, for the recovery figures.
#[derive(Debug, Clone)]
struct Injected {
    fault: Fault,
    /// The server it hit (`None` for an engine restart or all servers).
    server: Option<usize>,
    /// When recovery could start: the restart for a kill, the injection for a proxy fault, the
    /// new engine's start for an engine restart.
    from: Instant,
    /// Changes made while the fault lasted (counted at the end for proxy faults).
    changes_during: usize,
    /// When it was injected.
    injected_at: Instant,
}

/// What the engines said, in order, across restarts.
#[derive(Default)]
struct Observed {
    /// The engine's change reports, in the order it made them.
    changes: Vec<ObservedReport>,
    /// (when, server index, state)
    states: Vec<(Instant, usize, LinkState)>,
    /// Connected states that were not an engine's first connection to that server.
    reconnects: usize,
    /// (when, cap id, servers subscribed on)
    cap_status: Vec<(Instant, String, usize)>,
    notices: Vec<String>,
}

/// One change report as the driver saw it.
struct ObservedReport {
    at: Instant,
    cap_id: String,
    seqnum: u64,
    while_away: bool,
    /// Summary and body, for the timeline of a report that covered nothing new.
    text: String,
    /// The names its details list as added.
    added: Vec<String>,
}

struct WatchedCap {
    id: String,
    write_cap: String,
    storage_index: StorageIndex,
    /// Seqnums produced by the driver, in order (the first is the baseline before any change).
    produced: Vec<u64>,
    /// When each write of `produced[1..]` returned.
    produced_at: Vec<Instant>,
    /// The file each write of `produced[1..]` added.
    produced_names: Vec<String>,
}

struct RunningEngine {
    commands: mpsc::Sender<EngineCommand>,
    task: tokio::task::JoinHandle<()>,
    collector: tokio::task::JoinHandle<()>,
    started: Instant,
}

struct Harness {
    paths: Paths,
    secrets: Arc<dyn SecretStore>,
    servers: Vec<ServerProcess>,
    proxies: Vec<FaultProxy>,
    /// Engine server id → server index.
    server_index: HashMap<String, usize>,
    timing: LinkTiming,
    poll_interval: Duration,
    observed: Arc<Mutex<Observed>>,
    recorded: Arc<RecordingSink>,
    engine_starts: usize,
}

impl Harness {
    fn start_engine(&mut self, local: &tokio::task::LocalSet) -> RunningEngine {
        let options = EngineOptions {
            link_timing: self.timing.clone(),
            poll_interval: self.poll_interval,
            policy: PolicyConfig::default(),
            ..EngineOptions::new(self.paths.clone(), Arc::clone(&self.secrets))
        };
        let sink: Arc<dyn notifier_core::notify::NotificationSink> = self.recorded.clone();
        let engine = Engine::open(options, Some(sink)).unwrap();
        let (commands, commands_rx) = mpsc::channel(16);
        let (events_tx, mut events) = mpsc::channel(4096);
        let task = local.spawn_local(async move {
            engine.run(commands_rx, events_tx).await.unwrap();
        });
        let observed = Arc::clone(&self.observed);
        let server_index = self.server_index.clone();
        let collector = local.spawn_local(async move {
            let mut connected_before = std::collections::HashSet::new();
            while let Some(event) = events.recv().await {
                let now = Instant::now();
                let mut observed = observed.lock().unwrap();
                match event {
                    EngineEvent::Changed(report) => {
                        observed.changes.push(ObservedReport {
                            at: now,
                            text: format!("{} / {}", report.summary, report.body),
                            added: report.details["added"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|name| name.as_str().map(str::to_owned))
                                .collect(),
                            cap_id: report.cap_id,
                            seqnum: report.seqnum,
                            while_away: report.while_away,
                        });
                    }
                    EngineEvent::Server { id, state, .. } => {
                        if let Some(&index) = server_index.get(&id) {
                            if state == LinkState::Connected && !connected_before.insert(index) {
                                observed.reconnects += 1;
                            }
                            observed.states.push((now, index, state));
                        }
                    }
                    EngineEvent::CapStatus {
                        id, subscribed_on, ..
                    } => observed.cap_status.push((now, id, subscribed_on)),
                    EngineEvent::Notice(text) => observed.notices.push(text),
                    // News and whatever else the engine may say carry no change.
                    _ => {}
                }
            }
        });
        self.engine_starts += 1;
        RunningEngine {
            commands,
            task,
            collector,
            started: Instant::now(),
        }
    }

    /// The link state of each server as last reported.
    fn link_states(&self) -> Vec<Option<LinkState>> {
        let observed = self.observed.lock().unwrap();
        (0..self.servers.len())
            .map(|index| {
                observed
                    .states
                    .iter()
                    .rev()
                    .find(|(_, i, _)| *i == index)
                    .map(|(_, _, state)| state.clone())
            })
            .collect()
    }

    /// Waits until every cap is subscribed on `servers` servers (by the latest status of each).
    async fn wait_all_subscribed(&self, caps: &[WatchedCap], since: Instant, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let done = {
                let observed = self.observed.lock().unwrap();
                caps.iter().all(|cap| {
                    observed
                        .cap_status
                        .iter()
                        .rev()
                        .find(|(at, id, _)| *at >= since && *id == cap.id)
                        .is_some_and(|(_, _, on)| *on == self.servers.len())
                })
            };
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the caps were not subscribed on every server within {wait:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to `wait`) for server `index`'s link to be connected; says whether it is.
    async fn wait_connected(&self, index: usize, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.link_states()[index] == Some(LinkState::Connected) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

async fn stop_engine(engine: RunningEngine) {
    let _ = engine.commands.send(EngineCommand::Shutdown).await;
    engine.task.await.unwrap();
    // The events channel closes with the engine: everything it said is collected.
    engine.collector.await.unwrap();
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

/// The slot's seqnum as the storage nodes hold it (highest over the shares).
fn seqnum_on_disk(grid: &Grid, si: &StorageIndex) -> u64 {
    let mut highest = 0;
    for node in grid.storage_nodes() {
        let dir = node.storage_dir.join("shares").join(si.share_dir());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(ShareHeader::Mutable { seqnum, .. }) = read_share_header(&entry.path()) {
                highest = highest.max(seqnum);
            }
        }
    }
    highest
}

/// One change: a child added to the folder through the gateway; returns the new seqnum.
fn make_change(grid: &'static Grid, write_cap: &str, si: StorageIndex, name: &str) -> u64 {
    let before = seqnum_on_disk(grid, &si);
    let mut last_error = None;
    for _ in 0..5 {
        match grid.put_child(write_cap, name, name.as_bytes()) {
            Ok(_) => {
                last_error = None;
                break;
            }
            Err(error) => {
                // A failed write may still have published; the seqnum says.
                last_error = Some(error.to_string());
                if seqnum_on_disk(grid, &si) > before {
                    last_error = None;
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    if let Some(error) = last_error {
        panic!("the gateway refused a write five times: {error}");
    }
    let after = seqnum_on_disk(grid, &si);
    assert!(after > before, "a write did not raise the seqnum");
    after
}

/// The accounting of one run.
#[derive(Debug, Default)]
struct Accounting {
    changes_made: usize,
    /// Changes covered by a report.
    reported: usize,
    /// Changes no report covers.
    lost: usize,
    /// Seqnums reported more than once for a cap (each extra report counts).
    duplicated: usize,
    /// Reports that cover no change not already covered: a change told twice.
    empty_reports: usize,
    reports: usize,
    reports_while_away: usize,
    /// Reports without a new seqnum (found by polling the gateway): they cover the changes
    /// made before them.
    polled_reports: usize,
    coalesced_reports: usize,
    /// Seqnums reported that the driver never produced.
    unexpected_reports: usize,
    caps_missing_final: Vec<String>,
    /// Each report that covered nothing new, in words: which cap, which seqnum, what came before.
    empty: Vec<String>,
}

/// Matches reports to changes, per cap, in the order the engine made them. A report with a new
/// seqnum N covers the changes up to N not yet covered; a report without one (a polled change,
/// whose seqnum the engine cannot know) covers the changes up to the last one whose file it
/// lists as added.
fn account(caps: &[WatchedCap], observed: &Observed) -> Accounting {
    let mut totals = Accounting::default();
    for cap in caps {
        let changes = &cap.produced[1..];
        totals.changes_made += changes.len();
        let reports: Vec<&ObservedReport> = observed
            .changes
            .iter()
            .filter(|report| report.cap_id == cap.id)
            .collect();
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        let mut highest_reported = cap.produced[0];
        // Changes before `next` are covered.
        let mut next = 0;
        for report in &reports {
            let ObservedReport {
                at,
                seqnum,
                while_away,
                ..
            } = report;
            totals.reports += 1;
            if *while_away {
                totals.reports_while_away += 1;
            }
            let before = next;
            if *seqnum > highest_reported {
                *seen.entry(*seqnum).or_default() += 1;
                if !cap.produced.contains(seqnum) {
                    totals.unexpected_reports += 1;
                }
                highest_reported = *seqnum;
                while next < changes.len() && changes[next] <= *seqnum {
                    next += 1;
                }
            } else {
                if *seqnum > 0 {
                    *seen.entry(*seqnum).or_default() += 1;
                }
                totals.polled_reports += 1;
                // A polled listing covers the writes whose files it shows as added (and every
                // write before them). Not the writes that had returned when the report came:
                // a round of polling takes most of a second, so a write can return after the
                // cap's listing was fetched and before the round's reports are out.
                if let Some(last_shown) = cap
                    .produced_names
                    .iter()
                    .rposition(|name| report.added.contains(name))
                {
                    next = next.max(last_shown + 1);
                }
            }
            match next - before {
                0 => {
                    totals.empty_reports += 1;
                    let earlier: Vec<u64> = reports
                        .iter()
                        .take_while(|earlier| earlier.at < *at)
                        .map(|earlier| earlier.seqnum)
                        .collect();
                    totals.empty.push(format!(
                        "cap {}: a report of seqnum {seqnum}{} covered nothing new; reports before it {earlier:?}; seqnums made {:?}\n{}",
                        cap.id,
                        if *while_away { " (while away)" } else { "" },
                        cap.produced,
                        timeline(cap, &reports),
                    ));
                }
                1 => {}
                _ => totals.coalesced_reports += 1,
            }
        }
        totals.reported += next;
        totals.lost += changes.len() - next;
        totals.duplicated += seen.values().map(|n| n - 1).sum::<usize>();
        if next < changes.len() {
            totals.caps_missing_final.push(cap.id.clone());
        }
    }
    totals
}

/// The last writes and reports of one cap in time order (ms after its first write), with what
/// each report said: what an empty report needs to be understood.
fn timeline(cap: &WatchedCap, reports: &[&ObservedReport]) -> String {
    let Some(&origin) = cap.produced_at.first() else {
        return String::new();
    };
    let since = |at: Instant| {
        at.checked_duration_since(origin)
            .map_or(0, |elapsed| elapsed.as_millis())
    };
    let mut lines: Vec<(u128, String)> = cap
        .produced
        .iter()
        .skip(1)
        .zip(&cap.produced_at)
        .map(|(seqnum, at)| (since(*at), format!("write returned, seqnum {seqnum}")))
        .collect();
    for report in reports {
        let away = if report.while_away {
            ", while away"
        } else {
            ""
        };
        lines.push((
            since(report.at),
            format!("report seqnum {}{away}: {}", report.seqnum, report.text),
        ));
    }
    lines.sort_by_key(|(at, _)| *at);
    let keep = lines.len().saturating_sub(8);
    lines[keep..]
        .iter()
        .map(|(at, line)| format!("      {at:>8} ms  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// For each fault, how long the engine took to be connected again: to the hit server for a
/// server fault, to every server for an engine restart. `None`: it never was.
fn recoveries(injected: &[Injected], observed: &Observed, servers: usize) -> Vec<Option<Duration>> {
    let connected_after = |server: usize, from: Instant| {
        observed
            .states
            .iter()
            .find(|(at, index, state)| {
                *at >= from && *index == server && *state == LinkState::Connected
            })
            .map(|(at, _, _)| at.duration_since(from))
    };
    injected
        .iter()
        .map(|fault| match fault.server {
            Some(server) => connected_after(server, fault.from),
            None => (0..servers)
                .map(|server| connected_after(server, fault.from))
                .collect::<Option<Vec<_>>>()
                .and_then(|all| all.into_iter().max()),
        })
        .collect()
}

fn grid() -> &'static Grid {
    local_grid::shared().expect("a real Tahoe grid (run tests/bootstrap-python.sh?)")
}

#[test]
fn random_changes_survive_server_kills_network_faults_and_engine_restarts_with_nothing_lost() {
    let plan = if long_tests() {
        Plan::long()
    } else {
        Plan::short()
    };
    let seed: u64 = std::env::var("TAHOE_NOTIFIER_FAULTS_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("faults: seed {seed} (TAHOE_NOTIFIER_FAULTS_SEED={seed} replays it), plan {plan:?}");
    // RUST_LOG=notifier_core=debug shows the engine's reasoning beside the driver's report.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(drive(plan, seed));
}

async fn drive(plan: Plan, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let grid = grid();
    let run_started = Instant::now();

    // Real servers on fixed ports, each behind its own fault proxy.
    let ping = plan.ping_interval_s;
    let servers: Vec<ServerProcess> = blocking(move || {
        grid.storage_nodes()
            .iter()
            .map(|node| ServerProcess::start(node, ping))
            .collect()
    })
    .await;
    let mut proxies = Vec::new();
    for server in &servers {
        let target: SocketAddr = ([127, 0, 0, 1], server.port).into();
        proxies.push(FaultProxy::start(target).await);
    }

    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    paths.ensure_dirs().unwrap();
    let secrets = support::secrets();
    let file = serde_json::json!({
        "name": "faults grid",
        "gateway_url": grid.gateway_url(),
        "updates_servers": servers
            .iter()
            .zip(&proxies)
            .map(|(server, proxy)| server.nurl.with_port(proxy.port).to_string())
            .collect::<Vec<_>>(),
    });
    let server_store = ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    server_store
        .import_grid(&parse_grid_file(&file.to_string()).unwrap())
        .unwrap();
    let server_index: HashMap<String, usize> = server_store
        .list()
        .unwrap()
        .into_iter()
        .map(|entry| {
            let index = proxies.iter().position(|p| p.port == entry.port).unwrap();
            (entry.id, index)
        })
        .collect();

    // The caps: mutable folders, SDMF and MDMF, watched by their read caps.
    let created = Instant::now();
    let count = plan.caps;
    let write_caps: Vec<String> = blocking(move || {
        (0..count)
            .map(|i| {
                let format = if i % 2 == 0 {
                    Format::Sdmf
                } else {
                    Format::Mdmf
                };
                grid.create_mutable_dir(format).unwrap()
            })
            .collect()
    })
    .await;
    let cap_store = CapStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    let mut caps = Vec::new();
    for (i, write_cap) in write_caps.into_iter().enumerate() {
        let cap: Cap = write_cap.parse().unwrap();
        let storage_index = cap.storage_index().unwrap();
        let id = cap_store
            .add(&cap, &format!("Folder {i}"), None)
            .unwrap()
            .id;
        caps.push(WatchedCap {
            id,
            write_cap,
            storage_index,
            produced: vec![seqnum_on_disk(grid, &storage_index)],
            produced_at: Vec::new(),
            produced_names: Vec::new(),
        });
    }
    println!(
        "faults: {} caps created and stored in the keyring in {:.1} s",
        caps.len(),
        created.elapsed().as_secs_f64()
    );

    let timing = LinkTiming {
        backoff_initial: Duration::from_millis(250),
        backoff_max: Duration::from_secs(4),
        silence_timeout: plan.silence_timeout,
        ..LinkTiming::default()
    };
    let mut harness = Harness {
        paths,
        secrets,
        servers,
        proxies,
        server_index,
        timing,
        poll_interval: plan.poll_interval,
        observed: Arc::default(),
        recorded: Arc::new(RecordingSink::new()),
        engine_starts: 0,
    };

    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = Some(harness.start_engine(&local));
            harness
                .wait_all_subscribed(&caps, run_started, Duration::from_secs(120))
                .await;
            println!(
                "faults: engine subscribed everywhere after {:.1} s",
                run_started.elapsed().as_secs_f64()
            );

            // The faults, shuffled and spread evenly over the changes.
            let mut faults = Vec::new();
            faults.extend(std::iter::repeat_n(Fault::Kill, plan.kills));
            faults.extend(std::iter::repeat_n(Fault::EngineRestart, plan.engine_restarts));
            for _ in 0..plan.proxy_rounds {
                faults.push(Fault::Proxy(Mode::Cut));
                faults.push(Fault::Proxy(Mode::HalfOpen { hold: plan.hold }));
                faults.push(Fault::Proxy(Mode::StopReadingClient { hold: plan.hold }));
                faults.push(Fault::Proxy(Mode::Silence { hold: plan.hold }));
            }
            faults.shuffle(&mut rng);
            // Last: while every server is down the other faults have nothing to hit, and the
            // outage outlasts the remaining writes (the driver then waits it out).
            faults.push(Fault::AllDown);
            let spacing = plan.changes / (faults.len() + 1);
            let mut schedule: BTreeMap<usize, Fault> = BTreeMap::new();
            for (i, fault) in faults.iter().enumerate() {
                schedule.insert((i + 1) * spacing, *fault);
            }

            let mut injected: Vec<Injected> = Vec::new();
            // (change index at which to restart, server)
            let mut pending_restarts: Vec<(usize, usize)> = Vec::new();
            // (change index at which to start the engine again, index into `injected`)
            let mut pending_engine: Option<(usize, usize)> = None;
            // (when to restart every server, index into `injected`)
            let mut pending_all_up: Option<(Instant, usize)> = None;
            // Halfway through the outage the engine restarts too: what polling reported before
            // must not be reported again by the new engine when the servers return.
            let mut restart_in_outage: Option<Instant> = None;
            let writes_started = Instant::now();
            for change in 0..plan.changes {
                // Faults that end now.
                for (_, server) in pending_restarts
                    .iter()
                    .filter(|(at, _)| *at == change)
                    .copied()
                    .collect::<Vec<_>>()
                {
                    harness.servers[server].restart().await;
                    let from = Instant::now();
                    if let Some(fault) = injected.iter_mut().rev().find(|f| {
                        f.fault == Fault::Kill && f.server == Some(server)
                    }) {
                        fault.from = from;
                    }
                    println!("faults: change {change}: server {server} restarted");
                }
                pending_restarts.retain(|(at, _)| *at != change);
                if restart_in_outage.is_some_and(|at| Instant::now() >= at) {
                    restart_in_outage = None;
                    if let Some(running) = engine.take() {
                        stop_engine(running).await;
                        engine = Some(harness.start_engine(&local));
                        println!("faults: change {change}: engine restarted while every server is down");
                    }
                }
                if let Some((at, index)) = pending_all_up {
                    if Instant::now() >= at {
                        for server in &mut harness.servers {
                            if !server.is_up() {
                                server.restart().await;
                            }
                        }
                        injected[index].from = Instant::now();
                        injected[index].changes_during = change - injected[index].changes_during;
                        pending_all_up = None;
                        println!("faults: change {change}: every server restarted");
                    }
                }
                if let Some((at, index)) = pending_engine {
                    if at == change {
                        engine = Some(harness.start_engine(&local));
                        injected[index].from = engine.as_ref().unwrap().started;
                        pending_engine = None;
                        println!("faults: change {change}: engine started again");
                    }
                }

                if schedule.contains_key(&change) {
                    // One fault at a time: overlapping faults would hide each other (an engine
                    // restart would "recover" a stalled connection the engine had not noticed).
                    // Writing pauses while the engine recovers from the previous one; the
                    // changes after each injection happen while it lasts.
                    let deadline = Instant::now()
                        + plan.hold
                        + plan.silence_timeout
                        + Duration::from_secs(60);
                    while Instant::now() < deadline {
                        let all_recovered = {
                            let observed = harness.observed.lock().unwrap();
                            recoveries(&injected, &observed, harness.servers.len())
                                .iter()
                                .all(Option::is_some)
                        };
                        if all_recovered {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                if let Some(fault) = schedule.remove(&change) {
                    let any_up = harness.servers.iter().any(ServerProcess::is_up);
                    let busy = pending_all_up.is_some() || pending_engine.is_some();
                    if (matches!(fault, Fault::Proxy(_)) && (engine.is_none() || !any_up))
                        || (fault == Fault::Kill && !any_up)
                        || (fault == Fault::AllDown && busy)
                    {
                        // A network fault needs a live connection to hit: a little later.
                        let mut later = change + 1;
                        while schedule.contains_key(&later) {
                            later += 1;
                        }
                        schedule.insert(later, fault);
                    }
                    else { match fault {
                        Fault::Kill => {
                            let up: Vec<usize> = (0..harness.servers.len())
                                .filter(|i| harness.servers[*i].is_up())
                                .collect();
                            let server = *up.choose(&mut rng).unwrap();
                            harness.servers[server].kill();
                            let down_for = rng.gen_range(2..=8);
                            pending_restarts.push((change + down_for, server));
                            injected.push(Injected {
                                fault,
                                server: Some(server),
                                from: Instant::now(),
                                injected_at: Instant::now(),
                                changes_during: down_for,
                            });
                            println!(
                                "faults: change {change}: server {server} SIGKILLed for {down_for} changes"
                            );
                        }
                        Fault::AllDown => {
                            for server in &mut harness.servers {
                                server.kill();
                            }
                            // Restarts scheduled for single kills wait for the all-up.
                            pending_restarts.clear();
                            injected.push(Injected {
                                fault,
                                server: None,
                                from: Instant::now(),
                                injected_at: Instant::now(),
                                // The change index for now; the count when it ends.
                                changes_during: change,
                            });
                            pending_all_up =
                                Some((Instant::now() + plan.all_down, injected.len() - 1));
                            restart_in_outage = Some(Instant::now() + plan.all_down / 2);
                            println!(
                                "faults: change {change}: every server SIGKILLed for {} s",
                                plan.all_down.as_secs()
                            );
                        }
                        Fault::EngineRestart => {
                            if let Some(running) = engine.take() {
                                stop_engine(running).await;
                            }
                            let down_for = rng.gen_range(3..=8);
                            injected.push(Injected {
                                fault,
                                server: None,
                                from: Instant::now(),
                                injected_at: Instant::now(),
                                changes_during: down_for,
                            });
                            pending_engine = Some((change + down_for, injected.len() - 1));
                            println!(
                                "faults: change {change}: engine shut down for {down_for} changes"
                            );
                        }
                        Fault::Proxy(mode) => {
                            // Hit a connection that exists: a server that is up and linked.
                            let candidates: Vec<usize> = (0..harness.servers.len())
                                .filter(|i| harness.servers[*i].is_up())
                                .collect();
                            let server = *candidates.choose(&mut rng).unwrap();
                            let linked = engine.is_some()
                                && harness.wait_connected(server, Duration::from_secs(60)).await;
                            let hit = harness.proxies[server].inject(mode);
                            injected.push(Injected {
                                fault,
                                server: Some(server),
                                from: Instant::now(),
                                injected_at: Instant::now(),
                                changes_during: 0,
                            });
                            println!(
                                "faults: change {change}: {} on server {server}'s connection ({hit} connection(s) hit, engine linked: {linked})",
                                mode.name()
                            );
                        }
                    } }
                }

                let cap = rng.gen_range(0..caps.len());
                let write_cap = caps[cap].write_cap.clone();
                let si = caps[cap].storage_index;
                let name = format!("change-{change:05}.txt");
                let written = name.clone();
                let seqnum = blocking(move || make_change(grid, &write_cap, si, &written)).await;
                caps[cap].produced.push(seqnum);
                caps[cap].produced_at.push(Instant::now());
                caps[cap].produced_names.push(name);
            }
            assert!(
                schedule.is_empty(),
                "faults slid past the last change and were never injected: {schedule:?}"
            );
            // Every fault over: servers back, engine running.
            for (_, server) in std::mem::take(&mut pending_restarts) {
                harness.servers[server].restart().await;
                if let Some(fault) = injected
                    .iter_mut()
                    .rev()
                    .find(|f| f.fault == Fault::Kill && f.server == Some(server))
                {
                    fault.from = Instant::now();
                }
            }
            if let Some((at, index)) = pending_all_up.take() {
                if let Some(halfway) = restart_in_outage.take() {
                    tokio::time::sleep_until(halfway.into()).await;
                    if let Some(running) = engine.take() {
                        stop_engine(running).await;
                        engine = Some(harness.start_engine(&local));
                        println!("faults: engine restarted while every server is down");
                    }
                }
                tokio::time::sleep_until(at.into()).await;
                for server in &mut harness.servers {
                    if !server.is_up() {
                        server.restart().await;
                    }
                }
                injected[index].from = Instant::now();
                injected[index].changes_during = plan.changes - injected[index].changes_during;
            }
            if let Some((_, index)) = pending_engine.take() {
                engine = Some(harness.start_engine(&local));
                injected[index].from = engine.as_ref().unwrap().started;
            }
            let writing = writes_started.elapsed();

            // Wait for the last change of every cap to be reported (or give up), then a
            // little more for any report that should not come.
            let quiet_deadline =
                Instant::now() + plan.hold + plan.silence_timeout + Duration::from_secs(60);
            loop {
                let done = account(&caps, &harness.observed.lock().unwrap()).lost == 0;
                if done || Instant::now() >= quiet_deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let caught_up = run_started.elapsed();
            // Faults injected near the end may still be recovering: wait (bounded) until every
            // link is connected again and every fault has a recovery.
            let recovered_deadline =
                Instant::now() + plan.hold + plan.silence_timeout + Duration::from_secs(60);
            while Instant::now() < recovered_deadline {
                let all_connected = harness
                    .link_states()
                    .iter()
                    .all(|state| *state == Some(LinkState::Connected));
                let all_recovered = {
                    let observed = harness.observed.lock().unwrap();
                    recoveries(&injected, &observed, harness.servers.len())
                        .iter()
                        .all(Option::is_some)
                };
                if all_connected && all_recovered {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            let final_states = harness.link_states();
            if let Some(running) = engine.take() {
                stop_engine(running).await;
            }

            let observed = harness.observed.lock().unwrap();
            let totals = account(&caps, &observed);
            let recovered = recoveries(&injected, &observed, harness.servers.len());
            let reconnects = observed.reconnects;
            // A proxy fault lasts from its injection until the engine is connected again.
            for (fault, recovery) in injected.iter_mut().zip(&recovered) {
                if let (Fault::Proxy(_), Some(took)) = (fault.fault, recovery) {
                    let end = fault.from + *took;
                    fault.changes_during = caps
                        .iter()
                        .flat_map(|cap| &cap.produced_at)
                        .filter(|at| **at >= fault.injected_at && **at <= end)
                        .count();
                }
            }
            let accepted: Vec<usize> = harness.proxies.iter().map(FaultProxy::accepted).collect();

            println!();
            println!("faults report (seed {seed})");
            println!(
                "  plan: {} changes over {} caps, {} SIGKILLs, {} engine restarts, {} proxy faults; ping {} s, silence timeout {} s, stall hold {} s",
                plan.changes,
                plan.caps,
                plan.kills,
                plan.engine_restarts,
                plan.proxy_rounds * 4,
                plan.ping_interval_s,
                plan.silence_timeout.as_secs(),
                plan.hold.as_secs()
            );
            println!(
                "  changes made {}, reported {}, lost {}, duplicated {}",
                totals.changes_made, totals.reported, totals.lost, totals.duplicated
            );
            println!(
                "  reports {} ({} while away, {} polled; {} covered more than one change, {} covered none); unexpected seqnums {}; caps whose last change went unreported: {}",
                totals.reports,
                totals.reports_while_away,
                totals.polled_reports,
                totals.coalesced_reports,
                totals.empty_reports,
                totals.unexpected_reports,
                totals.caps_missing_final.len()
            );
            for empty in &totals.empty {
                println!("  empty report: {empty}");
            }
            println!(
                "  reconnects {reconnects} (connections accepted by the proxies: {accepted:?}); engine starts {}; notifications shown {}",
                harness.engine_starts,
                harness.recorded.shown().len()
            );
            println!(
                "  writing took {:.1} s; last report {:.1} s after the run started",
                writing.as_secs_f64(),
                caught_up.as_secs_f64()
            );
            let mut worst = Duration::ZERO;
            for (fault, recovery) in injected.iter().zip(&recovered) {
                let server = fault
                    .server
                    .map_or_else(|| "all servers".to_owned(), |s| format!("server {s}"));
                match recovery {
                    Some(took) => {
                        worst = worst.max(*took);
                        println!(
                            "  {:<18} {server:<11} connected again after {:>6.2} s ({} changes during)",
                            fault.fault.name(),
                            took.as_secs_f64(),
                            fault.changes_during
                        );
                    }
                    None => println!(
                        "  {:<18} {server:<11} NOT RECOVERED",
                        fault.fault.name()
                    ),
                }
            }
            println!("  worst recovery time {:.2} s", worst.as_secs_f64());
            // Each link's states over time: C connected, … connecting, F failing.
            for server in 0..harness.servers.len() {
                let timeline: Vec<String> = observed
                    .states
                    .iter()
                    .filter(|(_, index, _)| *index == server)
                    .map(|(at, _, state)| {
                        let mark = match state {
                            LinkState::Connected => "C",
                            LinkState::Connecting => "…",
                            LinkState::Failing { .. } => "F",
                        };
                        format!("{mark}{:.1}", at.duration_since(run_started).as_secs_f64())
                    })
                    .collect();
                println!("  server {server} link: {}", timeline.join(" "));
            }
            for notice in &observed.notices {
                println!("  engine notice: {notice}");
            }
            println!("  link states at the end: {final_states:?}");

            assert_eq!(totals.lost, 0, "changes lost: {totals:?}");
            assert_eq!(totals.duplicated, 0, "changes reported twice: {totals:?}");
            assert_eq!(totals.unexpected_reports, 0, "{totals:?}");
            assert_eq!(
                totals.empty_reports, 0,
                "reports that told no new change: {totals:?}"
            );
            assert_eq!(totals.reported, totals.changes_made, "{totals:?}");
            assert!(
                recovered.iter().all(Option::is_some),
                "the engine did not recover from every fault by itself"
            );
            assert!(
                final_states
                    .iter()
                    .all(|state| *state == Some(LinkState::Connected)),
                "not every link was connected at the end: {final_states:?}"
            );
        })
        .await;

    // Leave the keyring as found.
    let cap_store = CapStore::new(
        ConfigFile::new(harness.paths.config_file()),
        Arc::clone(&harness.secrets),
    );
    for cap in &caps {
        let _ = cap_store.remove(&cap.id);
    }
    let server_store = ServerStore::new(
        ConfigFile::new(harness.paths.config_file()),
        Arc::clone(&harness.secrets),
    );
    for entry in server_store.list().unwrap() {
        let _ = server_store.remove(&entry.id);
    }
    drop(home);
}

/// The bug the driver found, on its own: a change made while every server is down is reported
/// by polling, and neither the engine nor a restarted engine reports it again when the servers
/// come back.
#[test]
fn a_change_found_by_polling_is_not_reported_again_when_the_servers_return() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(polled_change_once());
}

async fn polled_change_once() {
    let grid = grid();
    let mut servers: Vec<ServerProcess> = blocking(move || {
        grid.storage_nodes()
            .iter()
            .map(|node| ServerProcess::start(node, 2))
            .collect()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    paths.ensure_dirs().unwrap();
    let secrets = support::secrets();
    let file = serde_json::json!({
        "name": "polling grid",
        "gateway_url": grid.gateway_url(),
        "updates_servers": servers.iter().map(|s| s.nurl.to_string()).collect::<Vec<_>>(),
    });
    let server_store = ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    server_store
        .import_grid(&parse_grid_file(&file.to_string()).unwrap())
        .unwrap();
    let write_cap = blocking(move || grid.create_mutable_dir(Format::Sdmf).unwrap()).await;
    let cap_store = CapStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    let cap_id = cap_store
        .add(&write_cap.parse::<Cap>().unwrap(), "Polled Folder", None)
        .unwrap()
        .id;

    let open = || {
        let options = EngineOptions {
            link_timing: LinkTiming {
                backoff_initial: Duration::from_millis(250),
                backoff_max: Duration::from_secs(1),
                silence_timeout: Duration::from_secs(6),
                ..LinkTiming::default()
            },
            poll_interval: Duration::from_secs(2),
            ..EngineOptions::new(paths.clone(), Arc::clone(&secrets))
        };
        Engine::open(options, None).unwrap()
    };
    // Waits for the cap to be subscribed on `servers` servers; returns the changes seen meanwhile.
    async fn until_subscribed_on(
        events: &mut mpsc::Receiver<EngineEvent>,
        cap_id: &str,
        servers: usize,
    ) -> Vec<notifier_core::engine::ChangeReport> {
        let mut changes = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let event = tokio::time::timeout_at(deadline, events.recv())
                .await
                .unwrap_or_else(|_| panic!("the cap was not subscribed on {servers} servers"))
                .expect("the engine stopped");
            match event {
                EngineEvent::CapStatus {
                    id, subscribed_on, ..
                } if id == cap_id && subscribed_on == servers => return changes,
                EngineEvent::Changed(report) => changes.push(report),
                _ => {}
            }
        }
    }
    async fn changes_within(
        events: &mut mpsc::Receiver<EngineEvent>,
        wait: Duration,
    ) -> Vec<notifier_core::engine::ChangeReport> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
            if let EngineEvent::Changed(report) = event {
                changes.push(report);
            }
        }
        changes
    }

    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let (commands, commands_rx) = mpsc::channel(4);
            let (events_tx, mut events) = mpsc::channel(1024);
            let first = local.spawn_local(open().run(commands_rx, events_tx));
            assert!(until_subscribed_on(&mut events, &cap_id, 3)
                .await
                .is_empty());
            for server in &mut servers {
                server.kill();
            }
            // Every link failing: the cap is subscribed nowhere and polled.
            let mut failing = std::collections::HashSet::new();
            while failing.len() < 3 {
                let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
                    .await
                    .expect("the engine did not notice the servers going away")
                    .expect("the engine stopped");
                if let EngineEvent::Server {
                    id,
                    state: LinkState::Failing { .. },
                    ..
                } = event
                {
                    failing.insert(id);
                }
            }
            let writer = write_cap.clone();
            blocking(move || grid.put_child(&writer, "while-down.txt", b"x").unwrap()).await;
            let polled = changes_within(&mut events, Duration::from_secs(8)).await;
            assert_eq!(
                polled.len(),
                1,
                "polling must report the change: {polled:?}"
            );
            assert_eq!(polled[0].seqnum, 0, "a polled change has no seqnum");
            assert!(polled[0].summary.contains("while-down.txt"), "{polled:?}");

            // A new engine, then the servers back: the seqnum rise is the polled change.
            commands.send(EngineCommand::Shutdown).await.unwrap();
            first.await.unwrap().unwrap();
            let (commands, commands_rx) = mpsc::channel(4);
            let (events_tx, mut events) = mpsc::channel(1024);
            let second = local.spawn_local(open().run(commands_rx, events_tx));
            for server in &mut servers {
                server.restart().await;
            }
            let mut again = until_subscribed_on(&mut events, &cap_id, 3).await;
            again.extend(changes_within(&mut events, Duration::from_secs(3)).await);
            assert!(
                again.is_empty(),
                "the polled change was reported again when the servers came back: {again:?}"
            );

            // And the next change is reported as usual, live, with its seqnum.
            let writer = write_cap.clone();
            blocking(move || grid.put_child(&writer, "after.txt", b"x").unwrap()).await;
            let live = changes_within(&mut events, Duration::from_secs(8)).await;
            assert_eq!(live.len(), 1, "{live:?}");
            assert!(live[0].seqnum > 0 && !live[0].while_away, "{live:?}");
            assert!(live[0].summary.contains("after.txt"), "{live:?}");
            commands.send(EngineCommand::Shutdown).await.unwrap();
            second.await.unwrap().unwrap();
        })
        .await;
    let _ = cap_store.remove(&cap_id);
    for entry in server_store.list().unwrap() {
        let _ = server_store.remove(&entry.id);
    }
}
