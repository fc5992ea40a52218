//! Turning a seqnum change into what the user reads.
//!
//! A seqnum only says "slot SI has a new version". For a directory the gateway's listing is
//! diffed against the snapshot stored at the previous change ("Team Docs: added report.pdf, 2
//! more"); for a file the listing gives the new size. Without a gateway, or when it fails, the
//! description still says that something changed and why there are no details: a change is
//! never dropped for want of them.
//!
//! Two steps, so that callers whose futures must be `Send` can keep the non-`Sync` [`History`]
//! out of the `await`: [`fetch_state`] (async, gateway only) then [`describe_fetched`] (sync,
//! history only). [`describe_change`] does both.

use serde_json::{json, Value};
use tahoe_caps::Cap;

use crate::describe::snapshot::{self, ChildKind, Snapshot};
use crate::describe::text::clean_line;
pub use crate::describe::ChangeDescription;
use crate::engine::seqnum::Change;
use crate::history::History;
use crate::net::gateway::{Gateway, GatewayError};

/// Longest label shown, in characters (as in [`crate::describe::snapshot`]).
const MAX_LABEL_CHARS: usize = 60;
/// Longest child name shown in a body line.
const MAX_NAME_CHARS: usize = 60;
/// Most names listed per line of a body.
const MAX_BODY_NAMES: usize = 10;

/// The words added to changes that happened while the client was not connected.
pub const WHILE_AWAY: &str = "while you were away";

/// Why the new state could not be fetched: shown in the description, so it must hold no cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

/// Fetches the new state of `cap` through the gateway (no history involved).
pub async fn fetch_state(gateway: Option<&Gateway>, cap: &Cap) -> Result<Snapshot, Unavailable> {
    let Some(gateway) = gateway else {
        return Err(Unavailable("no gateway is configured".to_owned()));
    };
    if !can_list(cap) {
        return Err(Unavailable(
            "only a verify-cap is known, which cannot read the contents".to_owned(),
        ));
    }
    gateway.list(&cap.read_only()).await.map_err(|e| {
        tracing::debug!(error = %e, "listing for a change description failed");
        Unavailable(e.to_string())
    })
}

fn can_list(cap: &Cap) -> bool {
    cap.role() != tahoe_caps::CapRole::Verify
}

/// Describes `change` of the cap `cap_id` (labelled `label`) from the fetched new state and the
/// snapshot stored in `history`, and stores the new snapshot. History errors are logged, not
/// returned: the description is still right, only the next diff may be coarser.
pub fn describe_fetched(
    history: &History,
    cap_id: &str,
    label: &str,
    cap: &Cap,
    change: &Change,
    fetched: Result<Snapshot, Unavailable>,
) -> ChangeDescription {
    let mut description = match fetched {
        Ok(new) => {
            let old = load_snapshot(history, cap_id);
            if let Err(error) = history.save_snapshot(cap_id, &new) {
                tracing::warn!(cap = cap_id, %error, "cannot store the new snapshot");
            }
            describe_snapshots(label, old.as_ref(), &new)
        }
        Err(Unavailable(reason)) => without_details(label, cap, &reason),
    };
    add_change_facts(&mut description, change);
    description
}

/// Fetches the new state and describes `change` (see [`fetch_state`] and [`describe_fetched`]).
pub async fn describe_change(
    gateway: Option<&Gateway>,
    history: &History,
    cap_id: &str,
    label: &str,
    cap: &Cap,
    change: &Change,
) -> ChangeDescription {
    let fetched = fetch_state(gateway, cap).await;
    describe_fetched(history, cap_id, label, cap, change, fetched)
}

/// For caps no updates server holds: lists `cap`, compares with the stored snapshot and, when
/// it differs, stores the new one and describes the difference. `Ok(None)` when nothing changed
/// and on the first poll (which only records the baseline: nothing is known to have changed).
///
/// Polling sees only what the listing shows: a file rewritten with the same size, for one, goes
/// unnoticed; pushed seqnums do not have that gap.
pub async fn describe_polled(
    gateway: &Gateway,
    history: &History,
    cap_id: &str,
    label: &str,
    cap: &Cap,
) -> Result<Option<ChangeDescription>, GatewayError> {
    let new = gateway.list(&cap.read_only()).await?;
    Ok(describe_polled_snapshot(history, cap_id, label, new))
}

