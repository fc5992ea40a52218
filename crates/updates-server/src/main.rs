//! `tahoe-updates-server`: serves `/v1/mutable_updates` beside a Tahoe-LAFS storage node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};
use mutable_updates::nurl::Nurl;
use mutable_updates::pinning::{server_config_from_pem, spki_hash_of_pem};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use updates_server::cluster::edge::{EdgeOptions, EdgeSource};
use updates_server::cluster::watcher_role::WatcherRole;
use updates_server::cluster::{BrokerLink, LinkOptions};
use updates_server::endpoint::UpdatesEndpoint;
use updates_server::limits::{connection_budget_for, descriptor_reserve, Limits};
use updates_server::metrics::{is_loopback, serve_metrics, MetricsSource};
use updates_server::node::IdentitySources;
use updates_server::watcher::{ShareWatcher, WatcherOptions};

#[derive(Debug, Parser)]
// The name of the installed binary, not the crate's ("updates-server"): --version, the usage
// line and the generated man pages say it.
#[command(
    name = "tahoe-updates-server",
    version,
    about = "Push notifications of mutable-slot changes beside a Tahoe-LAFS storage node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch the node's shares and serve /v1/mutable_updates until SIGTERM or Ctrl-C.
    // Boxed: the options are large beside the other subcommand's (clippy::large_enum_variant).
    Run(Box<RunArgs>),
    /// Write the man pages and shell completions of this program (used when building the
    /// packages; hidden from --help).
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
}

#[derive(Debug, Args)]
struct GenerateDocsArgs {
    /// Folder to write man/ and completions/ into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// What this process does in a deployment (docs/scaling.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Watch one node's shares and serve its clients: one process, no broker (the default).
    Single,
    /// Watch one node's shares and publish their changes to the broker; serve no clients.
    Watcher,
    /// Serve clients with this server's own identity, fed by the watchers through the broker.
    Edge,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// single: one process beside the node; watcher/edge: a deployment joined by NATS.
    #[arg(long, value_enum, default_value = "single", env = "TAHOE_UPDATES_ROLE")]
    role: Role,
    /// The NATS broker (nats://HOST:PORT, several comma-separated) of the watcher and edge
    /// roles. No credentials in it: they would show in the process list.
    #[arg(long, value_name = "URL", env = "TAHOE_UPDATES_NATS")]
    nats: Option<String>,
    /// The watcher's node identity on the broker. Default: the SPKI hash of the node's certificate.
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Edge: longest wait, in milliseconds, for the watchers' answers to a seqnum query.
    #[arg(long, value_name = "MS", default_value_t = 300)]
    gather_window_ms: u64,
    /// Seconds between pings of the broker: a silent partition is noticed within about twice this.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    broker_ping_interval: u64,
    /// The Tahoe storage node's directory: its private/node.pem, private/storage.furl and storage/ are used.
    #[arg(long, value_name = "DIR")]
    node_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:3457 or 127.0.0.1:3457 (not for --role watcher).
    #[arg(long, value_name = "ADDR:PORT", required_if_eq_any = [("role", "single"), ("role", "edge")])]
    listen: Option<SocketAddr>,
    /// Host name or address clients reach us at (goes into the NURL); defaults to the listen address.
    #[arg(long, value_name = "HOST")]
    public_host: Option<String>,
    /// PEM certificate instead of the node's private/node.pem.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key, when it is not in the certificate file.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// A file holding the swissnum, instead of the one in the node's private/storage.furl.
    #[arg(long, value_name = "FILE")]
    swissnum_file: Option<PathBuf>,
    /// The storage directory (holding shares/) instead of the node's storage/.
    #[arg(long, value_name = "DIR")]
    storage_dir: Option<PathBuf>,
    /// Serve plain ws:// without TLS: development only, and only on a loopback address.
    #[arg(long)]
    insecure_loopback: bool,
    /// Where to write our NURL (it holds the swissnum, so the file is made readable by us only).
    /// Default: <node-dir>/private/updates-server.nurl.
    #[arg(long, value_name = "FILE")]
    nurl_file: Option<PathBuf>,
    /// Also print the full NURL on standard output (it contains the secret swissnum).
    #[arg(long)]
    print_nurl: bool,
    /// Address of the Prometheus metrics page.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    metrics_listen: SocketAddr,
    /// Allow the metrics page on a non-loopback address.
    #[arg(long)]
    metrics_public: bool,
    /// Most subscriptions one connection may hold.
    #[arg(long, default_value_t = 10_000)]
    max_subscriptions: usize,
    /// Outgoing queue length at which a client that does not read is disconnected.
    #[arg(long, default_value_t = 1_000)]
    max_queued_updates: usize,
    /// Seconds between pings (two unanswered pings close a connection).
    #[arg(long, default_value_t = 30)]
    ping_interval: u64,
    /// Most connections held at once. The server lowers it to fit under its descriptor limit
    /// (RLIMIT_NOFILE, raised to the hard limit at start) with a reserve for the share watcher.
    #[arg(long, default_value_t = 8_192)]
    max_connections: usize,
    /// Most unfinished handshakes (TLS and upgrade) from one address.
    #[arg(long, default_value_t = 16)]
    max_handshakes_per_address: usize,
    /// Most authenticated sessions from one address.
    #[arg(long, default_value_t = 128)]
    max_sessions_per_address: usize,
    /// Seconds a session may hold no subscription before it is closed.
    #[arg(long, default_value_t = 300)]
    idle_timeout: u64,
    /// Bytes of replies being written at once over all connections, at most.
    #[arg(long, default_value_t = 256 << 20)]
    max_queued_reply_bytes: usize,
    /// Seconds between rescans of directories that could not be watched (inotify limit reached).
    #[arg(long, default_value_t = 2)]
    rescan_interval: u64,
    /// Shut down when standard input reaches end of file: for a supervisor that holds a pipe to
    /// us, so that we never outlive it, however it ends.
    #[arg(long)]
    exit_when_stdin_closes: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Run(args) => *args,
        Command::GenerateDocs(args) => return generate_docs(&args),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(args));
    // Everything has been closed by now. Tokio reads stdin on a blocking thread that no one can
    // interrupt: waiting for it (as dropping the runtime does) hung a SIGTERM-ed server whose
    // stdin was still open, until it was killed.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

