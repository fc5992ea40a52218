//! The user's preferences, shared by every face: the gateway override, quiet hours, which
//! notifications, each kind's Do-Not-Disturb setting, the pause, caps muted for a while, the
//! user's Tahoe node. Kept in `preferences.json` beside the config (written atomically, edited
//! under a lock); the engine host follows the file, so a change made in the window or with the
//! CLI takes effect within seconds. Nothing secret lives here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::{OffsetDateTime, Time};

use crate::notify::{AlertSettings, PolicyConfig, QuietHours};

/// The preferences file's name in the config folder.
pub const PREFERENCES_FILE: &str = "preferences.json";

/// The name an earlier version (the tray app alone) used; read when there is no
/// [`PREFERENCES_FILE`] yet.
const OLD_FILE: &str = "app-settings.json";

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
pub struct Preferences {
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
    /// When each kind of notification is shown (Do-Not-Disturb).
    #[serde(default)]
    pub alerts: AlertSettings,
    /// Notifications paused until then (the tray's and the window's "Pause").
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub paused_until: Option<OffsetDateTime>,
    /// Caps muted for a while, by id, until then ("Mute for 2 hours" on a notification).
    #[serde(default)]
    pub muted_until: HashMap<String, i64>,
}

/// Why settings could not be read, checked or saved.
#[derive(Debug, Error)]
pub enum PreferencesError {
    /// Reading or writing the file failed.
    #[error("cannot use the preferences file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid preferences (kept untouched so the user can repair it).
    #[error("the preferences file {path} is damaged ({reason}); fix or delete it")]
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

impl Preferences {
    /// Reads the preferences in `config_dir`; defaults when there is no file yet.
    pub fn load(config_dir: &Path) -> Result<Preferences, PreferencesError> {
        for name in [PREFERENCES_FILE, OLD_FILE] {
            let path = config_dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    return serde_json::from_str(&text).map_err(|e| PreferencesError::Damaged {
                        path,
                        reason: e.to_string(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(PreferencesError::Io { path, source }),
            }
        }
        Ok(Preferences::default())
    }

    /// Where the preferences live in `config_dir`.
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join(PREFERENCES_FILE)
    }

    /// Loads, lets `change` edit, checks and saves, under the file's lock: a face's edit never
    /// loses another face's.
    pub fn update<T>(
        config_dir: &Path,
        change: impl FnOnce(&mut Preferences) -> T,
    ) -> Result<T, PreferencesError> {
        let path = Self::path(config_dir);
        crate::store::config::with_file_lock(&path, || {
            let mut preferences = Self::load(config_dir)?;
            let out = change(&mut preferences);
            preferences.validate()?;
            preferences.save(config_dir)?;
            Ok(out)
        })
        .map_err(|source| PreferencesError::Io { path, source })?
    }

    /// The notification policy these preferences make of `base` (coalescing and mutes come
    /// from elsewhere). A time that does not parse (checked when saved) leaves quiet hours off.
    pub fn policy(&self, base: PolicyConfig) -> PolicyConfig {
        PolicyConfig {
            quiet_hours: self.quiet_hours().ok().flatten(),
            news_only: self.notify_for == NotifyFor::NewsOnly,
            paused_until: self.paused_until,
            muted_until: self
                .muted_until
                .iter()
                .filter_map(|(id, until)| {
                    Some((
                        id.clone(),
                        OffsetDateTime::from_unix_timestamp(*until).ok()?,
                    ))
                })
                .collect(),
            alerts: self.alerts,
            ..base
        }
    }

    /// Checks the values: quiet hours parse, the gateway URL is one the gateway client accepts.
    pub fn validate(&self) -> Result<(), PreferencesError> {
        self.quiet_hours()?;
        if let Some(url) = &self.gateway_url {
            crate::net::gateway::Gateway::new(url)
                .map_err(|e| PreferencesError::BadGateway(e.to_string()))?;
        }
        Ok(())
    }

    /// The quiet hours, parsed.
    pub fn quiet_hours(&self) -> Result<Option<QuietHours>, PreferencesError> {
        let Some((start, end)) = &self.quiet_hours else {
            return Ok(None);
        };
        Ok(Some(QuietHours {
            start: parse_hhmm(start)?,
            end: parse_hhmm(end)?,
        }))
    }

    /// Writes the preferences atomically, private to the user.
    pub fn save(&self, config_dir: &Path) -> Result<(), PreferencesError> {
        let path = Self::path(config_dir);
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| PreferencesError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        crate::store::config::write_atomically(&path, &text)
            .map_err(|source| PreferencesError::Io { path, source })
    }
}

fn parse_hhmm(text: &str) -> Result<Time, PreferencesError> {
    let (h, m) = text
        .trim()
        .split_once(':')
        .ok_or(PreferencesError::BadTime)?;
    let hour: u8 = h.parse().map_err(|_| PreferencesError::BadTime)?;
    let minute: u8 = m.parse().map_err(|_| PreferencesError::BadTime)?;
    Time::from_hms(hour, minute, 0).map_err(|_| PreferencesError::BadTime)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Preferences::load(dir.path()).unwrap(),
            Preferences::default()
        );
        let settings = Preferences {
            gateway_url: Some("http://127.0.0.1:3456/".to_owned()),
            quiet_hours: Some(("22:00".to_owned(), "07:30".to_owned())),
            notify_for: NotifyFor::NewsOnly,
            tahoe_node_dir: Some(dir.path().join("node")),
            paused_until: Some(time::macros::datetime!(2026-12-02 22:00 UTC)),
            muted_until: [("cap-aaaaaaaaaaaaaaaa".to_owned(), 1_796_000_000)].into(),
            ..Preferences::default()
        };
        settings.validate().unwrap();
        settings.save(dir.path()).unwrap();
        assert_eq!(Preferences::load(dir.path()).unwrap(), settings);
        let bad = Preferences {
            quiet_hours: Some(("25:00".to_owned(), "07:00".to_owned())),
            ..Preferences::default()
        };
        assert!(matches!(bad.validate(), Err(PreferencesError::BadTime)));
    }

    #[test]
    fn concurrent_updates_are_all_kept_and_the_old_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OLD_FILE), r#"{"notify_for": "news_only"}"#).unwrap();
        assert_eq!(
            Preferences::load(dir.path()).unwrap().notify_for,
            NotifyFor::NewsOnly
        );
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.path().to_owned();
                std::thread::spawn(move || {
                    Preferences::update(&dir, |p| {
                        p.muted_until.insert(format!("cap-{i}"), i);
                    })
                    .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let loaded = Preferences::load(dir.path()).unwrap();
        assert_eq!(loaded.muted_until.len(), 8, "no update lost another");
        assert_eq!(
            loaded.notify_for,
            NotifyFor::NewsOnly,
            "carried over from the old file"
        );
        let policy = loaded.policy(PolicyConfig::default());
        assert!(policy.news_only);
    }
}
