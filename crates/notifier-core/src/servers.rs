//! Updates servers and grids (data model; no networking yet).
//!
//! An updates server is named by a NURL, `pb://<spki-hash>@<host>:<port>/<swissnum>#v=1`. The
//! swissnum is a secret (it authorizes requests), so the whole NURL goes to the keyring and the
//! config keeps only the non-secret parts: host, port, SPKI hash and a name.
//!
//! A grid file imports a grid in one go. It is a JSON object:
//!
//! ```json
//! {
//!   "name": "Bob's Storage Company",
//!   "gateway_url": "http://127.0.0.1:3456/",
//!   "updates_servers": ["pb://<hash>@updates.example:8443/<swissnum>#v=1"],
//!   "newscap": "URI:DIR2-RO:…"
//! }
//! ```
//!
//! `name` may also be spelled `nickname` and `newscap` is optional, as in Gridsync invites; other
//! keys (an invite's `introducer`, `shares-needed`, …) are ignored.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tahoe_caps::{Cap, CapRole, StorageIndex};
use thiserror::Error;

/// NURLs are the protocol crate's: one parser for the client and the server.
pub use mutable_updates::nurl::{Nurl, NurlError};

use crate::config::{ConfigError, ConfigFile};
use crate::ids::{self, IdError};
use crate::keyring_store::{SecretError, SecretStore};
use crate::text::clean_line;

/// Longest grid or server name kept, in characters.
const MAX_NAME_CHARS: usize = 100;

/// A known updates server, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEntry {
    /// Random id; also the keyring user name under which the NURL is stored.
    pub id: String,
    /// A name to show (from the grid file or the user), if any.
    #[serde(default)]
    pub name: Option<String>,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// SPKI hash the server's certificate must match.
    pub spki_hash: String,
    /// The grid it came with, if imported from a grid file.
    #[serde(default)]
    pub grid: Option<String>,
}

/// An imported grid, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridEntry {
    /// The grid's name.
    pub name: String,
    /// The web gateway to fetch listings through.
    pub gateway_url: String,
    /// Keyring id of the grid's news read-cap, if it has one.
    #[serde(default)]
    pub news_id: Option<String>,
    /// Storage index of the news directory, if it has one.
    #[serde(default)]
    pub news_storage_index: Option<StorageIndex>,
}

/// A parsed grid file. Holds secrets (NURLs, news cap): keep it out of logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridFile {
    /// The grid's name.
    pub name: String,
    /// The gateway URL (`http://` or `https://`, no credentials).
    pub gateway_url: String,
    /// The updates servers.
    pub updates_servers: Vec<Nurl>,
    /// The news read-cap (always a read-only directory cap), if any.
    pub newscap: Option<Cap>,
}

/// Why a grid file is not usable. Never quotes secrets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GridFileError {
    /// Not JSON.
    #[error("the grid file is not valid JSON (line {line}, column {column})")]
    NotJson {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
    },
    /// Not a JSON object.
    #[error("the grid file must be a JSON object")]
    NotObject,
    /// A required key is absent.
    #[error("the grid file has no `{0}`")]
    Missing(&'static str),
    /// A key has the wrong JSON type.
    #[error("in the grid file, `{key}` must be {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The grid name is empty or has control characters.
    #[error("the grid name must be non-empty text of at most {MAX_NAME_CHARS} characters without control characters")]
    BadName,
    /// The gateway URL is not usable.
    #[error("the grid file's `gateway_url` {0}")]
    BadGateway(&'static str),
    /// An updates-server entry is not a NURL.
    #[error("the grid file's updates server #{index} is not a valid NURL: {reason}")]
    BadNurl {
        /// 1-based position in the list.
        index: usize,
        /// What is wrong.
        reason: NurlError,
    },
    /// The news cap is not usable.
    #[error("the grid file's `newscap` {0}")]
    BadNewscap(String),
}

/// Parses a grid file's text.
pub fn parse_grid_file(text: &str) -> Result<GridFile, GridFileError> {
    let value: Value = serde_json::from_str(text).map_err(|e| GridFileError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let obj = value.as_object().ok_or(GridFileError::NotObject)?;

    let name = match (string_key(obj, "name")?, string_key(obj, "nickname")?) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => return Err(GridFileError::Missing("name")),
    };
    let clean = clean_line(name, usize::MAX);
    if clean.is_empty() || clean != name.trim() || clean.chars().count() > MAX_NAME_CHARS {
        return Err(GridFileError::BadName);
    }

    let gateway_url =
        string_key(obj, "gateway_url")?.ok_or(GridFileError::Missing("gateway_url"))?;
    let gateway_url = check_gateway_url(gateway_url)?;

    let servers = obj
        .get("updates_servers")
        .ok_or(GridFileError::Missing("updates_servers"))?
        .as_array()
        .ok_or(GridFileError::WrongType {
            key: "updates_servers",
            expected: "a list of NURL strings",
        })?;
    if servers.is_empty() {
        return Err(GridFileError::WrongType {
            key: "updates_servers",
            expected: "a non-empty list of NURL strings",
        });
    }
    let mut updates_servers: Vec<Nurl> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let s = s.as_str().ok_or(GridFileError::WrongType {
            key: "updates_servers",
            expected: "a list of NURL strings",
        })?;
        let nurl: Nurl = s.trim().parse().map_err(|reason| GridFileError::BadNurl {
            index: i + 1,
            reason,
        })?;
        if !updates_servers.contains(&nurl) {
            updates_servers.push(nurl);
        }
    }

    let newscap = match string_key(obj, "newscap")? {
        None => None,
        Some(text) => {
            let cap = Cap::parse(text.trim())
                .map_err(|e| GridFileError::BadNewscap(format!("is not a cap: {e}")))?;
            if !cap.is_directory() || !cap.is_mutable() || cap.role() == CapRole::Verify {
                return Err(GridFileError::BadNewscap(
                    "must be a read-cap of a mutable directory (URI:DIR2-RO:… or URI:DIR2-MDMF-RO:…)"
                        .to_owned(),
                ));
            }
            // Only reading is ever needed: never keep more authority than that.
            Some(cap.read_only())
        }
    };

    Ok(GridFile {
        name: clean,
        gateway_url,
        updates_servers,
        newscap,
    })
}

