//! A sink that keeps notifications in memory (tests, `watch --no-desktop`).

use super::*;

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
