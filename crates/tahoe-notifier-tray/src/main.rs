//! `tahoe-notifier-tray`: the one background process of Tahoe Notifier on a desktop. It runs the
//! engine host of `notifier_core::host` (engine, magic-folder bridge, notifications with their
//! actions, Do-Not-Disturb, the `org.tahoe_lafs.Notifier` D-Bus service) and shows its state as
//! a StatusNotifierItem tray icon (`ksni`), so it links neither GTK nor WebKit. The window is
//! another program, `tahoe-notifier-app`, started on demand and ended when closed.
//!
//! - `tray.rs`: the icon's looks, tooltip and menu, drawn from the host's state
//! - `window.rs`: starting the window process at an item
//!
//! Usage: `tahoe-notifier-tray [--home DIR] [--keyring secret-service|keyutils]`.

mod tray;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use ksni::TrayMethods as _;
use notifier_core::host::{self, HostCommand, HostError, HostEvent, HostOptions};
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore};
use notifier_core::store::paths::Paths;

/// The background process of Tahoe Notifier: the engine and its tray icon.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Keep the config and history under this folder instead of the user's.
    #[arg(long, value_name = "DIR", env = "TAHOE_NOTIFIER_HOME")]
    home: Option<PathBuf>,
    /// Where the caps and keys are kept: secret-service (the desktop's keyring) or keyutils.
    #[arg(long, default_value = "secret-service", value_parser = parse_backend)]
    keyring: KeyringBackend,
}

fn parse_backend(text: &str) -> Result<KeyringBackend, String> {
    text.parse()
        .map_err(|e: notifier_core::store::keyring::UnknownBackend| e.to_string())
}

fn main() -> ExitCode {
    // Before any thread exists: the time crate refuses to find the offset after.
    let local_offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let args = Args::parse();
    notifier_core::logging::init_stderr("info");
    match run(&args, local_offset) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tahoe-notifier-tray: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, local_offset: time::UtcOffset) -> anyhow::Result<()> {
    let paths = Paths::resolve(args.home.as_deref()).context("cannot find the config folder")?;
    paths
        .ensure_dirs()
        .context("cannot create the config folders")?;
    let options = HostOptions {
        local_offset,
        ..HostOptions::new(
            paths.clone(),
            Arc::new(KeyringSecretStore::new(args.keyring)),
        )
    };
    let window = host::window::Launcher::new(args.home.clone(), args.keyring);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let (handle, commands) = host::channel();
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let host =
            tokio::task::spawn_local(host::run(options, handle.clone(), commands, events_tx));
        let icon = tray::TrayIcon::new(handle.clone(), local_offset);
        // A desktop without a tray host yet (it may start after us at login) is not an error:
        // the icon appears when one registers.
        let tray = match icon.assume_sni_available(true).spawn().await {
            Ok(tray) => Some(tray),
            Err(error) => {
                tracing::warn!(%error, "no tray icon: the desktop has no StatusNotifierItem host");
                None
            }
        };
        let stop = {
            let handle = handle.clone();
            tokio::task::spawn_local(async move {
                notifier_core::host::stop_signal().await;
                handle.send(HostCommand::Quit);
            })
        };
        while let Some(event) = events.recv().await {
            match event {
                HostEvent::State(state) => {
                    if let Some(tray) = &tray {
                        tray.update(|icon| icon.show(*state)).await;
                    }
                }
                HostEvent::Open(target) => {
                    if let Err(error) = window.open(target.as_deref()) {
                        tracing::warn!(%error, program = host::window::WINDOW_PROGRAM, "cannot start the window");
                    }
                }
                HostEvent::Engine(_) | HostEvent::Bridge(_) => {}
            }
        }
        stop.abort();
        if let Some(tray) = tray {
            tray.shutdown().await;
        }
        match host.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(HostError::AlreadyRunning(holder))) => Err(anyhow::anyhow!(
                "Tahoe Notifier is running already ({holder}); its tray icon is that process's"
            )),
            Ok(Err(error)) => Err(error.into()),
            Err(error) => Err(anyhow::anyhow!("the engine host failed: {error}")),
        }
    })
}
