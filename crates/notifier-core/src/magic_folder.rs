//! The magic-folder bridge: push instead of magic-folder's 60-second polling.
//!
//! magic-folder (PyPI `magic-folder` 24.3.0) keeps a folder in sync by downloading every
//! participant's personal directory every `--poll-interval` seconds (60 by default), changed
//! or not. Linking a folder ([`link_folders`]) reads the participants' personal-directory read
//! caps from the local daemon's API and watches them (and the folder's collective) like any
//! other cap: in the keyring through [`CapStore`], subscribed on every updates server. When one
//! changes, the [`bridge`] asks the daemon to poll now (`PUT .../poll-remote`) and notifies
//! "Shared: alice added report.txt" with the real file names.
//!
//! What the config file keeps is a [`MagicFolderLink`] per folder: the daemon's config
//! directory, the folder name, participant name per cap id, the "conflicts only" choice. No
//! token (it is read from the daemon's directory at each request and never stored or logged)
//! and no caps (they are in the keyring).
//!
//! For the app: [`link_folders`] / [`unlink_folder`] / [`linked_folders`] do what
//! `tahoe-notifier magic-folder link|unlink|status` do, and [`bridge::Bridge`] runs beside an
//! engine (see its docs for the wiring). [`poll_interval`] says what a longer magic-folder poll
//! interval would save.

pub mod api;
pub mod bridge;
pub mod names;
pub mod poll_interval;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tahoe_caps::Cap;
use thiserror::Error;

use crate::describe::text::clean_line;
use crate::store::caps::{CapStore, CapStoreError};
use crate::store::config::{ConfigError, ConfigFile};

/// The records are the schema module's.
pub use crate::schema::{LinkedCap, LinkedParticipant, MagicFolderLink};
pub use api::{FolderInfo, MagicFolderClient, Participant};

/// Why talking to magic-folder or linking failed. Never holds a token or a cap.
#[derive(Debug, Error)]
pub enum MagicFolderError {
    /// The directory has no `api_token`.
    #[error(
        "{} is not a magic-folder config directory (it has no api_token file): pass the \
         directory given to `magic-folder --config DIR`", dir.display()
    )]
    NotAConfigDir {
        /// The directory given.
        dir: PathBuf,
    },
    /// The daemon is not running (no endpoint, or `not running`).
    #[error(
        "the magic-folder daemon of {} is not running: start it with \
         `magic-folder --config {} run`", dir.display(), dir.display()
    )]
    NotRunning {
        /// Its config directory.
        dir: PathBuf,
    },
    /// The endpoint is not `tcp:HOST:PORT`.
    #[error(
        "the magic-folder daemon of {} listens on {endpoint:?}, which is not a TCP endpoint; \
         re-initialise it with a `tcp:` listen endpoint", dir.display()
    )]
    UnsupportedEndpoint {
        /// Its config directory.
        dir: PathBuf,
        /// The endpoint string (not secret).
        endpoint: String,
    },
    /// The token file holds something that cannot be a token.
    #[error(
        "the magic-folder api_token file is empty or malformed; restart the daemon to rewrite it"
    )]
    BadToken,
    /// The daemon refused the token.
    #[error(
        "the magic-folder daemon of {} refused its own api_token (was the daemon re-initialised?)",
        dir.display()
    )]
    Unauthorized {
        /// Its config directory.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The request failed on the way.
    #[error("magic-folder API request {what} failed: {reason}")]
    Http {
        /// The request (method and path).
        what: String,
        /// Why.
        reason: String,
    },
    /// The daemon answered with an error status.
    #[error("magic-folder API request {what} answered {status} {reason}")]
    Status {
        /// The request.
        what: String,
        /// HTTP status.
        status: u16,
        /// magic-folder's reason, if it gave one.
        reason: String,
    },
    /// The daemon's answer was not what magic-folder 24.3.0 sends.
    #[error("unexpected answer to {what}: {reason}")]
    BadReply {
        /// The request.
        what: String,
        /// What was wrong (never the body).
        reason: String,
    },
    /// No such folder in the daemon.
    #[error("the magic-folder daemon has no folder named {folder:?} (it has: {})", known.join(", "))]
    UnknownFolder {
        /// The name asked for.
        folder: String,
        /// The names it has.
        known: Vec<String>,
    },
    /// The folder is not linked.
    #[error("magic-folder folder {folder:?} of {} is not linked", dir.display())]
    NotLinked {
        /// Its config directory.
        dir: PathBuf,
        /// The folder.
        folder: String,
    },
    /// The cap store failed.
    #[error(transparent)]
    Caps(#[from] CapStoreError),
    /// The config file failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The absolute form of a config directory, as stored.
fn absolute(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_owned())
}

/// The linked folders in the config.
pub fn linked_folders(config: &ConfigFile) -> Result<Vec<MagicFolderLink>, MagicFolderError> {
    Ok(config.load()?.magic_folder_links)
}

/// A participant's cap label: "alice in Shared".
pub fn participant_label(participant: &str, folder: &str) -> String {
    format!(
        "{} in {}",
        clean_line(participant, 40),
        clean_line(folder, 50)
    )
}

/// The collective's cap label.
pub fn collective_label(folder: &str) -> String {
    format!("{} participants (magic-folder)", clean_line(folder, 60))
}

/// What linking one folder did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOutcome {
    /// The folder.
    pub folder: String,
    /// Our own participant name (not watched).
    pub own_name: String,
    /// The participants now watched.
    pub participants: Vec<String>,
    /// Cap ids newly added to the cap store (to send the engine as `CapAdded`).
    pub added_cap_ids: Vec<String>,
    /// magic-folder's poll interval for the folder, seconds.
    pub poll_interval: u64,
}

