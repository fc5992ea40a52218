//! Tahoe-LAFS capabilities without I/O.
//!
//! A capability ("cap") is a string such as `URI:DIR2-RO:<readkey>:<fingerprint>` that grants
//! access to a file or directory. This crate parses every cap form that Tahoe-LAFS 1.20 writes,
//! derives the storage index that servers know the slot by, attenuates a cap to its read-only and
//! verify forms, and renders each back to Tahoe's canonical text. It never panics on input and
//! never prints key material: caps are passwords.
//!
//! ```
//! use tahoe_caps::StorageIndex;
//! let si: StorageIndex = "3zuybt32gbkka6auscupso6swe".parse().unwrap();
//! assert_eq!(si.share_dir(), "3z/3zuybt32gbkka6auscupso6swe");
//! ```

pub mod base32;
pub mod hash;
mod storage_index;

pub use storage_index::{StorageIndex, StorageIndexError};
