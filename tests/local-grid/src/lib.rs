//! A real local Tahoe-LAFS grid on 127.0.0.1, for integration tests and the demo.
//!
//! [`Grid::start`] creates an introducer, N storage nodes and a gateway with the real
//! `tahoe` (1.20.0, installed by `tests/bootstrap-python.sh`), starts them on free loopback
//! ports and returns once the gateway is connected to every storage node. The [`Grid`] then
//! offers the gateway's web API as a few blocking helpers, the storage nodes' directories (to
//! find share files) and stop/start/kill of single storage nodes.
//!
//! ```no_run
//! let grid = local_grid::shared().map_err(|e| e.to_string())?;
//! let dircap = grid.create_mutable_dir(local_grid::Format::Sdmf)?;
//! grid.put_child(&dircap, "hello.txt", b"hello")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # No orphaned nodes
//!
//! Every node runs under a small Python watchdog (`src/watchdog.py`, run by the interpreter of
//! the `tahoe` script) whose stdin is a pipe from this process. Only this process holds the
//! write end, so when this process ends in any way, even by SIGKILL, the kernel closes it and
//! the watchdog sees end-of-file, SIGTERMs its node (SIGKILL after 5 s) and exits. A janitor
//! watchdog removes the grid's temporary directory once all node watchdogs have exited. This
//! is what makes [`shared`] safe even though statics are never dropped.
//!
//! # Caps are secrets
//!
//! Caps are returned as `String`s and never logged or put into errors; errors from the web API
//! name the operation, the HTTP status and the answer body with anything cap-like redacted.

use std::fmt;
use std::io::{self, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod bins;
pub mod desktop;
mod http;
mod logs;
pub mod magic_folder;
pub mod nats;
mod process;

use process::{Janitor, Launcher, Supervised};

/// How long [`Grid::start`] waits for the introducer's fURL and for all servers to connect.
/// A grid is ready in about 9 s on an idle 2-core machine, but several times that while the
/// same cores compile: the limit is there to report a broken grid, not a slow one.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The watchdog script, written into the grid's directory at start.
const WATCHDOG_PY: &str = include_str!("watchdog.py");

/// Directory (under the base directory) for local-grid's own files.
const CONTROL_DIR: &str = ".local-grid";

/// What the grid should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridOptions {
    /// Number of storage nodes (default 3).
    pub storage_nodes: usize,
    /// Shares needed to read a file, Tahoe's `k` (default 2).
    pub shares_needed: usize,
    /// Servers an upload must reach, Tahoe's `happy` (default 2).
    pub shares_happy: usize,
    /// Shares written per file, Tahoe's `N` (default 3).
    pub shares_total: usize,
    /// Where to create the node directories. `None` (the default) uses a fresh temporary
    /// directory that is removed when the grid stops. A given directory must be empty or absent
    /// and is left in place.
    pub base_dir: Option<PathBuf>,
    /// Give each storage node a web port on loopback (default: none), e.g. to read its
    /// `/statistics?t=json` counters ([`StorageNode::statistics`]).
    pub storage_web: bool,
}

impl Default for GridOptions {
    fn default() -> Self {
        Self {
            storage_nodes: 3,
            shares_needed: 2,
            shares_happy: 2,
            shares_total: 3,
            base_dir: None,
            storage_web: false,
        }
    }
}

/// Mutable-file format for new mutable files and directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Small Distributed Mutable Files: one segment, caps `URI:SSK:` / `URI:DIR2:`.
    #[default]
    Sdmf,
    /// Medium Distributed Mutable Files: caps `URI:MDMF:` / `URI:DIR2-MDMF:`.
    Mdmf,
}

impl Format {
    fn as_query(self) -> &'static str {
        match self {
            Self::Sdmf => "sdmf",
            Self::Mdmf => "mdmf",
        }
    }
}

/// One storage node of the grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageNode {
    /// Nickname and directory name, `storage0`, `storage1`, ….
    pub name: String,
    /// The node directory.
    pub dir: PathBuf,
    /// `dir/storage`; shares are under `storage/shares/<first 2 chars of SI>/<SI>/<shnum>`.
    pub storage_dir: PathBuf,
    /// The loopback port of its Foolscap and HTTPS storage listener.
    pub port: u16,
    /// Its web port, with [`GridOptions::storage_web`].
    pub web_port: Option<u16>,
    gateway_dir: PathBuf,
}

impl StorageNode {
    /// The node's `/statistics?t=json` (with [`GridOptions::storage_web`]): its counters
    /// include `storage_server.readv`, one per share read request it served.
    pub fn statistics(&self) -> Result<serde_json::Value, GridError> {
        let port = self.web_port.ok_or_else(|| {
            GridError::InvalidOptions(format!(
                "{} has no web port: start the grid with storage_web",
                self.name
            ))
        })?;
        const OP: &str = "read a storage node's statistics";
        let answer = http::request(port, "GET", "/statistics?t=json", &[], None)
            .map_err(|e| GridError::io(format!("{OP}: talking to {}", self.name), e))?;
        if answer.status != 200 {
            return Err(GridError::Http {
                operation: OP,
                status: answer.status,
                body: String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(200)
                    .collect(),
            });
        }
        serde_json::from_slice(&answer.body).map_err(|e| GridError::BadResponse {
            operation: OP,
            detail: format!("not JSON: {e}"),
        })
    }

