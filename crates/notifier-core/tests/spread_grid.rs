//! A popular slot's subscribers spread their fetches (issue 14, "the herd after a popular
//! change"), on a real grid with the updates server's own code beside each storage node: a
//! folder held by a crowd of 70 further connections on every server comes with a
//! `subscribers` hint, so the engine announces the change at once ("changed", details to
//! follow) and describes it after its spread wait, replacing that notice; a folder watched by
//! the engine alone gets no hint, no notice and no wait.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use local_grid::{Format, Grid};
use mutable_updates::client::{connect, PATH};
use mutable_updates::message::{ClientMessage, ServerMessage};
use notifier_core::caps::CapStore;
use notifier_core::config::ConfigFile;
use notifier_core::engine::{ChangeReport, Engine, EngineCommand, EngineEvent, EngineOptions};
use notifier_core::grid_file::parse_grid_file;
use notifier_core::link::LinkTiming;
use notifier_core::notify::{NotificationSink, RecordingSink};
use notifier_core::paths::Paths;
use notifier_core::servers::ServerStore;
use notifier_core::spread::SpreadPolicy;
use support::{secrets, InProcessServer};
use tahoe_caps::{Cap, StorageIndex};
use tokio::sync::mpsc;

/// Connections besides the engine's holding the popular folder on each server: past the
/// servers' threshold of 64, so their hint says 64.
const CROWD: usize = 70;

fn grid() -> &'static Grid {
    local_grid::shared().expect("a real Tahoe grid (run tests/bootstrap-python.sh?)")
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

/// The next change reported within `timeout`.
async fn next_change(
    events: &mut mpsc::Receiver<EngineEvent>,
    timeout: Duration,
) -> Option<ChangeReport> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(EngineEvent::Changed(report))) => return Some(report),
            Ok(Some(_)) => {}
            _ => return None,
        }
    }
}

