//! `tahoe-notifier watch` follows the cap store while it runs: a cap added with `caps add`
//! in another terminal is subscribed and its changes reported without restarting `watch`; a
//! removed one is unsubscribed and no longer reported. The real binary, a real grid, the
//! updates server's code beside each storage node and the session keyring (keyutils).
//!
//! Needs a session keyring (`keyctl session - cargo test …`); skipped with a message without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../notifier-core/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use local_grid::Format;
use serde_json::Value;
use support::InProcessServer;

fn keyutils_usable() -> bool {
    let shown = Command::new("keyctl")
        .args(["show", "@s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(shown, Ok(s) if s.success()) {
        println!("skipped: no session keyring; run under `keyctl session -`");
        return false;
    }
    true
}

fn cli(home: &Path, user_home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tahoe-notifier"));
    command
        .arg("--home")
        .arg(home)
        .args(["--keyring", "keyutils", "--json"])
        .env("HOME", user_home)
        .env_remove("TAHOE_NOTIFIER_HOME");
    command
}

/// Runs a short command with `stdin`, which must succeed; returns its JSON answer.
fn run(home: &Path, user_home: &Path, args: &[&str], stdin: &str) -> Value {
    let mut child = cli(home, user_home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

struct Watching {
    child: Child,
    events: mpsc::Receiver<Value>,
}

impl Watching {
    /// The first event within `wait` that `pick` accepts.
    fn wait_for(&self, wait: Duration, pick: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(event) if pick(&event) => return Some(event),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_picks_up_caps_added_and_removed_while_it_runs() {
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
    let grid_file = home.path().join("grid.json");
    std::fs::write(
        &grid_file,
        serde_json::json!({
            "name": "watch test grid",
            "gateway_url": grid.gateway_url(),
            "updates_servers": servers.iter().map(|s| s.nurl.to_string()).collect::<Vec<_>>(),
        })
        .to_string(),
    )
    .unwrap();
    let (h, u) = (home.path().to_owned(), user_home.path().to_owned());
    let grid_path = grid_file.to_str().unwrap().to_owned();
    tokio::task::spawn_blocking(move || {
        run(&h, &u, &["servers", "import", &grid_path], "");
        std::fs::remove_file(&grid_path).unwrap();

        let mut child = cli(&h, &u)
            .args(["watch", "--no-desktop"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    if sender.send(event).is_err() {
                        break;
                    }
                }
            }
        });
        let watching = Watching { child, events };
        let connected = watching.wait_for(Duration::from_secs(30), |e| {
            e["event"] == "server" && e["connected"] == true
        });
        assert!(connected.is_some(), "watch never connected to a server");

        // Added in "another terminal" while watch runs.
        let dircap = grid.create_mutable_dir(Format::Sdmf).unwrap();
        let added = run(
            &h,
            &u,
            &["caps", "add", "--label", "Added Later"],
            &format!("{dircap}\n"),
        );
        let id = added["id"]
            .as_str()
            .expect("caps add prints the id")
            .to_owned();
        let subscribed = watching.wait_for(Duration::from_secs(20), |e| {
            e["event"] == "cap-status" && e["id"] == id.as_str() && e["subscribed_on"] == 3
        });
        assert!(
            subscribed.is_some(),
            "the cap added while watch ran was not subscribed"
        );
        std::thread::sleep(Duration::from_secs(1));
        grid.put_child(&dircap, "late.txt", b"hello").unwrap();
        let changed = watching.wait_for(Duration::from_secs(20), |e| {
            e["event"] == "changed" && e["cap_id"] == id.as_str()
        });
        let changed = changed.expect("the added cap's change was reported");
        assert!(
            changed["summary"].as_str().unwrap().contains("Added Later"),
            "{changed}"
        );

        run(&h, &u, &["caps", "remove", &id], "");
        // Give the follower its turn, then change the removed cap: nothing may be reported.
        std::thread::sleep(Duration::from_secs(4));
        grid.put_child(&dircap, "after-removal.txt", b"bye")
            .unwrap();
        let reported = watching.wait_for(Duration::from_secs(6), |e| {
            e["event"] == "changed" && e["cap_id"] == id.as_str()
        });
        assert!(
            reported.is_none(),
            "a removed cap was still reported: {reported:?}"
        );
    })
    .await
    .unwrap();
    for server in &mut servers {
        server.stop().await;
    }
}
