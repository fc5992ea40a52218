//! magic-folder in the tray app, end to end in its real webview: a real Tahoe grid with
//! `tahoe-updates-server` beside each storage node, two real magic-folder 24.3.0 daemons
//! (Alice and Bob) sharing a folder through a local magic-wormhole mailbox, and the app
//! started by tauri-driver + WebKitWebDriver under the test runner's Xvfb, session bus, dunst
//! and unlocked gnome-keyring.
//!
//! Steps: a wrong directory → the page's error; Bob's daemon linked through Settings → the
//! folder listed with alice watched and "you are bob", the poll-interval suggestion shown;
//! Alice writes a file → it arrives in Bob's folder (the app's bridge told Bob's daemon to
//! poll; the page shows it) and exactly one desktop Notify names alice and the file; a
//! screenshot `docs/screenshots/settings-magic-folder.png`; Bob's daemon stopped → Alice's next
//! file shows the failed poll request on the folder's row, and the 1-hour
//! poll applied from the page once confirmed; "only conflicts" toggled; unlink
//! → the list is empty and the config holds no link. Neither a cap nor the daemon's API token
//! is in the page, the config file or the app's log.
//!
//! Outside the project's test runner (`tests/run.sh`, which sets
//! `TAHOE_NOTIFIER_DESKTOP_SERVICES`) the test prints why and skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use local_grid::magic_folder::{MagicFolderDaemon, WormholeMailbox};
use local_grid::Grid;
use notifier_core::grid::description::parse_grid_file;
use notifier_core::magic_folder::linked_folders;
use notifier_core::store::caps::CapStore;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore, SecretStore};
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;
use serde_json::json;
use support::{
    click, free_port, invoke, start_updates_servers, text_of, wait_for, wait_port, Guard,
    NotifyMonitor,
};

const FOLDER: &str = "Shared";

