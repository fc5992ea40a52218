//! The config file's schema: every record the non-secret config holds, in one place, owned by
//! no module that uses them. [`crate::store::config`] reads and writes the file; the stores
//! ([`crate::store::caps`], [`crate::store::servers`], [`crate::magic_folder`]) change its records and
//! re-export the ones they speak of, so `servers::ServerEntry` still names a server's record.
//!
//! This module imports nothing from the rest of the crate, which keeps the config out of an
//! import circle with the modules that use it (the architecture review's finding).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tahoe_caps::StorageIndex;
use time::OffsetDateTime;

/// The config format this code writes and understands.
pub const CONFIG_VERSION: u32 = 1;

/// Whether a watched cap names a directory or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapKind {
    /// A mutable directory: changes are reported as added/removed/modified children.
    Directory,
    /// A mutable file: changes are reported with the new size.
    File,
}

/// One watched cap, without the cap itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapEntry {
    /// Random id; also the keyring user name under which the cap is stored.
    pub id: String,
    /// The user's name for it, shown in notifications.
    pub label: String,
    /// Directory or file.
    pub kind: CapKind,
    /// The storage index the servers know the slot by (not a secret).
    pub storage_index: StorageIndex,
    /// Muted caps are still tracked and recorded in the history but raise no notification.
    #[serde(default)]
    pub muted: bool,
    /// When the cap was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The grid the cap belongs to: only that grid's updates servers hear of its storage
    /// index and only that grid's gateway (or the user's own) sees the cap. `None` for a cap
    /// added before grids were bound (it takes the only grid, if there is one) or with no grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<String>,
    /// A change between the keyring and this file that has not finished (a crash in between
    /// leaves it here; [`crate::store::caps::CapStore`] finishes or undoes it on the next read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingChange>,
}

/// A two-step change of a cap entry (config, then keyring, then config) under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingChange {
    /// Being added: its secret may not be in the keyring yet.
    Adding,
    /// Being removed: its secret may still be in the keyring.
    Removing,
}

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Format version, [`CONFIG_VERSION`].
    pub version: u32,
    /// Watched caps.
    #[serde(default)]
    pub caps: Vec<CapEntry>,
    /// Known updates servers.
    #[serde(default)]
    pub servers: Vec<ServerEntry>,
    /// Imported grids.
    #[serde(default)]
    pub grids: Vec<GridEntry>,
    /// Linked magic-folder folders (no token, no caps: see [`crate::magic_folder`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub magic_folder_links: Vec<MagicFolderLink>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            caps: Vec::new(),
            servers: Vec::new(),
            grids: Vec::new(),
            magic_folder_links: Vec::new(),
        }
    }
}

impl Config {
    /// The cap entry with this id.
    pub fn cap(&self, id: &str) -> Option<&CapEntry> {
        self.caps.iter().find(|c| c.id == id)
    }

    /// The cap entry with this id, mutable.
    pub fn cap_mut(&mut self, id: &str) -> Option<&mut CapEntry> {
        self.caps.iter_mut().find(|c| c.id == id)
    }
}

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
    /// The user allowed a plain `http://` gateway on another machine when importing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plain_http: bool,
}

/// One watched cap that belongs to a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedCap {
    /// The cap store's id.
    pub cap_id: String,
    /// Whether linking added it to the cap store (and unlinking removes it); `false` when the
    /// user already watched the directory, so it stays when the folder is unlinked.
    pub added_by_link: bool,
}

/// A participant being watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedParticipant {
    /// Its name in the collective.
    pub name: String,
    /// Its personal directory in the cap store.
    #[serde(flatten)]
    pub cap: LinkedCap,
}

/// A linked magic-folder folder, as kept in the notifier's config file. No token, no caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MagicFolderLink {
    /// The daemon's config directory (`magic-folder --config DIR`).
    pub config_dir: PathBuf,
    /// The folder's name in that daemon.
    pub folder: String,
    /// Our own participant name (never watched: our own changes are not news).
    pub own_name: String,
    /// The collective (participant list) in the cap store: its changes make the bridge list
    /// the participants again. `None` when the daemon cannot tell its cap (a folder joined
    /// read-only): participants are then listed again on the bridge's timer only.
    #[serde(default)]
    pub collective: Option<LinkedCap>,
    /// Every other participant's personal directory.
    #[serde(default)]
    pub participants: Vec<LinkedParticipant>,
    /// Notify only when a change leaves a file in conflict.
    #[serde(default)]
    pub conflicts_only: bool,
}

impl MagicFolderLink {
    /// Whether this link is for `folder` of the daemon at `config_dir`.
    pub fn is(&self, config_dir: &Path, folder: &str) -> bool {
        self.folder == folder && same_dir(&self.config_dir, config_dir)
    }

    /// Every cap id of the link (collective first).
    pub fn cap_ids(&self) -> impl Iterator<Item = &str> {
        self.collective
            .iter()
            .map(|c| c.cap_id.as_str())
            .chain(self.participants.iter().map(|p| p.cap.cap_id.as_str()))
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}
