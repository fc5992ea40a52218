//! Logging for the binaries: `RUST_LOG` as usual, minus the few third-party log lines known to
//! carry secrets, which are dropped at every level whatever `RUST_LOG` says.
//!
//! Found by the tray app's secrets scan (`src-tauri/tests/e2e.rs`, run with `RUST_LOG=trace`):
//! tungstenite logs the whole client handshake request at trace level, and with it the
//! `Authorization: Tahoe-LAFS <base64 swissnum>` header.

use tracing::{Level, Metadata};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// Log targets whose lines carry secrets at the given level and below (more verbose).
const SECRET_BEARING: &[(&str, Level)] = &[
    // `trace!("Request: {:?}", …)`: the handshake request with its headers.
    ("tungstenite::handshake::client", Level::TRACE),
];

/// Whether an event may be logged at all: false for the lines in [`SECRET_BEARING`].
pub fn may_log(metadata: &Metadata<'_>) -> bool {
    !SECRET_BEARING
        .iter()
        .any(|(target, level)| metadata.target().starts_with(target) && *metadata.level() >= *level)
}

/// Logs to standard error, filtered by `RUST_LOG` (or `default` when unset or invalid), and
/// never the lines that carry secrets.
pub fn init_stderr(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: log files and journals get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(tracing_subscriber::filter::filter_fn(may_log));
    // Fails only if a subscriber is already set (a test harness): keep that one.
    let _ = subscriber.try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_request_line_is_never_logged() {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;

        struct Site;
        impl tracing::callsite::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let make = |target: &'static str, level: Level| {
            Metadata::new(
                "event",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&SITE)),
                Kind::EVENT,
            )
        };
        assert!(!may_log(&make(
            "tungstenite::handshake::client",
            Level::TRACE
        )));
        assert!(may_log(&make(
            "tungstenite::handshake::client",
            Level::DEBUG
        )));
        assert!(may_log(&make("tungstenite::protocol", Level::TRACE)));
        assert!(may_log(&make("notifier_core::net::link", Level::TRACE)));
    }
}
