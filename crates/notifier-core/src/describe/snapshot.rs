//! What changed in a watched directory or file.
//!
//! A [`Snapshot`] is made from the gateway's `GET /uri/$CAP?t=json` answer
//! (`["dirnode", {"children": {name: [type, {ro_uri, rw_uri?, size?, metadata}]}, …}]` or
//! `["filenode", {"size": …, …}]`). It keeps, per child, the name, kind, size, link
//! modification time and a SHA-256 of the child's cap, never the cap itself, so snapshots can be
//! stored outside the keyring. [`diff`] compares two snapshots of a directory, and [`summarize`]
//! turns the result into one line such as "Team Docs: added report.pdf, 2 more" plus structured
//! details for the history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::describe::text::clean_line;

/// Largest `?t=json` answer accepted (a directory of 1,000 children is about 273 KB).
pub const MAX_LISTING_BYTES: usize = 32 * 1024 * 1024;

/// Most names kept per list in a change's details.
pub const MAX_DETAIL_NAMES: usize = 100;

/// Longest child name or label shown in a summary line, in characters.
const MAX_SHOWN_NAME: usize = 60;

/// Domain-separation prefix for child-cap hashes, so they match no other SHA-256 of a cap.
const CAP_HASH_PREFIX: &[u8] = b"tahoe-notifier child cap v1:";

/// Why a `?t=json` answer could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Larger than [`MAX_LISTING_BYTES`].
    #[error("the gateway's listing is {size} bytes, more than the {MAX_LISTING_BYTES} accepted")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not JSON. Only the position is given, never content (the answer holds caps).
    #[error("the gateway's listing is not valid JSON (line {line}, column {column})")]
    NotJson {
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
    },
    /// JSON, but not the shape Tahoe's web API gives.
    #[error("the gateway's listing has an unexpected shape: {0}")]
    Shape(&'static str),
}

/// What a directory child is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildKind {
    /// A directory.
    Directory,
    /// A file.
    File,
    /// Something the gateway could not classify.
    Unknown,
}

/// One child of a directory, without its cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildSnapshot {
    /// Directory, file or unknown.
    pub kind: ChildKind,
    /// Size in bytes, when the gateway gives one (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// When the link was last changed (Tahoe's `linkmotime`, seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<f64>,
    /// Hex SHA-256 (domain-separated) of the child's cap: tells a replaced child from the same
    /// one without storing the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_sha256: Option<String>,
}

/// The state of a watched cap at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Snapshot {
    /// A directory's children by name.
    Directory {
        /// Children, sorted by name.
        children: BTreeMap<String, ChildSnapshot>,
    },
    /// A file.
    File {
        /// Size in bytes, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
}

