//! The non-secret config file: which caps are watched (by id, label, kind and storage index),
//! which updates servers and grids are known. Secrets (caps, NURLs) live only in the keyring,
//! under the ids recorded here.
//!
//! Writes are atomic (a temporary file in the same folder, synced, then renamed over the old
//! one), so a crash leaves either the old or the new file. A file that cannot be parsed is never
//! silently replaced by an empty config: it is moved aside to `config.json.corrupt-<timestamp>`
//! and loading fails with an error that says where it went.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use time::OffsetDateTime;

use crate::ids;

/// The records are the schema module's (the config is their file, not their owner).
pub use crate::schema::{CapEntry, CapKind, Config, PendingChange, CONFIG_VERSION};

/// Why the config could not be read or written.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("cannot {action} the config file {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file was not valid; it has been moved aside.
    #[error(
        "the config file {path} is damaged ({reason}); it was moved aside to {kept_at} so that \
         nothing is lost, and a new empty config will be used from now on. The secrets of your \
         caps and servers are still in the keyring: repair the moved file and move it back to \
         {path}, or add your caps again"
    )]
    Corrupt {
        /// Where the file was.
        path: PathBuf,
        /// Where it is now.
        kept_at: PathBuf,
        /// What is wrong with it (position and kind only, never its content).
        reason: String,
    },
    /// The file is damaged and could not even be moved aside.
    #[error(
        "the config file {path} is damaged ({reason}) and could not be moved aside ({source}); \
         move or repair it by hand"
    )]
    CorruptNotMoved {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// Why the rename failed.
        source: io::Error,
    },
    /// The file was written by a newer version of the notifier.
    #[error(
        "the config file {path} has format version {found}, but this tahoe-notifier understands \
         only up to {CONFIG_VERSION}: upgrade tahoe-notifier"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The config could not be turned into JSON (should not happen).
    #[error("cannot encode the config: {0}")]
    Encode(#[from] serde_json::Error),
    /// No random id for the temporary file.
    #[error(transparent)]
    Id(#[from] ids::IdError),
}

/// The config file on disk.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    /// The config file at `path` (usually [`crate::store::paths::Paths::config_file`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the config; a missing file is an empty config. A damaged file is moved aside and
    /// reported as [`ConfigError::Corrupt`].
    pub fn load(&self) -> Result<Config, ConfigError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Io {
                    action: "read",
                    path: self.path.clone(),
                    source,
                })
            }
        };
        // Check the version before the full parse, so a newer file with fields we do not know
        // is reported as "upgrade", not as damage (and not moved aside).
        if let Ok(probe) = serde_json::from_slice::<VersionProbe>(&bytes) {
            if probe.version > CONFIG_VERSION {
                return Err(ConfigError::TooNew {
                    path: self.path.clone(),
                    found: probe.version,
                });
            }
        }
        match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) => Ok(config),
            Err(e) => Err(self.move_aside(describe_json_error(&e))),
        }
    }

    /// Writes the config atomically; the file is private to the user (0600 on Unix).
    pub fn save(&self, config: &Config) -> Result<(), ConfigError> {
        let mut text = serde_json::to_vec_pretty(config)?;
        text.push(b'\n');
        write_atomically(&self.path, &text).map_err(|source| ConfigError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        })?;
        tracing::debug!(path = %self.path.display(), "config saved");
        Ok(())
    }

    /// Loads, lets `change` edit the config, and saves it if `change` succeeded, all under an
    /// exclusive lock (`config.json.lock` beside the file): two processes (the CLI and a
    /// running app) or two threads editing at once each see the other's change, so none is
    /// lost (the review's finding 6).
    pub fn update<T, E>(&self, change: impl FnOnce(&mut Config) -> Result<T, E>) -> Result<T, E>
    where
        E: From<ConfigError>,
    {
        let locked = with_file_lock(&self.path, || {
            let mut config = self.load()?;
            let out = change(&mut config)?;
            self.save(&config)?;
            Ok(out)
        });
        locked.map_err(|source| {
            E::from(ConfigError::Io {
                action: "lock",
                path: self.path.clone(),
                source,
            })
        })?
    }

    fn move_aside(&self, reason: String) -> ConfigError {
        let stamp = OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_else(|_| "unknown-time".to_owned());
        let base = format!("{}.corrupt-{stamp}", file_name(&self.path));
        let mut kept_at = self.path.with_file_name(&base);
        let mut n = 1;
        while kept_at.exists() {
            n += 1;
            kept_at = self.path.with_file_name(format!("{base}-{n}"));
        }
        match fs::rename(&self.path, &kept_at) {
            Ok(()) => {
                tracing::error!(
                    path = %self.path.display(),
                    kept_at = %kept_at.display(),
                    %reason,
                    "damaged config file moved aside"
                );
                ConfigError::Corrupt {
                    path: self.path.clone(),
                    kept_at,
                    reason,
                }
            }
            Err(source) => ConfigError::CorruptNotMoved {
                path: self.path.clone(),
                reason,
                source,
            },
        }
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.json".to_owned())
}

