//! The first run with a grid file, in the real webview: nothing set up, no Tahoe node at
//! ~/.tahoe, so the window opens on the welcome page; "Choose the file…" opens the native GTK
//! file picker (Tauri's dialog plugin), the test types the file's path into it as a user would
//! (xdotool), and the grid is imported without a path ever being typed into the page. The
//! secrets of the file reach the keyring only: the page, the config and the app's output hold
//! none. Under the test runner's Xvfb, session bus, dunst and unlocked gnome-keyring.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore, SecretStore};
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;
use serde_json::json;
use support::{
    click, screenshot_window, screenshots_dir, start_app, start_updates_servers, text_of, wait_for,
    wait_window,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_file_opened_with_the_native_picker() {
    if std::env::var_os("TAHOE_NOTIFIER_DESKTOP_SERVICES").is_none() {
        eprintln!("first_run: skipped: needs the project's test runner (tests/run.sh)");
        return;
    }
    let grid = local_grid::shared().expect("a real Tahoe grid");
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let _hosts = support::HostsOf::new(&home);
    let user_home = work.path().join("user");
    std::fs::create_dir_all(&user_home).unwrap();
    let (_servers, nurls) = start_updates_servers(grid, work.path(), "info");
    let grid_file = user_home.join("Downloads").join("bobs-grid.json");
    std::fs::create_dir_all(grid_file.parent().unwrap()).unwrap();
    std::fs::write(
        &grid_file,
        json!({
            "name": "Bob's grid",
            "gateway_url": grid.gateway_url(),
            "updates_servers": nurls,
        })
        .to_string(),
    )
    .unwrap();

    let (_driver, client) = start_app(
        work.path(),
        &[("TAHOE_NOTIFIER_HOME", &home), ("HOME", &user_home)],
    )
    .await;
    wait_for("the welcome page", Duration::from_secs(20), || async {
        text_of(&client, "#welcome-node-path")
            .await
            .filter(|t| t.contains("No Tahoe node folder found"))
            .map(|_| ())
    })
    .await;
    assert!(
        !client
            .find(Locator::Css("#welcome-use-node"))
            .await
            .unwrap()
            .is_enabled()
            .await
            .unwrap(),
        "no node, so no gateway to use"
    );
    std::fs::write(
        screenshots_dir().join("welcome-no-node.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    click(&client, "#welcome-open-file").await;
    let dialog =
        tokio::task::spawn_blocking(|| wait_window("Open the grid file", Duration::from_secs(20)))
            .await
            .unwrap()
            .expect("the native file picker opened");
    tokio::time::sleep(Duration::from_millis(800)).await;
    // GTK's file chooser: Ctrl+L opens its location field; the path, then Enter.
    let typed = |args: &[&str]| {
        assert!(
            Command::new("xdotool")
                .args(args)
                .status()
                .unwrap()
                .success(),
            "xdotool {args:?}"
        );
    };
    typed(&["windowsize", &dialog, "900", "560"]);
    typed(&["windowfocus", "--sync", &dialog]);
    typed(&["key", "--window", &dialog, "ctrl+l"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    typed(&["type", "--delay", "20", &grid_file.display().to_string()]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    screenshot_window(&dialog, "welcome-file-picker.png");
    typed(&["key", "Return"]);

    wait_for(
        "the Watched page after the import",
        Duration::from_secs(30),
        || async {
            let page = client.find(Locator::Css("#page-watched")).await.ok()?;
            page.is_displayed().await.ok()?.then_some(())
        },
    )
    .await;
    let secrets: Arc<dyn SecretStore> =
        Arc::new(KeyringSecretStore::new(KeyringBackend::SecretService));
    let store = ServerStore::new(ConfigFile::new(Paths::under(&home).config_file()), secrets);
    let grids = store.grids().unwrap();
    assert_eq!(grids.len(), 1, "the grid was imported");
    assert_eq!(grids[0].name, "Bob's grid");
    assert_eq!(store.list().unwrap().len(), nurls.len());
    wait_for("the servers connected", Duration::from_secs(30), || async {
        text_of(&client, "#status-line")
            .await
            .filter(|t| t.starts_with(&format!("all {} servers connected", nurls.len())))
            .map(|_| ())
    })
    .await;

    // The file's swissnums went to the keyring only: not to the page, the config or the log.
    let source = client.source().await.unwrap();
    client.close().await.unwrap();
    let config = std::fs::read_to_string(Paths::under(&home).config_file()).unwrap();
    let log = std::fs::read_to_string(work.path().join("app.log")).unwrap_or_default();
    for nurl in &nurls {
        let swissnum = nurl.rsplit('/').next().unwrap().trim_end_matches("#v=1");
        for (place, text) in [
            ("the page", &source),
            ("the config", &config),
            ("the app's output", &log),
        ] {
            assert!(!text.contains(swissnum), "a swissnum in {place}");
        }
    }
    eprintln!(
        "first_run: {dialog} was the picker; the grid came in with {} servers",
        nurls.len()
    );
}
