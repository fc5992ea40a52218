//! `DesktopSink` against a REAL notification daemon on the session bus, watched with
//! `dbus-monitor`. Run inside a session with a daemon, e.g.
//!
//! ```sh
//! dbus-run-session -- bash -c 'Xvfb :77 -screen 0 1024x768x24 -nolisten tcp & export DISPLAY=:77;
//!   sleep 0.5; dunst & sleep 0.5; cargo test -p notifier-core --test desktop_notify; kill %1 %2'
//! ```
//!
//! or through `tests/with-desktop-services.sh`. Without a session bus the tests print
//! "skipped: no session bus" and pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notifier_core::notify::{
    DesktopSink, Notification, NotificationAction, NotificationSink, NotifyError, Urgency,
    APP_NAME, ICON_NAME,
};

const MATCH_RULE: &str =
    "type='method_call',interface='org.freedesktop.Notifications',member='Notify'";

fn have_session_bus() -> bool {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        println!("skipped: no session bus");
        return false;
    }
    true
}

/// A running `dbus-monitor` whose output is collected; killed on drop.
struct Monitor {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Monitor {
    fn start() -> Monitor {
        let mut child = Command::new("dbus-monitor")
            .args(["--session", MATCH_RULE])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-monitor (package dbus-bin / dbus) must be installed");
        let stdout = child.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        Monitor { child, output }
    }

