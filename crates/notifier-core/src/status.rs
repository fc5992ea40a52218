//! What the faces show, aggregated from the engine's events: each server's link state, where
//! each cap is subscribed ("subscribed on k of n"), the pause, the keyring's state. The engine
//! host keeps one [`LiveState`] and hands it to the tray and, over D-Bus, to the window and the
//! CLI.
//!
//! Pure data and pure functions, so the tray's icon choice is testable without a desktop.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::engine::EngineEvent;
use crate::net::link::LinkState;
use crate::store::keyring_problem::KeyringProblem;

/// One updates server as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Server id (config).
    pub id: String,
    /// Name to show.
    pub name: String,
    /// `connecting`, `connected` or `failing`.
    pub state: String,
    /// The last failure, in words (never a secret), kept after a reconnect so the user can
    /// still see what went wrong.
    pub last_error: Option<String>,
    /// Seconds until the next attempt while failing.
    pub retry_in_s: Option<u64>,
}

/// Where one cap is subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapStatus {
    /// Servers holding the subscription.
    pub subscribed_on: usize,
    /// Servers configured.
    pub servers: usize,
    /// Whether the gateway is polled instead (no server holds it).
    pub polling: bool,
}

/// The five looks of the tray icon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrayState {
    /// Every updates server connected, nothing unread.
    Connected,
    /// Some servers unreachable (others connected).
    Degraded,
    /// No server reachable (or none configured).
    Offline,
    /// Unread changes or news.
    Unread,
    /// Notifications paused by the user.
    Paused,
}

/// Everything learned from the engine since it started, plus the user's pause. Travels to
/// the window over D-Bus as JSON (it holds no secret).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveState {
    /// By server id.
    pub servers: BTreeMap<String, ServerStatus>,
    /// By cap id.
    pub caps: HashMap<String, CapStatus>,
    /// Notifications are held back until then.
    #[serde(with = "time::serde::rfc3339::option")]
    pub paused_until: Option<OffsetDateTime>,
    /// The engine's last notice ("no updates servers configured…").
    pub last_notice: Option<String>,
    /// Why the engine is not running, if it is not.
    pub engine_error: Option<String>,
    /// Why the keyring cannot be used, if it cannot (the engine then waits for it).
    pub keyring_problem: Option<KeyringProblem>,
}

impl LiveState {
    /// Folds one engine event in. Returns whether the tray or page may need redrawing.
    pub fn apply(&mut self, event: &EngineEvent) -> bool {
        match event {
            EngineEvent::Server { id, name, state } => {
                let previous_error = self.servers.get(id).and_then(|s| s.last_error.clone());
                let (word, error, retry) = match state {
                    LinkState::Connecting => ("connecting", previous_error, None),
                    LinkState::Connected => ("connected", previous_error, None),
                    LinkState::Failing { reason, retry_in } => {
                        ("failing", Some(reason.clone()), Some(retry_in.as_secs()))
                    }
                };
                self.servers.insert(
                    id.clone(),
                    ServerStatus {
                        id: id.clone(),
                        name: name.clone(),
                        state: word.to_owned(),
                        last_error: error,
                        retry_in_s: retry,
                    },
                );
            }
            EngineEvent::CapStatus {
                id,
                subscribed_on,
                servers,
                polling,
                ..
            } => {
                self.caps.insert(
                    id.clone(),
                    CapStatus {
                        subscribed_on: *subscribed_on,
                        servers: *servers,
                        polling: *polling,
                    },
                );
            }
            EngineEvent::Notice(text) => self.last_notice = Some(text.clone()),
            EngineEvent::Changed(_) | EngineEvent::News(_) => {}
        }
        true
    }

    /// Forgets what the engine told: used when it restarts with another configuration.
    pub fn reset_engine_view(&mut self) {
        self.servers.clear();
        self.caps.clear();
        self.last_notice = None;
    }

    /// Whether notifications are paused at `now`.
    pub fn is_paused(&self, now: OffsetDateTime) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// `(connected, configured)` servers.
    pub fn connected_servers(&self) -> (usize, usize) {
        let connected = self
            .servers
            .values()
            .filter(|s| s.state == "connected")
            .count();
        (connected, self.servers.len())
    }

    /// The icon to show. An unusable keyring wins (nothing is watched until the user acts);
    /// then paused (the user chose it); then being offline (nothing can arrive); then unread
    /// items (the user has something to look at); then partial outages.
    pub fn tray_state(&self, unread: u64, now: OffsetDateTime) -> TrayState {
        let (connected, configured) = self.connected_servers();
        if self.keyring_problem.is_some() {
            TrayState::Offline
        } else if self.is_paused(now) {
            TrayState::Paused
        } else if connected == 0 || self.engine_error.is_some() {
            TrayState::Offline
        } else if unread > 0 {
            TrayState::Unread
        } else if connected < configured {
            TrayState::Degraded
        } else {
            TrayState::Connected
        }
    }

