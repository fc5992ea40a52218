//! The window itself: closing it, the item a notification or the tray asked to open.

use std::sync::OnceLock;
use std::time::Instant;

use tauri::AppHandle;

use super::{CommandError, Result, Shared};

/// Closes (and so destroys) the window: Ctrl+W on the page. The app stays in the tray.
#[tauri::command(async)]
pub fn close_window(app: AppHandle) -> Result<()> {
    use tauri::Manager as _;
    if let Some(window) = app.get_webview_window(crate::window::MAIN) {
        window.close().map_err(CommandError::new)?;
    }
    Ok(())
}

/// When this process started, for the "page drawn" figure (set first thing in `main`).
static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Notes the process start; later calls change nothing.
pub fn mark_process_start() {
    PROCESS_START.get_or_init(Instant::now);
}

/// The page says it has drawn its first state (after a paint): logged with the time since the
/// process started, which the engine benchmark reads as "tray click → window page drawn".
#[tauri::command(async)]
pub fn page_drawn() {
    let elapsed_ms = PROCESS_START
        .get()
        .map_or(0, |start| start.elapsed().as_millis());
    tracing::info!(elapsed_ms, "window page drawn");
}

/// The item a notification click or tray entry asked to show, once.
#[tauri::command(async)]
pub fn take_open_target(core: Shared<'_>) -> Option<String> {
    core.take_pending_target()
}
