//! The full local demo: a real Tahoe grid on 127.0.0.1, `tahoe-updates-server` beside each
//! storage node, a shared folder and a news directory, the tray app (or, with `--no-app`,
//! `tahoe-notifier watch`) configured for them, and a writer that adds a file to the folder
//! every 20 s and posts one news item — so real notifications arrive within a minute. Ctrl-C
//! (or `--seconds N`) stops everything.
//!
//! Run through `tests/demo.sh`, which builds the binaries and provides a session bus and keyring
//! when the machine has no desktop session.

#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use local_grid::{Format, Grid, GridOptions};

struct Options {
    seconds: Option<u64>,
    interval: Duration,
    keyring: String,
    desktop: bool,
    /// Start the tray app (when built) rather than the headless `tahoe-notifier watch`.
    app: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        seconds: None,
        interval: Duration::from_secs(20),
        keyring: "secret-service".to_owned(),
        desktop: true,
        app: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a number")?;
                options.seconds = Some(
                    value
                        .parse()
                        .map_err(|_| "--seconds needs a whole number")?,
                );
            }
            "--interval" => {
                let value = args.next().ok_or("--interval needs a number of seconds")?;
                options.interval = Duration::from_secs(
                    value
                        .parse()
                        .map_err(|_| "--interval needs a whole number of seconds")?,
                );
            }
            "--keyring" => {
                options.keyring = args
                    .next()
                    .ok_or("--keyring needs secret-service or keyutils")?
            }
            "--no-desktop" => options.desktop = false,
            "--no-app" => options.app = false,
            other => {
                return Err(format!(
                "unknown option {other}: use --seconds N, --interval N, --keyring K, --no-desktop, --no-app"
            ))
            }
        }
    }
    Ok(options)
}

/// Child processes that must not outlive the demo.
#[derive(Default)]
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        // Last started, first stopped: the notifier goes before the servers it talks to.
        for (name, child) in self.0.iter_mut().rev() {
            // The updates servers run with --exit-when-stdin-closes: closing it is their clean
            // stop. SIGTERM alone left each one waiting on its stdin reader at exit until the
            // 5 s below ran out (Ctrl-C took 15 s).
            drop(child.stdin.take());
            // SIGTERM too: the tray app and `watch` shut down on it.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
            println!("demo: stopped {name}");
        }
    }
}

fn binary(name: &str) -> Result<PathBuf, String> {
    // Examples are built into target/<profile>/examples/; the binaries sit one level up.
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected location of the demo binary")?;
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it first (tests/demo.sh does)",
            path.display()
        ))
    }
}

