//! `tahoe-notifier servers …`: updates servers and grids. A NURL holds a swissnum (a secret), so
//! NURLs come from stdin or a grid file, go to the keyring, and are never printed: lists show
//! host, port, certificate hash, name and grid.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use notifier_core::config::ConfigError;
use notifier_core::grid_file::{parse_grid_file, GridFileError};
use notifier_core::servers::{GridEntry, Nurl, ServerEntry};
use serde_json::{json, Value};

use crate::caps::check_id;
use crate::context::Context;
use crate::input::read_secret;
use crate::output::{print_json, print_text, shown, table};
use notifier_core::tahoe_node::{nickname_for, NodeDir, StorageAnnouncement};

/// Far more than any grid file; a bound keeps a wrong path (a disk image…) from filling memory.
const MAX_GRID_FILE_BYTES: u64 = 1024 * 1024;

/// Manage the updates servers and grids (NURLs are kept in the OS keyring only).
#[derive(Debug, clap::Args)]
pub struct ServersArgs {
    #[command(subcommand)]
    command: ServersCommand,
}

#[derive(Debug, Subcommand)]
enum ServersCommand {
    /// Add one updates server. Its NURL (`pb://<hash>@<host>:<port>/<swissnum>#v=1`) is read
    /// from stdin, or asked for without echo when stdin is a terminal: it holds the swissnum, a
    /// secret, so it is never an argument.
    Add {
        /// The name to show for it (default: the nickname of the storage server with the same
        /// certificate, from the Tahoe node directory, if any).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        node: NodeDirArg,
    },
    /// List the updates servers (host, port, certificate hash, name, grid; never swissnums).
    List {
        #[command(flatten)]
        node: NodeDirArg,
    },
    /// Remove one updates server and its keyring entry.
    Remove {
        /// The server's id (see `servers list`).
        id: String,
    },
    /// Import a grid file: a JSON object with `name`, `gateway_url`, `updates_servers` (a list
    /// of NURLs) and optionally `newscap`. The file's contents are secrets and go to the keyring.
    Import {
        /// The grid file.
        file: PathBuf,
        #[command(flatten)]
        node: NodeDirArg,
    },
    /// Remove an imported grid, its updates servers and its news cap.
    RemoveGrid {
        /// The grid's name, as `servers list` or `status` shows it.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
struct NodeDirArg {
    /// A local Tahoe node directory (default: ~/.tahoe if it exists). Its `node.url` gives the
    /// gateway URL when a grid file has none, and its storage-server announcements name each
    /// updates server after the storage server whose certificate it shares.
    #[arg(long, value_name = "DIR")]
    node_dir: Option<PathBuf>,
}

/// Runs a `servers` subcommand.
pub fn run(ctx: &Context, args: &ServersArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ServersCommand::Add { name, node } => add(ctx, name.as_deref(), node)?,
        ServersCommand::List { node } => list(ctx, node)?,
        ServersCommand::Remove { id } => remove(ctx, id)?,
        ServersCommand::Import { file, node } => import(ctx, file, node)?,
        ServersCommand::RemoveGrid { name } => remove_grid(ctx, name)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The storage announcements of the node directory in use, or none.
fn announcements(node: Option<&NodeDir>) -> anyhow::Result<Vec<StorageAnnouncement>> {
    match node {
        Some(node) => Ok(node.storage_announcements()?),
        None => Ok(Vec::new()),
    }
}

/// The JSON form of a server entry, with the matching storage server's nickname if known.
pub fn server_json(entry: &ServerEntry, announcements: &[StorageAnnouncement]) -> Value {
    json!({
        "id": entry.id,
        "name": entry.name,
        "host": entry.host,
        "port": entry.port,
        "spki_hash": entry.spki_hash,
        "grid": entry.grid,
        "storage_server": nickname_for(announcements, &entry.spki_hash),
    })
}

/// The JSON form of a grid entry (its news cap is only said to exist).
pub fn grid_json(grid: &GridEntry) -> Value {
    json!({
        "name": grid.name,
        "gateway_url": grid.gateway_url,
        "news": grid.news_id.is_some(),
        "news_storage_index": grid.news_storage_index.map(|si| si.to_string()),
    })
}

/// Text rows for servers: id, address, name, grid, hash.
pub fn server_table(servers: &[ServerEntry], announcements: &[StorageAnnouncement]) -> String {
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let name = match (&s.name, nickname_for(announcements, &s.spki_hash)) {
                (Some(name), _) => shown(name),
                (None, Some(nick)) => format!("({})", shown(nick)),
                (None, None) => "-".to_owned(),
            };
            vec![
                s.id.clone(),
                address(s),
                name,
                s.grid.as_deref().map_or_else(|| "-".to_owned(), shown),
                s.spki_hash.clone(),
            ]
        })
        .collect();
    table(
        &["ID", "ADDRESS", "NAME", "GRID", "CERTIFICATE HASH"],
        &rows,
    )
}

fn address(s: &ServerEntry) -> String {
    if s.host.contains(':') {
        format!("[{}]:{}", s.host, s.port)
    } else {
        format!("{}:{}", s.host, s.port)
    }
}

fn add(ctx: &Context, name: Option<&str>, node: &NodeDirArg) -> anyhow::Result<()> {
    let node = NodeDir::find(node.node_dir.as_deref())?;
    let text = read_secret(
        "updates server's NURL",
        "tahoe-notifier servers add --name Updates < nurl.txt",
    )?;
    let nurl: Nurl = text
        .trim()
        .parse()
        .context("cannot add the updates server: what was given is not a valid NURL")?;
    drop(text);
    let announced = announcements(node.as_ref())?;
    let name = name.or_else(|| nickname_for(&announced, &nurl.spki_hash_base64()));
    ctx.ensure_dirs()?;
    let entry = ctx
        .server_store()
        .add(&nurl, name, None)
        .context("cannot add the updates server")?;
    if ctx.json() {
        print_json(&server_json(&entry, &announced))
    } else {
        print_text(&format!(
            "added {}\naddress:           {}\nname:              {}\ncertificate hash:  {}\n",
            entry.id,
            address(&entry),
            entry.name.as_deref().map_or_else(|| "-".to_owned(), shown),
            entry.spki_hash
        ))
    }
}

fn list(ctx: &Context, node: &NodeDirArg) -> anyhow::Result<()> {
    let node = NodeDir::find(node.node_dir.as_deref())?;
    let announced = announcements(node.as_ref())?;
    let store = ctx.server_store();
    let servers = store.list().context("cannot list the updates servers")?;
    let grids = store.grids().context("cannot list the grids")?;
    let node_gateway = match &node {
        Some(node) => node.gateway_url()?,
        None => None,
    };
    if ctx.json() {
        return print_json(&json!({
            "servers": servers.iter().map(|s| server_json(s, &announced)).collect::<Vec<_>>(),
            "grids": grids.iter().map(grid_json).collect::<Vec<_>>(),
            "node_dir": node.as_ref().map(|n| n.path().display().to_string()),
            "node_gateway_url": node_gateway,
        }));
    }
    let mut text = String::new();
    if servers.is_empty() {
        text.push_str(
            "no updates servers; add one with `tahoe-notifier servers add` or import a grid \
             file with `tahoe-notifier servers import`\n",
        );
    } else {
        text.push_str(&server_table(&servers, &announced));
        if servers
            .iter()
            .any(|s| s.name.is_none() && nickname_for(&announced, &s.spki_hash).is_some())
        {
            text.push_str("(names in parentheses are the storage servers' nicknames)\n");
        }
    }
    for grid in &grids {
        text.push_str(&format!(
            "grid {}: gateway {}{}\n",
            shown(&grid.name),
            shown(&grid.gateway_url),
            if grid.news_id.is_some() {
                ", with news"
            } else {
                ""
            }
        ));
    }
    print_text(&text)
}

fn remove(ctx: &Context, id: &str) -> anyhow::Result<()> {
    check_id(id, "srv-")?;
    ctx.server_store()
        .remove(id)
        .with_context(|| format!("cannot remove the updates server {id}"))?;
    if ctx.json() {
        print_json(&json!({ "removed": id }))
    } else {
        print_text(&format!(
            "removed {id}; its NURL was deleted from the {} keyring\n",
            ctx.backend()
        ))
    }
}

fn remove_grid(ctx: &Context, name: &str) -> anyhow::Result<()> {
    ctx.server_store()
        .remove_grid(name)
        .with_context(|| format!("cannot remove the grid {:?}", shown(name)))?;
    if ctx.json() {
        print_json(&json!({ "removed_grid": name }))
    } else {
        print_text(&format!(
            "removed the grid {} with its updates servers and news cap\n",
            shown(name)
        ))
    }
}

/// Where the grid's gateway URL came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GatewaySource {
    GridFile,
    NodeUrl(PathBuf),
}

