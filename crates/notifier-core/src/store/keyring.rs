//! Where secrets (caps, NURLs) live: the OS keyring, and nowhere else.
//!
//! [`SecretStore`] is the small interface the rest of the crate uses. [`KeyringSecretStore`]
//! implements it over the `keyring` crate with the Secret Service (gnome-keyring, KWallet) by
//! default, or the kernel keyutils store when asked for explicitly: keyutils needs no desktop
//! session but loses everything at reboot, so it is for headless machines and tests. There is
//! deliberately no plaintext fallback: when no keyring is usable the error says what to install
//! or start.

use std::fmt;
use std::str::FromStr;

use keyring::credential::Credential;
use keyring::Entry;
use thiserror::Error;

use crate::ids;

/// The keyring "service" under which every secret of the notifier is stored; the "user" is the
/// entry's id.
pub const KEYRING_SERVICE: &str = "tahoe-notifier";

/// Which OS keyring to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyringBackend {
    /// The freedesktop Secret Service over D-Bus (gnome-keyring, KWallet): persistent.
    #[default]
    SecretService,
    /// The Linux kernel key store: works without a desktop session, but forgets everything at
    /// reboot.
    Keyutils,
}

impl KeyringBackend {
    /// The name used on the command line (`--keyring secret-service|keyutils`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretService => "secret-service",
            Self::Keyutils => "keyutils",
        }
    }

    /// A warning to show the user whenever this backend is in use, if any.
    pub fn warning(self) -> Option<&'static str> {
        match self {
            Self::SecretService => None,
            Self::Keyutils => Some(
                "secrets are kept in the kernel keyutils store: they vanish at reboot, \
                 and the caps must then be added again",
            ),
        }
    }
}

impl fmt::Display for KeyringBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `--keyring` value.
#[derive(Debug, Error)]
#[error("unknown keyring `{0}`: use `secret-service` (default) or `keyutils`")]
pub struct UnknownBackend(String);

impl FromStr for KeyringBackend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "secret-service" | "secret_service" | "secretservice" => Ok(Self::SecretService),
            "keyutils" => Ok(Self::Keyutils),
            other => Err(UnknownBackend(other.chars().take(40).collect())),
        }
    }
}

/// Why a secret could not be stored, read or deleted. Never carries the secret.
#[derive(Debug, Error)]
pub enum SecretError {
    /// No Secret Service reachable (no session bus, or nothing provides the service on it).
    #[error(
        "no Secret Service: start gnome-keyring (or KWallet) in your desktop session, or use \
         --keyring keyutils on a headless machine (secrets then vanish at reboot) [{detail}]"
    )]
    NoSecretService {
        /// The platform's message.
        detail: String,
    },
    /// The Secret Service is there but locked, or has no default collection.
    #[error(
        "the keyring is locked or has no default collection: unlock it (log in to your desktop \
         session, or run `gnome-keyring-daemon --unlock`) and try again [{detail}]"
    )]
    Locked {
        /// The platform's message.
        detail: String,
    },
    /// The kernel refused to store the key: no usable session keyring.
    #[error(
        "the kernel keyring refused to store the secret: run tahoe-notifier inside a session \
         keyring (e.g. `keyctl session - tahoe-notifier …`)"
    )]
    KeyutilsNoSession,
    /// There is no secret under this id.
    #[error(
        "the {backend} keyring has no secret for entry {id}: it was deleted outside \
         tahoe-notifier{hint}; remove the entry and add it again"
    )]
    Missing {
        /// The entry id.
        id: String,
        /// The backend asked.
        backend: KeyringBackend,
        /// Extra explanation for keyutils.
        hint: &'static str,
    },
    /// The stored secret is not text (someone else wrote it).
    #[error("the keyring entry {id} does not hold text: it was not written by tahoe-notifier")]
    NotText {
        /// The entry id.
        id: String,
    },
    /// The id is not one this crate makes (not echoed: a mistaken caller might pass a cap).
    #[error("not a valid entry id: ids are lowercase letters, digits and dashes")]
    BadId,
    /// Anything else the platform reported.
    #[error("the {backend} keyring failed: {detail}")]
    Platform {
        /// The backend.
        backend: KeyringBackend,
        /// The platform's message.
        detail: String,
    },
}