fn generate_docs(args: &GenerateDocsArgs) -> anyhow::Result<()> {
    for path in cli_docs::write_docs(Cli::command(), &args.out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // A service manager fills --public-host from a config file; an empty value there would
    // otherwise end up as a NURL with no host that no client can reach.
    if args
        .public_host
        .as_deref()
        .is_some_and(|h| h.trim().is_empty())
    {
        bail!("--public-host is empty: give the host name or address clients reach this server at");
    }
    if args.role != Role::Single && args.nats.is_none() {
        bail!("--role watcher and --role edge need --nats URL (the broker)");
    }
    if args.role == Role::Watcher {
        return run_watcher(args).await;
    }
    let Some(listen) = args.listen else {
        bail!("--listen is needed to serve clients");
    };
    if args.insecure_loopback && !listen.ip().is_loopback() {
        bail!(
            "--insecure-loopback serves without TLS and is allowed only on 127.0.0.0/8 or ::1, not {}",
            listen.ip()
        );
    }
    if !args.metrics_public && !is_loopback(&args.metrics_listen) {
        bail!(
            "the metrics page would listen on {}, which is not loopback: add --metrics-public if you mean it",
            args.metrics_listen
        );
    }
    let mut sources = IdentitySources {
        node_dir: args.node_dir.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        swissnum_file: args.swissnum_file.clone(),
        storage_dir: args.storage_dir.clone(),
    };
    if args.role == Role::Edge && sources.storage_dir.is_none() {
        // An edge reads no shares: only its certificate, key and swissnum are its own.
        sources.storage_dir = Some(PathBuf::from("/nonexistent"));
    }
    let identity = sources.load()?;
    let (tls, spki_hash) = if args.insecure_loopback {
        tracing::warn!(
            "serving plain ws:// without TLS (--insecure-loopback): for development only"
        );
        (None, None)
    } else {
        let config = server_config_from_pem(&identity.cert_pem, &identity.key_pem)
            .context("cannot use the TLS certificate and key")?;
        let hash =
            spki_hash_of_pem(&identity.cert_pem).context("cannot read the TLS certificate")?;
        (Some(config), Some(hash))
    };

    let (changes_in, changes_out) = mpsc::channel(16 * 1024);
    let source = match args.role {
        Role::Edge => {
            let (link, events) = connect_broker(&args, "edge").await?;
            let (edge, runner) = EdgeSource::new(
                link,
                events,
                EdgeOptions {
                    gather_window: Duration::from_millis(args.gather_window_ms.max(1)),
                    ..EdgeOptions::default()
                },
            );
            tokio::spawn(edge.clone().run(runner, changes_in));
            Source::Edge(edge)
        }
        _ => Source::Shares(start_share_watcher(
            &args,
            &identity.storage_dir,
            changes_in,
        )?),
    };

    let defaults = Limits::default();
    let nofile = raise_nofile_limit();
    let max_connections =
        connection_budget_for(nofile, args.max_connections, defaults.max_refusing);
    if max_connections == 0 {
        bail!(
            "a descriptor limit of {nofile} leaves no room for connections after the watcher's \
             reserve of {}: raise LimitNOFILE",
            descriptor_reserve(nofile)
        );
    }
    tracing::info!(
        nofile,
        max_connections,
        reserve = descriptor_reserve(nofile),
        "connection budget"
    );
    let limits = Limits {
        max_subscriptions: args.max_subscriptions,
        max_queued_updates: args.max_queued_updates,
        ping_interval: Duration::from_secs(args.ping_interval.max(1)),
        max_connections,
        max_unauthenticated_per_address: args.max_handshakes_per_address.max(1),
        max_authenticated_per_address: args.max_sessions_per_address.max(1),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        max_queued_reply_bytes: args.max_queued_reply_bytes,
        ..defaults
    };
    let slots: Arc<dyn updates_server::slots::SlotDirectory> = match &source {
        Source::Shares(watcher) => Arc::new(watcher.clone()),
        Source::Edge(edge) => Arc::new(edge.clone()),
    };
    let endpoint = Arc::new(UpdatesEndpoint::new(slots, &identity.swissnum, tls, limits));
    if let Source::Edge(edge) = &source {
        endpoint.hub().set_interest_listener(Arc::new(edge.clone()));
    }

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let host = match &args.public_host {
        Some(host) => host.clone(),
        None if bound.ip().is_unspecified() => {
            bail!(
                "listening on {} (all addresses): say which address clients use with --public-host",
                bound.ip()
            )
        }
        None => bound.ip().to_string(),
    };

    let (metrics_listener, metrics_address) = bind_metrics(args.metrics_listen).await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    match spki_hash {
        Some(hash) => {
            let nurl = Nurl::new(hash, host, bound.port(), identity.swissnum.clone());
            let nurl_file = args.nurl_file.clone().or_else(|| {
                args.node_dir
                    .as_ref()
                    .map(|dir| dir.join("private/updates-server.nurl"))
            });
            if let Some(path) = &nurl_file {
                write_private_file(path, &format!("{nurl}\n"))
                    .with_context(|| format!("cannot write the NURL to {}", path.display()))?;
                println!("NURL written to {}", path.display());
            }
            println!("listening on {bound} as {}", nurl.redacted());
            if args.print_nurl {
                println!("{nurl}");
            }
        }
        None => println!("listening on ws://{bound}/v1/mutable_updates (no TLS)"),
    }
    println!("metrics on http://{metrics_address}/metrics");

    let source_metrics: Arc<dyn MetricsSource> = match &source {
        Source::Shares(watcher) => Arc::new(watcher.clone()),
        Source::Edge(edge) => Arc::new(edge.clone()),
    };
    tokio::spawn(serve_metrics(
        metrics_listener,
        endpoint.metrics(),
        Some(source_metrics),
        shutdown_rx.clone(),
    ));
    let forwarder = {
        let endpoint = Arc::clone(&endpoint);
        tokio::spawn(async move { endpoint.forward_changes(changes_out).await })
    };
    let exit_when_stdin_closes = args.exit_when_stdin_closes;
    let watcher = match &source {
        Source::Shares(watcher) => Some(watcher.clone()),
        Source::Edge(_) => None,
    };
    let stopper = {
        let watcher = watcher.clone();
        tokio::spawn(async move {
            let failure = tokio::select! {
                () = wait_for_stop_signal() => { tracing::info!("stop requested"); None }
                () = stdin_closed(), if exit_when_stdin_closes => {
                    tracing::info!("standard input closed: stopping");
                    None
                }
                // A dead watcher means a frozen index: better to stop (non-zero, so that the
                // supervisor restarts us) than to tell subscribers nothing (finding 16).
                reason = watcher_failed(watcher.as_ref()) => {
                    tracing::error!(%reason, "the share watcher died: stopping");
                    Some(reason)
                }
            };
            let _ = shutdown_tx.send(true);
            failure
        })
    };
    endpoint.serve(listener, shutdown_rx).await;
    if let Some(watcher) = &watcher {
        watcher.shutdown();
    }
    forwarder.abort();
    let failure = stopper.await.ok().flatten();
    tracing::info!("stopped");
    match failure {
        Some(reason) => bail!("the share watcher died ({reason})"),
        None => Ok(()),
    }
}

/// Where the endpoint's slots come from.
enum Source {
    /// This node's shares (single role).
    Shares(ShareWatcher),
    /// The watchers, through the broker (edge role).
    Edge(EdgeSource),
}

async fn watcher_failed(watcher: Option<&ShareWatcher>) -> String {
    match watcher {
        Some(watcher) => watcher.failed().await,
        None => std::future::pending().await,
    }
}

fn start_share_watcher(
    args: &RunArgs,
    storage_dir: &std::path::Path,
    changes: mpsc::Sender<updates_server::slots::SlotChange>,
) -> anyhow::Result<ShareWatcher> {
    ShareWatcher::start(
        storage_dir.to_owned(),
        WatcherOptions {
            rescan_interval: Duration::from_secs(args.rescan_interval.max(1)),
            ..WatcherOptions::default()
        },
        changes,
    )
    .with_context(|| format!("cannot watch the shares under {}", storage_dir.display()))
}

async fn connect_broker(
    args: &RunArgs,
    role: &str,
) -> anyhow::Result<(
    Arc<BrokerLink>,
    tokio::sync::mpsc::UnboundedReceiver<updates_server::cluster::LinkEvent>,
)> {
    let url = args.nats.as_deref().context("--nats URL is needed")?;
    let (link, events) = BrokerLink::connect(
        url,
        LinkOptions {
            name: format!("tahoe-updates-server {role}"),
            ping_interval: Duration::from_secs(args.broker_ping_interval.max(1)),
            ..LinkOptions::default()
        },
    )
    .await
    .context("cannot set up the broker connection")?;
    tracing::info!(%url, role, "broker connection set up (connecting in the background)");
    Ok((link, events))
}

/// The watcher role: the share watcher, its changes onto the broker, queries answered; no
/// clients. Stops on SIGTERM, at the end of stdin if asked, or when the share watcher dies.
async fn run_watcher(args: RunArgs) -> anyhow::Result<()> {
    if !args.metrics_public && !is_loopback(&args.metrics_listen) {
        bail!(
            "the metrics page would listen on {}, which is not loopback: add --metrics-public if you mean it",
            args.metrics_listen
        );
    }
    let sources = IdentitySources {
        node_dir: args.node_dir.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        swissnum_file: args.swissnum_file.clone(),
        storage_dir: args.storage_dir.clone(),
    };
    let node_id = match &args.node_id {
        Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
        Some(_) => bail!("--node-id is empty"),
        None => {
            let identity = sources
                .load()
                .context("no --node-id: the node's certificate names the node")?;
            let hash =
                spki_hash_of_pem(&identity.cert_pem).context("cannot read the TLS certificate")?;
            tahoe_caps::base32::encode(&hash)
        }
    };
    let storage_dir = match (&args.storage_dir, &args.node_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(node)) => node.join("storage"),
        (None, None) => bail!("no storage directory: pass --node-dir or --storage-dir"),
    };
    let (changes_in, changes_out) = mpsc::channel(16 * 1024);
    let watcher = start_share_watcher(&args, &storage_dir, changes_in)?;
    let (link, _events) = connect_broker(&args, "watcher").await?;
    let role = WatcherRole::start(
        link,
        node_id.clone(),
        Arc::new(watcher.clone()),
        changes_out,
    )
    .await
    .context("cannot start the watcher role")?;
    let (metrics_listener, metrics_address) = bind_metrics(args.metrics_listen).await?;
    println!("watching {} as node {node_id}", storage_dir.display());
    println!("metrics on http://{metrics_address}/metrics");
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let extra: Arc<dyn MetricsSource> = Arc::new(MetricsSources(vec![
        Arc::new(watcher.clone()),
        Arc::new(role),
    ]));
    tokio::spawn(serve_metrics(
        metrics_listener,
        Arc::new(updates_server::metrics::Metrics::default()),
        Some(extra),
        shutdown_rx,
    ));
    let failure = tokio::select! {
        () = wait_for_stop_signal() => { tracing::info!("stop requested"); None }
        () = stdin_closed(), if args.exit_when_stdin_closes => {
            tracing::info!("standard input closed: stopping");
            None
        }
        reason = watcher.failed() => {
            tracing::error!(%reason, "the share watcher died: stopping");
            Some(reason)
        }
    };
    let _ = shutdown_tx.send(true);
    watcher.shutdown();
    match failure {
        Some(reason) => bail!("the share watcher died ({reason})"),
        None => Ok(()),
    }
}

