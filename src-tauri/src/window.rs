//! The one window: made on demand (Open, a notification click, a second launch) and destroyed
//! when closed, so a closed window costs no webview; the process keeps only the tray and the
//! engine.
//!
//! Destroying the webview is not enough to give its memory back: WebKit keeps its network
//! process, its GL driver (all of LLVM with software rendering) and the pages of its libraries it
//! touched, ~150 MiB more than a tray that never opened a window (measured in
//! `tests/memory.rs`). So once the window has stayed closed for a while, the app sheds all of
//! that by re-executing itself tray-only (`--tray`, same pid, same arguments, the pause
//! carried over): the engine reconnects within a second and reports once whatever changed
//! meanwhile, as after any reconnect.

use std::os::unix::process::CommandExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tauri::{AppHandle, Emitter as _, Manager as _, WebviewUrl, WebviewWindowBuilder};

use crate::app::{Core, OPEN_TARGET_EVENT};

/// How long a closed window's leftovers are kept (a window reopened soon is quick to show)
/// before the process sheds them; `TAHOE_NOTIFIER_SHED_SECONDS` overrides it (tests).
const SHED_AFTER: Duration = Duration::from_secs(30);

/// Bumped by every close and open: a pending shed goes ahead only if nothing happened since.
static WINDOW_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The window's label.
pub const MAIN: &str = "main";

/// Shows the window (creating it if closed), optionally at one item (`change:<id>`,
/// `news:<grid>:<name>` or a page name).
pub fn open(app: &AppHandle, target: Option<String>) {
    if let Some(window) = app.get_webview_window(MAIN) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        if let Some(target) = target {
            let _ = window.emit(OPEN_TARGET_EVENT, target);
        }
        return;
    }
    WINDOW_GENERATION.fetch_add(1, Ordering::SeqCst);
    // A new page asks for its target once it has loaded (take_open_target).
    if let Some(core) = app.try_state::<std::sync::Arc<Core>>() {
        core.set_pending_target(target);
    }
    let built = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App("index.html".into()))
        .title("Tahoe Notifier")
        .inner_size(1040.0, 700.0)
        .min_inner_size(760.0, 520.0)
        .build();
    match built {
        Ok(window) => {
            let _ = window.set_focus();
        }
        Err(error) => tracing::error!(%error, "cannot open the window"),
    }
}

/// The window was destroyed: shed what WebKit keeps once it has stayed closed for a while.
pub fn closed(app: &AppHandle) {
    let generation = WINDOW_GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
    let wait = std::env::var("TAHOE_NOTIFIER_SHED_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(SHED_AFTER, Duration::from_secs);
    let app = app.clone();
    let spawned = std::thread::Builder::new()
        .name("shed-webview".to_owned())
        .spawn(move || {
            std::thread::sleep(wait);
            if WINDOW_GENERATION.load(Ordering::SeqCst) == generation
                && app.get_webview_window(MAIN).is_none()
            {
                shed(&app);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot schedule giving the window's memory back");
    }
}

/// Re-executes the app tray-only; on failure keeps running as it is.
fn shed(app: &AppHandle) {
    let Some(core) = app.try_state::<Arc<Core>>().map(|state| Arc::clone(&state)) else {
        return;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) if exe.exists() => exe,
        // Replaced on disk (an upgrade): the new binary is for the next login.
        _ => return,
    };
    tracing::info!(
        "window closed a while ago: restarting tray-only to give the webview's memory back"
    );
    let paused_until = core.live().paused_until;
    core.stop_engine();
    let mut args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|arg| arg != "--tray")
        .collect();
    args.push("--tray".into());
    let mut skip_value = false;
    args.retain(|arg| {
        if std::mem::take(&mut skip_value) {
            return false;
        }
        if arg == "--paused-until" {
            skip_value = true;
            return false;
        }
        true
    });
    if let Some(until) = paused_until.filter(|until| *until > time::OffsetDateTime::now_utc()) {
        args.push("--paused-until".into());
        args.push(until.unix_timestamp().to_string().into());
    }
    // Only returns if the exec failed.
    let error = std::process::Command::new(exe).args(args).exec();
    tracing::warn!(%error, "cannot restart tray-only; keeping the window's leftovers");
    crate::app::restart_engine(app, &core);
}

/// After a tray-only restart the process still has the children of its former self (WebKit's
/// network process, which exits as soon as its socket to us closed at the restart): nobody else
/// would wait for them, so each is waited for on a thread of its own, leaving no zombie.
/// Called first thing at start, before anything of ours spawns a child.
pub fn reap_inherited_children() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent pid is the second field after the command name (which may hold spaces).
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|field| field.parse::<u32>().ok());
        if ppid != Some(me) {
            continue;
        }
        let Some(child) = rustix::process::Pid::from_raw(pid) else {
            continue;
        };
        let _ = std::thread::Builder::new()
            .name("reap-inherited".to_owned())
            .spawn(move || {
                let _ =
                    rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty());
            });
    }
}
