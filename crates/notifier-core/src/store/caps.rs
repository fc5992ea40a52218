//! The cap store: watched caps, with the caps themselves in the keyring and everything else
//! (id, label, kind, storage index, mute flag, creation time) in the config file.
//!
//! Each cap is stored under a random id (the keyring user name), so no cap material appears
//! anywhere outside the keyring. Unless the user asks to keep the write cap, only the read-only
//! form is stored: watching needs nothing more.

use std::sync::Arc;

use tahoe_caps::{Cap, CapRole, StorageIndex};
use thiserror::Error;
use time::OffsetDateTime;

use crate::ids::{self, IdError};
use crate::store::config::{CapEntry, CapKind, ConfigError, ConfigFile, PendingChange};
use crate::store::keyring::{SecretError, SecretStore};

/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// Why a cap-store operation failed. Never holds a cap.
#[derive(Debug, Error)]
pub enum CapStoreError {
    /// Config file trouble.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Keyring trouble.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// No random id.
    #[error(transparent)]
    Id(#[from] IdError),
    /// An immutable cap: it can never change.
    #[error("this is an immutable {kind} cap: its content can never change, so there is nothing to watch")]
    Immutable {
        /// The cap's kind name, e.g. `CHK`.
        kind: &'static str,
    },
    /// A verify cap: cannot read what changed.
    #[error(
        "this is a verify cap ({kind}), which cannot read the content: add the read cap instead"
    )]
    VerifyOnly {
        /// The cap's kind name.
        kind: &'static str,
    },
    /// The label is unusable.
    #[error("the label must be non-empty, at most {MAX_LABEL_CHARS} characters, without control characters")]
    BadLabel,
    /// The slot is already watched.
    #[error("this cap is already watched as {label:?} (id {id})")]
    AlreadyWatched {
        /// The existing entry's id.
        id: String,
        /// Its label.
        label: String,
    },
    /// No such entry.
    #[error("no watched cap with id {0}")]
    UnknownId(String),
    /// The keyring holds something that is not this entry's cap any more.
    #[error(
        "the keyring entry {0} no longer holds the cap recorded for it (not a cap, or another \
         slot); remove the entry and add the cap again"
    )]
    StoredCapMismatch(String),
}

/// What [`CapStore::add`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedCap {
    /// The new entry's id.
    pub id: String,
    /// The slot's storage index (what to subscribe to).
    pub storage_index: StorageIndex,
    /// The kind of cap kept in the keyring (always a read-cap), e.g. `DIR2-RO`.
    pub stored_kind: &'static str,
}

/// Watched caps over a config file and a secret store.
#[derive(Debug, Clone)]
pub struct CapStore {
    config: ConfigFile,
    secrets: Arc<dyn SecretStore>,
}

impl CapStore {
    /// A store over the config file and secret store given.
    pub fn new(config: ConfigFile, secrets: Arc<dyn SecretStore>) -> Self {
        Self { config, secrets }
    }

