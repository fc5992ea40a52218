//! The welcome page, shown while nothing is set up: join a grid with an invite code, open a
//! grid file with the native file picker, or use the gateway of the user's own Tahoe node.
//! Nothing secret comes back to the page: grid names, counts and the gateway's URL only.

use std::path::PathBuf;
use std::sync::Arc;

use notifier_core::grid::description::parse_grid_file;
use notifier_core::grid::invite::{InviteCode, DEFAULT_MAILBOX_URL};
use notifier_core::grid::tahoe_node::NodeDir;
use notifier_core::service::{GatewayChoice, GatewaySource, ImportedGrid};
use serde::Serialize;
use tauri::AppHandle;
use tauri_plugin_dialog::DialogExt as _;

use super::{changed, CommandError, Result, Shared};
use crate::app::{self, Core};

/// Far more than any grid file: a wrong pick (a disk image…) must not fill memory.
const MAX_GRID_FILE_BYTES: u64 = 1024 * 1024;

/// A grid as it was joined or imported, for the page.
#[derive(Debug, Serialize)]
pub struct JoinedView {
    grid: String,
    servers: usize,
    news: bool,
    gateway_url: String,
    /// Where the gateway came from, in words ("your Tahoe node (~/.tahoe/node.url)").
    gateway_from: String,
}

/// The user's Tahoe node, as the welcome and add pages show it.
#[derive(Debug, Serialize)]
pub struct LocalNodeView {
    path: String,
    /// Its gateway (`node.url`), if the node has run once.
    gateway_url: Option<String>,
    /// How many aliases it has (their caps stay in the node's files).
    aliases: usize,
}

fn view(imported: &ImportedGrid) -> JoinedView {
    JoinedView {
        grid: imported.grid.name.clone(),
        servers: imported.servers.len(),
        news: imported.grid.news_id.is_some(),
        gateway_url: imported.grid.gateway_url.clone(),
        gateway_from: match &imported.gateway_source {
            GatewaySource::GridDescription => "the grid's description".to_owned(),
            GatewaySource::NodeUrl(path) => format!("your Tahoe node ({})", path.display()),
            GatewaySource::Given => "the URL you gave".to_owned(),
        },
    }
}

fn gateway_choice(core: &Core) -> Result<GatewayChoice> {
    Ok(GatewayChoice {
        url: None,
        node: core.tahoe_node().map_err(CommandError::new)?,
        // Only on the command line, where the user types the flag knowingly.
        allow_plain_http: false,
    })
}

/// The magic-wormhole mailbox invites go through: the public one, unless the environment
/// names another (`TAHOE_NOTIFIER_MAILBOX`, as for the CLI; a grid with its own mailbox).
fn mailbox_url() -> String {
    std::env::var("TAHOE_NOTIFIER_MAILBOX")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_MAILBOX_URL.to_owned())
}

/// Joins a grid with the invite code the user typed (a secret: it goes to the mailbox only),
/// then restarts the engine so it connects to the grid's servers.
#[tauri::command(async)]
pub async fn join_grid(app: AppHandle, core: Shared<'_>, code: String) -> Result<JoinedView> {
    let code: InviteCode = code.parse().map_err(CommandError::new)?;
    app::require_keyring(&core).map_err(CommandError)?;
    let choice = gateway_choice(&core)?;
    let imported = core
        .notifier()
        .join_grid(&code, &mailbox_url(), &choice)
        .await
        .map_err(CommandError::new)?;
    let core = Arc::clone(&core);
    super::changed(&app, &core);
    changed(&app, &core);
    Ok(view(&imported))
}

