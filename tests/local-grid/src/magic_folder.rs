//! Real magic-folder daemons on a local grid, for the magic-folder bridge's tests.
//!
//! magic-folder 24.3.0 and magic-wormhole-mailbox-server (installed beside `tahoe` by
//! `tests/bootstrap-python.sh`) run as they would for a user: `magic-folder init` on the grid's
//! gateway node, `magic-folder run`, and invites through a [`WormholeMailbox`] on loopback.
//!
//! The daemon's API token is a secret: it is read from the config directory when needed and
//! never put into an error.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{free_port, http, logs, Grid, GridError};

/// How long a daemon or the mailbox may take to come up on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a daemon may take to stop after its stdin closed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A magic-wormhole mailbox server on loopback, for magic-folder's invites. Killed on drop.
#[derive(Debug)]
pub struct WormholeMailbox {
    url: String,
    child: Child,
}

impl WormholeMailbox {
    /// Starts `twist wormhole-mailbox` on a free loopback port, its database and log in `dir`.
    pub fn start(grid: &Grid, dir: &Path) -> Result<WormholeMailbox, GridError> {
        let bin = grid.tahoe_bin().with_file_name("twist");
        let port = free_port()?;
        let log = dir.join("mailbox.log");
        let child = Command::new(&bin)
            .args([
                "wormhole-mailbox",
                "--port",
                &format!("tcp:{port}:interface=127.0.0.1"),
                "--channel-db",
            ])
            .arg(dir.join("relay.sqlite"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(&log)
                    .map_err(|e| GridError::io(format!("creating {}", log.display()), e))?,
            )
            .spawn()
            .map_err(|e| GridError::io(format!("starting {}", bin.display()), e))?;
        let mut mailbox = WormholeMailbox {
            url: format!("ws://127.0.0.1:{port}/v1"),
            child,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = matches!(mailbox.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                return Err(GridError::Timeout {
                    what: "the wormhole mailbox server (tests/bootstrap-python.sh installs \
                           magic-wormhole-mailbox-server)"
                        .to_owned(),
                    waited: START_TIMEOUT,
                    logs: std::fs::read_to_string(&log).unwrap_or_default(),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(mailbox)
    }

    /// The URL to give `magic-folder init --mailbox`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for WormholeMailbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `magic-folder run` daemon with its config directory and local folder. Stopped
/// cleanly (its stdin closed) on drop.
#[derive(Debug)]
pub struct MagicFolderDaemon {
    name: String,
    config: PathBuf,
    folder: PathBuf,
    bin: PathBuf,
    log: PathBuf,
    child: Child,
}

impl MagicFolderDaemon {
    /// `magic-folder init` on the grid's gateway node (config `<dir>/<name>-config`, local folder
    /// `<dir>/<name>-folder`), then `magic-folder run`, with invites enabled.
    pub fn start(
        grid: &Grid,
        dir: &Path,
        name: &str,
        mailbox_url: &str,
    ) -> Result<MagicFolderDaemon, GridError> {
        let bin = grid.tahoe_bin().with_file_name("magic-folder");
        if !bin.is_file() {
            return Err(GridError::InvalidOptions(format!(
                "{} missing: run tests/bootstrap-python.sh (installs magic-folder 24.3.0)",
                bin.display()
            )));
        }
        let config = dir.join(format!("{name}-config"));
        let folder = dir.join(format!("{name}-folder"));
        std::fs::create_dir_all(&folder)
            .map_err(|e| GridError::io(format!("creating {}", folder.display()), e))?;
        run_command(
            "magic-folder init",
            Command::new(&bin)
                .arg("--config")
                .arg(&config)
                .args(["init", "--listen-endpoint", "tcp:0:interface=127.0.0.1"])
                .arg("--node-directory")
                .arg(grid.gateway_dir())
                .arg("--mailbox")
                .arg(mailbox_url),
        )?;
        let log = dir.join(format!("{name}.log"));
        let child = spawn_run(&bin, &config, &log)?;
        let daemon = MagicFolderDaemon {
            name: name.to_owned(),
            config,
            folder,
            bin,
            log,
            child,
        };
        // Invites are an experimental feature of 24.3.0, off by default.
        daemon.cli(&["set-config", "--enable", "invites"])?;
        Ok(daemon)
    }

    /// The participant name it was started as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its `--config` directory (holds `api_client_endpoint` and `api_token`).
    pub fn config_dir(&self) -> &Path {
        &self.config
    }

    /// The local folder it syncs.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Runs `magic-folder --config … <args>`; its standard output.
    pub fn cli(&self, args: &[&str]) -> Result<String, GridError> {
        run_command(
            "magic-folder command",
            Command::new(&self.bin)
                .arg("--config")
                .arg(&self.config)
                .args(args),
        )
    }

    /// The daemon's API token (a secret: keep it out of logs).
    pub fn token(&self) -> Result<String, GridError> {
        let path = self.config.join("api_token");
        std::fs::read_to_string(&path)
            .map(|text| text.trim().to_owned())
            .map_err(|e| GridError::io(format!("reading {}", path.display()), e))
    }

    /// One call of the daemon's HTTP API; its JSON answer on 2xx (`Null` when empty), else
    /// [`GridError::Http`].
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, GridError> {
        let operation = "magic-folder API call";
        let endpoint_file = self.config.join("api_client_endpoint");
        let endpoint = std::fs::read_to_string(&endpoint_file)
            .map_err(|e| GridError::io(format!("reading {}", endpoint_file.display()), e))?;
        let port: u16 = endpoint
            .trim()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| GridError::BadResponse {
                operation,
                detail: format!("the daemon is not running (endpoint {:?})", endpoint.trim()),
            })?;
        let authorization = format!("Bearer {}", self.token()?);
        let body = body.map(Value::to_string);
        let answer = http::request(
            port,
            method,
            path,
            &[("Authorization", &authorization)],
            body.as_deref().map(str::as_bytes),
        )
        .map_err(|e| GridError::io(format!("{method} {path} to magic-folder"), e))?;
        let text = String::from_utf8_lossy(&answer.body);
        if !(200..300).contains(&answer.status) {
            let short: String = text.chars().take(1000).collect();
            return Err(GridError::Http {
                operation,
                status: answer.status,
                body: logs::redact_caps(short.trim()),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| GridError::BadResponse {
            operation,
            detail: format!("{method} {path}: not JSON ({e})"),
        })
    }

    /// Invites `guest` into `folder` as `participant` and has it accept through the mailbox
    /// (the API's `invite` and `join`, what `magic-folder invite` / `join` do).
    pub fn invite(
        &self,
        folder: &str,
        guest: &MagicFolderDaemon,
        participant: &str,
        read_only: bool,
    ) -> Result<(), GridError> {
        let mode = if read_only { "read-only" } else { "read-write" };
        let invite = self.api(
            "POST",
            &format!("/experimental/magic-folder/{folder}/invite"),
            Some(&json!({"participant-name": participant, "mode": mode})),
        )?;
        let code = invite["wormhole-code"]
            .as_str()
            .ok_or_else(|| GridError::BadResponse {
                operation: "magic-folder invite",
                detail: "no wormhole-code in the answer".to_owned(),
            })?;
        let joined = guest.api(
            "POST",
            &format!("/experimental/magic-folder/{folder}/join"),
            Some(&json!({
                "invite-code": code,
                "local-directory": guest.folder,
                "author": participant,
                "poll-interval": 60,
                "scan-interval": 60,
            })),
        )?;
        if joined["success"] != json!(true) {
            return Err(GridError::BadResponse {
                operation: "magic-folder join",
                detail: format!("{participant} did not join: {joined}"),
            });
        }
        Ok(())
    }

    /// Adds a participant to our collective directly (an admin's API call).
    pub fn add_participant(
        &self,
        folder: &str,
        participant: &str,
        personal_dmd: &str,
    ) -> Result<(), GridError> {
        self.api(
            "POST",
            &format!("/v1/magic-folder/{folder}/participants"),
            Some(&json!({"author": {"name": participant}, "personal_dmd": personal_dmd})),
        )
        .map(drop)
    }

    /// Stops the daemon cleanly (it writes `not running` into `api_client_endpoint`).
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the daemon again after [`MagicFolderDaemon::stop`].
    pub fn restart(&mut self) -> Result<(), GridError> {
        self.child = spawn_run(&self.bin, &self.config, &self.log)?;
        Ok(())
    }
}

impl Drop for MagicFolderDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `magic-folder run`, waiting until it serves its API. Its stdin is a pipe held by the caller:
/// the daemon stops when it closes.
fn spawn_run(bin: &Path, config: &Path, log: &Path) -> Result<Child, GridError> {
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| GridError::io(format!("opening {}", log.display()), e))
    };
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdin(Stdio::piped())
        .stdout(open_log()?)
        .stderr(open_log()?)
        .spawn()
        .map_err(|e| GridError::io(format!("starting {}", bin.display()), e))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let endpoint =
            std::fs::read_to_string(config.join("api_client_endpoint")).unwrap_or_default();
        if endpoint.starts_with("tcp:") {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(GridError::Timeout {
                what: format!("the magic-folder daemon of {}", config.display()),
                waited: START_TIMEOUT,
                logs: logs::redact_caps(&std::fs::read_to_string(log).unwrap_or_default()),
            });
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a command to its end; its stdout, or [`GridError::Command`] with both outputs.
fn run_command(what: &str, command: &mut Command) -> Result<String, GridError> {
    let output = command
        .output()
        .map_err(|e| GridError::io(format!("running {what}"), e))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    Err(GridError::Command {
        what: what.to_owned(),
        status: output.status.to_string(),
        output: logs::redact_caps(&format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )),
    })
}
