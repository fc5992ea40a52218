//! The Servers page: updates servers, grids, importing a grid file.

use std::path::PathBuf;

use notifier_core::grid::description::parse_grid_file;
use serde::Serialize;
use tauri::AppHandle;

use super::{CommandError, Result, Shared};
use crate::app::{self};

/// An updates server for the Servers page (no NURL: it holds the swissnum).
#[derive(Debug, Serialize)]
pub struct ServerView {
    id: String,
    name: String,
    address: String,
    grid: Option<String>,
    state: String,
    last_error: Option<String>,
    retry_in_s: Option<u64>,
}

/// A grid for the Servers page.
#[derive(Debug, Serialize)]
pub struct GridView {
    name: String,
    gateway_url: String,
    has_news: bool,
}

/// The Servers page's data.
#[derive(Debug, Serialize)]
pub struct ServersView {
    servers: Vec<ServerView>,
    grids: Vec<GridView>,
}

/// The configured updates servers with their link state, and the grids.
#[tauri::command(async)]
pub fn list_servers(core: Shared<'_>) -> Result<ServersView> {
    let entries = core.servers.list()?;
    let grids = core.servers.grids()?;
    let live = core.live();
    let servers = entries
        .into_iter()
        .map(|e| {
            let status = live.servers.get(&e.id);
            ServerView {
                name: e
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}:{}", e.host, e.port)),
                address: format!("{}:{}", e.host, e.port),
                grid: e.grid.clone(),
                state: status
                    .map_or("not started", |s| s.state.as_str())
                    .to_owned(),
                last_error: status.and_then(|s| s.last_error.clone()),
                retry_in_s: status.and_then(|s| s.retry_in_s),
                id: e.id,
            }
        })
        .collect();
    Ok(ServersView {
        servers,
        grids: grids
            .into_iter()
            .map(|g| GridView {
                has_news: g.news_id.is_some(),
                name: g.name,
                gateway_url: g.gateway_url,
            })
            .collect(),
    })
}

/// Reconnects every updates server now.
#[tauri::command(async)]
pub fn reconnect(core: Shared<'_>) {
    core.ask_host(app::HostRequest::Reconnect);
}

/// What an import did.
#[derive(Debug, Serialize)]
pub struct Imported {
    grid: String,
    servers: usize,
}

/// Imports the grid file at `path` (chosen by the user); the host connects to the new servers
/// within a second. The file's secrets go to the keyring, never to the page.
#[tauri::command(async)]
pub fn import_grid_file(app: AppHandle, core: Shared<'_>, path: String) -> Result<Imported> {
    let path = expand_home(path.trim());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CommandError(format!("cannot read the grid file {}: {e}", path.display())))?;
    let grid = parse_grid_file(&text)?;
    app::require_keyring(&core).map_err(CommandError)?;
    let entry = core.servers.import_grid(&grid)?;
    super::changed(&app, &core);
    Ok(Imported {
        grid: entry.name,
        servers: grid.updates_servers.len(),
    })
}

pub(crate) fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}
