//! Where the notifier keeps its files: the config dir (non-secret config) and the data dir
//! (history database).
//!
//! Normally these are the platform dirs from `directories`. Tests and portable setups point
//! everything at one folder instead, through the `TAHOE_NOTIFIER_HOME` environment variable or an
//! explicit argument (e.g. a `--home` flag), which wins over the variable.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use directories::ProjectDirs;
use thiserror::Error;

/// The environment variable that moves all of the notifier's files under one folder.
pub const HOME_ENV: &str = "TAHOE_NOTIFIER_HOME";

/// File name of the non-secret config inside the config dir.
pub const CONFIG_FILE: &str = "config.json";

/// File name of the history database inside the data dir.
pub const HISTORY_FILE: &str = "history.sqlite3";

/// Why the notifier's folders could not be found.
#[derive(Debug, Error)]
pub enum PathsError {
    /// Neither an override nor a home directory is available.
    #[error(
        "cannot find a home directory for the config and data folders: \
         set {HOME_ENV} to a folder the notifier may use"
    )]
    NoHome,
}

/// The folders the notifier uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    config_dir: PathBuf,
    data_dir: PathBuf,
}

impl Paths {
    /// Everything under one folder: `<home>/config` and `<home>/data`.
    pub fn under(home: &Path) -> Self {
        Self {
            config_dir: home.join("config"),
            data_dir: home.join("data"),
        }
    }

    /// The platform's folders (e.g. `~/.config/tahoe-notifier` and `~/.local/share/tahoe-notifier`
    /// on Linux).
    pub fn platform() -> Result<Self, PathsError> {
        let dirs =
            ProjectDirs::from("org", "Tahoe-LAFS", "tahoe-notifier").ok_or(PathsError::NoHome)?;
        Ok(Self {
            config_dir: dirs.config_dir().to_path_buf(),
            data_dir: dirs.data_dir().to_path_buf(),
        })
    }

    /// Picks the folders: an explicit `home` argument first, then `TAHOE_NOTIFIER_HOME`, then the
    /// platform's folders.
    pub fn resolve(home: Option<&Path>) -> Result<Self, PathsError> {
        Self::resolve_with(home, std::env::var_os(HOME_ENV))
    }

    /// [`Paths::resolve`] with the environment value passed in, so tests need not touch the
    /// process environment (which is shared between test threads).
    pub fn resolve_with(
        home: Option<&Path>,
        env_home: Option<OsString>,
    ) -> Result<Self, PathsError> {
        if let Some(home) = home {
            return Ok(Self::under(home));
        }
        // An empty variable is treated as unset: `TAHOE_NOTIFIER_HOME= cmd` should not mean "the
        // current directory".
        match env_home {
            Some(value) if !value.is_empty() => Ok(Self::under(Path::new(&value))),
            _ => Self::platform(),
        }
    }

    /// The folder of the non-secret config file.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The folder of the history database.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The config file's path.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join(CONFIG_FILE)
    }

    /// The history database's path.
    pub fn history_db(&self) -> PathBuf {
        self.data_dir.join(HISTORY_FILE)
    }

    /// Creates both folders if missing; on Unix they are made private to the user (0700), since
    /// the history names files and folders the user watches.
    pub fn ensure_dirs(&self) -> io::Result<()> {
        create_private_dir(&self.config_dir)?;
        create_private_dir(&self.data_dir)
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_home_wins_over_env() {
        let paths = Paths::resolve_with(Some(Path::new("/a")), Some(OsString::from("/b"))).unwrap();
        assert_eq!(paths.config_file(), Path::new("/a/config/config.json"));
        assert_eq!(paths.history_db(), Path::new("/a/data/history.sqlite3"));
    }

    #[test]
    fn env_home_is_used() {
        let paths = Paths::resolve_with(None, Some(OsString::from("/b"))).unwrap();
        assert_eq!(paths.config_dir(), Path::new("/b/config"));
        assert_eq!(paths.data_dir(), Path::new("/b/data"));
    }

    #[test]
    fn empty_env_falls_back_to_platform() {
        // The platform dirs exist whenever HOME is set, which it is for cargo test.
        if let Ok(platform) = Paths::platform() {
            assert_eq!(
                Paths::resolve_with(None, Some(OsString::new())).unwrap(),
                platform
            );
        }
    }

    #[test]
    fn ensure_dirs_creates_private_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::under(tmp.path());
        paths.ensure_dirs().unwrap();
        assert!(paths.config_dir().is_dir());
        assert!(paths.data_dir().is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(paths.config_dir())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        // A second call is harmless.
        paths.ensure_dirs().unwrap();
    }
}
