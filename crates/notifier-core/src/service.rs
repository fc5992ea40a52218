//! The use cases every face (the CLI, the tray, the window) calls: one behaviour per action,
//! written once. A face parses its own input and shows its own output; what an action does to
//! the stores, and what it refuses, is decided here.
//!
//! [`Notifier`] is opened over the folders and the keyring. It keeps no state of its own: every
//! call reads and writes the stores, so several processes (the CLI beside a running tray) see
//! each other's changes; a running engine follows the config file for them.

use std::path::PathBuf;
use std::sync::Arc;

use tahoe_caps::Cap;
use thiserror::Error;

use crate::grid::description::{check_gateway_url, GridFile, GridGateway};
use crate::grid::invite::{self, InviteCode, InviteError};
use crate::grid::tahoe_node::{nickname_for, NodeDir, NodeDirError};
use crate::store::caps::{AddedCap, CapStore, CapStoreError};
use crate::store::config::{ConfigError, ConfigFile};
use crate::store::keyring::SecretStore;
use crate::store::paths::Paths;
use crate::store::servers::{GridEntry, ServerEntry, ServerStore, ServerStoreError};

/// Why a use case failed. The texts are for the user and carry no secret.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The cap store refused or failed.
    #[error(transparent)]
    Caps(#[from] CapStoreError),
    /// The server store refused or failed.
    #[error(transparent)]
    Servers(#[from] ServerStoreError),
    /// The config file failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The history failed.
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    /// The preferences failed.
    #[error(transparent)]
    Preferences(#[from] crate::store::preferences::PreferencesError),
    /// The local Tahoe node's files could not be read.
    #[error(transparent)]
    NodeDir(#[from] NodeDirError),
    /// The grid uses each user's own gateway, and this user has none we can find.
    #[error("the grid {grid:?} is meant to be used through your own Tahoe node, and {why}: give the node directory (or the URL of a Tahoe web gateway) to use")]
    NoOwnGateway {
        /// The grid's name.
        grid: String,
        /// What was missing.
        why: &'static str,
    },
    /// The gateway URL given for a grid is not usable.
    #[error("the gateway URL {0}")]
    BadGatewayUrl(&'static str),
    /// The alias is not in the node's alias file.
    #[error("the Tahoe node at {} has no alias {alias:?} (see `tahoe list-aliases`)", node.display())]
    UnknownAlias {
        /// The node directory.
        node: PathBuf,
        /// The alias asked for.
        alias: String,
    },
    /// The grid's gateway is plain http:// on another machine.
    #[error("the grid {grid:?} names the gateway {url}, plain http:// on another machine: every cap you watch would cross the network unencrypted. Ask the operator for an https:// gateway, use your own Tahoe node, or allow it explicitly if you trust that network")]
    PlainHttpGateway {
        /// The grid's name.
        grid: String,
        /// The gateway.
        url: String,
    },
    /// The invite did not go through.
    #[error(transparent)]
    Invite(#[from] InviteError),
}

/// Which gateway to use for a grid that leaves the choice to each user.
#[derive(Debug, Clone, Default)]
pub struct GatewayChoice {
    /// A URL the user gave; wins over the node's.
    pub url: Option<String>,
    /// The user's Tahoe node, whose `node.url` names its gateway.
    pub node: Option<NodeDir>,
    /// Allow a plain `http://` gateway on another machine (caps then cross the network
    /// unencrypted): refused unless the user says so.
    pub allow_plain_http: bool,
}

/// Where an imported grid's gateway came from, to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewaySource {
    /// The grid's description named it.
    GridDescription,
    /// The user's Tahoe node's `node.url` (this file).
    NodeUrl(PathBuf),
    /// The user gave it.
    Given,
}

/// A grid as it was imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedGrid {
    /// The stored entry.
    pub grid: GridEntry,
    /// Its updates servers as stored (named after the storage servers where the node knew them).
    pub servers: Vec<ServerEntry>,
    /// Where its gateway came from.
    pub gateway_source: GatewaySource,
}

/// The stores a face acts on, and the actions.
#[derive(Debug, Clone)]
pub struct Notifier {
    paths: Paths,
    secrets: Arc<dyn SecretStore>,
}

impl Notifier {
    /// The use cases over the folders `paths` and the keyring `secrets`.
    pub fn new(paths: Paths, secrets: Arc<dyn SecretStore>) -> Self {
        Self { paths, secrets }
    }

    /// The folders in use.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The keyring in use.
    pub fn secrets(&self) -> &Arc<dyn SecretStore> {
        &self.secrets
    }

    /// The config file.
    pub fn config_file(&self) -> ConfigFile {
        ConfigFile::new(self.paths.config_file())
    }

    /// The watched caps.
    pub fn caps(&self) -> CapStore {
        CapStore::new(self.config_file(), Arc::clone(&self.secrets))
    }

    /// The updates servers and grids.
    pub fn servers(&self) -> ServerStore {
        ServerStore::new(self.config_file(), Arc::clone(&self.secrets))
    }

    /// Starts watching `cap` in `grid` (default: the only grid, if there is exactly one). Only
    /// its read-only form is ever stored: a write-cap is reduced here, before anything else sees
    /// it. Without a label, one is made from the kind and the storage index.
    pub fn add_cap(
        &self,
        cap: &Cap,
        label: Option<&str>,
        grid: Option<&str>,
    ) -> Result<AddedCap, ServiceError> {
        let read_cap = cap.read_only();
        let label = match label {
            Some(label) => label.to_owned(),
            None => default_label(&read_cap),
        };
        let grids = self.servers().grids()?;
        let grid = match grid {
            Some(name) => {
                if !grids.iter().any(|g| g.name == name) {
                    return Err(ServiceError::Servers(ServerStoreError::UnknownGrid(
                        name.to_owned(),
                    )));
                }
                Some(name.to_owned())
            }
            None => match grids.as_slice() {
                [only] => Some(only.name.clone()),
                _ => None,
            },
        };
        self.ensure_dirs()?;
        Ok(self.caps().add(&read_cap, &label, grid.as_deref())?)
    }

    /// Starts watching the cap of the Tahoe alias `alias` of `node` (labelled with the alias's
    /// name unless `label` is given).
    pub fn add_alias(
        &self,
        node: &NodeDir,
        alias: &str,
        label: Option<&str>,
        grid: Option<&str>,
    ) -> Result<AddedCap, ServiceError> {
        let found = node
            .alias(alias)?
            .ok_or_else(|| ServiceError::UnknownAlias {
                node: node.path().to_path_buf(),
                alias: alias.trim_end_matches(':').to_owned(),
            })?;
        self.add_cap(&found.read_cap, Some(label.unwrap_or(&found.name)), grid)
    }

    /// Stops watching the cap `id`: its keyring and config entries go, and so does its history
    /// (its change records and the snapshot of a directory have no use once the cap is gone).
    /// A running engine host sees it within a second and unsubscribes it.
    pub fn remove_cap(&self, id: &str) -> Result<crate::store::config::CapEntry, ServiceError> {
        let removed = self.caps().remove(id)?;
        if self.paths.history_db().exists() {
            crate::history::History::open(&self.paths.history_db())?.forget_cap(id)?;
        }
        Ok(removed)
    }

    /// Gives the cap `id` a new label (the next notifications use it).
    pub fn rename_cap(&self, id: &str, label: &str) -> Result<(), ServiceError> {
        Ok(self.caps().rename(id, label)?)
    }

    /// Mutes or unmutes the cap `id`: muted changes are recorded, not notified.
    pub fn set_muted(&self, id: &str, muted: bool) -> Result<(), ServiceError> {
        Ok(self.caps().set_muted(id, muted)?)
    }

    /// Holds notifications back until `until` (`None`: resumes). Written to the preferences,
    /// which a running host follows; faces that reach the host ask it instead, so its state
    /// follows at once.
    pub fn pause(&self, until: Option<time::OffsetDateTime>) -> Result<(), ServiceError> {
        self.ensure_dirs()?;
        crate::store::preferences::Preferences::update(self.paths.config_dir(), |p| {
            p.paused_until = until;
        })?;
        Ok(())
    }

    /// Marks every change and news item read (of one cap only, with `cap_id`); returns how
    /// many were unread.
    pub fn mark_all_read(&self, cap_id: Option<&str>) -> Result<u64, ServiceError> {
        if !self.paths.history_db().exists() {
            return Ok(0);
        }
        Ok(crate::history::History::open(&self.paths.history_db())?.mark_all_read(cap_id)?)
    }

    /// Imports a grid's description. A description that leaves the gateway to each user gets
    /// the one `gateway` names (a URL given, else the node's `node.url`). Its updates servers
    /// are named after the storage servers the node knows with the same certificate. Nothing is
    /// stored unless everything is.
    pub fn import_grid(
        &self,
        mut grid: GridFile,
        gateway: &GatewayChoice,
    ) -> Result<ImportedGrid, ServiceError> {
        let gateway_source = resolve_gateway(&mut grid, gateway)?;
        if let Some(url) = grid.gateway.url() {
            if crate::grid::description::is_plain_http_remote(url) && !gateway.allow_plain_http {
                return Err(ServiceError::PlainHttpGateway {
                    grid: grid.name.clone(),
                    url: url.to_owned(),
                });
            }
        }
        self.ensure_dirs()?;
        let servers = self.servers();
        let entry = servers.import_grid_allowing(&grid, gateway.allow_plain_http)?;
        if let Some(node) = &gateway.node {
            let announced = node.storage_announcements()?;
            if !announced.is_empty() {
                self.config_file().update(|config| {
                    for server in config
                        .servers
                        .iter_mut()
                        .filter(|s| s.grid.as_deref() == Some(&entry.name) && s.name.is_none())
                    {
                        server.name =
                            nickname_for(&announced, &server.spki_hash).map(str::to_owned);
                    }
                    Ok::<_, ConfigError>(())
                })?;
            }
        }
        let stored = servers
            .list()?
            .into_iter()
            .filter(|s| s.grid.as_deref() == Some(entry.name.as_str()))
            .collect();
        tracing::info!(grid = %entry.name, ?gateway_source, "grid imported");
        Ok(ImportedGrid {
            grid: entry,
            servers: stored,
            gateway_source,
        })
    }

    /// Joins a grid with an invite `code` from its operator: takes the description through the
    /// magic-wormhole mailbox at `mailbox_url` and imports it as [`Notifier::import_grid`]
    /// does. The operator's side is told whether it worked (and why not).
    pub async fn join_grid(
        &self,
        code: &InviteCode,
        mailbox_url: &str,
        gateway: &GatewayChoice,
    ) -> Result<ImportedGrid, ServiceError> {
        let imported = invite::accept(code, mailbox_url, |grid| {
            self.import_grid(grid, gateway)
                .map(|imported| (imported.grid.name.clone(), imported))
        })
        .await?;
        imported
    }

    fn ensure_dirs(&self) -> Result<(), ServiceError> {
        self.paths.ensure_dirs().map_err(|e| {
            ServiceError::Config(ConfigError::Io {
                action: "create the folder of",
                path: self.paths.config_dir().to_path_buf(),
                source: e,
            })
        })
    }
}

/// Gives a grid that leaves the gateway to each user the one `choice` names.
pub fn resolve_gateway(
    grid: &mut GridFile,
    choice: &GatewayChoice,
) -> Result<GatewaySource, ServiceError> {
    if grid.gateway.url().is_some() {
        return Ok(GatewaySource::GridDescription);
    }
    if let Some(url) = &choice.url {
        let url = check_gateway_url(url).map_err(|e| match e {
            crate::grid::description::GridFileError::BadGateway(why) => {
                ServiceError::BadGatewayUrl(why)
            }
            _ => ServiceError::BadGatewayUrl("is not usable"),
        })?;
        grid.gateway = GridGateway::Url(url);
        return Ok(GatewaySource::Given);
    }
    let Some(node) = &choice.node else {
        return Err(ServiceError::NoOwnGateway {
            grid: grid.name.clone(),
            why: "no Tahoe node directory was found (~/.tahoe does not exist)",
        });
    };
    let Some(url) = node.gateway_url()? else {
        return Err(ServiceError::NoOwnGateway {
            grid: grid.name.clone(),
            why: "its node.url is missing (start the node once with `tahoe run`)",
        });
    };
    let url = check_gateway_url(&url).map_err(|_| ServiceError::NoOwnGateway {
        grid: grid.name.clone(),
        why: "its node.url does not hold a usable http:// URL",
    })?;
    grid.gateway = GridGateway::Url(url);
    Ok(GatewaySource::NodeUrl(node.node_url_file()))
}

/// A label when the user gave none: enough to tell caps apart until renamed.
pub fn default_label(cap: &Cap) -> String {
    let kind = if cap.is_directory() {
        "directory"
    } else {
        "file"
    };
    let si = cap
        .storage_index()
        .map(|si| si.to_string().chars().take(8).collect::<String>())
        .unwrap_or_default();
    format!("{kind} {si}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::description::parse_grid_file;
    use crate::store::keyring::MemorySecretStore;

    const NURL: &str =
        "pb://zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE@127.0.0.1:47002/ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy#v=1";
    const DIR_WRITE: &str =
        "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

    fn notifier() -> (tempfile::TempDir, Notifier, Arc<MemorySecretStore>) {
        let tmp = tempfile::tempdir().unwrap();
        let secrets = Arc::new(MemorySecretStore::default());
        let notifier = Notifier::new(Paths::under(tmp.path()), secrets.clone());
        (tmp, notifier, secrets)
    }

    fn own_gateway_grid() -> GridFile {
        parse_grid_file(&format!(
            r#"{{"name": "G", "updates_servers": ["{NURL}"]}}"#
        ))
        .unwrap()
    }

    /// Every face removes through this one use case (issue 13: the app kept a removed cap's
    /// history while the CLI forgot it): the cap, its keyring entry and its history go; the
    /// other caps' history stays.
    #[test]
    fn removing_a_cap_forgets_its_history_and_keeps_the_others() {
        let (_tmp, notifier, secrets) = notifier();
        let write: Cap = DIR_WRITE.parse().unwrap();
        let gone = notifier.add_cap(&write, Some("Gone"), None).unwrap();
        let other: Cap = "URI:DIR2-RO:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu5a"
            .parse()
            .unwrap();
        let kept = notifier.add_cap(&other, Some("Kept"), None).unwrap();
        notifier.ensure_dirs().unwrap();
        let history = crate::history::History::open(&notifier.paths().history_db()).unwrap();
        for (cap_id, seqnum) in [(&gone.id, 2), (&gone.id, 3)] {
            history
                .insert_change(&crate::history::NewChange {
                    cap_id: cap_id.clone(),
                    storage_index: gone.storage_index,
                    seqnum,
                    while_away: false,
                    summary: "Gone: added a.txt".to_owned(),
                    details: serde_json::json!({}),
                    at_ms: 0,
                })
                .unwrap();
        }
        history
            .insert_change(&crate::history::NewChange {
                cap_id: kept.id.clone(),
                storage_index: kept.storage_index,
                seqnum: 2,
                while_away: false,
                summary: "Kept: added b.txt".to_owned(),
                details: serde_json::json!({}),
                at_ms: 0,
            })
            .unwrap();
        notifier.remove_cap(&gone.id).unwrap();
        let left = history
            .list_changes(&crate::history::ChangeFilter::default())
            .unwrap();
        assert!(left.iter().all(|c| c.cap_id != gone.id), "{left:?}");
        assert_eq!(left.len(), 1, "the other cap's change stays");
        assert!(notifier.caps().get_cap(&gone.id).is_err());
        assert!(secrets.all().iter().all(|(id, _)| !id.contains(&gone.id)));
        assert_eq!(notifier.mark_all_read(None).unwrap(), 1);
    }

    #[test]
    fn a_write_cap_is_stored_as_its_read_cap() {
        let (tmp, notifier, secrets) = notifier();
        let write: Cap = DIR_WRITE.parse().unwrap();
        let added = notifier.add_cap(&write, None, None).unwrap();
        assert_eq!(
            notifier.caps().get_cap(&added.id).unwrap(),
            write.read_only()
        );
        assert!(secrets
            .all()
            .iter()
            .all(|(_, secret)| !secret.contains(DIR_WRITE)));
        let config = std::fs::read_to_string(tmp.path().join("config/config.json"))
            .or_else(|_| std::fs::read_to_string(notifier.paths().config_file()))
            .unwrap();
        assert!(!config.contains("URI:"), "{config}");
        assert_eq!(
            notifier.caps().entry(&added.id).unwrap().label,
            "directory 3zuybt32"
        );
    }

    #[test]
    fn an_alias_is_watched_by_its_read_cap_under_its_name() {
        let (tmp, notifier, secrets) = notifier();
        let node_dir = tmp.path().join("node");
        std::fs::create_dir_all(node_dir.join("private")).unwrap();
        std::fs::write(
            node_dir.join("private/aliases"),
            format!("work: {DIR_WRITE}\n"),
        )
        .unwrap();
        let node = NodeDir::find(Some(&node_dir)).unwrap().unwrap();
        let added = notifier.add_alias(&node, "work:", None, None).unwrap();
        let entry = notifier.caps().entry(&added.id).unwrap();
        assert_eq!(entry.label, "work");
        assert!(secrets
            .all()
            .iter()
            .all(|(_, secret)| !secret.contains(DIR_WRITE)));
        let missing = notifier.add_alias(&node, "play", None, None).unwrap_err();
        assert!(
            missing.to_string().contains("no alias \"play\""),
            "{missing}"
        );
    }

    #[test]
    fn an_own_gateway_grid_takes_the_url_given_else_the_nodes() {
        let (tmp, _, _) = notifier();
        let node_dir = tmp.path().join("node");
        std::fs::create_dir_all(&node_dir).unwrap();
        let node = NodeDir::find(Some(&node_dir)).unwrap().unwrap();

        let mut grid = own_gateway_grid();
        let choice = GatewayChoice {
            url: None,
            node: Some(node.clone()),
            allow_plain_http: false,
        };
        let err = resolve_gateway(&mut grid, &choice).unwrap_err();
        assert!(err.to_string().contains("node.url is missing"), "{err}");
        std::fs::write(node_dir.join("node.url"), "http://127.0.0.1:3456/\n").unwrap();
        assert_eq!(
            resolve_gateway(&mut grid, &choice).unwrap(),
            GatewaySource::NodeUrl(node_dir.join("node.url"))
        );
        assert_eq!(grid.gateway.url(), Some("http://127.0.0.1:3456"));

        let mut grid = own_gateway_grid();
        let given = GatewayChoice {
            url: Some("http://127.0.0.1:9999".to_owned()),
            node: Some(node),
            allow_plain_http: false,
        };
        assert_eq!(
            resolve_gateway(&mut grid, &given).unwrap(),
            GatewaySource::Given
        );
        assert_eq!(grid.gateway.url(), Some("http://127.0.0.1:9999"));

        let mut grid = own_gateway_grid();
        let err = resolve_gateway(&mut grid, &GatewayChoice::default()).unwrap_err();
        assert!(err.to_string().contains("no Tahoe node directory"), "{err}");
    }

    #[test]
    fn an_import_that_cannot_choose_a_gateway_stores_nothing() {
        let (_tmp, notifier, secrets) = notifier();
        assert!(notifier
            .import_grid(own_gateway_grid(), &GatewayChoice::default())
            .is_err());
        assert!(secrets.all().is_empty());
        assert!(notifier.servers().grids().unwrap().is_empty());
    }
}