/// The sync half of [`describe_polled`], for callers that fetched the listing themselves.
pub fn describe_polled_snapshot(
    history: &History,
    cap_id: &str,
    label: &str,
    new: Snapshot,
) -> Option<ChangeDescription> {
    let old = load_snapshot(history, cap_id);
    if old.as_ref() == Some(&new) {
        return None;
    }
    if let Err(error) = history.save_snapshot(cap_id, &new) {
        tracing::warn!(cap = cap_id, %error, "cannot store the new snapshot");
    }
    let old = old?;
    let mut description = describe_snapshots(label, Some(&old), &new);
    if let Value::Object(map) = &mut description.details_json {
        map.insert("polled".to_owned(), Value::Bool(true));
    }
    Some(description)
}

fn load_snapshot(history: &History, cap_id: &str) -> Option<Snapshot> {
    history.load_snapshot(cap_id).unwrap_or_else(|error| {
        tracing::warn!(cap = cap_id, %error, "cannot load the previous snapshot");
        None
    })
}

/// Summary, body and details from two snapshots (no seqnum facts yet).
fn describe_snapshots(label: &str, old: Option<&Snapshot>, new: &Snapshot) -> ChangeDescription {
    let shown_label = clean_line(label, MAX_LABEL_CHARS);
    let summary = snapshot::summarize(label, old, new);
    match (old, new) {
        (None, Snapshot::Directory { children }) => {
            // First look: nothing to compare with, so do not claim anything was added.
            let files = children
                .values()
                .filter(|c| c.kind == ChildKind::File)
                .count();
            let folders = children
                .values()
                .filter(|c| c.kind == ChildKind::Directory)
                .count();
            ChangeDescription {
                summary: format!("{shown_label}: changed, now {}", items(children.len())),
                body: format!(
                    "First look at this folder: {} ({}, {}). Later changes will say what was added or removed.",
                    items(children.len()),
                    count(files, "file", "files"),
                    count(folders, "folder", "folders"),
                ),
                details_json: summary.details,
                while_away: false,
            }
        }
        (Some(old), Snapshot::Directory { .. }) if matches!(old, Snapshot::Directory { .. }) => {
            let d = snapshot::diff(old, new);
            let mut lines = Vec::new();
            for (title, names) in [
                ("Added", &d.added),
                ("Modified", &d.modified),
                ("Removed", &d.removed),
            ] {
                if !names.is_empty() {
                    lines.push(format!("{title}: {}", name_list(names)));
                }
            }
            if lines.is_empty() {
                lines.push(
                    "The folder was republished without a visible difference in its listing."
                        .to_owned(),
                );
            }
            ChangeDescription {
                summary: summary.text,
                body: lines.join("\n"),
                details_json: summary.details,
                while_away: false,
            }
        }
        (_, Snapshot::Directory { children }) => ChangeDescription {
            // It was a file before (should not happen for one cap): describe as a first look.
            summary: format!("{shown_label}: changed, now {}", items(children.len())),
            body: String::new(),
            details_json: summary.details,
            while_away: false,
        },
        (_, Snapshot::File { size }) => {
            let previous = match old {
                Some(Snapshot::File { size }) => *size,
                _ => None,
            };
            let body = match (size, previous) {
                (Some(now), Some(before)) if *now != before => format!(
                    "Now {}, was {}.",
                    snapshot::human_size(*now),
                    snapshot::human_size(before)
                ),
                (Some(now), Some(_)) => {
                    format!("Rewritten; same size ({}).", snapshot::human_size(*now))
                }
                (Some(now), None) => format!("Now {}.", snapshot::human_size(*now)),
                (None, _) => String::new(),
            };
            ChangeDescription {
                summary: summary.text,
                body,
                details_json: summary.details,
                while_away: false,
            }
        }
    }
}

fn without_details(label: &str, cap: &Cap, reason: &str) -> ChangeDescription {
    let label = clean_line(label, MAX_LABEL_CHARS);
    let reason = clean_line(&crate::net::gateway::redact_caps(reason), 200);
    let what = if cap.is_directory() {
        "directory"
    } else {
        "file"
    };
    ChangeDescription {
        summary: format!("{label} changed (details need a gateway: {reason})"),
        body: String::new(),
        details_json: json!({"kind": what, "details_unavailable": reason}),
        while_away: false,
    }
}

