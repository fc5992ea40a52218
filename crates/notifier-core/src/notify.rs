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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use thiserror::Error;
use time::{OffsetDateTime, Time, UtcOffset};
use tokio::sync::mpsc;

use crate::details::ChangeDescription;
use crate::gateway::redact_caps;
use crate::news::Severity;
use crate::text::clean_line;

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

/// Desktop notifications through the freedesktop notification service (`notify-rust`, zbus).
///
/// Each call is a blocking D-Bus round trip of a few milliseconds; from async code call it in
/// `spawn_blocking` ([`run_policy`] does).
///
/// A notification with a [`Notification::replace_key`] replaces the one this sink last showed
/// with that key (clones share that memory).
#[derive(Clone, Default)]
pub struct DesktopSink {
    on_open: Option<OpenHandler>,
    shown: Arc<Mutex<DesktopShown>>,
}

/// What a [`DesktopSink`] remembers of what it showed.
#[derive(Debug, Default)]
struct DesktopShown {
    /// Replace key → the desktop id last shown with it.
    by_key: HashMap<String, u32>,
    /// Desktop id → which delivery last used it. A replaced notification keeps its id, so the
    /// click-waiting thread of the replaced content must not open its (older) target.
    generation: HashMap<u32, u64>,
    next_generation: u64,
}

impl std::fmt::Debug for DesktopSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesktopSink")
            .field("on_open", &self.on_open.is_some())
            .finish()
    }
}

impl DesktopSink {
    /// A sink whose notifications offer the "Open" action but handle nobody's click.
    pub fn new() -> DesktopSink {
        DesktopSink::default()
    }

    /// A sink that calls `on_open(target)` when a notification with a target is clicked. Each
    /// such notification has a thread waiting for the click until the notification closes.
    pub fn with_open_handler(on_open: OpenHandler) -> DesktopSink {
        DesktopSink {
            on_open: Some(on_open),
            shown: Arc::default(),
        }
    }

