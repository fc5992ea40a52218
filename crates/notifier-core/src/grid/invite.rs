//! Grid invites over magic-wormhole: an operator hands one user a grid's description with a
//! short code (`7-guitarist-revenge`), as `tahoe invite` and Gridsync do, instead of a file.
//!
//! The operator [`Invitation::create`]s a mailbox on a magic-wormhole mailbox server, reads the
//! code out to the user and [`Invitation::deliver`]s the description; the user
//! [`accept`]s with the code and imports what arrives. The mailbox server sees only encrypted
//! messages; the code is good for one attempt (a wrong code burns it, as in every wormhole
//! application) and is gone once used.
//!
//! The exchange, under our own application id ([`APP_ID`]) so that no other wormhole program
//! can be confused with it:
//!
//! 1. both sides send their versions (magic-wormhole's own step): `{"grid-invite": 1}`;
//! 2. the operator sends `{"grid-description": {…}}` ([`crate::grid::description`]'s JSON);
//! 3. the user answers `{"joined": "<grid name>"}` once the grid is imported, or
//!    `{"refused": "<reason>"}` if it could not be; then both close.
//!
//! The code and the description are secrets: neither is logged, and [`InviteCode`] never shows
//! in `Debug` output.

use std::borrow::Cow;
use std::time::Duration;

use magic_wormhole::{AppConfig, AppID, Code, MailboxConnection, Mood, Wormhole, WormholeError};
use serde_json::{json, Value};
use thiserror::Error;

use crate::describe::text::clean_line;
use crate::grid::description::{parse_grid_file, GridFile};

/// Our magic-wormhole application id: it scopes codes and mailboxes on a shared server.
pub const APP_ID: &str = "tahoe-lafs.org/tahoe-notifier/grid-invite";

/// The public mailbox server magic-wormhole programs use by default.
pub const DEFAULT_MAILBOX_URL: &str = magic_wormhole::rendezvous::DEFAULT_RENDEZVOUS_SERVER;

/// Words in a code after its number, as `tahoe invite` and `wormhole send` make them.
const CODE_WORDS: usize = 2;

/// Version of the exchange described in the module documentation.
const EXCHANGE_VERSION: u64 = 1;

/// How long the user's side waits for the operator's side at each step. The operator's side
/// is waiting already when the user types the code, so it answers at once; an operator who
/// cancelled (Ctrl-C) leaves the code claimed on the mailbox server without an answer, and
/// this is how long the user waits to be told so.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest reason for refusing that is passed on to the other side, in characters.
const MAX_REASON_CHARS: usize = 300;

/// An invite code as the user typed it, checked for shape. A secret: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode(Code);

impl std::fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteCode(<redacted>)")
    }
}

impl InviteCode {
    /// The code as it is read out (`7-guitarist-revenge`).
    pub fn reveal(&self) -> String {
        self.0.to_string()
    }
}

/// Why a typed code is not one. Never quotes what was typed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InviteCodeError {
    /// Nothing was typed.
    #[error("no invite code was given")]
    Empty,
    /// Not of the form number-word-word.
    #[error("that is not an invite code: codes look like 7-guitarist-revenge (a number and words, joined by dashes)")]
    Malformed,
}

impl std::str::FromStr for InviteCode {
    type Err = InviteCodeError;