/// Adds what the seqnum says: how many publishes, whether it happened while away.
fn add_change_facts(description: &mut ChangeDescription, change: &Change) {
    let publishes = change.publishes();
    let mut extra = Vec::new();
    if publishes > 1 {
        extra.push(format!(
            "At least {publishes} updates since the last one seen."
        ));
    }
    if change.while_away {
        description.summary = format!("{} ({WHILE_AWAY})", description.summary);
        extra.push("This happened while Tahoe Notifier was not connected.".to_owned());
    }
    if !extra.is_empty() {
        if !description.body.is_empty() {
            description.body.push('\n');
        }
        description.body.push_str(&extra.join("\n"));
    }
    description.while_away = change.while_away;
    if !description.details_json.is_object() {
        let inner = description.details_json.take();
        description.details_json = json!({ "description": inner });
    }
    let Value::Object(map) = &mut description.details_json else {
        return;
    };
    map.insert("seqnum".to_owned(), json!(change.seqnum));
    map.insert("previous_seqnum".to_owned(), json!(change.previous));
    map.insert("while_away".to_owned(), json!(change.while_away));
    map.insert("publishes".to_owned(), json!(publishes));
}

fn items(n: usize) -> String {
    count(n, "item", "items")
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// "a.txt, b.txt and 3 more", names cleaned for display.
fn name_list(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(MAX_BODY_NAMES)
        .map(|n| clean_line(n, MAX_NAME_CHARS))
        .collect();
    let rest = names.len() - shown.len();
    if rest > 0 {
        format!("{} and {rest} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::describe::snapshot::ChildSnapshot;

    const DIR_RW: &str =
        "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
    const FILE_FIXTURE: &str = include_str!("../../tests/fixtures/file_t_json.json");

    fn dir_cap() -> Cap {
        Cap::parse(DIR_RW).unwrap()
    }

    fn change(seqnum: u64, previous: Option<u64>, while_away: bool) -> Change {
        Change {
            storage_index: dir_cap().storage_index().unwrap(),
            seqnum,
            previous,
            while_away,
        }
    }

    fn dir(names: &[&str]) -> Snapshot {
        let children: BTreeMap<String, ChildSnapshot> = names
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    ChildSnapshot {
                        kind: if n.ends_with('/') {
                            ChildKind::Directory
                        } else {
                            ChildKind::File
                        },
                        size: Some(1),
                        mtime: None,
                        cap_sha256: None,
                    },
                )
            })
            .collect();
        Snapshot::Directory { children }
    }

    #[test]
    fn first_directory_look_is_a_baseline() {
        let h = History::in_memory().unwrap();
        let d = describe_fetched(
            &h,
            "cap-a",
            "Team Docs",
            &dir_cap(),
            &change(2, None, false),
            Ok(dir(&["a.txt", "b.txt", "Photos/"])),
        );
        assert_eq!(d.summary, "Team Docs: changed, now 3 items");
        assert!(!d.summary.contains("added"));
        assert_eq!(
            d.body,
            "First look at this folder: 3 items (2 files, 1 folder). Later changes will say what was added or removed."
        );
        assert_eq!(d.details_json["first_snapshot"], true);
        assert_eq!(d.details_json["seqnum"], 2);
        assert!(!d.while_away);
        // The snapshot is stored for next time.
        assert_eq!(
            h.load_snapshot("cap-a").unwrap(),
            Some(dir(&["a.txt", "b.txt", "Photos/"]))
        );
    }

    #[test]
    fn directory_changes_are_diffed_against_the_stored_snapshot() {
        let h = History::in_memory().unwrap();
        h.save_snapshot("cap-a", &dir(&["old.txt", "keep.txt"]))
            .unwrap();
        let d = describe_fetched(
            &h,
            "cap-a",
            "Team Docs",
            &dir_cap(),
            &change(5, Some(4), false),
            Ok(dir(&["keep.txt", "report.pdf", "x.txt", "y.txt"])),
        );
        assert_eq!(
            d.summary,
            "Team Docs: added report.pdf, removed old.txt, 2 more"
        );
        assert_eq!(d.body, "Added: report.pdf, x.txt, y.txt\nRemoved: old.txt");
        assert_eq!(d.details_json["counts"]["added"], 3);
        assert_eq!(d.details_json["previous_seqnum"], 4);
        assert_eq!(d.details_json["publishes"], 1);

        // Same listing again: says so rather than inventing a change.
        let again = describe_fetched(
            &h,
            "cap-a",
            "Team Docs",
            &dir_cap(),
            &change(6, Some(5), false),
            Ok(dir(&["keep.txt", "report.pdf", "x.txt", "y.txt"])),
        );
        assert_eq!(
            again.summary,
            "Team Docs: changed (no visible difference in the listing)"
        );
    }

    #[test]
    fn file_changes_give_the_new_size() {
        let h = History::in_memory().unwrap();
        let file_cap = Cap::parse("URI:SSK:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a").unwrap();
        h.save_snapshot("cap-f", &Snapshot::File { size: Some(10) })
            .unwrap();
        let new = snapshot::parse_listing(FILE_FIXTURE.as_bytes()).unwrap();
        let d = describe_fetched(
            &h,
            "cap-f",
            "Notes",
            &file_cap,
            &change(3, Some(1), false),
            Ok(new),
        );
        assert_eq!(d.summary, "Notes: changed, now 12.3 kB");
        assert_eq!(
            d.body,
            "Now 12.3 kB, was 10 bytes.\nAt least 2 updates since the last one seen."
        );
        assert_eq!(d.details_json["size"], 12_345);
        assert_eq!(d.details_json["publishes"], 2);
    }

    #[test]
    fn while_away_is_said() {
        let h = History::in_memory().unwrap();
        h.save_snapshot("cap-a", &dir(&[])).unwrap();
        let d = describe_fetched(
            &h,
            "cap-a",
            "Team Docs",
            &dir_cap(),
            &change(9, Some(8), true),
            Ok(dir(&["new.txt"])),
        );
        assert_eq!(d.summary, "Team Docs: added new.txt (while you were away)");
        assert!(d.while_away);
        assert!(d
            .body
            .ends_with("This happened while Tahoe Notifier was not connected."));
        assert_eq!(d.details_json["while_away"], true);
    }

    #[tokio::test]
    async fn no_gateway_still_describes_the_change() {
        let h = History::in_memory().unwrap();
        let d = describe_change(
            None,
            &h,
            "cap-a",
            "Team Docs",
            &dir_cap(),
            &change(2, Some(1), false),
        )
        .await;
        assert_eq!(
            d.summary,
            "Team Docs changed (details need a gateway: no gateway is configured)"
        );
        assert_eq!(d.details_json["kind"], "directory");
        assert_eq!(h.load_snapshot("cap-a").unwrap(), None);

        let away = describe_change(
            None,
            &h,
            "cap-a",
            "Team Docs",
            &dir_cap(),
            &change(3, Some(2), true),
        )
        .await;
        assert!(
            away.summary.ends_with("(while you were away)"),
            "{}",
            away.summary
        );
    }

    #[tokio::test]
    async fn gateway_errors_are_the_reason_and_hold_no_cap() {
        let h = History::in_memory().unwrap();
        let g = Gateway::with_timeout("http://127.0.0.1:9/", std::time::Duration::from_secs(2))
            .unwrap();
        let d = describe_change(
            Some(&g),
            &h,
            "cap-a",
            "Team Docs",
            &dir_cap(),
            &change(2, Some(1), false),
        )
        .await;
        assert!(
            d.summary
                .starts_with("Team Docs changed (details need a gateway: cannot list"),
            "{}",
            d.summary
        );
        assert!(!d.summary.contains("URI:"));
        assert!(!d.details_json.to_string().contains("URI:"));
    }

    #[tokio::test]
    async fn verify_caps_cannot_be_listed() {
        let cap = dir_cap().verify_cap().unwrap();
        let g = Gateway::new("http://127.0.0.1:9/").unwrap();
        let err = fetch_state(Some(&g), &cap).await.unwrap_err();
        assert!(err.0.contains("verify-cap"));
    }

    #[test]
    fn polling_reports_only_differences() {
        let h = History::in_memory().unwrap();
        // First poll: baseline only.
        assert_eq!(describe_polled_snapshot(&h, "c", "Docs", dir(&["a"])), None);
        assert_eq!(describe_polled_snapshot(&h, "c", "Docs", dir(&["a"])), None);
        let d = describe_polled_snapshot(&h, "c", "Docs", dir(&["a", "b"])).unwrap();
        assert_eq!(d.summary, "Docs: added b");
        assert_eq!(d.details_json["polled"], true);
    }

    #[test]
    fn hostile_labels_and_names_are_cleaned() {
        let h = History::in_memory().unwrap();
        h.save_snapshot("c", &dir(&[])).unwrap();
        let d = describe_fetched(
            &h,
            "c",
            "Docs\n\u{202E}",
            &dir_cap(),
            &change(2, Some(1), false),
            Ok(dir(&["a\u{7}b\nc"])),
        );
        assert_eq!(d.summary, "Docs: added ab c");
        assert_eq!(d.body, "Added: ab c");
    }
}
