//! Desktop notifications through the freedesktop notification service
//! (`org.freedesktop.Notifications` on the session bus), with actions.
//!
//! Written over zbus rather than through notify-rust: notify-rust opens a new session
//! connection for every notification and waits for its actions on a thread of its own until the
//! notification closes, so a user who never dismisses them piles up connections and threads
//! (the review's finding 9), and it offers no way to share one. The protocol is three calls
//! (`GetCapabilities`, `Notify`, `CloseNotification`) and two signals (`ActionInvoked`,
//! `NotificationClosed`): one connection and one listener serve every notification here, and
//! what is remembered of shown notifications is bounded.

use std::collections::VecDeque;
use std::sync::mpsc as std_mpsc;

use futures_util::StreamExt as _;
use zbus::zvariant::Value;

use super::*;

/// Action keys offered on a notification (the `default` key is a click on it).
const ACTION_OPEN: &str = "open";
const ACTION_MARK_READ: &str = "mark-read";
const ACTION_MUTE: &str = "mute-2h";

/// How long "Mute for 2 hours" mutes.
pub const MUTE_FOR: Duration = Duration::from_secs(2 * 3600);

/// Shown notifications remembered for their actions; older ones no longer answer.
const REMEMBERED: usize = 256;

/// What the user asked of a notification through one of its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationAction {
    /// A click, or "Open": show this history item (e.g. `change:42`, `news:Grid:msg`).
    Open {
        /// The item.
        target: String,
    },
    /// "Mark read": the item, and the cap's other unread changes when it is a cap's.
    MarkRead {
        /// The item.
        target: String,
        /// The cap the notification is about, if any.
        cap_id: Option<String>,
    },
    /// "Mute for 2 hours": the cap's changes are recorded but not notified for `duration`.
    Mute {
        /// The cap.
        cap_id: String,
        /// For how long.
        duration: Duration,
    },
}

/// What runs when the user invokes a notification's action. Called on the sink's own thread:
/// hand the work on, do not block.
pub type ActionHandler = Arc<dyn Fn(NotificationAction) + Send + Sync>;

#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications"
)]
trait Notifications {
    fn get_capabilities(&self) -> zbus::Result<Vec<String>>;

    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;
}

/// Desktop notifications through the freedesktop notification service.
///
/// Each [`NotificationSink::deliver`] is a D-Bus round trip of a few milliseconds on the sink's
/// own thread (it blocks the caller meanwhile; from async code call it in `spawn_blocking`, as
/// [`run_policy`] does). The thread, its one session connection and its one listener for the
/// daemon's signals start with the first notification. A notification with a
/// [`Notification::replace_key`] replaces the one this sink last showed with that key (clones
/// share that memory).
#[derive(Clone, Default)]
pub struct DesktopSink {
    on_action: Option<ActionHandler>,
    worker: Arc<Mutex<Option<std_mpsc::Sender<Request>>>>,
}

impl std::fmt::Debug for DesktopSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesktopSink")
            .field("on_action", &self.on_action.is_some())
            .finish_non_exhaustive()
    }
}

/// A notification to show, and where to say how it went.
struct Request {
    notification: Notification,
    reply: std_mpsc::SyncSender<Result<DeliveredId, NotifyError>>,
}

/// What the sink's thread remembers of what it showed.
#[derive(Debug, Default)]
struct Shown {
    /// Replace key → the desktop id last shown with it.
    by_key: HashMap<String, u32>,
    /// Desktop id → what its actions act on (the content on screen now: a replacement
    /// overwrites it).
    actions: HashMap<u32, Acting>,
    /// Ids in the order they were shown, to forget the oldest.
    order: VecDeque<u32>,
}

#[derive(Debug, Clone)]
struct Acting {
    target: String,
    cap_id: Option<String>,
}

impl Shown {
    fn remember(&mut self, id: u32, acting: Acting) {
        if self.actions.insert(id, acting).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.actions.remove(&old);
                self.by_key.retain(|_, shown| *shown != old);
            }
        }
    }

    fn forget(&mut self, id: u32) {
        self.actions.remove(&id);
        self.order.retain(|shown| *shown != id);
        self.by_key.retain(|_, shown| *shown != id);
    }
}

impl DesktopSink {
    /// A sink whose notifications' actions nobody handles (they offer none).
    pub fn new() -> DesktopSink {
        DesktopSink::default()
    }

    /// A sink whose notifications offer "Open", "Mark read" and, for a cap's changes, "Mute for
    /// 2 hours" (where the daemon shows actions), and calls `on_action` when one is invoked.
    pub fn with_action_handler(on_action: ActionHandler) -> DesktopSink {
        DesktopSink {
            on_action: Some(on_action),
            worker: Arc::default(),
        }
    }

