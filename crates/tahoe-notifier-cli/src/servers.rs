//! `tahoe-notifier servers …`: updates servers and grids. A NURL holds a swissnum (a secret), so
//! NURLs come from stdin or a grid file, go to the keyring, and are never printed: lists show
//! host, port, certificate hash, name and grid.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use notifier_core::grid::description::{
    check_gateway_url, nurl_file_of_node, parse_grid_file, read_nurl_file, GridFile, GridGateway,
};
use notifier_core::grid::invite::{Invitation, InviteCode, DEFAULT_MAILBOX_URL};
use notifier_core::service::{GatewayChoice, GatewaySource, ImportedGrid, ServiceError};
use notifier_core::store::servers::{GridEntry, Nurl, ServerEntry};
use serde_json::{json, Value};
use tahoe_caps::Cap;

use crate::caps::check_id;
use crate::context::Context;
use crate::input::read_secret;
use crate::output::{print_json, print_json_line, print_text, shown, table};
use notifier_core::grid::tahoe_node::{nickname_for, NodeDir, StorageAnnouncement};

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
    /// Import a grid file: a JSON object with `name`, `gateway_url` (absent: your own Tahoe
    /// node's), `updates_servers` (a list of NURLs) and optionally `newscap`. The file's
    /// contents are secrets and go to the keyring.
    Import {
        /// The grid file.
        file: PathBuf,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Join a grid with an invite code from its operator (`servers invite` on their side). The
    /// code is read from stdin, or asked for without echo in a terminal; never an argument.
    Join {
        #[command(flatten)]
        mailbox: MailboxArg,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// For grid operators: describe a grid from its parts and hand it to one user with an
    /// invite code (they run `servers join`), or write it as a grid file with --output.
    Invite(InviteArgs),
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

/// Which gateway a grid that leaves it to each user gets.
#[derive(Debug, clap::Args)]
struct GatewayArgs {
    /// Your Tahoe node directory (default: ~/.tahoe if it exists). A grid meant to be used
    /// through your own node takes the gateway from its node.url; its storage-server
    /// announcements name the updates servers.
    #[arg(long, value_name = "DIR")]
    node_dir: Option<PathBuf>,
    /// The Tahoe web gateway to use for a grid meant to be used through your own node, instead
    /// of the node directory's node.url.
    #[arg(long, value_name = "URL")]
    gateway_url: Option<String>,
    /// Accept a plain http:// gateway on another machine: every cap you watch in this grid
    /// then crosses the network unencrypted. Without it such a grid is refused.
    #[arg(long)]
    allow_plain_http: bool,
}

impl GatewayArgs {
    fn choice(&self) -> anyhow::Result<GatewayChoice> {
        Ok(GatewayChoice {
            url: self.gateway_url.clone(),
            node: NodeDir::find(self.node_dir.as_deref())?,
            allow_plain_http: self.allow_plain_http,
        })
    }
}

/// The magic-wormhole mailbox server invites go through.
#[derive(Debug, clap::Args)]
struct MailboxArg {
    /// The magic-wormhole mailbox server (both sides must use the same).
    #[arg(long = "mailbox", value_name = "URL", env = "TAHOE_NOTIFIER_MAILBOX", default_value = DEFAULT_MAILBOX_URL)]
    url: String,
}

#[derive(Debug, clap::Args)]
struct InviteArgs {
    /// The grid's name, as users will see it.
    #[arg(long)]
    name: String,
    /// A storage node's directory, where its tahoe-updates-server wrote its NURL
    /// (private/updates-server.nurl). Repeat for each node.
    #[arg(long = "storage-node-dir", value_name = "DIR")]
    storage_node_dirs: Vec<PathBuf>,
    /// An updates server's NURL file (what its --nurl-file names). Repeat for each server.
    #[arg(long = "nurl-file", value_name = "FILE")]
    nurl_files: Vec<PathBuf>,
    /// The Tahoe web gateway users should fetch listings through.
    #[arg(long, value_name = "URL", required_unless_present = "own_gateway")]
    gateway_url: Option<String>,
    /// Users fetch listings through their own Tahoe node instead of a gateway of yours.
    #[arg(long, conflicts_with = "gateway_url")]
    own_gateway: bool,
    /// Also hand out the grid's news directory: its cap is read from stdin (or asked for
    /// without echo); a write-cap is reduced to its read-cap first.
    #[arg(long)]
    news: bool,
    /// Write the grid file here (created readable by you only) instead of making an invite.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    mailbox: MailboxArg,
}

impl InviteArgs {
    /// The grid's description from the parts given.
    fn description(&self) -> anyhow::Result<GridFile> {
        let mut files: Vec<PathBuf> = self
            .storage_node_dirs
            .iter()
            .map(|dir| nurl_file_of_node(dir))
            .collect();
        files.extend(self.nurl_files.iter().cloned());
        anyhow::ensure!(
            !files.is_empty(),
            "name the grid's updates servers: --storage-node-dir DIR or --nurl-file FILE for each"
        );
        let mut updates_servers = Vec::new();
        for file in &files {
            let nurl = read_nurl_file(file)?;
            if !updates_servers.contains(&nurl) {
                updates_servers.push(nurl);
            }
        }
        let gateway = match &self.gateway_url {
            Some(url) => GridGateway::Url(
                check_gateway_url(url).map_err(|e| anyhow::anyhow!("--gateway-url: {e}"))?,
            ),
            None => GridGateway::OwnNode,
        };
        let newscap = if self.news {
            let text = read_secret(
                "news directory's cap",
                "tahoe-notifier servers invite --news … < newscap.txt",
            )?;
            let cap: Cap = text
                .parse()
                .context("the news directory's cap is not a valid Tahoe cap")?;
            Some(cap.read_only())
        } else {
            None
        };
        let grid = GridFile {
            name: self.name.trim().to_owned(),
            gateway,
            updates_servers,
            newscap,
        };
        // The same checks a user's side makes, so that nothing unusable is handed out.
        parse_grid_file(&grid.to_json()).context("the grid's description is not usable")
    }
}

/// Runs a `servers` subcommand.
pub fn run(ctx: &Context, args: &ServersArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ServersCommand::Add { name, node } => add(ctx, name.as_deref(), node)?,
        ServersCommand::List { node } => list(ctx, node)?,
        ServersCommand::Remove { id } => remove(ctx, id)?,
        ServersCommand::Import { file, gateway } => import(ctx, file, gateway)?,
        ServersCommand::Join { mailbox, gateway } => join(ctx, mailbox, gateway)?,
        ServersCommand::Invite(args) => invite(ctx, args)?,
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

fn import(ctx: &Context, file: &Path, gateway: &GatewayArgs) -> anyhow::Result<()> {
    let text = read_grid_file(file)?;
    let grid = parse_grid_file(&text)
        .with_context(|| format!("cannot import the grid file {}", file.display()))?;
    drop(text);
    let choice = gateway.choice()?;
    let imported = ctx
        .notifier()
        .import_grid(grid, &choice)
        .map_err(with_flag_hint)
        .with_context(|| format!("cannot import the grid file {}", file.display()))?;
    print_imported(ctx, &imported, &choice, "imported")
}

/// What `import` and `join` print: the grid, where its gateway came from, its servers.
fn print_imported(
    ctx: &Context,
    imported: &ImportedGrid,
    choice: &GatewayChoice,
    verb: &str,
) -> anyhow::Result<()> {
    let announced = announcements(choice.node.as_ref())?;
    let from = match &imported.gateway_source {
        GatewaySource::GridDescription => "the grid's description".to_owned(),
        GatewaySource::NodeUrl(path) => format!("your Tahoe node's {}", path.display()),
        GatewaySource::Given => "--gateway-url".to_owned(),
    };
    let entry = &imported.grid;
    if ctx.json() {
        let mut grid = grid_json(entry);
        grid["gateway_url_from"] = json!(from);
        print_json(&json!({
            "grid": grid,
            "servers": imported.servers.iter().map(|s| server_json(s, &announced)).collect::<Vec<_>>(),
        }))
    } else {
        let mut text = format!(
            "{verb} the grid {}\ngateway:  {} (from {from})\nnews:     {}\n",
            shown(&entry.name),
            shown(&entry.gateway_url),
            if entry.news_id.is_some() {
                "yes (the news cap is in the keyring)"
            } else {
                "none"
            }
        );
        text.push_str(&server_table(&imported.servers, &announced));
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

fn join(ctx: &Context, mailbox: &MailboxArg, gateway: &GatewayArgs) -> anyhow::Result<()> {
    let typed = read_secret("invite code", "tahoe-notifier servers join < code.txt")?;
    let code: InviteCode = typed.parse()?;
    drop(typed);
    let choice = gateway.choice()?;
    let notifier = ctx.notifier();
    if !ctx.json() {
        eprintln!(
            "tahoe-notifier: joining through the invite mailbox at {} …",
            mailbox.url
        );
    }
    let imported = runtime()?
        .block_on(notifier.join_grid(&code, &mailbox.url, &choice))
        .map_err(with_flag_hint)
        .context("cannot join the grid")?;
    print_imported(ctx, &imported, &choice, "joined")
}

fn invite(ctx: &Context, args: &InviteArgs) -> anyhow::Result<()> {
    let grid = args.description()?;
    if let Some(output) = &args.output {
        write_private_new_file(output, &grid.to_json())?;
        if ctx.json() {
            return print_json(
                &json!({ "written": output.display().to_string(), "updates_servers": grid.updates_servers.len() }),
            );
        }
        return print_text(&format!(
            "wrote the grid {} ({} updates servers{}) to {}; it holds the grid's secrets: hand it \
             to users privately (they run `tahoe-notifier servers import FILE`)\n",
            shown(&grid.name),
            grid.updates_servers.len(),
            if grid.newscap.is_some() { ", news" } else { "" },
            output.display()
        ));
    }
    let runtime = runtime()?;
    runtime.block_on(async {
        let invitation = Invitation::create(&args.mailbox.url)
            .await
            .context("cannot make an invite")?;
        let code = invitation.code();
        if ctx.json() {
            print_json_line(&json!({ "code": code.reveal(), "grid": grid.name }))?;
        } else {
            print_text(&format!(
                "Invite code: {}\nGive it to one user, who runs `tahoe-notifier servers join` (or \
                 \"Join a grid\" in the app) and types it in. Waiting for them; Ctrl-C cancels \
                 the invite.\n",
                code.reveal()
            ))?;
        }
        drop(code);
        let delivered = tokio::select! {
            delivered = invitation.deliver(&grid) => delivered,
            _ = tokio::signal::ctrl_c() => {
                anyhow::bail!("the invite was cancelled; its code no longer works");
            }
        };
        let joined = delivered.context("the invite did not go through")?;
        if ctx.json() {
            print_json_line(&json!({ "joined": joined.grid }))
        } else {
            print_text(&format!(
                "The user has joined the grid {}.\n",
                shown(&joined.grid)
            ))
        }
    })
}

/// Creates `path` readable by the owner only; never replaces an existing file.
fn write_private_new_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (an existing file is never replaced)",
                path.display()
            )
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Names this command's flags where the error asks for a gateway.
fn with_flag_hint(error: ServiceError) -> anyhow::Error {
    match error {
        ServiceError::NoOwnGateway { .. } => {
            anyhow::anyhow!("{error} (--node-dir DIR or --gateway-url URL)")
        }
        ServiceError::PlainHttpGateway { .. } => anyhow::anyhow!("{error} (--allow-plain-http)"),
        other => anyhow::Error::new(other),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
