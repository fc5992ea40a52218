//! Operator news, in the format grid operators already publish for Gridsync.
//!
//! The grid's news read-cap (`newscap`) names a directory whose child [`NEWS_DIR_V1`] holds one
//! file per message; names sort oldest first (so the last is the newest) and the content is the
//! message text. Operators conventionally name files by UTC time, e.g.
//! `2017-10-19T18:42:23.152504.txt` ([`message_file_name`]).
//!
//! Our extension, which Gridsync simply shows as part of the text: an optional front matter at
//! the very top,
//!
//! ```text
//! ---
//! title: Scheduled maintenance
//! severity: warning
//! expires: 2025-07-01T00:00:00Z
//! ---
//!
//! The grid will be down on Sunday from 02:00 to 04:00 UTC.
//! ```
//!
//! News is untrusted input: [`parse_message`] accepts only text, keeps at most
//! [`MAX_MESSAGE_BYTES`], strips control and bidi characters, and never interprets markup. An
//! ill-formed front matter is not an error: the whole file is then an ordinary message, as
//! Gridsync would show it.

pub mod feed;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::describe::text::{clean_line, clean_multiline};

/// The child of the news directory that holds version-1 messages.
pub const NEWS_DIR_V1: &str = "v1";
/// A child reserved by Gridsync for a future format: its presence means "upgrade required".
pub const NEWS_DIR_V2: &str = "v2";
/// Most bytes of a message that are kept; the rest is cut off.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest title kept, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Most lines a front matter may have; a longer block is taken as ordinary text.
const MAX_FRONT_MATTER_LINES: usize = 20;
/// The line that opens and closes a front matter.
const FENCE: &str = "---";

/// How important a message is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Ordinary news (the default).
    #[default]
    Info,
    /// Something users should act on or plan for.
    Warning,
    /// Service is affected now.
    Critical,
}

impl Severity {
    /// The front-matter spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity other than info, warning or critical.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown severity: use info, warning or critical")]
pub struct UnknownSeverity;

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(Self::Info),
            "warning" => Ok(Self::Warning),
            "critical" => Ok(Self::Critical),
            _ => Err(UnknownSeverity),
        }
    }
}

/// Why a message could not be read or written.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NewsError {
    /// The file is not UTF-8 text (or holds NUL bytes): probably not a message at all.
    #[error("news message `{name}` is not text (binary or not UTF-8); it is ignored")]
    NotText {
        /// The file name, cleaned for display.
        name: String,
    },
    /// A title for publishing has line breaks or control characters, or is too long.
    #[error("the title must be one line of at most {MAX_TITLE_CHARS} characters without control characters")]
    BadTitle,
    /// The message text for publishing is empty or too long.
    #[error("the message text must be non-empty and at most {MAX_MESSAGE_BYTES} bytes")]
    BadBody,
    /// The expiry could not be written as RFC 3339.
    #[error("the expiry time cannot be written as RFC 3339")]
    BadExpiry,
}

/// A news message as read from the grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewsMessage {
    /// The file name in the news directory (as given; clean it before showing).
    pub name: String,
    /// Title from the front matter, if any.
    pub title: Option<String>,
    /// Severity from the front matter; info when absent or unknown.
    pub severity: Severity,
    /// Expiry from the front matter, if any and valid.
    pub expires: Option<OffsetDateTime>,
    /// The text, cleaned.
    pub body: String,
    /// Whether the file was longer than [`MAX_MESSAGE_BYTES`] and was cut.
    pub truncated: bool,
}

impl NewsMessage {
    /// Whether the message has expired at `now` (and should no longer be shown as new).
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    /// When it was published, if its name follows the timestamp convention.
    pub fn published_at(&self) -> Option<OffsetDateTime> {
        parse_message_file_name(&self.name)
    }

    /// A one-line heading: the title, or else the first non-empty line of the text.
    pub fn heading(&self) -> String {
        match &self.title {
            Some(t) => t.clone(),
            None => clean_line(
                self.body
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or(""),
                MAX_TITLE_CHARS,
            ),
        }
    }
}

