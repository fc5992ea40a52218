//! What the app's test binaries share: child processes stopped on drop, the workspace's other
//! binaries, updates servers beside a real grid's storage nodes, the session bus's Notify calls,
//! and the WebDriver steps every real-webview test takes. Each test binary uses part of it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use local_grid::Grid;
use serde_json::{json, Value};

/// A child process stopped (and reaped) when dropped: its stdin closed (the updates servers'
/// `--exit-when-stdin-closes` stop), then SIGTERM (tauri-driver then stops WebKitWebDriver),
/// then SIGKILL after 5 s.
pub struct Guard(pub Child);

impl Guard {
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        drop(self.0.stdin.take());
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        eprintln!("process {} needed SIGKILL", self.0.id());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where cargo put this package's binaries (and the workspace's others).
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tahoe-notifier-app"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The workspace's other binaries, built if this test runs alone (`cargo test -p`).
pub fn workspace_binary(name: &str) -> PathBuf {
    local_grid::bins::workspace_binary(name)
}

pub fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_port_free(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "port {port} is still taken");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The real `tahoe-updates-server` beside each storage node of `grid`, logging at `rust_log`
/// into `<node>.server.out` / `<node>.server.log` under `work`; returns them and their NURLs.
pub fn start_updates_servers(
    grid: &Grid,
    work: &Path,
    rust_log: &str,
) -> (Vec<Guard>, Vec<String>) {
    let server_bin = workspace_binary("tahoe-updates-server");
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
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(work.join(format!("{}.server.out", node.name))).unwrap())
            .stderr(std::fs::File::create(work.join(format!("{}.server.log", node.name))).unwrap())
            .spawn()
            .unwrap();
        guards.push(Guard(child));
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

/// The read-cap of a directory made through the gateway.
pub fn read_cap_of(grid: &Grid, dircap: &str) -> String {
    grid.list_dir_json(dircap).unwrap()[1]["ro_uri"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Records the Notify calls on the session bus.
#[allow(unused_imports)]
pub use local_grid::desktop::NotifyMonitor;

pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
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

pub async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Calls a Tauri command from the page, as the UI does.
pub async fn invoke(client: &Client, command: &str, args: Value) -> Value {
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
pub async fn click(client: &Client, css: &str) {
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

/// The app in its real webview: tauri-driver (on free ports, so tests can run side by side)
/// started with `envs`, its output in `work/app.log`, and a WebDriver session whose page is
/// ready. Drop the client's session (`close`) before the guard.
pub async fn start_app(work: &Path, envs: &[(&str, &Path)]) -> (Guard, fantoccini::Client) {
    let (driver_port, native_port) = (free_port(), free_port());
    let mut command = Command::new("tauri-driver");
    command
        .args(["--port", &driver_port.to_string()])
        .args(["--native-port", &native_port.to_string()])
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(work.join("driver.log")).unwrap())
        .stderr(std::fs::File::create(work.join("app.log")).unwrap());
    for (name, value) in envs {
        command.env(name, value);
    }
    let driver = command
        .spawn()
        .expect("tauri-driver (cargo install tauri-driver --locked; tests/bootstrap.sh does)");
    let guard = Guard(driver);
    wait_port(driver_port, Duration::from_secs(20));
    wait_port(native_port, Duration::from_secs(20));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "tauri:options".to_owned(),
        json!({"application": env!("CARGO_BIN_EXE_tahoe-notifier-app")}),
    );
    let client =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
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
    (guard, client)
}

/// The id of the first X window whose title matches `pattern`, waiting up to `timeout`.
pub fn wait_window(pattern: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let found = Command::new("xdotool")
            .args(["search", "--onlyvisible", "--name", pattern])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&found.stdout);
        if let Some(id) = text.lines().next() {
            return Some(id.trim().to_owned());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// A screenshot of one X window (a native dialog, which WebDriver cannot see) into
/// docs/screenshots/`name`.
pub fn screenshot_window(window: &str, name: &str) -> bool {
    let out = screenshots_dir().join(name);
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "xwd -id {window} -silent | /usr/bin/convert xwd:- png:{}",
            out.display()
        ))
        .status()
        .is_ok_and(|s| s.success())
}

/// The engine hosts (`tahoe-notifier-tray`) the window started for one home, stopped when
/// dropped: the window starts one when none runs, in a process group of its own so that it
/// outlives the window, so a test must end it itself.
pub struct HostsOf(pub PathBuf);

impl HostsOf {
    /// Makes sure the host's binary is built beside the app's (the window starts it from
    /// there), and stops that home's hosts when dropped.
    pub fn new(home: &Path) -> HostsOf {
        let _ = workspace_binary("tahoe-notifier-tray");
        HostsOf(home.to_path_buf())
    }

    /// The pids of the running hosts of this home (by `--home` or `TAHOE_NOTIFIER_HOME`).
    pub fn pids(&self) -> Vec<u32> {
        let home = self.0.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let read = |what: &str| {
                std::fs::read(format!("/proc/{pid}/{what}"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', "\n"))
                    .unwrap_or_default()
            };
            let cmdline = read("cmdline");
            if !cmdline
                .lines()
                .next()
                .unwrap_or("")
                .ends_with("tahoe-notifier-tray")
            {
                continue;
            }
            let environ = read("environ");
            let by_env = environ
                .lines()
                .any(|l| l == format!("TAHOE_NOTIFIER_HOME={home}"));
            let by_arg = cmdline.lines().any(|l| l == home);
            if by_env || by_arg {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for HostsOf {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}