fn import(ctx: &Context, file: &Path, node: &NodeDirArg) -> anyhow::Result<()> {
    let node = NodeDir::find(node.node_dir.as_deref())?;
    let text = read_grid_file(file)?;
    let node_gateway = match &node {
        Some(node) => node.gateway_url()?.map(|url| (url, node.node_url_file())),
        None => None,
    };
    let (text, source) = fill_gateway_url(text, node_gateway);
    let grid = parse_grid_file(&text).map_err(|e| {
        let hint = if e == GridFileError::Missing("gateway_url") {
            "; add one, or give --node-dir with a Tahoe node whose node.url names the gateway"
        } else {
            ""
        };
        anyhow::anyhow!("{e}{hint}")
            .context(format!("cannot import the grid file {}", file.display()))
    })?;
    drop(text);

    ctx.ensure_dirs()?;
    let store = ctx.server_store();
    let entry = store
        .import_grid(&grid)
        .with_context(|| format!("cannot import the grid file {}", file.display()))?;
    let announced = announcements(node.as_ref())?;
    name_servers(ctx, &entry.name, &announced)?;

    let servers: Vec<ServerEntry> = store
        .list()
        .context("the grid was imported, but the servers cannot be listed")?
        .into_iter()
        .filter(|s| s.grid.as_deref() == Some(entry.name.as_str()))
        .collect();
    let from = match &source {
        GatewaySource::GridFile => "the grid file".to_owned(),
        GatewaySource::NodeUrl(path) => path.display().to_string(),
    };
    if ctx.json() {
        let mut grid = grid_json(&entry);
        grid["gateway_url_from"] = json!(from);
        print_json(&json!({
            "grid": grid,
            "servers": servers.iter().map(|s| server_json(s, &announced)).collect::<Vec<_>>(),
        }))
    } else {
        let mut text = format!(
            "imported the grid {}\ngateway:  {} (from {from})\nnews:     {}\n",
            shown(&entry.name),
            shown(&entry.gateway_url),
            if entry.news_id.is_some() {
                "yes (the news cap is in the keyring)"
            } else {
                "none"
            }
        );
        text.push_str(&server_table(&servers, &announced));
        print_text(&text)
    }
}