/// Parses the file `name` with content `raw` from the news directory.
pub fn parse_message(name: &str, raw: &[u8]) -> Result<NewsMessage, NewsError> {
    let not_text = || NewsError::NotText {
        name: clean_line(name, 100),
    };
    let truncated = raw.len() > MAX_MESSAGE_BYTES;
    let kept = &raw[..raw.len().min(MAX_MESSAGE_BYTES)];
    if kept.contains(&0) {
        return Err(not_text());
    }
    let text = match std::str::from_utf8(kept) {
        Ok(t) => t,
        // The cut may split a character: keep what precedes it.
        Err(e) if truncated && e.error_len().is_none() => {
            std::str::from_utf8(&kept[..e.valid_up_to()]).map_err(|_| not_text())?
        }
        Err(_) => return Err(not_text()),
    };
    let text = clean_multiline(text.strip_prefix('\u{FEFF}').unwrap_or(text));

    let (front, body) = split_front_matter(&text);
    let mut message = NewsMessage {
        name: name.to_owned(),
        title: None,
        severity: Severity::Info,
        expires: None,
        body: body.trim_matches('\n').trim_end().to_owned(),
        truncated,
    };
    for (key, value) in front {
        match key.to_ascii_lowercase().as_str() {
            "title" => {
                let title = clean_line(value, MAX_TITLE_CHARS);
                message.title = (!title.is_empty()).then_some(title);
            }
            // Lenient on purpose: a typo by the operator should not hide the message.
            "severity" => message.severity = value.parse().unwrap_or_default(),
            "expires" => message.expires = OffsetDateTime::parse(value, &Rfc3339).ok(),
            _ => {}
        }
    }
    Ok(message)
}

/// Splits a well-formed front matter from the text: `(key/value pairs, rest)`. Text without one,
/// or with a malformed one, is all body.
fn split_front_matter(text: &str) -> (Vec<(&str, &str)>, &str) {
    let Some(after_open) = text.strip_prefix(FENCE).and_then(|t| {
        // The fence must be alone on its line (trailing spaces allowed).
        let (line_rest, rest) = t.split_once('\n')?;
        line_rest.trim().is_empty().then_some(rest)
    }) else {
        return (Vec::new(), text);
    };
    let mut pairs = Vec::new();
    let mut rest = after_open;
    for _ in 0..=MAX_FRONT_MATTER_LINES {
        let (line, next) = rest.split_once('\n').unwrap_or((rest, ""));
        if line.trim_end() == FENCE {
            return (pairs, next);
        }
        if !line.trim().is_empty() {
            match parse_pair(line) {
                Some(pair) => pairs.push(pair),
                None => return (Vec::new(), text),
            }
        }
        if next.is_empty() {
            break;
        }
        rest = next;
    }
    (Vec::new(), text)
}