/// Secrets by entry id.
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// Stores `secret` under `id`, replacing any previous one.
    fn put(&self, id: &str, secret: &str) -> Result<(), SecretError>;
    /// The secret under `id`.
    fn get(&self, id: &str) -> Result<String, SecretError>;
    /// Deletes the secret under `id`; deleting a missing one is not an error.
    fn delete(&self, id: &str) -> Result<(), SecretError>;
    /// Which backend this is, for messages.
    fn backend(&self) -> KeyringBackend;
    /// Whether the store can be used now (reachable, unlocked), found without raising an
    /// unlock prompt: reading a secret from a locked Secret Service makes it prompt and
    /// blocks until someone answers.
    fn check_usable(&self) -> Result<(), SecretError>;
}

/// The OS keyring.
#[derive(Debug, Clone)]
pub struct KeyringSecretStore {
    backend: KeyringBackend,
}

impl KeyringSecretStore {
    /// A store over `backend`. Using keyutils is logged as a warning, because its secrets do
    /// not survive a reboot.
    pub fn new(backend: KeyringBackend) -> Self {
        if let Some(warning) = backend.warning() {
            tracing::warn!("{warning}");
        }
        Self { backend }
    }

    fn entry(&self, id: &str) -> Result<Entry, SecretError> {
        if !ids::is_valid_id(id) {
            return Err(SecretError::BadId);
        }
        let credential: Box<Credential> = match self.backend {
            KeyringBackend::SecretService => Box::new(
                keyring::secret_service::SsCredential::new_with_target(None, KEYRING_SERVICE, id)
                    .map_err(|e| self.translate(e, id, Op::Get))?,
            ),
            KeyringBackend::Keyutils => Box::new(
                keyring::keyutils::KeyutilsCredential::new_with_target(None, KEYRING_SERVICE, id)
                    .map_err(|e| self.translate(e, id, Op::Get))?,
            ),
        };
        Ok(Entry::new_with_credential(credential))
    }

    fn translate(&self, error: keyring::Error, id: &str, op: Op) -> SecretError {
        translate(self.backend, error, id, op)
    }
}

impl Default for KeyringSecretStore {
    fn default() -> Self {
        Self::new(KeyringBackend::default())
    }
}

impl SecretStore for KeyringSecretStore {
    fn put(&self, id: &str, secret: &str) -> Result<(), SecretError> {
        self.entry(id)?
            .set_password(secret)
            .map_err(|e| self.translate(e, id, Op::Put))?;
        tracing::debug!(id, backend = %self.backend, "secret stored");
        Ok(())
    }

    fn get(&self, id: &str) -> Result<String, SecretError> {
        self.entry(id)?
            .get_password()
            .map_err(|e| self.translate(e, id, Op::Get))
    }

    fn delete(&self, id: &str) -> Result<(), SecretError> {
        match self.entry(id)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => {
                tracing::debug!(id, backend = %self.backend, "secret deleted");
                Ok(())
            }
            Err(e) => Err(self.translate(e, id, Op::Delete)),
        }
    }

    fn backend(&self) -> KeyringBackend {
        self.backend
    }

    fn check_usable(&self) -> Result<(), SecretError> {
        match self.backend {
            KeyringBackend::SecretService => secret_service_usable(),
            // keyutils answers reads even without a session keyring and refuses every write
            // then: a throwaway write tells.
            KeyringBackend::Keyutils => {
                let id = ids::new_id("probe-").map_err(|e| SecretError::Platform {
                    backend: self.backend,
                    detail: e.to_string(),
                })?;
                self.put(&id, "probe").and_then(|()| self.delete(&id))
            }
        }
    }
}

/// The Secret Service's bus name.
const SECRETS_BUS_NAME: &str = "org.freedesktop.secrets";

