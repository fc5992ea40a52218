//! The app when the keyring cannot be used, in its real webview (tauri-driver + WebKitWebDriver
//! under the test runner's Xvfb).
//!
//! 1. Locked: gnome-keyring on a private session bus with its login collection locked. The
//!    Watched page shows the "keyring is locked" banner, adding is off and refused with the
//!    same words, the tray's tooltip (the summary) says "keyring locked", the icon is offline,
//!    and nothing reaches the config. Screenshot: `docs/screenshots/keyring-locked.png`.
//! 2. Absent, then started: a private bus with no Secret Service shows "No keyring available";
//!    once gnome-keyring starts on that bus the app notices by itself, the banner goes and
//!    watching starts.
//!
//! Private buses without service activation keep the session's own keyring untouched and make
//! sure no unlock prompt can appear. Outside the project's test runner (`tests/run.sh`, which
//! sets `TAHOE_NOTIFIER_DESKTOP_SERVICES`) the test prints why and skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use local_grid::desktop::PrivateBus;
use serde_json::json;
use support::{invoke, screenshots_dir, text_of, wait_for, wait_port, wait_port_free, Guard};

const DRIVER_PORT: u16 = 4444;
const NATIVE_PORT: u16 = 4445;
const DIR_RO: &str =
    "URI:DIR2-RO:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

/// tauri-driver (and so the app) on `bus`, with the app's data under `home`.
async fn start_app(bus: &PrivateBus, home: &Path, log_dir: &Path) -> (Guard, Client) {
    wait_port_free(DRIVER_PORT, Duration::from_secs(20));
    wait_port_free(NATIVE_PORT, Duration::from_secs(20));
    let driver = Command::new("tauri-driver")
        .env("TAHOE_NOTIFIER_HOME", home)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(log_dir.join("driver.log")).unwrap())
        .stderr(std::fs::File::create(log_dir.join("app.log")).unwrap())
        .spawn()
        .expect("tauri-driver (cargo install tauri-driver --locked; tests/bootstrap.sh does)");
    let driver = Guard(driver);
    wait_port(DRIVER_PORT, Duration::from_secs(20));
    wait_port(NATIVE_PORT, Duration::from_secs(20));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "tauri:options".to_owned(),
        json!({"application": env!("CARGO_BIN_EXE_tahoe-notifier-app")}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{DRIVER_PORT}"))
        .await
        .expect("a WebDriver session with the app");
    (driver, client)
}

async fn banner_title(client: &Client) -> Option<String> {
    let banner = client.find(Locator::Css("#keyring-banner")).await.ok()?;
    if !banner.is_displayed().await.ok()? {
        return None;
    }
    text_of(client, "#keyring-title").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_keyring_is_a_clear_state_never_a_fallback() {
    if std::env::var_os("TAHOE_NOTIFIER_DESKTOP_SERVICES").is_none() {
        eprintln!(
            "keyring_locked: skipped: needs the project's test runner (tests/run.sh: Xvfb, \
             a session bus, dunst, an unlocked keyring; it sets TAHOE_NOTIFIER_DESKTOP_SERVICES)"
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();

    // 1. Locked.
    let locked_dir = work.path().join("locked");
    let bus = PrivateBus::start(&locked_dir);
    let _keyring = bus.start_keyring(&locked_dir);
    bus.lock_login_collection();
    let home = locked_dir.join("home");
    let _hosts = support::HostsOf::new(&home);
    let (mut driver, client) = start_app(&bus, &home, &locked_dir).await;
    wait_for("the locked banner", Duration::from_secs(30), || async {
        banner_title(&client)
            .await
            .filter(|t| t == "The keyring is locked")
    })
    .await;
    let message = text_of(&client, "#keyring-message").await.unwrap();
    assert!(message.contains("Unlock your login keyring"), "{message}");
    let add_enabled = client
        .find(Locator::Css("#show-add"))
        .await
        .unwrap()
        .is_enabled()
        .await
        .unwrap();
    assert!(
        !add_enabled,
        "adding must be off while the keyring is locked"
    );
    let status = invoke(&client, "app_status", json!({})).await;
    let summary = status["summary"].as_str().unwrap_or_default().to_owned();
    assert!(summary.contains("keyring locked"), "tooltip: {summary}");
    assert_eq!(status["tray_state"], "offline", "{status}");
    assert_eq!(status["keyring_problem"]["kind"], "locked", "{status}");
    // The page cannot store a cap behind the banner's back either.
    let refused = invoke(
        &client,
        "add_cap",
        json!({"text": DIR_RO, "label": "Docs", "keepWrite": false}),
    )
    .await;
    let error = refused["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("The keyring is locked: nothing was stored"),
        "{refused}"
    );
    assert!(!error.contains("rvbf3wlbpjwgh3wkcd7n2irdhi"), "{error}");
    let config = std::fs::read_to_string(home.join("config/config.json")).unwrap_or_default();
    assert!(!config.contains("rvbf3wlbpjwgh3wkcd7n2irdhi"), "{config}");
    assert!(!config.contains("\"label\":\"Docs\""), "{config}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join("keyring-locked.png"), png).unwrap();
    eprintln!("keyring_locked: locked: banner shown, tooltip {summary:?}, add refused: {error}");
    let _ = client.close().await;
    driver.stop();

    // 2. Absent, then started.
    let absent_dir = work.path().join("absent");
    let bus = PrivateBus::start(&absent_dir);
    let home = absent_dir.join("home");
    let _hosts = support::HostsOf::new(&home);
    let (mut driver, client) = start_app(&bus, &home, &absent_dir).await;
    wait_for("the no-keyring banner", Duration::from_secs(30), || async {
        banner_title(&client)
            .await
            .filter(|t| t == "No keyring available")
    })
    .await;
    let status = invoke(&client, "app_status", json!({})).await;
    let summary = status["summary"].as_str().unwrap_or_default().to_owned();
    assert!(summary.contains("no keyring"), "tooltip: {summary}");
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join("keyring-unavailable.png"), png).unwrap();
    let _keyring = bus.start_keyring(&absent_dir);
    wait_for(
        "the banner to go once the keyring runs",
        Duration::from_secs(30),
        || async {
            let status = invoke(&client, "app_status", json!({})).await;
            let displayed = client
                .find(Locator::Css("#keyring-banner"))
                .await
                .ok()?
                .is_displayed()
                .await
                .ok()?;
            (status["keyring_problem"].is_null() && !displayed).then_some(())
        },
    )
    .await;
    let status = invoke(&client, "app_status", json!({})).await;
    eprintln!(
        "keyring_locked: absent then started: now {:?}",
        status["summary"]
    );
    assert!(status["engine_error"].is_null(), "{status}");
    let _ = client.close().await;
    driver.stop();
}
