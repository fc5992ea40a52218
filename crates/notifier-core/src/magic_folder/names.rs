//! What a change of a participant's personal directory means to a person: which files, under
//! their real relative paths.
//!
//! magic-folder names each entry of a personal directory after the file's relative path with
//! `/` written `@_` and `@` written `@@` (`magic_folder/magicpath.py`, `path2magic`), and keeps
//! its own `@metadata` entry beside them. [`unmangle`] undoes the first; [`FileChanges`] drops
//! the second.

use serde_json::Value;

use crate::describe::text::clean_line;

/// magic-folder's own entry in every personal directory; not a file of the folder.
pub const METADATA_ENTRY: &str = "@metadata";

/// Longest file name shown in a summary line.
const MAX_SHOWN_NAME: usize = 60;
/// Most file names listed per body line.
const MAX_BODY_NAMES: usize = 10;

/// The relative path a personal-directory entry stands for (`sub@_report@@1.txt` →
/// `sub/report@1.txt`). A name that is not a valid mangling (a lone `@` followed by anything
/// else) is returned unchanged: showing it is better than hiding the change.
pub fn unmangle(entry: &str) -> String {
    let mut out = String::with_capacity(entry.len());
    let mut chars = entry.chars();
    while let Some(c) = chars.next() {
        if c != '@' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('_') => out.push('/'),
            Some('@') => out.push('@'),
            _ => return entry.to_owned(),
        }
    }
    out
}

/// The files a participant added, updated and removed, by relative path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileChanges {
    /// New files.
    pub added: Vec<String>,
    /// Files with a new version.
    pub updated: Vec<String>,
    /// Files deleted.
    pub removed: Vec<String>,
    /// How many changed in all (the names above may be cut short in the history's details).
    pub total: usize,
    /// Whether the names are unknown (no earlier listing to compare with).
    pub unknown: bool,
}

impl FileChanges {
    /// From a change's details as the engine records them (`added`, `modified`, `removed`
    /// names and `counts`; `first_snapshot` when there was nothing to compare with).
    pub fn from_details(details: &Value) -> FileChanges {
        let names = |key: &str| -> Vec<String> {
            details
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter(|name| *name != METADATA_ENTRY)
                        .map(unmangle)
                        .collect()
                })
                .unwrap_or_default()
        };
        let added = names("added");
        let updated = names("modified");
        let removed = names("removed");
        let metadata_changes = ["added", "modified", "removed"]
            .iter()
            .filter(|key| {
                details
                    .get(**key)
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|n| n.as_str() == Some(METADATA_ENTRY)))
            })
            .count();
        let counted: usize = ["added", "modified", "removed"]
            .iter()
            .filter_map(|key| details.pointer(&format!("/counts/{key}"))?.as_u64())
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .fold(0usize, usize::saturating_add);
        let listed = added.len() + updated.len() + removed.len();
        let total = counted.saturating_sub(metadata_changes).max(listed);
        let unknown = details.get("kind").and_then(Value::as_str) != Some("directory")
            || details.get("first_snapshot").and_then(Value::as_bool) == Some(true)
            || details.get("added").is_none();
        FileChanges {
            added,
            updated,
            removed,
            total,
            unknown,
        }
    }

    /// Whether no file changed (only magic-folder's metadata, or nothing visible).
    pub fn is_empty(&self) -> bool {
        !self.unknown && self.total == 0
    }

    /// Every named path, added, updated then removed.
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.added.iter().chain(&self.updated).chain(&self.removed)
    }

    /// One line: `Shared: alice added report.txt, 2 more`.
    pub fn summary(&self, folder: &str, participant: &str) -> String {
        let folder = clean_line(folder, MAX_SHOWN_NAME);
        let participant = clean_line(participant, MAX_SHOWN_NAME);
        if self.unknown {
            return format!("{folder}: {participant} changed files");
        }
        let mut parts = Vec::new();
        for (verb, names) in [
            ("added", &self.added),
            ("updated", &self.updated),
            ("removed", &self.removed),
        ] {
            if let Some(first) = names.first() {
                parts.push(format!("{verb} {}", clean_line(first, MAX_SHOWN_NAME)));
            }
        }
        let rest = self.total.saturating_sub(parts.len());
        if rest > 0 {
            parts.push(format!("{rest} more"));
        }
        format!("{folder}: {participant} {}", parts.join(", "))
    }

    /// A few lines naming the files per kind of change.
    pub fn body(&self) -> String {
        let mut lines = Vec::new();
        for (verb, names) in [
            ("Added", &self.added),
            ("Updated", &self.updated),
            ("Removed", &self.removed),
        ] {
            if names.is_empty() {
                continue;
            }
            let mut shown: Vec<String> = names
                .iter()
                .take(MAX_BODY_NAMES)
                .map(|n| clean_line(n, MAX_SHOWN_NAME))
                .collect();
            if names.len() > MAX_BODY_NAMES {
                shown.push(format!("{} more", names.len() - MAX_BODY_NAMES));
            }
            lines.push(format!("{verb}: {}", shown.join(", ")));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn mangled_names_become_relative_paths() {
        assert_eq!(unmangle("top.txt"), "top.txt");
        assert_eq!(unmangle("sub@_report@@1.txt"), "sub/report@1.txt");
        assert_eq!(unmangle("a@_b@_c"), "a/b/c");
        assert_eq!(unmangle("odd@x"), "odd@x");
        assert_eq!(unmangle("trailing@"), "trailing@");
    }

    #[test]
    fn metadata_is_not_a_file_and_names_are_unmangled() {
        let details = json!({"kind": "directory", "added": ["@metadata", "sub@_a.txt"],
            "modified": ["b.txt"], "removed": [],
            "counts": {"added": 2, "modified": 1, "removed": 0}});
        let changes = FileChanges::from_details(&details);
        assert_eq!(changes.added, vec!["sub/a.txt"]);
        assert_eq!(changes.updated, vec!["b.txt"]);
        assert_eq!(changes.total, 2);
        assert_eq!(
            changes.summary("Shared", "alice"),
            "Shared: alice added sub/a.txt, updated b.txt"
        );
        assert_eq!(changes.body(), "Added: sub/a.txt\nUpdated: b.txt");
        let only_metadata = json!({"kind": "directory", "added": [], "modified": ["@metadata"],
            "removed": [], "counts": {"added": 0, "modified": 1, "removed": 0}});
        assert!(FileChanges::from_details(&only_metadata).is_empty());
    }

    #[test]
    fn counts_beyond_the_listed_names_are_summed_up() {
        let details = json!({"kind": "directory", "added": ["a", "b"], "modified": [],
            "removed": [], "counts": {"added": 25, "modified": 0, "removed": 0}});
        let changes = FileChanges::from_details(&details);
        assert_eq!(changes.summary("F", "bob"), "F: bob added a, 24 more");
        let first = json!({"kind": "directory", "first_snapshot": true, "children": 3});
        let changes = FileChanges::from_details(&first);
        assert!(changes.unknown && !changes.is_empty());
        assert_eq!(changes.summary("F", "bob"), "F: bob changed files");
    }
}
