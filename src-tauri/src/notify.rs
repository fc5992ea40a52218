//! The engine's notification sink in the app: the desktop sink from notifier-core, behind the
//! user's pause (quiet hours and "news only" are the engine's policy); a click opens the window
//! at the item.

use std::sync::Arc;

use notifier_core::notify::{
    DeliveredId, DesktopSink, Notification, NotificationSink, NotifyError,
};
use tauri::AppHandle;
use time::OffsetDateTime;

use crate::app::Core;

/// Desktop notifications, held back while paused. Held-back items stay
/// unread in the history, so nothing is lost: the tray's badge still shows them.
pub struct AppSink {
    desktop: DesktopSink,
    core: Arc<Core>,
}

impl std::fmt::Debug for AppSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSink").finish_non_exhaustive()
    }
}

impl AppSink {
    /// A sink whose notifications open the window at their item when clicked.
    pub fn new(app: AppHandle, core: Arc<Core>) -> AppSink {
        let desktop = DesktopSink::with_open_handler(Arc::new(move |target: &str| {
            crate::window::open(&app, Some(target.to_owned()));
        }));
        AppSink { desktop, core }
    }

    /// Why `n` is not shown now, if it is not.
    fn held_back(&self, _n: &Notification) -> Option<&'static str> {
        let now = OffsetDateTime::now_utc();
        self.core.live().is_paused(now).then_some("paused")
    }
}

impl NotificationSink for AppSink {
    fn deliver(&self, n: &Notification) -> Result<DeliveredId, NotifyError> {
        if let Some(reason) = self.held_back(n) {
            tracing::info!(reason, "notification held back");
            return Ok(DeliveredId(0));
        }
        self.desktop.deliver(n)
    }
}