/// Parses the gateway's `?t=json` answer into a snapshot.
pub fn parse_listing(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    if bytes.len() > MAX_LISTING_BYTES {
        return Err(SnapshotError::TooLarge { size: bytes.len() });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| SnapshotError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let (node_type, info) = node_pair(&value).ok_or(SnapshotError::Shape(
        "expected a two-element array [type, info]",
    ))?;
    match node_type {
        "dirnode" => {
            let children = info
                .get("children")
                .and_then(Value::as_object)
                .ok_or(SnapshotError::Shape("a dirnode without a children object"))?;
            let mut out = BTreeMap::new();
            for (name, child) in children {
                let (child_type, child_info) = node_pair(child).ok_or(SnapshotError::Shape(
                    "a child that is not a [type, info] array",
                ))?;
                out.insert(name.clone(), child_snapshot(child_type, child_info));
            }
            Ok(Snapshot::Directory { children: out })
        }
        "filenode" => Ok(Snapshot::File {
            size: info.get("size").and_then(Value::as_u64),
        }),
        _ => Err(SnapshotError::Shape(
            "the node is neither a dirnode nor a filenode",
        )),
    }
}

fn node_pair(value: &Value) -> Option<(&str, &Map<String, Value>)> {
    match value.as_array()?.as_slice() {
        [kind, info] => Some((kind.as_str()?, info.as_object()?)),
        _ => None,
    }
}

fn child_snapshot(child_type: &str, info: &Map<String, Value>) -> ChildSnapshot {
    let kind = match child_type {
        "dirnode" => ChildKind::Directory,
        "filenode" => ChildKind::File,
        _ => ChildKind::Unknown,
    };
    // The read-only cap is what every viewer of the directory sees; the write cap only appears
    // for holders of a write cap to the parent. Prefer the former so the hash does not depend on
    // which cap we hold.
    let cap = info
        .get("ro_uri")
        .and_then(Value::as_str)
        .or_else(|| info.get("rw_uri").and_then(Value::as_str));
    let metadata = info.get("metadata");
    let mtime = metadata
        .and_then(|m| m.get("tahoe"))
        .and_then(|t| t.get("linkmotime"))
        .and_then(Value::as_f64)
        // Older Tahoe versions wrote a plain `mtime`.
        .or_else(|| {
            metadata
                .and_then(|m| m.get("mtime"))
                .and_then(Value::as_f64)
        });
    ChildSnapshot {
        kind,
        size: info.get("size").and_then(Value::as_u64),
        mtime,
        cap_sha256: cap.map(hash_cap),
    }
}

/// The hex SHA-256 under which a child's cap is remembered.
pub fn hash_cap(cap: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(CAP_HASH_PREFIX);
    hasher.update(cap.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a directory changed between two snapshots. Names are sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirDiff {
    /// Names that appeared.
    pub added: Vec<String>,
    /// Names that disappeared.
    pub removed: Vec<String>,
    /// Names whose child changed: another cap, kind, size or link time.
    pub modified: Vec<String>,
}

impl DirDiff {
    /// Whether nothing visible changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.modified.is_empty()
    }

    /// How many children changed in any way.
    pub fn len(&self) -> usize {
        self.added.len() + self.removed.len() + self.modified.len()
    }
}

/// Compares two snapshots of a directory. A file snapshot on either side counts as an empty
/// directory.
pub fn diff(old: &Snapshot, new: &Snapshot) -> DirDiff {
    let empty = BTreeMap::new();
    let old = dir_children(old).unwrap_or(&empty);
    let new = dir_children(new).unwrap_or(&empty);
    let mut out = DirDiff::default();
    for (name, child) in new {
        match old.get(name) {
            None => out.added.push(name.clone()),
            Some(before) if before != child => out.modified.push(name.clone()),
            Some(_) => {}
        }
    }
    out.removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .cloned()
        .collect();
    out
}

fn dir_children(s: &Snapshot) -> Option<&BTreeMap<String, ChildSnapshot>> {
    match s {
        Snapshot::Directory { children } => Some(children),
        Snapshot::File { .. } => None,
    }
}

/// A change described for people and for the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// One line, e.g. "Team Docs: added report.pdf, 2 more".
    pub text: String,
    /// Structured details (names, counts, sizes) for the history's `details` column.
    pub details: Value,
}

/// Describes a change of the cap labelled `label`, from the previous snapshot (if any) to the
/// new one.
pub fn summarize(label: &str, old: Option<&Snapshot>, new: &Snapshot) -> Summary {
    let label = clean_line(label, MAX_SHOWN_NAME);
    match (old, new) {
        (_, Snapshot::File { size }) => {
            let previous = match old {
                Some(Snapshot::File { size }) => *size,
                _ => None,
            };
            let text = match size {
                Some(size) => format!("{label}: changed, now {}", human_size(*size)),
                None => format!("{label}: changed"),
            };
            Summary {
                text,
                details: json!({"kind": "file", "size": size, "previous_size": previous}),
            }
        }
        (None, Snapshot::Directory { children }) => Summary {
            // Nothing to compare with (first look at this directory).
            text: format!("{label}: changed"),
            details: json!({"kind": "directory", "first_snapshot": true, "children": children.len()}),
        },
        (Some(old), Snapshot::Directory { .. }) => {
            let d = diff(old, new);
            Summary {
                text: dir_summary_text(&label, &d),
                details: dir_details(&d),
            }
        }
    }
}

fn dir_summary_text(label: &str, d: &DirDiff) -> String {
    if d.is_empty() {
        return format!("{label}: changed (no visible difference in the listing)");
    }
    // The first name of each non-empty group, then a count of the rest.
    let mut parts = Vec::new();
    for (verb, names) in [
        ("added", &d.added),
        ("modified", &d.modified),
        ("removed", &d.removed),
    ] {
        if let Some(first) = names.first() {
            parts.push(format!("{verb} {}", clean_line(first, MAX_SHOWN_NAME)));
        }
    }
    let rest = d.len() - parts.len();
    if rest > 0 {
        parts.push(format!("{rest} more"));
    }
    format!("{label}: {}", parts.join(", "))
}

fn dir_details(d: &DirDiff) -> Value {
    // Names are what the page shows in Activity: cleaned as the summary is, so that a name like
    // `invoice\u{202E}fdp.exe` cannot pose as `invoiceexe.pdf` there (the review's finding 21).
    let first = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .take(MAX_DETAIL_NAMES)
            .map(|n| crate::describe::text::clean_line(n, 255))
            .collect()
    };
    json!({
        "kind": "directory",
        "added": first(&d.added),
        "removed": first(&d.removed),
        "modified": first(&d.modified),
        "counts": {"added": d.added.len(), "removed": d.removed.len(), "modified": d.modified.len()},
    })
}