/// Asks for a grid file with the native file picker and imports it. `None` when the user
/// cancelled the picker.
#[tauri::command(async)]
pub fn open_grid_file(app: AppHandle, core: Shared<'_>) -> Result<Option<JoinedView>> {
    let picked = app
        .dialog()
        .file()
        .set_title("Open the grid file from your grid's operator")
        .add_filter("Grid file", &["json"])
        .blocking_pick_file();
    let Some(picked) = picked else {
        return Ok(None);
    };
    let path = picked
        .into_path()
        .map_err(|e| CommandError(format!("the picked file has no usable path: {e}")))?;
    let text = read_grid_file(&path)?;
    let grid = parse_grid_file(&text)
        .map_err(|e| CommandError(format!("cannot import {}: {e}", path.display())))?;
    drop(text);
    app::require_keyring(&core).map_err(CommandError)?;
    let imported = core
        .notifier()
        .import_grid(grid, &gateway_choice(&core)?)
        .map_err(|e| CommandError(format!("cannot import {}: {e}", path.display())))?;
    let core = Arc::clone(&core);
    super::changed(&app, &core);
    changed(&app, &core);
    Ok(Some(view(&imported)))
}

fn read_grid_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| CommandError(format!("cannot read {}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_GRID_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_GRID_FILE_BYTES {
        return Err(CommandError(format!(
            "{} is larger than any grid file ({MAX_GRID_FILE_BYTES} bytes)",
            path.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| CommandError(format!("{} is not a grid file (not text)", path.display())))
}

fn node_view(node: &NodeDir) -> Result<LocalNodeView> {
    Ok(LocalNodeView {
        path: node.path().display().to_string(),
        gateway_url: node.gateway_url().map_err(CommandError::new)?,
        aliases: node.aliases().map_err(CommandError::new)?.len(),
    })
}

/// The user's Tahoe node, if there is one (`~/.tahoe`, or the one chosen earlier).
#[tauri::command(async)]
pub fn local_node(core: Shared<'_>) -> Result<Option<LocalNodeView>> {
    core.tahoe_node()
        .map_err(CommandError::new)?
        .as_ref()
        .map(node_view)
        .transpose()
}

/// Asks for the user's Tahoe node directory with the native folder picker and remembers it.
/// `None` when the user cancelled.
#[tauri::command(async)]
pub fn choose_node_dir(app: AppHandle, core: Shared<'_>) -> Result<Option<LocalNodeView>> {
    let picked = app
        .dialog()
        .file()
        .set_title("Choose your Tahoe node's folder (the one holding node.url)")
        .blocking_pick_folder();
    let Some(picked) = picked else {
        return Ok(None);
    };
    let path: PathBuf = picked
        .into_path()
        .map_err(|e| CommandError(format!("the picked folder has no usable path: {e}")))?;
    let node = NodeDir::find(Some(&path))
        .map_err(CommandError::new)?
        .ok_or_else(|| CommandError(format!("{} is not a folder", path.display())))?;
    if !path.join("node.url").exists() && !path.join("tahoe.cfg").exists() {
        return Err(CommandError(format!(
            "{} is not a Tahoe node's folder: it has neither node.url nor tahoe.cfg",
            path.display()
        )));
    }
    let view = node_view(&node)?;
    notifier_core::store::preferences::Preferences::update(core.paths.config_dir(), |p| {
        p.tahoe_node_dir = Some(path);
    })?;
    changed(&app, &core);
    Ok(Some(view))
}

/// Uses the user's own Tahoe node as the gateway (its `node.url`), with no grid imported:
/// caps are then checked through it until a grid's updates servers push changes.
#[tauri::command(async)]
pub fn use_local_node(app: AppHandle, core: Shared<'_>) -> Result<LocalNodeView> {
    let node = core
        .tahoe_node()
        .map_err(CommandError::new)?
        .ok_or_else(|| {
            CommandError("there is no Tahoe node at ~/.tahoe: choose its folder".to_owned())
        })?;
    let view = node_view(&node)?;
    let Some(url) = view.gateway_url.clone() else {
        return Err(CommandError(format!(
            "the Tahoe node at {} has no node.url yet: start it once (`tahoe run`), then try again",
            view.path
        )));
    };
    let mut settings = core.settings();
    settings.gateway_url = Some(url.clone());
    settings.validate()?;
    // The host follows the new gateway within a second.
    notifier_core::store::preferences::Preferences::update(core.paths.config_dir(), |p| {
        p.gateway_url = Some(url);
    })?;
    changed(&app, &core);
    Ok(view)
}
