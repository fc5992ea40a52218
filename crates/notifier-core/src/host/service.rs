//! The engine host's D-Bus service on the session bus: `org.tahoe_lafs.Notifier`, object
//! `/org/tahoe_lafs/Notifier`, interface `org.tahoe_lafs.Notifier1`. The window and the CLI
//! reach the running host through it; owning the name is what keeps a second host from
//! starting. It never returns a cap, a NURL or a key: the state is labels, ids, storage
//! indexes, states and counts.
//!
//! | member | kind | what |
//! |---|---|---|
//! | `GetState() → s` | method | the [`HostState`] as JSON: servers, caps ("subscribed on k of n"), pause, keyring, unread counts, recent changes |
//! | `Reconnect()` | method | every link reconnects now |
//! | `Pause(s mode)` | method | `hour`, `tomorrow` (08:00 local), or `resume` |
//! | `MarkAllRead()` | method | every change and news item read |
//! | `OpenWindow(s target)` | method | the face shows the window at `target` (`""`: where it was) |
//! | `Quit()` | method | the host stops |
//! | `StateChanged(s state)` | signal | the new state as JSON, after every change of it |
//! | `WindowRequested(s target)` | signal | the window should show `target` (a running window follows it; `""`: where it was) |
//! | `Version` | property | the host's version |

use std::sync::{Arc, Mutex, PoisonError};

use thiserror::Error;
use time::OffsetDateTime;

use super::{HostCommand, HostHandle, HostState};

/// The well-known name the host owns.
pub const BUS_NAME: &str = "org.tahoe_lafs.Notifier";
/// The object the interface is on.
pub const OBJECT_PATH: &str = "/org/tahoe_lafs/Notifier";
/// The interface's name.
pub const INTERFACE: &str = "org.tahoe_lafs.Notifier1";

/// The bus name of the host serving `paths`: [`BUS_NAME`] for the user's own folders, and
/// `BUS_NAME.home_<hash of the config folder>` for another home (`--home`, tests), so that one
/// host runs per home and the window finds the host of its own home.
pub fn bus_name_for(paths: &crate::store::paths::Paths) -> String {
    use sha2::Digest as _;
    let is_default = crate::store::paths::Paths::platform().is_ok_and(|default| default == *paths);
    if is_default {
        return BUS_NAME.to_owned();
    }
    let digest = sha2::Sha256::digest(paths.config_dir().as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{BUS_NAME}.home_{hex}")
}

/// Why the service could not start.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// No session bus (a headless machine): the host runs without the service.
    #[error("no D-Bus session bus: {0}")]
    NoBus(String),
    /// Another process owns the name: another host runs.
    #[error("the host's bus name is owned by {0}")]
    NameTaken(String),
    /// The bus refused something else.
    #[error("D-Bus: {0}")]
    Bus(String),
}

/// The running service; dropping it leaves the bus (and frees the name).
#[derive(Debug)]
pub struct Service {
    connection: zbus::Connection,
}

impl Service {
    /// Emits `StateChanged` with `state`.
    pub async fn state_changed(&self, state: &HostState) {
        let Ok(json) = serde_json::to_string(state) else {
            return;
        };
        let emitter = zbus::object_server::SignalEmitter::new(&self.connection, OBJECT_PATH);
        if let Ok(emitter) = emitter {
            let _ = Interface::state_changed(&emitter, &json).await;
        }
    }
}

impl Service {
    /// Emits `WindowRequested` with `target`.
    pub async fn window_requested(&self, target: &str) {
        let emitter = zbus::object_server::SignalEmitter::new(&self.connection, OBJECT_PATH);
        if let Ok(emitter) = emitter {
            let _ = Interface::window_requested(&emitter, target).await;
        }
    }
}

struct Interface {
    state: Arc<Mutex<HostState>>,
    handle: HostHandle,
    local_offset: time::UtcOffset,
}

#[zbus::interface(name = "org.tahoe_lafs.Notifier1")]
impl Interface {
    /// The host's state as JSON (no secret in it).
    fn get_state(&self) -> String {
        let state = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        serde_json::to_string(&state).unwrap_or_default()
    }

    /// Every link reconnects now.
    fn reconnect(&self) {
        self.handle.send(HostCommand::Engine(
            crate::engine::EngineCommand::ReconnectAll,
        ));
    }

