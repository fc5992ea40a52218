//! Starting and stopping one Tahoe node under its watchdog (see `watchdog.py`).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::GridError;

/// How long a node gets to exit after SIGTERM before it is killed. The watchdog applies the same
/// grace itself; ours is a little longer so that it is the backstop, not the first resort.
const STOP_GRACE: Duration = Duration::from_secs(7);

/// File (inside the node directory) that receives the node's stdout and stderr: Tahoe 1.20's
/// `tahoe run` logs there rather than to `logs/twistd.log`.
pub(crate) const RUN_LOG: &str = "local-grid.log";

/// The programs needed to run nodes.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    pub(crate) tahoe: PathBuf,
    pub(crate) python: PathBuf,
    pub(crate) watchdog: PathBuf,
    pub(crate) lockfile: PathBuf,
}

/// A node running under its watchdog.
#[derive(Debug)]
pub(crate) struct Supervised {
    name: String,
    watchdog: Child,
    /// The write end of the watchdog's stdin. Never written; its closing (on drop or on the death
    /// of this process) tells the watchdog to stop the node.
    _lifeline: ChildStdin,
    node_pid: u32,
}

impl Supervised {
    /// Starts `tahoe run` for `dir` under a watchdog and returns once the node process exists.
    pub(crate) fn start(launcher: &Launcher, name: &str, dir: &Path) -> Result<Self, GridError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(RUN_LOG))
            .map_err(|e| GridError::io(format!("opening the run log of {name}"), e))?;
        let mut watchdog = Command::new(&launcher.python)
            .arg(&launcher.watchdog)
            .arg("node")
            .arg(&launcher.tahoe)
            .arg(dir)
            .arg(&launcher.lockfile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| GridError::io(format!("starting the watchdog of {name}"), e))?;

        let lifeline = watchdog.stdin.take();
        let stdout = watchdog.stdout.take();
        let (Some(lifeline), Some(stdout)) = (lifeline, stdout) else {
            let _ = watchdog.kill();
            return Err(GridError::Startup {
                node: name.to_owned(),
                detail: "watchdog pipes missing".to_owned(),
                logs: String::new(),
            });
        };

        // The watchdog prints the node's PID as soon as it has spawned it.
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        match read.ok().and_then(|_| line.trim().parse::<u32>().ok()) {
            Some(node_pid) => {
                tracing::debug!(node = name, pid = node_pid, "node started");
                Ok(Self {
                    name: name.to_owned(),
                    watchdog,
                    _lifeline: lifeline,
                    node_pid,
                })
            }
            None => {
                let status = wait_timeout(&mut watchdog, Duration::from_secs(2));
                let _ = watchdog.kill();
                Err(GridError::Startup {
                    node: name.to_owned(),
                    detail: format!("its watchdog did not report a PID (exit: {status:?})"),
                    logs: crate::logs::tail(name, dir),
                })
            }
        }
    }

    /// The PID of the `tahoe run` process.
    pub(crate) fn node_pid(&self) -> u32 {
        self.node_pid
    }

    /// `Some(status)` when the node (and so its watchdog) has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.watchdog.try_wait().ok().flatten()
    }

    /// Asks the watchdog to stop the node (SIGTERM) without waiting.
    pub(crate) fn request_stop(&mut self) {
        if self.exited().is_none() {
            signal(self.watchdog.id(), Signal::SIGTERM);
        }
    }

    /// Waits for the node to exit after [`Self::request_stop`]; kills it if it takes too long.
    pub(crate) fn finish_stop(mut self) {
        if wait_timeout(&mut self.watchdog, STOP_GRACE).is_none() {
            tracing::warn!(node = %self.name, "node ignored SIGTERM; killing it");
            signal(self.node_pid, Signal::SIGKILL);
            let _ = self.watchdog.kill();
            let _ = self.watchdog.wait();
        }
        tracing::debug!(node = %self.name, "node stopped");
    }

    /// SIGTERM, then wait for the exit.
    pub(crate) fn stop(mut self) {
        self.request_stop();
        self.finish_stop();
    }

    /// SIGKILL to the node itself (not a clean shutdown); the watchdog then exits too.
    pub(crate) fn kill(mut self) {
        signal(self.node_pid, Signal::SIGKILL);
        if wait_timeout(&mut self.watchdog, STOP_GRACE).is_none() {
            let _ = self.watchdog.kill();
            let _ = self.watchdog.wait();
        }
        tracing::debug!(node = %self.name, "node killed");
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Dropping the lifeline (a field) already makes the watchdog stop the node; this only
        // makes sure a forgotten Supervised does not leave a zombie watchdog behind for long.
        if self.exited().is_none() {
            signal(self.watchdog.id(), Signal::SIGTERM);
        }
    }
}

/// A watchdog that removes the grid's temporary directory once this process is gone and every
/// node has stopped.
#[derive(Debug)]
pub(crate) struct Janitor {
    child: Child,
    lifeline: Option<ChildStdin>,
}

impl Janitor {
    pub(crate) fn start(launcher: &Launcher, base_dir: &Path) -> Result<Self, GridError> {
        let mut child = Command::new(&launcher.python)
            .arg(&launcher.watchdog)
            .arg("janitor")
            .arg(&launcher.lockfile)
            .arg(base_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| GridError::io("starting the clean-up watchdog".to_owned(), e))?;
        let lifeline = child.stdin.take();
        Ok(Self { child, lifeline })
    }

    /// Lets the janitor remove the directory now (all nodes must be stopped) and waits for it.
    pub(crate) fn finish(mut self) {
        drop(self.lifeline.take());
        if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `sig` to `pid`, ignoring "no such process" (it has already gone).
pub(crate) fn signal(pid: u32, sig: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), sig);
    }
}

/// Waits up to `timeout` for `child` to exit.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Runs a short-lived command (e.g. `tahoe create-node`) to completion with stdin from
/// /dev/null, turning a non-zero exit into an error that includes its output.
pub(crate) fn spawn_quiet(cmd: &mut Command, what: &str) -> Result<Child, GridError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| GridError::io(format!("running {what}"), e))
}

/// Waits for a child from [`spawn_quiet`].
pub(crate) fn finish_quiet(child: Child, what: &str) -> Result<(), GridError> {
    let out = child
        .wait_with_output()
        .map_err(|e| GridError::io(format!("waiting for {what}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(GridError::Command {
        what: what.to_owned(),
        status: out.status.to_string(),
        output: crate::logs::redact_caps(text.trim()),
    })
}
