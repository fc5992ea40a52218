//! The Settings page: preferences, start at login, pause.

use serde::{Deserialize, Serialize};
use tauri::AppHandle;
use tauri_plugin_autostart::ManagerExt as _;

use super::{CommandError, Result, Shared};
use crate::app::{self};
use notifier_core::notify::AlertSettings;
use notifier_core::store::preferences::{NotifyFor, Preferences as Settings};

/// The Settings page's data.
#[derive(Debug, Serialize)]
pub struct SettingsView {
    gateway_url: Option<String>,
    quiet_start: Option<String>,
    quiet_end: Option<String>,
    notify_for: NotifyFor,
    alerts: AlertSettings,
    autostart: bool,
    keyring: String,
    locations: Vec<Location>,
}

/// One place where data lives.
#[derive(Debug, Serialize)]
pub struct Location {
    what: String,
    path: String,
}

/// The settings and where data lives.
#[tauri::command(async)]
pub fn get_settings(app: AppHandle, core: Shared<'_>) -> Result<SettingsView> {
    let settings = core.settings();
    let (quiet_start, quiet_end) = match settings.quiet_hours {
        Some((start, end)) => (Some(start), Some(end)),
        None => (None, None),
    };
    let mut locations: Vec<Location> = app::data_locations(&core)
        .into_iter()
        .map(|(what, path)| Location {
            what,
            path: path.display().to_string(),
        })
        .collect();
    let keyring = core.secrets.backend();
    locations.push(Location {
        what: "Caps and server keys".to_owned(),
        path: match keyring {
            notifier_core::store::keyring::KeyringBackend::SecretService => {
                "the desktop keyring (Secret Service), service \"tahoe-notifier\"".to_owned()
            }
            notifier_core::store::keyring::KeyringBackend::Keyutils => {
                "the kernel keyring (forgotten at reboot)".to_owned()
            }
        },
    });
    Ok(SettingsView {
        gateway_url: settings.gateway_url,
        quiet_start,
        quiet_end,
        notify_for: settings.notify_for,
        alerts: settings.alerts,
        autostart: app.autolaunch().is_enabled().unwrap_or(false),
        keyring: keyring.to_string(),
        locations,
    })
}

/// Settings as the page sends them.
#[derive(Debug, Deserialize)]
pub struct SettingsInput {
    gateway_url: Option<String>,
    quiet_start: Option<String>,
    quiet_end: Option<String>,
    notify_for: NotifyFor,
    /// When each kind is shown; absent: left as saved.
    #[serde(default)]
    alerts: Option<AlertSettings>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Checks and saves the settings; a change restarts the engine with them.
#[tauri::command(async)]
pub fn set_settings(app: AppHandle, core: Shared<'_>, settings: SettingsInput) -> Result<()> {
    let quiet_hours = match (
        non_empty(settings.quiet_start),
        non_empty(settings.quiet_end),
    ) {
        (Some(start), Some(end)) => Some((start, end)),
        (None, None) => None,
        _ => {
            return Err(CommandError::new(
                notifier_core::store::preferences::PreferencesError::BadTime,
            ))
        }
    };
    let new = Settings {
        gateway_url: non_empty(settings.gateway_url),
        quiet_hours,
        notify_for: settings.notify_for,
        alerts: settings.alerts.unwrap_or(core.settings().alerts),
        ..core.settings()
    };
    new.validate()?;
    // Edited under the file's lock, so that a pause or mute the host saved meanwhile stays;
    // the host follows the new policy and gateway within a second.
    Settings::update(core.paths.config_dir(), |saved| {
        saved.gateway_url = new.gateway_url.clone();
        saved.quiet_hours = new.quiet_hours.clone();
        saved.notify_for = new.notify_for;
        saved.alerts = new.alerts;
    })?;
    super::changed(&app, &core);
    Ok(())
}

/// Turns starting at login on or off.
#[tauri::command(async)]
pub fn set_autostart(app: AppHandle, enabled: bool) -> Result<bool> {
    let launcher = app.autolaunch();
    if enabled {
        launcher.enable()?;
    } else {
        launcher.disable()?;
    }
    Ok(launcher.is_enabled()?)
}

/// Pauses notifications (`hour`, `tomorrow`) or resumes them (`resume`).
#[tauri::command(async)]
pub fn pause(app: AppHandle, core: Shared<'_>, mode: String) -> Result<()> {
    if !matches!(mode.as_str(), "hour" | "tomorrow" | "resume") {
        return Err(CommandError(format!("unknown pause mode {mode:?}")));
    }
    core.ask_host(app::HostRequest::Pause(mode));
    super::changed(&app, &core);
    Ok(())
}
