//! The tray process as a desktop's tray host sees it, on the private session bus of the test
//! (`dbus-run-session`): this test plays the StatusNotifierWatcher, so the real
//! `tahoe-notifier-tray` registers its StatusNotifierItem with it; the item's properties and
//! its com.canonical.dbusmenu menu are read as a panel reads them; menu entries are clicked
//! with the `Event` call a panel makes, and what they do is checked where it lands (the
//! preferences file, the host's D-Bus service, the `WindowRequested` signal, the process's
//! exit). The binary must link neither GTK nor WebKit.
//!
//! Needs a session bus and a session keyring: `dbus-run-session -- keyctl session - cargo test`;
//! skipped with a message without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use zbus::zvariant::{OwnedValue, Value};

const TRAY: &str = env!("CARGO_BIN_EXE_tahoe-notifier-tray");

/// What registered with our watcher: the sender's unique name, the item's bus name and its
/// object path, in order. Every tray on the bus registers when a watcher appears, so a tray
/// another test left running registers too: the test picks its own child's by process id.
#[derive(Debug, Default, Clone)]
struct Registered(Arc<Mutex<Vec<(String, String, String)>>>);

struct Watcher {
    registered: Registered,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    fn register_status_notifier_item(
        &self,
        service: &str,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        // The spec lets an item pass its bus name or its object path.
        let (name, path) = if service.starts_with('/') {
            (sender.clone(), service.to_owned())
        } else {
            (service.to_owned(), "/StatusNotifierItem".to_owned())
        };
        self.registered.0.lock().unwrap().push((sender, name, path));
    }

    fn register_status_notifier_host(&self, _service: &str) {}

    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        Vec::new()
    }
}

struct Tray(Child);

impl Drop for Tray {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn usable() -> bool {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        println!("skipped: no session bus; run under dbus-run-session");
        return false;
    }
    let keyring = Command::new("keyctl")
        .args(["show", "@s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(keyring, Ok(s) if s.success()) {
        println!("skipped: no session keyring; run under `keyctl session -`");
        return false;
    }
    true
}

/// An ARGB32 pixmap: width, height, pixels.
type Pixmap = (i32, i32, Vec<u8>);
/// The `ToolTip` property: icon name, pixmaps, title, text.
type ToolTipValue = (String, Vec<Pixmap>, String, String);

/// One dbusmenu node, `(ia{sv}av)`: id, properties, children (each a variant of a node).
type Node = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);

/// Every menu entry as (id, label, enabled), depth first.
fn flatten(node: Node, into: &mut Vec<(i32, String, bool)>) {
    let (id, props, children) = node;
    let label = props
        .get("label")
        .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
        .unwrap_or_default();
    let enabled = props
        .get("enabled")
        .and_then(|v| bool::try_from(v.try_clone().ok()?).ok())
        .unwrap_or(true);
    into.push((id, label, enabled));
    for child in children {
        let child = match Value::from(child) {
            Value::Value(inner) => *inner,
            other => other,
        };
        if let Ok(node) = Node::try_from(child) {
            flatten(node, into);
        }
    }
}

async fn menu_entries(
    connection: &zbus::Connection,
    name: &str,
    menu_path: &str,
) -> Vec<(i32, String, bool)> {
    let reply = connection
        .call_method(
            Some(name),
            menu_path,
            Some("com.canonical.dbusmenu"),
            "GetLayout",
            &(0i32, -1i32, Vec::<String>::new()),
        )
        .await
        .unwrap();
    let (_revision, layout): (u32, Node) = reply.body().deserialize().unwrap();
    let mut entries = Vec::new();
    flatten(layout, &mut entries);
    entries
}

