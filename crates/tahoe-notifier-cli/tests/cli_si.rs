//! `tahoe-notifier si` as a user runs it: caps on stdin, storage indexes out, no key material
//! anywhere in the output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

struct VectorCap {
    cap: String,
    storage_index: Option<String>,
    tahoe_kind: String,
}

fn vector_caps() -> Vec<VectorCap> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/caps.json");
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let caps: Vec<VectorCap> = vectors["caps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| VectorCap {
            cap: entry["cap"].as_str().unwrap().to_owned(),
            storage_index: entry["storage_index"].as_str().map(str::to_owned),
            tahoe_kind: entry["kind"].as_str().unwrap().to_owned(),
        })
        .collect();
    assert_eq!(caps.len(), 450);
    caps
}

/// Runs the binary with `args`, feeding `stdin` from another thread so that a full stdout pipe
/// cannot deadlock the test.
fn run_si(args: &[&str], stdin: String) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tahoe-notifier"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child_stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || child_stdin.write_all(stdin.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    output
}

/// The secret fields of a cap: every field of 26+ characters except a verify-cap's storage
/// index, which is public.
fn secret_fields<'a>(cap: &'a str, storage_index: Option<&str>) -> Vec<&'a str> {
    cap.split(':')
        .filter(|field| field.len() >= 26 && Some(*field) != storage_index)
        .collect()
}

fn assert_no_key_material(output: &Output, caps: &[(&str, Option<&str>)]) {
    // Every 26-byte piece of the output, so that each secret piece is one lookup.
    let mut shown = HashSet::new();
    for stream in [&output.stdout, &output.stderr] {
        shown.extend(stream.windows(26));
    }
    for (cap, storage_index) in caps {
        for secret in secret_fields(cap, *storage_index) {
            // Any 26-character piece of a secret would be a leak, not only the whole field.
            for piece in secret.as_bytes().windows(26) {
                assert!(!shown.contains(piece), "output leaks key material");
            }
        }
    }
}

#[test]
fn json_output_gives_every_vector_caps_storage_index() {
    let caps = vector_caps();
    let input: String = caps
        .iter()
        .map(|entry| format!("{}\n", entry.cap))
        .collect();
    let output = run_si(&["si", "--json"], input);
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty());

    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let objects: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(objects.len(), caps.len());
    for (index, (object, expected)) in objects.iter().zip(&caps).enumerate() {
        assert_eq!(object["line"], index + 1);
        assert_eq!(
            object["storage_index"].as_str(),
            expected.storage_index.as_deref(),
            "{}",
            expected.tahoe_kind
        );
        let fields: Vec<&str> = object
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "directory",
                "format",
                "kind",
                "line",
                "mutable",
                "role",
                "storage_index"
            ]
        );
        let kind = object["kind"].as_str().unwrap();
        assert!(expected.cap.starts_with(&format!("URI:{kind}:")));
        let is_lit = kind.ends_with("LIT");
        assert_eq!(object["mutable"], !is_lit && !kind.contains("CHK"));
    }
    let secrets: Vec<(&str, Option<&str>)> = caps
        .iter()
        .map(|entry| (entry.cap.as_str(), entry.storage_index.as_deref()))
        .collect();
    assert_no_key_material(&output, &secrets);
}

#[test]
fn text_output_reports_bad_lines_and_exits_1() {
    let write_cap =
        "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
    let short_key =
        "URI:SSK-RO:uk4r3cnhlj2wyiah6zcj3ndhw:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
    let chk = "URI:CHK:yj27gsxnavvnn2uo5ssbsl5b7y:xhoewhv6kxs3r6nwqdx7o3eb2tu2wmcnjclptyl73dyiczew3iea:8:11:879367627268";
    let unknown = "URI:SSK-RX:uk4r3cnhlj2wyiah6zcj3ndhwi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
    let input = format!("{write_cap}\n\n{short_key}\n   \n{chk}\n{unknown}\n");
    let output = run_si(&["si"], input);

    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["3zuybt32gbkka6auscupso6swe", "DIR2", "mutable", "directory"],
            vec!["gvuqd3xuxepw3m56twb43346h4", "CHK", "immutable", "file"],
        ]
    );
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert!(
        stderr.contains("line 3: URI:SSK-RO: read key has 25 characters, expected 26"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 6: unknown cap kind `URI:SSK-RX:`"),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 4 cap lines failed"), "{stderr}");
    assert_no_key_material(
        &output,
        &[
            (write_cap, None),
            (short_key, None),
            (chk, Some("gvuqd3xuxepw3m56twb43346h4")),
            (unknown, None),
        ],
    );
}

#[test]
fn caps_are_not_accepted_as_arguments() {
    let output = run_si(
        &[
            "si",
            "URI:DIR2-RO:uk4r3cnhlj2wyiah6zcj3ndhwi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a",
        ],
        String::new(),
    );
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
}
