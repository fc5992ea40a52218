//! `tahoe-notifier watch` is the engine host (issue 13): one per home, guarded by its D-Bus
//! name; other commands reach it over that service (`status`, `pause`, `Quit`); caps added
//! or renamed by another command take effect while it runs; notifications are held back while
//! the user pauses them or dunst's Do-Not-Disturb is on (`dunstctl set-paused`), with one
//! summary when that ends; and a click on a notification (dunst's default action, invoked by
//! `dunstctl action`) reaches the host with no window open.
//!
//! The real binary, a real grid, the updates server's code beside each storage node, the
//! session keyring (keyutils) and dunst on the private session bus of
//! `tests/with-desktop-services.sh`; skipped with a message without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../notifier-core/tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{keyutils_usable, output, run, Watching};
use local_grid::desktop::{desktop_services, NotifyMonitor};
use local_grid::Format;
use notifier_core::host::client::HostClient;
use notifier_core::store::paths::Paths;
use support::InProcessServer;

fn dunstctl(args: &[&str]) {
    let status = Command::new("dunstctl").args(args).status().unwrap();
    assert!(status.success(), "dunstctl {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_is_the_one_engine_host_and_answers_on_the_session_bus() {
    if !keyutils_usable() {
        return;
    }
    if !desktop_services() {
        println!("skipped: needs tests/with-desktop-services.sh (dunst on a private bus)");
        return;
    }
    let grid = local_grid::shared().expect("a local grid");
    let mut servers = Vec::new();
    for node in grid.storage_nodes() {
        servers.push(InProcessServer::start(node).await);
    }
    let home = tempfile::tempdir().unwrap();
    let user_home = tempfile::tempdir().unwrap();
    let (h, u) = (home.path().to_owned(), user_home.path().to_owned());
    let nurls: Vec<String> = servers.iter().map(|s| s.nurl.to_string()).collect();
    let grid_path =
        common::write_grid_file(home.path(), "host test grid", grid.gateway_url(), &nurls);
    let folder = grid.create_mutable_dir(Format::Sdmf).unwrap();
    let later = grid.create_mutable_dir(Format::Sdmf).unwrap();
    let paths = Paths::under(&h);
    let monitor = NotifyMonitor::start().expect("a Notify monitor");

    let (watching, folder_id, later_id) = {
        let (h, u, folder, later) = (h.clone(), u.clone(), folder.clone(), later.clone());
        tokio::task::spawn_blocking(move || {
            run(&h, &u, &["servers", "import", &grid_path], "");
            std::fs::remove_file(&grid_path).unwrap();
            let added = run(
                &h,
                &u,
                &["caps", "add", "--label", "Host Folder"],
                &format!("{folder}\n"),
            );
            let folder_id = added["id"].as_str().unwrap().to_owned();
            let watching = Watching::start(&h, &u, &["--coalesce-window", "0"]);
            let subscribed = watching.wait_for(Duration::from_secs(30), |e| {
                e["event"] == "cap-status" && e["id"] == folder_id.as_str() && e["subscribed_on"] == 3
            });
            assert!(subscribed.is_some(), "watch never subscribed the folder");

            // One engine per home: a second host names the first and stops.
            let second = output(&h, &u, &["watch", "--no-desktop"], "");
            let said = String::from_utf8_lossy(&second.stderr).into_owned();
            assert!(!second.status.success(), "a second watch ran beside the first");
            assert!(
                said.contains("already") && said.contains("(tahoe-notifier)"),
                "the refusal names the running host: {said}"
            );

            // A cap added by another command is subscribed while watch runs.
            let added_at = Instant::now();
            let added = run(
                &h,
                &u,
                &["caps", "add", "--label", "Added While Running"],
                &format!("{later}\n"),
            );
            let later_id = added["id"].as_str().unwrap().to_owned();
            let subscribed = watching.wait_for(Duration::from_secs(20), |e| {
                e["event"] == "cap-status" && e["id"] == later_id.as_str() && e["subscribed_on"] == 3
            });
            assert!(subscribed.is_some(), "the added cap was never subscribed");
            println!(
                "measured: cap added by `caps add` subscribed on 3 servers {:.2} s after the command returned",
                added_at.elapsed().as_secs_f64()
            );
            // Renamed by another command: the next change carries the new name.
            run(&h, &u, &["caps", "rename", &later_id, "Renamed Folder"], "");
            (watching, folder_id, later_id)
        })
        .await
        .unwrap()
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    grid.put_child(&later, "renamed.txt", b"x").unwrap();
    let w = tokio::task::spawn_blocking(move || {
        let changed = watching.wait_for(Duration::from_secs(20), |e| {
            e["event"] == "changed" && e["cap_id"] == later_id.as_str()
        });
        let changed = changed.expect("the renamed cap's change was reported");
        assert!(
            changed["summary"]
                .as_str()
                .unwrap()
                .contains("Renamed Folder"),
            "the rename took effect: {changed}"
        );
        watching
    })
    .await
    .unwrap();

    // The live state over the bus: every server connected, the caps subscribed, no cap in it.
    let (h2, u2) = (h.clone(), u.clone());
    let status = tokio::task::spawn_blocking(move || output(&h2, &u2, &["status"], ""))
        .await
        .unwrap();
    let status_json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let running = &status_json["running"];
    assert_eq!(running["servers"].as_array().unwrap().len(), 3, "{running}");
    assert!(
        running["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "connected"),
        "{running}"
    );
    assert_eq!(running["caps"][&folder_id]["subscribed_on"], 3, "{running}");
    let client = HostClient::connect(&paths)
        .await
        .expect("the host's service");
    let state_json = serde_json::to_string(&client.state().await.unwrap()).unwrap();
    for secret in [&folder, &later] {
        assert!(
            !state_json.contains(secret.as_str()),
            "GetState returned a cap"
        );
        assert!(
            !String::from_utf8_lossy(&status.stdout).contains(secret.as_str()),
            "status printed a cap"
        );
    }

    // Paused by `pause`: the change is recorded and printed, not shown; resuming shows one
    // summary of what was held back.
    let (h2, u2) = (h.clone(), u.clone());
    let paused = tokio::task::spawn_blocking(move || run(&h2, &u2, &["pause", "hour"], ""))
        .await
        .unwrap();
    assert_eq!(paused["running_host"], true, "{paused}");
    assert!(client.state().await.unwrap().live.paused_until.is_some());
    let before = monitor.calls().len();
    grid.put_child(&folder, "while-paused.txt", b"p").unwrap();
    let (w, changed) = tokio::task::spawn_blocking(move || {
        let changed = w.wait_for(Duration::from_secs(20), |e| {
            e["event"] == "changed" && e["summary"].as_str().unwrap_or("").contains("while-paused")
        });
        (w, changed)
    })
    .await
    .unwrap();
    assert!(
        changed.is_some(),
        "the change while paused was not recorded"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        monitor.calls().len(),
        before,
        "a notification was shown while paused: {:?}",
        &monitor.calls()[before..]
    );
    let (h2, u2) = (h.clone(), u.clone());
    tokio::task::spawn_blocking(move || run(&h2, &u2, &["pause", "resume"], ""))
        .await
        .unwrap();
    assert!(
        monitor.wait_for(
            &["while notifications were paused"],
            Duration::from_secs(10)
        ),
        "no summary after the pause: {:?}",
        &monitor.calls()[before..]
    );

    // dunst's Do-Not-Disturb: held back, then one summary.
    dunstctl(&["set-paused", "true"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = monitor.calls().len();
    grid.put_child(&folder, "during-dnd.txt", b"d").unwrap();
    let w = tokio::task::spawn_blocking(move || {
        let changed = w.wait_for(Duration::from_secs(20), |e| {
            e["event"] == "changed" && e["summary"].as_str().unwrap_or("").contains("during-dnd")
        });
        assert!(
            changed.is_some(),
            "the change during Do-Not-Disturb was not recorded"
        );
        w
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during: Vec<String> = monitor.calls()[before..].to_vec();
    dunstctl(&["set-paused", "false"]);
    assert!(during.is_empty(), "shown during Do-Not-Disturb: {during:?}");
    assert!(
        monitor.wait_for(&["while Do Not Disturb was on"], Duration::from_secs(10)),
        "no summary after Do-Not-Disturb"
    );

    // A click on the notification of a change: dunst invokes its default action, and the host
    // (no window is open) asks for the window at that change.
    dunstctl(&["close-all"]);
    grid.put_child(&folder, "click-me.txt", b"c").unwrap();
    assert!(
        monitor.wait_for(&["click-me"], Duration::from_secs(20)),
        "the change was not shown"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    dunstctl(&["action", "0"]);
    let mut w = tokio::task::spawn_blocking(move || {
        let opened = w.wait_for(Duration::from_secs(10), |e| {
            e["event"] == "notice"
                && e["text"].as_str().unwrap_or("").contains("window")
                && e["text"].as_str().unwrap_or("").contains("change:")
        });
        assert!(opened.is_some(), "the click never reached the host");
        w
    })
    .await
    .unwrap();

    // Quit over the bus: watch ends cleanly and frees the name.
    client.quit().await.unwrap();
    let status = tokio::task::spawn_blocking(move || w.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "watch did not stop cleanly on Quit: {status:?}"
    );
    assert!(
        matches!(
            HostClient::connect(&paths).await,
            Err(notifier_core::host::client::ClientError::NotRunning)
        ),
        "the bus name is still owned after Quit"
    );
    for server in &mut servers {
        server.stop().await;
    }
}

/// "Until tomorrow morning" is 08:00 in the user's own time zone, found before threads exist.
#[test]
fn pause_until_tomorrow_is_eight_in_the_local_time_zone() {
    let home = tempfile::tempdir().unwrap();
    let user_home = tempfile::tempdir().unwrap();
    let output = common::cli(home.path(), user_home.path())
        .args(["pause", "tomorrow"])
        .env("TZ", "Asia/Kolkata")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let until = answer["paused_until"].as_i64().expect("a pause end");
    let until = time::OffsetDateTime::from_unix_timestamp(until).unwrap();
    // 08:00 in Kolkata (+05:30) is 02:30 UTC.
    assert_eq!((until.hour(), until.minute()), (2, 30), "{until}");
    assert_eq!(answer["running_host"], false);
    let preferences =
        std::fs::read_to_string(notifier_core::store::preferences::Preferences::path(
            Paths::under(home.path()).config_dir(),
        ))
        .unwrap();
    assert!(preferences.contains("paused_until"), "{preferences}");
}

/// A grid imported by another command while `watch` runs is connected without a restart: the
/// host starts its engine again over the new servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_imported_while_watch_runs_is_connected() {
    if !keyutils_usable() {
        return;
    }
    let grid = local_grid::shared().expect("a local grid");
    let mut servers = Vec::new();
    for node in grid.storage_nodes() {
        servers.push(InProcessServer::start(node).await);
    }
    let home = tempfile::tempdir().unwrap();
    let user_home = tempfile::tempdir().unwrap();
    let (h, u) = (home.path().to_owned(), user_home.path().to_owned());
    let nurls: Vec<String> = servers.iter().map(|s| s.nurl.to_string()).collect();
    let grid_path = common::write_grid_file(home.path(), "late grid", grid.gateway_url(), &nurls);
    tokio::task::spawn_blocking(move || {
        let watching = Watching::start(&h, &u, &["--no-desktop", "--no-service"]);
        let started = watching.wait_for(Duration::from_secs(20), |e| e["event"] == "notice");
        assert!(started.is_some(), "watch said nothing");
        run(&h, &u, &["servers", "import", &grid_path], "");
        let imported = Instant::now();
        let connected = watching.wait_for(Duration::from_secs(20), |e| {
            e["event"] == "server" && e["connected"] == true
        });
        assert!(connected.is_some(), "the imported grid's servers were never connected");
        println!(
            "measured: first server of a grid imported while watch ran connected {:.2} s after the import",
            imported.elapsed().as_secs_f64()
        );
    })
    .await
    .unwrap();
    for server in &mut servers {
        server.stop().await;
    }
}

/// Records `Notify` calls and the daemon's replies to them, to learn the id dunst gave each
/// notification (what a daemon's `ActionInvoked` names).
struct NotifyIds {
    child: std::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifyIds {
    fn start() -> NotifyIds {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("monitor.log");
        let child = Command::new("dbus-monitor")
            .args([
                "--session",
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
                "type='method_return'",
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        NotifyIds {
            child,
            log,
            _dir: dir,
        }
    }

    /// The id of the last notification whose call contains `needle`, once the daemon answered.
    fn id_of(&self, needle: &str, wait: Duration) -> Option<u32> {
        let deadline = Instant::now() + wait;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let messages: Vec<&str> = text.split("\nmethod ").collect();
            let call = messages
                .iter()
                .rev()
                .find(|m| m.contains("member=Notify") && m.contains(needle));
            let serial = call.and_then(|call| {
                let header = call.lines().next()?;
                let sender = header
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("sender="))?;
                let serial = header
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("serial="))?;
                Some((sender.to_owned(), serial.to_owned()))
            });
            if let Some((sender, serial)) = serial {
                let reply = messages.iter().find(|m| {
                    let header = m.lines().next().unwrap_or("");
                    header.starts_with("return")
                        && header.contains(&format!("destination={sender}"))
                        && header.contains(&format!("reply_serial={serial}"))
                });
                if let Some(id) = reply.and_then(|r| {
                    r.lines()
                        .nth(1)?
                        .trim()
                        .strip_prefix("uint32 ")?
                        .parse()
                        .ok()
                }) {
                    return Some(id);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NotifyIds {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's `ActionInvoked`, as dunst sends it when the user picks an action.
fn invoke(id: u32, action: &str) {
    let status = Command::new("dbus-send")
        .args([
            "--session",
            "--type=signal",
            "/org/freedesktop/Notifications",
            "org.freedesktop.Notifications.ActionInvoked",
            &format!("uint32:{id}"),
            &format!("string:{action}"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

/// "Mark read" and "Mute for 2 hours" on a notification do what they say with no window open:
/// the engine host handles them (issue 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_actions_work_with_no_window_open() {
    if !keyutils_usable() {
        return;
    }
    if !desktop_services() {
        println!("skipped: needs tests/with-desktop-services.sh (dunst on a private bus)");
        return;
    }
    let grid = local_grid::shared().expect("a local grid");
    let mut servers = Vec::new();
    for node in grid.storage_nodes() {
        servers.push(InProcessServer::start(node).await);
    }
    let home = tempfile::tempdir().unwrap();
    let user_home = tempfile::tempdir().unwrap();
    let folder = grid.create_mutable_dir(Format::Sdmf).unwrap();
    let (h, u) = (home.path().to_owned(), user_home.path().to_owned());
    let nurls: Vec<String> = servers.iter().map(|s| s.nurl.to_string()).collect();
    let grid_path =
        common::write_grid_file(home.path(), "actions grid", grid.gateway_url(), &nurls);
    let ids = NotifyIds::start();
    let paths = Paths::under(&h);
    let (watching, cap_id) = {
        let (h, u, folder) = (h.clone(), u.clone(), folder.clone());
        tokio::task::spawn_blocking(move || {
            run(&h, &u, &["servers", "import", &grid_path], "");
            let added = run(
                &h,
                &u,
                &["caps", "add", "--label", "Action Folder"],
                &format!("{folder}\n"),
            );
            let cap_id = added["id"].as_str().unwrap().to_owned();
            let watching = Watching::start(&h, &u, &["--coalesce-window", "0"]);
            let subscribed = watching.wait_for(Duration::from_secs(30), |e| {
                e["event"] == "cap-status" && e["id"] == cap_id.as_str() && e["subscribed_on"] == 3
            });
            assert!(subscribed.is_some(), "never subscribed");
            (watching, cap_id)
        })
        .await
        .unwrap()
    };
    let client = HostClient::connect(&paths)
        .await
        .expect("the host's service");

    // Mark read.
    grid.put_child(&folder, "read-me.txt", b"r").unwrap();
    let id = tokio::task::spawn_blocking(move || {
        ids.id_of("read-me", Duration::from_secs(20))
            .map(|id| (id, ids))
    })
    .await
    .unwrap();
    let (id, ids) = id.expect("dunst's id for the notification");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.state().await.unwrap().unread_changes == 0 {
        assert!(Instant::now() < deadline, "the change was never unread");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    invoke(id, "mark-read");
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.state().await.unwrap().unread_changes != 0 {
        assert!(
            Instant::now() < deadline,
            "Mark read left the change unread"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Mute for 2 hours: saved, and the next change is recorded but not shown.
    grid.put_child(&folder, "mute-me.txt", b"m").unwrap();
    let found = tokio::task::spawn_blocking(move || {
        ids.id_of("mute-me", Duration::from_secs(20))
            .map(|id| (id, ids))
    })
    .await
    .unwrap();
    let (id, ids) = found.expect("dunst's id for the second notification");
    invoke(id, "mute-2h");
    let preferences = notifier_core::store::preferences::Preferences::path(paths.config_dir());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let saved = std::fs::read_to_string(&preferences).unwrap_or_default();
        if saved.contains(&cap_id) && saved.contains("muted_until") {
            break;
        }
        assert!(Instant::now() < deadline, "the mute was not saved: {saved}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    grid.put_child(&folder, "while-muted.txt", b"w").unwrap();
    let w = tokio::task::spawn_blocking(move || {
        let changed = watching.wait_for(Duration::from_secs(20), |e| {
            e["event"] == "changed" && e["summary"].as_str().unwrap_or("").contains("while-muted")
        });
        assert!(changed.is_some(), "the change while muted was not recorded");
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            ids.id_of("while-muted", Duration::from_millis(100))
                .is_none(),
            "a change of a muted cap was shown"
        );
        watching
    })
    .await
    .unwrap();
    drop(w);
    for server in &mut servers {
        server.stop().await;
    }
}
