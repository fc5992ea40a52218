//! A client connected to two edges and to a node's own server reports each change once (issue
//! 14), on a real grid: a `--role watcher` beside each storage node publishing to a real
//! `nats-server`, two `--role edge` processes, and a `--role single` server beside storage node
//! 0, all three listed in the engine's grid. Every publish reaches the engine from all three
//! (the edges without proofs, the node's own server with them); the engine reports it once, by
//! seqnum. Then edge A is SIGKILLed and a publish is still reported once. Skipped, with the
//! reason printed, when `nats-server` is not installed.
//!
//! The second test publishes changes one right after another's report: when an edge's
//! unverified word of a change came before the node's verified one, the engine used to describe
//! the change a second time, and that redundant description took the next change's listing,
//! which was then reported as "no visible difference" (fixed: a proven seqnum reported already
//! is not described again).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "faults/server_process.rs"]
mod server_process;
mod support;
#[path = "support/watching.rs"]
mod watching;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_grid::nats::{NatsOptions, NatsServer};
use mutable_updates::nurl::Nurl;
use notifier_core::engine::{ChangeReport, EngineEvent};
use server_process::{updates_server_binary, ServerProcess};
use support::secrets;
use tahoe_caps::{Cap, StorageIndex};
use tokio::sync::mpsc;
use watching::{blocking, grid, new_folder, RunningEngine, Watching};

/// How long after a change's report another one for it would have shown: longer than the
/// engine retries a listing that shows nothing new (3.7 s), so that a second description of
/// the same seqnum, were there one, would be seen here.
const QUIET: Duration = Duration::from_millis(4_500);

/// A `tahoe-updates-server` in the watcher or edge role, SIGKILLed when dropped (and ending by
/// itself when this process does: its stdin is a pipe from us).
struct RoleProcess {
    child: Option<Child>,
    metrics_port: u16,
}