    /// The monitored Notify call whose arguments contain `needle`, waiting up to 10 s.
    fn call_containing(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.output.lock().unwrap().clone();
            if let Some(call) = text
                .split("method call ")
                .find(|call| call.contains("member=Notify") && call.contains(needle))
            {
                return Some(call.to_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Delivers probe notifications until the monitor shows one: it is then surely listening.
    fn wait_ready(&self, sink: &DesktopSink) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0.. {
            let probe = format!("monitor probe {i}");
            sink.deliver(&Notification {
                summary: probe.clone(),
                body: String::new(),
                urgency: Urgency::Low,
                target: None,
                replace_key: None,
            })
            .expect("a notification daemon on the session bus");
            let text = self.output.lock().unwrap().clone();
            std::thread::sleep(Duration::from_millis(200));
            if text.contains(&probe) || self.output.lock().unwrap().contains(&probe) {
                return;
            }
            assert!(Instant::now() < deadline, "dbus-monitor saw nothing");
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hint_urgency(call: &str) -> Option<u8> {
    // dbus-monitor prints the hint as: dict entry( string "urgency" variant byte N )
    let after = &call[call.find("string \"urgency\"")?..];
    let byte = after.split("byte").nth(1)?;
    byte.split_whitespace().next()?.parse().ok()
}

#[test]
fn desktop_notifications_reach_the_daemon() {
    if !have_session_bus() {
        return;
    }
    let monitor = Monitor::start();
    let sink = DesktopSink::new();
    monitor.wait_ready(&sink);

    let normal = Notification {
        summary: "Team Docs: added report.pdf, 2 more".into(),
        body: "Added: report.pdf, x.txt, <y>.txt".into(),
        urgency: Urgency::Normal,
        target: Some("change:42".into()),
        replace_key: None,
    };
    let id = sink.deliver(&normal).unwrap();
    assert!(id.0 > 0);
    let call = monitor
        .call_containing("Team Docs: added report.pdf, 2 more")
        .expect("the Notify call with the summary");
    assert!(call.contains(&format!("string \"{APP_NAME}\"")), "{call}");
    assert!(call.contains(&format!("string \"{ICON_NAME}\"")), "{call}");
    // Markup in names is escaped, not interpreted.
    assert!(
        call.contains("string \"Added: report.pdf, x.txt, &lt;y&gt;.txt\""),
        "{call}"
    );
    assert!(
        call.contains("string \"default\""),
        "the Open action: {call}"
    );
    assert_eq!(hint_urgency(&call), Some(1), "{call}");

    let critical = Notification {
        summary: "Grid news: Outage".into(),
        body: "Storage server 2 is down.".into(),
        urgency: Urgency::Critical,
        target: None,
        replace_key: None,
    };
    let id2 = sink.deliver(&critical).unwrap();
    assert_ne!(id, id2);
    let call = monitor
        .call_containing("Grid news: Outage")
        .expect("the Notify call with the critical summary");
    assert!(
        call.contains("string \"Storage server 2 is down.\""),
        "{call}"
    );
    assert_eq!(hint_urgency(&call), Some(2), "{call}");
    assert!(
        !call.contains("string \"default\""),
        "no target, no action: {call}"
    );
}

#[test]
fn a_notification_with_the_same_key_replaces_the_shown_one() {
    if !have_session_bus() {
        return;
    }
    let monitor = Monitor::start();
    let sink = DesktopSink::new();
    monitor.wait_ready(&sink);
    let keyed = |summary: &str| Notification {
        summary: summary.into(),
        body: String::new(),
        urgency: Urgency::Normal,
        target: Some("change:1".into()),
        replace_key: Some("cap:replace-test".into()),
    };
    let first = sink.deliver(&keyed("Replace Test: added a.txt")).unwrap();
    let first_call = monitor
        .call_containing("Replace Test: added a.txt")
        .expect("the first Notify call");
    // Notify's second argument is replaces_id: 0 asks for a new notification.
    assert!(
        first_call.contains(&format!("string \"{APP_NAME}\"\n   uint32 0")),
        "{first_call}"
    );
    let second = sink
        .deliver(&keyed(
            "Replace Test: 3 changes — added a.txt, b.txt, 1 more",
        ))
        .unwrap();
    assert_eq!(
        first, second,
        "the daemon kept the replaced notification's id"
    );
    let call = monitor
        .call_containing("Replace Test: 3 changes")
        .expect("the replacing Notify call");
    assert!(
        call.contains(&format!("string \"{APP_NAME}\"\n   uint32 {}", first.0)),
        "replaces_id is the first notification's id: {call}"
    );
    // Another key, or none, is a new notification.
    let other = sink
        .deliver(&Notification {
            replace_key: Some("cap:other".into()),
            ..keyed("Other: added z")
        })
        .unwrap();
    assert_ne!(other, first);
}

#[test]
fn caps_never_reach_the_daemon() {
    if !have_session_bus() {
        return;
    }
    let monitor = Monitor::start();
    let sink = DesktopSink::new();
    monitor.wait_ready(&sink);
    let secret = "URI:DIR2-RO:ivvd5n2q4kbrsg3vvaxohw5jpe:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
    sink.deliver(&Notification {
        summary: format!("Leaky {secret}"),
        body: format!("see http://127.0.0.1:3456/uri/{secret}/x"),
        urgency: Urgency::Normal,
        target: None,
        replace_key: None,
    })
    .unwrap();
    let call = monitor.call_containing("Leaky").unwrap();
    assert!(
        // The summary's markup characters are look-alikes (see notify.rs, neutralize_markup).
        call.contains("string \"Leaky \u{2039}cap\u{203A}\""),
        "{call}"
    );
    assert!(!call.contains("ivvd5n2q4kbrsg3vvaxohw5jpe"), "{call}");
    let text = monitor.output.lock().unwrap().clone();
    assert!(!text.contains("ivvd5n2q4kbrsg3vvaxohw5jpe"));
}

#[test]
fn a_bus_without_a_daemon_gives_a_clear_error() {
    if !have_session_bus() {
        return;
    }
    // A private bus with no notification daemon and no service activation (the system's
    // session config would start dunst from its .service file): run one.
    let dir = tempfile::tempdir().unwrap();
    let bus = local_grid::desktop::PrivateBus::start(dir.path());
    // The error must come from a separate process: the bus address is read per connection,
    // but changing this process's environment would race with the other tests.
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "no_daemon_child", "--nocapture"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("TAHOE_NOTIFIER_NO_DAEMON_CHILD", "1")
        .output()
        .unwrap();
    drop(bus);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    let error = stdout
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or("");
    println!("{error}");
    assert!(
        error.starts_with("error: no notification daemon on the session bus: "),
        "{stdout}"
    );
}

/// Runs only as the child of `a_bus_without_a_daemon_gives_a_clear_error`.
#[test]
fn no_daemon_child() {
    if std::env::var_os("TAHOE_NOTIFIER_NO_DAEMON_CHILD").is_none() {
        return;
    }
    let err = DesktopSink::new()
        .deliver(&Notification {
            summary: "nobody listens".into(),
            body: String::new(),
            urgency: Urgency::Normal,
            target: None,
            replace_key: None,
        })
        .unwrap_err();
    println!("error: {err}");
    assert!(matches!(err, NotifyError::NoDaemon(_)), "{err:?}");
    assert!(err
        .to_string()
        .starts_with("no notification daemon on the session bus: "));
}

/// Sends the daemon's `ActionInvoked` signal for notification `id`, as the daemon sends it.
fn invoke_action(id: u32, key: &str) {
    let status = Command::new("dbus-send")
        .args([
            "--session",
            "--type=signal",
            "/org/freedesktop/Notifications",
            "org.freedesktop.Notifications.ActionInvoked",
            &format!("uint32:{id}"),
            &format!("string:{key}"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn each_action_of_a_notification_reaches_the_handler_through_one_listener() {
    if !have_session_bus() {
        return;
    }
    let (sender, actions) = std::sync::mpsc::channel();
    let sender = Mutex::new(sender);
    let sink = DesktopSink::with_action_handler(Arc::new(move |action| {
        let _ = sender.lock().unwrap().send(action);
    }));
    let monitor = Monitor::start();
    monitor.wait_ready(&sink);
    let shown = sink
        .deliver(&Notification {
            summary: "Action Docs: added actions.pdf".into(),
            body: String::new(),
            urgency: Urgency::Normal,
            target: Some("change:42".into()),
            replace_key: Some("cap:cap-abc".into()),
        })
        .unwrap();
    let call = monitor.call_containing("added actions.pdf").unwrap();
    for offered in [
        "default",
        "mark-read",
        "Mark read",
        "mute-2h",
        "Mute for 2 hours",
    ] {
        assert!(
            call.contains(&format!("string \"{offered}\"")),
            "{offered} offered: {call}"
        );
    }
    let wait = || {
        actions
            .recv_timeout(Duration::from_secs(5))
            .expect("the action arrived")
    };
    invoke_action(shown.0, "default");
    assert_eq!(
        wait(),
        NotificationAction::Open {
            target: "change:42".into()
        }
    );
    invoke_action(shown.0, "mark-read");
    assert_eq!(
        wait(),
        NotificationAction::MarkRead {
            target: "change:42".into(),
            cap_id: Some("cap-abc".into())
        }
    );
    invoke_action(shown.0, "mute-2h");
    assert_eq!(
        wait(),
        NotificationAction::Mute {
            cap_id: "cap-abc".into(),
            duration: Duration::from_secs(7200)
        }
    );
    // Many notifications share one connection: the sink's process gains no connection per
    // notification (each connection is one more peer on the bus).
    let peers_before = bus_peers();
    for i in 0..30 {
        sink.deliver(&Notification {
            summary: format!("Burst {i}"),
            body: String::new(),
            urgency: Urgency::Normal,
            target: Some(format!("change:{i}")),
            replace_key: None,
        })
        .unwrap();
    }
    let peers_after = bus_peers();
    assert!(
        peers_after <= peers_before + 1,
        "30 notifications opened connections: {peers_before} → {peers_after} peers"
    );
    // An action for a notification never shown (or long forgotten) does nothing.
    invoke_action(999_999, "default");
    assert!(actions.recv_timeout(Duration::from_millis(500)).is_err());
}

/// How many connections the session bus has.
fn bus_peers() -> usize {
    let output = Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListNames",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains("string \":"))
        .count()
}