    /// Starts watching `cap` under `label`, in `grid` (see [`CapEntry::grid`]). Stores only its
    /// read-only form: watching needs no more, and a write-cap in the keyring would let anyone
    /// who can read it change the content. Refuses immutable caps (they never change), verify
    /// caps (they cannot read what changed) and a slot already watched.
    ///
    /// Three steps, so that a crash anywhere leaves nothing half-done that is not finished or
    /// undone on the next read ([`CapStore::recover`]): the entry goes into the config marked
    /// [`PendingChange::Adding`] (with the duplicate check in the same locked update, so two
    /// adds of one slot cannot both pass it), the cap into the keyring, then the mark is
    /// cleared.
    pub fn add(
        &self,
        cap: &Cap,
        label: &str,
        grid: Option<&str>,
    ) -> Result<AddedCap, CapStoreError> {
        let storage_index = check_watchable(cap)?;
        let label = check_label(label)?;
        let stored = cap.read_only();
        let entry = CapEntry {
            id: ids::new_id("cap-")?,
            label,
            kind: if cap.is_directory() {
                CapKind::Directory
            } else {
                CapKind::File
            },
            storage_index,
            muted: false,
            created: OffsetDateTime::now_utc(),
            grid: grid.map(str::to_owned),
            pending: Some(PendingChange::Adding),
        };
        self.config.update(|c| {
            if let Some(existing) = c.caps.iter().find(|e| {
                e.storage_index == storage_index && e.pending != Some(PendingChange::Removing)
            }) {
                return Err(CapStoreError::AlreadyWatched {
                    id: existing.id.clone(),
                    label: existing.label.clone(),
                });
            }
            c.caps.push(entry.clone());
            Ok(())
        })?;
        if let Err(error) = self.secrets.put(&entry.id, &stored.to_string()) {
            let _ = self.config.update(|c| {
                c.caps.retain(|e| e.id != entry.id);
                Ok::<_, ConfigError>(())
            });
            return Err(error.into());
        }
        self.config.update(|c| {
            if let Some(e) = c.cap_mut(&entry.id) {
                e.pending = None;
            }
            Ok::<_, ConfigError>(())
        })?;
        tracing::info!(id = %entry.id, si = %storage_index, "cap added");
        Ok(AddedCap {
            id: entry.id,
            storage_index,
            stored_kind: stored.kind().short_name(),
        })
    }

    /// Every watched cap (without the caps). Reads only the config, so it works with the
    /// keyring locked; an add or remove still under way (or cut short by a crash) is not
    /// listed.
    pub fn list(&self) -> Result<Vec<CapEntry>, CapStoreError> {
        Ok(self
            .config
            .load()?
            .caps
            .into_iter()
            .filter(|e| e.pending.is_none())
            .collect())
    }

    /// Finishes or undoes adds and removes that a crash cut short: an entry being added whose
    /// cap reached the keyring is kept, one whose cap did not is dropped; an entry being
    /// removed has its cap deleted (again) and is dropped. Returns how many were repaired.
    /// Needs the keyring; the engine calls it when it opens.
    pub fn recover(&self) -> Result<usize, CapStoreError> {
        let pending: Vec<CapEntry> = self
            .config
            .load()?
            .caps
            .into_iter()
            .filter(|e| e.pending.is_some())
            .collect();
        let mut repaired = 0;
        for entry in pending {
            let keep = match entry.pending {
                Some(PendingChange::Adding) => match self.secrets.get(&entry.id) {
                    Ok(_) => true,
                    Err(SecretError::Missing { .. }) => false,
                    Err(error) => return Err(error.into()),
                },
                Some(PendingChange::Removing) => {
                    self.secrets.delete(&entry.id)?;
                    false
                }
                None => continue,
            };
            self.config.update(|c| {
                if keep {
                    if let Some(e) = c.cap_mut(&entry.id) {
                        e.pending = None;
                    }
                } else {
                    c.caps.retain(|e| e.id != entry.id);
                }
                Ok::<_, ConfigError>(())
            })?;
            tracing::info!(id = %entry.id, kept = keep, "an interrupted cap change was finished");
            repaired += 1;
        }
        Ok(repaired)
    }

    /// One entry.
    pub fn entry(&self, id: &str) -> Result<CapEntry, CapStoreError> {
        self.config
            .load()?
            .cap(id)
            .filter(|e| e.pending.is_none())
            .cloned()
            .ok_or_else(|| CapStoreError::UnknownId(id.to_owned()))
    }

    /// The cap of entry `id`, from the keyring, read-only. Checked against the recorded storage
    /// index, so a keyring entry changed behind our back is not silently used. A write-cap that
    /// an older version kept (it had a `--keep-write`) is replaced by its read-cap in the
    /// keyring here, the first time it is read.
    pub fn get_cap(&self, id: &str) -> Result<Cap, CapStoreError> {
        let entry = self.entry(id)?;
        let text = self.secrets.get(id)?;
        let cap = match Cap::parse(&text) {
            Ok(cap) if cap.storage_index() == Some(entry.storage_index) => cap,
            _ => return Err(CapStoreError::StoredCapMismatch(id.to_owned())),
        };
        if cap.is_readonly() {
            return Ok(cap);
        }
        let read_cap = cap.read_only();
        self.secrets.put(id, &read_cap.to_string())?;
        tracing::info!(id, "a stored write-cap was reduced to its read-cap");
        Ok(read_cap)
    }