    fn shown(&self) -> std::sync::MutexGuard<'_, DesktopShown> {
        self.shown.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl NotificationSink for DesktopSink {
    fn deliver(&self, n: &Notification) -> Result<DeliveredId, NotifyError> {
        let n = sanitized(n);
        let mut desktop = notify_rust::Notification::new();
        desktop
            .appname(APP_NAME)
            .summary(&neutralize_markup(&n.summary))
            .body(&escape_markup(&n.body))
            .icon(ICON_NAME)
            .urgency(match n.urgency {
                Urgency::Low => notify_rust::Urgency::Low,
                Urgency::Normal => notify_rust::Urgency::Normal,
                Urgency::Critical => notify_rust::Urgency::Critical,
            });
        if n.target.is_some() {
            desktop.action(DEFAULT_ACTION, "Open");
        }
        let replaces = n
            .replace_key
            .as_ref()
            .and_then(|key| self.shown().by_key.get(key).copied());
        if let Some(previous) = replaces {
            desktop.id(previous);
        }
        let handle = desktop.show().map_err(|e| classify_error(&e.to_string()))?;
        let id = DeliveredId(handle.id());
        tracing::debug!(
            id = id.0,
            replaced = replaces.is_some(),
            "desktop notification shown"
        );
        let generation = {
            let mut shown = self.shown();
            if let Some(key) = &n.replace_key {
                shown.by_key.insert(key.clone(), id.0);
            }
            shown.next_generation += 1;
            let generation = shown.next_generation;
            if self.on_open.is_some() {
                shown.generation.insert(id.0, generation);
            }
            generation
        };
        if let (Some(on_open), Some(target)) = (&self.on_open, n.target) {
            let on_open = Arc::clone(on_open);
            let shown = Arc::clone(&self.shown);
            let current = move || {
                shown
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .generation
                    .get(&id.0)
                    == Some(&generation)
            };
            // wait_for_action blocks until the notification is clicked or closed.
            let spawned = std::thread::Builder::new()
                .name("notification-action".to_owned())
                .spawn(move || {
                    handle.wait_for_action(|action| {
                        // Only the content on screen now may open its target.
                        if action == DEFAULT_ACTION && current() {
                            on_open(&target);
                        }
                    });
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot wait for the notification's action");
            }
        }
        Ok(id)
    }
}

/// Sorts a notify-rust/zbus error into "no bus", "no daemon" or other, by its text (zbus
/// gives no structured kind for these).
fn classify_error(text: &str) -> NotifyError {
    let text = redact_caps(text);
    if text.contains("ServiceUnknown")
        || text.contains("NameHasNoOwner")
        || text.contains("was not provided by any")
    {
        NotifyError::NoDaemon(text)
    } else if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none()
        || text.contains("Address")
        || text.contains("No such file or directory")
        || text.contains("Connection refused")
    {
        NotifyError::NoSessionBus(text)
    } else {
        NotifyError::Failed(text)
    }
}

/// Notification servers may interpret a small HTML subset in bodies: escape it so that a file
/// named `<b>x</b>` is shown as it is.
fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The summary is plain text by the spec, yet some daemons parse markup in it (dunst with
/// `markup = full` formats `<b>%s</b>`), and escaping it would show `&lt;` on the others.
/// So the three markup characters are replaced by look-alikes there: a file named
/// `</b><u>x</u>` cannot restyle the notification on any daemon (the review's finding 20), and
/// the body, which daemons do parse, still shows the name exactly, escaped.
fn neutralize_markup(summary: &str) -> String {
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
fn sanitized(n: &Notification) -> Notification {
    let body = crate::text::clean_multiline(&redact_caps(&n.body));
    Notification {
        summary: clean_line(&redact_caps(&n.summary), MAX_SUMMARY_CHARS),
        body: crate::text::truncate_chars(body.trim(), MAX_BODY_CHARS),
        urgency: n.urgency,
        target: n.target.clone(),
        replace_key: n.replace_key.clone(),
    }
}

/// One notification a [`RecordingSink`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The id it was shown under (a replacement keeps the replaced one's).
    pub id: DeliveredId,
    /// What was shown (sanitized).
    pub notification: Notification,
    /// Whether it replaced an earlier notification in place rather than showing a new one.
    pub replaced: bool,
}

#[derive(Debug, Default)]
struct RecordingState {
    records: Vec<Recorded>,
    by_key: HashMap<String, DeliveredId>,
    last_id: u32,
}

/// Keeps every notification in memory instead of showing it, replacing by
/// [`Notification::replace_key`] like the desktop does. For tests and headless use
/// (`watch --no-desktop` prints them).
#[derive(Debug, Default)]
pub struct RecordingSink {
    state: Mutex<RecordingState>,
}

impl RecordingSink {
    /// An empty sink.
    pub fn new() -> RecordingSink {
        RecordingSink::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RecordingState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every delivery so far, oldest first, with whether it replaced an earlier one.
    pub fn records(&self) -> Vec<Recorded> {
        self.state().records.clone()
    }

    /// Everything delivered so far, new and replacing, oldest first (as shown: sanitized).
    pub fn delivered(&self) -> Vec<Notification> {
        self.state()
            .records
            .iter()
            .map(|r| r.notification.clone())
            .collect()
    }

    /// The deliveries that showed a new notification (not replacements), oldest first.
    pub fn shown(&self) -> Vec<Notification> {
        self.select(false)
    }

    /// The deliveries that updated an earlier notification in place, oldest first.
    pub fn replacements(&self) -> Vec<Notification> {
        self.select(true)
    }

    fn select(&self, replaced: bool) -> Vec<Notification> {
        self.state()
            .records
            .iter()
            .filter(|r| r.replaced == replaced)
            .map(|r| r.notification.clone())
            .collect()
    }

    /// What would be on screen if nothing expired: each notification's latest content, in the
    /// order they first appeared.
    pub fn on_screen(&self) -> Vec<Notification> {
        let state = self.state();
        let mut screen: Vec<(DeliveredId, Notification)> = Vec::new();
        for r in &state.records {
            match screen.iter_mut().find(|(id, _)| *id == r.id) {
                Some(slot) => slot.1 = r.notification.clone(),
                None => screen.push((r.id, r.notification.clone())),
            }
        }
        screen.into_iter().map(|(_, n)| n).collect()
    }

    /// Removes and returns everything delivered so far (later notifications with a key seen
    /// before still count as replacements).
    pub fn take(&self) -> Vec<Notification> {
        std::mem::take(&mut self.state().records)
            .into_iter()
            .map(|r| r.notification)
            .collect()
    }
}

impl NotificationSink for RecordingSink {
    fn deliver(&self, n: &Notification) -> Result<DeliveredId, NotifyError> {
        let mut state = self.state();
        let previous = n
            .replace_key
            .as_ref()
            .and_then(|key| state.by_key.get(key).copied());
        let id = match previous {
            Some(id) => id,
            None => {
                state.last_id = state.last_id.saturating_add(1);
                DeliveredId(state.last_id)
            }
        };
        if let Some(key) = &n.replace_key {
            state.by_key.insert(key.clone(), id);
        }
        state.records.push(Recorded {
            id,
            notification: sanitized(n),
            replaced: previous.is_some(),
        });
        Ok(id)
    }
}

/// A daily quiet period in local time; may span midnight (22:00–07:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Start (inclusive).
    pub start: Time,
    /// End (exclusive).
    pub end: Time,
}

impl QuietHours {
    /// Whether `t` falls in the quiet period. Equal start and end mean no quiet period.
    pub fn contains(&self, t: Time) -> bool {
        if self.start <= self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// What the policy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Cap ids whose changes are never notified (they are still recorded in the history).
    pub muted_caps: HashSet<String>,
    /// When only critical notifications are shown.
    pub quiet_hours: Option<QuietHours>,
    /// Show news only, no changes.
    pub news_only: bool,
    /// Changes to one cap closer together than this become one notification.
    pub coalesce_window: Duration,
    /// A burst is reported at the latest this long after its first change.
    pub max_burst_delay: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            muted_caps: HashSet::new(),
            quiet_hours: None,
            news_only: false,
            coalesce_window: DEFAULT_COALESCE_WINDOW,
            max_burst_delay: DEFAULT_MAX_BURST_DELAY,
        }
    }
}

/// One change, as the policy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeNote {
    /// The cap entry's id (for mute and coalescing).
    pub cap_id: String,
    /// The cap's label.
    pub label: String,
    /// The change's own summary (shown when it is alone).
    pub summary: String,
    /// The change's own body.
    pub body: String,
    /// Names added, modified and removed (directories), for a coalesced summary.
    pub added: Vec<String>,
    /// Names modified.
    pub modified: Vec<String>,
    /// Names removed.
    pub removed: Vec<String>,
    /// The history item to open.
    pub target: Option<String>,
}

impl ChangeNote {
    /// A note from a change description (names from its `details_json`).
    pub fn from_description(
        cap_id: &str,
        label: &str,
        description: &ChangeDescription,
        target: Option<String>,
    ) -> ChangeNote {
        let names = |key: &str| -> Vec<String> {
            description
                .details_json
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        ChangeNote {
            cap_id: cap_id.to_owned(),
            label: label.to_owned(),
            summary: description.summary.clone(),
            body: description.body.clone(),
            added: names("added"),
            modified: names("modified"),
            removed: names("removed"),
            target,
        }
    }
}

/// One cap's coalescing window: opened by a change that is shown at once, it collects the
/// cap's further changes until it ends, and then (if there were any) they are shown as one
/// notification replacing the first.
#[derive(Debug)]
struct Window {
    cap_id: String,
    opened_at: Instant,
    last_at: Instant,
    /// Every change in the window, the one shown at once first.
    notes: Vec<ChangeNote>,
}

/// Which notifications are shown, and when: a state machine over explicit times.
///
/// Leading edge plus replace: the first change of a cap is shown at once (from
/// [`NotificationPolicy::on_change`]), so a lone change is never delayed. It opens a window;
/// the cap's further changes within it are collected, and when the window ends
/// ([`NotificationPolicy::poll`] at [`NotificationPolicy::next_deadline`]) they are shown as
/// ONE coalesced notification counting the whole burst ("Team Docs: 10 changes — added a.txt,
/// b.txt, 8 more"). Both carry the same [`Notification::replace_key`] (`cap:<id>`), so the
/// desktop updates the first notification in place instead of stacking a second.
///
/// A window ends after [`PolicyConfig::coalesce_window`] without a change of its cap, and at
/// the latest [`PolicyConfig::max_burst_delay`] after it opened (a cap that never pauses is
/// still reported). Mute and "news only" drop changes as they arrive; quiet hours drop all but
/// critical notifications when they would be shown (the history has them all).
#[derive(Debug)]
pub struct NotificationPolicy {
    config: PolicyConfig,
    /// Open windows, oldest first; at most one per cap.
    windows: Vec<Window>,
}

impl NotificationPolicy {
    /// A policy with `config`.
    pub fn new(config: PolicyConfig) -> NotificationPolicy {
        NotificationPolicy {
            config,
            windows: Vec::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Replaces the configuration; open windows of caps now muted (or all, in news-only mode)
    /// are dropped.
    pub fn set_config(&mut self, config: PolicyConfig) {
        self.config = config;
        let news_only = self.config.news_only;
        let muted = &self.config.muted_caps;
        self.windows
            .retain(|w| !news_only && !muted.contains(&w.cap_id));
    }

    /// A change happened at `now` (`local_time` for quiet hours). Returns what to show at once:
    /// the change itself when it opens a window (nothing when it joins an open one), preceded
    /// by the cap's previous window's coalesced notification if that was due but not yet
    /// polled (so that the older burst never replaces the newer change on the desktop).
    pub fn on_change(
        &mut self,
        note: ChangeNote,
        now: Instant,
        local_time: Time,
    ) -> Vec<Notification> {
        if self.config.news_only || self.config.muted_caps.contains(&note.cap_id) {
            tracing::debug!("change not notified (muted or news only)");
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(i) = self.windows.iter().position(|w| w.cap_id == note.cap_id) {
            if self.deadline(&self.windows[i]) > now {
                let window = &mut self.windows[i];
                window.last_at = window.last_at.max(now);
                window.notes.push(note);
                return out;
            }
            let due = self.windows.remove(i);
            out.extend(self.emit(vec![due], local_time));
        }
        let shown = alone(&note);
        self.windows.push(Window {
            cap_id: note.cap_id.clone(),
            opened_at: now,
            last_at: now,
            notes: vec![note],
        });
        if self.allowed(&shown, local_time) {
            out.push(shown);
        } else {
            tracing::debug!("notification held back by quiet hours");
        }
        out
    }

    /// A news message to show: returned at once unless quiet hours hold it back (critical news
    /// is always shown).
    pub fn on_news(&self, n: Notification, local_time: Time) -> Option<Notification> {
        self.allowed(&n, local_time).then_some(n)
    }

    /// The coalesced notifications of the windows that ended by `now`, oldest window first,
    /// after quiet hours at `local_time`. A window that saw only its first change ends
    /// silently (that change was shown when it came).
    pub fn poll(&mut self, now: Instant, local_time: Time) -> Vec<Notification> {
        let (due, open): (Vec<Window>, Vec<Window>) = std::mem::take(&mut self.windows)
            .into_iter()
            .partition(|w| self.deadline(w) <= now);
        self.windows = open;
        self.emit(due, local_time)
    }

    /// Every open window's coalesced notification, due or not (at shutdown).
    pub fn flush(&mut self, local_time: Time) -> Vec<Notification> {
        let windows = std::mem::take(&mut self.windows);
        self.emit(windows, local_time)
    }

    /// When [`NotificationPolicy::poll`] next has a window to end, if any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.windows.iter().map(|w| self.deadline(w)).min()
    }

    fn deadline(&self, window: &Window) -> Instant {
        let quiet_end = window.last_at + self.config.coalesce_window;
        let latest = window.opened_at + self.config.max_burst_delay;
        quiet_end.min(latest)
    }

    /// The coalesced notifications of ended windows (in their order; windows are kept oldest
    /// first), minus lone changes and what quiet hours hold back.
    fn emit(&self, windows: Vec<Window>, local_time: Time) -> Vec<Notification> {
        windows
            .into_iter()
            .filter(|w| w.notes.len() > 1)
            .filter_map(|w| coalesce(&w.notes))
            .filter(|n| {
                let shown = self.allowed(n, local_time);
                if !shown {
                    tracing::debug!("notification held back by quiet hours");
                }
                shown
            })
            .collect()
    }

    fn allowed(&self, n: &Notification, local_time: Time) -> bool {
        n.urgency == Urgency::Critical
            || !self
                .config
                .quiet_hours
                .is_some_and(|q| q.contains(local_time))
    }
}

/// The key under which a cap's notifications replace each other on the desktop.
pub fn cap_replace_key(cap_id: &str) -> String {
    format!("cap:{cap_id}")
}

/// The notification of one change shown on its own.
fn alone(note: &ChangeNote) -> Notification {
    Notification {
        summary: note.summary.clone(),
        body: note.body.clone(),
        urgency: Urgency::Normal,
        target: note.target.clone(),
        replace_key: Some(cap_replace_key(&note.cap_id)),
    }
}

/// One notification for a burst of changes to one cap (the newest target is opened: it is the
/// history item closest to what the notification says last).
fn coalesce(notes: &[ChangeNote]) -> Option<Notification> {
    if notes.len() <= 1 {
        return notes.first().map(alone);
    }
    let first = notes.first()?;
    let label = clean_line(&first.label, 60);
    let target = notes.iter().rev().find_map(|n| n.target.clone());
    let count = notes.len();
    // Names in order of appearance, each once per verb.
    let mut groups: Vec<(&str, Vec<String>)> = vec![
        ("added", Vec::new()),
        ("modified", Vec::new()),
        ("removed", Vec::new()),
    ];
    for note in notes {
        for (i, names) in [&note.added, &note.modified, &note.removed]
            .into_iter()
            .enumerate()
        {
            for name in names {
                if !groups[i].1.contains(name) {
                    groups[i].1.push(name.clone());
                }
            }
        }
    }
    let total: usize = groups.iter().map(|(_, names)| names.len()).sum();
    let what = if total == 0 {
        // Files, or directories without details: the latest summary says the most.
        let latest = notes.last().map(|n| n.summary.as_str()).unwrap_or_default();
        let prefix = format!("{}: ", first.label);
        format!(
            "latest: {}",
            clean_line(latest.strip_prefix(&prefix).unwrap_or(latest), 120)
        )
    } else {
        let mut parts = Vec::new();
        let mut shown = 0;
        for (verb, names) in &groups {
            let take: Vec<String> = names
                .iter()
                .take(COALESCED_NAMES - shown)
                .map(|n| clean_line(n, 60))
                .collect();
            if !take.is_empty() {
                shown += take.len();
                parts.push(format!("{verb} {}", take.join(", ")));
            }
            if shown == COALESCED_NAMES {
                break;
            }
        }
        if total > shown {
            parts.push(format!("{} more", total - shown));
        }
        parts.join(", ")
    };
    let body = notes
        .iter()
        .map(|n| clean_line(&n.summary, MAX_SUMMARY_CHARS))
        .collect::<Vec<_>>()
        .join("\n");
    Some(Notification {
        summary: format!("{label}: {count} changes — {what}"),
        body,
        urgency: Urgency::Normal,
        target,
        replace_key: Some(cap_replace_key(&first.cap_id)),
    })
}

/// Input to [`run_policy`].
#[derive(Debug, Clone)]
pub enum PolicyInput {
    /// A change (coalesced, subject to mute, news-only and quiet hours).
    Change(ChangeNote),
    /// A news message (shown at once unless quiet hours hold it back).
    News(Notification),
    /// A new configuration.
    Config(PolicyConfig),
}

/// Drives `policy` with real time until `inputs` closes, delivering to `sink`; pending bursts
/// are flushed at the end. `local_offset` turns the clock into local time for quiet hours (find
/// it at start-up, e.g. with `UtcOffset::current_local_offset`, before threads exist).
pub async fn run_policy(
    mut policy: NotificationPolicy,
    mut inputs: mpsc::Receiver<PolicyInput>,
    sink: Arc<dyn NotificationSink>,
    local_offset: UtcOffset,
) {
    let local_time = move || OffsetDateTime::now_utc().to_offset(local_offset).time();
    // Tokio's clock, so that paused-time tests and the timers agree.
    let now = || tokio::time::Instant::now().into_std();
    loop {
        let deadline = policy.next_deadline();
        let input = tokio::select! {
            input = inputs.recv() => input,
            () = sleep_until(deadline) => {
                let due = policy.poll(now(), local_time());
                deliver_all(&sink, due).await;
                continue;
            }
        };
        match input {
            None => break,
            Some(PolicyInput::Change(note)) => {
                let shown = policy.on_change(note, now(), local_time());
                deliver_all(&sink, shown).await;
            }
            Some(PolicyInput::News(n)) => {
                if let Some(n) = policy.on_news(n, local_time()) {
                    deliver_all(&sink, vec![n]).await;
                }
            }
            Some(PolicyInput::Config(config)) => policy.set_config(config),
        }
    }
    let rest = policy.flush(local_time());
    deliver_all(&sink, rest).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

async fn deliver_all(sink: &Arc<dyn NotificationSink>, notifications: Vec<Notification>) {
    if notifications.is_empty() {
        return;
    }
    let sink = Arc::clone(sink);
    // Desktop delivery is a blocking D-Bus round trip.
    let delivered = tokio::task::spawn_blocking(move || {
        for n in &notifications {
            if let Err(error) = sink.deliver(n) {
                tracing::warn!(%error, "notification not shown");
            }
        }
    })
    .await;
    if let Err(error) = delivered {
        tracing::warn!(%error, "notification delivery task failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::time;

    fn note(cap: &str, added: &[&str]) -> ChangeNote {
        ChangeNote {
            cap_id: cap.to_owned(),
            label: "Team Docs".to_owned(),
            summary: format!("Team Docs: added {}", added.join(", ")),
            body: String::new(),
            added: added.iter().map(|s| (*s).to_owned()).collect(),
            modified: Vec::new(),
            removed: Vec::new(),
            target: Some(format!("change:{}", added.join(","))),
        }
    }

    const NOON: Time = time!(12:00);

    fn news(summary: &str, urgency: Urgency) -> Notification {
        Notification {
            summary: summary.into(),
            body: String::new(),
            urgency,
            target: None,
            replace_key: None,
        }
    }

    const TEN: [&str; 10] = [
        "a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt", "g.txt", "h.txt", "i.txt", "j.txt",
    ];

    #[test]
    fn markup_in_a_summary_cannot_restyle_the_notification() {
        assert_eq!(
            neutralize_markup("Docs: added </b><u>x</u> & more"),
            "Docs: added \u{2039}/b\u{203A}\u{2039}u\u{203A}x\u{2039}/u\u{203A} \u{FF06} more"
        );
        assert_eq!(escape_markup("a <b> & c"), "a &lt;b&gt; &amp; c");
    }

    #[test]
    fn a_single_change_is_shown_at_once_and_its_window_ends_silently() {
        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig::default());
        let out = p.on_change(note("a", &["x.txt"]), t0, NOON);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].summary, "Team Docs: added x.txt");
        assert_eq!(out[0].target.as_deref(), Some("change:x.txt"));
        assert_eq!(out[0].urgency, Urgency::Normal);
        assert_eq!(out[0].replace_key.as_deref(), Some("cap:a"));
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert!(p.poll(t0 + Duration::from_millis(1999), NOON).is_empty());
        assert!(p.poll(t0 + Duration::from_secs(2), NOON).is_empty());
        assert_eq!(p.next_deadline(), None);
        // The window is over: the next change is shown at once again.
        let out = p.on_change(note("a", &["y.txt"]), t0 + Duration::from_secs(3), NOON);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].summary, "Team Docs: added y.txt");
    }

