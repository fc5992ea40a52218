//! The magic-folder bridge end to end: a real Tahoe grid, the updates server's code beside each
//! storage node, two real magic-folder 24.3.0 daemons (Alice and Bob) sharing a folder, the
//! real keyring, the engine and the bridge linked to Bob's daemon (through the real CLI), and
//! notifications on the real D-Bus notification daemon.
//!
//! Alice writes files into her local folder; the test times how long each takes to appear in
//! Bob's folder — first with the bridge (a push makes Bob's daemon poll at once), then, in the
//! same run, without it (Bob's daemon polling on its own every 60 s, magic-folder's default).
//! It prints the figures and asserts only outcomes: every file arrives, with the bridge each
//! file is one notification naming alice and the file (unmangled), and the engine raises none
//! of its own for the linked caps. It also measures the gateway traffic of one magic-folder
//! poll, for docs/magic-folder.md.
//!
//! Short by default (5 files with the bridge, 4 without: about 4 minutes on 2 cores);
//! `TAHOE_NOTIFIER_LONG_TESTS=1` uses 12 and 10.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use local_grid::desktop::NotifyMonitor;
use local_grid::magic_folder::{MagicFolderDaemon, WormholeMailbox};
use notifier_core::engine::{Engine, EngineCommand, EngineEvent, EngineOptions};
use notifier_core::grid::description::parse_grid_file;
use notifier_core::magic_folder::bridge::{Bridge, BridgeEvent, BridgeOptions};
use notifier_core::magic_folder::linked_folders;
use notifier_core::net::link::LinkTiming;
use notifier_core::notify::{
    DeliveredId, DesktopSink, Notification, NotificationSink, NotifyError, PolicyConfig,
    RecordingSink,
};
use notifier_core::store::config::ConfigFile;
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;
use support::{secrets, InProcessServer};
use tokio::sync::mpsc;

const FOLDER: &str = "Shared";

/// A file of the run without the bridge: relative path, contents, when Alice wrote it, when
/// it appeared in Bob's folder.
type PolledFile = (String, Vec<u8>, Option<Instant>, Option<Instant>);

fn long_run() -> bool {
    std::env::var_os("TAHOE_NOTIFIER_LONG_TESTS").is_some_and(|v| v == "1")
}

/// Records every notification and also shows it on the real desktop when there is one.
struct TestSink {
    recorded: Arc<RecordingSink>,
    desktop: Option<DesktopSink>,
}

impl NotificationSink for TestSink {
    fn deliver(&self, n: &Notification) -> Result<DeliveredId, NotifyError> {
        if let Some(desktop) = &self.desktop {
            desktop.deliver(n)?;
        }
        self.recorded.deliver(n)
    }
}