    /// Stops watching `id`: marks the entry as being removed, deletes the keyring entry, then
    /// the config entry (a crash in between is finished by [`CapStore::recover`]).
    pub fn remove(&self, id: &str) -> Result<CapEntry, CapStoreError> {
        let entry = self.config.update(|c| {
            let entry = c
                .cap_mut(id)
                .filter(|e| e.pending.is_none())
                .ok_or_else(|| CapStoreError::UnknownId(id.to_owned()))?;
            entry.pending = Some(PendingChange::Removing);
            Ok::<_, CapStoreError>(entry.clone())
        })?;
        self.secrets.delete(id)?;
        self.config.update(|c| {
            c.caps.retain(|e| e.id != id);
            Ok::<_, ConfigError>(())
        })?;
        tracing::info!(id, "cap removed");
        Ok(CapEntry {
            pending: None,
            ..entry
        })
    }

    /// Changes the label of `id`.
    pub fn rename(&self, id: &str, label: &str) -> Result<(), CapStoreError> {
        let label = check_label(label)?;
        self.config.update(|c| {
            let entry = c
                .cap_mut(id)
                .ok_or_else(|| CapStoreError::UnknownId(id.to_owned()))?;
            entry.label = label;
            Ok(())
        })
    }

    /// Mutes or unmutes `id` (muted caps are recorded but not notified).
    pub fn set_muted(&self, id: &str, muted: bool) -> Result<(), CapStoreError> {
        self.config.update(|c| {
            let entry = c
                .cap_mut(id)
                .ok_or_else(|| CapStoreError::UnknownId(id.to_owned()))?;
            entry.muted = muted;
            Ok(())
        })
    }
}

/// Whether `cap` can be watched, with the same refusal [`CapStore::add`] would give: its
/// storage index if so. Immutable caps never change; verify-caps cannot read what changed.
pub fn check_watchable(cap: &Cap) -> Result<StorageIndex, CapStoreError> {
    let kind = cap.kind().short_name();
    if !cap.is_mutable() {
        return Err(CapStoreError::Immutable { kind });
    }
    if cap.role() == CapRole::Verify {
        return Err(CapStoreError::VerifyOnly { kind });
    }
    cap.storage_index().ok_or(CapStoreError::Immutable { kind })
}

