//! The CLI when the keyring cannot be used: a session bus on which nothing provides the Secret
//! Service, and one where gnome-keyring runs with its login collection locked. Each gets a
//! clear error naming what to do, and nothing is stored anywhere else (never a plaintext
//! fallback).
//!
//! Each test starts its own private `dbus-daemon` (no service activation, so nothing starts
//! behind the test's back and no unlock prompt can appear) and, for the locked case, its own
//! `gnome-keyring-daemon` with a throwaway home: the session's real keyring is never touched.
//! Needs `dbus-daemon`, `dbus-send` and `gnome-keyring-daemon` (tests/bootstrap.sh installs
//! them); without them the tests print why and skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use local_grid::desktop::PrivateBus;

/// A directory read-cap from the shared Tahoe vectors, and its key parts (what must never be
/// found outside the keyring).
const DIR_RO: &str =
    "URI:DIR2-RO:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
/// A second one, for the add that a locked keyring refuses.
const OTHER_DIR_RO: &str =
    "URI:DIR2-RO:272nxlgxylwa6dwm3s7fynfp4u:vftuiuwodoqscnhnl54kcu4qbmhlk5jcor7yfqjwzx75wr2btutq";
const KEY_PARTS: [&str; 4] = [
    "rvbf3wlbpjwgh3wkcd7n2irdhi",
    "s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a",
    "272nxlgxylwa6dwm3s7fynfp4u",
    "vftuiuwodoqscnhnl54kcu4qbmhlk5jcor7yfqjwzx75wr2btutq",
];

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        // CI runs tests/bootstrap.sh first: there a missing tool is a broken set-up, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed, and CI must run this test (tests/bootstrap.sh installs it)"
        );
        println!("skipped: {tool} is not installed (tests/bootstrap.sh installs it)");
    }
    found
}

/// Runs the CLI on `bus` with `stdin`; never waits more than 60 s (an unlock prompt would
/// block for ever: the private bus cannot start one, and this makes sure).
fn cli(bus: &PrivateBus, home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tahoe-notifier"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env_remove("DISPLAY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tahoe-notifier {args:?} hung (an unlock prompt?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The cap's key material is nowhere: not in the output, not in any file of the home.
fn assert_no_plaintext(home: &Path, outputs: &[&Output]) {
    // (The keyring's own files live elsewhere, in the keyring daemon's throwaway home.)
    for out in outputs {
        let shown = text(out);
        for part in KEY_PARTS {
            assert!(!shown.contains(part), "the cap leaked into output: {shown}");
        }
    }
    for file in files(home) {
        let bytes = std::fs::read(&file).unwrap();
        let content = String::from_utf8_lossy(&bytes);
        for part in KEY_PARTS {
            assert!(
                !content.contains(part),
                "the cap was written to {}",
                file.display()
            );
        }
    }
}

#[test]
fn no_secret_service_on_the_bus_is_a_clear_error_and_nothing_is_stored() {
    if !have("dbus-daemon") || !have("dbus-send") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(dir.path());
    let home = dir.path().join("home");

    let add = cli(&bus, &home, &["caps", "add", "--label", "Docs"], DIR_RO);
    let said = text(&add);
    println!("caps add without a keyring said: {said}");
    assert!(!add.status.success(), "{said}");
    assert!(said.contains("no Secret Service"), "{said}");
    assert!(said.contains("start gnome-keyring"), "{said}");
    assert!(said.contains("--keyring keyutils"), "{said}");

    let list = cli(&bus, &home, &["--json", "caps", "list"], "");
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");

    let status = cli(&bus, &home, &["--json", "status"], "");
    let state: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(state["keyring"]["reachable"], false, "{state}");
    let problem = state["keyring"]["problem"].as_str().unwrap_or_default();
    assert!(problem.contains("no Secret Service"), "{state}");

    let watch = cli(&bus, &home, &["watch", "--no-desktop"], "");
    let said = text(&watch);
    println!("watch without a keyring said: {said}");
    assert!(!watch.status.success(), "{said}");
    assert!(said.contains("no Secret Service"), "{said}");

    assert_no_plaintext(&home, &[&add, &list, &status, &watch]);
}

#[test]
fn a_locked_keyring_is_a_clear_error_and_nothing_is_stored() {
    if !have("dbus-daemon") || !have("dbus-send") || !have("gnome-keyring-daemon") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(dir.path());
    let _keyring = bus.start_keyring(dir.path());
    let home = dir.path().join("home");

    // Unlocked, the same command works (so what follows is about the lock alone)…
    let added = cli(&bus, &home, &["caps", "add", "--label", "Before"], DIR_RO);
    assert!(added.status.success(), "{}", text(&added));
    let status = cli(&bus, &home, &["--json", "status"], "");
    let state: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(state["keyring"]["reachable"], true, "{state}");

    // …then locked: adding says to unlock, and status says the keyring is locked.
    bus.lock_login_collection();
    let add = cli(
        &bus,
        &home,
        &["caps", "add", "--label", "After"],
        OTHER_DIR_RO,
    );
    let said = text(&add);
    println!("caps add with a locked keyring said: {said}");
    assert!(!add.status.success(), "{said}");
    assert!(said.contains("the keyring is locked"), "{said}");
    assert!(said.contains("unlock it"), "{said}");

    let status = cli(&bus, &home, &["--json", "status"], "");
    let state: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    println!("status with a locked keyring: {}", state["keyring"]);
    assert_eq!(state["keyring"]["reachable"], false, "{state}");
    let problem = state["keyring"]["problem"].as_str().unwrap_or_default();
    assert!(problem.contains("the keyring is locked"), "{state}");

    // watch stops at once with the same words (it would otherwise wait on an unlock prompt).
    let watch = cli(&bus, &home, &["watch", "--no-desktop"], "");
    let said = text(&watch);
    println!("watch with a locked keyring said: {said}");
    assert!(!watch.status.success(), "{said}");
    assert!(said.contains("the keyring is locked"), "{said}");

    let list = cli(&bus, &home, &["--json", "caps", "list"], "");
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let labels: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["label"].as_str())
        .collect();
    assert_eq!(labels, ["Before"], "the refused cap must not be listed");

    assert_no_plaintext(&home, &[&added, &add, &status, &watch, &list]);
}
