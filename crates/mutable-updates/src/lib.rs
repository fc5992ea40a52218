//! The mutable-updates v1 protocol.
