//! Notifications: what is shown, where it goes, and which ones are shown at all.
//!
//! - [`Notification`]: summary, body, urgency and the history item to open.
//! - [`NotificationSink`]: where notifications go. [`DesktopSink`] shows them through the
//!   freedesktop notification service on the D-Bus session bus; [`RecordingSink`] keeps them in
//!   memory (tests, headless use, `watch --no-desktop`).
//! - [`NotificationPolicy`]: per-cap mute, quiet hours, "news only", and burst coalescing (many
//!   changes to one cap within a short window become one notification). A state machine driven
//!   by explicit [`Instant`]s and local times, so it is tested without sleeping;
//!   [`run_policy`] drives it from a channel with real time.
//!
//! Notifications hold labels, file names and sizes, never caps, swissnums or keys; as a second
//! line of defence, sinks pass every text through [`redact_caps`].
//!
//! The module's parts: `desktop` (the freedesktop sink), `recording` (the in-memory sink),
//! `policy` (the state machine and its driver).

mod desktop;
mod policy;
mod recording;
#[cfg(test)]
mod tests;

pub use desktop::{ActionHandler, DesktopSink, NotificationAction, MUTE_FOR};
pub use policy::{
    cap_replace_key, run_policy, Alert, AlertSettings, ChangeNote, NotificationPolicy,
    PolicyConfig, PolicyInput, QuietHours,
};
pub use recording::{Recorded, RecordingSink};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use thiserror::Error;
use time::{OffsetDateTime, Time, UtcOffset};
use tokio::sync::mpsc;

use crate::describe::text::clean_line;
use crate::describe::ChangeDescription;
use crate::net::gateway::redact_caps;
use crate::news::Severity;

/// The application name desktop notifications carry.
pub const APP_NAME: &str = "Tahoe Notifier";
/// The icon name desktop notifications carry (a freedesktop standard icon name).
pub const ICON_NAME: &str = "folder-remote";
/// The default action's key (what a click on the notification invokes).
pub const DEFAULT_ACTION: &str = "default";
/// Default burst window: changes to one cap closer together than this are coalesced.
pub const DEFAULT_COALESCE_WINDOW: Duration = Duration::from_secs(2);
/// Default longest delay of a burst: a cap that keeps changing is still reported this often.
pub const DEFAULT_MAX_BURST_DELAY: Duration = Duration::from_secs(10);

/// Longest summary shown, in characters.
const MAX_SUMMARY_CHARS: usize = 200;
/// Longest body shown, in characters.
const MAX_BODY_CHARS: usize = 2000;
/// Names listed in a coalesced summary before "N more".
const COALESCED_NAMES: usize = 2;

/// How urgent a notification is (the freedesktop levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// Shown quietly.
    Low,
    /// Ordinary.
    Normal,
    /// Shown even in quiet hours; the desktop may keep it until dismissed.
    Critical,
}

impl From<Severity> for Urgency {
    /// Only critical news (service affected now) is critical; a warning is ordinary news.
    fn from(severity: Severity) -> Self {
        match severity {
            Severity::Info | Severity::Warning => Urgency::Normal,
            Severity::Critical => Urgency::Critical,
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// One line, e.g. "Team Docs: added report.pdf, 2 more".
    pub summary: String,
    /// More detail; may be empty.
    pub body: String,
    /// How urgent it is.
    pub urgency: Urgency,
    /// The history item to open when the notification is clicked (e.g. `change:42`).
    pub target: Option<String>,
    /// Notifications with the same key replace each other: a sink that delivered one with
    /// this key before updates that one in place (freedesktop `replaces_id`) instead of
    /// showing another. The policy uses `cap:<id>` ([`cap_replace_key`]); `None` always
    /// shows a new notification.
    pub replace_key: Option<String>,
}

/// The id a sink gave a delivered notification (the desktop's id, or a counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveredId(pub u32);

/// Why a notification could not be shown.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NotifyError {
    /// There is no D-Bus session bus to talk to.
    #[error("no D-Bus session bus (is this a desktop session? DBUS_SESSION_BUS_ADDRESS is unset or unusable): {0}")]
    NoSessionBus(String),
    /// The session bus has no notification service.
    #[error("no notification daemon on the session bus: {0}")]
    NoDaemon(String),
    /// The notification service refused or failed.
    #[error("the desktop notification failed: {0}")]
    Failed(String),
}

/// Where notifications go.
pub trait NotificationSink: Send + Sync {
    /// Shows `n`; returns the id it got.
    fn deliver(&self, n: &Notification) -> Result<DeliveredId, NotifyError>;
}

/// What runs when a notification's default action (a click) is invoked: gets the
/// notification's [`Notification::target`].
pub type OpenHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// Notification servers may interpret a small HTML subset in bodies: escape it so that a file
/// named `<b>x</b>` is shown as it is.
pub(crate) fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The summary is plain text by the spec, yet some daemons parse markup in it (dunst with
/// `markup = full` formats `<b>%s</b>`), and escaping it would show `&lt;` on the others.
/// So the three markup characters are replaced by look-alikes there: a file named
/// `</b><u>x</u>` cannot restyle the notification on any daemon (the review's finding 20), and
/// the body, which daemons do parse, still shows the name exactly, escaped.
pub(crate) fn neutralize_markup(summary: &str) -> String {
    summary
        .chars()
        .map(|c| match c {
            '<' => '\u{2039}',
            '>' => '\u{203A}',
            '&' => '\u{FF06}',
            other => other,
        })
        .collect()
}

/// The notification as shown: one clean summary line, a bounded body, no caps.
pub(crate) fn sanitized(n: &Notification) -> Notification {
    let body = crate::describe::text::clean_multiline(&redact_caps(&n.body));
    Notification {
        summary: clean_line(&redact_caps(&n.summary), MAX_SUMMARY_CHARS),
        body: crate::describe::text::truncate_chars(body.trim(), MAX_BODY_CHARS),
        urgency: n.urgency,
        target: n.target.clone(),
        replace_key: n.replace_key.clone(),
    }
}