    /// The one-line summary for the tooltip and the menu's first line.
    pub fn summary(&self, unread: u64, now: OffsetDateTime, local: time::UtcOffset) -> String {
        format!("Tahoe Notifier: {}", self.status_line(unread, now, local))
    }

    /// The summary without the app's name, for the window's own status card.
    ///
    /// Times are shown in `local`, the offset found when the process started (the `time` crate
    /// cannot find it once threads exist, and the tray used to fall back to UTC).
    pub fn status_line(&self, unread: u64, now: OffsetDateTime, local: time::UtcOffset) -> String {
        let (connected, configured) = self.connected_servers();
        let servers = if let Some(problem) = &self.keyring_problem {
            problem.short().to_owned()
        } else if self.engine_error.is_some() {
            "not running".to_owned()
        } else if configured == 0 {
            "no updates servers yet".to_owned()
        } else if connected == configured {
            format!("all {configured} servers connected")
        } else if connected == 0 {
            "offline".to_owned()
        } else {
            format!("{connected} of {configured} servers connected")
        };
        let unread = match unread {
            0 => "nothing unread".to_owned(),
            1 => "1 unread".to_owned(),
            n => format!("{n} unread"),
        };
        let mut line = format!("{servers}, {unread}");
        if let Some(until) = self.paused_until.filter(|_| self.is_paused(now)) {
            line.push_str(&format!(", paused until {}", clock(until.to_offset(local))));
        }
        line
    }
}

/// `HH:MM` of a time, for short texts.
pub fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn server(id: &str, state: LinkState) -> EngineEvent {
        EngineEvent::Server {
            id: id.to_owned(),
            name: format!("node {id}"),
            state,
        }
    }

    fn failing() -> LinkState {
        LinkState::Failing {
            reason: "connection refused".to_owned(),
            retry_in: Duration::from_secs(4),
        }
    }

    #[test]
    fn each_state_has_its_icon() {
        let now = OffsetDateTime::now_utc();
        let mut live = LiveState::default();
        assert_eq!(live.tray_state(0, now), TrayState::Offline, "no servers");
        for id in ["a", "b", "c"] {
            live.apply(&server(id, LinkState::Connected));
        }
        assert_eq!(live.tray_state(0, now), TrayState::Connected);
        assert_eq!(live.tray_state(2, now), TrayState::Unread);
        live.apply(&server("b", failing()));
        assert_eq!(live.tray_state(0, now), TrayState::Degraded);
        assert!(live
            .summary(0, now, time::UtcOffset::UTC)
            .contains("2 of 3 servers connected, nothing unread"));
        live.apply(&server("a", failing()));
        live.apply(&server("c", LinkState::Connecting));
        assert_eq!(live.tray_state(5, now), TrayState::Offline);
        live.paused_until = Some(now + Duration::from_secs(3600));
        assert_eq!(live.tray_state(5, now), TrayState::Paused);
        assert_eq!(
            live.tray_state(5, now + Duration::from_secs(3601)),
            TrayState::Offline,
            "a pause ends by itself"
        );
    }

    #[test]
    fn an_unusable_keyring_shows_offline_and_says_so() {
        let now = OffsetDateTime::now_utc();
        let mut live = LiveState::default();
        live.apply(&server("a", LinkState::Connected));
        live.paused_until = Some(now + Duration::from_secs(3600));
        live.keyring_problem = Some(KeyringProblem::locked("test"));
        assert_eq!(live.tray_state(0, now), TrayState::Offline);
        let summary = live.summary(0, now, time::UtcOffset::UTC);
        assert!(summary.contains("keyring locked: unlock it"), "{summary}");
        live.keyring_problem = Some(KeyringProblem::unavailable("test"));
        assert!(live
            .summary(0, now, time::UtcOffset::UTC)
            .contains("no keyring"));
    }

    #[test]
    fn the_last_error_outlives_the_reconnect() {
        let mut live = LiveState::default();
        live.apply(&server("a", failing()));
        live.apply(&server("a", LinkState::Connected));
        let status = &live.servers["a"];
        assert_eq!(status.state, "connected");
        assert_eq!(status.last_error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn cap_status_is_kept_per_cap() {
        let mut live = LiveState::default();
        live.apply(&EngineEvent::CapStatus {
            id: "cap-1".to_owned(),
            label: "Docs".to_owned(),
            subscribed_on: 3,
            servers: 3,
            polling: false,
        });
        assert_eq!(live.caps["cap-1"].subscribed_on, 3);
    }

    #[test]
    fn paused_until_is_shown_in_local_time() {
        let now = time::macros::datetime!(2026-12-02 21:00 UTC);
        let live = LiveState {
            paused_until: Some(time::macros::datetime!(2026-12-02 22:30 UTC)),
            ..LiveState::default()
        };
        let berlin = time::UtcOffset::from_hms(1, 0, 0).unwrap();
        assert!(live.summary(0, now, berlin).contains("paused until 23:30"));
        assert!(live
            .summary(0, now, time::UtcOffset::UTC)
            .contains("paused until 22:30"));
    }
}