/// Several metrics sources on one page.
struct MetricsSources(Vec<Arc<dyn MetricsSource>>);

impl MetricsSource for MetricsSources {
    fn write_metrics(&self, out: &mut String) {
        for source in &self.0 {
            source.write_metrics(out);
        }
    }
}

/// Raises the soft descriptor limit to the hard one and returns the limit in force.
fn raise_nofile_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    // None is RLIM_INFINITY: bounded here by what the kernel would let us open anyway.
    let ceiling = 1u64 << 20;
    let current = limit.current.unwrap_or(ceiling).min(ceiling);
    let maximum = limit.maximum.unwrap_or(ceiling).min(ceiling);
    if current >= maximum {
        return current;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = current, to = maximum, "raised RLIMIT_NOFILE");
            maximum
        }
        Err(error) => {
            tracing::warn!(%error, "cannot raise RLIMIT_NOFILE");
            current
        }
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn stdin_closed() {
    use tokio::io::AsyncReadExt as _;
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 256];
    while let Ok(read) = stdin.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
}

/// Writes a secret-bearing file atomically, readable by the owner only (finding 15): a fresh
/// temporary file in the same folder, created exclusively (O_EXCL, so no leftover file or
/// symlink is followed or reused) with mode 0600 set on the descriptor whatever the umask,
/// written and synced, renamed over the target, and the folder synced.
fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the NURL file's path has no file name"))?;
    let mut attempt = 0u32;
    let (temporary, mut file) = loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.{nanos:x}.{attempt}.tmp", std::process::id()));
        let temporary = dir.join(temp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)
        {
            Ok(file) => break (temporary, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// The metrics page's listener and its address (every role serves one).
async fn bind_metrics(
    address: std::net::SocketAddr,
) -> anyhow::Result<(TcpListener, std::net::SocketAddr)> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen for metrics on {address}"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the metrics address")?;
    Ok((listener, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nurl_file_is_private_even_beside_a_leftover_world_readable_temp_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("updates-server.nurl");
        // What the old code reused: a fixed-name temp file, world-readable, and a symlink.
        let old_temp = dir.path().join("updates-server.tmp");
        std::fs::write(&old_temp, "").unwrap();
        std::fs::set_permissions(&old_temp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(
            "/tmp/elsewhere",
            dir.path().join(".updates-server.nurl.tmp"),
        )
        .unwrap();
        // An existing target that was too open is replaced by a 0600 file.
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, "pb://secret\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "pb://secret\n");
        assert_eq!(
            std::fs::read_to_string(&old_temp).unwrap(),
            "",
            "the old temp file is untouched"
        );
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.ends_with(".tmp")
                    && n.starts_with(".updates-server.nurl.")
                    && n != ".updates-server.nurl.tmp" // the planted symlink
            })
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn generate_docs_is_hidden_and_writes_the_pages() {
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("generate-docs"), "{help}");
        let out = tempfile::tempdir().unwrap();
        generate_docs(&GenerateDocsArgs {
            out: out.path().to_owned(),
        })
        .unwrap();
        let run_page =
            std::fs::read_to_string(out.path().join("man/tahoe-updates-server-run.1")).unwrap();
        assert!(run_page.contains("public\\-host"), "{run_page}");
        assert!(out.path().join("man/tahoe-updates-server.1").is_file());
        assert!(!out
            .path()
            .join("man/tahoe-updates-server-generate-docs.1")
            .exists());
        assert!(out
            .path()
            .join("completions/zsh/_tahoe-updates-server")
            .is_file());
    }
}