/// Clicks the entry labelled `label`, as a panel does. Entries are numbered by position and the
/// menu is rebuilt whenever the host's state changes, so the layout is read again right before,
/// and once more if the entry moved meanwhile.
async fn click(connection: &zbus::Connection, name: &str, menu_path: &str, label: &str) {
    for _ in 0..5 {
        let entries = menu_entries(connection, name, menu_path).await;
        let id = find(&entries, label);
        let clicked = connection
            .call_method(
                Some(name),
                menu_path,
                Some("com.canonical.dbusmenu"),
                "Event",
                &(id, "clicked", Value::I32(0), 0u32),
            )
            .await;
        if clicked.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not click {label:?}");
}

async fn item_property(
    connection: &zbus::Connection,
    name: &str,
    path: &str,
    property: &str,
) -> OwnedValue {
    let proxy = zbus::fdo::PropertiesProxy::builder(connection)
        .destination(name.to_owned())
        .unwrap()
        .path(path.to_owned())
        .unwrap()
        .build()
        .await
        .unwrap();
    proxy
        .get(
            zbus::names::InterfaceName::try_from("org.kde.StatusNotifierItem").unwrap(),
            property,
        )
        .await
        .unwrap()
}

async fn tooltip_title(connection: &zbus::Connection, name: &str, path: &str) -> String {
    let value = item_property(connection, name, path, "ToolTip").await;
    let (_icon, _pixmaps, title, _text): ToolTipValue = value.try_into().unwrap();
    title
}

fn find(entries: &[(i32, String, bool)], label: &str) -> i32 {
    entries
        .iter()
        .find(|(_, l, _)| l == label)
        .unwrap_or_else(|| panic!("no menu entry {label:?} in {entries:?}"))
        .0
}

#[test]
fn the_tray_binary_links_neither_gtk_nor_webkit() {
    let output = Command::new("ldd").arg(TRAY).output().unwrap();
    let libraries = String::from_utf8_lossy(&output.stdout);
    for forbidden in [
        "libgtk",
        "libgdk",
        "libwebkit",
        "libjavascriptcore",
        "libayatana",
    ] {
        assert!(
            !libraries.contains(forbidden),
            "tahoe-notifier-tray links {forbidden}:\n{libraries}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tray_host_sees_the_icon_and_its_menu_drives_the_engine_host() {
    if !usable() {
        return;
    }
    let connection = zbus::Connection::session().await.unwrap();
    let registered = Registered::default();
    connection
        .object_server()
        .at(
            "/StatusNotifierWatcher",
            Watcher {
                registered: registered.clone(),
            },
        )
        .await
        .unwrap();
    connection
        .request_name("org.kde.StatusNotifierWatcher")
        .await
        .unwrap();
    let windows = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.tahoe_lafs.Notifier1")
        .unwrap()
        .member("WindowRequested")
        .unwrap()
        .build();
    let mut windows = zbus::MessageStream::for_match_rule(windows, &connection, Some(16))
        .await
        .unwrap();

    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = Command::new(TRAY)
        .arg("--home")
        .arg(home.path())
        .args(["--keyring", "keyutils"])
        .env_remove("TAHOE_NOTIFIER_HOME")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let mut tray = Tray(child);
    let mut reported: Vec<String> = Vec::new();
    let bus = zbus::fdo::DBusProxy::new(&connection).await.unwrap();
    let (name, path) = loop {
        let candidates = registered.0.lock().unwrap().clone();
        let mut found = None;
        for (sender, name, path) in candidates {
            let Ok(sender) = zbus::names::BusName::try_from(sender.as_str()) else {
                continue;
            };
            let pid = bus.get_connection_unix_process_id(sender).await.ok();
            if pid == Some(child_pid) {
                found = Some((name, path));
            } else if !reported.contains(&name) {
                println!("note: a tray of another process (pid {pid:?}) registered too: {name}");
                reported.push(name);
            }
        }
        if let Some(found) = found {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the tray never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "measured: item registered {:.2} s after start",
        started.elapsed().as_secs_f64()
    );

    // The item as a panel reads it.
    let id: String = item_property(&connection, &name, &path, "Id")
        .await
        .try_into()
        .unwrap();
    assert_eq!(id, "tahoe-notifier");
    let pixmaps: Vec<Pixmap> = item_property(&connection, &name, &path, "IconPixmap")
        .await
        .try_into()
        .unwrap();
    assert_eq!((pixmaps[0].0, pixmaps[0].1), (64, 64));
    assert_eq!(pixmaps[0].2.len(), 64 * 64 * 4);
    let mut title = String::new();
    for _ in 0..100 {
        title = tooltip_title(&connection, &name, &path).await;
        if title.contains("no updates servers yet") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(title.contains("no updates servers yet"), "tooltip: {title}");
    let menu_path: zbus::zvariant::OwnedObjectPath =
        item_property(&connection, &name, &path, "Menu")
            .await
            .try_into()
            .unwrap();
    let menu_path = menu_path.as_str().to_owned();
    let entries = menu_entries(&connection, &name, &menu_path).await;
    let labels: Vec<&str> = entries.iter().map(|(_, l, _)| l.as_str()).collect();
    for expected in [
        "Open Tahoe Notifier",
        "Recent changes",
        "    No changes yet",
        "Pause notifications",
        "For 1 hour",
        "Until tomorrow morning",
        "Mark all read",
        "Reconnect now",
        "Quit",
    ] {
        assert!(
            labels.contains(&expected),
            "menu lacks {expected:?}: {labels:?}"
        );
    }
    assert!(
        entries
            .iter()
            .any(|(_, l, enabled)| l == "Mark all read" && !enabled),
        "nothing is unread: Mark all read is greyed"
    );

    // "For 1 hour": saved in the preferences, the host's state and the tooltip say so.
    click(&connection, &name, &menu_path, "For 1 hour").await;
    let preferences = notifier_core::store::preferences::Preferences::path(
        notifier_core::store::paths::Paths::under(home.path()).config_dir(),
    );
    // The deadline is checked before both are read, so a slow bus call on a loaded machine
    // cannot fail the check with a file read before the pause landed (as CI once did).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let past_deadline = Instant::now() >= deadline;
        let title = tooltip_title(&connection, &name, &path).await;
        let saved = std::fs::read_to_string(&preferences).unwrap_or_default();
        if saved.contains("paused_until") && title.contains("paused") {
            break;
        }
        assert!(!past_deadline, "the pause did not land: {saved} / {title}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entries = menu_entries(&connection, &name, &menu_path).await;
    assert!(
        entries
            .iter()
            .any(|(_, l, _)| l.starts_with("Paused until ")),
        "the pause submenu says until when: {entries:?}"
    );
    click(&connection, &name, &menu_path, "Resume notifications").await;

    // "Open Tahoe Notifier": the host asks for the window (a running window follows the
    // signal; the tray starts one otherwise).
    click(&connection, &name, &menu_path, "Open Tahoe Notifier").await;
    let signal = tokio::time::timeout(Duration::from_secs(5), windows.next())
        .await
        .expect("no WindowRequested signal")
        .unwrap()
        .unwrap();
    let target: String = signal.body().deserialize().unwrap();
    assert_eq!(target, "", "Open shows the window where it was");

    // RSS of the tray process (a debug build; the release figure is tests/memory.rs').
    let pid = tray.0.id();
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        if let Some(rss) = status.lines().find(|l| l.starts_with("VmRSS")) {
            println!("measured: tray process (debug build) {rss}");
        }
    }

    // The window "Open" started (a child of the tray; on a machine without a display it has
    // ended already) must go with the tray: it must not start a host of its own for this home.
    let windows_started: Vec<u32> =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();

    // "Quit": the process ends cleanly.
    click(&connection, &name, &menu_path, "Quit").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = tray.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the tray did not quit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "quit with {status}");
    let deadline = Instant::now() + Duration::from_secs(20);
    for window in windows_started {
        let alive = || {
            std::fs::read_to_string(format!("/proc/{window}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        while alive() {
            assert!(
                Instant::now() < deadline,
                "the window (pid {window}) outlived the tray's Quit"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let bus_names = bus.list_names().await.unwrap();
    let home_host = notifier_core::host::service::bus_name_for(
        &notifier_core::store::paths::Paths::under(home.path()),
    );
    assert!(
        !bus_names.iter().any(|n| n.as_str() == home_host),
        "a host of this home still runs after Quit"
    );
}
