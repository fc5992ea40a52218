//! A popular slot's subscribers spread their fetches (issue 14, "the herd after a popular
//! change"), on a real grid with the updates server's own code beside each storage node: a
//! folder held by a crowd of 70 further connections on every server comes with a
//! `subscribers` hint, so the engine announces the change at once ("changed", details to
//! follow) and describes it after its spread wait, replacing that notice; a folder watched by
//! the engine alone gets no hint, no notice and no wait.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
#[path = "support/watching.rs"]
mod watching;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mutable_updates::client::{connect, PATH};
use mutable_updates::message::{ClientMessage, ServerMessage};
use notifier_core::engine::spread::SpreadPolicy;
use notifier_core::engine::{ChangeReport, EngineEvent};
use notifier_core::notify::{NotificationSink, RecordingSink};
use support::{secrets, InProcessServer};
use tahoe_caps::{Cap, StorageIndex};
use tokio::sync::mpsc;
use watching::{blocking, grid, new_folder, Watching};

/// Connections besides the engine's holding the popular folder on each server: past the
/// servers' threshold of 64, so their hint says 64.
const CROWD: usize = 70;

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
    let popular = new_folder().await;
    let quiet = new_folder().await;
    let popular_cap: Cap = popular.parse().unwrap();
    let quiet_cap: Cap = quiet.parse().unwrap();
    let readers = crowd(&servers, popular_cap.storage_index().unwrap()).await;

    let nurls: Vec<String> = servers.iter().map(|s| s.nurl.to_string()).collect();
    let watching = Watching::new("popular grid", &nurls, &popular_cap, secrets());
    let quiet_id = watching.caps.add(&quiet_cap, "Two of us", None).unwrap().id;

    let sink = Arc::new(RecordingSink::new());
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            // A hint of 64 spreads over 1.5 × 64 / 16 = 6 s here (3.8 s by default), and any
            // wait is announced, so that the test does not depend on the draw.
            let mut engine = watching
                .start_engine_with(
                    3,
                    |options| {
                        options.spread = SpreadPolicy {
                            fetches_per_second: 16.0,
                            max_wait: Duration::from_secs(30),
                            early_notice_after: Duration::from_nanos(1),
                        };
                    },
                    Some(Arc::clone(&sink) as Arc<dyn NotificationSink>),
                )
                .await;
            let events = &mut engine.events;

            // The quiet folder: described at once, no notice before it.
            let writer = quiet.clone();
            blocking(move || grid.put_child(&writer, "ours.txt", b"two").unwrap()).await;
            let change = next_change(events, Duration::from_secs(10))
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
            assert_eq!(notice.summary, "Shared folder changed");
            assert!(notice.body.contains("take turns"), "{notice:?}");
            let change = next_change(events, Duration::from_secs(20))
                .await
                .expect("the popular folder's change, described");
            let described_after = put_answered.elapsed();
            assert_eq!(change.cap_id, watching.cap_id);
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
            engine.shutdown().await;
        })
        .await;
    for reader in readers {
        reader.abort();
    }
    let _ = watching.caps.remove(&quiet_id);
}
