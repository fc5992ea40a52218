//! The desktop side of tests: what the notification daemon was asked to show.
//!
//! Tests that raise desktop notifications run on the private session bus that
//! `tests/with-desktop-services.sh` starts (dunst as the daemon). [`NotifyMonitor`] records every
//! `org.freedesktop.Notifications.Notify` call on that bus with `dbus-monitor`, so a test can
//! assert what a user would have seen, as the daemon received it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Records the `Notify` calls on the session bus while it lives.
#[derive(Debug)]
pub struct NotifyMonitor {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Whether the test runs with the desktop services of `tests/with-desktop-services.sh`.
pub fn desktop_services() -> bool {
    std::env::var_os("TAHOE_NOTIFIER_DESKTOP_SERVICES").is_some()
}

impl NotifyMonitor {
    /// Starts recording; `None` outside `tests/with-desktop-services.sh` (no daemon to watch).
    pub fn start() -> Option<Self> {
        if !desktop_services() {
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let log = dir.path().join("notify.log");
        let child = Command::new("dbus-monitor")
            .args([
                "--session",
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
            ])
            .stdout(std::fs::File::create(&log).ok()?)
            .spawn()
            .ok()?;
        // dbus-monitor needs a moment to add its match rule; calls before that are not seen.
        std::thread::sleep(Duration::from_millis(300));
        Some(Self {
            child,
            log,
            _dir: dir,
        })
    }

    /// The number of `Notify` calls whose arguments contain every one of `needles`.
    pub fn calls_containing(&self, needles: &[&str]) -> usize {
        self.calls()
            .iter()
            .filter(|call| needles.iter().all(|n| call.contains(n)))
            .count()
    }

    /// Every `Notify` call seen so far, as dbus-monitor printed it.
    pub fn calls(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.split("method call")
            .filter(|call| call.contains("member=Notify"))
            .map(str::to_owned)
            .collect()
    }

    /// Waits up to `timeout` for a call containing every one of `needles`.
    pub fn wait_for(&self, needles: &[&str], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.calls_containing(needles) > 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The file the calls are recorded in (for a secrets scan of everything on the bus).
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for NotifyMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
