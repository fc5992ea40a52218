//! The desktop side of tests: what the notification daemon was asked to show.
//!
//! Tests that raise desktop notifications run on the private session bus that
//! `tests/with-desktop-services.sh` starts (dunst as the daemon). [`NotifyMonitor`] records every
//! `org.freedesktop.Notifications.Notify` call on that bus with `dbus-monitor`, so a test can
//! assert what a user would have seen, as the daemon received it.
//!
//! Tests of what the faces do when the desktop's services are missing or locked start a
//! [`PrivateBus`] of their own instead: no services, no activation (so no unlock prompt can
//! appear and the session's own keyring is never touched), and a gnome-keyring on it on demand.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// A process killed and reaped when dropped.
#[derive(Debug)]
pub struct BusProcess(Child);

impl Drop for BusProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A session bus of the test's own, with no activatable services.
#[derive(Debug)]
pub struct PrivateBus {
    /// For `DBUS_SESSION_BUS_ADDRESS` of the processes under test.
    pub address: String,
    _daemon: BusProcess,
}

/// The password [`PrivateBus::start_keyring`] unlocks the login collection with.
pub const TEST_KEYRING_PASSWORD: &str = "test-keyring-password";

impl PrivateBus {
    /// Starts `dbus-daemon` with its socket and config in `dir` (created if missing) and waits
    /// until it listens.
    ///
    /// # Panics
    /// When the daemon cannot start or does not listen within 10 s.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("bus directory");
        let socket = dir.join("bus");
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("bus config");
        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (tests/bootstrap.sh installs it)");
        let daemon = BusProcess(daemon);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the private bus did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            address: format!("unix:path={}", socket.display()),
            _daemon: daemon,
        }
    }

    /// `dbus-send --print-reply` on this bus; what it printed (reply or error) as text.
    ///
    /// # Panics
    /// When `dbus-send` cannot run.
    pub fn send(&self, args: &[&str]) -> String {
        let out = Command::new("dbus-send")
            .arg(format!("--bus={}", self.address))
            .arg("--print-reply")
            .args(args)
            .output()
            .expect("dbus-send");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// gnome-keyring (its Secret Service only) on this bus with a throwaway home in `dir`,
    /// unlocked with [`TEST_KEYRING_PASSWORD`]; returns once its login collection exists.
    ///
    /// # Panics
    /// When the daemon cannot start or makes no login collection within 20 s.
    pub fn start_keyring(&self, dir: &Path) -> BusProcess {
        let home = dir.join("keyring-home");
        let runtime = dir.join("runtime");
        std::fs::create_dir_all(home.join(".local/share")).expect("keyring home");
        std::fs::create_dir_all(&runtime).expect("runtime dir");
        let mut daemon = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .env_remove("DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon (tests/bootstrap.sh installs it)");
        // The password on stdin, then EOF.
        if let Some(mut stdin) = daemon.stdin.take() {
            stdin
                .write_all(TEST_KEYRING_PASSWORD.as_bytes())
                .expect("keyring password");
        }
        let daemon = BusProcess(daemon);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let alias = self.send(&[
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.ReadAlias",
                "string:default",
            ]);
            if alias.contains("/org/freedesktop/secrets/collection/") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gnome-keyring did not make its login collection: {alias}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    /// Locks the keyring's login collection, as a screen lock or `seahorse` would.
    ///
    /// # Panics
    /// When the collection is not locked afterwards.
    pub fn lock_login_collection(&self) {
        self.send(&[
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            "array:objpath:/org/freedesktop/secrets/collection/login",
        ]);
        let locked = self.send(&[
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets/collection/login",
            "org.freedesktop.DBus.Properties.Get",
            "string:org.freedesktop.Secret.Collection",
            "string:Locked",
        ]);
        assert!(locked.contains("boolean true"), "not locked: {locked}");
    }
}
