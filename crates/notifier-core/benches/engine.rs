//! The client engine's numbers on a real local grid (prints them; asserts nothing):
//!
//! a. latency from the gateway's answer to a `PUT` (a new child in a watched directory) to the
//!    desktop notification's D-Bus `Notify` round trip returning, with the diff (gateway
//!    listing) and without (no gateway configured: "changed" only);
//! b. the real `tahoe-notifier watch` binary with 1,000 caps on 3 servers: connect → all
//!    subscribed, its RSS, and its network traffic while idle; then (b2) the tray process, the
//!    same engine host, over the same caps: start → all subscribed, read over D-Bus;
//! c. polling the same caps through the gateway every 60 s instead: bytes per hour and mean
//!    detection delay.
//!
//! Run inside a desktop session with a notification daemon:
//! `dbus-run-session -- keyctl session - tests/with-desktop-services.sh cargo bench -p notifier-core --bench engine`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_grid::{Format, Grid, GridOptions};
use notifier_core::engine::{Engine, EngineCommand, EngineEvent, EngineOptions};
use notifier_core::grid::description::parse_grid_file;
use notifier_core::notify::{
    DeliveredId, DesktopSink, Notification, NotificationSink, NotifyError, PolicyConfig,
};
use notifier_core::store::caps::CapStore;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore, SecretStore};
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;
use support::InProcessServer;
use tahoe_caps::Cap;
use tokio::sync::mpsc;

/// Changes measured per mode in part a.
const CHANGES: usize = 100;
/// Directories the changes rotate over: each is changed again only after the others, well
/// after its 2 s coalescing window, so every change is shown at once (the leading edge).
const ROTATE_OVER: usize = 20;
/// Caps watched in part b.
const MANY_CAPS: usize = 1000;
/// How long part b watches the idle connections.
const IDLE: Duration = Duration::from_secs(60);

/// The real desktop sink, timing when each D-Bus round trip returned.
struct TimingSink {
    desktop: DesktopSink,
    seen: Mutex<Vec<(Instant, String)>>,
}

impl NotificationSink for TimingSink {
    fn deliver(&self, n: &Notification) -> Result<DeliveredId, NotifyError> {
        let id = self.desktop.deliver(n)?;
        self.seen
            .lock()
            .unwrap()
            .push((Instant::now(), n.summary.clone()));
        Ok(id)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn stats(label: &str, mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99) = (percentile(&ms, 50.0), percentile(&ms, 99.0));
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{label}: n={} p50 {p50:.1} ms, p99 {p99:.1} ms, mean {mean:.1} ms, min {:.1}, max {:.1}",
        ms.len(),
        ms[0],
        ms[ms.len() - 1]
    );
    (p50, p99, mean)
}

/// A fresh notifier home with the servers (and, with a gateway, the grid) configured.
fn home(
    grid: &Grid,
    servers: &[InProcessServer],
    with_gateway: bool,
    secrets: &Arc<dyn SecretStore>,
) -> (tempfile::TempDir, Paths) {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under(dir.path());
    paths.ensure_dirs().unwrap();
    let store = ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(secrets));
    if with_gateway {
        let file = serde_json::json!({
            "name": "bench grid",
            "gateway_url": grid.gateway_url(),
            "updates_servers": servers.iter().map(|s| s.nurl.to_string()).collect::<Vec<_>>(),
        });
        store
            .import_grid(&parse_grid_file(&file.to_string()).unwrap())
            .unwrap();
    } else {
        // Servers without a grid: no gateway is known, so changes say only "changed".
        for (i, server) in servers.iter().enumerate() {
            store
                .add(
                    &server.nurl.to_string().parse().unwrap(),
                    Some(&format!("storage {i}")),
                    None,
                )
                .unwrap();
        }
    }
    (dir, paths)
}