    /// `hour`, `tomorrow` or `resume`.
    fn pause(&self, mode: &str) -> zbus::fdo::Result<()> {
        let until = pause_until(mode, OffsetDateTime::now_utc(), self.local_offset)
            .map_err(|e| zbus::fdo::Error::InvalidArgs(e.to_owned()))?;
        self.handle.send(HostCommand::Pause(until));
        Ok(())
    }

    /// Every change and news item read.
    fn mark_all_read(&self) {
        self.handle.send(HostCommand::MarkAllRead);
    }

    /// Shows the window at `target` (empty: wherever it was).
    fn open_window(&self, target: &str) {
        let target = (!target.is_empty()).then(|| target.to_owned());
        self.handle.send(HostCommand::Open(target));
    }

    /// Stops the host.
    fn quit(&self) {
        self.handle.send(HostCommand::Quit);
    }

    /// The host's version.
    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// The window should show `target`.
    #[zbus(signal)]
    async fn window_requested(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        target: &str,
    ) -> zbus::Result<()>;

    /// The state changed.
    #[zbus(signal)]
    async fn state_changed(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        state: &str,
    ) -> zbus::Result<()>;
}

/// When a pause of `mode` ends, from `now`: an hour; 08:00 local time tomorrow; or `None`
/// (resume).
pub fn pause_until(
    mode: &str,
    now: OffsetDateTime,
    local_offset: time::UtcOffset,
) -> Result<Option<OffsetDateTime>, &'static str> {
    match mode {
        "hour" => Ok(Some(now + time::Duration::HOUR)),
        "tomorrow" => {
            let local = now.to_offset(local_offset);
            let morning = (local.date() + time::Duration::DAY)
                .with_hms(8, 0, 0)
                .map_err(|_| "no such time")?
                .assume_offset(local_offset);
            Ok(Some(morning.to_offset(time::UtcOffset::UTC)))
        }
        "resume" => Ok(None),
        _ => Err("the pause is \"hour\", \"tomorrow\" or \"resume\""),
    }
}

/// Owns [`BUS_NAME`] and serves the interface. `Ok(None)` without a session bus (the host runs
/// on without the service); [`ServiceError::NameTaken`] names the process holding it.
pub async fn start(
    name: &str,
    state: Arc<Mutex<HostState>>,
    handle: HostHandle,
    local_offset: time::UtcOffset,
) -> Result<Option<Service>, ServiceError> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return Ok(None);
    }
    let connection = zbus::Connection::session()
        .await
        .map_err(|e| ServiceError::NoBus(e.to_string()))?;
    let interface = Interface {
        state,
        handle,
        local_offset,
    };
    connection
        .object_server()
        .at(OBJECT_PATH, interface)
        .await
        .map_err(|e| ServiceError::Bus(e.to_string()))?;
    let reply = connection
        .request_name_with_flags(name, zbus::fdo::RequestNameFlags::DoNotQueue.into())
        .await
        .map_err(|e| ServiceError::Bus(e.to_string()))?;
    match reply {
        zbus::fdo::RequestNameReply::PrimaryOwner | zbus::fdo::RequestNameReply::AlreadyOwner => {
            Ok(Some(Service { connection }))
        }
        _ => Err(ServiceError::NameTaken(owner_of(&connection, name).await)),
    }
}

/// "process 1234 (tahoe-notifier-tray)", as well as the bus can say.
async fn owner_of(connection: &zbus::Connection, name: &str) -> String {
    let Ok(bus) = zbus::fdo::DBusProxy::new(connection).await else {
        return "another process".to_owned();
    };
    let Ok(name) = zbus::names::BusName::try_from(name) else {
        return "another process".to_owned();
    };
    match bus.get_connection_unix_process_id(name).await {
        Ok(pid) => {
            let command = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_default();
            if command.is_empty() {
                format!("process {pid}")
            } else {
                format!("process {pid} ({command})")
            }
        }
        Err(_) => "another process".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_end_in_an_hour_or_tomorrow_morning_local_time() {
        let now = time::macros::datetime!(2026-12-02 21:30 UTC);
        let berlin = time::UtcOffset::from_hms(1, 0, 0).unwrap();
        assert_eq!(
            pause_until("hour", now, berlin).unwrap(),
            Some(time::macros::datetime!(2026-12-02 22:30 UTC))
        );
        assert_eq!(
            pause_until("tomorrow", now, berlin).unwrap(),
            Some(time::macros::datetime!(2026-12-03 07:00 UTC)),
            "08:00 in Berlin is 07:00 UTC"
        );
        assert_eq!(pause_until("resume", now, berlin).unwrap(), None);
        assert!(pause_until("forever", now, berlin).is_err());
    }
}
