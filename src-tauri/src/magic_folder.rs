//! magic-folder in the window: the Settings page's commands to link, list and unlink a
//! daemon's folders (the bridge itself runs in the engine host, which follows the links within
//! a second, see `docs/magic-folder.md`). The page gets folder names, participant names, counts and paths of
//! config directories — never a cap or the daemon's API token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notifier_core::store::config::ConfigFile;

use notifier_core::describe::snapshot::human_size;
use notifier_core::magic_folder::poll_interval::{
    self, PollCost, MEASURED_BYTES_PER_DIRECTORY_READ, SUGGESTED_POLL_INTERVAL_SECS,
};
use notifier_core::magic_folder::{self as mf, MagicFolderClient, MagicFolderError};
use serde::Serialize;
use tauri::{AppHandle, Emitter as _, State};

use crate::app::{self, Core, CHANGED_EVENT};

/// How long the Settings page waits for a daemon's folder list before calling it unreachable.
const DAEMON_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/* ---------- commands ---------- */

type Shared<'a> = State<'a, Arc<Core>>;
type Result<T> = std::result::Result<T, crate::commands::CommandError>;

fn error(error: impl std::fmt::Display) -> crate::commands::CommandError {
    crate::commands::CommandError::new(error)
}

/// magic-folder's own default config directory (`magic-folder --config` defaults to the
/// platform's user config dir: `$XDG_CONFIG_HOME/magic-folder`, else `~/.config/magic-folder`).
fn default_config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .map(|base| base.join("magic-folder"))
}

fn config_dir_from(text: &str) -> Result<PathBuf> {
    let text = text.trim();
    if text.is_empty() {
        return default_config_dir().ok_or_else(|| {
            error("enter the magic-folder config directory (what `magic-folder --config DIR` is given)")
        });
    }
    let path = crate::commands::servers::expand_home(text);
    if !path.is_dir() {
        return Err(error(format!(
            "{} is not a directory: enter the magic-folder config directory (what \
             `magic-folder --config DIR` is given)",
            path.display()
        )));
    }
    Ok(path)
}

/// The poll-interval suggestion of one folder.
#[derive(Debug, Serialize)]
pub struct PollView {
    current_secs: u64,
    suggested_secs: u64,
    polls_per_hour_now: f64,
    directory_reads_per_poll: u64,
    traffic_now: String,
    traffic_suggested: String,
    traffic_saved: String,
    /// The exact command that applies it (with the daemon stopped).
    command: String,
}

/// One linked folder for the Settings page.
#[derive(Debug, Serialize)]
pub struct LinkedFolderView {
    config_dir: String,
    folder: String,
    own_name: String,
    participants: Vec<String>,
    conflicts_only: bool,
    /// `running`, `stopped` or `unreachable`.
    daemon: &'static str,
    daemon_error: Option<String>,
    poll: Option<PollView>,
    /// The bridge's last word about this folder.
    activity: Option<String>,
    /// Whether that word is a failure (the daemon could not be asked to poll).
    activity_failed: bool,
}

/// The Settings page's magic-folder section.
#[derive(Debug, Serialize)]
pub struct MagicFolderView {
    default_config_dir: Option<String>,
    folders: Vec<LinkedFolderView>,
}

fn poll_view(config_dir: &Path, folder: &str, others: u64, current: u64) -> PollView {
    let cost = PollCost::estimate(
        others,
        current,
        SUGGESTED_POLL_INTERVAL_SECS,
        MEASURED_BYTES_PER_DIRECTORY_READ,
    );
    PollView {
        current_secs: current,
        suggested_secs: SUGGESTED_POLL_INTERVAL_SECS,
        polls_per_hour_now: cost.polls_per_hour_now,
        directory_reads_per_poll: cost.reads_per_poll,
        traffic_now: human_size(cost.bytes_per_hour_now),
        traffic_suggested: human_size(cost.bytes_per_hour_suggested),
        traffic_saved: human_size(cost.bytes_per_hour_saved()),
        command: format!(
            "tahoe-notifier magic-folder poll-interval --config {} --folder {folder:?} --set {}",
            config_dir.display(),
            SUGGESTED_POLL_INTERVAL_SECS
        ),
    }
}

/// What a linked folder's daemon answered.
enum DaemonState {
    /// Running: its folders, name → poll interval in seconds.
    Running(BTreeMap<String, u64>),
    /// Stopped (`api_client_endpoint` says `not running`).
    Stopped,
    /// It should run but did not answer as expected: why.
    Unreachable(String),
}

async fn daemon_state(config_dir: &Path) -> DaemonState {
    if !poll_interval::daemon_running(config_dir) {
        return DaemonState::Stopped;
    }
    let client = match MagicFolderClient::new(config_dir) {
        Ok(client) => client,
        Err(MagicFolderError::NotRunning { .. }) => return DaemonState::Stopped,
        Err(e) => return DaemonState::Unreachable(e.to_string()),
    };
    match tokio::time::timeout(DAEMON_QUERY_TIMEOUT, client.folders()).await {
        Ok(Ok(folders)) => DaemonState::Running(
            folders
                .into_iter()
                .map(|f| (f.name, f.poll_interval))
                .collect(),
        ),
        Ok(Err(MagicFolderError::NotRunning { .. })) => DaemonState::Stopped,
        Ok(Err(e)) => DaemonState::Unreachable(e.to_string()),
        Err(_) => DaemonState::Unreachable(format!(
            "the daemon did not answer within {} s",
            DAEMON_QUERY_TIMEOUT.as_secs()
        )),
    }
}