/// Part a: PUT answer → Notify returned, for `CHANGES` changes.
async fn notify_latency(
    grid: &'static Grid,
    servers: &[InProcessServer],
    with_gateway: bool,
) -> Vec<f64> {
    let secrets: Arc<dyn SecretStore> =
        Arc::new(KeyringSecretStore::new(KeyringBackend::SecretService));
    let (_dir, paths) = home(grid, servers, with_gateway, &secrets);
    let caps = CapStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    let mut dirs = Vec::new();
    for i in 0..ROTATE_OVER {
        let dircap =
            tokio::task::spawn_blocking(move || grid.create_mutable_dir(Format::Sdmf).unwrap())
                .await
                .unwrap();
        let label = format!("Bench-{i:02}");
        let cap: Cap = dircap.parse().unwrap();
        let id = caps.add(&cap, &label, None).unwrap().id;
        dirs.push((dircap, label, id));
    }
    let sink = Arc::new(TimingSink {
        desktop: DesktopSink::new(),
        seen: Mutex::new(Vec::new()),
    });
    let mut options = EngineOptions::new(paths.clone(), Arc::clone(&secrets));
    options.policy = PolicyConfig::default();
    let engine = Engine::open(
        options,
        Some(Arc::clone(&sink) as Arc<dyn NotificationSink>),
    )
    .unwrap();
    let (commands, commands_rx) = mpsc::channel(16);
    let (events_tx, mut events) = mpsc::channel(16_384);
    let local = tokio::task::LocalSet::new();
    local.spawn_local(async move { engine.run(commands_rx, events_tx).await.unwrap() });
    local
        .run_until(async {
            // All directories subscribed on all servers, and their first listings taken.
            let mut subscribed = HashSet::new();
            while subscribed.len() < ROTATE_OVER {
                match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
                    Ok(Some(EngineEvent::CapStatus {
                        id,
                        subscribed_on,
                        servers: n,
                        ..
                    })) if subscribed_on == n && n == servers.len() => {
                        subscribed.insert(id);
                    }
                    Ok(Some(_)) => {}
                    other => panic!("not all subscribed: {other:?}"),
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
            let mut latencies = Vec::new();
            let mut missed = 0;
            let mut last_change: Vec<Option<Instant>> = vec![None; ROTATE_OVER];
            for i in 0..CHANGES {
                // A change within the coalescing window of the same directory's previous one is
                // (by design) held for the burst's summary: keep every change a leading edge.
                if let Some(at) = last_change[i % ROTATE_OVER] {
                    let quiet =
                        PolicyConfig::default().coalesce_window + Duration::from_millis(500);
                    tokio::time::sleep(quiet.saturating_sub(at.elapsed())).await;
                }
                let (dircap, label, _) = dirs[i % ROTATE_OVER].clone();
                let name = format!("file-{i:03}.txt");
                let before = sink.seen.lock().unwrap().len();
                let answered = tokio::task::spawn_blocking(move || {
                    grid.put_child(&dircap, &name, b"bench").unwrap();
                    Instant::now()
                })
                .await
                .unwrap();
                last_change[i % ROTATE_OVER] = Some(answered);
                // "Label: added …" with the diff, "Label changed (…)" without.
                let prefixes = [format!("{label}:"), format!("{label} ")];
                let want = format!("file-{i:03}.txt");
                let deadline = Instant::now() + Duration::from_secs(10);
                let shown = loop {
                    let found = sink.seen.lock().unwrap()[before..]
                        .iter()
                        .find(|(_, s)| {
                            prefixes.iter().any(|p| s.starts_with(p.as_str()))
                                && (!with_gateway || s.contains(&want))
                        })
                        .map(|(at, _)| *at);
                    if found.is_some() || Instant::now() > deadline {
                        break found;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                };
                match shown {
                    // Signed: the push may beat the gateway's answer to the writer.
                    Some(at) => latencies.push(if at >= answered {
                        at.duration_since(answered).as_secs_f64() * 1000.0
                    } else {
                        -(answered.duration_since(at).as_secs_f64() * 1000.0)
                    }),
                    None => missed += 1,
                }
            }
            if missed > 0 {
                println!("  ({missed} changes had no notification of their own within 10 s)");
            }
            let _ = commands.send(EngineCommand::Shutdown).await;
            drain.abort();
            latencies
        })
        .await
}

/// Bytes sent and received so far on each of `pid`'s TCP sockets (keyed by its addresses), from
/// `ss -tinp`.
fn socket_bytes(pid: u32) -> HashMap<String, (u64, u64)> {
    let out = Command::new("ss").args(["-tinpH"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sockets = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        // ss prints each socket's line with users:(...) and then an indented info line.
        if !line.starts_with(char::is_whitespace) {
            current = line.contains(&format!("pid={pid},")).then(|| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // State, Recv-Q, Send-Q, local, peer, users.
                fields.get(3..5).map(|a| a.join(" ")).unwrap_or_default()
            });
            continue;
        }
        let Some(key) = &current else { continue };
        let entry = sockets.entry(key.clone()).or_insert((0, 0));
        for field in line.split_whitespace() {
            if let Some(v) = field.strip_prefix("bytes_sent:") {
                entry.0 = v.parse::<u64>().unwrap_or(0);
            } else if let Some(v) = field.strip_prefix("bytes_received:") {
                entry.1 = v.parse::<u64>().unwrap_or(0);
            }
        }
    }
    sockets
}

/// Traffic between two [`socket_bytes`] readings on the sockets open at both, and how many
/// sockets were open at each.
fn socket_traffic(
    before: &HashMap<String, (u64, u64)>,
    after: &HashMap<String, (u64, u64)>,
) -> (u64, u64) {
    after
        .iter()
        .fold((0, 0), |(sent, received), (key, (s1, r1))| {
            let (s0, r0) = before.get(key).copied().unwrap_or((0, 0));
            (
                sent + s1.saturating_sub(s0),
                received + r1.saturating_sub(r0),
            )
        })
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Where a process's resident memory is: its heap and other anonymous memory, and pages of
/// its binary and libraries (`/proc/<pid>/smaps_rollup`).
fn rss_split(pid: u32) -> String {
    let kib = |key: &str| proc_field(pid, "smaps_rollup", key) as f64 / 1024.0;
    format!(
        "of which anonymous {:.1} MiB, file pages {:.1} MiB",
        kib("Anonymous:"),
        kib("Rss:") - kib("Anonymous:")
    )
}

/// Bytes of one share of the slot `si` on a storage node (the share files under its storage
/// directory), to estimate what a gateway poll reads from the servers.
fn share_bytes(grid: &Grid, si: &str) -> Option<u64> {
    for node in grid.storage_nodes() {
        let dir = node.storage_dir.join("shares").join(&si[..2]).join(si);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            if let Some(Ok(entry)) = entries.into_iter().next() {
                return entry.metadata().ok().map(|m| m.len());
            }
        }
    }
    None
}

/// Part b2: the tray process started over a home of `MANY_CAPS` caps, read as the window reads
/// it (the host's D-Bus state signals): start → first server connected → every cap subscribed
/// on all three, and its RSS then.
async fn tray_start(dir: &tempfile::TempDir, paths: &Paths) {
    use futures_util::StreamExt as _;
    use notifier_core::host::client::HostClient;
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        println!("skipped: no session bus (run under dbus-run-session, as the header says)");
        return;
    }
    let spawned = Instant::now();
    let mut child = Command::new(local_grid::bins::workspace_binary("tahoe-notifier-tray"))
        .arg("--home")
        .arg(dir.path())
        .args(["--keyring", "keyutils"])
        .env_remove("TAHOE_NOTIFIER_HOME")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The window the tray starts writes to the tray's stderr: its "page drawn" line is read here.
    let (drawn_tx, mut drawn_rx) = mpsc::unbounded_channel::<(Instant, u64)>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !line.contains("window page drawn") {
                continue;
            }
            let elapsed_ms = line
                .split("elapsed_ms")
                .nth(1)
                .map(|rest| {
                    rest.chars()
                        .skip_while(|c| !c.is_ascii_digit())
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                })
                .and_then(|digits| digits.parse().ok())
                .unwrap_or(0);
            let _ = drawn_tx.send((Instant::now(), elapsed_ms));
        }
    });
    // The state signals are what the window follows; the first state is read once connected.
    let client = loop {
        match HostClient::connect(paths).await {
            Ok(client) => break client,
            Err(_) if spawned.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!("the tray's host never answered: {error}"),
        }
    };
    let bus_up = spawned.elapsed();
    let mut states = client.state_changes().await.unwrap();
    let mut first_connected = None;
    let mut all_subscribed = None;
    let mut state = client.state().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = Instant::now();
        if first_connected.is_none() && state.live.servers.values().any(|s| s.state == "connected")
        {
            first_connected = Some(now);
        }
        let subscribed = state
            .live
            .caps
            .values()
            .filter(|c| c.subscribed_on == 3)
            .count();
        if subscribed == MANY_CAPS {
            all_subscribed = Some(now);
            break;
        }
        if now > deadline {
            println!("only {subscribed} of {MANY_CAPS} caps subscribed on all three after 120 s");
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), states.next()).await {
            Ok(Some(next)) => state = next,
            _ => state = client.state().await.unwrap(),
        }
    }
    if let (Some(first), Some(all)) = (first_connected, all_subscribed) {
        println!(
            "start → host on the bus {:.0} ms; start → all {MANY_CAPS} subscribed on 3: {:.0} ms; \
             first server connected → all subscribed: {:.0} ms (target ≤ 1,000 ms)",
            bus_up.as_secs_f64() * 1000.0,
            all.duration_since(spawned).as_secs_f64() * 1000.0,
            all.duration_since(first).as_secs_f64() * 1000.0
        );
    }
    println!(
        "tray RSS with {MANY_CAPS} caps subscribed: {:.1} MiB (VmHWM {:.1} MiB); {}",
        proc_field(pid, "status", "VmRSS:") as f64 / 1024.0,
        proc_field(pid, "status", "VmHWM:") as f64 / 1024.0,
        rss_split(pid)
    );

    // "Open Tahoe Notifier": the menu entry sends the host the same command as this D-Bus call;
    // no window runs, so the tray starts one. Three rounds, each window closed after.
    let display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if display {
        // Beside the tray's binary, where the tray looks for it.
        local_grid::bins::workspace_binary("tahoe-notifier-app");
    } else {
        println!("window: skipped (no display)");
    }
    for round in 1..=(if display { 3 } else { 0 }) {
        let clicked = Instant::now();
        client.open_window("").await.unwrap();
        let drawn = tokio::time::timeout(Duration::from_secs(30), drawn_rx.recv())
            .await
            .ok()
            .flatten();
        match drawn {
            Some((at, process_ms)) => println!(
                "window round {round}: open → page drawn {:.0} ms (target ≤ 1,500 ms; of which the window process's own start → drawn {process_ms} ms)",
                at.duration_since(clicked).as_secs_f64() * 1000.0
            ),
            None => {
                println!("window round {round}: no page drawn within 30 s");
                break;
            }
        }
        // Closing the window ends its process (the tray's child).
        let _ = Command::new("pkill")
            .args(["-TERM", "-P", &pid.to_string()])
            .status();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let _ = client.quit().await;
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
}

