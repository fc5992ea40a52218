//! Starting the window: `tahoe-notifier-app`, a process of its own that talks to this one over
//! the D-Bus service, and ends when it is closed (so its memory goes back at once). One window
//! at a time: while it runs, a request to open it at an item goes to that window through the
//! service's `WindowRequested` signal, which the host emits for every request.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use notifier_core::keyring_store::KeyringBackend;

/// The window's program, installed beside this one.
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
    /// then follows the host's `WindowRequested` signal itself).
    pub fn open(&self, target: Option<&str>) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(child) = running.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return;
            }
        }
        let mut command = Command::new(notifier_core::host::sibling_program(WINDOW_PROGRAM));
        if let Some(home) = &self.home {
            command.arg("--home").arg(home);
        }
        command.args(["--keyring", self.keyring.as_str()]);
        if let Some(target) = target {
            command.arg("--open").arg(target);
        }
        match command.stdin(Stdio::null()).spawn() {
            Ok(child) => {
                tracing::info!(pid = child.id(), "window started");
                *running = Some(child);
            }
            Err(error) => {
                tracing::warn!(%error, program = %notifier_core::host::sibling_program(WINDOW_PROGRAM).display(), "cannot start the window");
            }
        }
    }
}