/// A size for people: "1 byte", "512 bytes", "12.3 kB", "4.0 MB" (powers of 1000).
pub fn human_size(bytes: u64) -> String {
    match bytes {
        1 => "1 byte".to_owned(),
        0..1000 => format!("{bytes} bytes"),
        _ => {
            let units = ["kB", "MB", "GB", "TB", "PB", "EB"];
            // Precision loss above 2^53 bytes is irrelevant for one decimal.
            #[allow(clippy::cast_precision_loss)]
            let mut value = bytes as f64 / 1000.0;
            let mut unit = 0;
            while value >= 999.95 && unit + 1 < units.len() {
                value /= 1000.0;
                unit += 1;
            }
            format!("{value:.1} {}", units[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR_FIXTURE: &str = include_str!("../../tests/fixtures/dir_t_json.json");
    const FILE_FIXTURE: &str = include_str!("../../tests/fixtures/file_t_json.json");

    fn dir() -> Snapshot {
        parse_listing(DIR_FIXTURE.as_bytes()).unwrap()
    }

    fn children(s: &Snapshot) -> &BTreeMap<String, ChildSnapshot> {
        match s {
            Snapshot::Directory { children } => children,
            Snapshot::File { .. } => panic!("not a directory"),
        }
    }

    #[test]
    fn parses_a_real_dirnode_listing() {
        let s = dir();
        let c = children(&s);
        assert_eq!(
            c.keys().collect::<Vec<_>>(),
            vec!["Photos", "notes.txt", "report.pdf", "tiny.txt"]
        );
        let report = &c["report.pdf"];
        assert_eq!(report.kind, ChildKind::File);
        assert_eq!(report.size, Some(123_456));
        assert_eq!(report.mtime, Some(1_718_000_000.123_456));
        assert_eq!(report.cap_sha256.as_ref().unwrap().len(), 64);
        assert_eq!(c["Photos"].kind, ChildKind::Directory);
        assert_eq!(c["Photos"].size, None);
        assert_eq!(c["notes.txt"].mtime, Some(1_718_000_200.25));
    }

    #[test]
    fn snapshot_never_holds_caps() {
        let stored = serde_json::to_string(&dir()).unwrap();
        assert!(!stored.contains("URI:"), "{stored}");
        assert!(!stored.contains("u7ybnahayxwbadfzh4wblr7kr2wpsy27ib33dmyhlgbwpmo7n6aa"));
        let back: Snapshot = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, dir());
    }

    #[test]
    fn parses_a_filenode() {
        assert_eq!(
            parse_listing(FILE_FIXTURE.as_bytes()).unwrap(),
            Snapshot::File { size: Some(12_345) }
        );
    }

    #[test]
    fn bad_listings_give_clear_errors_without_content() {
        let err = parse_listing(b"[\"dirnode\", {\"ro_uri\": \"URI:DIR2-RO:secret").unwrap_err();
        assert!(matches!(err, SnapshotError::NotJson { .. }));
        assert!(!err.to_string().contains("secret"));
        assert_eq!(
            parse_listing(b"{}").unwrap_err(),
            SnapshotError::Shape("expected a two-element array [type, info]")
        );
        assert!(matches!(
            parse_listing(br#"["dirnode", {}]"#).unwrap_err(),
            SnapshotError::Shape(_)
        ));
        assert!(matches!(
            parse_listing(br#"["unknown", {}]"#).unwrap_err(),
            SnapshotError::Shape(_)
        ));
        assert!(matches!(
            parse_listing(br#"["dirnode", {"children": {"a": 5}}]"#).unwrap_err(),
            SnapshotError::Shape(_)
        ));
        let big = vec![b' '; MAX_LISTING_BYTES + 1];
        assert!(matches!(
            parse_listing(&big).unwrap_err(),
            SnapshotError::TooLarge { .. }
        ));
    }

    fn edited() -> Snapshot {
        let mut v: Value = serde_json::from_str(DIR_FIXTURE).unwrap();
        let kids = v[1]["children"].as_object_mut().unwrap();
        kids.remove("tiny.txt");
        // Replaced link: new cap and link time.
        kids["report.pdf"][1]["ro_uri"] = json!("URI:CHK:aaaa:bbbb:2:3:999");
        kids["report.pdf"][1]["size"] = json!(999);
        for name in ["b-new.txt", "a-new.txt", "c-new.txt"] {
            kids.insert(
                name.into(),
                json!(["filenode", {"ro_uri": format!("URI:LIT:{name}"), "size": 1, "metadata": {}}]),
            );
        }
        parse_listing(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn diff_finds_added_removed_modified() {
        let d = diff(&dir(), &edited());
        assert_eq!(d.added, vec!["a-new.txt", "b-new.txt", "c-new.txt"]);
        assert_eq!(d.removed, vec!["tiny.txt"]);
        assert_eq!(d.modified, vec!["report.pdf"]);
        assert_eq!(d.len(), 5);
        assert!(diff(&dir(), &dir()).is_empty());
    }

    #[test]
    fn same_cap_new_link_time_is_modified() {
        let mut v: Value = serde_json::from_str(DIR_FIXTURE).unwrap();
        v[1]["children"]["notes.txt"][1]["metadata"]["tahoe"]["linkmotime"] =
            json!(1_718_009_999.0);
        let new = parse_listing(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(diff(&dir(), &new).modified, vec!["notes.txt"]);
    }

    #[test]
    fn summary_texts() {
        let old = dir();
        let s = summarize("Team Docs", Some(&old), &edited());
        assert_eq!(
            s.text,
            "Team Docs: added a-new.txt, modified report.pdf, removed tiny.txt, 2 more"
        );
        assert_eq!(s.details["counts"]["added"], 3);
        assert_eq!(s.details["removed"], json!(["tiny.txt"]));

        // Only additions: the issue's example form.
        let mut v: Value = serde_json::from_str(DIR_FIXTURE).unwrap();
        for name in ["report2.pdf", "x.txt", "y.txt"] {
            v[1]["children"].as_object_mut().unwrap().insert(
                name.into(),
                json!(["filenode", {"ro_uri": "URI:LIT:x", "metadata": {}}]),
            );
        }
        let new = parse_listing(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(
            summarize("Team Docs", Some(&old), &new).text,
            "Team Docs: added report2.pdf, 2 more"
        );

        assert_eq!(
            summarize("Team Docs", Some(&old), &old).text,
            "Team Docs: changed (no visible difference in the listing)"
        );
        let first = summarize("Team Docs", None, &old);
        assert_eq!(first.text, "Team Docs: changed");
        assert_eq!(first.details["children"], 4);
    }

    #[test]
    fn file_summary_says_new_size() {
        let new = parse_listing(FILE_FIXTURE.as_bytes()).unwrap();
        let s = summarize("Notes", Some(&Snapshot::File { size: Some(10) }), &new);
        assert_eq!(s.text, "Notes: changed, now 12.3 kB");
        assert_eq!(s.details["previous_size"], 10);
        assert_eq!(
            summarize("Notes", None, &Snapshot::File { size: None }).text,
            "Notes: changed"
        );
    }

    #[test]
    fn hostile_names_are_cleaned_in_the_summary() {
        let old = Snapshot::Directory {
            children: BTreeMap::new(),
        };
        let mut kids = BTreeMap::new();
        kids.insert(
            format!("evil\n\u{202E}fdp.exe{}", "x".repeat(200)),
            ChildSnapshot {
                kind: ChildKind::File,
                size: None,
                mtime: None,
                cap_sha256: None,
            },
        );
        let s = summarize(
            "Lab\u{7}el",
            Some(&old),
            &Snapshot::Directory { children: kids },
        );
        assert!(
            s.text.starts_with("Label: added evil fdp.exe"),
            "{}",
            s.text
        );
        assert!(s.text.ends_with('…'));
        assert!(!s.text.chars().any(char::is_control));
    }

    #[test]
    fn details_are_bounded() {
        let old = Snapshot::Directory {
            children: BTreeMap::new(),
        };
        let kids = (0..500)
            .map(|i| {
                (
                    format!("f{i:03}"),
                    ChildSnapshot {
                        kind: ChildKind::File,
                        size: Some(1),
                        mtime: None,
                        cap_sha256: None,
                    },
                )
            })
            .collect();
        let s = summarize("Big", Some(&old), &Snapshot::Directory { children: kids });
        assert_eq!(
            s.details["added"].as_array().unwrap().len(),
            MAX_DETAIL_NAMES
        );
        assert_eq!(s.details["counts"]["added"], 500);
        assert_eq!(s.text, "Big: added f000, 499 more");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1), "1 byte");
        assert_eq!(human_size(999), "999 bytes");
        assert_eq!(human_size(1000), "1.0 kB");
        assert_eq!(human_size(12_345), "12.3 kB");
        assert_eq!(human_size(999_999), "1.0 MB");
        assert_eq!(human_size(4_000_000_000), "4.0 GB");
        assert_eq!(human_size(u64::MAX), "18.4 EB");
    }

    #[test]
    fn snapshots_persist_in_history() {
        let h = crate::history::History::in_memory().unwrap();
        assert_eq!(h.load_snapshot("cap-a").unwrap(), None);
        h.save_snapshot("cap-a", &dir()).unwrap();
        h.save_snapshot("cap-a", &edited()).unwrap();
        assert_eq!(h.load_snapshot("cap-a").unwrap(), Some(edited()));
    }

    #[test]
    fn detail_names_carry_no_bidi_or_control_characters() {
        let diff = DirDiff {
            added: vec![
                "invoice\u{202E}fdp.exe".to_owned(),
                "a\nb\u{1b}[31m".to_owned(),
            ],
            ..DirDiff::default()
        };
        let details = dir_details(&diff);
        let added: Vec<&str> = details["added"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(added, ["invoicefdp.exe", "a b[31m"]);
    }
}
