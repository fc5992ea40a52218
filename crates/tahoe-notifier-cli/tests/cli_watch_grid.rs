//! `tahoe-notifier watch` follows the cap store while it runs: a cap added with `caps add`
//! in another terminal is subscribed and its changes reported without restarting `watch`; a
//! removed one is unsubscribed and no longer reported. The real binary, a real grid, the
//! updates server's code beside each storage node and the session keyring (keyutils).
//!
//! Needs a session keyring (`keyctl session - cargo test …`); skipped with a message without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../notifier-core/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use common::{keyutils_usable, run, Watching};
use local_grid::Format;
use support::InProcessServer;

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
    let (h, u) = (home.path().to_owned(), user_home.path().to_owned());
    let nurls: Vec<String> = servers.iter().map(|s| s.nurl.to_string()).collect();
    let grid_path =
        common::write_grid_file(home.path(), "watch test grid", grid.gateway_url(), &nurls);
    tokio::task::spawn_blocking(move || {
        run(&h, &u, &["servers", "import", &grid_path], "");
        std::fs::remove_file(&grid_path).unwrap();

        let watching = Watching::start(&h, &u, &["--no-desktop"]);
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
