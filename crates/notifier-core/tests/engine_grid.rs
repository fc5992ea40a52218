//! The engine end to end: a real Tahoe grid, the updates server's code beside each storage node
//! (in process, so a test can stop and restart it on the same port), the real keyring, and
//! notifications recorded — plus the real notification daemon on D-Bus where the test runner
//! provides one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use local_grid::desktop::NotifyMonitor;
use local_grid::{Format, Grid};
use notifier_core::engine::{Engine, EngineCommand, EngineEvent, EngineOptions};
use notifier_core::grid::description::parse_grid_file;
use notifier_core::net::link::{LinkState, LinkTiming};
use notifier_core::notify::{
    DeliveredId, DesktopSink, Notification, NotificationSink, NotifyError, PolicyConfig,
    RecordingSink, Urgency,
};
use notifier_core::store::caps::CapStore;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::keyring::SecretStore;
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;
use support::{secrets, InProcessServer};
use tahoe_caps::Cap;
use tokio::sync::mpsc;

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

struct Setup {
    _home: tempfile::TempDir,
    paths: Paths,
    secrets: Arc<dyn SecretStore>,
    servers: Vec<InProcessServer>,
}

async fn setup(grid: &Grid, newscap: Option<&Cap>) -> Setup {
    setup_with_servers(grid, newscap, grid.storage_nodes().len()).await
}

/// A home whose grid has updates servers beside the first `count` storage nodes only.
async fn setup_with_servers(grid: &Grid, newscap: Option<&Cap>, count: usize) -> Setup {
    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    paths.ensure_dirs().unwrap();
    let secrets = secrets();
    let mut servers = Vec::new();
    for node in grid.storage_nodes().iter().take(count) {
        servers.push(InProcessServer::start(node).await);
    }
    let mut file = serde_json::json!({
        "name": "test grid",
        "gateway_url": grid.gateway_url(),
        "updates_servers": servers.iter().map(|s| s.nurl.to_string()).collect::<Vec<_>>(),
    });
    if let Some(news) = newscap {
        file["newscap"] = serde_json::Value::String(news.to_string());
    }
    let grid_file = parse_grid_file(&file.to_string()).unwrap();
    ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets))
        .import_grid(&grid_file)
        .unwrap();
    Setup {
        _home: home,
        paths,
        secrets,
        servers,
    }
}

fn quick_timing() -> LinkTiming {
    LinkTiming {
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        ..LinkTiming::default()
    }
}

struct RunningEngine {
    commands: mpsc::Sender<EngineCommand>,
    events: mpsc::Receiver<EngineEvent>,
    recorded: Arc<RecordingSink>,
}

fn start_engine(setup: &Setup, local: &tokio::task::LocalSet) -> RunningEngine {
    let recorded = Arc::new(RecordingSink::new());
    let desktop = std::env::var_os("TAHOE_NOTIFIER_DESKTOP_SERVICES").map(|_| DesktopSink::new());
    let sink = Arc::new(TestSink {
        recorded: Arc::clone(&recorded),
        desktop,
    });
    let engine = Engine::open(
        EngineOptions {
            paths: setup.paths.clone(),
            secrets: Arc::clone(&setup.secrets),
            gateway_url: None,
            poll_interval: Duration::from_secs(300),
            link_timing: quick_timing(),
            policy: PolicyConfig::default(),
            local_offset: time::UtcOffset::UTC,
            spread: notifier_core::engine::spread::SpreadPolicy::default(),
        },
        Some(sink),
    )
    .unwrap();
    let (commands, commands_rx) = mpsc::channel(16);
    let (events_tx, events) = mpsc::channel(1024);
    local.spawn_local(async move {
        engine.run(commands_rx, events_tx).await.unwrap();
    });
    RunningEngine {
        commands,
        events,
        recorded,
    }
}

/// Waits for the first event that `pick` accepts, up to `wait`.
async fn wait_for<T>(
    engine: &mut RunningEngine,
    wait: Duration,
    mut pick: impl FnMut(&EngineEvent) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let event = tokio::time::timeout_at(deadline, engine.events.recv())
            .await
            .ok()??;
        if let Some(found) = pick(&event) {
            return Some(found);
        }
    }
}

async fn wait_subscribed_everywhere(engine: &mut RunningEngine, cap_id: &str, servers: usize) {
    let found = wait_for(engine, Duration::from_secs(20), |event| match event {
        EngineEvent::CapStatus {
            id, subscribed_on, ..
        } if id == cap_id && *subscribed_on == servers => Some(()),
        _ => None,
    })
    .await;
    assert!(
        found.is_some(),
        "the cap was not subscribed on all {servers} servers"
    );
}