async fn type_into(client: &Client, css: &str, text: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Prints the app's log when the test fails.
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            eprintln!("magic_folder_app: app log:\n{log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_bobs_daemon_in_settings_and_hear_of_alices_file() {
    if std::env::var_os("TAHOE_NOTIFIER_DESKTOP_SERVICES").is_none() {
        eprintln!(
            "magic_folder_app: skipped: needs the project's test runner (tests/run.sh: Xvfb, a \
             session bus, dunst, an unlocked keyring; it sets TAHOE_NOTIFIER_DESKTOP_SERVICES)"
        );
        return;
    }
    let grid: &'static Grid = local_grid::shared().expect("a real Tahoe grid");
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let _hosts = support::HostsOf::new(&home);

    // Alice's and Bob's daemons share "Shared": Alice made it (scanning every second, so her
    // own scan is quick), Bob joined with magic-folder's defaults (poll every 60 s).
    let started = Instant::now();
    let (mailbox, alice, mut bob) = tokio::task::spawn_blocking({
        let base = work.path().to_owned();
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
    println!(
        "two magic-folder daemons sharing {FOLDER:?} after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The notifier's home with the grid imported.
    let (servers, nurls) = start_updates_servers(grid, work.path(), "info");
    let paths = Paths::under(&home);
    paths.ensure_dirs().unwrap();
    let secrets: Arc<dyn SecretStore> =
        Arc::new(KeyringSecretStore::new(KeyringBackend::SecretService));
    let grid_file = json!({
        "name": "test grid",
        "gateway_url": grid.gateway_url(),
        "updates_servers": nurls,
    })
    .to_string();
    ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets))
        .import_grid(&parse_grid_file(&grid_file).unwrap())
        .unwrap();

    let monitor = NotifyMonitor::start().expect(
        "run under tests/with-desktop-services.sh: a notification daemon on the session bus",
    );
    let app_log = work.path().join("app.log");
    let _log_on_panic = LogOnPanic(app_log.clone());
    let (driver_port, native_port) = (free_port(), free_port());
    let driver = Command::new("tauri-driver")
        .args(["--port", &driver_port.to_string()])
        .args(["--native-port", &native_port.to_string()])
        .env("TAHOE_NOTIFIER_HOME", &home)
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(work.path().join("driver.log")).unwrap())
        .stderr(std::fs::File::create(&app_log).unwrap())
        .spawn()
        .expect("tauri-driver (cargo install tauri-driver --locked; tests/bootstrap.sh does)");
    let _driver = Guard(driver);
    wait_port(driver_port, Duration::from_secs(20));
    wait_port(native_port, Duration::from_secs(20));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "tauri:options".to_owned(),
        json!({"application": env!("CARGO_BIN_EXE_tahoe-notifier-app")}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session with the app");
    wait_for("the page", Duration::from_secs(20), || async {
        client
            .find(Locator::Css("body[data-ready=true]"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    // Settings: nothing linked yet.
    click(&client, "#tab-settings").await;
    wait_for(
        "the empty magic-folder list",
        Duration::from_secs(10),
        || async {
            text_of(&client, "#mf-list .empty")
                .await
                .filter(|t| t.contains("No folder linked"))
        },
    )
    .await;
    let placeholder = client
        .find(Locator::Css("#mf-config"))
        .await
        .unwrap()
        .attr("placeholder")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        placeholder.ends_with("/magic-folder"),
        "placeholder: {placeholder}"
    );

    // A directory that is not magic-folder's: the page says so.
    type_into(&client, "#mf-config", work.path().to_str().unwrap()).await;
    click(&client, "#mf-link").await;
    let refused = wait_for("the refusal", Duration::from_secs(15), || async {
        text_of(&client, "#mf-feedback.error")
            .await
            .filter(|t| !t.is_empty())
    })
    .await;
    println!("wrong directory: {refused}");
    assert!(
        refused.contains("not a magic-folder config directory"),
        "{refused}"
    );

    // Bob's daemon, linked through the page.
    type_into(&client, "#mf-config", bob.config_dir().to_str().unwrap()).await;
    click(&client, "#mf-link").await;
    let linked = wait_for("the link", Duration::from_secs(60), || async {
        text_of(&client, "#mf-feedback.ok")
            .await
            .filter(|t| t.starts_with("Linked"))
    })
    .await;
    println!("link: {linked}");
    // The page redraws the list on every event: the row is read in one script, at once.
    let row = wait_for("the linked folder", Duration::from_secs(30), || async {
        let row = client
            .execute(
                "const r = document.querySelector('.mf-row'); if (!r) return null; \
                 const t = (c) => r.querySelector(c)?.textContent ?? ''; \
                 return {folder: t('.mf-folder'), own: t('.mf-own'), \
                         participants: t('.mf-participants'), saved: t('.mf-saved'), \
                         command: t('.mf-command')};",
                vec![],
            )
            .await
            .ok()?;
        (row["participants"].as_str()?.contains("alice") && !row["command"].as_str()?.is_empty())
            .then_some(row)
    })
    .await;
    assert_eq!(row["participants"], json!("Watching alice"));
    assert_eq!(row["folder"], json!(FOLDER));
    assert_eq!(row["own"], json!("you are bob"));
    let (saving, command) = (
        row["saved"].as_str().unwrap().to_owned(),
        row["command"].as_str().unwrap().to_owned(),
    );
    println!("suggestion: saving {saving}; {command}");
    assert!(
        command.contains("poll-interval") && command.contains("--set 3600"),
        "{command}"
    );

    // The engine (restarted by the link) subscribes alice's personal directory everywhere.
    wait_for(
        "alice's directory subscribed on 3 servers",
        Duration::from_secs(60),
        || async {
            let caps = invoke(&client, "list_caps", json!({})).await;
            caps.as_array()?
                .iter()
                .any(|c| c["label"] == json!("alice in Shared") && c["subscribed_on"] == json!(3))
                .then_some(())
        },
    )
    .await;

    // Alice writes a file: it reaches Bob's folder well before his 60-second poll, and one
    // notification names alice and the file.
    let relpath = "docs/report.txt";
    let contents = b"figures for the app\n";
    std::fs::create_dir_all(alice.folder().join("docs")).unwrap();
    let written = Instant::now();
    std::fs::write(alice.folder().join(relpath), contents).unwrap();
    let arrived = wait_for(
        "the file in Bob's folder",
        Duration::from_secs(120),
        || async {
            (std::fs::read(bob.folder().join(relpath)).ok().as_deref() == Some(&contents[..]))
                .then(|| written.elapsed())
        },
    )
    .await;
    println!(
        "{relpath} arrived in Bob's folder {:.2} s after Alice wrote it",
        arrived.as_secs_f64()
    );
    let activity = wait_for(
        "the bridge's poll on the page",
        Duration::from_secs(30),
        || async {
            text_of(&client, ".mf-row .mf-activity")
                .await
                .filter(|t| t.contains("fetched alice's change"))
        },
    )
    .await;
    println!("page: {activity}");
    wait_for("the notification", Duration::from_secs(30), || async {
        (monitor.calls_containing(&["alice", relpath]) >= 1).then_some(())
    })
    .await;
    // A second notification (the engine's own, or a duplicate) would come within a moment.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(monitor.calls_containing(&["alice", relpath]), 1);
    assert_eq!(
        monitor.calls_containing(&["report.txt"]),
        1,
        "another notification named the file (the engine's own?)"
    );

    client
        .execute(
            "document.getElementById('mf-card').scrollIntoView({block: 'start'});",
            vec![],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let png = client.screenshot().await.unwrap();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("settings-magic-folder.png"), png).unwrap();

    // No cap and no API token on the page or in the config file.
    let source = client.source().await.unwrap();
    let config_text = std::fs::read_to_string(paths.config_file()).unwrap();
    let token = bob.token().unwrap();
    // Each linked cap's key (the part after `URI:DIR2-RO:`), read back from the keyring.
    let cap_store = CapStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
    let cap_keys: Vec<String> = linked_folders(&ConfigFile::new(paths.config_file()))
        .unwrap()
        .iter()
        .flat_map(|link| link.cap_ids().map(str::to_owned).collect::<Vec<_>>())
        .map(|id| {
            let cap = cap_store.get_cap(&id).unwrap().to_string();
            cap.split(':').nth(2).unwrap().to_owned()
        })
        .collect();
    assert_eq!(cap_keys.len(), 2, "the collective and alice");
    for (what, text) in [("the page", &source), ("the config file", &config_text)] {
        for key in &cap_keys {
            assert!(!text.contains(key.as_str()), "a cap in {what}");
        }
        assert!(!text.contains(&token), "the API token in {what}");
    }

    // Bob's daemon stopped: the page offers the 1-hour poll, applied once confirmed.
    tokio::task::block_in_place(|| bob.stop());
    // Alice writes while Bob's daemon is down: the bridge cannot ask it to poll, and the
    // folder's row says so in red.
    std::fs::write(alice.folder().join("while-bob-is-down.txt"), b"later\n").unwrap();
    let failed = wait_for(
        "the failed poll on the page",
        Duration::from_secs(60),
        || async {
            text_of(&client, ".mf-row .mf-activity.failed")
                .await
                .filter(|t| t.contains("could not ask the daemon"))
        },
    )
    .await;
    println!("page, Bob's daemon down: {failed}");
    click(&client, "#tab-settings").await;
    wait_for("the apply button", Duration::from_secs(20), || async {
        client
            .find(Locator::Css(".mf-row .mf-apply"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    click(&client, ".mf-row .mf-apply").await;
    click(&client, "#confirm-ok").await;
    let applied = wait_for(
        "the poll interval applied",
        Duration::from_secs(20),
        || async {
            text_of(&client, "#mf-feedback.ok")
                .await
                .filter(|t| t.contains("polls every hour"))
        },
    )
    .await;
    println!("apply: {applied}");
    assert!(applied.contains("it was every 60 s"), "{applied}");

    // "Only conflicts", then unlink.
    click(&client, ".mf-row .mf-conflicts").await;
    wait_for("conflicts only stored", Duration::from_secs(10), || async {
        let links = linked_folders(&ConfigFile::new(paths.config_file())).ok()?;
        links.first()?.conflicts_only.then_some(())
    })
    .await;
    click(&client, ".mf-row .mf-unlink").await;
    click(&client, "#confirm-ok").await;
    wait_for("the folder unlinked", Duration::from_secs(20), || async {
        text_of(&client, "#mf-list .empty")
            .await
            .filter(|t| t.contains("No folder linked"))
    })
    .await;
    assert!(linked_folders(&ConfigFile::new(paths.config_file()))
        .unwrap()
        .is_empty());
    let caps = invoke(&client, "list_caps", json!({})).await;
    assert_eq!(caps.as_array().map(Vec::len), Some(0), "{caps}");

    let log = std::fs::read_to_string(&app_log).unwrap_or_default();
    for key in &cap_keys {
        assert!(!log.contains(key.as_str()), "a cap in the app's log");
    }
    assert!(!log.contains(&token), "the API token in the app's log");
    let _ = client.close().await;
    drop((servers, alice, bob, mailbox, monitor));
}
