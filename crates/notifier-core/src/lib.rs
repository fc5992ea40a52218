//! The notifier engine.
