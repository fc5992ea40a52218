//! Starting the window for a host (the tray's menu, a notification's "Open", `watch` without
//! a tray): `tahoe-notifier-app`, a process of its own that talks to the host over the D-Bus
//! service, and ends when it is closed (so its memory goes back at once). One window
//! at a time: while it runs, a request to open it at an item goes to that window through the
//! service's `WindowRequested` signal, which the host emits for every request.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use crate::store::keyring::KeyringBackend;

/// The window's program, installed beside the tray and the CLI.
pub const WINDOW_PROGRAM: &str = "tahoe-notifier-app";

/// Starts the window process, at most one at a time.
#[derive(Debug)]
pub struct Launcher {
    home: Option<PathBuf>,
    keyring: KeyringBackend,
    running: Mutex<Option<Child>>,
}

impl Launcher {
    /// A launcher passing `home` and `keyring` on to the window.
    pub fn new(home: Option<PathBuf>, keyring: KeyringBackend) -> Launcher {
        Launcher {
            home,
            keyring,
            running: Mutex::new(None),
        }
    }

    /// Opens the window at `target` (`None`: where it was), unless one is open already (it
    /// then follows the host's `WindowRequested` signal itself). `Ok(Some(pid))`: started;
    /// `Ok(None)`: one runs already.
    pub fn open(&self, target: Option<&str>) -> std::io::Result<Option<u32>> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(child) = running.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Ok(None);
            }
        }
        let mut command = Command::new(super::sibling_program(WINDOW_PROGRAM));
        if let Some(home) = &self.home {
            command.arg("--home").arg(home);
        }
        command.args(["--keyring", self.keyring.as_str()]);
        // So that the window closes, rather than start a host of its own, if this host has
        // been quit by the time the window is up.
        command.arg("--opened-by-host");
        if let Some(target) = target {
            command.arg("--open").arg(target);
        }
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).spawn()?;
        let pid = child.id();
        tracing::info!(pid, "window started");
        // The last one is reaped here (try_wait above) or when the launcher goes.
        *running = Some(child);
        Ok(Some(pid))
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let running = self
            .running
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(child) = running.as_mut() {
            // The window goes on without us (it follows the host's bus name); only a finished
            // one is reaped, so that no zombie is left.
            let _ = child.try_wait();
        }
    }
}
