//! The one window: made on demand (Open, a notification click, a second launch) and destroyed
//! when closed, so a closed window costs no webview; the process keeps only the tray and the
//! engine.

use tauri::{AppHandle, Emitter as _, Manager as _, WebviewUrl, WebviewWindowBuilder};

use crate::app::{Core, OPEN_TARGET_EVENT};

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