fn read_grid_file(file: &Path) -> anyhow::Result<String> {
    let opened = std::fs::File::open(file)
        .with_context(|| format!("cannot read the grid file {}", file.display()))?;
    let mut bytes = Vec::new();
    opened
        .take(MAX_GRID_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the grid file {}", file.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_GRID_FILE_BYTES,
        "the grid file {} is larger than {MAX_GRID_FILE_BYTES} bytes, which no grid file is",
        file.display()
    );
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the grid file {} is not UTF-8 text", file.display()))
}

/// Puts the node's gateway URL into a grid file that has none. Anything that is not a JSON
/// object is left alone for [`parse_grid_file`] to report.
fn fill_gateway_url(
    text: String,
    node_gateway: Option<(String, PathBuf)>,
) -> (String, GatewaySource) {
    let Some((url, from)) = node_gateway else {
        return (text, GatewaySource::GridFile);
    };
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(&text) else {
        return (text, GatewaySource::GridFile);
    };
    if !matches!(object.get("gateway_url"), None | Some(Value::Null)) {
        return (text, GatewaySource::GridFile);
    }
    object.insert("gateway_url".to_owned(), Value::String(url));
    match serde_json::to_string(&Value::Object(object)) {
        Ok(filled) => (filled, GatewaySource::NodeUrl(from)),
        Err(_) => (text, GatewaySource::GridFile),
    }
}

/// Names the grid's unnamed servers after the storage servers sharing their certificate.
fn name_servers(
    ctx: &Context,
    grid: &str,
    announced: &[StorageAnnouncement],
) -> anyhow::Result<()> {
    if announced.is_empty() {
        return Ok(());
    }
    ctx.config_file()
        .update(|config| {
            for server in config
                .servers
                .iter_mut()
                .filter(|s| s.grid.as_deref() == Some(grid) && s.name.is_none())
            {
                server.name = nickname_for(announced, &server.spki_hash).map(str::to_owned);
            }
            Ok::<_, ConfigError>(())
        })
        .context("the grid was imported, but its servers could not be named")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_url_is_filled_only_when_missing() {
        let node = Some((
            "http://127.0.0.1:3456/".to_owned(),
            PathBuf::from("/n/node.url"),
        ));
        let (text, source) = fill_gateway_url(r#"{"name": "G"}"#.to_owned(), node.clone());
        assert_eq!(source, GatewaySource::NodeUrl(PathBuf::from("/n/node.url")));
        assert!(text.contains("http://127.0.0.1:3456/"));
        let (text, source) = fill_gateway_url(r#"{"gateway_url": null}"#.to_owned(), node.clone());
        assert_eq!(source, GatewaySource::NodeUrl(PathBuf::from("/n/node.url")));
        assert!(text.contains("3456"));
        let original = r#"{"gateway_url": "http://x"}"#.to_owned();
        assert_eq!(
            fill_gateway_url(original.clone(), node.clone()),
            (original.clone(), GatewaySource::GridFile)
        );
        assert_eq!(
            fill_gateway_url("not json".to_owned(), node),
            ("not json".to_owned(), GatewaySource::GridFile)
        );
        assert_eq!(
            fill_gateway_url(original.clone(), None),
            (original, GatewaySource::GridFile)
        );
    }
}
