//! What every store-using subcommand needs: the resolved folders, the chosen keyring and the
//! output format, and the stores built over them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use notifier_core::history::History;
use notifier_core::service::Notifier;
use notifier_core::store::caps::CapStore;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore, SecretError, SecretStore};
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;

/// The global options, resolved.
#[derive(Debug)]
pub struct Context {
    /// `--home` as given (the window started for a notification gets it too).
    home: Option<std::path::PathBuf>,
    paths: Paths,
    backend: KeyringBackend,
    json: bool,
    /// Whether the keyutils warning was printed, so that it appears once per run.
    warned: Arc<AtomicBool>,
}

impl Context {
    /// Resolves the folders (`--home`, else `TAHOE_NOTIFIER_HOME`, else the platform's).
    pub fn new(home: Option<&Path>, backend: KeyringBackend, json: bool) -> anyhow::Result<Self> {
        let paths = Paths::resolve(home).context("cannot choose where to keep the config")?;
        Ok(Self {
            home: home.map(Path::to_path_buf),
            paths,
            backend,
            json,
            warned: Arc::new(AtomicBool::new(false)),
        })
    }

    /// `--home` as given.
    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }

    /// The folders in use.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The keyring backend chosen with `--keyring`.
    pub fn backend(&self) -> KeyringBackend {
        self.backend
    }

    /// Creates the config and data folders (private to the user) before a first write.
    pub fn ensure_dirs(&self) -> anyhow::Result<()> {
        self.paths.ensure_dirs().with_context(|| {
            format!(
                "cannot create the folders {} and {}",
                self.paths.config_dir().display(),
                self.paths.data_dir().display()
            )
        })
    }

    /// The config file.
    pub fn config_file(&self) -> ConfigFile {
        ConfigFile::new(self.paths.config_file())
    }

    /// The keyring. With keyutils, the first actual use in this run prints a one-line warning
    /// on stderr, since the user may not know that secrets stored there do not survive a
    /// reboot; commands that only read the config stay quiet.
    pub fn secrets(&self) -> Arc<dyn SecretStore> {
        Arc::new(WarnOnUse {
            inner: KeyringSecretStore::new(self.backend),
            warned: Arc::clone(&self.warned),
        })
    }

    /// The cap store over the config file and the keyring.
    pub fn cap_store(&self) -> CapStore {
        CapStore::new(self.config_file(), self.secrets())
    }

    /// The use cases over the folders and the keyring.
    pub fn notifier(&self) -> Notifier {
        Notifier::new(self.paths.clone(), self.secrets())
    }

    /// The server store over the config file and the keyring.
    pub fn server_store(&self) -> ServerStore {
        ServerStore::new(self.config_file(), self.secrets())
    }

    /// The history database, or `None` when it does not exist yet: reading commands must not
    /// create files as a side effect, and a missing database simply means "nothing recorded".
    pub fn existing_history(&self) -> anyhow::Result<Option<History>> {
        let path = self.paths.history_db();
        if !path.exists() {
            return Ok(None);
        }
        History::open(&path)
            .map(Some)
            .with_context(|| format!("cannot open the history database {}", path.display()))
    }
}

/// A keyring that prints its backend's warning (if any) before the first access.
#[derive(Debug)]
struct WarnOnUse {
    inner: KeyringSecretStore,
    warned: Arc<AtomicBool>,
}

impl WarnOnUse {
    fn warn_once(&self) {
        if let Some(warning) = self.inner.backend().warning() {
            if !self.warned.swap(true, Ordering::Relaxed) {
                eprintln!("tahoe-notifier: warning: {warning}");
            }
        }
    }
}

impl SecretStore for WarnOnUse {
    fn put(&self, id: &str, secret: &str) -> Result<(), SecretError> {
        self.warn_once();
        self.inner.put(id, secret)
    }

    fn get(&self, id: &str) -> Result<String, SecretError> {
        self.warn_once();
        self.inner.get(id)
    }

    fn delete(&self, id: &str) -> Result<(), SecretError> {
        self.warn_once();
        self.inner.delete(id)
    }

    fn backend(&self) -> KeyringBackend {
        self.inner.backend()
    }

    fn check_usable(&self) -> Result<(), SecretError> {
        self.inner.check_usable()
    }
}
