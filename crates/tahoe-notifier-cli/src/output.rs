//! Writing results to stdout: text or JSON, with the small formatting helpers the subcommands
//! share.

use std::io::{self, Write};

use anyhow::Context as _;
use notifier_core::describe::text::clean_line;
use serde_json::Value;
use time::OffsetDateTime;

/// Longest user-supplied text (label, name, summary) shown in one table cell or line.
pub const MAX_SHOWN_CHARS: usize = 200;

/// Prints `text` (which should end with a newline) to stdout. A closed pipe (`… | head`) is not
/// an error: the reader has all it wanted.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("cannot write stdout"),
        _ => Ok(()),
    }
}

/// Prints `value` as pretty JSON followed by a newline.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode the output")?;
    text.push('\n');
    print_text(&text)
}

/// Prints one event of a command that reports as it goes (`watch`, `servers invite`): one
/// compact JSON object per line, so that a script can read them as they come.
pub fn print_json_line(value: &Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string(value).context("cannot encode the output")?;
    text.push('\n');
    print_text(&text)
}

/// Untrusted or user-given text made safe for one line of a terminal: no control characters
/// (which could move the cursor or recolour the screen), no bidi tricks, bounded length.
pub fn shown(text: &str) -> String {
    clean_line(text, MAX_SHOWN_CHARS)
}

/// Milliseconds since the epoch as RFC 3339 UTC, e.g. `2025-01-02T03:04:05.678Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{ms}ms"))
}

/// Lays out rows as columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "x y".into()],
                vec!["long-id".into(), "z".into()],
            ],
        );
        assert_eq!(text, "ID       NAME\na        x y\nlong-id  z\n");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn shown_text_has_no_controls() {
        assert_eq!(shown("a\u{1b}[31mb\nc"), "a[31mb c");
    }
}
