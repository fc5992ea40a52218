//! Which notifications are shown, when: mute, quiet hours, news only, coalescing; and the
//! task that drives the policy with real time.

use super::*;

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
    /// The user paused notifications until then (the tray's "Pause"): held back as during
    /// Do-Not-Disturb, and summed up once when it ends.
    pub paused_until: Option<OffsetDateTime>,
    /// Caps muted for a while ("Mute for 2 hours" on a notification), until then.
    pub muted_until: HashMap<String, OffsetDateTime>,
    /// When each kind of notification is shown.
    pub alerts: AlertSettings,
}

/// When a kind of notification is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alert {
    /// Even during Do-Not-Disturb or a pause.
    Always,
    /// Unless the desktop's Do-Not-Disturb is on or the user paused notifications: what is
    /// held back is recorded, and summed up in one notification when it ends.
    #[default]
    FollowDnd,
    /// Never: recorded in the history only.
    Never,
}

/// When each kind of notification is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertSettings {
    /// Changes of watched caps.
    #[serde(default)]
    pub changes: Alert,
    /// News that is not critical.
    #[serde(default)]
    pub news: Alert,
    /// Critical news (an operator's "maintenance now"): shown even during Do-Not-Disturb by
    /// default.
    #[serde(default = "always")]
    pub critical_news: Alert,
}

fn always() -> Alert {
    Alert::Always
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            changes: Alert::FollowDnd,
            news: Alert::FollowDnd,
            critical_news: Alert::Always,
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            muted_caps: HashSet::new(),
            quiet_hours: None,
            news_only: false,
            coalesce_window: DEFAULT_COALESCE_WINDOW,
            max_burst_delay: DEFAULT_MAX_BURST_DELAY,
            paused_until: None,
            muted_until: HashMap::new(),
            alerts: AlertSettings::default(),
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
    /// Only that the cap changed, told early because its details wait their turn
    /// ([`crate::engine::spread`]): the described change replaces it, and it is never counted.
    pub early: bool,
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
            early: false,
        }
    }

    /// That `cap_id` changed, before its details are fetched `wait` from now.
    pub fn early(cap_id: &str, label: &str, wait: Duration) -> ChangeNote {
        ChangeNote {
            cap_id: cap_id.to_owned(),
            label: label.to_owned(),
            summary: format!("{label} changed"),
            body: format!(
                "What changed follows in about {} s: many people watch it, so their fetches take turns.",
                wait.as_secs().max(1)
            ),
            added: Vec::new(),
            modified: Vec::new(),
            removed: Vec::new(),
            target: Some("activity".to_owned()),
            early: true,
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
    /// Why notifications that follow Do-Not-Disturb are held back now, if they are.
    silence: Silence,
    /// What was held back during the current silence.
    held: Held,
}

/// Why notifications are held back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Silence {
    /// The desktop's Do-Not-Disturb is on.
    dnd: bool,
    /// The user paused notifications.
    paused: bool,
}

