//! The real OS keyrings: the Secret Service (gnome-keyring) and the kernel keyutils store.
//!
//! Run with a session bus and an unlocked gnome-keyring, inside a session keyring:
//!
//! ```sh
//! dbus-run-session -- keyctl session - bash -c 'export H=$(mktemp -d); \
//!   printf pw | HOME=$H XDG_DATA_HOME=$H/.local/share gnome-keyring-daemon --unlock --components=secrets >/dev/null; \
//!   cargo test -p notifier-core --test keyring_real'
//! ```
//!
//! Without `DBUS_SESSION_BUS_ADDRESS` the Secret Service tests print "skipped: no session bus";
//! with it they fail on any error. The keyutils test skips only when there is no session keyring.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use notifier_core::ids::new_id;
use notifier_core::store::caps::CapStore;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore, SecretError, SecretStore};
use tahoe_caps::Cap;

/// A directory write-cap from the shared Tahoe vectors.
const DIR_RW: &str =
    "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

fn have_session_bus() -> bool {
    match std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
        Some(v) if !v.is_empty() => true,
        _ => {
            println!("skipped: no session bus");
            false
        }
    }
}

fn round_trip(store: &KeyringSecretStore) {
    let id = new_id("test-").unwrap();
    store.put(&id, "URI:DIR2-RO:first").unwrap();
    assert_eq!(store.get(&id).unwrap(), "URI:DIR2-RO:first");
    // A second store object (a fresh keyring Entry) sees the same secret.
    let again = KeyringSecretStore::new(store.backend());
    assert_eq!(again.get(&id).unwrap(), "URI:DIR2-RO:first");
    // put replaces.
    store.put(&id, "URI:DIR2-RO:second").unwrap();
    assert_eq!(again.get(&id).unwrap(), "URI:DIR2-RO:second");
    store.delete(&id).unwrap();
    let err = store.get(&id).unwrap_err();
    assert!(matches!(err, SecretError::Missing { .. }), "{err}");
    assert!(!err.to_string().contains("URI:"), "{err}");
    // Deleting what is gone is fine.
    store.delete(&id).unwrap();
}

#[test]
fn secret_service_round_trip() {
    if !have_session_bus() {
        return;
    }
    round_trip(&KeyringSecretStore::new(KeyringBackend::SecretService));
}

#[test]
fn cap_store_over_secret_service() {
    if !have_session_bus() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let secrets: Arc<dyn SecretStore> =
        Arc::new(KeyringSecretStore::new(KeyringBackend::SecretService));
    let config_path = tmp.path().join("config.json");
    let store = CapStore::new(ConfigFile::new(&config_path), secrets.clone());
    let cap: Cap = DIR_RW.parse().unwrap();
    let added = store.add(&cap, "Team Docs", None).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_eq!(store.get_cap(&added.id).unwrap(), cap.read_only());
        let text = std::fs::read_to_string(&config_path).unwrap();
        assert!(!text.contains("URI:"), "{text}");
        assert!(!text.contains("s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a"));
        // A fresh store (as after a restart) finds the cap in the keyring.
        let fresh = CapStore::new(
            ConfigFile::new(&config_path),
            Arc::new(KeyringSecretStore::new(KeyringBackend::SecretService)),
        );
        assert_eq!(fresh.get_cap(&added.id).unwrap(), cap.read_only());
    }));
    // Remove even when an assertion failed, so no test secret stays in the keyring.
    store.remove(&added.id).unwrap();
    assert!(matches!(
        secrets.get(&added.id),
        Err(SecretError::Missing { .. })
    ));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn no_session_bus_gives_a_clear_error() {
    // Only meaningful without a bus; with no DISPLAY either, libdbus cannot autolaunch one.
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
        || std::env::var_os("DISPLAY").is_some()
    {
        println!("skipped: a session bus or a display is present");
        return;
    }
    let store = KeyringSecretStore::new(KeyringBackend::SecretService);
    let err = store
        .put(&new_id("test-").unwrap(), "URI:secret")
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SecretError::NoSecretService { .. }), "{text}");
    assert!(text.contains("start gnome-keyring"), "{text}");
    assert!(text.contains("--keyring keyutils"), "{text}");
    assert!(!text.contains("URI:secret"), "{text}");
}

/// Opt-in (`TAHOE_NOTIFIER_TEST_LOCKED_KEYRING=1`): run on a session bus whose Secret Service is
/// not unlocked (e.g. gnome-keyring started by D-Bus activation with a fresh HOME).
#[test]
fn locked_keyring_says_unlock() {
    if std::env::var_os("TAHOE_NOTIFIER_TEST_LOCKED_KEYRING").is_none() {
        println!("skipped: set TAHOE_NOTIFIER_TEST_LOCKED_KEYRING=1 with a locked keyring");
        return;
    }
    let store = KeyringSecretStore::new(KeyringBackend::SecretService);
    let err = store
        .put(&new_id("test-").unwrap(), "URI:secret")
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SecretError::Locked { .. }), "{text}");
    assert!(text.starts_with("the keyring is locked"), "{text}");
}

#[test]
fn keyutils_round_trip() {
    let store = KeyringSecretStore::new(KeyringBackend::Keyutils);
    let probe = new_id("test-").unwrap();
    match store.put(&probe, "probe") {
        Err(SecretError::KeyutilsNoSession) => {
            println!("skipped: no session keyring (run under `keyctl session -`)");
            return;
        }
        other => other.unwrap(),
    }
    store.delete(&probe).unwrap();
    round_trip(&store);
}