fn string_key<'a>(
    obj: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, GridFileError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(GridFileError::WrongType {
            key,
            expected: "a string",
        }),
    }
}

fn check_gateway_url(url: &str) -> Result<String, GridFileError> {
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or(GridFileError::BadGateway(
            "must start with http:// or https://",
        ))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(GridFileError::BadGateway("has no host"));
    }
    if authority.contains('@') {
        // Credentials in a URL would end up in the (non-secret) config file.
        return Err(GridFileError::BadGateway(
            "must not contain a user name or password",
        ));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(GridFileError::BadGateway(
            "contains spaces or control characters",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

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
    /// config, all in one config write. On failure nothing is kept.
    pub fn import_grid(&self, grid: &GridFile) -> Result<GridEntry, ServerStoreError> {
        let config = self.config.load()?;
        if config.grids.iter().any(|g| g.name == grid.name) {
            return Err(ServerStoreError::DuplicateGrid(grid.name.clone()));
        }
        let mut stored: Vec<String> = Vec::new();
        let result = self.import_grid_inner(grid, &mut stored);
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
            gateway_url: grid.gateway_url.clone(),
            news_id,
            news_storage_index,
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
    use crate::keyring_store::MemorySecretStore;

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
    fn a_grid_files_nurls_are_parsed_and_bad_ones_named_without_the_swissnum() {
        let g = parse_grid_file(&grid_json("")).unwrap();
        let n = &g.updates_servers[0];
        assert_eq!(n.spki_hash_base64(), HASH);
        assert_eq!((n.host.as_str(), n.port), ("127.0.0.1", 47002));
        assert_eq!(n.to_string(), NURL);
        assert!(!format!("{n:?}").contains(SWISS));
        let bad = grid_json("").replacen(":47002/", ":0/", 1);
        let err = parse_grid_file(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                GridFileError::BadNurl {
                    reason: NurlError::BadPort,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains(SWISS), "{err}");
    }

    #[test]
    fn parses_a_grid_file() {
        let newscap = DIR_RW;
        let g = parse_grid_file(&grid_json(&format!(r#", "newscap": "{newscap}""#))).unwrap();
        assert_eq!(g.name, "Bob's Grid");
        assert_eq!(g.gateway_url, "http://127.0.0.1:3456");
        assert_eq!(g.updates_servers.len(), 1, "duplicates are merged");
        let cap = g.newscap.unwrap();
        assert!(cap.is_readonly(), "the news cap is kept read-only");
        assert!(cap.is_directory());
        assert!(parse_grid_file(&grid_json("")).unwrap().newscap.is_none());
    }

    #[test]
    fn grid_file_errors_are_clear() {
        let check = |text: &str, want: &str| {
            let err = parse_grid_file(text).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
            assert!(!err.contains(SWISS) && !err.contains("rvbf3wlb"), "{err}");
        };
        check("{", "not valid JSON");
        check("[]", "must be a JSON object");
        check(
            r#"{"gateway_url": "http://x", "updates_servers": []}"#,
            "no `name`",
        );
        check(
            r#"{"name": "G", "updates_servers": []}"#,
            "no `gateway_url`",
        );
        check(
            r#"{"name": "G", "gateway_url": "ftp://x"}"#,
            "http:// or https://",
        );
        check(
            r#"{"name": "G", "gateway_url": "http://u:p@x"}"#,
            "user name or password",
        );
        check(
            r#"{"name": "G", "gateway_url": "http://x"}"#,
            "no `updates_servers`",
        );
        check(
            r#"{"name": "G", "gateway_url": "http://x", "updates_servers": []}"#,
            "non-empty",
        );
        check(
            r#"{"name": 5, "gateway_url": "http://x", "updates_servers": []}"#,
            "`name` must be a string",
        );
        check(
            r#"{"name": "a\nb", "gateway_url": "http://x", "updates_servers": []}"#,
            "grid name",
        );
        check(
            &format!(
                r#"{{"name": "G", "gateway_url": "http://x", "updates_servers": ["{NURL}", "pb://{HASH}@h:1/{SWISS}#v=9"]}}"#
            ),
            "updates server #2 is not a valid NURL: the NURL's version is not 1",
        );
        check(
            &grid_json(r#", "newscap": "URI:DIR2-RO:garbage""#),
            "`newscap` is not a cap",
        );
        check(
            &grid_json(r#", "newscap": "URI:LIT:nbswy3dp""#),
            "read-cap of a mutable directory",
        );
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
}
