//! Saying what changed: a directory's or file's state as the gateway lists it ([`snapshot`]),
//! a change in words and as details for the history ([`ChangeDescription`], made by the
//! engine from two listings: `crate::engine::details`), and server- or user-supplied text
//! cleaned of control and bidi characters before anyone sees it ([`text`]).

use serde_json::Value;

pub mod snapshot;
pub mod text;

/// A change described for a notification and for the history.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeDescription {
    /// One line, e.g. "Team Docs: added report.pdf, 2 more".
    pub summary: String,
    /// A few lines with more detail (names per kind of change, sizes); may be empty.
    pub body: String,
    /// Structured details for the history's `details` column (names, counts, sizes, seqnums).
    pub details_json: Value,
    /// Whether the change happened while the client was away.
    pub while_away: bool,
}
