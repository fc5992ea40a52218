//! The Settings page: preferences, start at login, pause.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tauri::AppHandle;
use tauri_plugin_autostart::ManagerExt as _;

use super::{CommandError, Result, Shared};
use crate::app::{self};
use crate::tray::{self, Pause};
use notifier_core::preferences::{NotifyFor, Preferences as Settings};

/// The Settings page's data.
#[derive(Debug, Serialize)]
pub struct SettingsView {
    gateway_url: Option<String>,
    quiet_start: Option<String>,
    quiet_end: Option<String>,
    notify_for: NotifyFor,
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
            notifier_core::keyring_store::KeyringBackend::SecretService => {
                "the desktop keyring (Secret Service), service \"tahoe-notifier\"".to_owned()
            }
            notifier_core::keyring_store::KeyringBackend::Keyutils => {
                "the kernel keyring (forgotten at reboot)".to_owned()
            }
        },
    });
    Ok(SettingsView {
        gateway_url: settings.gateway_url,
        quiet_start,
        quiet_end,
        notify_for: settings.notify_for,
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
                notifier_core::preferences::PreferencesError::BadTime,
            ))
        }
    };
    let new = Settings {
        gateway_url: non_empty(settings.gateway_url),
        quiet_hours,
        notify_for: settings.notify_for,
        ..core.settings()
    };
    new.validate()?;
    new.save(core.paths.config_dir())?;
    let changed = core.settings() != new;
    core.set_settings(new);
    // The engine reads the gateway and its notification policy when it starts.
    if changed {
        let core = Arc::clone(&core);
        app::restart_engine(&app, &core);
    }
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
    let how = match mode.as_str() {
        "hour" => Pause::OneHour,
        "tomorrow" => Pause::UntilTomorrow,
        "resume" => Pause::Resume,
        _ => return Err(CommandError(format!("unknown pause mode {mode:?}"))),
    };
    tray::pause(&app, &core, how);
    Ok(())
}
