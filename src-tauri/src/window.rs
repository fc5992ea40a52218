//! The one window. This process is the window: it starts with it and ends when it is closed,
//! so everything WebKit holds goes back with the process (no re-execution, no shedding). The
//! engine runs in the host process; a request to show an item while the window runs arrives
//! as the host's `WindowRequested` signal (`app::link_to_host`) or a second launch.

use tauri::{AppHandle, Emitter as _, Manager as _, WebviewUrl, WebviewWindowBuilder};

use crate::app::{Core, OPEN_TARGET_EVENT};

/// The window's label.
pub const MAIN: &str = "main";

/// Shows the window (creating it if needed), optionally at one item (`change:<id>`,
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