    /// How many share read requests (`slot_readv`) the node has served since it started.
    pub fn readv_count(&self) -> Result<u64, GridError> {
        Ok(self.statistics()?["counters"]["storage_server.readv"]
            .as_u64()
            .unwrap_or(0))
    }

    /// The NURL this storage server announces, e.g.
    /// `pb://<spki-hash>@127.0.0.1:<port>/<swissnum>#v=1`.
    ///
    /// Read from the announcements that the gateway caches in
    /// `GATEWAY/private/introducer_default_cache.yaml` (falling back to the node's own cache,
    /// since a storage node also subscribes to storage announcements). The entry is found by the
    /// swissnum, which is the last path part of the node's `private/storage.furl`. The NURL is an
    /// access secret for the storage server: do not log it.
    pub fn nurl_text(&self) -> Result<String, GridError> {
        let furl_path = self.dir.join("private").join("storage.furl");
        let furl = std::fs::read_to_string(&furl_path)
            .map_err(|e| GridError::io(format!("reading {}", furl_path.display()), e))?;
        let swissnum = furl
            .trim()
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| GridError::NurlNotFound {
                node: self.name.clone(),
                detail: format!("{} has no swissnum", furl_path.display()),
            })?;
        let needle = format!("/{swissnum}#");
        for dir in [&self.gateway_dir, &self.dir] {
            let cache = dir.join("private").join("introducer_default_cache.yaml");
            let Ok(text) = std::fs::read_to_string(&cache) else {
                continue;
            };
            let found = text.lines().find_map(|line| {
                let item = line.trim().strip_prefix("- ")?;
                (item.starts_with("pb://") && item.contains(&needle)).then(|| item.to_owned())
            });
            if let Some(nurl) = found {
                return Ok(nurl);
            }
        }
        Err(GridError::NurlNotFound {
            node: self.name.clone(),
            detail: "no announcement with its swissnum in the introducer caches".to_owned(),
        })
    }
}

/// How the gateway sees one storage server (from `GET /?t=json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// The server's nickname (`storage0`, …).
    pub nickname: String,
    /// Tahoe's node id, `v0-…`.
    pub nodeid: String,
    /// Tahoe's `connection_status`, e.g. `connected`.
    pub connection_status: String,
}

impl ServerStatus {
    /// Whether the gateway is connected to this server.
    pub fn is_connected(&self) -> bool {
        self.connection_status == "connected"
    }
}

/// Everything that can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GridError {
    /// No `tahoe` executable was found.
    #[error(
        "tahoe executable not found (looked at: {searched}); run tests/bootstrap-python.sh to \
         install tahoe-lafs 1.20.0, or set TAHOE_BIN"
    )]
    TahoeNotFound {
        /// The places tried.
        searched: String,
    },
    /// The options make no grid.
    #[error("invalid grid options: {0}")]
    InvalidOptions(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A `tahoe` command (e.g. `create-node`) failed.
    #[error("{what} failed ({status}):\n{output}")]
    Command {
        /// Which command.
        what: String,
        /// Its exit status.
        status: String,
        /// Its stdout and stderr, caps redacted.
        output: String,
    },
    /// A node could not be started or died.
    #[error("node {node}: {detail}\n{logs}")]
    Startup {
        /// The node's name.
        node: String,
        /// What happened.
        detail: String,
        /// Tails of the node logs.
        logs: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {waited:?} waiting for {what}\n{logs}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// Tails of the node logs.
        logs: String,
    },
    /// The gateway answered a web API call with an error status.
    #[error("{operation} failed: HTTP {status}: {body}")]
    Http {
        /// The operation, e.g. "create mutable directory" (never a cap).
        operation: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The answer body, shortened, with caps redacted.
        body: String,
    },
    /// The gateway answered with something that is not what the operation returns.
    #[error("{operation}: unexpected answer from the gateway: {detail}")]
    BadResponse {
        /// The operation.
        operation: &'static str,
        /// What was wrong (never the body itself, which may hold caps).
        detail: String,
    },
    /// No storage node with that index.
    #[error("no storage node {index}: the grid has {count}")]
    NoSuchNode {
        /// The index asked for.
        index: usize,
        /// The number of storage nodes.
        count: usize,
    },
    /// `start_storage_node` on a running node.
    #[error("storage node {0} is already running")]
    AlreadyRunning(usize),
    /// `stop_storage_node` / `kill_storage_node` on a stopped node.
    #[error("storage node {0} is not running")]
    NotRunning(usize),
    /// A node's port is taken by another process, so it cannot be restarted on it.
    #[error("port {port} of {node} on 127.0.0.1 is taken by another process")]
    PortInUse {
        /// The node.
        node: String,
        /// The port.
        port: u16,
    },
    /// The storage node's NURL could not be found.
    #[error("NURL of {node} not found: {detail}")]
    NurlNotFound {
        /// The node.
        node: String,
        /// Why.
        detail: String,
    },
}

impl GridError {
    pub(crate) fn io(what: String, source: io::Error) -> Self {
        Self::Io { what, source }
    }
}