    /// The same with only a click handled: `on_open(target)`.
    pub fn with_open_handler(on_open: OpenHandler) -> DesktopSink {
        Self::with_action_handler(Arc::new(move |action| {
            if let NotificationAction::Open { target } = action {
                on_open(&target);
            }
        }))
    }

    /// The sender to the sink's thread, starting it (and its connection) if needed.
    fn worker(&self) -> Result<std_mpsc::Sender<Request>, NotifyError> {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = worker.as_ref() {
            return Ok(sender.clone());
        }
        let (sender, requests) = std_mpsc::channel::<Request>();
        let (ready_tx, ready) = std_mpsc::sync_channel(1);
        let on_action = self.on_action.clone();
        std::thread::Builder::new()
            .name("desktop-notifications".to_owned())
            .spawn(move || serve(requests, on_action, ready_tx))
            .map_err(|e| {
                NotifyError::Failed(format!("cannot start the notification thread: {e}"))
            })?;
        ready
            .recv()
            .map_err(|_| NotifyError::Failed("the notification thread ended".to_owned()))??;
        *worker = Some(sender.clone());
        Ok(sender)
    }
}

impl NotificationSink for DesktopSink {
    fn deliver(&self, n: &Notification) -> Result<DeliveredId, NotifyError> {
        let worker = self.worker()?;
        let (reply, answer) = std_mpsc::sync_channel(1);
        let sent = worker.send(Request {
            notification: n.clone(),
            reply,
        });
        if sent.is_err() {
            // The thread ended (its connection broke): start afresh next time.
            *self.worker.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return Err(NotifyError::Failed(
                "the notification connection was lost".to_owned(),
            ));
        }
        answer
            .recv()
            .map_err(|_| NotifyError::Failed("the notification thread ended".to_owned()))?
    }
}

/// The sink's thread: one connection, the daemon's capabilities, a listener for its signals,
/// and the requests in order until every sender is gone.
fn serve(
    requests: std_mpsc::Receiver<Request>,
    on_action: Option<ActionHandler>,
    ready: std_mpsc::SyncSender<Result<(), NotifyError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(NotifyError::Failed(e.to_string())));
            return;
        }
    };
    runtime.block_on(async move {
        let connection = match zbus::Connection::session().await {
            Ok(connection) => connection,
            Err(e) => {
                let _ = ready.send(Err(NotifyError::NoSessionBus(redact_caps(&e.to_string()))));
                return;
            }
        };
        let proxy = match NotificationsProxy::new(&connection).await {
            Ok(proxy) => proxy,
            Err(e) => {
                let _ = ready.send(Err(classify_error(&e.to_string())));
                return;
            }
        };
        let shown = Arc::new(Mutex::new(Shown::default()));
        let listening = match on_action {
            Some(handler) => listen(&connection, Arc::clone(&shown), handler).await,
            None => true,
        };
        if !listening {
            tracing::warn!("cannot listen for notification actions; clicks will do nothing");
        }
        let _ = ready.send(Ok(()));
        // Capabilities are asked lazily: the daemon may be activated by the first Notify.
        let mut actions_supported: Option<bool> = None;
        let (to_async, mut from_sync) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            while let Ok(request) = requests.recv() {
                if to_async.send(request).is_err() {
                    break;
                }
            }
        });
        while let Some(request) = from_sync.recv().await {
            let result = show(
                &proxy,
                &shown,
                &mut actions_supported,
                &request.notification,
            )
            .await;
            let _ = request.reply.send(result);
        }
    });
}

/// A stream of the daemon's signal `member`, matched by interface, path and member only: the
/// sender is not checked against the daemon's name, so that a test can send the very signal a
/// daemon sends (`dbus-send --type=signal`). Only the user's own processes reach the session
/// bus, and the worst a spoofed signal does is open the window, mark an item read or mute a cap
/// for two hours.
async fn signal_stream(
    connection: &zbus::Connection,
    member: &'static str,
) -> zbus::Result<zbus::MessageStream> {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.Notifications")?
        .path("/org/freedesktop/Notifications")?
        .member(member)?
        .build();
    zbus::MessageStream::for_match_rule(rule, connection, Some(64)).await
}

