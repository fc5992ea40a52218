//! The window itself: closing it, the item a notification or the tray asked to open.

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

/// The item a notification click or tray entry asked to show, once.
#[tauri::command(async)]
pub fn take_open_target(core: Shared<'_>) -> Option<String> {
    core.take_pending_target()
}
