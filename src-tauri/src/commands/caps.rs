//! The Watched page: watched caps, adding (pasted or from an alias), renaming, muting, removing.

use notifier_core::history::ChangeFilter;
use notifier_core::store::caps::check_watchable;
use notifier_core::store::config::{CapEntry, CapKind};
use serde::Serialize;
use tahoe_caps::{Cap, CapRole};
use tauri::AppHandle;

use super::{changed, CommandError, Result, Shared};
use crate::app::{self};

/// One watched cap as the Watched page lists it.
#[derive(Debug, Serialize)]
pub struct CapView {
    id: String,
    label: String,
    kind: &'static str,
    si: String,
    muted: bool,
    created_ms: i64,
    subscribed_on: Option<usize>,
    servers: Option<usize>,
    polling: bool,
    last_change: Option<String>,
    last_change_ms: Option<i64>,
    unread: u64,
}

fn kind_word(kind: CapKind) -> &'static str {
    match kind {
        CapKind::Directory => "folder",
        CapKind::File => "file",
    }
}

/// Every watched cap with its status, last change and unread count.
#[tauri::command(async)]
pub fn list_caps(core: Shared<'_>) -> Result<Vec<CapView>> {
    let entries: Vec<CapEntry> = core.caps.list()?;
    let history = core.history();
    let counts = history.unread_counts()?;
    let live = core.live();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let last = history
            .list_changes(&ChangeFilter {
                cap_id: Some(entry.id.clone()),
                unread_only: false,
                limit: Some(1),
            })?
            .into_iter()
            .next();
        let status = live.caps.get(&entry.id);
        out.push(CapView {
            unread: counts
                .by_cap
                .iter()
                .find(|(id, _)| *id == entry.id)
                .map_or(0, |(_, n)| *n),
            kind: kind_word(entry.kind),
            si: entry.storage_index.to_string(),
            muted: entry.muted,
            created_ms: (entry.created.unix_timestamp_nanos() / 1_000_000) as i64,
            subscribed_on: status.map(|s| s.subscribed_on),
            servers: status.map(|s| s.servers),
            polling: status.is_some_and(|s| s.polling),
            last_change_ms: last.as_ref().map(|c| c.at_ms),
            last_change: last.map(|c| c.summary),
            id: entry.id,
            label: entry.label,
        });
    }
    Ok(out)
}

/// What the add form shows while the user pastes.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Validation {
    /// A cap that can be watched.
    Ok {
        /// `folder` or `file`.
        kind: &'static str,
        /// Its storage index.
        si: String,
        /// The cap's form, e.g. `SDMF directory write-cap`.
        form: String,
        /// Whether a write-cap was pasted (the form then warns and offers to keep it).
        is_write: bool,
    },
    /// Not watchable; the message names what is wrong.
    Error {
        /// The message, without the cap.
        error: String,
    },
}

/// Checks pasted text without storing anything.
#[tauri::command(async)]
pub fn validate_cap(text: String) -> Validation {
    match watchable(&text) {
        Ok(cap) => Validation::Ok {
            kind: if cap.is_directory() { "folder" } else { "file" },
            si: cap
                .storage_index()
                .map(|si| si.to_string())
                .unwrap_or_default(),
            form: format!(
                "{} {}",
                cap.kind().short_name(),
                match cap.role() {
                    CapRole::Write => "write-cap",
                    CapRole::Read => "read-cap",
                    CapRole::Verify => "verify-cap",
                }
            ),
            is_write: cap.role() == CapRole::Write,
        },
        Err(error) => Validation::Error { error },
    }
}

/// Parses `text` and applies the cap store's rules (the same errors `add` would give).
fn watchable(text: &str) -> std::result::Result<Cap, String> {
    let cap = Cap::parse(text.trim()).map_err(|e| e.to_string())?;
    check_watchable(&cap).map_err(|e| e.to_string())?;
    Ok(cap)
}

/// The new entry.
#[derive(Debug, Serialize)]
pub struct Added {
    id: String,
    si: String,
}