/// Asks the session bus whether a Secret Service is there (running or startable) and whether
/// its default collection is unlocked — reading only the collection's `Locked` property, which
/// never prompts.
fn secret_service_usable() -> Result<(), SecretError> {
    use dbus::blocking::stdintf::org_freedesktop_dbus::Properties as _;
    use dbus::blocking::Connection;

    let timeout = std::time::Duration::from_secs(5);
    let no_service = |detail: String| SecretError::NoSecretService { detail };
    let connection = Connection::new_session().map_err(|e| {
        no_service(format!(
            "no session bus: {}",
            e.message().unwrap_or("cannot connect")
        ))
    })?;
    let bus = connection.with_proxy("org.freedesktop.DBus", "/org/freedesktop/DBus", timeout);
    let owned: Result<(bool,), _> =
        bus.method_call("org.freedesktop.DBus", "NameHasOwner", (SECRETS_BUS_NAME,));
    if !matches!(owned, Ok((true,))) {
        // Not running; D-Bus may still start it on demand.
        let activatable: Result<(Vec<String>,), _> =
            bus.method_call("org.freedesktop.DBus", "ListActivatableNames", ());
        if !activatable.is_ok_and(|(names,)| names.iter().any(|n| n == SECRETS_BUS_NAME)) {
            return Err(no_service(format!(
                "nothing provides {SECRETS_BUS_NAME} on the session bus"
            )));
        }
    }
    let service = connection.with_proxy(SECRETS_BUS_NAME, "/org/freedesktop/secrets", timeout);
    let (path,): (dbus::Path<'static>,) = service
        .method_call("org.freedesktop.Secret.Service", "ReadAlias", ("default",))
        .map_err(|e| {
            no_service(format!(
                "the Secret Service did not answer: {}",
                e.message().unwrap_or("no reply")
            ))
        })?;
    if &*path == "/" {
        return Err(SecretError::Locked {
            detail: "the Secret Service has no default collection".to_owned(),
        });
    }
    let collection = connection.with_proxy(SECRETS_BUS_NAME, path, timeout);
    match collection.get::<bool>("org.freedesktop.Secret.Collection", "Locked") {
        Ok(false) => Ok(()),
        Ok(true) => Err(SecretError::Locked {
            detail: "the default collection is locked".to_owned(),
        }),
        Err(e) => Err(SecretError::Platform {
            backend: KeyringBackend::SecretService,
            detail: format!(
                "cannot read the default collection: {}",
                e.message().unwrap_or("no reply")
            ),
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
    Delete,
}

/// Maps keyring errors to messages that say what to do. Only the platform's own message is
/// kept (D-Bus / kernel error text); keyring's `BadEncoding` bytes and `Ambiguous` credentials
/// are dropped since they could hold secret material.
fn translate(backend: KeyringBackend, error: keyring::Error, id: &str, op: Op) -> SecretError {
    let detail = match &error {
        keyring::Error::PlatformFailure(inner) | keyring::Error::NoStorageAccess(inner) => {
            inner.to_string()
        }
        keyring::Error::Ambiguous(items) => format!("{} matching entries", items.len()),
        keyring::Error::BadEncoding(_) => "not UTF-8".to_owned(),
        other => other.to_string(),
    };
    match (backend, error) {
        (_, keyring::Error::BadEncoding(_)) => SecretError::NotText { id: id.to_owned() },
        // keyutils reports a refused link into the persistent keyring (no session keyring) as
        // "no entry", even when storing.
        (KeyringBackend::Keyutils, keyring::Error::NoEntry) if op == Op::Put => {
            SecretError::KeyutilsNoSession
        }
        (_, keyring::Error::NoEntry) => SecretError::Missing {
            id: id.to_owned(),
            backend,
            hint: match backend {
                KeyringBackend::Keyutils => {
                    " or lost at a reboot (keyutils keeps nothing across reboots)"
                }
                KeyringBackend::SecretService => "",
            },
        },
        (KeyringBackend::SecretService, keyring::Error::NoStorageAccess(_)) => {
            SecretError::Locked { detail }
        }
        (KeyringBackend::SecretService, keyring::Error::PlatformFailure(_))
            if looks_like_no_service(&detail) =>
        {
            SecretError::NoSecretService { detail }
        }
        // gnome-keyring refuses a write into a locked collection as a plain D-Bus error
        // ("Cannot create an item in a locked collection") when no unlock prompt could be
        // shown: that is a locked keyring, and the user must hear "unlock it".
        (KeyringBackend::SecretService, keyring::Error::PlatformFailure(_))
            if detail.to_ascii_lowercase().contains("locked") =>
        {
            SecretError::Locked { detail }
        }
        _ => SecretError::Platform { backend, detail },
    }
}

/// Whether a Secret Service platform failure means "nothing to talk to": no session bus, or no
/// service owning `org.freedesktop.secrets` on it.
fn looks_like_no_service(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("autolaunch")
        || d.contains("dbus_session_bus_address")
        || d.contains("serviceunknown")
        || d.contains("name org.freedesktop.secrets was not provided")
        || d.contains("no such file or directory")
        || d.contains("connection refused")
        || d.contains("failed to connect")
}

/// Secrets in memory, for unit tests only.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemorySecretStore {
    secrets: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// When set, every `put` fails (to test rollback paths).
    pub(crate) fail_puts: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl fmt::Debug for MemorySecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemorySecretStore { <redacted> }")
    }
}

#[cfg(test)]
impl MemorySecretStore {
    /// Every secret held, for assertions.
    pub(crate) fn all(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .secrets
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
impl SecretStore for MemorySecretStore {
    fn put(&self, id: &str, secret: &str) -> Result<(), SecretError> {
        if self.fail_puts.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SecretError::Locked {
                detail: "test".into(),
            });
        }
        self.secrets
            .lock()
            .unwrap()
            .insert(id.to_owned(), secret.to_owned());
        Ok(())
    }

    fn get(&self, id: &str) -> Result<String, SecretError> {
        self.secrets
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| SecretError::Missing {
                id: id.to_owned(),
                backend: KeyringBackend::SecretService,
                hint: "",
            })
    }

    fn delete(&self, id: &str) -> Result<(), SecretError> {
        self.secrets.lock().unwrap().remove(id);
        Ok(())
    }

    fn backend(&self) -> KeyringBackend {
        KeyringBackend::SecretService
    }

    fn check_usable(&self) -> Result<(), SecretError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for b in [KeyringBackend::SecretService, KeyringBackend::Keyutils] {
            assert_eq!(b.as_str().parse::<KeyringBackend>().unwrap(), b);
        }
        assert_eq!(KeyringBackend::default(), KeyringBackend::SecretService);
        let err = "plaintext".parse::<KeyringBackend>().unwrap_err();
        assert!(err.to_string().contains("keyutils"));
        assert!(KeyringBackend::Keyutils
            .warning()
            .unwrap()
            .contains("reboot"));
        assert!(KeyringBackend::SecretService.warning().is_none());
    }

    #[derive(Debug)]
    struct Msg(&'static str);
    impl fmt::Display for Msg {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Msg {}

    #[test]
    fn no_bus_says_what_to_start() {
        let e = keyring::Error::PlatformFailure(Box::new(Msg(
            "DBus error: Unable to autolaunch a dbus-daemon without a $DISPLAY for X11",
        )));
        let t = translate(KeyringBackend::SecretService, e, "cap-x", Op::Put);
        assert!(matches!(t, SecretError::NoSecretService { .. }));
        let text = t.to_string();
        assert!(text.contains("start gnome-keyring"), "{text}");
        assert!(text.contains("--keyring keyutils"), "{text}");
    }

    #[test]
    fn locked_collection_says_unlock() {
        let e = keyring::Error::NoStorageAccess(Box::new(Msg("Secret Service: no result found")));
        let t = translate(KeyringBackend::SecretService, e, "cap-x", Op::Get);
        assert!(t.to_string().starts_with("the keyring is locked"), "{t}");
    }

    #[test]
    fn write_into_a_locked_collection_says_unlock() {
        let e = keyring::Error::PlatformFailure(Box::new(Msg(
            "DBus error: Cannot create an item in a locked collection",
        )));
        let t = translate(KeyringBackend::SecretService, e, "cap-x", Op::Put);
        assert!(matches!(t, SecretError::Locked { .. }), "{t}");
        assert!(t.to_string().starts_with("the keyring is locked"), "{t}");
    }

    #[test]
    fn keyutils_put_without_session_explains_keyctl() {
        let t = translate(
            KeyringBackend::Keyutils,
            keyring::Error::NoEntry,
            "cap-x",
            Op::Put,
        );
        assert!(matches!(t, SecretError::KeyutilsNoSession));
        assert!(t.to_string().contains("keyctl session -"));
        let t = translate(
            KeyringBackend::Keyutils,
            keyring::Error::NoEntry,
            "cap-x",
            Op::Get,
        );
        assert!(t.to_string().contains("reboot"), "{t}");
    }

    #[test]
    fn bad_encoding_never_shows_bytes() {
        let e = keyring::Error::BadEncoding(b"URI:SSK:secret\xff".to_vec());
        let t = translate(KeyringBackend::SecretService, e, "cap-x", Op::Get);
        assert!(!format!("{t} {t:?}").contains("secret\\"));
        assert!(!format!("{t} {t:?}").contains("URI"));
    }

    #[test]
    fn invalid_ids_are_refused_before_the_keyring() {
        let store = KeyringSecretStore::new(KeyringBackend::Keyutils);
        assert!(matches!(store.get("URI:DIR2:x"), Err(SecretError::BadId)));
    }
}