fn main() {
    let started = Instant::now();
    let grid: &'static Grid = Box::leak(Box::new(
        Grid::start(GridOptions::default()).expect("a real Tahoe grid (tests/bootstrap-python.sh)"),
    ));
    println!("grid up in {:.1} s", started.elapsed().as_secs_f64());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut servers = Vec::new();
        for node in grid.storage_nodes() {
            servers.push(InProcessServer::start(node).await);
        }

        // `--many-caps-only`: parts b and b2 alone (memory and start-up with 1,000 caps).
        let many_caps_only = std::env::args().any(|a| a == "--many-caps-only");
        let (with_p50, with_p99, with_mean, wo_p50, wo_p99) = if many_caps_only {
            (0.0, 0.0, 0.0, 0.0, 0.0)
        } else {
            println!("\n## a. PUT answer → D-Bus Notify returned ({CHANGES} changes, {ROTATE_OVER} directories in rotation)");
            let with = notify_latency(grid, &servers, true).await;
            let (with_p50, with_p99, with_mean) = stats("with the diff (gateway listing)", with);
            let without = notify_latency(grid, &servers, false).await;
            let (wo_p50, wo_p99, _) = stats("without the diff (no gateway)", without);
            (with_p50, with_p99, with_mean, wo_p50, wo_p99)
        };

        println!("\n## b. tahoe-notifier watch with {MANY_CAPS} caps on {} servers", servers.len());
        let secrets: Arc<dyn SecretStore> = Arc::new(KeyringSecretStore::new(KeyringBackend::Keyutils));
        let (dir, paths) = home(grid, &servers, true, &secrets);
        let created = Instant::now();
        let caps_made: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut makers = Vec::new();
        for t in 0..4 {
            let caps_made = Arc::clone(&caps_made);
            makers.push(std::thread::spawn(move || {
                for i in (t..MANY_CAPS).step_by(4) {
                    let cap = grid
                        .create_mutable_file(Format::Sdmf, format!("note {i}").as_bytes())
                        .unwrap();
                    caps_made.lock().unwrap().push(cap);
                }
            }));
        }
        for maker in makers {
            maker.join().unwrap();
        }
        let caps_made = caps_made.lock().unwrap().clone();
        println!("({} mutable files created in {:.0} s)", caps_made.len(), created.elapsed().as_secs_f64());
        let store = CapStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
        let mut sis = Vec::new();
        for (i, cap) in caps_made.iter().enumerate() {
            let cap: Cap = cap.parse().unwrap();
            let added = store.add(&cap, &format!("note {i}"), None).unwrap();
            sis.push(added.storage_index.to_string());
        }
        let spawned = Instant::now();
        let mut child = Command::new(local_grid::bins::workspace_binary("tahoe-notifier"))
            .arg("--home")
            .arg(dir.path())
            .args(["--keyring", "keyutils", "--json", "watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let (first_connected, all_subscribed) = tokio::task::spawn_blocking(move || {
            let mut first_connected = None;
            let mut done = HashSet::new();
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                match v["event"].as_str() {
                    Some("server") if v["connected"] == true && first_connected.is_none() => {
                        first_connected = Some(Instant::now());
                    }
                    Some("cap-status") if v["subscribed_on"] == 3 => {
                        done.insert(v["id"].as_str().unwrap_or_default().to_owned());
                        if done.len() == MANY_CAPS {
                            let at = Instant::now();
                            // Keep reading so the child never blocks on a full pipe.
                            std::thread::spawn(move || for _ in lines {});
                            return (first_connected, Some(at));
                        }
                    }
                    _ => {}
                }
            }
            (first_connected, None)
        })
        .await
        .unwrap();
        let all_subscribed = all_subscribed.expect("all caps subscribed");
        let connect_to_all = first_connected.map(|c| all_subscribed.duration_since(c));
        println!(
            "start → all {MANY_CAPS} subscribed on 3: {:.0} ms; first server connected → all subscribed: {:.0} ms",
            all_subscribed.duration_since(spawned).as_secs_f64() * 1000.0,
            connect_to_all.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        );
        let rss_subscribed = proc_field(pid, "status", "VmRSS:");
        // The first listings (one per cap, through the gateway) end before "idle" starts: wait
        // until only the connections to the updates servers are left.
        let settling = Instant::now();
        while socket_bytes(pid).len() > servers.len() && settling.elapsed() < Duration::from_secs(300) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        println!(
            "first listings of all {MANY_CAPS} caps fetched and gateway sockets closed {:.0} s after all subscribed",
            settling.elapsed().as_secs_f64()
        );
        let sockets_before = socket_bytes(pid);
        let (rchar0, wchar0) = (proc_field(pid, "io", "rchar:"), proc_field(pid, "io", "wchar:"));
        tokio::time::sleep(IDLE).await;
        let sockets_after = socket_bytes(pid);
        let (sent, received) = socket_traffic(&sockets_before, &sockets_after);
        let (rchar1, wchar1) = (proc_field(pid, "io", "rchar:"), proc_field(pid, "io", "wchar:"));
        let rss_idle = proc_field(pid, "status", "VmRSS:");
        let hwm = proc_field(pid, "status", "VmHWM:");
        println!("RSS: {:.1} MiB when all subscribed, {:.1} MiB after {} s idle (peak {:.1} MiB); {}",
            rss_subscribed as f64 / 1024.0, rss_idle as f64 / 1024.0, IDLE.as_secs(), hwm as f64 / 1024.0, rss_split(pid));
        println!(
            "idle {} s on TCP sockets (ss -tinp; {} open before, {} after): {sent} B sent, {received} B received; all I/O syscalls (/proc/pid/io): {} B read, {} B written",
            IDLE.as_secs(), sockets_before.len(), sockets_after.len(),
            rchar1.saturating_sub(rchar0), wchar1.saturating_sub(wchar0)
        );
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let _ = child.wait();

        println!("\n## b2. the tray (tahoe-notifier-tray, the engine host) with the same {MANY_CAPS} caps");
        tray_start(&dir, &paths).await;

        if many_caps_only {
            for server in &mut servers {
                server.stop().await;
            }
            return;
        }
        println!("\n## c. polling the same {MANY_CAPS} caps through the gateway every 60 s");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let poll_started = Instant::now();
        let mut json_bytes = 0u64;
        for cap in &caps_made {
            let cap: Cap = cap.parse().unwrap();
            let url = format!(
                "{}/uri/{}?t=json",
                grid.gateway_url().trim_end_matches('/'),
                cap.read_only()
            );
            let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
            json_bytes += body.len() as u64;
        }
        let poll_round = poll_started.elapsed();
        let share = sis.iter().take(20).filter_map(|si| share_bytes(grid, si)).collect::<Vec<_>>();
        let share_mean = share.iter().sum::<u64>() as f64 / share.len().max(1) as f64;
        // A mutable read fetches k = 2 shares (Tahoe also asks every server for its version).
        let grid_bytes = 2.0 * share_mean * MANY_CAPS as f64;
        let per_hour_json = json_bytes as f64 * 60.0;
        let per_hour_grid = grid_bytes * 60.0;
        let push_per_hour = (sent + received) as f64 * 3600.0 / IDLE.as_secs_f64();
        println!(
            "one poll round: {:.1} s of gateway time, {} B of JSON answers ({:.0} B per cap); share size {:.0} B (k=2 per read)",
            poll_round.as_secs_f64(), json_bytes, json_bytes as f64 / MANY_CAPS as f64, share_mean
        );
        println!(
            "polling every 60 s: {:.1} MB/h of gateway answers + ~{:.1} MB/h of share reads; push when idle: {:.1} kB/h",
            per_hour_json / 1e6, per_hour_grid / 1e6, push_per_hour / 1e3
        );
        println!(
            "mean detection delay: polling every 60 s 30 s (uniform) + {:.0} ms per-cap gateway time; push {:.0} ms mean (p50 {:.0} ms, p99 {:.0} ms) with the diff, p50 {:.0} ms / p99 {:.0} ms without",
            poll_round.as_secs_f64() * 1000.0 / MANY_CAPS as f64, with_mean, with_p50, with_p99, wo_p50, wo_p99
        );
        for server in &mut servers {
            server.stop().await;
        }
    });
    println!(
        "\nloadavg at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
