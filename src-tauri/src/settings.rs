//! The app's own preferences (gateway override, quiet hours, which notifications), kept in
//! `app-settings.json` beside the notifier's config. Nothing secret lives here.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use notifier_core::notify::QuietHours;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::Time;

/// The settings file's name in the config folder.
pub const SETTINGS_FILE: &str = "app-settings.json";

/// Which notifications to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFor {
    /// Changes and news.
    #[default]
    All,
    /// Operator news only; changes are recorded silently.
    NewsOnly,
}

/// The user's preferences.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Settings {
    /// The gateway to fetch listings through; `None` uses the imported grid's.
    #[serde(default)]
    pub gateway_url: Option<String>,
    /// Quiet hours as `HH:MM` (start, end); notifications are not shown between them.
    #[serde(default)]
    pub quiet_hours: Option<(String, String)>,
    /// Which notifications to raise.
    #[serde(default)]
    pub notify_for: NotifyFor,
    /// The user's Tahoe node directory, when it is not `~/.tahoe` (its aliases and gateway).
    #[serde(default)]
    pub tahoe_node_dir: Option<PathBuf>,
}

/// Why settings could not be read, checked or saved.
#[derive(Debug, Error)]
pub enum SettingsError {
    /// Reading or writing the file failed.
    #[error("cannot use the settings file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid settings (kept untouched so the user can repair it).
    #[error("the settings file {path} is damaged ({reason}); fix or delete it")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A quiet-hours time is not `HH:MM`.
    #[error("quiet hours need two times written as HH:MM (24-hour), e.g. 22:00 and 07:30")]
    BadTime,
    /// The gateway URL is unusable.
    #[error("the gateway URL is unusable: {0}")]
    BadGateway(String),
}

impl Settings {
    /// Reads the settings in `config_dir`; defaults when there is no file yet.
    pub fn load(config_dir: &Path) -> Result<Settings, SettingsError> {
        let path = config_dir.join(SETTINGS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| SettingsError::Damaged {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(SettingsError::Io { path, source }),
        }
    }

    /// Checks the values: quiet hours parse, the gateway URL is one the gateway client accepts.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.quiet_hours()?;
        if let Some(url) = &self.gateway_url {
            notifier_core::gateway::Gateway::new(url)
                .map_err(|e| SettingsError::BadGateway(e.to_string()))?;
        }
        Ok(())
    }

    /// The quiet hours, parsed.
    pub fn quiet_hours(&self) -> Result<Option<QuietHours>, SettingsError> {
        let Some((start, end)) = &self.quiet_hours else {
            return Ok(None);
        };
        Ok(Some(QuietHours {
            start: parse_hhmm(start)?,
            end: parse_hhmm(end)?,
        }))
    }

    /// Writes the settings atomically (temporary file, then rename), private to the user.
    pub fn save(&self, config_dir: &Path) -> Result<(), SettingsError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = config_dir.join(SETTINGS_FILE);
        let temporary = config_dir.join(format!("{SETTINGS_FILE}.tmp"));
        let io = |source| SettingsError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| SettingsError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::create_dir_all(config_dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)
    }
}

fn parse_hhmm(text: &str) -> Result<Time, SettingsError> {
    let (h, m) = text.trim().split_once(':').ok_or(SettingsError::BadTime)?;
    let hour: u8 = h.parse().map_err(|_| SettingsError::BadTime)?;
    let minute: u8 = m.parse().map_err(|_| SettingsError::BadTime)?;
    Time::from_hms(hour, minute, 0).map_err(|_| SettingsError::BadTime)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Settings::default());
        let settings = Settings {
            gateway_url: Some("http://127.0.0.1:3456/".to_owned()),
            quiet_hours: Some(("22:00".to_owned(), "07:30".to_owned())),
            notify_for: NotifyFor::NewsOnly,
            tahoe_node_dir: Some(dir.path().join("node")),
        };
        settings.validate().unwrap();
        settings.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), settings);
        let bad = Settings {
            quiet_hours: Some(("25:00".to_owned(), "07:00".to_owned())),
            ..Settings::default()
        };
        assert!(matches!(bad.validate(), Err(SettingsError::BadTime)));
    }
}
