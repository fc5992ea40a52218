//! Tahoe Notifier's window: a thin Tauri shell over notifier-core, a process of its own that
//! ends when the window is closed. The engine, the notifications and the tray icon live in the
//! engine host (`tahoe-notifier-tray`), which this window talks to over D-Bus and starts if it
//! is not running.
//!
//! - `app.rs`: the shared core (stores, history) and the link to the host (its live state,
//!   what it asks the window to show, what the window asks of it)
//! - `commands/`: what the page may call, one module per page
//! - `window.rs`: the one window
//! - `magic_folder.rs`: Settings' magic-folder link commands
//!
//! Usage: `tahoe-notifier-app [--open ITEM] [--home DIR] [--keyring secret-service|keyutils]`
//! (hosts add `--opened-by-host`: such a window closes rather than start a host of its own),
//! `tahoe-notifier-app --tray` (start the background process only, for old autostart entries),
//! `tahoe-notifier-app --version`. The options are documented for users in
//! `packaging/tahoe-notifier/tahoe-notifier-app.1`.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod app;
mod commands;
mod magic_folder;
mod window;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore};
use notifier_core::store::paths::Paths;
use tauri::{Manager as _, RunEvent};

/// The file name (without `.desktop`) of the per-user XDG autostart entry that Settings' "Start
/// at login" writes to `~/.config/autostart/`. The package ships a disabled system-wide entry of
/// the same name (`/etc/xdg/autostart/tahoe-notifier.desktop`, `Hidden=true`): by the XDG
/// autostart spec a user's file overrides the system one of the same name, so the setting turns
/// autostart on for that user only. Without a name the plugin would use the product name,
/// "Tahoe Notifier.desktop", which overrides nothing.
const AUTOSTART_NAME: &str = "tahoe-notifier";

/// What the app passes itself when started at login: no window, only the background process.
const AUTOSTART_ARGS: [&str; 1] = ["--tray"];

/// Command-line options.
#[derive(Debug, Default)]
struct Options {
    /// `--version`: print it and exit, before anything starts.
    version: bool,
    /// `--tray`: make sure the background process runs, open no window.
    tray_only: bool,
    home: Option<PathBuf>,
    keyring: KeyringBackend,
    /// `--open ITEM`: the item to show (`change:42`, `news:…`, a page name).
    open: Option<String>,
    /// `--opened-by-host`: a host started this window, so the window must not start another
    /// when that one has already gone (the tray's Open then Quit in quick succession).
    opened_by_host: bool,
}

fn parse_options(args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
    let mut options = Options::default();
    let mut args = args.skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--version" => options.version = true,
            "--tray" => options.tray_only = true,
            "--home" => {
                options.home = Some(PathBuf::from(args.next().context("--home needs a folder")?))
            }
            "--keyring" => {
                options.keyring = args
                    .next()
                    .context("--keyring needs secret-service or keyutils")?
                    .parse()?
            }
            "--open" => options.open = Some(args.next().context("--open needs an item")?),
            "--opened-by-host" => options.opened_by_host = true,
            // WebDriver and desktop launchers may add their own arguments: ignore them.
            _ => {}
        }
    }
    Ok(options)
}

fn main() {
    commands::window::mark_process_start();
    // Then: `--version` must answer without touching the display, the keyring or any file.
    let options = match parse_options(std::env::args()) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("tahoe-notifier-app: {error:#}");
            std::process::exit(1);
        }
    };
    if options.version {
        println!("{}", version_line());
        return;
    }
    // GTK's own OpenGL is of no use to a tray icon and a menu, yet initialising it maps a GL
    // driver (with software rendering, all of LLVM: ~45 MiB) into the process for its whole
    // life: measured 128.5 MiB tray-only with it, 78.9 MiB without (tests/memory.rs). WebKit
    // then says it "disabled hardware acceleration" for the page and draws it on the CPU,
    // which this plain page does not need (the e2e screenshots are drawn that way).
    // Set before GTK (and any thread) starts; a user's own GDK_GL setting wins.
    if std::env::var_os("GDK_GL").is_none() {
        std::env::set_var("GDK_GL", "disable");
    }
    // Before any thread exists: later the platform may refuse to say (see `time`'s docs).
    let local_offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    // RUST_LOG as usual, never the third-party lines that carry secrets (see the function).
    notifier_core::logging::init_stderr("info");
    // Tauri's event loop panics when GTK cannot open a display; say so plainly instead.
    #[cfg(target_os = "linux")]
    if gtk::init().is_err() {
        eprintln!(
            "tahoe-notifier-app: cannot open a display (DISPLAY={:?}, WAYLAND_DISPLAY={:?}): \
             the window needs a desktop session; the tray and `tahoe-notifier` work without one",
            std::env::var_os("DISPLAY").unwrap_or_default(),
            std::env::var_os("WAYLAND_DISPLAY").unwrap_or_default(),
        );
        std::process::exit(1);
    }
    if let Err(error) = run(options, local_offset) {
        eprintln!("tahoe-notifier-app: {error:#}");
        std::process::exit(1);
    }
}

/// What `--version` prints: the binary's name and the workspace's version (Cargo.toml).
fn version_line() -> String {
    format!("tahoe-notifier-app {}", env!("CARGO_PKG_VERSION"))
}