/// Describes a JSON error by kind and position only: serde's messages can quote values from the
/// file, and a damaged file might hold anything, so its content is never echoed.
fn describe_json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "JSON of the wrong shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never a
/// torn one, even after a crash: a new private (0600) temporary file with a random name beside
/// it (never an existing file or a link someone left there), synced, renamed over `path`, and
/// the folder synced so that the rename itself is durable. Shared by every file this crate
/// writes (the config, the preferences).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let random = ids::new_id("").map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".{}.tmp-{random}", file_name(path)));
    let result = write_new_file(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if let Err(error) = result {
        // Best effort: the temporary file must not linger next to the real one.
        let _ = fs::remove_file(&tmp);
        return Err(error);
    }
    // Failure here only weakens crash safety.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Runs `change` while holding an exclusive lock on `<path>.lock` (beside `path`): writers of
/// one file in several processes or threads take turns, so none loses another's edit.
pub fn with_file_lock<T>(path: &Path, change: impl FnOnce() -> T) -> io::Result<T> {
    let lock_path = path.with_file_name(format!("{}.lock", file_name(path)));
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    // Blocks while another writer holds it; writers hold it for one load and one save.
    file.lock()?;
    let out = change();
    drop(file);
    Ok(out)
}

fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_entry() -> CapEntry {
        CapEntry {
            id: "cap-aaaaaaaaaaaaaaaa".into(),
            label: "Team Docs".into(),
            kind: CapKind::Directory,
            storage_index: "3zuybt32gbkka6auscupso6swe".parse().unwrap(),
            muted: false,
            created: time::macros::datetime!(2025-01-02 03:04:05 UTC),
            grid: None,
            pending: None,
        }
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn missing_file_is_empty_config() {
        let tmp = tempfile::tempdir().unwrap();
        let file = ConfigFile::new(tmp.path().join("config.json"));
        assert_eq!(file.load().unwrap(), Config::default());
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let file = ConfigFile::new(tmp.path().join("sub").join("config.json"));
        let mut config = Config::default();
        config.caps.push(sample_entry());
        file.save(&config).unwrap();
        file.save(&config).unwrap();
        assert_eq!(file.load().unwrap(), config);
        assert_eq!(dir_entries(&tmp.path().join("sub")), vec!["config.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_file_is_kept_aside_with_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        fs::write(&path, b"{\"version\": 1, \"caps\": [ URI:DIR2-RO:secret").unwrap();
        let file = ConfigFile::new(&path);
        let err = file.load().unwrap_err();
        let ConfigError::Corrupt { kept_at, .. } = &err else {
            panic!("expected Corrupt, got {err:?}");
        };
        let message = err.to_string();
        assert!(message.contains("moved aside"), "{message}");
        assert!(message.contains(&kept_at.display().to_string()));
        assert!(!message.contains("URI:"), "{message}");
        assert!(!path.exists());
        let kept = dir_entries(tmp.path());
        assert_eq!(kept.len(), 1);
        assert!(kept[0].starts_with("config.json.corrupt-"), "{kept:?}");
        // The damaged content is kept byte for byte.
        assert!(fs::read_to_string(kept_at)
            .unwrap()
            .contains("URI:DIR2-RO:secret"));
        // After that the config starts empty instead of failing forever.
        assert_eq!(file.load().unwrap(), Config::default());
    }

    #[test]
    fn second_corruption_does_not_overwrite_the_first_kept_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        let file = ConfigFile::new(&path);
        fs::write(&path, b"one").unwrap();
        assert!(file.load().is_err());
        fs::write(&path, b"two").unwrap();
        assert!(file.load().is_err());
        assert_eq!(dir_entries(tmp.path()).len(), 2);
    }

    #[test]
    fn wrong_shape_is_corrupt_too() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        fs::write(&path, br#"{"version": 1, "caps": [{"id": 5}]}"#).unwrap();
        let err = ConfigFile::new(&path).load().unwrap_err();
        assert!(matches!(err, ConfigError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn newer_version_is_refused_and_not_moved() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        fs::write(&path, br#"{"version": 9, "future": true}"#).unwrap();
        let err = ConfigFile::new(&path).load().unwrap_err();
        assert!(
            matches!(err, ConfigError::TooNew { found: 9, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("upgrade"));
        assert!(path.exists());
    }

    #[test]
    fn update_saves_only_on_success() {
        let tmp = tempfile::tempdir().unwrap();
        let file = ConfigFile::new(tmp.path().join("config.json"));
        file.update(|c| {
            c.caps.push(sample_entry());
            Ok::<_, ConfigError>(())
        })
        .unwrap();
        let failed: Result<(), ConfigError> = file.update(|c| {
            c.caps.clear();
            Err(ConfigError::TooNew {
                path: PathBuf::new(),
                found: 0,
            })
        });
        assert!(failed.is_err());
        assert_eq!(file.load().unwrap().caps.len(), 1);
    }
}