impl RoleProcess {
    fn start(role: &str, nats: &str, args: &[&std::ffi::OsStr], log: &Path) -> RoleProcess {
        let metrics_port = local_grid::free_port().unwrap();
        let child = Command::new(updates_server_binary())
            .arg("run")
            .args(["--role", role, "--nats", nats])
            .args(["--broker-ping-interval", "1"])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(args)
            .arg("--exit-when-stdin-closes")
            .env("RUST_LOG", "info,async_nats=warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start tahoe-updates-server");
        RoleProcess {
            child: Some(child),
            metrics_port,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A counter or gauge of its metrics page, if the page answers.
    fn metric(&self, name: &str) -> Option<u64> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut page = String::new();
        stream.read_to_string(&mut page).ok()?;
        page.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    fn wait_metric(&self, name: &str, wanted: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metric(name) != Some(wanted) {
            assert!(Instant::now() < deadline, "{what}: {name} never {wanted}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An edge with a certificate and swissnum of its own, and its NURL once it serves.
fn start_edge(work: &Path, name: &str, nats: &str) -> (RoleProcess, Nurl) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![format!("{name}.test")])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let file = |suffix: &str| work.join(format!("{name}.{suffix}"));
    std::fs::write(file("cert.pem"), cert.pem()).unwrap();
    std::fs::write(file("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(
        file("swissnum"),
        format!("{name}-swissnum-{name}-swissnum\n"),
    )
    .unwrap();
    let nurl_file = file("nurl");
    let (listen, cert, key, swissnum) = (
        "127.0.0.1:0".as_ref(),
        file("cert.pem"),
        file("key.pem"),
        file("swissnum"),
    );
    let edge = RoleProcess::start(
        "edge",
        nats,
        &[
            "--listen".as_ref(),
            listen,
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
            "--swissnum-file".as_ref(),
            swissnum.as_os_str(),
            "--nurl-file".as_ref(),
            nurl_file.as_os_str(),
        ],
        &file("log"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let nurl = loop {
        if let Some(nurl) = std::fs::read_to_string(&nurl_file)
            .ok()
            .and_then(|text| text.trim().parse::<Nurl>().ok())
        {
            break nurl;
        }
        assert!(
            Instant::now() < deadline,
            "{name} wrote no NURL (log: {})",
            file("log").display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (edge, nurl)
}

/// Servers that last told the engine `seqnum` of `si`: the engine's own per-server record.
fn servers_at(history: &Path, si: &StorageIndex, seqnum: u64) -> u64 {
    let db =
        rusqlite::Connection::open_with_flags(history, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM server_seqnums WHERE storage_index = ?1 AND seqnum = ?2",
        rusqlite::params![si.to_base32(), i64::try_from(seqnum).unwrap()],
        |row| row.get(0),
    )
    .unwrap()
}

/// Adds `name` to the folder through the gateway and returns the one change the engine reports
/// for it, asserting that nothing else is reported until `quiet` after it.
async fn publish_once(
    dircap: &str,
    name: &str,
    engine: &mut RunningEngine,
    quiet: Duration,
) -> ChangeReport {
    let published = Instant::now();
    let (writer, file) = (dircap.to_owned(), name.to_owned());
    blocking(move || grid().put_child(&writer, &file, b"new").unwrap()).await;
    let mut changes = changes_until_quiet(&mut engine.events, Duration::from_secs(15), quiet).await;
    assert_eq!(
        changes.len(),
        1,
        "{name}: one publish, one report: {changes:?}"
    );
    let report = changes.remove(0);
    assert!(report.summary.contains(name), "{name}: {report:?}");
    println!(
        "{name}: reported once (seqnum {}), then {quiet:?} without another; {:.1} s from the PUT",
        report.seqnum,
        published.elapsed().as_secs_f64(),
    );
    report
}

/// The changes reported from now until `quiet` has passed since the last one (or
/// `first_within` passed with none).
async fn changes_until_quiet(
    events: &mut mpsc::Receiver<EngineEvent>,
    first_within: Duration,
    quiet: Duration,
) -> Vec<ChangeReport> {
    let mut found = Vec::new();
    let mut deadline = tokio::time::Instant::now() + first_within;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let EngineEvent::Changed(report) = event {
            found.push(report);
            deadline = tokio::time::Instant::now() + quiet;
        }
    }
    found
}

/// The broker, a watcher beside each storage node, edges A and B, and storage node 0's own
/// server; every process ends when this is dropped.
struct Deployment {
    // The clients' servers first: dropped before what feeds them.
    edge_a: RoleProcess,
    _edge_b: RoleProcess,
    _single: ServerProcess,
    _watchers: Vec<RoleProcess>,
    _broker: NatsServer,
    /// Edge A's, edge B's and the node's own server's NURLs.
    nurls: [Nurl; 3],
    _work: tempfile::TempDir,
}

impl Deployment {
    /// `None`, having said why, when nats-server is not installed.
    fn start() -> Option<Deployment> {
        let Some(nats_binary) = NatsServer::binary() else {
            eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server; tests/bootstrap.sh does)");
            return None;
        };
        let grid = grid();
        let work = tempfile::tempdir().unwrap();
        let broker = NatsServer::start(&nats_binary, &NatsOptions::default()).unwrap();
        broker.wait_ready(Duration::from_secs(10)).unwrap();
        let nats = broker.url();
        let watchers: Vec<RoleProcess> = grid
            .storage_nodes()
            .iter()
            .map(|node| {
                RoleProcess::start(
                    "watcher",
                    &nats,
                    &["--node-dir".as_ref(), node.dir.as_os_str()],
                    &work.path().join(format!("watcher-{}.log", node.name)),
                )
            })
            .collect();
        let (edge_a, nurl_a) = start_edge(work.path(), "edge-a", &nats);
        let (edge_b, nurl_b) = start_edge(work.path(), "edge-b", &nats);
        let single = ServerProcess::start(&grid.storage_nodes()[0], 5);
        for edge in [&edge_a, &edge_b] {
            edge.wait_metric(
                "tahoe_updates_edge_watchers",
                watchers.len() as u64,
                "every watcher heard by the edges",
            );
        }
        let nurls = [nurl_a, nurl_b, single.nurl.clone()];
        Some(Deployment {
            edge_a,
            _edge_b: edge_b,
            _single: single,
            _watchers: watchers,
            _broker: broker,
            nurls,
            _work: work,
        })
    }
}

/// The watched folder, and the engine watching it through `deployment`'s three servers.
async fn watch(deployment: &Deployment) -> (String, StorageIndex, Watching) {
    let dircap = new_folder().await;
    let cap: Cap = dircap.parse().unwrap();
    let nurls: Vec<String> = deployment.nurls.iter().map(Nurl::to_string).collect();
    let watching = Watching::new("edges grid", &nurls, &cap, secrets());
    (dircap, cap.storage_index().unwrap(), watching)
}

fn init_logs() {
    // RUST_LOG=notifier_core::engine::seqnum=debug shows each server's claim and what it meant.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_two_edges_and_a_nodes_own_server_reports_each_change_once() {
    init_logs();
    let started = Instant::now();
    let Some(mut deployment) = Deployment::start() else {
        return;
    };
    let (dircap, si, watching) = watch(&deployment).await;
    let history = watching.paths.history_db();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = watching.start_engine(3).await;
            println!(
                "subscribed on edge A, edge B and storage0's own server {:.1} s after the start",
                started.elapsed().as_secs_f64()
            );
            let mut seqnums = Vec::new();
            for n in 1..=3 {
                let name = format!("change-{n}.txt");
                let report = publish_once(&dircap, &name, &mut engine, QUIET).await;
                let told_by = servers_at(&history, &si, report.seqnum);
                assert_eq!(
                    told_by, 3,
                    "{name}: edge A, edge B and the node's server told it"
                );
                seqnums.push(report.seqnum);
            }

            // Edge A gone without a word: its link fails; edge B and the node's own server
            // still tell the engine, which still reports once.
            deployment.edge_a.kill();
            let name = "after-edge-a-killed.txt";
            let report = publish_once(&dircap, name, &mut engine, QUIET).await;
            let told_by = servers_at(&history, &si, report.seqnum);
            assert_eq!(told_by, 2, "{name}: edge B and the node's server told it");
            seqnums.push(report.seqnum);
            assert!(
                seqnums.windows(2).all(|pair| pair[0] < pair[1]),
                "a new seqnum for each change: {seqnums:?}"
            );
            engine.shutdown().await;
        })
        .await;
    drop((watching, deployment));
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_quick_succession_are_each_named_with_an_edge_and_a_nodes_own_server() {
    init_logs();
    let Some(deployment) = Deployment::start() else {
        return;
    };
    let (dircap, _, watching) = watch(&deployment).await;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = watching.start_engine(3).await;
            // Each publish right after the previous one's report: inside the time a redundant
            // description of the previous seqnum retries the listing.
            for n in 1..=4 {
                let name = format!("quick-{n}.txt");
                publish_once(&dircap, &name, &mut engine, Duration::from_millis(500)).await;
            }
            engine.shutdown().await;
        })
        .await;
}