fn run(options: Options, local_offset: time::UtcOffset) -> anyhow::Result<()> {
    let paths = Paths::resolve(options.home.as_deref())
        .context("cannot choose where to keep the config")?;
    if options.tray_only {
        return start_host_only(&options);
    }
    let secrets = Arc::new(KeyringSecretStore::new(options.keyring));
    let core = Arc::new(app::Core::open(
        paths,
        options.home.clone(),
        options.keyring,
        secrets,
        local_offset,
    )?);
    let open_at = options.open.clone();
    let host_start = if options.opened_by_host {
        app::HostStart::Never
    } else {
        app::HostStart::IfNoneRuns
    };

    let tauri_app = tauri::Builder::default()
        // First, so that a second launch is turned away before it builds anything.
        .plugin(tauri_plugin_single_instance::init(|app, args, _cwd| {
            tracing::info!("second launch: showing the window");
            let target = args
                .iter()
                .position(|a| a == "--open")
                .and_then(|i| args.get(i + 1).cloned());
            window::open(app, target);
        }))
        .plugin(tauri_plugin_dialog::init())
        // On Linux the plugin writes ~/.config/autostart/<AUTOSTART_NAME>.desktop with
        // `Exec=<this binary> --tray`, which starts the background process only.
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .app_name(AUTOSTART_NAME)
                .args(AUTOSTART_ARGS)
                .build(),
        )
        .manage(Arc::clone(&core))
        .invoke_handler(tauri::generate_handler![
            commands::status::app_status,
            commands::caps::list_caps,
            commands::caps::validate_cap,
            commands::caps::add_cap,
            commands::caps::rename_cap,
            commands::caps::set_muted,
            commands::caps::remove_cap,
            commands::history::list_changes,
            commands::history::list_news,
            commands::history::mark_change_read,
            commands::history::mark_news_read,
            commands::history::mark_all_read,
            commands::servers::list_servers,
            commands::servers::reconnect,
            commands::servers::import_grid_file,
            commands::settings::get_settings,
            commands::settings::set_settings,
            commands::settings::set_autostart,
            commands::settings::pause,
            commands::window::take_open_target,
            commands::window::page_drawn,
            commands::window::close_window,
            commands::caps::list_aliases,
            commands::caps::add_alias,
            commands::welcome::join_grid,
            commands::welcome::open_grid_file,
            commands::welcome::local_node,
            commands::welcome::choose_node_dir,
            commands::welcome::use_local_node,
            magic_folder::list_magic_folders,
            magic_folder::link_magic_folders,
            magic_folder::unlink_magic_folder,
            magic_folder::set_magic_folder_conflicts_only,
            magic_folder::apply_magic_folder_poll_interval,
        ])
        .setup(move |app| {
            let handle = app.handle().clone();
            let core = Arc::clone(app.state::<Arc<app::Core>>().inner());
            app::link_to_host(&handle, &core, host_start, window::open);
            window::open(&handle, open_at);
            Ok(())
        })
        .build(tauri::generate_context!())
        .context("cannot start the app")?;

    // Closing the window ends this process; the engine goes on in the host.
    tauri_app.run(|_app, event| {
        if let RunEvent::ExitRequested { .. } = event {
            tracing::info!("window closed");
        }
    });
    Ok(())
}

/// `--tray`: starts the background process (if it is not running) and returns at once, without
/// touching the display: what login autostart runs.
fn start_host_only(options: &Options) -> anyhow::Result<()> {
    let program = notifier_core::host::sibling_program(app::HOST_PROGRAM);
    let mut command = std::process::Command::new(&program);
    if let Some(home) = &options.home {
        command.arg("--home").arg(home);
    }
    command.args(["--keyring", options.keyring.as_str()]);
    // Replaces this process: the host is what autostart meant to run.
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    Err(anyhow::anyhow!(
        "cannot start {}: {error}",
        program.display()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn options() {
        let args = [
            "app",
            "--tray",
            "--home",
            "/tmp/x",
            "--keyring",
            "keyutils",
            "--open",
            "change:4",
        ];
        let options = parse_options(args.iter().map(|s| s.to_string())).unwrap();
        assert!(options.tray_only);
        assert_eq!(options.open.as_deref(), Some("change:4"));
        assert_eq!(options.home, Some(PathBuf::from("/tmp/x")));
        assert_eq!(options.keyring, KeyringBackend::Keyutils);
        assert!(!options.version);
        assert!(parse_options(["app", "--home"].iter().map(|s| s.to_string())).is_err());
        let version = parse_options(["app", "--version"].iter().map(|s| s.to_string())).unwrap();
        assert!(version.version);
        assert_eq!(
            version_line(),
            format!("tahoe-notifier-app {}", env!("CARGO_PKG_VERSION"))
        );
    }

    /// The hand-written man page must keep up with the hand-written parser.
    #[test]
    fn the_man_page_documents_every_option() {
        let page = include_str!("../../packaging/tahoe-notifier/tahoe-notifier-app.1");
        for option in ["--tray", "--open", "--home", "--keyring", "--version"] {
            assert!(
                page.contains(&option.replace('-', "\\-")),
                "tahoe-notifier-app.1 does not mention {option}"
            );
        }
    }

    /// The package's disabled system-wide autostart entry has the name the setting writes per
    /// user, so the user's file overrides it, and starts the app the way the setting does.
    #[test]
    fn the_system_autostart_entry_matches_the_setting() {
        let entry = include_str!("../../packaging/tahoe-notifier/autostart.desktop");
        assert_eq!(
            AUTOSTART_NAME, "tahoe-notifier",
            "rename the installed asset too"
        );
        assert!(entry.lines().any(|l| l == "Hidden=true"), "{entry}");
        let exec = format!(
            "Exec=/usr/bin/tahoe-notifier-app {}",
            AUTOSTART_ARGS.join(" ")
        );
        assert!(entry.lines().any(|l| l == exec), "{entry}");
    }
}
