//! Tahoe-LAFS capabilities without I/O.
//!
//! A capability ("cap") is a string such as `URI:DIR2-RO:<readkey>:<fingerprint>` that grants
//! access to a file or directory. This crate parses every cap form that Tahoe-LAFS 1.20 writes,
//! derives the storage index that servers know the slot by, attenuates a cap to its read-only and
//! verify forms, and renders each back to Tahoe's canonical text. It never panics on input and
//! never prints key material except through [`Cap`]'s `Display`: caps are passwords.
//!
//! ```
//! use tahoe_caps::{Cap, CapFormat, CapKind};
//!
//! let read_cap: Cap =
//!     "URI:DIR2-RO:uk4r3cnhlj2wyiah6zcj3ndhwi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a"
//!         .parse()?;
//! assert_eq!(read_cap.kind(), CapKind::DirectoryRead);
//! assert_eq!(read_cap.format(), CapFormat::Sdmf);
//! assert!(read_cap.is_mutable() && read_cap.is_directory() && read_cap.is_readonly());
//!
//! if let Some(storage_index) = read_cap.storage_index() {
//!     println!("subscribe to {storage_index}");
//!     assert_eq!(storage_index.to_string(), "3zuybt32gbkka6auscupso6swe");
//!     assert_eq!(storage_index.share_dir(), "3z/3zuybt32gbkka6auscupso6swe");
//! }
//!
//! // Errors say what is wrong without repeating the cap.
//! let error = "URI:DIR2-RO:uk4r3cnhlj2wyiah6zcj3ndhw:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a"
//!     .parse::<Cap>()
//!     .unwrap_err();
//! assert_eq!(error.to_string(), "URI:DIR2-RO: read key has 25 characters, expected 26");
//! # Ok::<(), tahoe_caps::CapError>(())
//! ```

pub mod base32;
mod cap;
mod error;
pub mod hash;
mod kind;
mod parse;
mod storage_index;

pub use cap::{Cap, ChkParameters};
pub use error::{CapError, CapPart, NotACapHint};
pub use kind::{CapFormat, CapKind, CapRole};
pub use storage_index::{StorageIndex, StorageIndexError};