/// What `sink` got, once it has at least `count` deliveries (the policy runs beside the
/// engine, so a change's notification can trail its report).
async fn delivered(sink: &RecordingSink, count: usize) -> Vec<notifier_core::notify::Notification> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let delivered = sink.delivered();
        if delivered.len() >= count || Instant::now() > deadline {
            return delivered;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `CROWD` WebSocket connections to each server, each subscribed to `si`, kept open while
/// the returned tasks run (they read and drop whatever comes).
async fn crowd(servers: &[InProcessServer], si: StorageIndex) -> Vec<tokio::task::JoinHandle<()>> {
    let mut readers = Vec::new();
    for server in servers {
        for _ in 0..CROWD {
            let mut socket = connect(&server.nurl, PATH).await.expect("crowd connect");
            socket
                .send(ClientMessage::subscribe([si]).to_json().into())
                .await
                .expect("crowd subscribe");
            loop {
                let text = socket.next().await.expect("open").expect("message");
                if let Ok(ServerMessage::Status(_)) = ServerMessage::parse(text.to_text().unwrap())
                {
                    break;
                }
            }
            readers.push(tokio::spawn(async move {
                while let Some(Ok(_)) = socket.next().await {}
            }));
        }
    }
    readers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popular_folder_is_announced_at_once_and_described_after_its_spread_wait() {
    let grid = grid();
    let mut servers = Vec::new();
    for node in grid.storage_nodes() {
        servers.push(InProcessServer::start(node).await);
    }
    let (popular, quiet) = blocking(move || {
        let popular = grid.create_mutable_dir(Format::Sdmf).unwrap();
        grid.put_child(&popular, "first.txt", b"one").unwrap();
        let quiet = grid.create_mutable_dir(Format::Sdmf).unwrap();
        grid.put_child(&quiet, "first.txt", b"one").unwrap();
        (popular, quiet)
    })
    .await;
    let popular_cap: Cap = popular.parse().unwrap();
    let quiet_cap: Cap = quiet.parse().unwrap();
    let readers = crowd(&servers, popular_cap.storage_index().unwrap()).await;

    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    paths.ensure_dirs().unwrap();
    let secrets = secrets();
    let nurls: Vec<String> = servers.iter().map(|s| s.nurl.to_string()).collect();
    let description = serde_json::json!({
        "name": "popular grid",
        "gateway_url": grid.gateway_url(),
        "updates_servers": nurls,
    })
    .to_string();
    ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets))
        .import_grid(&parse_grid_file(&description).unwrap())
        .unwrap();
    let caps = CapStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    let popular_id = caps.add(&popular_cap, "Grid Board", None).unwrap().id;
    let quiet_id = caps.add(&quiet_cap, "Two of us", None).unwrap().id;

    let sink = Arc::new(RecordingSink::new());
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut options = EngineOptions::new(paths.clone(), Arc::clone(&secrets));
            options.link_timing = LinkTiming {
                backoff_initial: Duration::from_millis(100),
                ..LinkTiming::default()
            };
            // A hint of 64 spreads over 1.5 × 64 / 16 = 6 s here (2 s by default), and any
            // wait is announced, so that the test does not depend on the draw.
            options.spread = SpreadPolicy {
                fetches_per_second: 16.0,
                max_wait: Duration::from_secs(30),
                early_notice_after: Duration::from_nanos(1),
            };
            let engine = Engine::open(
                options,
                Some(Arc::clone(&sink) as Arc<dyn NotificationSink>),
            )
            .unwrap();
            let (commands, commands_rx) = mpsc::channel(8);
            let (events_tx, mut events) = mpsc::channel(1024);
            let running = tokio::task::spawn_local(engine.run(commands_rx, events_tx));
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut subscribed = std::collections::HashSet::new();
            while subscribed.len() < 2 {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, events.recv()).await {
                    Ok(Some(EngineEvent::CapStatus {
                        id,
                        subscribed_on: 3,
                        ..
                    })) => {
                        subscribed.insert(id);
                    }
                    Ok(Some(_)) => {}
                    _ => panic!("the caps were not subscribed on all three servers"),
                }
            }

            // The quiet folder: described at once, no notice before it.
            let writer = quiet.clone();
            blocking(move || grid.put_child(&writer, "ours.txt", b"two").unwrap()).await;
            let change = next_change(&mut events, Duration::from_secs(10))
                .await
                .expect("the quiet folder's change");
            assert_eq!(change.cap_id, quiet_id);
            assert!(change.summary.contains("ours.txt"), "{change:?}");
            let shown = delivered(&sink, 1).await;
            sink.take();
            assert_eq!(shown.len(), 1, "{shown:?}");
            assert!(shown[0].summary.contains("ours.txt"), "{shown:?}");

            // The popular folder: "changed" at once, the details after the spread wait.
            let writer = popular.clone();
            let put_answered = blocking(move || {
                grid.put_child(&writer, "for-everyone.txt", b"three").unwrap();
                Instant::now()
            })
            .await;
            let notice_deadline = Instant::now() + Duration::from_secs(5);
            let notice = loop {
                if let Some(first) = sink.delivered().into_iter().next() {
                    break first;
                }
                assert!(
                    Instant::now() < notice_deadline,
                    "no early notice of the popular folder's change"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert_eq!(notice.summary, "Grid Board changed");
            assert!(notice.body.contains("take turns"), "{notice:?}");
            let change = next_change(&mut events, Duration::from_secs(20))
                .await
                .expect("the popular folder's change, described");
            let described_after = put_answered.elapsed();
            assert_eq!(change.cap_id, popular_id);
            assert!(change.summary.contains("for-everyone.txt"), "{change:?}");
            // The described change replaced the notice in place: one notification on screen.
            delivered(&sink, 2).await;
            let records = sink.records();
            assert_eq!(records.len(), 2, "{records:?}");
            assert!(!records[0].replaced);
            assert!(records[1].replaced, "{records:?}");
            assert_eq!(records[0].id, records[1].id);
            assert!(
                records[1].notification.summary.contains("for-everyone.txt"),
                "{records:?}"
            );
            println!(
                "popular folder: notice {:?} before the details, described {:.2} s after the PUT answer",
                notice.summary,
                described_after.as_secs_f64()
            );
            let _ = commands.send(EngineCommand::Shutdown).await;
            running.await.unwrap().unwrap();
        })
        .await;
    for reader in readers {
        reader.abort();
    }
    let _ = caps.remove(&popular_id);
    let _ = caps.remove(&quiet_id);
}