/// The running processes; `None` while a node is stopped.
#[derive(Debug)]
struct Procs {
    introducer: Option<Supervised>,
    storage: Vec<Option<Supervised>>,
    gateway: Option<Supervised>,
}

/// A running grid: introducer, storage nodes and gateway. Dropping it stops every node and
/// removes its temporary directory.
pub struct Grid {
    base_dir: PathBuf,
    launcher: Launcher,
    introducer_dir: PathBuf,
    introducer_furl: String,
    storage: Vec<StorageNode>,
    gateway_dir: PathBuf,
    gateway_port: u16,
    gateway_url: String,
    procs: Mutex<Procs>,
    janitor: Option<Janitor>,
    // Last: removed after the nodes have stopped.
    _temp: Option<TempDir>,
}

impl fmt::Debug for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grid")
            .field("base_dir", &self.base_dir)
            .field("gateway_url", &self.gateway_url)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

/// The grid shared by a whole test binary, started on first use with default options.
///
/// Never dropped (it is a static), yet leaves no process behind: see the crate docs. A failed
/// start is remembered and returned to every caller.
pub fn shared() -> Result<&'static Grid, &'static GridError> {
    static SHARED: OnceLock<Result<Grid, GridError>> = OnceLock::new();
    SHARED
        .get_or_init(|| Grid::start(GridOptions::default()))
        .as_ref()
}

/// The workspace root, where `.venv` lives.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// `TAHOE_BIN`, else `$TAHOE_NOTIFIER_VENV/bin/tahoe`, else `<workspace>/.venv/bin/tahoe`, else
/// `tahoe` on `PATH`.
fn find_tahoe() -> Result<PathBuf, GridError> {
    let mut searched = Vec::new();
    if let Some(bin) = std::env::var_os("TAHOE_BIN") {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        // An explicit choice that does not exist is a mistake, not a cue to look elsewhere.
        return Err(GridError::TahoeNotFound {
            searched: format!("TAHOE_BIN={}", bin.display()),
        });
    }
    let mut candidates = Vec::new();
    if let Some(venv) = std::env::var_os("TAHOE_NOTIFIER_VENV") {
        candidates.push(PathBuf::from(venv).join("bin").join("tahoe"));
    }
    candidates.push(workspace_root().join(".venv").join("bin").join("tahoe"));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("tahoe")));
    }
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
        searched.push(candidate.display().to_string());
    }
    Err(GridError::TahoeNotFound {
        searched: searched.join(", "),
    })
}

/// The Python that runs `tahoe` (from its `#!` line), which also runs the watchdogs; else
/// `python3` beside it or on `PATH`.
fn find_python(tahoe: &Path) -> PathBuf {
    let mut head = Vec::new();
    // The `#!` line is all we need; TAHOE_BIN might be a big frozen binary.
    let read = std::fs::File::open(tahoe).and_then(|f| f.take(256).read_to_end(&mut head));
    if read.is_ok() {
        let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
        if let Some(shebang) = std::str::from_utf8(first)
            .ok()
            .and_then(|l| l.strip_prefix("#!"))
        {
            let mut words = shebang.split_whitespace();
            if let Some(interp) = words.next() {
                let interp = if interp.ends_with("/env") {
                    words.next().unwrap_or(interp)
                } else {
                    interp
                };
                let path = PathBuf::from(interp);
                let is_python = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python"));
                // A bare name ("python3" after /usr/bin/env) is looked up on PATH at spawn. A
                // TAHOE_BIN that is a shell wrapper tells us nothing about Python.
                if is_python && (!path.is_absolute() || path.is_file()) {
                    return path;
                }
            }
        }
    }
    let sibling = tahoe.with_file_name("python3");
    if sibling.is_file() {
        sibling
    } else {
        PathBuf::from("python3")
    }
}

/// A loopback port free right now (another process may take it before it is used: for
/// servers that are told their port, not for the grid's own nodes, see [`Grid::start`]).
pub fn free_port() -> Result<u16, GridError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| GridError::io("finding a free loopback port".to_owned(), e))
}

/// Picks `n` distinct free loopback ports by binding them all at once.
fn pick_ports(n: usize) -> Result<Vec<u16>, GridError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| GridError::io("picking free loopback ports".to_owned(), e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| GridError::io("picking free loopback ports".to_owned(), e))
}

/// Whether nothing listens on `127.0.0.1:port` right now. Needed because a Tahoe node whose
/// port is taken keeps running without a word.
fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Which listener of a node a port belongs to.
#[derive(Debug, Clone, Copy)]
enum PortKind {
    /// `tub.port` + `tub.location` (Foolscap and HTTPS storage).
    Tub,
    /// `web.port` (the gateway's web API).
    Web,
}

