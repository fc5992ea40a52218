//! What the client keeps between runs, each in the store made for it: the non-secret config
//! file ([`config`], records from [`crate::schema`]), the user's preferences beside it
//! ([`preferences`]), secrets in the OS keyring ([`keyring`], and why it may be unusable:
//! [`keyring_problem`]), the watched caps ([`caps`]: the cap in the keyring, the rest in the
//! config) and the updates servers and grids ([`servers`]). [`paths`] says where files live.
//! The history of changes is [`crate::history`].

pub mod caps;
pub mod config;
pub mod keyring;
pub mod keyring_problem;
pub mod paths;
pub mod preferences;
pub mod servers;