/// Listens for the daemon's `ActionInvoked` and `NotificationClosed` (one listener for every
/// notification) and turns actions into [`NotificationAction`]s.
async fn listen(
    connection: &zbus::Connection,
    shown: Arc<Mutex<Shown>>,
    handler: ActionHandler,
) -> bool {
    let (Ok(mut invoked), Ok(mut closed)) = (
        signal_stream(connection, "ActionInvoked").await,
        signal_stream(connection, "NotificationClosed").await,
    ) else {
        return false;
    };
    let on_close = Arc::clone(&shown);
    tokio::spawn(async move {
        while let Some(Ok(message)) = closed.next().await {
            if let Ok((id, _reason)) = message.body().deserialize::<(u32, u32)>() {
                on_close
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .forget(id);
            }
        }
    });
    tokio::spawn(async move {
        while let Some(Ok(message)) = invoked.next().await {
            let Ok((id, key)) = message.body().deserialize::<(u32, String)>() else {
                continue;
            };
            let acting = shown
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .actions
                .get(&id)
                .cloned();
            let Some(acting) = acting else {
                continue;
            };
            let action = match key.as_str() {
                DEFAULT_ACTION | ACTION_OPEN => NotificationAction::Open {
                    target: acting.target,
                },
                ACTION_MARK_READ => NotificationAction::MarkRead {
                    target: acting.target,
                    cap_id: acting.cap_id,
                },
                ACTION_MUTE => match acting.cap_id {
                    Some(cap_id) => NotificationAction::Mute {
                        cap_id,
                        duration: MUTE_FOR,
                    },
                    None => continue,
                },
                _ => continue,
            };
            tracing::debug!(id, ?action, "notification action");
            handler(action);
        }
    });
    true
}

async fn show(
    proxy: &NotificationsProxy<'_>,
    shown: &Mutex<Shown>,
    actions_supported: &mut Option<bool>,
    n: &Notification,
) -> Result<DeliveredId, NotifyError> {
    let n = sanitized(n);
    let cap_id = n
        .replace_key
        .as_deref()
        .and_then(|key| key.strip_prefix("cap:"))
        .map(str::to_owned);
    let mut actions: Vec<&str> = Vec::new();
    if n.target.is_some() {
        if actions_supported.is_none() {
            // Kept only once known: a daemon being (re)started answers nothing for a moment.
            if let Ok(capabilities) = proxy.get_capabilities().await {
                *actions_supported = Some(capabilities.iter().any(|c| c == "actions"));
            }
        }
        // The default action is a click even on daemons that draw no buttons.
        actions.extend([DEFAULT_ACTION, "Open"]);
        if *actions_supported == Some(true) {
            actions.extend([ACTION_OPEN, "Open", ACTION_MARK_READ, "Mark read"]);
            if cap_id.is_some() {
                actions.extend([ACTION_MUTE, "Mute for 2 hours"]);
            }
        }
    }
    let replaces = n.replace_key.as_ref().and_then(|key| {
        shown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .get(key)
            .copied()
    });
    let urgency: u8 = match n.urgency {
        Urgency::Low => 0,
        Urgency::Normal => 1,
        Urgency::Critical => 2,
    };
    let mut hints = HashMap::new();
    hints.insert("urgency", Value::U8(urgency));
    let id = proxy
        .notify(
            APP_NAME,
            replaces.unwrap_or(0),
            ICON_NAME,
            &neutralize_markup(&n.summary),
            &escape_markup(&n.body),
            &actions,
            hints,
            -1,
        )
        .await
        .map_err(|e| classify_error(&e.to_string()))?;
    tracing::debug!(
        id,
        replaced = replaces.is_some(),
        "desktop notification shown"
    );
    let mut shown = shown.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(key) = &n.replace_key {
        shown.by_key.insert(key.clone(), id);
    }
    if let Some(target) = n.target {
        shown.remember(id, Acting { target, cap_id });
    }
    Ok(DeliveredId(id))
}

/// Sorts a zbus error into "no bus", "no daemon" or other, by its text (zbus gives no
/// structured kind for these).
pub(super) fn classify_error(text: &str) -> NotifyError {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_remembered_for_actions_is_bounded() {
        let mut shown = Shown::default();
        for id in 0..(REMEMBERED as u32 + 50) {
            shown.by_key.insert(format!("cap:{id}"), id);
            shown.remember(
                id,
                Acting {
                    target: format!("change:{id}"),
                    cap_id: None,
                },
            );
        }
        assert_eq!(shown.actions.len(), REMEMBERED);
        assert_eq!(shown.order.len(), REMEMBERED);
        assert!(!shown.actions.contains_key(&0), "the oldest is forgotten");
        assert!(shown.by_key.len() <= REMEMBERED);
        shown.forget(REMEMBERED as u32 + 49);
        assert_eq!(shown.actions.len(), REMEMBERED - 1);
    }
}