/// Moves a not-yet-started node to another port by rewriting its `tahoe.cfg`, for the rare
/// case that something else took the picked port while the nodes were being created.
fn move_port(dir: &Path, kind: PortKind, port: u16) -> Result<(), GridError> {
    let cfg = dir.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg)
        .map_err(|e| GridError::io(format!("reading {}", cfg.display()), e))?;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        match (kind, key) {
            (PortKind::Tub, "tub.port") | (PortKind::Web, "web.port") => {
                out.push_str(&format!("{key} = tcp:{port}:interface=127.0.0.1"));
            }
            (PortKind::Tub, "tub.location") => {
                out.push_str(&format!("{key} = tcp:127.0.0.1:{port}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    std::fs::write(&cfg, out).map_err(|e| GridError::io(format!("writing {}", cfg.display()), e))
}

/// Makes sure `port` is free before a node's first start, moving the node to a new port if not.
fn claim_port(dir: &Path, kind: PortKind, port: u16) -> Result<u16, GridError> {
    if port_is_free(port) {
        return Ok(port);
    }
    let new = pick_ports(1)?.first().copied().unwrap_or(port);
    tracing::warn!(old = port, new, dir = %dir.display(), "picked port was taken; moving node");
    move_port(dir, kind, new)?;
    Ok(new)
}

/// Reads a small text file that a node writes, or `None` while it does not exist yet.
fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

impl Grid {
    /// Creates and starts a grid and waits until the gateway is connected to every storage node
    /// (at most [`READY_TIMEOUT`]). Takes about 5–8 s on two cores.
    pub fn start(options: GridOptions) -> Result<Self, GridError> {
        let started = Instant::now();
        let o = &options;
        if o.storage_nodes == 0
            || o.shares_needed == 0
            || o.shares_needed > o.shares_total
            || o.shares_happy == 0
        {
            return Err(GridError::InvalidOptions(format!(
                "need storage_nodes >= 1 and 1 <= shares_needed <= shares_total, shares_happy >= \
                 1; got {options:?}"
            )));
        }

        let tahoe = find_tahoe()?;
        let python = find_python(&tahoe);

        let (temp, base_dir) = match &options.base_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| GridError::io(format!("creating {}", dir.display()), e))?;
                (None, dir.clone())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("local-grid-")
                    .tempdir()
                    .map_err(|e| GridError::io("creating a temporary directory".to_owned(), e))?;
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        let control = base_dir.join(CONTROL_DIR);
        std::fs::create_dir_all(&control)
            .map_err(|e| GridError::io(format!("creating {}", control.display()), e))?;
        let watchdog = control.join("watchdog.py");
        std::fs::write(&watchdog, WATCHDOG_PY)
            .map_err(|e| GridError::io(format!("writing {}", watchdog.display()), e))?;
        let launcher = Launcher {
            tahoe,
            python,
            watchdog,
            lockfile: control.join("lock"),
        };
        // Only a directory we made ourselves is ours to remove.
        let janitor = match &temp {
            Some(_) => Some(Janitor::start(&launcher, &base_dir)?),
            None => None,
        };
        tracing::info!(dir = %base_dir.display(), tahoe = %launcher.tahoe.display(), "starting grid");

        let mut starter = Starter {
            options: options.clone(),
            launcher,
            base_dir,
            procs: Procs {
                introducer: None,
                storage: Vec::new(),
                gateway: None,
            },
        };
        let built = starter.run()?;
        let procs = std::mem::replace(
            &mut starter.procs,
            Procs {
                introducer: None,
                storage: Vec::new(),
                gateway: None,
            },
        );
        let grid = Self {
            base_dir: starter.base_dir.clone(),
            launcher: starter.launcher.clone(),
            introducer_dir: built.introducer_dir,
            introducer_furl: built.introducer_furl,
            storage: built.storage,
            gateway_dir: built.gateway_dir,
            gateway_port: built.gateway_port,
            gateway_url: format!("http://127.0.0.1:{}/", built.gateway_port),
            procs: Mutex::new(procs),
            janitor,
            _temp: temp,
        };
        grid.wait_all_connected(READY_TIMEOUT)?;
        tracing::info!(elapsed = ?started.elapsed(), "grid ready");
        Ok(grid)
    }

    /// The gateway's web API root, e.g. `http://127.0.0.1:40123/`.
    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    /// The gateway's port on 127.0.0.1.
    pub fn gateway_port(&self) -> u16 {
        self.gateway_port
    }

    /// The gateway's node directory.
    pub fn gateway_dir(&self) -> &Path {
        &self.gateway_dir
    }

    /// The introducer's node directory.
    pub fn introducer_dir(&self) -> &Path {
        &self.introducer_dir
    }

    /// The directory holding all node directories.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The `tahoe` executable in use (e.g. for `tahoe debug dump-cap`).
    pub fn tahoe_bin(&self) -> &Path {
        &self.launcher.tahoe
    }

    /// Makes a Tahoe alias `name` with the real `tahoe create-alias` in the client node
    /// directory `node_dir` (which needs only `node.url` and `private/`), as a user would.
    /// Returns the alias's write-cap and the read-cap Tahoe itself reports for it
    /// (`tahoe list-aliases --readonly-uri`). Both are secrets: do not log them.
    pub fn create_alias(&self, node_dir: &Path, name: &str) -> Result<(String, String), GridError> {
        let run = |args: &[&str]| -> Result<String, GridError> {
            let output = Command::new(self.tahoe_bin())
                .arg("--node-directory")
                .arg(node_dir)
                .args(args)
                .output()
                .map_err(|e| GridError::io(format!("running tahoe {}", args[0]), e))?;
            if !output.status.success() {
                return Err(GridError::Command {
                    what: format!("tahoe {}", args.join(" ")),
                    status: output.status.to_string(),
                    output: logs::redact_caps(&String::from_utf8_lossy(&output.stderr)),
                });
            }
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        };
        run(&["create-alias", name])?;
        let cap_of = |listing: &str| -> Result<String, GridError> {
            listing
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
                .map(|cap| cap.trim().to_owned())
                .ok_or_else(|| GridError::BadResponse {
                    operation: "tahoe list-aliases",
                    detail: format!("no alias {name} listed"),
                })
        };
        let write = cap_of(&run(&["list-aliases"])?)?;
        let read = cap_of(&run(&["list-aliases", "--readonly-uri"])?)?;
        Ok((write, read))
    }

    /// The introducer's fURL (`pb://…@tcp:127.0.0.1:PORT/…`). A secret of the grid: do not log.
    pub fn introducer_furl(&self) -> &str {
        &self.introducer_furl
    }

    /// The storage nodes, index `i` named `storage{i}`.
    pub fn storage_nodes(&self) -> &[StorageNode] {
        &self.storage
    }

    fn procs(&self) -> MutexGuard<'_, Procs> {
        // A panic while holding the lock leaves the process table consistent enough to stop.
        self.procs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn node(&self, index: usize) -> Result<&StorageNode, GridError> {
        self.storage.get(index).ok_or(GridError::NoSuchNode {
            index,
            count: self.storage.len(),
        })
    }

    /// The PID of storage node `index`'s `tahoe run` process, `None` while it is stopped.
    pub fn storage_node_pid(&self, index: usize) -> Option<u32> {
        self.procs()
            .storage
            .get(index)
            .and_then(|p| p.as_ref().map(Supervised::node_pid))
    }

    /// The PIDs of every running `tahoe run` process of the grid (introducer, storage nodes,
    /// gateway), e.g. to check from outside that they are gone.
    pub fn node_pids(&self) -> Vec<u32> {
        let procs = self.procs();
        procs
            .introducer
            .iter()
            .chain(procs.storage.iter().flatten())
            .chain(procs.gateway.iter())
            .map(Supervised::node_pid)
            .collect()
    }

    /// Stops storage node `index` cleanly (SIGTERM) and waits until it has exited.
    pub fn stop_storage_node(&self, index: usize) -> Result<(), GridError> {
        self.node(index)?;
        let proc = self.procs().storage.get_mut(index).and_then(Option::take);
        proc.ok_or(GridError::NotRunning(index))?.stop();
        Ok(())
    }

    /// Kills storage node `index` with SIGKILL (a crash, not a shutdown) and waits for it.
    pub fn kill_storage_node(&self, index: usize) -> Result<(), GridError> {
        self.node(index)?;
        let proc = self.procs().storage.get_mut(index).and_then(Option::take);
        proc.ok_or(GridError::NotRunning(index))?.kill();
        Ok(())
    }

    /// Starts storage node `index` again on its old port with its old keys and shares. Returns
    /// once the process runs; use [`Grid::wait_all_connected`] to wait for the gateway to
    /// reconnect.
    pub fn start_storage_node(&self, index: usize) -> Result<(), GridError> {
        let node = self.node(index)?;
        let mut procs = self.procs();
        let slot = procs.storage.get_mut(index).ok_or(GridError::NoSuchNode {
            index,
            count: self.storage.len(),
        })?;
        if slot.is_some() {
            return Err(GridError::AlreadyRunning(index));
        }
        if !port_is_free(node.port) {
            return Err(GridError::PortInUse {
                node: node.name.clone(),
                port: node.port,
            });
        }
        *slot = Some(Supervised::start(&self.launcher, &node.name, &node.dir)?);
        Ok(())
    }

    /// How the gateway currently sees each storage server (`GET /?t=json`).
    pub fn server_statuses(&self) -> Result<Vec<ServerStatus>, GridError> {
        const OP: &str = "read gateway status";
        let resp = self.call(OP, "GET", "/?t=json", None)?;
        let json: serde_json::Value =
            serde_json::from_slice(&resp).map_err(|e| GridError::BadResponse {
                operation: OP,
                detail: format!("not JSON: {e}"),
            })?;
        let servers = json
            .get("servers")
            .and_then(|s| s.as_array())
            .ok_or_else(|| GridError::BadResponse {
                operation: OP,
                detail: "no \"servers\" list".to_owned(),
            })?;
        let field = |s: &serde_json::Value, k: &str| {
            s.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Ok(servers
            .iter()
            .map(|s| ServerStatus {
                nickname: field(s, "nickname"),
                nodeid: field(s, "nodeid"),
                connection_status: field(s, "connection_status"),
            })
            .collect())
    }

    /// Waits until the gateway lists every storage node as connected. Fails early with the
    /// node logs if a node process has exited, and after `timeout` with the logs as well.
    pub fn wait_all_connected(&self, timeout: Duration) -> Result<(), GridError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Ok(servers) = self.server_statuses() {
                let connected = servers.iter().filter(|s| s.is_connected()).count();
                if servers.len() >= self.storage.len() && connected >= self.storage.len() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(GridError::Timeout {
                    what: format!(
                        "the gateway to be connected to all {} storage nodes",
                        self.storage.len()
                    ),
                    waited: timeout,
                    logs: self.all_log_tails(),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the gateway no longer lists storage node `index` as connected (it notices a
    /// stopped server only after its connection drops).
    pub fn wait_disconnected(&self, index: usize, timeout: Duration) -> Result<(), GridError> {
        let name = &self.node(index)?.name;
        let deadline = Instant::now() + timeout;
        loop {
            let servers = self.server_statuses()?;
            if !servers
                .iter()
                .any(|s| &s.nickname == name && s.is_connected())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(GridError::Timeout {
                    what: format!("the gateway to notice that {name} is gone"),
                    waited: timeout,
                    logs: String::new(),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// An error if a node that should be running has exited.
    fn check_alive(&self) -> Result<(), GridError> {
        let mut procs = self.procs();
        let Procs {
            introducer,
            storage,
            gateway,
        } = &mut *procs;
        let named = std::iter::once(("introducer", self.introducer_dir.as_path(), introducer))
            .chain(std::iter::once((
                "gateway",
                self.gateway_dir.as_path(),
                gateway,
            )))
            .chain(
                self.storage
                    .iter()
                    .zip(storage.iter_mut())
                    .map(|(n, p)| (n.name.as_str(), n.dir.as_path(), p)),
            );
        for (name, dir, proc) in named {
            if let Some(status) = proc.as_mut().and_then(Supervised::exited) {
                return Err(GridError::Startup {
                    node: name.to_owned(),
                    detail: format!("exited unexpectedly ({status})"),
                    logs: logs::tail(name, dir),
                });
            }
        }
        Ok(())
    }

    fn all_log_tails(&self) -> String {
        let mut out = logs::tail("introducer", &self.introducer_dir);
        for n in &self.storage {
            out.push_str(&logs::tail(&n.name, &n.dir));
        }
        out.push_str(&logs::tail("gateway", &self.gateway_dir));
        out
    }

    /// One web API call; the body on 2xx, else [`GridError::Http`].
    fn call(
        &self,
        operation: &'static str,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, GridError> {
        let resp = http::request(self.gateway_port, method, path, &[], body)
            .map_err(|e| GridError::io(format!("{operation}: talking to the gateway"), e))?;
        if (200..300).contains(&resp.status) {
            return Ok(resp.body);
        }
        let text = String::from_utf8_lossy(&resp.body);
        let short: String = text.chars().take(1000).collect();
        Err(GridError::Http {
            operation,
            status: resp.status,
            body: logs::redact_caps(short.trim()),
        })
    }

    /// A call whose answer is a cap.
    fn call_for_cap(
        &self,
        operation: &'static str,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<String, GridError> {
        let answer = self.call(operation, method, path, body)?;
        let cap = String::from_utf8(answer)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| s.starts_with("URI:"))
            .ok_or(GridError::BadResponse {
                operation,
                detail: "the answer is not a cap".to_owned(),
            })?;
        tracing::debug!(operation, "gateway returned a cap");
        Ok(cap)
    }

    /// Creates an empty mutable directory; returns its write cap (`URI:DIR2:…` or
    /// `URI:DIR2-MDMF:…`).
    pub fn create_mutable_dir(&self, format: Format) -> Result<String, GridError> {
        let path = match format {
            Format::Sdmf => "/uri?t=mkdir".to_owned(),
            // Note: t=mkdir-with-children ignores format=mdmf; t=mkdir honours it.
            Format::Mdmf => "/uri?t=mkdir&format=mdmf".to_owned(),
        };
        self.call_for_cap("create mutable directory", "POST", &path, None)
    }

    /// Creates a mutable file with `contents`; returns its write cap (`URI:SSK:…` or
    /// `URI:MDMF:…`).
    pub fn create_mutable_file(
        &self,
        format: Format,
        contents: &[u8],
    ) -> Result<String, GridError> {
        let path = format!("/uri?format={}", format.as_query());
        self.call_for_cap("create mutable file", "PUT", &path, Some(contents))
    }

    /// Creates a mutable file signed with a key the caller chose (PKCS#8 DER RSA key), as
    /// `tahoe put --mutable --private-key-path` does; returns its write cap. Knowing the key
    /// lets a test derive the slot's storage index before the slot exists.
    pub fn create_mutable_file_with_key(
        &self,
        format: Format,
        private_key_der: &[u8],
        contents: &[u8],
    ) -> Result<String, GridError> {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::URL_SAFE.encode(private_key_der);
        let path = format!(
            "/uri?format={}&private-key={}",
            format.as_query(),
            http::encode_segment(&key, false)
        );
        self.call_for_cap(
            "create mutable file with a chosen key",
            "PUT",
            &path,
            Some(contents),
        )
    }

    /// Uploads an immutable file; returns its cap (`URI:CHK:…`, or `URI:LIT:…` when tiny).
    pub fn create_immutable_file(&self, contents: &[u8]) -> Result<String, GridError> {
        self.call_for_cap("create immutable file", "PUT", "/uri", Some(contents))
    }

    /// Adds or replaces the immutable file `name` in the directory `dircap`; returns the
    /// child's cap. Publishes a new version of the directory.
    pub fn put_child(
        &self,
        dircap: &str,
        name: &str,
        contents: &[u8],
    ) -> Result<String, GridError> {
        let path = format!("{}/{}", cap_path(dircap), http::encode_segment(name, false));
        self.call_for_cap("put child", "PUT", &path, Some(contents))
    }

    /// Replaces the contents of the mutable file `filecap` (publishes a new version).
    pub fn overwrite_mutable_file(&self, filecap: &str, contents: &[u8]) -> Result<(), GridError> {
        self.call(
            "overwrite mutable file",
            "PUT",
            &cap_path(filecap),
            Some(contents),
        )?;
        Ok(())
    }

    /// Reads the contents of a file.
    pub fn read_file(&self, filecap: &str) -> Result<Vec<u8>, GridError> {
        self.call("read file", "GET", &cap_path(filecap), None)
    }

    /// `GET /uri/$CAP?t=json`: for a directory `["dirnode", {"ro_uri", "rw_uri", "verify_uri",
    /// "mutable", "children": {…}}]`, for a file `["filenode", {…}]`.
    pub fn list_dir_json(&self, cap: &str) -> Result<serde_json::Value, GridError> {
        const OP: &str = "list directory";
        let body = self.call(OP, "GET", &format!("{}?t=json", cap_path(cap)), None)?;
        serde_json::from_slice(&body).map_err(|e| GridError::BadResponse {
            operation: OP,
            // serde's message names a position, never the content.
            detail: format!("not JSON: {e}"),
        })
    }

    /// Creates an empty mutable subdirectory `name` in `dircap` (replacing any child of that
    /// name); returns the new directory's write cap.
    pub fn mkdir_child(
        &self,
        dircap: &str,
        name: &str,
        format: Format,
    ) -> Result<String, GridError> {
        let path = format!(
            "{}?t=mkdir&format={}&name={}",
            cap_path(dircap),
            format.as_query(),
            http::encode_segment(name, false)
        );
        self.call_for_cap("make child directory", "POST", &path, None)
    }

    /// Removes the child `name` from `dircap`.
    pub fn delete_child(&self, dircap: &str, name: &str) -> Result<(), GridError> {
        let path = format!("{}/{}", cap_path(dircap), http::encode_segment(name, false));
        self.call("delete child", "DELETE", &path, None)?;
        Ok(())
    }
}

/// `/uri/<cap>` with the cap escaped as a path segment (`:` kept, as Tahoe expects).
fn cap_path(cap: &str) -> String {
    format!("/uri/{}", http::encode_segment(cap.trim(), true))
}

impl Drop for Grid {
    fn drop(&mut self) {
        let procs = self.procs.get_mut().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Supervised> = procs
            .storage
            .iter_mut()
            .filter_map(Option::take)
            .chain(procs.gateway.take())
            .chain(procs.introducer.take())
            .collect();
        // Signal all first, then wait: the nodes shut down in parallel.
        for p in &mut all {
            p.request_stop();
        }
        for p in all {
            p.finish_stop();
        }
        if let Some(janitor) = self.janitor.take() {
            janitor.finish();
        }
        tracing::info!(dir = %self.base_dir.display(), "grid stopped");
    }
}

/// What [`Starter::run`] builds besides the processes.
struct Built {
    introducer_dir: PathBuf,
    introducer_furl: String,
    storage: Vec<StorageNode>,
    gateway_dir: PathBuf,
    gateway_port: u16,
}

/// Grid creation; on error, dropping it stops whatever was started.
struct Starter {
    options: GridOptions,
    launcher: Launcher,
    base_dir: PathBuf,
    procs: Procs,
}

impl Starter {
    fn tahoe(&self) -> Command {
        Command::new(&self.launcher.tahoe)
    }

    fn run(&mut self) -> Result<Built, GridError> {
        let o = self.options.clone();
        let n = o.storage_nodes;
        let web_ports = if o.storage_web {
            pick_ports(n)?.into_iter().map(Some).collect()
        } else {
            vec![None; n]
        };
        let ports = pick_ports(n + 2)?;
        let (intro_port, gw_port, storage_ports) = match ports.as_slice() {
            [a, b, rest @ ..] => (*a, *b, rest.to_vec()),
            _ => return Err(GridError::InvalidOptions("no ports".to_owned())),
        };
        let introducer_dir = self.base_dir.join("introducer");
        let gateway_dir = self.base_dir.join("gateway");
        let storage_dirs: Vec<PathBuf> = (0..n)
            .map(|i| self.base_dir.join(format!("storage{i}")))
            .collect();
        let encoding = [
            "--shares-needed".to_owned(),
            o.shares_needed.to_string(),
            "--shares-happy".to_owned(),
            o.shares_happy.to_string(),
            "--shares-total".to_owned(),
            o.shares_total.to_string(),
        ];

        // 1. The introducer first: everyone else needs its fURL, which exists only once it runs.
        let child = process::spawn_quiet(
            self.tahoe()
                .arg("create-introducer")
                .arg("--port")
                .arg(format!("tcp:{intro_port}:interface=127.0.0.1"))
                .arg("--location")
                .arg(format!("tcp:127.0.0.1:{intro_port}"))
                .arg(&introducer_dir),
            "tahoe create-introducer",
        )?;
        process::finish_quiet(child, "tahoe create-introducer")?;
        tracing::debug!("introducer created");

        // 2. Create the other nodes while the introducer boots (each `create-*` costs about a
        //    second of CPU). They are created without `--introducer`, whose only effect is to
        //    write private/introducers.yaml; we write that file below once the fURL exists.
        let mut creating = Vec::new();
        for (i, dir) in storage_dirs.iter().enumerate() {
            let port = storage_ports.get(i).copied().unwrap_or_default();
            let what = format!("tahoe create-node storage{i}");
            let child = process::spawn_quiet(
                self.tahoe()
                    .arg("create-node")
                    .arg("--nickname")
                    .arg(format!("storage{i}"))
                    .arg("--port")
                    .arg(format!("tcp:{port}:interface=127.0.0.1"))
                    .arg("--location")
                    .arg(format!("tcp:127.0.0.1:{port}"))
                    .arg("--webport")
                    .arg(match web_ports.get(i).copied().flatten() {
                        Some(web) => format!("tcp:{web}:interface=127.0.0.1"),
                        None => "none".to_owned(),
                    })
                    .args(&encoding)
                    .arg(dir),
                &what,
            )?;
            creating.push((child, what));
        }
        let child = process::spawn_quiet(
            self.tahoe()
                .arg("create-client")
                .arg("--nickname")
                .arg("gateway")
                .arg("--webport")
                .arg(format!("tcp:{gw_port}:interface=127.0.0.1"))
                .args(&encoding)
                .arg(&gateway_dir),
            "tahoe create-client gateway",
        )?;
        creating.push((child, "tahoe create-client gateway".to_owned()));

        claim_port(&introducer_dir, PortKind::Tub, intro_port)?;
        self.procs.introducer = Some(Supervised::start(
            &self.launcher,
            "introducer",
            &introducer_dir,
        )?);

        // Wait for every creation even after a failure, so none keeps writing into the
        // directory that is about to be removed.
        let mut first_err = None;
        for (child, what) in creating {
            if let Err(e) = process::finish_quiet(child, &what) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        tracing::debug!("storage nodes and gateway created");

        let furl_path = introducer_dir.join("private").join("introducer.furl");
        let introducer_furl = self.wait_for_file(&furl_path, "introducer", &introducer_dir)?;
        tracing::debug!("introducer running");
        let introducers_yaml = format!("introducers:\n  default:\n    furl: {introducer_furl}\n");
        for dir in storage_dirs.iter().chain(std::iter::once(&gateway_dir)) {
            let path = dir.join("private").join("introducers.yaml");
            std::fs::create_dir_all(dir.join("private"))
                .and_then(|()| std::fs::write(&path, &introducers_yaml))
                .map_err(|e| GridError::io(format!("writing {}", path.display()), e))?;
        }

        // 3. Storage nodes and gateway, all at once.
        let mut storage = Vec::with_capacity(n);
        for (i, dir) in storage_dirs.iter().enumerate() {
            let name = format!("storage{i}");
            let port = storage_ports.get(i).copied().unwrap_or_default();
            let port = claim_port(dir, PortKind::Tub, port)?;
            let web_port = match web_ports.get(i).copied().flatten() {
                Some(web) => Some(claim_port(dir, PortKind::Web, web)?),
                None => None,
            };
            self.procs
                .storage
                .push(Some(Supervised::start(&self.launcher, &name, dir)?));
            storage.push(StorageNode {
                name,
                dir: dir.clone(),
                storage_dir: dir.join("storage"),
                port,
                web_port,
                gateway_dir: gateway_dir.clone(),
            });
        }
        let gateway_port = claim_port(&gateway_dir, PortKind::Web, gw_port)?;
        self.procs.gateway = Some(Supervised::start(&self.launcher, "gateway", &gateway_dir)?);
        tracing::debug!("storage nodes and gateway started");

        Ok(Built {
            introducer_dir,
            introducer_furl,
            storage,
            gateway_dir,
            gateway_port,
        })
    }

    /// Waits for a node to write `path`, failing early if the node dies.
    fn wait_for_file(&mut self, path: &Path, name: &str, dir: &Path) -> Result<String, GridError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(text) = read_trimmed(path) {
                return Ok(text);
            }
            if let Some(status) = self.procs.introducer.as_mut().and_then(Supervised::exited) {
                return Err(GridError::Startup {
                    node: name.to_owned(),
                    detail: format!("exited unexpectedly ({status})"),
                    logs: logs::tail(name, dir),
                });
            }
            if Instant::now() >= deadline {
                return Err(GridError::Timeout {
                    what: format!("{} to appear", path.display()),
                    waited: READY_TIMEOUT,
                    logs: logs::tail(name, dir),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Starter {
    fn drop(&mut self) {
        // Only reached with processes still inside on a failed start; a successful start moves
        // them into the Grid. Dropping a Supervised closes its lifeline and SIGTERMs it.
        let procs = &mut self.procs;
        let all: Vec<Supervised> = procs
            .storage
            .iter_mut()
            .filter_map(Option::take)
            .chain(procs.gateway.take())
            .chain(procs.introducer.take())
            .collect();
        for p in all {
            p.stop();
        }
    }
}