/// Adds `cap` to the store, or finds the entry that already watches its slot.
fn watch_cap(caps: &CapStore, cap: &Cap, label: &str) -> Result<LinkedCap, MagicFolderError> {
    match caps.add(cap, label, None) {
        Ok(added) => Ok(LinkedCap {
            cap_id: added.id,
            added_by_link: true,
        }),
        Err(CapStoreError::AlreadyWatched { id, .. }) => Ok(LinkedCap {
            cap_id: id,
            added_by_link: false,
        }),
        Err(error) => Err(error.into()),
    }
}

/// Links `folder` (or every folder, when `None`) of the daemon at `config_dir`: watches the
/// collective and every participant's personal directory except our own, and records the
/// link. Linking a linked folder again refreshes its participants and `conflicts_only`.
pub async fn link_folders(
    client: &MagicFolderClient,
    caps: &CapStore,
    config: &ConfigFile,
    folder: Option<&str>,
    conflicts_only: bool,
) -> Result<Vec<LinkOutcome>, MagicFolderError> {
    let folders = client.folders().await?;
    let chosen: Vec<&FolderInfo> = match folder {
        Some(name) => vec![folders.iter().find(|f| f.name == name).ok_or_else(|| {
            MagicFolderError::UnknownFolder {
                folder: name.to_owned(),
                known: folders.iter().map(|f| f.name.clone()).collect(),
            }
        })?],
        None => folders.iter().collect(),
    };
    let config_dir = absolute(client.config_dir());
    let mut outcomes = Vec::new();
    for info in chosen {
        let folder_caps = client.folder_caps(&info.name).await?;
        let participants = client.participants(&info.name).await?;
        let existing = linked_folders(config)?
            .into_iter()
            .find(|l| l.is(&config_dir, &info.name));
        let mut added_cap_ids = Vec::new();
        let collective = match (
            existing.as_ref().and_then(|l| l.collective.clone()),
            &folder_caps.collective,
        ) {
            (Some(linked), _) => Some(linked),
            (None, Some(cap)) => {
                let linked = watch_cap(caps, cap, &collective_label(&info.name))?;
                if linked.added_by_link {
                    added_cap_ids.push(linked.cap_id.clone());
                }
                Some(linked)
            }
            (None, None) => None,
        };
        let mut link = MagicFolderLink {
            config_dir: config_dir.clone(),
            folder: info.name.clone(),
            own_name: folder_caps
                .own_personal
                .as_ref()
                .and_then(|own| own_participant_name(&participants, own))
                .unwrap_or_else(|| info.author.clone()),
            collective,
            participants: existing
                .as_ref()
                .map(|l| l.participants.clone())
                .unwrap_or_default(),
            conflicts_only,
        };
        let sync = apply_participants(
            &mut link,
            caps,
            &participants,
            folder_caps.own_personal.as_ref(),
        )?;
        added_cap_ids.extend(sync.added.iter().map(|(_, id)| id.clone()));
        store_link(config, link.clone())?;
        outcomes.push(LinkOutcome {
            folder: info.name.clone(),
            own_name: link.own_name.clone(),
            participants: link.participants.iter().map(|p| p.name.clone()).collect(),
            added_cap_ids,
            poll_interval: info.poll_interval,
        });
    }
    Ok(outcomes)
}

