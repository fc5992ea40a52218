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

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use local_grid::Grid;
use notifier_core::caps::CapStore;
use notifier_core::config::ConfigFile;
use notifier_core::keyring_store::{KeyringBackend, KeyringSecretStore, SecretStore};
use notifier_core::magic_folder::linked_folders;
use notifier_core::paths::Paths;
use notifier_core::servers::{parse_grid_file, ServerStore};
use serde_json::{json, Value};

const FOLDER: &str = "Shared";

/// A child process stopped (SIGTERM, then SIGKILL) and reaped when dropped.
struct Guard {
    name: &'static str,
    child: Child,
}

impl Guard {
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        drop(self.child.stdin.take());
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("magic_folder_app: {} needed SIGKILL", self.name);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tahoe-notifier-app"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The updates server's binary, built if this test runs alone (`cargo test -p`).
fn updates_server_binary() -> PathBuf {
    let path = target_dir().join("tahoe-updates-server");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "updates-server", "--bins"])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build tahoe-updates-server");
    }
    path
}

/// A port nothing listens on now: tauri-driver's own defaults (4444, 4445) may be taken by
/// another run of the app's tests on the same machine.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_updates_servers(grid: &Grid, work: &Path) -> (Vec<Guard>, Vec<String>) {
    let server_bin = updates_server_binary();
    let mut guards = Vec::new();
    let mut nurls = Vec::new();
    for node in grid.storage_nodes() {
        let nurl_file = work.join(format!("{}.nurl", node.name));
        let child = Command::new(&server_bin)
            .args(["run", "--listen", "127.0.0.1:0", "--exit-when-stdin-closes"])
            .arg("--node-dir")
            .arg(&node.dir)
            .arg("--nurl-file")
            .arg(&nurl_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join(format!("{}.server.log", node.name))).unwrap())
            .spawn()
            .unwrap();
        guards.push(Guard {
            name: "tahoe-updates-server",
            child,
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&nurl_file) {
                if !text.trim().is_empty() {
                    nurls.push(text.trim().to_owned());
                    break;
                }
            }
            assert!(Instant::now() < deadline, "updates server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (guards, nurls)
}

/// Records the Notify calls on the session bus.
struct NotifyMonitor {
    _guard: Guard,
    log: PathBuf,
}

impl NotifyMonitor {
    fn start(dir: &Path) -> Self {
        let log = dir.join("notify.log");
        let child = Command::new("dbus-monitor")
            .args([
                "--session",
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Self {
            _guard: Guard {
                name: "dbus-monitor",
                child,
            },
            log,
        }
    }

    fn calls_containing(&self, needles: &[&str]) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.split("method call")
            .filter(|call| {
                call.contains("member=Notify") && needles.iter().all(|n| call.contains(n))
            })
            .count()
    }
}

/// A running `magic-folder run` daemon with its config directory and local folder.
struct Daemon {
    config: PathBuf,
    folder: PathBuf,
    bin: PathBuf,
    child: Child,
}

impl Daemon {
    /// `magic-folder init` on the grid's gateway node, then `magic-folder run`.
    fn start(base: &Path, name: &str, grid: &Grid, mailbox_url: &str) -> Daemon {
        let bin = grid.tahoe_bin().with_file_name("magic-folder");
        assert!(
            bin.is_file(),
            "{} missing: run tests/bootstrap-python.sh (installs magic-folder 24.3.0)",
            bin.display()
        );
        let config = base.join(format!("{name}-config"));
        let folder = base.join(format!("{name}-folder"));
        std::fs::create_dir_all(&folder).unwrap();
        let init = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args(["init", "--listen-endpoint", "tcp:0:interface=127.0.0.1"])
            .arg("--node-directory")
            .arg(grid.gateway_dir())
            .arg("--mailbox")
            .arg(mailbox_url)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "magic-folder init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let log = std::fs::File::create(base.join(format!("{name}.log"))).unwrap();
        // The daemon stops when its stdin closes: the pipe is held until the test drops it.
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Daemon {
            config,
            folder,
            bin,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !std::fs::read_to_string(daemon.config.join("api_client_endpoint"))
            .unwrap_or_default()
            .starts_with("tcp:")
        {
            assert!(
                Instant::now() < deadline,
                "the magic-folder daemon {name} did not start within 90 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // Invites are an experimental feature of 24.3.0, off by default.
        daemon.cli(&["set-config", "--enable", "invites"]);
        daemon
    }

    fn cli(&self, args: &[&str]) {
        let out = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "magic-folder {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.config.join("api_token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    async fn api(&self, path: &str, body: Value) -> Value {
        let endpoint = std::fs::read_to_string(self.config.join("api_client_endpoint")).unwrap();
        let port = endpoint.trim().rsplit(':').next().unwrap().to_owned();
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(self.token())
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Invites `guest` (read-write) into our folder and has it accept through the mailbox.
    async fn invite(&self, guest: &Daemon, name: &str) {
        let invite = self
            .api(
                &format!("/experimental/magic-folder/{FOLDER}/invite"),
                json!({"participant-name": name, "mode": "read-write"}),
            )
            .await;
        let code = invite["wormhole-code"].as_str().unwrap();
        let joined = guest
            .api(
                &format!("/experimental/magic-folder/{FOLDER}/join"),
                json!({
                    "invite-code": code,
                    "local-directory": guest.folder,
                    "author": name,
                    "poll-interval": 60,
                    "scan-interval": 60,
                }),
            )
            .await;
        assert_eq!(
            joined["success"],
            json!(true),
            "{name} did not join: {joined}"
        );
    }
}

impl Daemon {
    /// Stops the daemon cleanly (it writes `not running` into `api_client_endpoint`).
    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A magic-wormhole mailbox server on loopback, for magic-folder's invites.
fn start_mailbox(base: &Path, grid: &Grid) -> (Guard, String) {
    let bin = grid.tahoe_bin().with_file_name("twist");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&bin)
        .args([
            "wormhole-mailbox",
            "--port",
            &format!("tcp:{port}:interface=127.0.0.1"),
            "--channel-db",
        ])
        .arg(base.join("relay.sqlite"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(base.join("mailbox.log")).unwrap())
        .spawn()
        .unwrap();
    let guard = Guard {
        name: "mailbox",
        child,
    };
    wait_port(port, Duration::from_secs(60));
    (guard, format!("ws://127.0.0.1:{port}/v1"))
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn invoke(client: &Client, command: &str, args: Value) -> Value {
    client
        .execute_async(
            "const [cmd, args, done] = arguments; \
             window.__TAURI__.core.invoke(cmd, args).then(done, e => done({error: String(e)}));",
            vec![json!(command), args],
        )
        .await
        .unwrap()
}

/// Clicks `css`, finding it again if the page redrew it in between (the lists are redrawn on
/// every event).
async fn click(client: &Client, css: &str) {
    let mut last_error = String::new();
    for _ in 0..20 {
        match client.find(Locator::Css(css)).await {
            Ok(element) => match element.click().await {
                Ok(()) => return,
                Err(e) => last_error = e.to_string(),
            },
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    panic!("cannot click {css}: {last_error}");
}

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

    // Alice's and Bob's daemons share "Shared": Alice made it (scanning every second, so her
    // own scan is quick), Bob joined with magic-folder's defaults (poll every 60 s).
    let started = Instant::now();
    let (mailbox, alice, mut bob) = tokio::task::spawn_blocking({
        let base = work.path().to_owned();
        move || {
            let (mailbox, url) = start_mailbox(&base, grid);
            let alice = Daemon::start(&base, "alice", grid, &url);
            let bob = Daemon::start(&base, "bob", grid, &url);
            let alice_folder = alice.folder.to_str().unwrap().to_owned();
            alice.cli(&[
                "add",
                "--name",
                FOLDER,
                "--author",
                "alice",
                "--scan-interval",
                "1",
                &alice_folder,
            ]);
            (mailbox, alice, bob)
        }
    })
    .await
    .unwrap();
    alice.invite(&bob, "bob").await;
    println!(
        "two magic-folder daemons sharing {FOLDER:?} after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The notifier's home with the grid imported.
    let (servers, nurls) = start_updates_servers(grid, work.path());
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

    let monitor = NotifyMonitor::start(work.path());
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
    let _driver = Guard {
        name: "tauri-driver",
        child: driver,
    };
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
    type_into(&client, "#mf-config", bob.config.to_str().unwrap()).await;
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
    std::fs::create_dir_all(alice.folder.join("docs")).unwrap();
    let written = Instant::now();
    std::fs::write(alice.folder.join(relpath), contents).unwrap();
    let arrived = wait_for(
        "the file in Bob's folder",
        Duration::from_secs(120),
        || async {
            (std::fs::read(bob.folder.join(relpath)).ok().as_deref() == Some(&contents[..]))
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
    let token = bob.token();
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
    std::fs::write(alice.folder.join("while-bob-is-down.txt"), b"later\n").unwrap();
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