/// The sink's notifications once it holds at least `count`, waiting up to `wait` (they arrive
/// from the engine's notification task), then a further `settle` for any that should not come.
async fn notifications_after(
    recorded: &RecordingSink,
    count: usize,
    wait: Duration,
    settle: Duration,
) -> Vec<Notification> {
    let deadline = tokio::time::Instant::now() + wait;
    while recorded.delivered().len() < count && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(settle).await;
    recorded.delivered()
}

/// Changed events within `wait`.
async fn changes_within(
    engine: &mut RunningEngine,
    wait: Duration,
) -> Vec<notifier_core::engine::ChangeReport> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, engine.events.recv()).await {
        if let EngineEvent::Changed(report) = event {
            changes.push(report);
        }
    }
    changes
}

fn add_cap(setup: &Setup, cap: &str, label: &str) -> String {
    let cap: Cap = cap.parse().unwrap();
    CapStore::new(
        ConfigFile::new(setup.paths.config_file()),
        Arc::clone(&setup.secrets),
    )
    .add(&cap, label, None)
    .unwrap()
    .id
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

fn grid() -> &'static Grid {
    local_grid::shared().expect("a real Tahoe grid (run tests/bootstrap-python.sh?)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_added_through_the_gateway_is_one_change_and_one_notification_naming_it() {
    let grid = grid();
    let setup = setup(grid, None).await;
    let dircap = blocking(move || grid.create_mutable_dir(Format::Sdmf).unwrap()).await;
    let cap_id = add_cap(&setup, &dircap, "Team Docs");
    let monitor = NotifyMonitor::start();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = start_engine(&setup, &local);
            wait_subscribed_everywhere(&mut engine, &cap_id, 3).await;
            let writer_cap = dircap.clone();
            blocking(move || {
                grid.put_child(&writer_cap, "report.pdf", b"numbers")
                    .unwrap()
            })
            .await;
            let changes = changes_within(&mut engine, Duration::from_secs(8)).await;
            assert_eq!(
                changes.len(),
                1,
                "one publish seen by 3 servers must be one change: {changes:?}"
            );
            assert!(
                changes[0].summary.contains("report.pdf"),
                "{}",
                changes[0].summary
            );
            assert!(!changes[0].while_away);
            // Past the 2 s coalescing window: a lone change stays one notification.
            let notes = notifications_after(
                &engine.recorded,
                1,
                Duration::from_secs(5),
                Duration::from_millis(2500),
            )
            .await;
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert!(
                notes[0].summary.contains("Team Docs") && notes[0].summary.contains("report.pdf")
            );
            assert!(!notes[0].summary.contains("URI:") && !notes[0].body.contains("URI:"));
            if let Some(monitor) = &monitor {
                assert_eq!(
                    monitor.calls_containing(&["report.pdf"]),
                    1,
                    "exactly one D-Bus Notify naming the file"
                );
            }
            let _ = engine.commands.send(EngineCommand::Shutdown).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_while_every_server_is_down_are_reported_once_after_reconnecting() {
    let grid = grid();
    let mut setup = setup(grid, None).await;
    let dircap = blocking(move || grid.create_mutable_dir(Format::Mdmf).unwrap()).await;
    let cap_id = add_cap(&setup, &dircap, "Shared Photos");
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = start_engine(&setup, &local);
            wait_subscribed_everywhere(&mut engine, &cap_id, 3).await;
            for server in &mut setup.servers {
                server.stop().await;
            }
            let failing = wait_for(&mut engine, Duration::from_secs(10), |event| match event {
                EngineEvent::Server {
                    state: LinkState::Failing { .. },
                    ..
                } => Some(()),
                _ => None,
            })
            .await;
            assert!(
                failing.is_some(),
                "the engine did not notice the servers going away"
            );
            for name in ["beach.jpg", "sunset.jpg"] {
                let writer_cap = dircap.clone();
                blocking(move || grid.put_child(&writer_cap, name, b"pixels").unwrap()).await;
            }
            assert!(changes_within(&mut engine, Duration::from_millis(500))
                .await
                .is_empty());
            for server in &mut setup.servers {
                server.restart().await;
            }
            let changes = changes_within(&mut engine, Duration::from_secs(10)).await;
            assert_eq!(
                changes.len(),
                1,
                "two publishes while away are one change on return: {changes:?}"
            );
            let change = &changes[0];
            assert!(change.while_away, "{change:?}");
            assert!(
                change.summary.contains("beach.jpg") || change.body.contains("beach.jpg"),
                "{change:?}"
            );
            assert!(
                change.summary.contains("sunset.jpg")
                    || change.body.contains("sunset.jpg")
                    || change.summary.contains("1 more"),
                "{change:?}"
            );
            let _ = engine.commands.send(EngineCommand::Shutdown).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_server_killed_then_restarted_gives_one_change_while_away_with_the_diff() {
    let grid = grid();
    let mut setup = setup_with_servers(grid, None, 1).await;
    let dircap = blocking(move || grid.create_mutable_dir(Format::Sdmf).unwrap()).await;
    let writer = dircap.clone();
    blocking(move || grid.put_child(&writer, "before.txt", b"old").unwrap()).await;
    let cap_id = add_cap(&setup, &dircap, "Lone Folder");
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = start_engine(&setup, &local);
            wait_subscribed_everywhere(&mut engine, &cap_id, 1).await;
            // The first listing is taken in the background: let it land so the diff is exact.
            tokio::time::sleep(Duration::from_secs(2)).await;
            setup.servers[0].stop().await;
            for name in ["first.txt", "second.txt"] {
                let writer = dircap.clone();
                blocking(move || grid.put_child(&writer, name, b"new").unwrap()).await;
            }
            setup.servers[0].restart().await;
            let changes = changes_within(&mut engine, Duration::from_secs(15)).await;
            assert_eq!(
                changes.len(),
                1,
                "two publishes while away are one change: {changes:?}"
            );
            let change = &changes[0];
            assert!(change.while_away, "{change:?}");
            let text = format!("{} {}", change.summary, change.body);
            assert!(
                text.contains("first.txt") && text.contains("second.txt"),
                "{change:?}"
            );
            assert!(
                !text.contains("before.txt"),
                "only what changed is named: {change:?}"
            );
            let _ = engine.commands.send(EngineCommand::Shutdown).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_servers_killed_and_restarted_loses_nothing_and_doubles_nothing() {
    let grid = grid();
    let mut setup = setup(grid, None).await;
    let dircap = blocking(move || grid.create_mutable_dir(Format::Mdmf).unwrap()).await;
    let cap_id = add_cap(&setup, &dircap, "Shared Notes");
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = start_engine(&setup, &local);
            wait_subscribed_everywhere(&mut engine, &cap_id, 3).await;
            setup.servers[0].stop().await;
            // The other two servers still push: each change is reported as it happens.
            let mut reported = Vec::new();
            for name in ["monday.txt", "tuesday.txt"] {
                let writer = dircap.clone();
                blocking(move || grid.put_child(&writer, name, b"notes").unwrap()).await;
                let changes = changes_within(&mut engine, Duration::from_secs(5)).await;
                assert_eq!(changes.len(), 1, "one change for {name}: {changes:?}");
                assert!(!changes[0].while_away, "{changes:?}");
                reported.extend(changes);
            }
            assert!(reported[1].seqnum > reported[0].seqnum, "{reported:?}");
            // Back with seqnums it never announced: already reported, so nothing more.
            setup.servers[0].restart().await;
            wait_subscribed_everywhere(&mut engine, &cap_id, 3).await;
            let again = changes_within(&mut engine, Duration::from_secs(5)).await;
            assert!(
                again.is_empty(),
                "the returning server doubled a change: {again:?}"
            );
            let _ = engine.commands.send(EngineCommand::Shutdown).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_published_to_the_grid_is_one_notification_with_title_and_urgency() {
    let grid = grid();
    let gateway = notifier_core::net::gateway::Gateway::new(grid.gateway_url()).unwrap();
    let news_write = gateway
        .create_dir(notifier_core::net::gateway::DirFormat::Sdmf)
        .await
        .unwrap();
    // One message before the client starts: history, not news.
    notifier_core::news::feed::publish(
        &gateway,
        &news_write,
        &draft("Welcome", "info", "Hello grid."),
    )
    .await
    .unwrap();
    let setup = setup(grid, Some(&news_write.read_only())).await;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = start_engine(&setup, &local);
            tokio::time::sleep(Duration::from_secs(2)).await;
            notifier_core::news::feed::publish(
                &gateway,
                &news_write,
                &draft(
                    "Maintenance tonight",
                    "critical",
                    "Storage 2 goes down at 22:00 UTC.",
                ),
            )
            .await
            .unwrap();
            let news = wait_for(&mut engine, Duration::from_secs(10), |event| match event {
                EngineEvent::News(report) => Some(report.clone()),
                _ => None,
            })
            .await
            .expect("the news item was not reported");
            assert_eq!(news.title, "Maintenance tonight");
            assert_eq!(news.urgency, Urgency::Critical);
            let notes = notifications_after(
                &engine.recorded,
                1,
                Duration::from_secs(5),
                Duration::from_millis(500),
            )
            .await;
            assert_eq!(notes.len(), 1, "only the new message is news: {notes:?}");
            assert!(notes[0].summary.contains("Maintenance tonight"));
            assert_eq!(notes[0].urgency, Urgency::Critical);
            let _ = engine.commands.send(EngineCommand::Shutdown).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_quick_changes_to_one_folder_are_one_notification_updated_in_place() {
    let grid = grid();
    let setup = setup(grid, None).await;
    let dircap = blocking(move || grid.create_mutable_dir(Format::Sdmf).unwrap()).await;
    let cap_id = add_cap(&setup, &dircap, "Team Docs");
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = start_engine(&setup, &local);
            wait_subscribed_everywhere(&mut engine, &cap_id, 3).await;
            let writer_cap = dircap.clone();
            let started = std::time::Instant::now();
            blocking(move || {
                for i in 0..10 {
                    grid.put_child(&writer_cap, &format!("file{i}.txt"), b"x")
                        .unwrap();
                }
            })
            .await;
            let writing = started.elapsed();
            // The engine reports each publish it sees (one per seqnum; two close publishes
            // may be seen as one), then the policy coalesces them.
            let changes = changes_within(&mut engine, Duration::from_secs(5)).await;
            assert!(
                (2..=10).contains(&changes.len()),
                "{} changes in {writing:?}: {changes:?}",
                changes.len()
            );
            let recorded = &engine.recorded;
            notifications_after(recorded, 2, Duration::from_secs(15), Duration::from_secs(3))
                .await;
            let shown = recorded.shown();
            let replacements = recorded.replacements();
            assert_eq!(
                (shown.len(), replacements.len()),
                (1, 1),
                "10 puts in {writing:?}: one notification shown and updated once, not one each: {:?}",
                recorded.records()
            );
            assert!(shown[0].summary.starts_with("Team Docs: "), "{shown:?}");
            let screen = recorded.on_screen();
            assert_eq!(screen.len(), 1);
            let summary = &screen[0].summary;
            assert!(
                summary.starts_with(&format!("Team Docs: {} changes — added ", changes.len())),
                "{summary}"
            );
            assert!(summary.contains("file"), "{summary}");
            let _ = engine.commands.send(EngineCommand::Shutdown).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_caps_are_recorded_but_not_notified_and_unmuting_works_at_once() {
    let grid = grid();
    let setup = setup(grid, None).await;
    let dircap = blocking(move || grid.create_mutable_dir(Format::Sdmf).unwrap()).await;
    let cap_id = add_cap(&setup, &dircap, "Quiet Folder");
    CapStore::new(
        ConfigFile::new(setup.paths.config_file()),
        Arc::clone(&setup.secrets),
    )
    .set_muted(&cap_id, true)
    .unwrap();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut engine = start_engine(&setup, &local);
            wait_subscribed_everywhere(&mut engine, &cap_id, 3).await;
            let writer_cap = dircap.clone();
            blocking(move || grid.put_child(&writer_cap, "hush.txt", b"x").unwrap()).await;
            let changes = changes_within(&mut engine, Duration::from_secs(5)).await;
            assert_eq!(changes.len(), 1, "{changes:?}");
            assert!(changes[0].muted);
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(engine.recorded.delivered().is_empty());

            engine
                .commands
                .send(EngineCommand::SetMuted {
                    id: cap_id.clone(),
                    muted: false,
                })
                .await
                .unwrap();
            let writer_cap = dircap.clone();
            blocking(move || grid.put_child(&writer_cap, "loud.txt", b"x").unwrap()).await;
            let changes = changes_within(&mut engine, Duration::from_secs(5)).await;
            assert_eq!(changes.len(), 1, "{changes:?}");
            assert!(!changes[0].muted);
            let notes =
                notifications_after(&engine.recorded, 1, Duration::from_secs(5), Duration::ZERO)
                    .await;
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert!(notes[0].summary.contains("loud.txt"), "{notes:?}");
            let _ = engine.commands.send(EngineCommand::Shutdown).await;
        })
        .await;
}

fn draft(title: &str, severity: &str, body: &str) -> notifier_core::news::NewsDraft {
    notifier_core::news::NewsDraft {
        title: Some(title.to_owned()),
        severity: severity.parse().unwrap(),
        expires: None,
        body: body.to_owned(),
    }
}
