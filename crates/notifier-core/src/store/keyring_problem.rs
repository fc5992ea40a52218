//! Whether the keyring can be used right now, found without ever raising an unlock prompt.
//!
//! Caps and server keys live only in the keyring. When the Secret Service is absent or its
//! collection is locked there is nothing to fall back to (never a file), so every face says so
//! — the window's banner, the tray's tooltip, `watch`'s error — and the engine host waits: it
//! starts the engine once the keyring can be used. Asking the keyring for a secret while it is locked
//! would make it prompt and block the engine's thread until someone answers, so the probe
//! (`SecretStore::check_usable`) reads only the service's presence and the default
//! collection's `Locked` property.

use crate::store::keyring::{SecretError, SecretStore};
use serde::{Deserialize, Serialize};

/// Why the keyring cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyringProblemKind {
    /// No Secret Service (no session bus, or nothing provides the service).
    Unavailable,
    /// The service is there but its default collection is locked (or missing).
    Locked,
}

/// What the banner and the tooltip say about an unusable keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringProblem {
    /// Which problem.
    pub kind: KeyringProblemKind,
    /// One-line headline.
    pub title: String,
    /// What is wrong and what to do.
    pub message: String,
    /// The platform's own words, for the curious (never a secret: it is a D-Bus error text).
    pub detail: String,
}

impl KeyringProblem {
    /// The keyring is absent.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            kind: KeyringProblemKind::Unavailable,
            title: "No keyring available".to_owned(),
            message: "Tahoe Notifier keeps caps and server keys only in the desktop keyring \
                      (Secret Service), never in a file, and no keyring answers in this \
                      session. Start gnome-keyring (or KWallet) in your desktop session, or on a \
                      headless machine start the app with --keyring keyutils (secrets then \
                      vanish at reboot). Watching starts by itself once a keyring answers."
                .to_owned(),
            detail: detail.into(),
        }
    }

    /// The keyring is locked.
    pub fn locked(detail: impl Into<String>) -> Self {
        Self {
            kind: KeyringProblemKind::Locked,
            title: "The keyring is locked".to_owned(),
            message: "Tahoe Notifier keeps caps and server keys only in the desktop keyring, \
                      so nothing is watched until it is unlocked. Unlock your login keyring \
                      (log in to the desktop session, or open Passwords and Keys and unlock \
                      \"Login\"). Watching starts by itself once it is unlocked."
                .to_owned(),
            detail: detail.into(),
        }
    }

    /// The few words the tray's tooltip shows.
    pub fn short(&self) -> &'static str {
        match self.kind {
            KeyringProblemKind::Unavailable => "no keyring: start gnome-keyring",
            KeyringProblemKind::Locked => "keyring locked: unlock it to start",
        }
    }

    /// The problem a keyring error names, if it is one of "absent" or "locked".
    pub fn from_error(error: &SecretError) -> Option<Self> {
        match error {
            SecretError::NoSecretService { detail } => Some(Self::unavailable(detail.clone())),
            SecretError::Locked { detail } => Some(Self::locked(detail.clone())),
            SecretError::KeyutilsNoSession => Some(Self::unavailable(error.to_string())),
            _ => None,
        }
    }
}

/// Whether `secrets` can be used now; `None` means it can.
pub fn probe(secrets: &dyn SecretStore) -> Option<KeyringProblem> {
    let error = secrets.check_usable().err()?;
    Some(
        KeyringProblem::from_error(&error)
            .unwrap_or_else(|| KeyringProblem::unavailable(error.to_string())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_errors_map_to_problems_that_say_what_to_do() {
        let locked = KeyringProblem::from_error(&SecretError::Locked {
            detail: "Cannot create an item in a locked collection".to_owned(),
        });
        let locked = locked
            .as_ref()
            .map(|p| (p.kind, p.message.contains("nlock")));
        assert_eq!(locked, Some((KeyringProblemKind::Locked, true)));
        let absent = KeyringProblem::from_error(&SecretError::NoSecretService {
            detail: "org.freedesktop.DBus.Error.ServiceUnknown".to_owned(),
        });
        let absent = absent
            .as_ref()
            .map(|p| (p.kind, p.message.contains("gnome-keyring")));
        assert_eq!(absent, Some((KeyringProblemKind::Unavailable, true)));
        assert!(KeyringProblem::from_error(&SecretError::BadId).is_none());
    }
}