fn run_notifier(
    notifier: &Path,
    home: &Path,
    keyring: &str,
    args: &[&str],
    stdin: &str,
) -> Result<String, String> {
    let mut child = Command::new(notifier)
        .arg("--home")
        .arg(home)
        .args(["--keyring", keyring])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tahoe-notifier: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .map_err(|e| format!("cannot write to tahoe-notifier: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("tahoe-notifier failed: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "tahoe-notifier {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn main() {
    if let Err(error) = run() {
        eprintln!("demo: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let options = parse_options()?;
    let server_bin = binary("tahoe-updates-server")?;
    let notifier = binary("tahoe-notifier")?;
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_handler(Arc::clone(&stop));

    println!("demo: starting a Tahoe grid on 127.0.0.1 (introducer, 3 storage nodes, gateway)…");
    let started = Instant::now();
    let grid = Grid::start(GridOptions::default()).map_err(|e| e.to_string())?;
    println!(
        "demo: grid ready in {:.1} s, gateway {}",
        started.elapsed().as_secs_f64(),
        grid.gateway_url()
    );

    let work = tempfile::tempdir().map_err(|e| format!("cannot make a work folder: {e}"))?;
    let mut children = Children::default();
    let mut nurls = Vec::new();
    for node in grid.storage_nodes() {
        let nurl_file = work.path().join(format!("{}.nurl", node.name));
        let child = Command::new(&server_bin)
            .args(["run", "--listen", "127.0.0.1:0", "--exit-when-stdin-closes"])
            .arg("--node-dir")
            .arg(&node.dir)
            .arg("--nurl-file")
            .arg(&nurl_file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start tahoe-updates-server: {e}"))?;
        children
            .0
            .push((format!("updates server for {}", node.name), child));
        let deadline = Instant::now() + Duration::from_secs(15);
        let nurl = loop {
            if let Ok(text) = std::fs::read_to_string(&nurl_file) {
                if !text.trim().is_empty() {
                    break text.trim().to_owned();
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the updates server for {} did not start",
                    node.name
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        println!("demo: updates server for {} is up", node.name);
        nurls.push(nurl);
    }

    let folder = grid
        .create_mutable_dir(Format::Mdmf)
        .map_err(|e| e.to_string())?;
    grid.put_child(
        &folder,
        "welcome.txt",
        b"Files added here are announced by push.\n",
    )
    .map_err(|e| e.to_string())?;
    let news = grid
        .create_mutable_dir(Format::Sdmf)
        .map_err(|e| e.to_string())?;
    let news_read = grid
        .list_dir_json(&news)
        .ok()
        .and_then(|json| json.get(1)?.get("ro_uri")?.as_str().map(str::to_owned))
        .ok_or("cannot read the news directory's read-cap")?;
    let folder_read = grid
        .list_dir_json(&folder)
        .ok()
        .and_then(|json| json.get(1)?.get("ro_uri")?.as_str().map(str::to_owned))
        .ok_or("cannot read the folder's read-cap")?;

    let home = work.path().join("notifier-home");
    let grid_file = work.path().join("demo-grid.json");
    let invite = serde_json::json!({
        "name": "demo grid",
        "gateway_url": grid.gateway_url(),
        "updates_servers": nurls,
        "newscap": news_read,
    });
    write_private(&grid_file, &invite.to_string())?;
    run_notifier(
        &notifier,
        &home,
        &options.keyring,
        &["servers", "import", &grid_file.to_string_lossy()],
        "",
    )?;
    let added = run_notifier(
        &notifier,
        &home,
        &options.keyring,
        &["caps", "add", "--label", "Demo Folder"],
        &format!("{folder_read}\n"),
    )?;
    print!("demo: watching {added}");
    publish_news(
        &notifier,
        &home,
        &options.keyring,
        &news,
        "Welcome to the demo grid",
        "info",
        "This grid announces maintenance here.",
    )?;

    // The tray (the engine host with its icon; its menu opens the window) when it is built and
    // a desktop is wanted, else the headless `watch`.
    let tray = binary("tahoe-notifier-tray")
        .ok()
        .filter(|_| options.desktop && options.app);
    if let Some(tray_bin) = tray {
        let tray = Command::new(&tray_bin)
            .arg("--home")
            .arg(&home)
            .args(["--keyring", &options.keyring])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the tray: {e}"))?;
        children.0.push(("the tray".to_owned(), tray));
        println!("demo: the tray is running; its menu opens the window (--no-app runs the headless watch instead)");
    } else {
        let mut watch_args = vec!["watch".to_owned()];
        if !options.desktop {
            watch_args.push("--no-desktop".to_owned());
        }
        let watcher = Command::new(&notifier)
            .arg("--home")
            .arg(&home)
            .args(["--keyring", &options.keyring])
            .args(&watch_args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start tahoe-notifier watch: {e}"))?;
        children
            .0
            .push(("tahoe-notifier watch".to_owned(), watcher));
    }
    println!(
        "demo: adding a file to \"Demo Folder\" every {} s; one news item follows. Ctrl-C stops everything.",
        options.interval.as_secs()
    );

    let began = Instant::now();
    let mut next_write = Instant::now() + Duration::from_secs(3);
    let mut written = 0u32;
    let mut news_posted = false;
    while !stop.load(Ordering::Relaxed) {
        if options
            .seconds
            .is_some_and(|limit| began.elapsed() >= Duration::from_secs(limit))
        {
            break;
        }
        if Instant::now() >= next_write {
            written += 1;
            let name = format!("report-{written:03}.txt");
            let body = format!("Report number {written}, written by the demo writer.\n");
            match grid.put_child(&folder, &name, body.as_bytes()) {
                Ok(_) => println!("demo: writer added {name}"),
                Err(error) => println!("demo: writer could not add {name}: {error}"),
            }
            next_write = Instant::now() + options.interval;
            if written == 2 && !news_posted {
                news_posted = true;
                publish_news(
                    &notifier,
                    &home,
                    &options.keyring,
                    &news,
                    "Maintenance tonight",
                    "critical",
                    "Storage node 2 restarts at 22:00 UTC. Nothing to do on your side.",
                )?;
                println!("demo: operator posted a news item");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("demo: stopping…");
    drop(children);
    drop(grid);
    println!("demo: done");
    Ok(())
}

fn publish_news(
    notifier: &Path,
    home: &Path,
    keyring: &str,
    news_write: &str,
    title: &str,
    severity: &str,
    body: &str,
) -> Result<(), String> {
    run_notifier(
        notifier,
        home,
        keyring,
        &["news", "publish", "--title", title, "--severity", severity],
        &format!("{news_write}\n{body}\n"),
    )
    .map(|_| ())
}

fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Ctrl-C and SIGTERM set `stop`; the main loop then tears everything down in order.
fn install_stop_handler(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut terminate) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            } else {
                let _ = tokio::signal::ctrl_c().await;
            }
        });
        stop.store(true, Ordering::Relaxed);
    });
}
