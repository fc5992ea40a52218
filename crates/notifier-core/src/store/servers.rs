//! The server store: updates servers and grids.
//!
//! An updates server is named by a NURL, `pb://<spki-hash>@<host>:<port>/<swissnum>#v=1`. The
//! swissnum is a secret (it authorizes requests), so the whole NURL goes to the keyring and the
//! config keeps only the non-secret parts: host, port, SPKI hash and a name. A grid (its
//! description, [`crate::grid::description`]) is imported in one go: its servers, its gateway and its
//! news cap.

use std::sync::Arc;

use tahoe_caps::Cap;
use thiserror::Error;

/// NURLs are the protocol crate's: one parser for the client and the server.
pub use mutable_updates::nurl::{Nurl, NurlError};

use crate::describe::text::clean_line;
use crate::grid::description::{GridFile, MAX_NAME_CHARS};
use crate::ids::{self, IdError};
/// The records are the schema module's.
pub use crate::schema::{GridEntry, ServerEntry};
use crate::store::config::{ConfigError, ConfigFile};
use crate::store::keyring::{SecretError, SecretStore};

/// Why a server or grid operation failed.
#[derive(Debug, Error)]
pub enum ServerStoreError {
    /// Config file trouble.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Keyring trouble.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// No random id.
    #[error(transparent)]
    Id(#[from] IdError),
    /// No such server.
    #[error("no updates server with id {0}")]
    UnknownServer(String),
    /// No such grid.
    #[error("no grid named {0:?}")]
    UnknownGrid(String),
    /// The server is already known.
    #[error("the updates server {host}:{port} is already known (id {id})")]
    DuplicateServer {
        /// Existing entry's id.
        id: String,
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// A grid of that name was already imported.
    #[error("a grid named {0:?} is already imported; remove it first to import it again")]
    DuplicateGrid(String),
    /// The keyring holds something that is no longer a NURL.
    #[error("the keyring entry {0} does not hold a valid NURL any more; remove the server and add it again")]
    StoredNurlInvalid(String),
    /// The keyring holds something that is no longer a cap.
    #[error("the keyring entry {0} does not hold a valid news cap any more; remove the grid and import it again")]
    StoredCapInvalid(String),
    /// The description says "use your own gateway" and no gateway was chosen for it.
    #[error("the grid {0:?} uses each user's own Tahoe node as its gateway, and none was given")]
    GatewayNotChosen(String),
}

/// Known servers and grids: the config for the public parts, the keyring for the secrets.
#[derive(Debug, Clone)]
pub struct ServerStore {
    config: ConfigFile,
    secrets: Arc<dyn SecretStore>,
}

impl ServerStore {
    /// A store over the config file and secret store given.
    pub fn new(config: ConfigFile, secrets: Arc<dyn SecretStore>) -> Self {
        Self { config, secrets }
    }

    /// Every known server.
    pub fn list(&self) -> Result<Vec<ServerEntry>, ServerStoreError> {
        Ok(self.config.load()?.servers)
    }

    /// Every imported grid.
    pub fn grids(&self) -> Result<Vec<GridEntry>, ServerStoreError> {
        Ok(self.config.load()?.grids)
    }

    /// Adds one server: the NURL to the keyring, its public parts to the config.
    pub fn add(
        &self,
        nurl: &Nurl,
        name: Option<&str>,
        grid: Option<&str>,
    ) -> Result<ServerEntry, ServerStoreError> {
        let entry = ServerEntry {
            id: ids::new_id("srv-")?,
            name: name
                .map(|n| clean_line(n, MAX_NAME_CHARS))
                .filter(|n| !n.is_empty()),
            host: nurl.host.clone(),
            port: nurl.port,
            spki_hash: nurl.spki_hash_base64(),
            grid: grid.map(str::to_owned),
        };
        if let Some(existing) = self.find_duplicate(&entry)? {
            return Err(existing);
        }
        self.secrets.put(&entry.id, &nurl.to_string())?;
        let saved = self.config.update(|c| {
            c.servers.push(entry.clone());
            Ok::<_, ConfigError>(())
        });
        if let Err(e) = saved {
            // Do not leave an orphaned secret behind.
            let _ = self.secrets.delete(&entry.id);
            return Err(e.into());
        }
        tracing::info!(id = %entry.id, host = %entry.host, port = entry.port, "updates server added");
        Ok(entry)
    }

    fn find_duplicate(
        &self,
        entry: &ServerEntry,
    ) -> Result<Option<ServerStoreError>, ServerStoreError> {
        Ok(self
            .config
            .load()?
            .servers
            .into_iter()
            .find(|s| {
                s.host == entry.host && s.port == entry.port && s.spki_hash == entry.spki_hash
            })
            .map(|s| ServerStoreError::DuplicateServer {
                id: s.id,
                host: s.host,
                port: s.port,
            }))
    }

    /// The NURL of server `id`, from the keyring.
    pub fn nurl(&self, id: &str) -> Result<Nurl, ServerStoreError> {
        if self.config.load()?.servers.iter().all(|s| s.id != id) {
            return Err(ServerStoreError::UnknownServer(id.to_owned()));
        }
        self.secrets
            .get(id)?
            .parse()
            .map_err(|_| ServerStoreError::StoredNurlInvalid(id.to_owned()))
    }

    /// Removes server `id`: its keyring entry, then its config entry.
    pub fn remove(&self, id: &str) -> Result<(), ServerStoreError> {
        if self.config.load()?.servers.iter().all(|s| s.id != id) {
            return Err(ServerStoreError::UnknownServer(id.to_owned()));
        }
        self.secrets.delete(id)?;
        self.config.update(|c| {
            c.servers.retain(|s| s.id != id);
            Ok::<_, ConfigError>(())
        })?;
        Ok(())
    }

    /// Imports a grid: each updates server and the news cap go to the keyring, the rest to the
    /// config, all in one config write. On failure nothing is kept. A grid whose description
    /// leaves the gateway to each user ([`crate::grid::description::GridGateway::OwnNode`]) must have
    /// one chosen first ([`GridFile::gateway`] set to a URL).
    pub fn import_grid(&self, grid: &GridFile) -> Result<GridEntry, ServerStoreError> {
        self.import_grid_allowing(grid, false)
    }

    /// [`ServerStore::import_grid`], recording whether a plain `http://` gateway on another
    /// machine was allowed (the engine refuses to send caps there otherwise).
    pub fn import_grid_allowing(
        &self,
        grid: &GridFile,
        allow_plain_http: bool,
    ) -> Result<GridEntry, ServerStoreError> {
        if grid.gateway.url().is_none() {
            return Err(ServerStoreError::GatewayNotChosen(grid.name.clone()));
        }
        let config = self.config.load()?;
        if config.grids.iter().any(|g| g.name == grid.name) {
            return Err(ServerStoreError::DuplicateGrid(grid.name.clone()));
        }
        let mut stored: Vec<String> = Vec::new();
        let result = self.import_grid_inner(grid, allow_plain_http, &mut stored);
        if result.is_err() {
            for id in &stored {
                let _ = self.secrets.delete(id);
            }
        }
        result
    }

    fn import_grid_inner(
        &self,
        grid: &GridFile,
        allow_plain_http: bool,
        stored: &mut Vec<String>,
    ) -> Result<GridEntry, ServerStoreError> {
        let mut servers = Vec::new();
        for nurl in &grid.updates_servers {
            let entry = ServerEntry {
                id: ids::new_id("srv-")?,
                name: None,
                host: nurl.host.clone(),
                port: nurl.port,
                spki_hash: nurl.spki_hash_base64(),
                grid: Some(grid.name.clone()),
            };
            self.secrets.put(&entry.id, &nurl.to_string())?;
            stored.push(entry.id.clone());
            servers.push(entry);
        }
        let (news_id, news_storage_index) = match &grid.newscap {
            Some(cap) => {
                let id = ids::new_id("news-")?;
                self.secrets.put(&id, &cap.read_only().to_string())?;
                stored.push(id.clone());
                (Some(id), cap.storage_index())
            }
            None => (None, None),
        };
        let entry = GridEntry {
            name: grid.name.clone(),
            gateway_url: grid.gateway.url().unwrap_or_default().to_owned(),
            news_id,
            news_storage_index,
            allow_plain_http,
        };
        self.config.update(|c| {
            // Servers already known (e.g. added by hand) are not added twice.
            for s in servers {
                if c.servers
                    .iter()
                    .any(|o| o.host == s.host && o.port == s.port && o.spki_hash == s.spki_hash)
                {
                    let _ = self.secrets.delete(&s.id);
                } else {
                    c.servers.push(s);
                }
            }
            c.grids.push(entry.clone());
            Ok::<_, ConfigError>(())
        })?;
        tracing::info!(grid = %entry.name, "grid imported");
        Ok(entry)
    }

    /// The news read-cap of grid `name`, if it has one.
    pub fn news_cap(&self, name: &str) -> Result<Option<Cap>, ServerStoreError> {
        let config = self.config.load()?;
        let grid = config
            .grids
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| ServerStoreError::UnknownGrid(name.to_owned()))?;
        let Some(id) = &grid.news_id else {
            return Ok(None);
        };
        let text = self.secrets.get(id)?;
        Cap::parse(&text)
            .map(Some)
            .map_err(|_| ServerStoreError::StoredCapInvalid(id.clone()))
    }

    /// Removes grid `name`, its servers and its news cap.
    pub fn remove_grid(&self, name: &str) -> Result<(), ServerStoreError> {
        let config = self.config.load()?;
        let grid = config
            .grids
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| ServerStoreError::UnknownGrid(name.to_owned()))?;
        for s in config
            .servers
            .iter()
            .filter(|s| s.grid.as_deref() == Some(name))
        {
            self.secrets.delete(&s.id)?;
        }
        if let Some(id) = &grid.news_id {
            self.secrets.delete(id)?;
        }
        self.config.update(|c| {
            c.servers.retain(|s| s.grid.as_deref() != Some(name));
            c.grids.retain(|g| g.name != name);
            Ok::<_, ConfigError>(())
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::description::{parse_grid_file, GridGateway};
    use crate::store::keyring::MemorySecretStore;

    const HASH: &str = "zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE";
    const SWISS: &str = "ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy";
    const NURL: &str =
        "pb://zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE@127.0.0.1:47002/ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy#v=1";
    const DIR_RW: &str =
        "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

    fn grid_json(extra: &str) -> String {
        format!(
            r#"{{"nickname": "Bob's Grid", "gateway_url": "http://127.0.0.1:3456/",
                "updates_servers": ["{NURL}", "{NURL}"], "introducer": "pb://x@y:1/z"{extra}}}"#
        )
    }

    fn store() -> (tempfile::TempDir, ServerStore, Arc<MemorySecretStore>) {
        let tmp = tempfile::tempdir().unwrap();
        let secrets = Arc::new(MemorySecretStore::default());
        let store = ServerStore::new(
            ConfigFile::new(tmp.path().join("config.json")),
            secrets.clone(),
        );
        (tmp, store, secrets)
    }

    #[test]
    fn add_list_get_remove_server() {
        let (tmp, store, secrets) = store();
        let nurl: Nurl = NURL.parse().unwrap();
        let entry = store.add(&nurl, Some("Server A"), None).unwrap();
        assert!(entry.id.starts_with("srv-"));
        assert_eq!(store.list().unwrap(), vec![entry.clone()]);
        assert_eq!(store.nurl(&entry.id).unwrap(), nurl);
        assert!(matches!(
            store.add(&nurl, None, None),
            Err(ServerStoreError::DuplicateServer { .. })
        ));
        let config_text = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
        assert!(config_text.contains(HASH));
        assert!(
            !config_text.contains(SWISS),
            "the swissnum never reaches the config file"
        );
        assert!(!config_text.contains("pb://"));
        store.remove(&entry.id).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(secrets.all().is_empty());
        assert!(matches!(
            store.remove(&entry.id),
            Err(ServerStoreError::UnknownServer(_))
        ));
    }

    #[test]
    fn import_and_remove_grid() {
        let (tmp, store, secrets) = store();
        let g = parse_grid_file(&grid_json(&format!(r#", "newscap": "{DIR_RW}""#))).unwrap();
        let entry = store.import_grid(&g).unwrap();
        assert_eq!(entry.name, "Bob's Grid");
        assert!(entry.news_storage_index.is_some());
        let servers = store.list().unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].grid.as_deref(), Some("Bob's Grid"));
        let news = store.news_cap("Bob's Grid").unwrap().unwrap();
        assert!(news.is_readonly());
        let config_text = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
        assert!(!config_text.contains(SWISS));
        assert!(!config_text.contains("URI:"));
        assert!(!config_text.contains(&news.to_string()[12..]));
        assert!(matches!(
            store.import_grid(&g),
            Err(ServerStoreError::DuplicateGrid(_))
        ));
        assert_eq!(secrets.all().len(), 2);
        store.remove_grid("Bob's Grid").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(store.grids().unwrap().is_empty());
        assert!(secrets.all().is_empty());
    }

    #[test]
    fn failed_import_leaves_nothing() {
        let (_tmp, store, secrets) = store();
        secrets
            .fail_puts
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let g = parse_grid_file(&grid_json("")).unwrap();
        assert!(store.import_grid(&g).is_err());
        assert!(store.grids().unwrap().is_empty());
        assert!(secrets.all().is_empty());
    }

    #[test]
    fn a_grid_on_the_users_own_gateway_needs_one_chosen_first() {
        let (_tmp, store, secrets) = store();
        let mut g =
            parse_grid_file(&grid_json("").replace(r#""http://127.0.0.1:3456/""#, "null")).unwrap();
        assert_eq!(g.gateway, GridGateway::OwnNode);
        let err = store.import_grid(&g).unwrap_err();
        assert!(
            matches!(err, ServerStoreError::GatewayNotChosen(_)),
            "{err}"
        );
        assert!(store.grids().unwrap().is_empty());
        assert!(secrets.all().is_empty());
        g.gateway = GridGateway::Url("http://127.0.0.1:4567".to_owned());
        assert_eq!(
            store.import_grid(&g).unwrap().gateway_url,
            "http://127.0.0.1:4567"
        );
    }
}