/// Waits until `path` holds `contents`; the time from `since`.
async fn wait_for_file(path: &Path, contents: &[u8], since: Instant, wait: Duration) -> Duration {
    let deadline = since + wait;
    loop {
        if std::fs::read(path).is_ok_and(|got| got == contents) {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{} did not arrive in Bob's folder within {wait:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn describe(latencies: &[Duration]) -> String {
    let mut secs: Vec<f64> = latencies.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    let mean = secs.iter().sum::<f64>() / secs.len() as f64;
    format!(
        "n={} p50={:.2}s mean={:.2}s min={:.2}s max={:.2}s all={:?}",
        secs.len(),
        percentile(&secs, 0.5),
        mean,
        secs[0],
        secs[secs.len() - 1],
        secs.iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    )
}

/// Bytes sent plus received on the gateway's outgoing TCP connections (to the storage nodes
/// and the introducer: the grid traffic), from the kernel's per-socket counters (`ss -ti`).
/// Connections to the gateway's own web port (magic-folder's local API calls) are left out.
fn gateway_grid_bytes(gateway_pid: u32, web_port: u16) -> Option<u64> {
    // Without `ss` (package iproute2) the traffic is not measured; nothing else depends on it.
    let out = Command::new("ss").args(["-tinpH"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let owner = format!("pid={gateway_pid},");
    let mut total = 0;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(details) = lines.next() else { break };
        if !line.contains(&owner) {
            continue;
        }
        let local_port = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok());
        if local_port == Some(web_port) {
            continue;
        }
        for field in details.split_whitespace() {
            for key in ["bytes_sent:", "bytes_received:"] {
                if let Some(n) = field.strip_prefix(key).and_then(|n| n.parse::<u64>().ok()) {
                    total += n;
                }
            }
        }
    }
    Some(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_makes_bobs_daemon_fetch_alices_file_at_once_with_one_notification() {
    let (linked_files, unlinked_files) = if long_run() { (12, 10) } else { (5, 4) };
    let grid = local_grid::shared().expect("a real Tahoe grid (run tests/bootstrap-python.sh?)");
    let base = tempfile::tempdir().unwrap();

    // Two daemons on the grid's gateway node and a mailbox for their invites. Alice scans her
    // folder every second (her scan is not what this measures); Bob keeps magic-folder's
    // defaults (poll and scan every 60 s).
    let (mailbox, alice, mut bob) = tokio::task::spawn_blocking({
        let base = base.path().to_owned();
        move || {
            let mailbox = WormholeMailbox::start(grid, &base).unwrap();
            let alice = MagicFolderDaemon::start(grid, &base, "alice", mailbox.url()).unwrap();
            let bob = MagicFolderDaemon::start(grid, &base, "bob", mailbox.url()).unwrap();
            let alice_folder = alice.folder().to_str().unwrap().to_owned();
            alice
                .cli(&[
                    "add",
                    "--name",
                    FOLDER,
                    "--author",
                    "alice",
                    "--scan-interval",
                    "1",
                    &alice_folder,
                ])
                .unwrap();
            (mailbox, alice, bob)
        }
    })
    .await
    .unwrap();
    tokio::task::block_in_place(|| alice.invite(FOLDER, &bob, "bob", false)).unwrap();

    // The notifier's home: the grid imported, updates servers beside the storage nodes.
    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    paths.ensure_dirs().unwrap();
    let secrets = secrets();
    let mut servers = Vec::new();
    for node in grid.storage_nodes() {
        servers.push(InProcessServer::start(node).await);
    }
    let grid_file = serde_json::json!({
        "name": "test grid",
        "gateway_url": grid.gateway_url(),
        "updates_servers": servers.iter().map(|s| s.nurl.to_string()).collect::<Vec<_>>(),
    });
    ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets))
        .import_grid(&parse_grid_file(&grid_file.to_string()).unwrap())
        .unwrap();

    // Link through the real CLI, as a user would.
    let keyring = if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        "secret-service"
    } else {
        "keyutils"
    };
    let link = Command::new(local_grid::bins::workspace_binary("tahoe-notifier"))
        .arg("--home")
        .arg(home.path())
        .args(["--keyring", keyring, "magic-folder", "link", "--config"])
        .arg(bob.config_dir())
        .output()
        .unwrap();
    let link_stdout = String::from_utf8_lossy(&link.stdout).into_owned();
    assert!(
        link.status.success(),
        "link failed: {link_stdout}{}",
        String::from_utf8_lossy(&link.stderr)
    );
    println!("tahoe-notifier magic-folder link:\n{link_stdout}");
    assert!(link_stdout.contains("watching alice"), "{link_stdout}");
    assert!(
        !link_stdout.contains("URI:"),
        "a cap was printed: {link_stdout}"
    );
    let config_text = std::fs::read_to_string(paths.config_file()).unwrap();
    assert!(
        !config_text.contains("URI:") && !config_text.contains(&bob.token().unwrap()),
        "the config file holds a cap or the API token"
    );
    let links = linked_folders(&ConfigFile::new(paths.config_file())).unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].own_name, "bob");
    let alice_cap_id = links[0].participants[0].cap.cap_id.clone();

    let monitor = NotifyMonitor::start();
    let recorded = Arc::new(RecordingSink::new());
    let sink: Arc<dyn NotificationSink> = Arc::new(TestSink {
        recorded: Arc::clone(&recorded),
        desktop: std::env::var_os("TAHOE_NOTIFIER_DESKTOP_SERVICES").map(|_| DesktopSink::new()),
    });

    let local = tokio::task::LocalSet::new();
    let linked_latencies = local
        .run_until(async {
            // The wiring `tahoe-notifier watch` does.
            let engine = Engine::open(
                EngineOptions {
                    paths: paths.clone(),
                    secrets: Arc::clone(&secrets),
                    gateway_url: None,
                    poll_interval: Duration::from_secs(300),
                    link_timing: LinkTiming::default(),
                    policy: PolicyConfig::default(),
                    local_offset: time::UtcOffset::UTC,
                    spread: notifier_core::engine::spread::SpreadPolicy::default(),
                },
                Some(Arc::clone(&sink)),
            )
            .unwrap();
            let bridge = Bridge::open(BridgeOptions::new(
                paths.clone(),
                Arc::clone(&secrets),
                Some(Arc::clone(&sink)),
            ))
            .unwrap();
            let delegations = bridge.delegations();
            assert_eq!(delegations.len(), 2, "the collective and alice");
            let (commands, commands_rx) = mpsc::channel(16 + delegations.len());
            for command in delegations {
                commands.try_send(command).unwrap();
            }
            let (events_tx, mut events) = mpsc::channel(1024);
            let (changes_tx, changes_rx) = mpsc::channel(1024);
            let (bridge_events_tx, mut bridge_events) = mpsc::channel(256);
            local.spawn_local(async move {
                engine.run(commands_rx, events_tx).await.unwrap();
            });
            let bridge_task =
                local.spawn_local(bridge.run(changes_rx, commands.clone(), bridge_events_tx));
            let (subscribed_tx, mut subscribed) = mpsc::channel(4);
            let forward = local.spawn_local(async move {
                while let Some(event) = events.recv().await {
                    match &event {
                        EngineEvent::CapStatus {
                            id, subscribed_on, ..
                        } if *id == alice_cap_id && *subscribed_on == 3 => {
                            let _ = subscribed_tx.try_send(());
                        }
                        EngineEvent::Changed(report) => {
                            println!("engine: changed: {}", report.summary);
                            let _ = changes_tx.send(report.clone()).await;
                        }
                        _ => {}
                    }
                }
            });
            let joined = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let bridge_log = local.spawn_local({
                let joined = Arc::clone(&joined);
                async move {
                    let mut polls = Vec::new();
                    while let Some(event) = bridge_events.recv().await {
                        println!("bridge: {event:?}");
                        match event {
                            BridgeEvent::Poked { elapsed, .. } => polls.push(elapsed),
                            BridgeEvent::Participants { added, .. } => {
                                joined.lock().unwrap().extend(added);
                            }
                            _ => {}
                        }
                    }
                    polls
                }
            });
            tokio::time::timeout(Duration::from_secs(60), subscribed.recv())
                .await
                .expect("alice's personal directory was not subscribed on all 3 servers")
                .unwrap();

            let mut latencies = Vec::new();
            for i in 0..linked_files {
                // The first file is in a subfolder: its directory entry is mangled
                // ("docs@_report-0.txt") and must be shown unmangled.
                let relpath = if i == 0 {
                    "docs/report-0.txt".to_owned()
                } else {
                    format!("report-{i}.txt")
                };
                let contents = format!("figures {i}\n").into_bytes();
                let source = alice.folder().join(&relpath);
                std::fs::create_dir_all(source.parent().unwrap()).unwrap();
                let written = Instant::now();
                std::fs::write(&source, &contents).unwrap();
                let took = wait_for_file(
                    &bob.folder().join(&relpath),
                    &contents,
                    written,
                    Duration::from_secs(120),
                )
                .await;
                println!(
                    "with the bridge: {relpath} arrived after {:.2} s",
                    took.as_secs_f64()
                );
                latencies.push(took);
                // Let the notification (and any late second change) arrive before the next.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            // A participant added to the collective later (by Alice, its admin): the
            // collective's change is pushed and Bob's bridge lists the participants again and
            // watches the newcomer.
            let carol_dir = tokio::task::spawn_blocking(move || {
                grid.create_mutable_dir(local_grid::Format::Sdmf).unwrap()
            })
            .await
            .unwrap();
            let carol_ro = tahoe_caps::Cap::parse(&carol_dir)
                .unwrap()
                .read_only()
                .to_string();
            // A short blocking call on the engine's thread: the daemon does not need the engine.
            alice.add_participant(FOLDER, "carol", &carol_ro).unwrap();
            let added_at = Instant::now();
            while !joined.lock().unwrap().iter().any(|name| name == "carol") {
                assert!(
                    added_at.elapsed() < Duration::from_secs(30),
                    "Bob's bridge did not pick up carol after the collective changed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!(
                "carol watched {:.2} s after she was added to the collective",
                added_at.elapsed().as_secs_f64()
            );
            let links = linked_folders(&ConfigFile::new(paths.config_file())).unwrap();
            assert_eq!(
                links[0]
                    .participants
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>(),
                ["alice", "carol"]
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = commands.send(EngineCommand::Shutdown).await;
            forward.await.unwrap();
            bridge_task.await.unwrap();
            let polls = bridge_log.await.unwrap();
            println!(
                "bridge: change report → daemon poll finished: {}",
                if polls.is_empty() {
                    "none".to_owned()
                } else {
                    describe(&polls)
                }
            );
            latencies
        })
        .await;

    // Every file: exactly one notification, naming alice and the unmangled path.
    let notifications = recorded.delivered();
    for n in &notifications {
        println!(
            "notification: {} | {}",
            n.summary,
            n.body.replace('\n', " / ")
        );
    }
    for i in 0..linked_files {
        let name = if i == 0 {
            "docs/report-0.txt".to_owned()
        } else {
            format!("report-{i}.txt")
        };
        let naming: Vec<&Notification> = notifications
            .iter()
            .filter(|n| n.summary.contains(&name) || n.body.contains(&name))
            .collect();
        assert_eq!(
            naming.len(),
            1,
            "{name}: expected one notification, got {naming:?}"
        );
        assert!(
            naming[0].summary.starts_with("Shared: alice "),
            "{:?} does not name the folder and alice",
            naming[0].summary
        );
        if let Some(monitor) = &monitor {
            let file_name = name.rsplit('/').next().unwrap();
            assert_eq!(
                monitor.calls_containing(&[file_name]),
                1,
                "{name}: expected one D-Bus Notify call"
            );
        }
    }
    assert!(
        notifications.iter().all(|n| !n.summary.contains("@_")
            && !n.summary.contains("@metadata")
            && !n.summary.contains("alice in")),
        "a mangled name or the engine's own notification was shown: {notifications:?}"
    );
    assert!(
        notifications
            .iter()
            .all(|n| !n.summary.contains("URI:") && !n.body.contains("URI:")),
        "a cap was shown"
    );

    // The same through the product itself: `tahoe-notifier watch` runs the bridge for the
    // linked folder (one more file, one notification, one poll).
    {
        let mut watch = Command::new(local_grid::bins::workspace_binary("tahoe-notifier"))
            .arg("--home")
            .arg(home.path())
            .args(["--keyring", keyring, "--json", "watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            let stdout = watch.stdout.take().unwrap();
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    println!("watch: {line}");
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let seen = |needles: &[&str]| {
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|line| needles.iter().all(|n| line.contains(n)))
        };
        let wait = |what: &str, needles: &[&str], within: Duration| {
            let deadline = Instant::now() + within;
            while !seen(needles) {
                assert!(Instant::now() < deadline, "watch did not report {what}");
                std::thread::sleep(Duration::from_millis(25));
            }
        };
        let subscribed = [r#""label":"alice in Shared""#, r#""subscribed_on":3"#];
        tokio::task::block_in_place(|| {
            wait("alice subscribed", &subscribed, Duration::from_secs(60))
        });
        let contents = b"through watch\n".to_vec();
        let written = Instant::now();
        std::fs::write(alice.folder().join("from-watch.txt"), &contents).unwrap();
        let took = wait_for_file(
            &bob.folder().join("from-watch.txt"),
            &contents,
            written,
            Duration::from_secs(120),
        )
        .await;
        println!(
            "through watch: from-watch.txt arrived after {:.2} s",
            took.as_secs_f64()
        );
        tokio::task::block_in_place(|| {
            wait(
                "the notification",
                &[
                    "magic-folder-notified",
                    "Shared: alice added from-watch.txt",
                ],
                Duration::from_secs(20),
            );
            wait(
                "the poll",
                &["magic-folder-poll", "alice"],
                Duration::from_secs(20),
            );
        });
        let stopped = Command::new("kill")
            .args(["-TERM", &watch.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        assert!(
            watch.wait().unwrap().success(),
            "watch did not stop cleanly"
        );
        reader.join().unwrap();
        assert!(
            lines.lock().unwrap().iter().all(|l| !l.contains("URI:")),
            "watch printed a cap"
        );
        if let Some(monitor) = &monitor {
            // The bridge's notification only: the engine's own ("alice in Shared: added
            // from-watch.txt") must not be shown.
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(monitor.calls_containing(&["from-watch.txt"]), 1);
        }
    }

    // Without the bridge: Bob's daemon fetches on its own 60-second poll. The files are
    // written at evenly spread moments of that period, so their waits sample it evenly.
    let spacing = Duration::from_secs_f64(60.0 / unlinked_files as f64);
    let start = Instant::now();
    let mut files: Vec<PolledFile> = (0..unlinked_files)
        .map(|i| {
            (
                format!("polled-{i}.txt"),
                format!("polled {i}\n").into_bytes(),
                None,
                None,
            )
        })
        .collect();
    let give_up = start + spacing * unlinked_files as u32 + Duration::from_secs(150);
    // One loop writes each file when its moment comes and notices every arrival.
    while files.iter().any(|f| f.3.is_none()) {
        assert!(
            Instant::now() < give_up,
            "files written by Alice did not arrive by Bob's own polling: {:?}",
            files
                .iter()
                .filter(|f| f.3.is_none())
                .map(|f| &f.0)
                .collect::<Vec<_>>()
        );
        for (i, (relpath, contents, written, arrived)) in files.iter_mut().enumerate() {
            if written.is_none() && Instant::now() >= start + spacing * i as u32 {
                std::fs::write(alice.folder().join(&*relpath), &*contents).unwrap();
                *written = Some(Instant::now());
            }
            if written.is_some()
                && arrived.is_none()
                && std::fs::read(bob.folder().join(&*relpath)).is_ok_and(|got| got == *contents)
            {
                *arrived = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let unlinked: Vec<Duration> = files
        .iter()
        .map(|(relpath, _, written, arrived)| {
            let took = arrived.unwrap() - written.unwrap();
            println!(
                "without the bridge: {relpath} arrived after {:.2} s",
                took.as_secs_f64()
            );
            took
        })
        .collect();

    // Grid traffic of one of Bob's polls (nothing new to fetch): the gateway's bytes to and
    // from the storage nodes across a forced poll. The median of 5 leaves out a poll that met
    // one of the daemons' own timed polls; the idle rate is printed for comparison.
    let gateway_pid = *grid.node_pids().last().unwrap();
    let web_port = grid.gateway_port();
    let io = move || gateway_grid_bytes(gateway_pid, web_port);
    println!("== magic-folder bridge figures ==");
    println!(
        "with the bridge (push → poll-remote): {}",
        describe(&linked_latencies)
    );
    println!(
        "without (Bob's own 60 s poll):         {}",
        describe(&unlinked)
    );
    if let Some(before) = io() {
        let idle_window = Duration::from_secs(10);
        tokio::time::sleep(idle_window).await;
        let idle_rate =
            io().unwrap_or(before).saturating_sub(before) as f64 / idle_window.as_secs_f64();
        let mut per_poll = Vec::new();
        for _ in 0..5 {
            let before = io().unwrap_or(0);
            let started = Instant::now();
            tokio::task::block_in_place(|| {
                bob.api(
                    "PUT",
                    &format!("/v1/magic-folder/{FOLDER}/poll-remote"),
                    None,
                )
            })
            .unwrap();
            let took = started.elapsed().as_secs_f64();
            let bytes = io().unwrap_or(0).saturating_sub(before);
            println!("forced poll: {bytes} B in {took:.2} s");
            per_poll.push(bytes as f64);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        per_poll.sort_by(f64::total_cmp);
        let poll_bytes = percentile(&per_poll, 0.5);
        println!(
            "grid bytes per magic-folder poll (gateway <-> storage nodes; collective, alice and \
             carol: 3 directories; idle rate around it {idle_rate:.0} B/s): median \
             {poll_bytes:.0} B, all {per_poll:.0?}"
        );
        println!(
            "per hour: at 60 s {:.0} B, at 3600 s {:.0} B, saved {:.0} B",
            poll_bytes * 60.0,
            poll_bytes,
            poll_bytes * 59.0
        );
    } else {
        println!("`ss` (iproute2) not found: the traffic of a poll is not measured");
    }

    // A third device joins read-only: it has no personal directory, and magic-folder cannot
    // give its collective's cap, yet linking it watches the others.
    let dave = tokio::task::spawn_blocking({
        let base = base.path().to_owned();
        let url = mailbox.url().to_owned();
        move || MagicFolderDaemon::start(grid, &base, "dave", &url).unwrap()
    })
    .await
    .unwrap();
    tokio::task::block_in_place(|| alice.invite(FOLDER, &dave, "dave", true)).unwrap();
    let dave_home = tempfile::tempdir().unwrap();
    let dave_link = Command::new(local_grid::bins::workspace_binary("tahoe-notifier"))
        .arg("--home")
        .arg(dave_home.path())
        .args([
            "--keyring",
            keyring,
            "--json",
            "magic-folder",
            "link",
            "--config",
        ])
        .arg(dave.config_dir())
        .output()
        .unwrap();
    assert!(
        dave_link.status.success(),
        "{}",
        String::from_utf8_lossy(&dave_link.stderr)
    );
    let dave_link: serde_json::Value = serde_json::from_slice(&dave_link.stdout).unwrap();
    println!("read-only link: {dave_link}");
    assert_eq!(dave_link["linked"][0]["own_name"], "dave");
    assert_eq!(
        dave_link["linked"][0]["participants"],
        serde_json::json!(["alice", "bob", "carol"])
    );
    let unlinked = Command::new(local_grid::bins::workspace_binary("tahoe-notifier"))
        .arg("--home")
        .arg(dave_home.path())
        .args(["--keyring", keyring, "magic-folder", "unlink", "--config"])
        .arg(dave.config_dir())
        .args(["--folder", FOLDER])
        .output()
        .unwrap();
    assert!(
        unlinked.status.success(),
        "unlink failed (its caps stay in the keyring)"
    );
    tokio::task::spawn_blocking(move || drop(dave))
        .await
        .unwrap();

    // The consent step, for real: magic-folder has no API to change a folder's poll interval,
    // so the CLI edits the stopped daemon's state and the restarted daemon reports the value.
    let poll_interval = |bob: &MagicFolderDaemon, extra: &[&str]| {
        Command::new(local_grid::bins::workspace_binary("tahoe-notifier"))
            .arg("--home")
            .arg(home.path())
            .args([
                "--keyring",
                keyring,
                "magic-folder",
                "poll-interval",
                "--config",
            ])
            .arg(bob.config_dir())
            .args(["--folder", FOLDER])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = poll_interval(&bob, &["--set", "3600", "--yes"]);
    assert!(!refused.status.success(), "changed under a running daemon");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is running: stop it first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let bob = tokio::task::spawn_blocking(move || {
        bob.stop();
        bob
    })
    .await
    .unwrap();
    let applied = poll_interval(&bob, &["--set", "3600", "--yes"]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    println!("{}", String::from_utf8_lossy(&applied.stdout).trim());
    let mut bob = bob;
    let bob = tokio::task::spawn_blocking(move || {
        bob.restart().unwrap();
        bob
    })
    .await
    .unwrap();
    let folders = tokio::task::block_in_place(|| bob.api("GET", "/v1/magic-folder", None)).unwrap();
    assert_eq!(folders[FOLDER]["poll_interval"], 3600);
    let report = poll_interval(&bob, &[]);
    println!("{}", String::from_utf8_lossy(&report.stdout).trim());

    tokio::task::spawn_blocking(move || {
        drop(alice);
        drop(bob);
        drop(mailbox);
    })
    .await
    .unwrap();
    for mut server in servers {
        server.stop().await;
    }
}