impl Silence {
    fn on(self) -> bool {
        self.dnd || self.paused
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Held {
    changes: usize,
    news: usize,
    /// Whether Do-Not-Disturb was part of it (the summary says which).
    dnd: bool,
}

impl NotificationPolicy {
    /// A policy with `config`.
    pub fn new(config: PolicyConfig) -> NotificationPolicy {
        NotificationPolicy {
            config,
            windows: Vec::new(),
            silence: Silence::default(),
            held: Held::default(),
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
        if note.early {
            return self.on_early_change(&note, now, local_time);
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

    /// An early notice opens no window and is never held back for a summary: the described
    /// change that follows does both, and replaces the notice on the desktop (same key). In an
    /// open window it says nothing the window will not.
    fn on_early_change(
        &mut self,
        note: &ChangeNote,
        now: Instant,
        local_time: Time,
    ) -> Vec<Notification> {
        if self.silence.on() && self.config.alerts.changes != Alert::Always {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(i) = self.windows.iter().position(|w| w.cap_id == note.cap_id) {
            if self.deadline(&self.windows[i]) > now {
                return out;
            }
            let due = self.windows.remove(i);
            out.extend(self.emit(vec![due], local_time));
        }
        let shown = alone(note);
        if self.allowed(&shown, local_time) {
            out.push(shown);
        }
        out
    }

    /// A news message to show: returned at once unless quiet hours, Do-Not-Disturb or a pause
    /// hold it back (critical news is shown by default even then).
    pub fn on_news(&mut self, n: Notification, local_time: Time) -> Option<Notification> {
        self.allowed(&n, local_time).then_some(n)
    }

    /// The desktop's Do-Not-Disturb went on or off. Returns the one notification that sums up
    /// what was held back, when the silence ends with something held.
    pub fn set_do_not_disturb(&mut self, on: bool) -> Option<Notification> {
        let silence = Silence {
            dnd: on,
            ..self.silence
        };
        self.set_silence(silence)
    }

    /// The user's pause began or ended; as [`NotificationPolicy::set_do_not_disturb`].
    pub fn set_paused(&mut self, paused: bool) -> Option<Notification> {
        let silence = Silence {
            paused,
            ..self.silence
        };
        self.set_silence(silence)
    }

    fn set_silence(&mut self, silence: Silence) -> Option<Notification> {
        let was_on = self.silence.on();
        self.silence = silence;
        if silence.dnd {
            self.held.dnd = true;
        }
        if was_on && !silence.on() {
            let held = std::mem::take(&mut self.held);
            return held_summary(held);
        }
        None
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
    fn emit(&mut self, windows: Vec<Window>, local_time: Time) -> Vec<Notification> {
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

    /// Whether `n` is shown now. A change or news item held back by Do-Not-Disturb or a pause
    /// is counted for the summary when it ends; quiet hours and "never" drop it quietly (the
    /// history has it either way).
    fn allowed(&mut self, n: &Notification, local_time: Time) -> bool {
        let is_change = n
            .replace_key
            .as_deref()
            .is_some_and(|k| k.starts_with("cap:"));
        let alert = match (is_change, n.urgency) {
            (true, _) => self.config.alerts.changes,
            (false, Urgency::Critical) => self.config.alerts.critical_news,
            (false, _) => self.config.alerts.news,
        };
        match alert {
            Alert::Never => return false,
            Alert::Always => return true,
            Alert::FollowDnd => {}
        }
        if n.urgency != Urgency::Critical
            && self
                .config
                .quiet_hours
                .is_some_and(|q| q.contains(local_time))
        {
            return false;
        }
        if self.silence.on() {
            if is_change {
                self.held.changes += 1;
            } else {
                self.held.news += 1;
            }
            tracing::debug!("notification held back by Do-Not-Disturb or a pause");
            return false;
        }
        true
    }
}

/// "3 changes and 1 news item while Do Not Disturb was on": what a silence held back.
fn held_summary(held: Held) -> Option<Notification> {
    let mut parts = Vec::new();
    match held.changes {
        0 => {}
        1 => parts.push("1 change".to_owned()),
        n => parts.push(format!("{n} changes")),
    }
    match held.news {
        0 => {}
        1 => parts.push("1 news item".to_owned()),
        n => parts.push(format!("{n} news items")),
    }
    if parts.is_empty() {
        return None;
    }
    let why = if held.dnd {
        "while Do Not Disturb was on"
    } else {
        "while notifications were paused"
    };
    Some(Notification {
        summary: format!("{} {why}", parts.join(" and ")),
        body: "They are in the history, unread.".to_owned(),
        urgency: Urgency::Normal,
        target: Some("activity".to_owned()),
        replace_key: None,
    })
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
    /// The desktop's Do-Not-Disturb went on (`true`) or off.
    DoNotDisturb(bool),
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
        // The pause is wall-clock time: look at it before every step, and wake when it ends.
        let wall = OffsetDateTime::now_utc();
        let paused_until = policy.config().paused_until.filter(|until| wall < *until);
        if let Some(summary) = policy.set_paused(paused_until.is_some()) {
            deliver_all(&sink, vec![summary]).await;
        }
        let pause_ends = paused_until.map(|until| {
            let left = (until - wall).try_into().unwrap_or(Duration::ZERO);
            now() + left
        });
        let deadline = match (policy.next_deadline(), pause_ends) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
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
                let muted_for_now = policy
                    .config()
                    .muted_until
                    .get(&note.cap_id)
                    .is_some_and(|until| wall < *until);
                if muted_for_now {
                    tracing::debug!("change not notified (muted for a while)");
                    continue;
                }
                let shown = policy.on_change(note, now(), local_time());
                deliver_all(&sink, shown).await;
            }
            Some(PolicyInput::News(n)) => {
                if let Some(n) = policy.on_news(n, local_time()) {
                    deliver_all(&sink, vec![n]).await;
                }
            }
            Some(PolicyInput::Config(config)) => policy.set_config(config),
            Some(PolicyInput::DoNotDisturb(on)) => {
                if let Some(summary) = policy.set_do_not_disturb(on) {
                    deliver_all(&sink, vec![summary]).await;
                }
            }
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