fn parse_pair(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let key = key.trim();
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    let value = value.trim();
    // Allow YAML-style quoting of one value.
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(value);
    Some((key, unquoted))
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewsDraft {
    /// Optional title (one line).
    pub title: Option<String>,
    /// Severity; info is the default and is written only when a front matter is needed anyway.
    pub severity: Severity,
    /// Optional expiry.
    pub expires: Option<OffsetDateTime>,
    /// The text.
    pub body: String,
}

/// Renders a draft as the content of a message file: a front matter when there is anything to
/// put in it, then the text. Gridsync shows the result as it is.
pub fn render_message(draft: &NewsDraft) -> Result<String, NewsError> {
    let body = clean_multiline(&draft.body);
    let body = body.trim_matches('\n').trim_end();
    if body.is_empty() || body.len() > MAX_MESSAGE_BYTES {
        return Err(NewsError::BadBody);
    }
    let title = match &draft.title {
        Some(t) => {
            let t = t.trim();
            if t.chars().any(char::is_control) || t.chars().count() > MAX_TITLE_CHARS {
                return Err(NewsError::BadTitle);
            }
            (!t.is_empty()).then_some(t)
        }
        None => None,
    };
    let mut lines = Vec::new();
    if let Some(t) = title {
        // Quote when the parser would otherwise strip quotes that belong to the title.
        if t.starts_with(['"', '\'']) || t.ends_with(['"', '\'']) {
            lines.push(format!("title: \"{t}\""));
        } else {
            lines.push(format!("title: {t}"));
        }
    }
    if draft.severity != Severity::Info {
        lines.push(format!("severity: {}", draft.severity));
    }
    if let Some(e) = draft.expires {
        let e = e
            .to_offset(UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(|_| NewsError::BadExpiry)?;
        lines.push(format!("expires: {e}"));
    }
    // A text that itself starts with a fence gets an (empty) front matter, so that it is not
    // mistaken for one when read back.
    let mut out = String::new();
    if !lines.is_empty() || body.starts_with(FENCE) {
        out.push_str(FENCE);
        out.push('\n');
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str(FENCE);
        out.push_str("\n\n");
    }
    out.push_str(body);
    out.push('\n');
    // Readers keep only the first MAX_MESSAGE_BYTES of a file: with the front matter, a body
    // near the limit would come back cut.
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(NewsError::BadBody);
    }
    Ok(out)
}

/// The conventional file name for a message published at `at`: UTC time with microseconds,
/// e.g. `2017-10-19T18:42:23.152504.txt`. Names of this form sort in time order.
pub fn message_file_name(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}.txt",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// The time in a conventional message file name (with or without microseconds and `.txt`),
/// read as UTC; `None` for any other name.
pub fn parse_message_file_name(name: &str) -> Option<OffsetDateTime> {
    let stem = name.strip_suffix(".txt").unwrap_or(name);
    let with_micros =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]");
    let plain = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(stem, with_micros)
        .or_else(|_| PrimitiveDateTime::parse(stem, plain))
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NAME: &str = "2025-06-01T12:00:00.000000.txt";

    #[test]
    fn plain_gridsync_message() {
        let m = parse_message(NAME, b"Welcome to the grid!\r\nSecond line.\r\n").unwrap();
        assert_eq!(m.title, None);
        assert_eq!(m.severity, Severity::Info);
        assert_eq!(m.expires, None);
        assert_eq!(m.body, "Welcome to the grid!\nSecond line.");
        assert_eq!(m.heading(), "Welcome to the grid!");
        assert!(!m.truncated);
        assert_eq!(m.published_at(), Some(datetime!(2025-06-01 12:00 UTC)));
    }

    #[test]
    fn full_front_matter() {
        let raw = "---\ntitle: Scheduled maintenance\nseverity: Warning\nexpires: 2025-07-01T02:00:00+02:00\n---\n\nDown on Sunday.\n";
        let m = parse_message(NAME, raw.as_bytes()).unwrap();
        assert_eq!(m.title.as_deref(), Some("Scheduled maintenance"));
        assert_eq!(m.severity, Severity::Warning);
        assert_eq!(m.expires, Some(datetime!(2025-07-01 00:00 UTC)));
        assert_eq!(m.body, "Down on Sunday.");
        assert_eq!(m.heading(), "Scheduled maintenance");
    }

    #[test]
    fn front_matter_variants() {
        // Only severity, quoted values, unknown keys, blank lines, CRLF.
        let m = parse_message(
            NAME,
            b"---\r\nseverity: 'critical'\r\n\r\nauthor: ops\r\ntitle: \"Outage\"\r\n---\r\nNow.",
        )
        .unwrap();
        assert_eq!(m.severity, Severity::Critical);
        assert_eq!(m.title.as_deref(), Some("Outage"));
        assert_eq!(m.body, "Now.");
        // Unknown severity and bad expiry are ignored, not fatal.
        let m = parse_message(NAME, b"---\nseverity: apocalyptic\nexpires: soon\n---\nHi").unwrap();
        assert_eq!(m.severity, Severity::Info);
        assert_eq!(m.expires, None);
        assert_eq!(m.body, "Hi");
        // Empty front matter.
        let m = parse_message(NAME, b"---\n---\n--- not a fence").unwrap();
        assert_eq!(m.body, "--- not a fence");
    }

    #[test]
    fn malformed_front_matter_is_plain_text() {
        for raw in [
            "---\ntitle: no closing fence\nbody",
            "---\nthis line is not a pair\n---\nbody",
            "--- title: same line\n---\nbody",
            "---",
        ] {
            let m = parse_message(NAME, raw.as_bytes()).unwrap();
            assert_eq!(m.title, None, "{raw}");
            assert_eq!(m.body, raw.trim_end(), "{raw}");
        }
        // A fence too far down is not a front matter either.
        let long = format!("---\n{}---\nbody", "a: b\n".repeat(30));
        assert_eq!(parse_message(NAME, long.as_bytes()).unwrap().title, None);
    }

    #[test]
    fn control_characters_are_stripped() {
        let m = parse_message(
            NAME,
            "---\ntitle: Bad\u{1b}[31m title\u{202E}\n---\nx\u{7}y\u{0085}z <b>bold</b>".as_bytes(),
        )
        .unwrap();
        assert_eq!(m.title.as_deref(), Some("Bad[31m title"));
        // Markup is kept as text, not interpreted.
        assert_eq!(m.body, "xyz <b>bold</b>");
    }

    #[test]
    fn binary_input_is_refused() {
        let err = parse_message("img\n.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap_err();
        assert_eq!(
            err,
            NewsError::NotText {
                name: "img .png".into()
            }
        );
        assert!(parse_message(NAME, b"caf\xe9 latin-1").is_err());
    }

    #[test]
    fn oversized_input_is_cut_at_a_character_boundary() {
        let mut raw = "é".repeat(MAX_MESSAGE_BYTES); // 2 bytes each
        raw.insert(0, 'a'); // make the cut fall inside a character
        let m = parse_message(NAME, raw.as_bytes()).unwrap();
        assert!(m.truncated);
        assert!(m.body.len() <= MAX_MESSAGE_BYTES);
        assert!(m.body.len() >= MAX_MESSAGE_BYTES - 2);
    }

    #[test]
    fn expiry_in_the_past() {
        let m = parse_message(NAME, b"---\nexpires: 2020-01-01T00:00:00Z\n---\nold").unwrap();
        assert!(m.is_expired(datetime!(2025-01-01 00:00 UTC)));
        assert!(!m.is_expired(datetime!(2019-12-31 23:59 UTC)));
        let forever = parse_message(NAME, b"no expiry").unwrap();
        assert!(!forever.is_expired(datetime!(2999-01-01 00:00 UTC)));
    }

    #[test]
    fn render_round_trips() {
        let draft = NewsDraft {
            title: Some("Maintenance".into()),
            severity: Severity::Critical,
            expires: Some(datetime!(2025-07-01 02:00 +2)),
            body: "Line one.\nLine two.".into(),
        };
        let text = render_message(&draft).unwrap();
        assert_eq!(
            text,
            "---\ntitle: Maintenance\nseverity: critical\nexpires: 2025-07-01T00:00:00Z\n---\n\nLine one.\nLine two.\n"
        );
        let m = parse_message(NAME, text.as_bytes()).unwrap();
        assert_eq!(m.title, draft.title);
        assert_eq!(m.severity, draft.severity);
        assert_eq!(m.expires, draft.expires);
        assert_eq!(m.body, draft.body);

        // No metadata: a plain Gridsync message.
        let plain = NewsDraft {
            body: "Hello".into(),
            ..Default::default()
        };
        assert_eq!(render_message(&plain).unwrap(), "Hello\n");

        // Quoted titles and bodies that start with a fence survive.
        let tricky = NewsDraft {
            title: Some("\"quoted\"".into()),
            body: "---\nnot: front matter\n---\ntext".into(),
            ..Default::default()
        };
        let m = parse_message(NAME, render_message(&tricky).unwrap().as_bytes()).unwrap();
        assert_eq!(m.title.as_deref(), Some("\"quoted\""));
        assert_eq!(m.body, tricky.body);
        let no_title = NewsDraft {
            body: "---\nnot: front matter\n---\ntext".into(),
            ..Default::default()
        };
        let m = parse_message(NAME, render_message(&no_title).unwrap().as_bytes()).unwrap();
        assert_eq!(m.body, no_title.body);
    }

    #[test]
    fn render_refuses_bad_drafts() {
        let bad_title = NewsDraft {
            title: Some("two\nlines".into()),
            body: "x".into(),
            ..Default::default()
        };
        assert_eq!(render_message(&bad_title), Err(NewsError::BadTitle));
        assert_eq!(
            render_message(&NewsDraft::default()),
            Err(NewsError::BadBody)
        );
    }

    #[test]
    fn file_names_are_utc_timestamps_that_sort() {
        let a = message_file_name(datetime!(2017-10-19 20:42:23.152504 +2));
        assert_eq!(a, "2017-10-19T18:42:23.152504.txt");
        let b = message_file_name(datetime!(2017-10-19 18:42:23.152505 UTC));
        assert!(a < b);
        assert_eq!(
            parse_message_file_name(&a),
            Some(datetime!(2017-10-19 18:42:23.152504 UTC))
        );
        assert_eq!(
            parse_message_file_name("2017-09-25T17:56:35"),
            Some(datetime!(2017-09-25 17:56:35 UTC))
        );
        assert_eq!(parse_message_file_name("welcome.txt"), None);
    }
}