fn own_participant_name(participants: &[Participant], own: &Cap) -> Option<String> {
    participants
        .iter()
        .find(|p| p.personal_dmd.storage_index() == own.storage_index())
        .map(|p| p.name.clone())
}

/// Participants that appeared and disappeared, with their cap ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantSync {
    /// (name, cap id) newly watched; the cap id is new to the engine only if it was added.
    pub added: Vec<(String, String)>,
    /// (name, cap id) no longer watched; removed from the cap store if linking had added it.
    pub removed: Vec<(String, String)>,
}

impl ParticipantSync {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Brings `link.participants` in line with `participants`: everyone but us (found by our
/// personal directory when known, else by our participant name) and but read-only members,
/// whose "personal directory" is an empty literal one that can never change.
fn apply_participants(
    link: &mut MagicFolderLink,
    caps: &CapStore,
    participants: &[Participant],
    own_personal: Option<&Cap>,
) -> Result<ParticipantSync, MagicFolderError> {
    let mut sync = ParticipantSync::default();
    let others: Vec<&Participant> = participants
        .iter()
        .filter(|p| p.personal_dmd.is_mutable())
        .filter(|p| match own_personal {
            Some(own) => p.personal_dmd.storage_index() != own.storage_index(),
            None => p.name != link.own_name,
        })
        .collect();
    // Gone: no participant of that name, or the name now points at another directory.
    let mut kept = Vec::new();
    for linked in std::mem::take(&mut link.participants) {
        let still = others
            .iter()
            .find(|p| p.name == linked.name)
            .is_some_and(|p| {
                caps.entry(&linked.cap.cap_id)
                    .is_ok_and(|e| Some(e.storage_index) == p.personal_dmd.storage_index())
            });
        if still {
            kept.push(linked);
        } else {
            if linked.cap.added_by_link {
                match caps.remove(&linked.cap.cap_id) {
                    Ok(_) | Err(CapStoreError::UnknownId(_)) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            sync.removed
                .push((linked.name.clone(), linked.cap.cap_id.clone()));
        }
    }
    link.participants = kept;
    let known: BTreeSet<String> = link.participants.iter().map(|p| p.name.clone()).collect();
    for participant in others {
        if known.contains(&participant.name) {
            continue;
        }
        let cap = watch_cap(
            caps,
            &participant.personal_dmd,
            &participant_label(&participant.name, &link.folder),
        )?;
        sync.added
            .push((participant.name.clone(), cap.cap_id.clone()));
        link.participants.push(LinkedParticipant {
            name: participant.name.clone(),
            cap,
        });
    }
    link.participants.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(sync)
}

fn store_link(config: &ConfigFile, link: MagicFolderLink) -> Result<(), MagicFolderError> {
    config.update(|c| {
        c.magic_folder_links
            .retain(|l| !l.is(&link.config_dir, &link.folder));
        c.magic_folder_links.push(link);
        Ok::<_, MagicFolderError>(())
    })
}

/// Lists the participants of a linked folder again and watches the new ones, forgets the gone
/// ones. Returns what changed (the link in the config is updated).
pub async fn sync_participants(
    client: &MagicFolderClient,
    caps: &CapStore,
    config: &ConfigFile,
    folder: &str,
) -> Result<ParticipantSync, MagicFolderError> {
    let config_dir = absolute(client.config_dir());
    let mut link = linked_folders(config)?
        .into_iter()
        .find(|l| l.is(&config_dir, folder))
        .ok_or_else(|| MagicFolderError::NotLinked {
            dir: config_dir.clone(),
            folder: folder.to_owned(),
        })?;
    let folder_caps = client.folder_caps(folder).await?;
    let participants = client.participants(folder).await?;
    if link.collective.is_none() {
        if let Some(cap) = &folder_caps.collective {
            link.collective = Some(watch_cap(caps, cap, &collective_label(folder))?);
        }
    }
    let sync = apply_participants(
        &mut link,
        caps,
        &participants,
        folder_caps.own_personal.as_ref(),
    )?;
    if !sync.is_empty() {
        store_link(config, link)?;
    }
    Ok(sync)
}

/// Unlinks `folder` of the daemon at `config_dir`: forgets the link and removes the caps that
/// linking added (not those the user watched already). Returns the removed cap ids (to send
/// the engine as `CapRemoved`). Needs no running daemon.
pub fn unlink_folder(
    caps: &CapStore,
    config: &ConfigFile,
    config_dir: &Path,
    folder: &str,
) -> Result<Vec<String>, MagicFolderError> {
    let link = linked_folders(config)?
        .into_iter()
        .find(|l| l.is(config_dir, folder))
        .ok_or_else(|| MagicFolderError::NotLinked {
            dir: config_dir.to_owned(),
            folder: folder.to_owned(),
        })?;
    let mut removed = Vec::new();
    let owned = link
        .collective
        .iter()
        .chain(link.participants.iter().map(|p| &p.cap));
    for cap in owned.filter(|c| c.added_by_link) {
        match caps.remove(&cap.cap_id) {
            Ok(_) | Err(CapStoreError::UnknownId(_)) => removed.push(cap.cap_id.clone()),
            Err(error) => return Err(error.into()),
        }
    }
    config.update(|c| {
        c.magic_folder_links.retain(|l| !l.is(config_dir, folder));
        Ok::<_, MagicFolderError>(())
    })?;
    Ok(removed)
}

/// Sets the "conflicts only" choice of a linked folder.
pub fn set_conflicts_only(
    config: &ConfigFile,
    config_dir: &Path,
    folder: &str,
    conflicts_only: bool,
) -> Result<(), MagicFolderError> {
    config.update(|c| {
        let link = c
            .magic_folder_links
            .iter_mut()
            .find(|l| l.is(config_dir, folder))
            .ok_or_else(|| MagicFolderError::NotLinked {
                dir: config_dir.to_owned(),
                folder: folder.to_owned(),
            })?;
        link.conflicts_only = conflicts_only;
        Ok::<_, MagicFolderError>(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::store::keyring::MemorySecretStore;

    const COLLECTIVE: &str =
        "URI:DIR2-RO:272nxlgxylwa6dwm3s7fynfp4u:vftuiuwodoqscnhnl54kcu4qbmhlk5jcor7yfqjwzx75wr2btutq";
    const BOB: &str =
        "URI:DIR2-RO:4droqmlg7gj6ngcokx5ihv52qq:uudgasuc4ususizl5ngo5ar3zphkutw5z5zj6nucggzq2ne3mbjq";
    const ALICE: &str =
        "URI:DIR2-RO:6j3b2lgs7zu2sgzuri4txcmmqy:yoomkseqkiu235hmkhxiveu7ja65rtzrfls54saieqqqn3dpbvmq";
    const CAROL: &str =
        "URI:DIR2-RO:atpo5faic3fqrzutwg3hb2mmz4:m3fbzm7fj7ctrofdjkbpxs5gojlbkeis2i5r5btww3jy45icthzq";

    fn participant(name: &str, cap: &str) -> Participant {
        Participant {
            name: name.to_owned(),
            personal_dmd: Cap::parse(cap).unwrap(),
        }
    }

    fn setup() -> (
        tempfile::TempDir,
        CapStore,
        ConfigFile,
        Arc<MemorySecretStore>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigFile::new(dir.path().join("config.json"));
        let secrets = Arc::new(MemorySecretStore::default());
        let caps = CapStore::new(config.clone(), secrets.clone());
        (dir, caps, config, secrets)
    }

    fn new_link(caps: &CapStore, dir: &Path) -> MagicFolderLink {
        MagicFolderLink {
            config_dir: dir.to_owned(),
            folder: "Shared".to_owned(),
            own_name: "bob".to_owned(),
            collective: Some(watch_cap(caps, &Cap::parse(COLLECTIVE).unwrap(), "c").unwrap()),
            participants: Vec::new(),
            conflicts_only: false,
        }
    }

    #[test]
    fn everyone_but_us_is_watched_and_comings_and_goings_are_followed() {
        let (dir, caps, config, secrets) = setup();
        let own = Cap::parse(BOB).unwrap();
        let mut link = new_link(&caps, dir.path());
        let sync = apply_participants(
            &mut link,
            &caps,
            &[participant("bob", BOB), participant("alice", ALICE)],
            Some(&own),
        )
        .unwrap();
        assert_eq!(sync.added.len(), 1);
        assert_eq!(sync.added[0].0, "alice");
        assert_eq!(link.participants.len(), 1);
        assert_eq!(
            caps.entry(&link.participants[0].cap.cap_id).unwrap().label,
            "alice in Shared"
        );
        store_link(&config, link.clone()).unwrap();

        // Carol joins, Alice leaves.
        let sync = apply_participants(
            &mut link,
            &caps,
            &[participant("bob", BOB), participant("carol", CAROL)],
            Some(&own),
        )
        .unwrap();
        assert_eq!(
            sync.added.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
            ["carol"]
        );
        assert_eq!(
            sync.removed
                .iter()
                .map(|a| a.0.as_str())
                .collect::<Vec<_>>(),
            ["alice"]
        );
        assert!(caps
            .list()
            .unwrap()
            .iter()
            .all(|e| e.label != "alice in Shared"));
        store_link(&config, link.clone()).unwrap();

        // The config holds the link but no cap; the keyring holds the caps read-only.
        let text = std::fs::read_to_string(config.path()).unwrap();
        assert!(text.contains("carol") && !text.contains("URI:"));
        assert!(secrets
            .all()
            .iter()
            .all(|(_, cap)| cap.starts_with("URI:DIR2-RO:")));

        // Unlinking removes what linking added.
        let removed = unlink_folder(&caps, &config, dir.path(), "Shared").unwrap();
        assert_eq!(removed.len(), 2, "the collective and carol");
        assert!(caps.list().unwrap().is_empty());
        assert!(linked_folders(&config).unwrap().is_empty());
    }

    #[test]
    fn read_only_members_and_we_are_skipped_when_our_directory_is_unknown() {
        let (dir, caps, _config, _secrets) = setup();
        let mut link = new_link(&caps, dir.path());
        link.collective = None;
        // A read-only join: our entry (and any read-only member's) is an empty literal dir.
        let sync = apply_participants(
            &mut link,
            &caps,
            &[
                participant("bob", "URI:DIR2-LIT:"),
                participant("dave", "URI:DIR2-LIT:"),
                participant("alice", ALICE),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            sync.added.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
            ["alice"]
        );
        assert_eq!(link.cap_ids().count(), 1);
    }

    #[test]
    fn a_directory_the_user_already_watched_stays_when_unlinking() {
        let (dir, caps, config, _secrets) = setup();
        let mine = caps
            .add(&Cap::parse(ALICE).unwrap(), "Alice's stuff", None)
            .unwrap();
        let mut link = new_link(&caps, dir.path());
        apply_participants(
            &mut link,
            &caps,
            &[participant("alice", ALICE)],
            Some(&Cap::parse(BOB).unwrap()),
        )
        .unwrap();
        assert_eq!(link.participants[0].cap.cap_id, mine.id);
        assert!(!link.participants[0].cap.added_by_link);
        store_link(&config, link).unwrap();
        let removed = unlink_folder(&caps, &config, dir.path(), "Shared").unwrap();
        assert_eq!(removed.len(), 1, "only the collective");
        assert_eq!(caps.list().unwrap()[0].id, mine.id);
        assert!(matches!(
            unlink_folder(&caps, &config, dir.path(), "Shared"),
            Err(MagicFolderError::NotLinked { .. })
        ));
    }
}