    #[test]
    fn a_burst_is_the_first_change_at_once_then_one_coalesced_replacement() {
        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig::default());
        let mut at_once = Vec::new();
        for (i, name) in TEN.iter().enumerate() {
            let now = t0 + Duration::from_millis(100 * i as u64);
            at_once.extend(p.on_change(note("docs", &[name]), now, NOON));
        }
        // Another cap's change is separate, and shown at once too.
        at_once.extend(p.on_change(note("other", &["z"]), t0 + Duration::from_millis(50), NOON));
        let summaries: Vec<&str> = at_once.iter().map(|n| n.summary.as_str()).collect();
        assert_eq!(
            summaries,
            ["Team Docs: added a.txt", "Team Docs: added z"],
            "only each cap's first change is shown at once"
        );
        // "other" had one change: its window ends 2 s after it, silently.
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(2050)));
        assert!(p.poll(t0 + Duration::from_millis(2050), NOON).is_empty());
        let last = t0 + Duration::from_millis(900);
        assert_eq!(p.next_deadline(), Some(last + Duration::from_secs(2)));
        assert!(p.poll(last + Duration::from_millis(1999), NOON).is_empty());
        let out = p.poll(last + Duration::from_secs(2), NOON);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].summary,
            "Team Docs: 10 changes — added a.txt, b.txt, 8 more"
        );
        assert_eq!(out[0].replace_key, at_once[0].replace_key);
        assert_eq!(out[0].target.as_deref(), Some("change:j.txt"), "the newest");
        assert_eq!(out[0].body.lines().count(), 10);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn a_burst_that_never_pauses_is_still_reported() {
        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig::default());
        let mut shown = Vec::new();
        for i in 0..30u64 {
            let now = t0 + Duration::from_secs(i) / 2;
            shown.extend(p.poll(now, NOON));
            shown.extend(p.on_change(note("docs", &[&format!("f{i}")]), now, NOON));
        }
        let summaries: Vec<&str> = shown.iter().map(|n| n.summary.as_str()).collect();
        // f0 at once; at 10 s the window (f0..f19) ends as it reaches the longest delay, and
        // f20 opens the next one.
        assert_eq!(summaries.len(), 3, "{summaries:?}");
        assert_eq!(summaries[0], "Team Docs: added f0");
        assert!(
            summaries[1].starts_with("Team Docs: 20 changes — added f0, f1, 18 more"),
            "{summaries:?}"
        );
        assert_eq!(summaries[2], "Team Docs: added f20");
        let rest = p.flush(NOON);
        assert_eq!(rest.len(), 1);
        assert!(
            rest[0]
                .summary
                .starts_with("Team Docs: 10 changes — added f20, f21, 8 more"),
            "{}",
            rest[0].summary
        );
    }

    #[test]
    fn a_due_window_is_reported_before_the_next_change() {
        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig::default());
        p.on_change(note("d", &["a"]), t0, NOON);
        p.on_change(note("d", &["b"]), t0 + Duration::from_millis(100), NOON);
        // Nobody polled at the deadline (2.1 s); a change at 5 s first ends the old window.
        let out = p.on_change(note("d", &["c"]), t0 + Duration::from_secs(5), NOON);
        let summaries: Vec<&str> = out.iter().map(|n| n.summary.as_str()).collect();
        assert_eq!(
            summaries,
            ["Team Docs: 2 changes — added a, b", "Team Docs: added c"]
        );
    }

    #[test]
    fn mixed_and_file_bursts() {
        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig::default());
        let mut n = note("d", &["new.txt"]);
        n.removed = vec!["old.txt".into(), "older.txt".into()];
        p.on_change(n, t0, NOON);
        p.on_change(
            note("d", &["new.txt"]),
            t0 + Duration::from_millis(10),
            NOON,
        );
        let out = p.poll(t0 + Duration::from_secs(3), NOON);
        assert_eq!(
            out[0].summary,
            "Team Docs: 2 changes — added new.txt, removed old.txt, 1 more"
        );

        let file = |size: &str| ChangeNote {
            cap_id: "f".into(),
            label: "Notes".into(),
            summary: format!("Notes: changed, now {size}"),
            body: String::new(),
            added: vec![],
            modified: vec![],
            removed: vec![],
            target: None,
        };
        let first = p.on_change(file("1.0 kB"), t0, NOON);
        assert_eq!(first[0].summary, "Notes: changed, now 1.0 kB");
        p.on_change(file("2.0 kB"), t0 + Duration::from_millis(500), NOON);
        p.on_change(file("3.0 kB"), t0 + Duration::from_millis(900), NOON);
        let out = p.poll(t0 + Duration::from_secs(3), NOON);
        assert_eq!(
            out[0].summary,
            "Notes: 3 changes — latest: changed, now 3.0 kB"
        );
        assert_eq!(out[0].replace_key.as_deref(), Some("cap:f"));
    }

    #[test]
    fn muted_caps_and_news_only_drop_changes() {
        let t0 = Instant::now();
        let mut config = PolicyConfig::default();
        config.muted_caps.insert("muted".into());
        let mut p = NotificationPolicy::new(config.clone());
        assert!(p.on_change(note("muted", &["x"]), t0, NOON).is_empty());
        assert_eq!(p.on_change(note("loud", &["y"]), t0, NOON).len(), 1);
        p.on_change(note("loud", &["y2"]), t0, NOON);

        // Muting a cap mid-burst drops its pending coalesced notification.
        config.muted_caps.insert("loud".into());
        p.set_config(config.clone());
        assert_eq!(p.next_deadline(), None);
        assert!(p.flush(NOON).is_empty());

        config.muted_caps.clear();
        config.news_only = true;
        p.set_config(config);
        assert!(p.on_change(note("loud", &["y"]), t0, NOON).is_empty());
        assert_eq!(p.next_deadline(), None);
        let n = news("Grid: maintenance", Urgency::Normal);
        assert_eq!(p.on_news(n.clone(), NOON), Some(n));
    }

    #[test]
    fn quiet_hours_hold_back_all_but_critical() {
        let quiet = QuietHours {
            start: time!(22:00),
            end: time!(07:00),
        };
        assert!(quiet.contains(time!(23:30)));
        assert!(quiet.contains(time!(00:00)));
        assert!(quiet.contains(time!(06:59)));
        assert!(!quiet.contains(time!(07:00)));
        assert!(!quiet.contains(time!(12:00)));
        let day = QuietHours {
            start: time!(12:00),
            end: time!(13:00),
        };
        assert!(day.contains(time!(12:30)) && !day.contains(time!(13:30)));

        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig {
            quiet_hours: Some(quiet),
            ..PolicyConfig::default()
        });
        assert!(p.on_change(note("a", &["x"]), t0, time!(23:00)).is_empty());
        p.on_change(note("a", &["y"]), t0, time!(23:00));
        assert!(p.poll(t0 + Duration::from_secs(5), time!(23:00)).is_empty());
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.on_change(note("a", &["x"]), later, time!(08:00)).len(), 1);
        // A burst that began in quiet hours and ends after them is shown when it ends.
        let t1 = t0 + Duration::from_secs(20);
        assert!(p.on_change(note("b", &["x"]), t1, time!(06:59)).is_empty());
        p.on_change(note("b", &["y"]), t1, time!(06:59));
        assert_eq!(p.poll(t1 + Duration::from_secs(5), time!(07:00)).len(), 1);

        assert_eq!(
            p.on_news(news("Grid: outage", Urgency::Normal), time!(23:00)),
            None
        );
        assert!(p
            .on_news(news("Grid: outage", Urgency::Critical), time!(23:00))
            .is_some());
    }

    #[test]
    fn severity_to_urgency() {
        assert_eq!(Urgency::from(Severity::Info), Urgency::Normal);
        assert_eq!(Urgency::from(Severity::Warning), Urgency::Normal);
        assert_eq!(Urgency::from(Severity::Critical), Urgency::Critical);
    }

    #[test]
    fn recording_sink_keeps_sanitized_notifications() {
        let sink = RecordingSink::new();
        let id = sink
            .deliver(&Notification {
                summary: "Docs: added\nURI:DIR2:abc:def\u{202E}".into(),
                body: "see /uri/URI:DIR2:abc:def/x and pb://x@y/z".into(),
                urgency: Urgency::Low,
                target: Some("change:1".into()),
                replace_key: None,
            })
            .unwrap();
        assert_eq!(id, DeliveredId(1));
        let got = sink.take();
        assert_eq!(got[0].summary, "Docs: added <cap>");
        assert_eq!(got[0].body, "see /uri/<cap> and <nurl>");
        assert!(sink.delivered().is_empty());
    }

    #[test]
    fn recording_sink_replaces_by_key() {
        let sink = RecordingSink::new();
        let keyed = |summary: &str, key: Option<&str>| Notification {
            summary: summary.into(),
            body: String::new(),
            urgency: Urgency::Normal,
            target: None,
            replace_key: key.map(str::to_owned),
        };
        let a = sink
            .deliver(&keyed("Docs: added a", Some("cap:1")))
            .unwrap();
        let b = sink
            .deliver(&keyed("Notes: changed", Some("cap:2")))
            .unwrap();
        let news = sink.deliver(&keyed("Grid: news", None)).unwrap();
        let a2 = sink
            .deliver(&keyed("Docs: 2 changes — added a, b", Some("cap:1")))
            .unwrap();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(b, news);
        assert_eq!(sink.shown().len(), 3);
        let replaced = sink.replacements();
        assert_eq!(replaced.len(), 1);
        assert_eq!(replaced[0].summary, "Docs: 2 changes — added a, b");
        let screen: Vec<String> = sink.on_screen().into_iter().map(|n| n.summary).collect();
        assert_eq!(
            screen,
            [
                "Docs: 2 changes — added a, b",
                "Notes: changed",
                "Grid: news"
            ]
        );
        assert_eq!(sink.records()[3].id, a);
        assert!(sink.records()[3].replaced);
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            classify_error("org.freedesktop.DBus.Error.ServiceUnknown: The name org.freedesktop.Notifications was not provided by any .service files"),
            NotifyError::NoDaemon(_)
        ));
        let e = NotifyError::NoDaemon("x".into());
        assert_eq!(
            e.to_string(),
            "no notification daemon on the session bus: x"
        );
        assert_eq!(escape_markup("<b>a&b</b>"), "&lt;b&gt;a&amp;b&lt;/b&gt;");
    }

    #[test]
    fn notes_from_descriptions() {
        let d = ChangeDescription {
            summary: "Docs: added a, 1 more".into(),
            body: String::new(),
            details_json: serde_json::json!({"added": ["a", "b"], "removed": [], "modified": ["c"]}),
            while_away: false,
        };
        let n = ChangeNote::from_description("cap-1", "Docs", &d, Some("change:7".into()));
        assert_eq!(n.added, vec!["a", "b"]);
        assert_eq!(n.modified, vec!["c"]);
        assert!(n.removed.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_runner_shows_the_first_change_at_once_and_replaces_it_with_the_burst() {
        let sink = Arc::new(RecordingSink::new());
        let (tx, rx) = mpsc::channel(16);
        let runner = tokio::spawn(run_policy(
            NotificationPolicy::new(PolicyConfig::default()),
            rx,
            sink.clone() as Arc<dyn NotificationSink>,
            UtcOffset::UTC,
        ));
        tx.send(PolicyInput::Change(note("d", &["a"])))
            .await
            .unwrap();
        // Delivery runs on the blocking pool: give it real time, not paused time.
        let mut waited = 0;
        while sink.delivered().is_empty() && waited < 500 {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(2));
            waited += 1;
        }
        let started = tokio::time::Instant::now();
        assert_eq!(sink.shown().len(), 1, "shown at once");
        assert_eq!(started.elapsed(), Duration::ZERO, "no timer ran before it");
        for name in ["b", "c"] {
            tx.send(PolicyInput::Change(note("d", &[name])))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(tx);
        runner.await.unwrap();
        let records = sink.records();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[0].notification.summary, "Team Docs: added a");
        assert!(!records[0].replaced);
        assert_eq!(
            records[1].notification.summary,
            "Team Docs: 3 changes — added a, b, 1 more"
        );
        assert!(records[1].replaced);
        assert_eq!(records[1].id, records[0].id);
    }
}
