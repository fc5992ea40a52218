//! What the page may call, one module per page. Each command is a thin call into
//! notifier-core; the page gets ids, storage indexes, labels and states — never a cap or a
//! NURL. The only cap that crosses the boundary is the one the user pastes, going in.

pub mod caps;
pub mod history;
pub mod servers;
pub mod settings;
pub mod status;
pub mod welcome;
pub mod window;

use std::sync::Arc;

use notifier_core::store::caps::CapStoreError;
use serde::Serialize;
use tauri::{AppHandle, Emitter as _, State};

use crate::app::{Core, CHANGED_EVENT};

/// A command's failure, as the page shows it: one sentence, never a secret (every error type
/// of notifier-core is written to leave caps out).
#[derive(Debug, thiserror::Error, Serialize)]
#[error("{0}")]
pub struct CommandError(pub(crate) String);

impl CommandError {
    /// The error's sentence (never a secret: every error type of notifier-core leaves caps out).
    pub fn new(error: impl std::fmt::Display) -> Self {
        Self(error.to_string())
    }
}

macro_rules! command_error_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CommandError {
            fn from(error: $t) -> Self {
                Self::new(error)
            }
        }
    )*};
}

command_error_from!(
    CapStoreError,
    notifier_core::store::servers::ServerStoreError,
    notifier_core::grid::description::GridFileError,
    notifier_core::history::HistoryError,
    notifier_core::store::preferences::PreferencesError,
    tauri_plugin_autostart::Error,
);

pub(crate) type Result<T> = std::result::Result<T, CommandError>;
pub(crate) type Shared<'a> = State<'a, Arc<Core>>;

pub(crate) fn changed(app: &AppHandle, _core: &Arc<Core>) {
    let _ = app.emit(CHANGED_EVENT, ());
}
