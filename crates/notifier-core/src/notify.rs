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

use std::collections::HashSet;
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
#[derive(Clone, Default)]
pub struct DesktopSink {
    on_open: Option<OpenHandler>,
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
        }
    }
}

impl NotificationSink for DesktopSink {
    fn deliver(&self, n: &Notification) -> Result<DeliveredId, NotifyError> {
        let n = sanitized(n);
        let mut desktop = notify_rust::Notification::new();
        desktop
            .appname(APP_NAME)
            .summary(&n.summary)
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
        let handle = desktop.show().map_err(|e| classify_error(&e.to_string()))?;
        let id = DeliveredId(handle.id());
        tracing::debug!(id = id.0, "desktop notification shown");
        if let (Some(on_open), Some(target)) = (&self.on_open, n.target) {
            let on_open = Arc::clone(on_open);
            // wait_for_action blocks until the notification is clicked or closed.
            let spawned = std::thread::Builder::new()
                .name("notification-action".to_owned())
                .spawn(move || {
                    handle.wait_for_action(|action| {
                        if action == DEFAULT_ACTION {
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

/// The notification as shown: one clean summary line, a bounded body, no caps.
fn sanitized(n: &Notification) -> Notification {
    let body = crate::text::clean_multiline(&redact_caps(&n.body));
    Notification {
        summary: clean_line(&redact_caps(&n.summary), MAX_SUMMARY_CHARS),
        body: crate::text::truncate_chars(body.trim(), MAX_BODY_CHARS),
        urgency: n.urgency,
        target: n.target.clone(),
    }
}

/// Keeps every notification in memory instead of showing it. For tests and headless use
/// (`watch --no-desktop` prints them).
#[derive(Debug, Default)]
pub struct RecordingSink {
    delivered: Mutex<Vec<Notification>>,
}

impl RecordingSink {
    /// An empty sink.
    pub fn new() -> RecordingSink {
        RecordingSink::default()
    }

    /// Everything delivered so far, oldest first (as shown: sanitized).
    pub fn delivered(&self) -> Vec<Notification> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Removes and returns everything delivered so far.
    pub fn take(&self) -> Vec<Notification> {
        std::mem::take(
            &mut *self
                .delivered
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

impl NotificationSink for RecordingSink {
    fn deliver(&self, n: &Notification) -> Result<DeliveredId, NotifyError> {
        let mut delivered = self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        delivered.push(sanitized(n));
        Ok(DeliveredId(
            u32::try_from(delivered.len()).unwrap_or(u32::MAX),
        ))
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

#[derive(Debug)]
struct Burst {
    cap_id: String,
    first_at: Instant,
    last_at: Instant,
    notes: Vec<ChangeNote>,
}

/// Which notifications are shown, and when: a state machine over explicit times.
///
/// Feed it with [`NotificationPolicy::on_change`] and [`NotificationPolicy::on_news`], and call
/// [`NotificationPolicy::poll`] at [`NotificationPolicy::next_deadline`] (or any time later) to
/// get the coalesced change notifications that are due.
///
/// A change waits for [`PolicyConfig::coalesce_window`] of quiet on its cap (at most
/// [`PolicyConfig::max_burst_delay`] after the burst's first change); then the burst becomes
/// one notification. Mute and "news only" drop changes as they arrive; quiet hours are applied
/// when a notification is due, and drop all but critical ones (the history has them all).
#[derive(Debug)]
pub struct NotificationPolicy {
    config: PolicyConfig,
    /// Pending bursts, oldest first; at most one per cap is still open (not yet due).
    bursts: Vec<Burst>,
}

impl NotificationPolicy {
    /// A policy with `config`.
    pub fn new(config: PolicyConfig) -> NotificationPolicy {
        NotificationPolicy {
            config,
            bursts: Vec::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Replaces the configuration; pending bursts of caps now muted (or all, in news-only
    /// mode) are dropped.
    pub fn set_config(&mut self, config: PolicyConfig) {
        self.config = config;
        let news_only = self.config.news_only;
        let muted = &self.config.muted_caps;
        self.bursts
            .retain(|b| !news_only && !muted.contains(&b.cap_id));
    }

    /// A change happened at `now`. It is held for coalescing (or dropped when muted or in
    /// news-only mode); nothing is due at once.
    pub fn on_change(&mut self, note: ChangeNote, now: Instant) {
        if self.config.news_only || self.config.muted_caps.contains(&note.cap_id) {
            tracing::debug!(cap = %note.cap_id, "change not notified (muted or news only)");
            return;
        }
        // Join the cap's open burst; a burst already due is not extended (poll reports it).
        let open = self
            .bursts
            .iter()
            .position(|b| b.cap_id == note.cap_id && self.deadline(b) > now);
        match open {
            Some(i) => {
                let burst = &mut self.bursts[i];
                burst.last_at = burst.last_at.max(now);
                burst.notes.push(note);
            }
            None => self.bursts.push(Burst {
                cap_id: note.cap_id.clone(),
                first_at: now,
                last_at: now,
                notes: vec![note],
            }),
        }
    }

    /// A news message to show: returned at once unless quiet hours hold it back (critical news
    /// is always shown).
    pub fn on_news(&self, n: Notification, local_time: Time) -> Option<Notification> {
        self.allowed(&n, local_time).then_some(n)
    }

    /// The change notifications due at `now`, oldest burst first, after quiet hours at
    /// `local_time`.
    pub fn poll(&mut self, now: Instant, local_time: Time) -> Vec<Notification> {
        let (mut due, pending): (Vec<Burst>, Vec<Burst>) = std::mem::take(&mut self.bursts)
            .into_iter()
            .partition(|b| self.deadline(b) <= now);
        self.bursts = pending;
        due.sort_by_key(|b| b.first_at);
        self.emit(due, local_time)
    }

    /// Everything pending, due or not (at shutdown).
    pub fn flush(&mut self, local_time: Time) -> Vec<Notification> {
        let mut bursts = std::mem::take(&mut self.bursts);
        bursts.sort_by_key(|b| b.first_at);
        self.emit(bursts, local_time)
    }

    /// When [`NotificationPolicy::poll`] next has something to return, if anything is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.bursts.iter().map(|b| self.deadline(b)).min()
    }

    fn deadline(&self, burst: &Burst) -> Instant {
        let quiet_end = burst.last_at + self.config.coalesce_window;
        let latest = burst.first_at + self.config.max_burst_delay;
        quiet_end.min(latest)
    }

    fn emit(&self, bursts: Vec<Burst>, local_time: Time) -> Vec<Notification> {
        bursts
            .into_iter()
            .filter_map(|b| coalesce(b.notes))
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

/// One notification for a burst of changes to one cap.
fn coalesce(mut notes: Vec<ChangeNote>) -> Option<Notification> {
    if notes.len() <= 1 {
        let note = notes.pop()?;
        return Some(Notification {
            summary: note.summary,
            body: note.body,
            urgency: Urgency::Normal,
            target: note.target,
        });
    }
    let first = notes.first()?;
    let label = clean_line(&first.label, 60);
    let target = first.target.clone();
    let count = notes.len();
    // Names in order of appearance, each once per verb.
    let mut groups: Vec<(&str, Vec<String>)> = vec![
        ("added", Vec::new()),
        ("modified", Vec::new()),
        ("removed", Vec::new()),
    ];
    for note in &notes {
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
            Some(PolicyInput::Change(note)) => policy.on_change(note, now()),
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

    #[test]
    fn a_single_change_is_shown_after_the_window() {
        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig::default());
        p.on_change(note("a", &["x.txt"]), t0);
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert!(p.poll(t0 + Duration::from_millis(1999), NOON).is_empty());
        let out = p.poll(t0 + Duration::from_secs(2), NOON);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].summary, "Team Docs: added x.txt");
        assert_eq!(out[0].target.as_deref(), Some("change:x.txt"));
        assert_eq!(out[0].urgency, Urgency::Normal);
        assert_eq!(p.next_deadline(), None);
        assert!(p.poll(t0 + Duration::from_secs(10), NOON).is_empty());
    }

    #[test]
    fn a_burst_becomes_one_notification() {
        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig::default());
        let names = [
            "a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt", "g.txt", "h.txt", "i.txt",
            "j.txt",
        ];
        for (i, name) in names.iter().enumerate() {
            p.on_change(
                note("docs", &[name]),
                t0 + Duration::from_millis(100 * i as u64),
            );
        }
        // Another cap's change is separate.
        p.on_change(note("other", &["z"]), t0 + Duration::from_millis(50));
        let last = t0 + Duration::from_millis(900);
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(2050)));
        let out = p.poll(last + Duration::from_secs(2), NOON);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].summary,
            "Team Docs: 10 changes — added a.txt, b.txt, 8 more"
        );
        assert_eq!(out[0].target.as_deref(), Some("change:a.txt"));
        assert_eq!(out[0].body.lines().count(), 10);
        assert_eq!(out[1].summary, "Team Docs: added z");
    }

    #[test]
    fn a_burst_that_never_pauses_is_still_reported() {
        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig::default());
        let mut shown = Vec::new();
        for i in 0..30u64 {
            let now = t0 + Duration::from_secs(i) / 2;
            shown.extend(p.poll(now, NOON));
            p.on_change(note("docs", &[&format!("f{i}")]), now);
        }
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0]
                .summary
                .starts_with("Team Docs: 20 changes — added f0, f1, 18 more"),
            "{}",
            shown[0].summary
        );
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
    fn mixed_and_file_bursts() {
        let t0 = Instant::now();
        let mut p = NotificationPolicy::new(PolicyConfig::default());
        let mut n = note("d", &["new.txt"]);
        n.removed = vec!["old.txt".into(), "older.txt".into()];
        p.on_change(n, t0);
        p.on_change(note("d", &["new.txt"]), t0 + Duration::from_millis(10));
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
        p.on_change(file("1.0 kB"), t0);
        p.on_change(file("2.0 kB"), t0 + Duration::from_millis(500));
        p.on_change(file("3.0 kB"), t0 + Duration::from_millis(900));
        let out = p.poll(t0 + Duration::from_secs(3), NOON);
        assert_eq!(
            out[0].summary,
            "Notes: 3 changes — latest: changed, now 3.0 kB"
        );
    }

    #[test]
    fn muted_caps_and_news_only_drop_changes() {
        let t0 = Instant::now();
        let mut config = PolicyConfig::default();
        config.muted_caps.insert("muted".into());
        let mut p = NotificationPolicy::new(config.clone());
        p.on_change(note("muted", &["x"]), t0);
        p.on_change(note("loud", &["y"]), t0);
        assert_eq!(p.flush(NOON).len(), 1);

        config.news_only = true;
        p.set_config(config);
        p.on_change(note("loud", &["y"]), t0);
        assert_eq!(p.next_deadline(), None);
        let news = Notification {
            summary: "Grid: maintenance".into(),
            body: String::new(),
            urgency: Urgency::Normal,
            target: None,
        };
        assert_eq!(p.on_news(news.clone(), NOON), Some(news));
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
        p.on_change(note("a", &["x"]), t0);
        assert!(p.poll(t0 + Duration::from_secs(5), time!(23:00)).is_empty());
        p.on_change(note("a", &["x"]), t0);
        assert_eq!(p.poll(t0 + Duration::from_secs(5), time!(08:00)).len(), 1);

        let mut news = Notification {
            summary: "Grid: outage".into(),
            body: String::new(),
            urgency: Urgency::Normal,
            target: None,
        };
        assert_eq!(p.on_news(news.clone(), time!(23:00)), None);
        news.urgency = Urgency::Critical;
        assert!(p.on_news(news, time!(23:00)).is_some());
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
            })
            .unwrap();
        assert_eq!(id, DeliveredId(1));
        let got = sink.take();
        assert_eq!(got[0].summary, "Docs: added <cap>");
        assert_eq!(got[0].body, "see /uri/<cap> and <nurl>");
        assert!(sink.delivered().is_empty());
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
    async fn the_runner_coalesces_with_real_timers() {
        let sink = Arc::new(RecordingSink::new());
        let (tx, rx) = mpsc::channel(16);
        let runner = tokio::spawn(run_policy(
            NotificationPolicy::new(PolicyConfig::default()),
            rx,
            sink.clone() as Arc<dyn NotificationSink>,
            UtcOffset::UTC,
        ));
        for name in ["a", "b", "c"] {
            tx.send(PolicyInput::Change(note("d", &[name])))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(tx);
        runner.await.unwrap();
        let got = sink.delivered();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].summary, "Team Docs: 3 changes — added a, b, 1 more");
    }
}