/// The linked folders, each with its daemon's state and the poll-interval suggestion.
#[tauri::command]
pub async fn list_magic_folders(core: Shared<'_>) -> Result<MagicFolderView> {
    let links = mf::linked_folders(&ConfigFile::new(core.paths.config_file())).map_err(error)?;
    let mut daemons: BTreeMap<PathBuf, DaemonState> = BTreeMap::new();
    for link in &links {
        if !daemons.contains_key(&link.config_dir) {
            let state = daemon_state(&link.config_dir).await;
            daemons.insert(link.config_dir.clone(), state);
        }
    }
    let folders = links
        .into_iter()
        .map(|link| {
            let others = link.participants.len() as u64;
            let activity = core.folder_activity(&link.folder);
            let (daemon, daemon_error, poll) = match daemons.get(&link.config_dir) {
                Some(DaemonState::Running(folders)) => (
                    "running",
                    None,
                    folders
                        .get(&link.folder)
                        .map(|current| poll_view(&link.config_dir, &link.folder, others, *current)),
                ),
                Some(DaemonState::Stopped) => ("stopped", None, None),
                Some(DaemonState::Unreachable(reason)) => {
                    ("unreachable", Some(reason.clone()), None)
                }
                None => ("unreachable", None, None),
            };
            LinkedFolderView {
                config_dir: link.config_dir.display().to_string(),
                activity: activity.as_ref().map(|(text, _)| text.clone()),
                activity_failed: activity.is_some_and(|(_, failed)| failed),
                folder: link.folder,
                own_name: link.own_name,
                participants: link.participants.into_iter().map(|p| p.name).collect(),
                conflicts_only: link.conflicts_only,
                daemon,
                daemon_error,
                poll,
            }
        })
        .collect();
    Ok(MagicFolderView {
        default_config_dir: default_config_dir().map(|p| p.display().to_string()),
        folders,
    })
}

/// What linking did, per folder.
#[derive(Debug, Serialize)]
pub struct LinkedView {
    folder: String,
    own_name: String,
    participants: usize,
    new_caps: usize,
}

/// Links every folder of the daemon at `config_dir` (empty: magic-folder's default), then
/// restarts the engine and the bridge so they watch the new caps.
#[tauri::command]
pub async fn link_magic_folders(
    app: AppHandle,
    core: Shared<'_>,
    config_dir: String,
    conflicts_only: bool,
) -> Result<Vec<LinkedView>> {
    let dir = config_dir_from(&config_dir)?;
    app::require_keyring(&core).map_err(crate::commands::CommandError::new)?;
    let client = MagicFolderClient::new(&dir).map_err(error)?;
    let config = ConfigFile::new(core.paths.config_file());
    let outcomes = mf::link_folders(&client, &core.caps, &config, None, conflicts_only)
        .await
        .map_err(error)?;
    if outcomes.is_empty() {
        return Err(error(format!(
            "the magic-folder daemon of {} has no folder yet: add or join one first \
             (`magic-folder add` / `magic-folder join`)",
            dir.display()
        )));
    }
    tracing::info!(folders = outcomes.len(), "magic-folder linked");
    restart(&app, &core);
    Ok(outcomes
        .into_iter()
        .map(|o| LinkedView {
            folder: o.folder,
            own_name: o.own_name,
            participants: o.participants.len(),
            new_caps: o.added_cap_ids.len(),
        })
        .collect())
}

/// Unlinks one folder (the caps linking added are no longer watched); returns how many caps
/// were removed.
#[tauri::command(async)]
pub fn unlink_magic_folder(
    app: AppHandle,
    core: Shared<'_>,
    config_dir: String,
    folder: String,
) -> Result<usize> {
    let config = ConfigFile::new(core.paths.config_file());
    let removed =
        mf::unlink_folder(&core.caps, &config, Path::new(&config_dir), &folder).map_err(error)?;
    for id in &removed {
        core.forget_cap(id);
    }
    tracing::info!(removed = removed.len(), "magic-folder unlinked");
    restart(&app, &core);
    Ok(removed.len())
}

/// Turns "only tell me about conflicts" on or off for one folder.
#[tauri::command(async)]
pub fn set_magic_folder_conflicts_only(
    app: AppHandle,
    core: Shared<'_>,
    config_dir: String,
    folder: String,
    conflicts_only: bool,
) -> Result<()> {
    let config = ConfigFile::new(core.paths.config_file());
    mf::set_conflicts_only(&config, Path::new(&config_dir), &folder, conflicts_only)
        .map_err(error)?;
    // The bridge reads the choice when it opens.
    restart(&app, &core);
    Ok(())
}

/// Sets a folder's poll interval to the suggested one, with its daemon stopped (the page asks
/// first; the library refuses while the daemon runs). Returns the previous interval.
#[tauri::command(async)]
pub fn apply_magic_folder_poll_interval(config_dir: String, folder: String) -> Result<u64> {
    poll_interval::apply(
        Path::new(&config_dir),
        &folder,
        SUGGESTED_POLL_INTERVAL_SECS,
    )
    .map_err(error)
}

fn restart(app: &AppHandle, _core: &Arc<Core>) {
    // The host restarts its engine and bridge over the new links by itself.
    let _ = app.emit(CHANGED_EVENT, ());
}