fn check_label(label: &str) -> Result<String, CapStoreError> {
    let label = label.trim();
    if label.is_empty()
        || label.chars().count() > MAX_LABEL_CHARS
        || label.chars().any(char::is_control)
    {
        return Err(CapStoreError::BadLabel);
    }
    Ok(label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keyring::MemorySecretStore;

    const DIR_RW: &str =
        "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
    /// A file read-cap of another slot (from the shared Tahoe vectors).
    const OTHER_FILE_RO: &str =
        "URI:MDMF-RO:g3d7sj5am4tzhj4u5bapd5myv4:qfuxzuc3njmabcmkt7ezyvdvted42ovcfwgjklw4c7gi3tgz2hxa";
    const CHK: &str = "URI:CHK:l7wkgxyt7oeazhkhpy6xamtkzi:rn3jbkxsf4rgmyhhbrzh2gbmw3nsr6mklpgvjunm35jkqb5t3kvq:2:3:123456";

    fn setup() -> (tempfile::TempDir, CapStore, Arc<MemorySecretStore>) {
        let tmp = tempfile::tempdir().unwrap();
        let secrets = Arc::new(MemorySecretStore::default());
        let store = CapStore::new(
            ConfigFile::new(tmp.path().join("config.json")),
            secrets.clone(),
        );
        (tmp, store, secrets)
    }

    fn dir_cap() -> Cap {
        DIR_RW.parse().unwrap()
    }

    #[test]
    fn add_stores_read_only_form_in_keyring_only() {
        let (tmp, store, secrets) = setup();
        let cap = dir_cap();
        let added = store.add(&cap, "  Team Docs ", None).unwrap();
        assert_eq!(Some(added.storage_index), cap.storage_index());
        assert!(added.id.starts_with("cap-"));

        let stored = store.get_cap(&added.id).unwrap();
        assert_eq!(stored, cap.read_only());
        assert_eq!(
            secrets.all(),
            vec![(added.id.clone(), cap.read_only().to_string())]
        );

        let entries = store.list().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].label, "Team Docs");
        assert_eq!(entries[0].kind, CapKind::Directory);
        assert!(!entries[0].muted);

        // The config file holds neither form of the cap, nor its keys.
        let text = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
        assert!(!text.contains("URI:"), "{text}");
        assert!(!text.contains("rvbf3wlbpjwgh3wkcd7n2irdhi"));
        assert!(!text.contains("s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a"));
        let ro = cap.read_only().to_string();
        assert!(!text.contains(&ro["URI:DIR2-RO:".len()..]));
        assert!(text.contains(&added.storage_index.to_base32()));
    }

    #[test]
    fn a_write_cap_kept_by_an_older_version_is_reduced_when_read() {
        let (_tmp, store, secrets) = setup();
        let added = store.add(&dir_cap(), "RW", None).unwrap();
        // What `--keep-write` used to leave in the keyring.
        secrets.put(&added.id, &dir_cap().to_string()).unwrap();
        assert_eq!(store.get_cap(&added.id).unwrap(), dir_cap().read_only());
        assert_eq!(
            secrets.all(),
            vec![(added.id.clone(), dir_cap().read_only().to_string())]
        );
    }

    #[test]
    fn refuses_immutable_verify_duplicate_and_bad_labels() {
        let (_tmp, store, secrets) = setup();
        let chk: Cap = CHK.parse().unwrap();
        let err = store.add(&chk, "x", None).unwrap_err();
        assert!(matches!(err, CapStoreError::Immutable { .. }), "{err}");
        assert!(err.to_string().contains("never change"));
        let verify = dir_cap().verify_cap().unwrap();
        assert!(matches!(
            store.add(&verify, "x", None).unwrap_err(),
            CapStoreError::VerifyOnly { .. }
        ));
        for bad in ["", "   ", "a\nb", &"x".repeat(101)] {
            assert!(matches!(
                store.add(&dir_cap(), bad, None).unwrap_err(),
                CapStoreError::BadLabel
            ));
        }
        let first = store.add(&dir_cap(), "One", None).unwrap();
        // The read-only form of the same slot is the same watch.
        let err = store.add(&dir_cap().read_only(), "Two", None).unwrap_err();
        match err {
            CapStoreError::AlreadyWatched { id, label } => {
                assert_eq!(id, first.id);
                assert_eq!(label, "One");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(secrets.all().len(), 1);
    }

    #[test]
    fn file_caps_are_files() {
        let (_tmp, store, _secrets) = setup();
        let cap: Cap = OTHER_FILE_RO.parse().unwrap();
        let added = store.add(&cap, "Notes", None).unwrap();
        let entry = store.entry(&added.id).unwrap();
        assert_eq!(entry.kind, CapKind::File);
        assert_eq!(store.get_cap(&added.id).unwrap(), cap);
    }

    #[test]
    fn rename_mute_remove() {
        let (_tmp, store, secrets) = setup();
        let added = store.add(&dir_cap(), "Docs", None).unwrap();
        store.rename(&added.id, "Team Docs").unwrap();
        store.set_muted(&added.id, true).unwrap();
        let e = store.entry(&added.id).unwrap();
        assert_eq!(e.label, "Team Docs");
        assert!(e.muted);
        assert!(matches!(
            store.rename("cap-nope", "x"),
            Err(CapStoreError::UnknownId(_))
        ));
        let removed = store.remove(&added.id).unwrap();
        assert_eq!(removed.id, added.id);
        assert!(store.list().unwrap().is_empty());
        assert!(secrets.all().is_empty());
        assert!(matches!(
            store.get_cap(&added.id),
            Err(CapStoreError::UnknownId(_))
        ));
    }

    #[test]
    fn keyring_failure_leaves_no_config_entry() {
        let (_tmp, store, secrets) = setup();
        secrets
            .fail_puts
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            store.add(&dir_cap(), "Docs", None),
            Err(CapStoreError::Secret(_))
        ));
        assert!(store.list().unwrap().is_empty());
        assert!(
            store.config.load().unwrap().caps.is_empty(),
            "nothing half-added is left"
        );
    }

    #[test]
    fn a_crash_in_the_middle_of_an_add_or_a_remove_is_finished_on_recovery() {
        let (_tmp, store, secrets) = setup();
        // An add cut short after the config entry, before the keyring: undone.
        let half = store.add(&dir_cap(), "Half", None).unwrap();
        store
            .config
            .update(|c| {
                c.cap_mut(&half.id).unwrap().pending = Some(PendingChange::Adding);
                Ok::<_, ConfigError>(())
            })
            .unwrap();
        secrets.delete(&half.id).unwrap();
        assert!(
            store.list().unwrap().is_empty(),
            "not listed while unfinished"
        );
        // An add cut short after the keyring: kept.
        let other: Cap = OTHER_FILE_RO.parse().unwrap();
        let done = store.add(&other, "Done", None).unwrap();
        store
            .config
            .update(|c| {
                c.cap_mut(&done.id).unwrap().pending = Some(PendingChange::Adding);
                Ok::<_, ConfigError>(())
            })
            .unwrap();
        assert_eq!(store.recover().unwrap(), 2);
        let listed: Vec<String> = store.list().unwrap().into_iter().map(|e| e.label).collect();
        assert_eq!(listed, ["Done"]);
        // A remove cut short after the mark: the keyring entry goes too.
        store
            .config
            .update(|c| {
                c.cap_mut(&done.id).unwrap().pending = Some(PendingChange::Removing);
                Ok::<_, ConfigError>(())
            })
            .unwrap();
        assert_eq!(store.recover().unwrap(), 1);
        assert!(store.list().unwrap().is_empty());
        assert!(secrets.all().is_empty());
    }

    #[test]
    fn concurrent_edits_from_many_threads_are_all_kept() {
        let (_tmp, store, _secrets) = setup();
        let added = store.add(&dir_cap(), "Docs", None).unwrap();
        let store = Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                let id = added.id.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        store.set_muted(&id, (i + j) % 2 == 0).unwrap();
                        store.rename(&id, &format!("Docs {i}-{j}")).unwrap();
                    }
                })
            })
            .collect();
        let other: Cap = OTHER_FILE_RO.parse().unwrap();
        let other_added = store.add(&other, "Other", None).unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            [added.id, other_added.id],
            "no edit lost the other entry"
        );
    }

    #[test]
    fn tampered_keyring_entry_is_detected() {
        let (_tmp, store, secrets) = setup();
        let added = store.add(&dir_cap(), "Docs", None).unwrap();
        secrets.put(&added.id, "garbage-secret").unwrap();
        let err = store.get_cap(&added.id).unwrap_err();
        assert!(matches!(err, CapStoreError::StoredCapMismatch(_)));
        assert!(!err.to_string().contains("garbage-secret"));
        // Another slot's valid cap is refused too.
        secrets.put(&added.id, OTHER_FILE_RO).unwrap();
        assert!(matches!(
            store.get_cap(&added.id).unwrap_err(),
            CapStoreError::StoredCapMismatch(_)
        ));
    }

    #[test]
    fn errors_and_debug_never_show_the_cap() {
        let (_tmp, store, _secrets) = setup();
        let added = store.add(&dir_cap(), "Docs", None).unwrap();
        let dup = store.add(&dir_cap(), "Docs", None).unwrap_err();
        for text in [
            format!("{dup} {dup:?}"),
            format!("{store:?}"),
            format!("{added:?}"),
        ] {
            assert!(!text.contains("rvbf3wlbpjwgh3wkcd7n2irdhi"), "{text}");
            assert!(!text.contains("URI:"), "{text}");
        }
    }
}