    /// Accepts what people type: spaces for dashes, capitals, surrounding blanks.
    fn from_str(typed: &str) -> Result<Self, Self::Err> {
        let words: Vec<String> = typed
            .split(|c: char| c == '-' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let Some((number, rest)) = words.split_first() else {
            return Err(InviteCodeError::Empty);
        };
        let shaped = !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && !rest.is_empty()
            && rest
                .iter()
                .all(|w| w.bytes().all(|b| b.is_ascii_lowercase()));
        if !shaped {
            return Err(InviteCodeError::Malformed);
        }
        words
            .join("-")
            .parse::<Code>()
            .map(Self)
            .map_err(|_| InviteCodeError::Malformed)
    }
}

/// Why an invite did not go through. The texts are for the user; none quotes the code or the
/// description.
#[derive(Debug, Error)]
pub enum InviteError {
    /// The mailbox server could not be reached or broke the connection.
    #[error("cannot reach the invite mailbox server at {url}: {reason}")]
    Mailbox {
        /// The server's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The code names no open invite on the server.
    #[error("no invite is waiting under that code: it may have been used already, expired, or been cancelled by the grid's operator; ask for a new one")]
    UnknownCode,
    /// The two sides used different codes (mistyped, or someone guessed).
    #[error("the invite code did not match the operator's: it was mistyped (or someone else tried it). The code is used up now; ask for a new one")]
    WrongCode,
    /// The other side went away or stopped answering.
    #[error("the other side of the invite {0}")]
    PeerGone(&'static str),
    /// The other side spoke something we do not understand.
    #[error("the other side of the invite sent something unexpected ({0}); is it a Tahoe Notifier invite?")]
    Protocol(&'static str),
    /// What arrived is not a usable grid description.
    #[error("the invite's grid description is not usable: {0}")]
    BadDescription(String),
    /// The user's side could not import the grid and said why.
    #[error("the user's side could not join: {0}")]
    Refused(String),
}

fn app_config(mailbox_url: &str) -> AppConfig<Value> {
    AppConfig {
        id: AppID::new(APP_ID),
        rendezvous_url: Cow::Owned(mailbox_url.to_owned()),
        app_version: json!({ "grid-invite": EXCHANGE_VERSION }),
    }
}

fn mailbox_error(url: &str, error: &WormholeError) -> InviteError {
    match error {
        WormholeError::UnclaimedNameplate(_) => InviteError::UnknownCode,
        WormholeError::PakeFailed | WormholeError::Crypto => InviteError::WrongCode,
        other => InviteError::Mailbox {
            url: url.to_owned(),
            // magic-wormhole's errors name servers and protocol steps, never codes or payloads.
            reason: describe_wormhole_error(other),
        },
    }
}

fn describe_wormhole_error(error: &WormholeError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    clean_line(&text, MAX_REASON_CHARS)
}

fn peer_error(url: &str, error: WormholeError) -> InviteError {
    match error {
        WormholeError::PakeFailed | WormholeError::Crypto => InviteError::WrongCode,
        WormholeError::ServerError(_) => {
            InviteError::PeerGone("left (or the mailbox server closed the invite)")
        }
        other => mailbox_error(url, &other),
    }
}

/// An open invite on the operator's side: a mailbox and its code, waiting for one user.
pub struct Invitation {
    mailbox: MailboxConnection<Value>,
    url: String,
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("mailbox_url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How an invite that went through ended, on the operator's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The grid's name as the user's side imported it.
    pub grid: String,
}

impl Invitation {
    /// Opens a mailbox on the server at `mailbox_url` and makes a code for it.
    pub async fn create(mailbox_url: &str) -> Result<Self, InviteError> {
        let mailbox = MailboxConnection::create(app_config(mailbox_url), CODE_WORDS)
            .await
            .map_err(|e| mailbox_error(mailbox_url, &e))?;
        Ok(Self {
            mailbox,
            url: mailbox_url.to_owned(),
        })
    }

    /// The code to read out to the user.
    pub fn code(&self) -> InviteCode {
        InviteCode(self.mailbox.code().clone())
    }

    /// Waits (without a limit: the user may take a while to type the code) for the user's side,
    /// hands it `grid` and waits for its answer.
    pub async fn deliver(self, grid: &GridFile) -> Result<Joined, InviteError> {
        let url = self.url;
        let mut wormhole = Wormhole::connect(self.mailbox)
            .await
            .map_err(|e| peer_error(&url, e))?;
        check_peer_version(&wormhole)?;
        let description: Value = serde_json::from_str(&grid.to_json())
            .map_err(|_| InviteError::Protocol("a description that is not JSON"))?;
        wormhole
            .send_json(&json!({ "grid-description": description }))
            .await
            .map_err(|e| peer_error(&url, e))?;
        let answer = wormhole.receive_json::<Value>().await;
        let _ = wormhole.close().await;
        let answer = answer
            .map_err(|e| peer_error(&url, e))?
            .map_err(|_| InviteError::Protocol("an answer that is not JSON"))?;
        if let Some(name) = answer.get("joined").and_then(Value::as_str) {
            return Ok(Joined {
                grid: clean_line(name, MAX_REASON_CHARS),
            });
        }
        match answer.get("refused").and_then(Value::as_str) {
            Some(reason) => Err(InviteError::Refused(clean_line(reason, MAX_REASON_CHARS))),
            None => Err(InviteError::Protocol(
                "an answer with neither `joined` nor `refused`",
            )),
        }
    }
}

fn check_peer_version(wormhole: &Wormhole) -> Result<(), InviteError> {
    match wormhole
        .peer_version()
        .get("grid-invite")
        .and_then(Value::as_u64)
    {
        Some(EXCHANGE_VERSION) => Ok(()),
        Some(_) => Err(InviteError::Protocol(
            "another version of the invite exchange",
        )),
        None => Err(InviteError::Protocol("no invite version")),
    }
}

/// The user's side: opens the invite `code` on the server at `mailbox_url`, takes the grid
/// description, hands it to `import` and tells the operator how that went.
///
/// `import` stores the grid and returns its name (told to the operator) with whatever the
/// caller wants back, or an error whose text (no secret in it) is told to the operator as the
/// reason. The outer `Err` is the invite failing; the inner result is `import`'s, so the
/// caller keeps its own error type.
pub async fn accept<T, E: std::fmt::Display>(
    code: &InviteCode,
    mailbox_url: &str,
    import: impl FnOnce(GridFile) -> Result<(String, T), E>,
) -> Result<Result<T, E>, InviteError> {
    let timed = |what: &'static str| InviteError::PeerGone(what);
    let mailbox = tokio::time::timeout(
        PEER_TIMEOUT,
        MailboxConnection::connect(app_config(mailbox_url), code.0.clone(), false),
    )
    .await
    .map_err(|_| timed("did not answer: the mailbox server is slow or unreachable"))?
    .map_err(|e| mailbox_error(mailbox_url, &e))?;
    let mut wormhole = tokio::time::timeout(PEER_TIMEOUT, Wormhole::connect(mailbox))
        .await
        .map_err(|_| {
            timed(
                "did not answer within 30 s: the invite was probably cancelled; ask for a new code",
            )
        })?
        .map_err(|e| peer_error(mailbox_url, e))?;
    if let Err(error) = check_peer_version(&wormhole) {
        let _ = wormhole.close().await;
        return Err(error);
    }
    let message = tokio::time::timeout(PEER_TIMEOUT, wormhole.receive_json::<Value>()).await;
    let message = match message {
        Err(_) => {
            let _ = wormhole.close().await;
            return Err(timed("sent no grid description within 30 s"));
        }
        Ok(received) => received
            .map_err(|e| peer_error(mailbox_url, e))?
            .map_err(|_| InviteError::Protocol("a message that is not JSON"))?,
    };
    let parsed = message
        .get("grid-description")
        .ok_or(InviteError::Protocol(
            "a message without a grid description",
        ))
        .and_then(|description| {
            parse_grid_file(&description.to_string())
                .map_err(|e| InviteError::BadDescription(e.to_string()))
        });
    let grid = match parsed {
        Ok(grid) => grid,
        Err(error) => {
            let _ = wormhole
                .send_json(&json!({ "refused": error.to_string() }))
                .await;
            let _ = wormhole.close().await;
            return Err(error);
        }
    };
    let outcome = import(grid);
    let answer = match &outcome {
        Ok((name, _)) => json!({ "joined": name }),
        Err(reason) => json!({ "refused": clean_line(&reason.to_string(), MAX_REASON_CHARS) }),
    };
    // The grid is stored whatever happens to this answer: the operator's side then only misses
    // the confirmation.
    if let Err(error) = wormhole.send_json(&answer).await {
        tracing::warn!(
            reason = describe_wormhole_error(&error),
            "could not confirm the invite to the operator"
        );
    }
    let _ = wormhole.close().await;
    Ok(outcome.map(|(_, value)| value))
}

/// Gives up an invite that was not delivered (the operator cancelled): the mailbox is closed,
/// so the code stops working at once rather than when the server expires it.
pub async fn cancel(invitation: Invitation) {
    let _ = invitation.mailbox.shutdown(Mood::Lonely).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_as_people_type_them() {
        for typed in [
            "7-guitarist-revenge",
            " 7 Guitarist revenge\n",
            "7-guitarist--revenge",
        ] {
            let code: InviteCode = typed.parse().unwrap();
            assert_eq!(code.reveal(), "7-guitarist-revenge");
            assert_eq!(format!("{code:?}"), "InviteCode(<redacted>)");
        }
    }

    #[test]
    fn malformed_codes_are_refused_without_being_quoted() {
        assert_eq!("".parse::<InviteCode>(), Err(InviteCodeError::Empty));
        assert_eq!("  ".parse::<InviteCode>(), Err(InviteCodeError::Empty));
        for typed in [
            "guitarist-revenge",
            "7",
            "7-",
            "x7-a-b",
            "7-gu1tar-x",
            "7-ünï-b",
        ] {
            let error = typed.parse::<InviteCode>().unwrap_err();
            // One fixed text, which cannot quote what was typed.
            assert_eq!(error, InviteCodeError::Malformed, "{typed}");
        }
    }
}
