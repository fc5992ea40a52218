//! What the CLI's grid tests share: the real binary under a throwaway home with the session
//! keyring (keyutils), short commands answered in JSON, and a running `watch` whose JSON
//! lines are read as events.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Whether a session keyring is there (`keyctl session - cargo test …`); says so if not.
pub fn keyutils_usable() -> bool {
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

/// The CLI over `home`, answering in JSON, with `user_home` as `HOME`.
pub fn cli(home: &Path, user_home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tahoe-notifier"));
    command
        .arg("--home")
        .arg(home)
        .args(["--keyring", "keyutils", "--json"])
        .env("HOME", user_home)
        .env_remove("TAHOE_NOTIFIER_HOME");
    command
}

/// Runs a short command with `stdin`; returns its output whether or not it succeeded.
pub fn output(home: &Path, user_home: &Path, args: &[&str], stdin: &str) -> std::process::Output {
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
    child.wait_with_output().unwrap()
}

/// Runs a short command with `stdin`, which must succeed; returns its JSON answer.
pub fn run(home: &Path, user_home: &Path, args: &[&str], stdin: &str) -> Value {
    let output = output(home, user_home, args, stdin);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// Writes a grid file named `name` (the gateway and the updates servers' NURLs) into `dir`;
/// returns its path, for `servers import`.
pub fn write_grid_file(dir: &Path, name: &str, gateway_url: &str, nurls: &[String]) -> String {
    let path = dir.join("grid.json");
    std::fs::write(
        &path,
        serde_json::json!({
            "name": name,
            "gateway_url": gateway_url,
            "updates_servers": nurls,
        })
        .to_string(),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// A running `watch`, its JSON events read on a thread of their own.
pub struct Watching {
    pub child: Child,
    events: mpsc::Receiver<Value>,
}

impl Watching {
    /// Starts `watch` with `args` (stderr discarded).
    pub fn start(home: &Path, user_home: &Path, args: &[&str]) -> Watching {
        let mut child = cli(home, user_home)
            .arg("watch")
            .args(args)
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
        Watching { child, events }
    }

    /// The first event within `wait` that `pick` accepts.
    pub fn wait_for(&self, wait: Duration, pick: impl Fn(&Value) -> bool) -> Option<Value> {
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

    /// The process's exit status within `wait`, if it ended.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
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