/// Starts watching a pasted cap (only its read-only form is ever stored).
#[tauri::command(async)]
pub fn add_cap(
    app: AppHandle,
    core: Shared<'_>,
    text: String,
    label: String,
    grid: Option<String>,
) -> Result<Added> {
    let cap = watchable(&text).map_err(CommandError)?;
    app::require_keyring(&core).map_err(CommandError)?;
    let added = core
        .notifier()
        .add_cap(&cap, Some(&label), grid.as_deref())
        .map_err(CommandError::new)?;
    changed(&app, &core);
    Ok(Added {
        id: added.id,
        si: added.storage_index.to_string(),
    })
}

/// Renames a watched cap.
#[tauri::command(async)]
pub fn rename_cap(app: AppHandle, core: Shared<'_>, id: String, label: String) -> Result<()> {
    core.notifier()
        .rename_cap(&id, &label)
        .map_err(CommandError::new)?;
    changed(&app, &core);
    Ok(())
}

/// Mutes or unmutes a watched cap.
#[tauri::command(async)]
pub fn set_muted(app: AppHandle, core: Shared<'_>, id: String, muted: bool) -> Result<()> {
    core.notifier()
        .set_muted(&id, muted)
        .map_err(CommandError::new)?;
    changed(&app, &core);
    Ok(())
}

/// Stops watching: the keyring entry, the config entry and the cap's history go (as with
/// `tahoe-notifier caps remove`); the host unsubscribes it within a second.
#[tauri::command(async)]
pub fn remove_cap(app: AppHandle, core: Shared<'_>, id: String) -> Result<()> {
    core.notifier().remove_cap(&id).map_err(CommandError::new)?;
    core.forget_cap(&id);
    changed(&app, &core);
    Ok(())
}

/// One of the user's Tahoe aliases, as the add form lists it (its cap stays in the node's
/// alias file; only the name and kind come to the page).
#[derive(Debug, Serialize)]
pub struct AliasView {
    name: String,
    kind: &'static str,
    /// Whether it can be watched (a mutable folder or file), and if not, why.
    refused: Option<String>,
    /// The watched entry's id, if it is watched already.
    watched_as: Option<String>,
}

/// The aliases of the user's Tahoe node (`~/.tahoe`, or the one chosen on the welcome page);
/// empty without a node.
#[tauri::command(async)]
pub fn list_aliases(core: Shared<'_>) -> Result<Vec<AliasView>> {
    let Some(node) = core.tahoe_node().map_err(CommandError::new)? else {
        return Ok(Vec::new());
    };
    let watched = core.caps.list()?;
    let aliases = node.aliases().map_err(CommandError::new)?;
    Ok(aliases
        .into_iter()
        .map(|alias| {
            let checked = check_watchable(&alias.read_cap);
            let watched_as = checked.as_ref().ok().and_then(|si| {
                watched
                    .iter()
                    .find(|e| e.storage_index == *si)
                    .map(|e| e.id.clone())
            });
            AliasView {
                kind: if alias.read_cap.is_directory() {
                    "folder"
                } else {
                    "file"
                },
                refused: checked.err().map(|e| e.to_string()),
                watched_as,
                name: alias.name,
            }
        })
        .collect())
}

/// Starts watching the Tahoe alias `name` of the user's node, labelled `label` (default: the
/// alias's name). Its read-cap is taken from the node's alias file here; the page never sees it.
#[tauri::command(async)]
pub fn add_alias(
    app: AppHandle,
    core: Shared<'_>,
    name: String,
    label: Option<String>,
    grid: Option<String>,
) -> Result<Added> {
    let node = core
        .tahoe_node()
        .map_err(CommandError::new)?
        .ok_or_else(|| {
            CommandError(
                "there is no Tahoe node at ~/.tahoe: choose its folder on the welcome page"
                    .to_owned(),
            )
        })?;
    app::require_keyring(&core).map_err(CommandError)?;
    let label = label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty());
    let added = core
        .notifier()
        .add_alias(&node, &name, label.as_deref(), grid.as_deref())
        .map_err(CommandError::new)?;
    changed(&app, &core);
    Ok(Added {
        id: added.id,
        si: added.storage_index.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason_that_does_not_echo_it() {
        let Validation::Error { error } = validate_cap("hello world secret".to_owned()) else {
            panic!("garbage accepted");
        };
        assert!(error.contains("not a cap"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
