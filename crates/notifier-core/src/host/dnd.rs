//! Whether the desktop's Do-Not-Disturb is on, as each desktop exposes it:
//!
//! - the notification server's own `Inhibited` property (`org.freedesktop.Notifications`, the
//!   notification spec's inhibition, which KDE Plasma's server offers);
//! - dunst's `paused` property on `org.dunstproject.cmd0` (what `dunstctl set-paused` sets);
//! - GNOME's `org.gnome.desktop.notifications show-banners` setting, read with `gsettings` when
//!   the session is GNOME's.
//!
//! Asked every [`POLL_INTERVAL`]: one small D-Bus call, and no desktop announces all three the
//! same way.

use std::time::Duration;

/// How often Do-Not-Disturb is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Follows Do-Not-Disturb; knows what it last saw.
#[derive(Debug)]
pub struct Watcher {
    connection: Option<zbus::Connection>,
    last: Option<bool>,
    gnome: bool,
}

impl Watcher {
    /// A watcher on the session bus (none without one: then Do-Not-Disturb is never on).
    pub async fn new() -> Watcher {
        let gnome = std::env::var("XDG_CURRENT_DESKTOP")
            .is_ok_and(|d| d.split(':').any(|part| part.eq_ignore_ascii_case("gnome")));
        Watcher {
            connection: zbus::Connection::session().await.ok(),
            last: None,
            gnome,
        }
    }

    /// The new state when it changed since the last call (the first call reports "on" only).
    pub async fn changed(&mut self) -> Option<bool> {
        let now = self.current().await;
        let before = self.last.replace(now);
        match before {
            None if now => Some(true),
            Some(was) if was != now => Some(now),
            _ => None,
        }
    }

    /// Whether Do-Not-Disturb is on now, by any of the signs above.
    pub async fn current(&self) -> bool {
        if let Some(connection) = &self.connection {
            for (interface, property) in [
                ("org.freedesktop.Notifications", "Inhibited"),
                ("org.dunstproject.cmd0", "paused"),
            ] {
                if property_is_true(connection, interface, property).await == Some(true) {
                    return true;
                }
            }
        }
        self.gnome && gnome_banners_off().await
    }
}

async fn property_is_true(
    connection: &zbus::Connection,
    interface: &str,
    property: &str,
) -> Option<bool> {
    let proxy = zbus::fdo::PropertiesProxy::builder(connection)
        .destination("org.freedesktop.Notifications")
        .ok()?
        .path("/org/freedesktop/Notifications")
        .ok()?
        .build()
        .await
        .ok()?;
    let interface = zbus::names::InterfaceName::try_from(interface).ok()?;
    let value = proxy.get(interface, property).await.ok()?;
    bool::try_from(value).ok()
}

async fn gnome_banners_off() -> bool {
    let output = tokio::process::Command::new("gsettings")
        .args(["get", "org.gnome.desktop.notifications", "show-banners"])
        .output()
        .await;
    matches!(output, Ok(out) if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "false")
}
