//! The `tahoe-notifier` store commands (`caps`, `servers`, `history`, `status`) as a user runs
//! them: the real binary, a throwaway `--home`, and a real OS keyring. Ends with the secrets
//! test: no cap key and no swissnum may be found in any file under the home folder or in
//! anything the binary printed.
//!
//! The keyutils test needs a session keyring (`keyctl session - cargo test …`) and is skipped
//! with a message without one. The Secret Service test runs when `DBUS_SESSION_BUS_ADDRESS` is
//! set and then needs an unlocked gnome-keyring:
//!
//! ```sh
//! dbus-run-session -- keyctl session - bash -c 'export H=$(mktemp -d); \
//!   printf pw | HOME=$H XDG_DATA_HOME=$H/.local/share gnome-keyring-daemon --unlock --components=secrets >/dev/null; \
//!   cargo test -p tahoe-notifier-cli --test cli_commands'
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use notifier_core::ids::new_id;
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore, SecretError, SecretStore};
use serde_json::Value;
use tahoe_caps::Cap;

/// Directory write-cap from the shared Tahoe vectors, and its storage index.
const DIR_RW: &str =
    "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
const DIR_SI: &str = "3zuybt32gbkka6auscupso6swe";
/// MDMF file write-cap (keys of another vector slot): only its read-cap may be kept.
const FILE_RW: &str =
    "URI:MDMF:zjabb47hirxbr6tcoi3swypnue:qfuxzuc3njmabcmkt7ezyvdvted42ovcfwgjklw4c7gi3tgz2hxa";
const FILE_SI: &str = "j3xzfarhegdwji7x5m5vbu34e4";
/// SDMF file write-cap, added as its read-only form.
const SSK_RW: &str =
    "URI:SSK:zifeqv4yny2l7gyee5poytmi7y:7fawqmycx6emkymd4b6bgz454gbmxfevnqffvwp4ouatb5kmwkya";
const SSK_SI: &str = "fkcj3xsdmzyfmqeingbucxqqsa";
/// The grid's news cap (a write-cap; the import keeps only its read-only form).
const NEWS_RW: &str =
    "URI:DIR2-MDMF:2gryjewgyaksvbosj7xwkuawxu:mocvggdilaqjgealjtimzjuikbveyuk2ivj37p4fqabimhzgkhva";
/// A cap with a read key one character short: refused, and never echoed.
const BAD_CAP: &str =
    "URI:DIR2-RO:dsbn5vssdqkczavq54hbt6cts:2r67h6dgw5wboebbgt3smov2ayneaj32y3zrszvgxex5kaawnwoa";
/// An immutable cap: nothing to watch.
const CHK: &str = "URI:CHK:yj27gsxnavvnn2uo5ssbsl5b7y:xhoewhv6kxs3r6nwqdx7o3eb2tu2wmcnjclptyl73dyiczew3iea:8:11:879367627268";

/// A certificate hash (43 characters of URL-safe base64) that starts with `tag`.
fn spki_hash(tag: &str) -> String {
    format!("{tag:A<43}")
}

/// A fresh random swissnum, so no other run's output can match it by accident.
fn swissnum() -> String {
    format!("{}{}", new_id("").unwrap(), new_id("").unwrap())
}

fn nurl(hash: &str, port: u16, swissnum: &str) -> String {
    format!("pb://{hash}@127.0.0.1:{port}/{swissnum}#v=1")
}

/// Runs the binary against one home folder and keyring, keeping everything it printed.
struct Cli {
    home: tempfile::TempDir,
    /// HOME for the child: empty, so no `~/.tahoe` of the machine is picked up.
    user_home: tempfile::TempDir,
    keyring: &'static str,
    printed: Vec<u8>,
}

impl Cli {
    fn new(keyring: &'static str) -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            user_home: tempfile::tempdir().unwrap(),
            keyring,
            printed: Vec::new(),
        }
    }

    fn run(&mut self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tahoe-notifier"))
            .arg("--home")
            .arg(self.home.path())
            .args(["--keyring", self.keyring])
            .args(args)
            .env("HOME", self.user_home.path())
            .env_remove("TAHOE_NOTIFIER_HOME")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child_stdin = child.stdin.take().unwrap();
        let input = stdin.to_owned();
        let writer = std::thread::spawn(move || child_stdin.write_all(input.as_bytes()));
        let output = child.wait_with_output().unwrap();
        // The child may exit before reading stdin (e.g. a usage error): a broken pipe is fine.
        let _ = writer.join().unwrap();
        self.printed.extend_from_slice(&output.stdout);
        self.printed.extend_from_slice(&output.stderr);
        output
    }

    /// Runs a command that must succeed.
    fn ok(&mut self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must succeed and print JSON.
    fn json(&mut self, args: &[&str], stdin: &str) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all, stdin);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// Runs a command that must fail with exit code 1; returns its stderr.
    fn fails(&mut self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, stdin);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        String::from_utf8(output.stderr).unwrap()
    }
}

/// The secret pieces of a cap: every field of 26+ characters except the storage index, for the
/// cap and for its read-only form (whose read key the notifier derives and stores).
fn cap_secrets(cap: &str) -> Vec<String> {
    let parsed: Cap = cap.parse().unwrap();
    let si = parsed.storage_index().map(|si| si.to_string());
    let ro = parsed.read_only().to_string();
    [cap.to_owned(), ro]
        .iter()
        .flat_map(|c| {
            c.split(':')
                .filter(|f| f.len() >= 26 && Some(*f) != si.as_deref())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether any 16-character piece of any secret appears in `haystack`.
fn holds_secret(haystack: &[u8], secrets: &[String]) -> bool {
    secrets.iter().any(|secret| {
        secret
            .as_bytes()
            .windows(16)
            .any(|piece| haystack.windows(piece.len()).any(|w| w == piece))
    })
}

/// Fails (naming only `what`, not the secret) if `haystack` holds a piece of a secret.
fn assert_no_secret(haystack: &[u8], secrets: &[String], what: &str) {
    assert!(
        !holds_secret(haystack, secrets),
        "{what} contains a piece of a secret"
    );
}

fn assert_gone_from_keyring(backend: KeyringBackend, id: &str) {
    // A fresh store object, as another process would see the keyring.
    let err = KeyringSecretStore::new(backend).get(id).unwrap_err();
    assert!(matches!(err, SecretError::Missing { .. }), "{id}: {err}");
}

/// A Tahoe node directory like the one `tahoe create-client` makes, with the announcement cache
/// of two storage servers. Returns the storage servers' own swissnums (secrets too).
fn write_node_dir(dir: &Path, hashes: &[(&str, &str, u16)]) -> Vec<String> {
    std::fs::create_dir_all(dir.join("private")).unwrap();
    std::fs::write(dir.join("node.url"), "http://127.0.0.1:3456/\n").unwrap();
    let mut cache = String::new();
    let mut swissnums = Vec::new();
    for (hash, nickname, port) in hashes {
        let swiss = swissnum();
        cache.push_str(&format!(
            "- ann:\n    anonymous-storage-FURL: pb://tubid@tcp:127.0.0.1:{port}/{swiss}\n    \
             anonymous-storage-NURLs:\n    - {}\n    app-versions: []\n    \
             my-version: tahoe-lafs/1.20.0\n    nickname: {nickname}\n    seqnum: 1\n    \
             service-name: storage\n    version: 0\n  key_s: v0-abc\n",
            nurl(hash, *port, &swiss)
        ));
        swissnums.push(swiss);
    }
    std::fs::write(
        dir.join("private").join("introducer_default_cache.yaml"),
        cache,
    )
    .unwrap();
    swissnums
}

/// Every command, in the order a user would meet them, then the secrets test.
fn exercise(backend: KeyringBackend) {
    let mut cli = Cli::new(backend.as_str());
    let mut secrets: Vec<String> = [DIR_RW, FILE_RW, SSK_RW, NEWS_RW]
        .iter()
        .flat_map(|c| cap_secrets(c))
        .collect();
    secrets.extend(
        BAD_CAP
            .split(':')
            .filter(|f| f.len() >= 25)
            .map(str::to_owned),
    );

    // A new home: status and history work and create nothing secret.
    let status = cli.json(&["status"], "");
    assert_eq!(status["keyring"]["backend"], backend.as_str());
    assert_eq!(status["keyring"]["reachable"], true, "{status}");
    assert_eq!(status["caps"], Value::Array(vec![]));
    let history = cli.ok(&["history"], "");
    assert!(history.contains("no changes recorded yet"), "{history}");
    let history = cli.json(&["history", "--unread", "--limit", "5"], "");
    assert_eq!(
        history,
        serde_json::json!({ "changes": [], "news": [] }),
        "{history}"
    );
    assert_eq!(
        cli.json(&["history", "mark-read", "--all"], "")["marked_read"],
        0
    );
    let err = cli.fails(&["history", "mark-read", "7"], "");
    assert!(err.contains("no change #7"), "{err}");

    // caps add: from stdin, first non-empty line; only the read-only form is stored.
    let added = cli.ok(
        &["caps", "add", "--label", "Team Docs"],
        &format!("\n  \r\n {DIR_RW} \r\nignored second line\n"),
    );
    assert!(added.contains(DIR_SI), "{added}");
    assert!(added.contains("Team Docs"), "{added}");
    assert!(added.contains("DIR2-RO"), "{added}");
    let dir_id = added
        .lines()
        .next()
        .unwrap()
        .strip_prefix("added ")
        .unwrap()
        .to_owned();
    assert!(dir_id.starts_with("cap-"), "{added}");

    // A write-cap is reduced to its read-cap, and the user is told; there is no way to keep it.
    let output = cli.run(&["--json", "caps", "add", "--label", "Notes"], FILE_RW);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only its read-cap was kept"), "{stderr}");
    let file: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(file["storage_index"], FILE_SI);
    assert_eq!(file["kind"], "file");
    assert_eq!(file["cap_kind"], "MDMF-RO");
    assert!(file.get("writable").is_none(), "{file}");
    let file_id = file["id"].as_str().unwrap().to_owned();
    let refused = cli.run(&["caps", "add", "--keep-write"], FILE_RW);
    assert_eq!(refused.status.code(), Some(2), "a usage error: {refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--keep-write"));

    let ssk = cli.json(&["caps", "add"], &format!("{SSK_RW}\n"));
    assert_eq!(ssk["storage_index"], SSK_SI);
    assert_eq!(ssk["label"], format!("file {}", &SSK_SI[..8]));
    let ssk_id = ssk["id"].as_str().unwrap().to_owned();

    // The keyring holds exactly what was promised.
    let keyring = KeyringSecretStore::new(backend);
    let dir_cap: Cap = DIR_RW.parse().unwrap();
    assert_eq!(
        keyring.get(&dir_id).unwrap(),
        dir_cap.read_only().to_string()
    );
    let file_cap: Cap = FILE_RW.parse().unwrap();
    assert_eq!(
        keyring.get(&file_id).unwrap(),
        file_cap.read_only().to_string()
    );

    // list shows the right storage indexes; text and JSON agree.
    let list = cli.json(&["caps", "list"], "");
    let listed: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap(),
                e["storage_index"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (dir_id.as_str(), DIR_SI),
            (file_id.as_str(), FILE_SI),
            (ssk_id.as_str(), SSK_SI)
        ]
    );
    let text = cli.ok(&["caps", "list"], "");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&dir_id) && l.contains(DIR_SI) && l.ends_with("Team Docs")),
        "{text}"
    );

    // mute / unmute / rename.
    assert_eq!(cli.json(&["caps", "mute", &dir_id], "")["muted"], true);
    assert!(cli.ok(&["caps", "list"], "").contains("muted"));
    assert_eq!(cli.json(&["caps", "mute", &file_id], "")["muted"], true);
    assert_eq!(cli.json(&["caps", "unmute", &file_id], "")["muted"], false);
    assert_eq!(
        cli.json(&["caps", "rename", &ssk_id, "Old notes"], "")["label"],
        "Old notes"
    );

    // Refusals: exit 1, a message saying what is wrong, never the cap.
    let err = cli.fails(&["caps", "add"], BAD_CAP);
    assert!(err.contains("not a valid Tahoe cap"), "{err}");
    assert!(err.contains("25 characters, expected 26"), "{err}");
    let err = cli.fails(&["caps", "add"], "a password-like secret\n");
    assert!(err.contains("not a cap"), "{err}");
    let err = cli.fails(&["caps", "add"], "\n\n");
    assert!(err.contains("no cap on stdin"), "{err}");
    let err = cli.fails(&["caps", "add"], CHK);
    assert!(err.contains("never change"), "{err}");
    let err = cli.fails(&["caps", "add", "--label", "Again"], DIR_RW);
    assert!(err.contains("already watched"), "{err}");
    let err = cli.fails(&["caps", "remove", DIR_RW], "");
    assert!(err.contains("not an entry id"), "{err}");
    let err = cli.fails(&["caps", "mute", "cap-doesnotexist"], "");
    assert!(
        err.contains("no watched cap with id cap-doesnotexist"),
        "{err}"
    );
    // A cap as an argument is a usage error (exit 2) before anything is read or stored.
    let output = cli.run(&["caps", "add", "URI:DIR2-RO:notasecret"], "");
    assert_eq!(output.status.code(), Some(2));

    // remove: gone from the list and from the keyring.
    let removed = cli.json(&["caps", "remove", &dir_id], "");
    assert_eq!(removed["removed"]["id"], dir_id.as_str());
    let list = cli.json(&["caps", "list"], "");
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["id"] != dir_id.as_str()));
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_gone_from_keyring(backend, &dir_id);

    // servers add: the NURL from stdin; lists show no swissnum.
    let (hash_a, hash_b, hash_c) = (spki_hash("srvA"), spki_hash("srvB"), spki_hash("srvC"));
    let swiss_a = swissnum();
    let swiss_b = swissnum();
    let swiss_c = swissnum();
    secrets.extend([swiss_a.clone(), swiss_b.clone(), swiss_c.clone()]);
    let server = cli.json(
        &["servers", "add", "--name", "Updates A"],
        &nurl(&hash_a, 47001, &swiss_a),
    );
    assert_eq!(server["name"], "Updates A");
    assert_eq!(server["host"], "127.0.0.1");
    assert_eq!(server["port"], 47001);
    assert_eq!(server["spki_hash"], hash_a.as_str());
    let server_a = server["id"].as_str().unwrap().to_owned();
    assert!(server_a.starts_with("srv-"));
    let err = cli.fails(
        &["servers", "add"],
        &format!("pb://short@127.0.0.1:1/{swiss_a}#v=1"),
    );
    assert!(err.contains("certificate hash"), "{err}");

    // servers import with a node dir: the gateway URL comes from node.url, the servers are
    // named after the storage servers with the same certificate.
    let node = tempfile::tempdir().unwrap();
    secrets.extend(write_node_dir(
        node.path(),
        &[(&hash_b, "storage0", 47002), (&hash_c, "storage1", 47003)],
    ));
    // Outside the home folder: it is the user's file, which the secrets test does not cover.
    let grid_dir = tempfile::tempdir().unwrap();
    let grid_file = grid_dir.path().join("grid.json");
    std::fs::write(
        &grid_file,
        serde_json::json!({
            "name": "Test Grid",
            "updates_servers": [nurl(&hash_b, 47002, &swiss_b), nurl(&hash_c, 47003, &swiss_c)],
            "newscap": NEWS_RW,
        })
        .to_string(),
    )
    .unwrap();
    let grid_path = grid_file.to_str().unwrap();
    let node_path = node.path().to_str().unwrap();
    let err = cli.fails(&["servers", "import", grid_path], "");
    assert!(err.contains("through your own Tahoe node"), "{err}");
    assert!(err.contains("--node-dir"), "{err}");
    let imported = cli.json(
        &["servers", "import", grid_path, "--node-dir", node_path],
        "",
    );
    assert_eq!(imported["grid"]["name"], "Test Grid");
    assert_eq!(imported["grid"]["gateway_url"], "http://127.0.0.1:3456");
    assert_eq!(imported["grid"]["news"], true);
    let names: Vec<&str> = imported["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["storage0", "storage1"]);
    let err = cli.fails(
        &["servers", "import", grid_path, "--node-dir", node_path],
        "",
    );
    assert!(err.contains("already imported"), "{err}");

    // A grid file with a bad NURL is refused as a whole, naming the entry, not the swissnum.
    let bad_grid = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad_grid.path(),
        format!(
            r#"{{"name": "Bad", "gateway_url": "http://x:1", "updates_servers": ["{}"]}}"#,
            nurl(&hash_b, 47002, &swiss_b).replace("#v=1", "#v=9")
        ),
    )
    .unwrap();
    let err = cli.fails(
        &["servers", "import", bad_grid.path().to_str().unwrap()],
        "",
    );
    assert!(
        err.contains("updates server #1 is not a valid NURL"),
        "{err}"
    );

    let listed = cli.json(&["servers", "list", "--node-dir", node_path], "");
    let servers = listed["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    for s in servers {
        let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "grid",
                "host",
                "id",
                "name",
                "port",
                "spki_hash",
                "storage_server"
            ]
        );
    }
    assert_eq!(servers[1]["grid"], "Test Grid");
    assert_eq!(servers[1]["storage_server"], "storage0");
    assert_eq!(listed["grids"][0]["name"], "Test Grid");
    assert_eq!(listed["node_gateway_url"], "http://127.0.0.1:3456/");
    let text = cli.ok(&["servers", "list"], "");
    assert!(
        text.contains(&hash_c) && text.contains("storage1"),
        "{text}"
    );
    let server_b = servers[1]["id"].as_str().unwrap().to_owned();
    let server_c = servers[2]["id"].as_str().unwrap().to_owned();
    let grid_news_id = {
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(cli.home.path().join("config").join("config.json")).unwrap(),
        )
        .unwrap();
        config["grids"][0]["news_id"].as_str().unwrap().to_owned()
    };
    let news_cap: Cap = NEWS_RW.parse().unwrap();
    assert_eq!(
        keyring.get(&grid_news_id).unwrap(),
        news_cap.read_only().to_string()
    );

    // status: everything stored, nothing probed.
    let status = cli.json(&["status", "--node-dir", node_path], "");
    assert_eq!(status["keyring"]["reachable"], true);
    assert_eq!(status["grids"][0]["gateway_url"], "http://127.0.0.1:3456");
    assert_eq!(status["servers"].as_array().unwrap().len(), 3);
    let caps = status["caps"].as_array().unwrap();
    assert_eq!(caps.len(), 2);
    assert_eq!(caps[0]["id"], file_id.as_str());
    assert_eq!(caps[0]["muted"], false);
    assert_eq!(caps[0]["unread"], 0);
    assert_eq!(caps[0]["secret"], "present");
    assert_eq!(status["unread"]["changes"], 0);
    let text = cli.ok(&["status"], "");
    for needle in [
        "Test Grid",
        "http://127.0.0.1:3456",
        file_id.as_str(),
        "Old notes",
        backend.as_str(),
        "reachable",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }

    // servers remove and remove-grid: gone from the config and from the keyring.
    assert_eq!(
        cli.json(&["servers", "remove", &server_a], "")["removed"],
        server_a.as_str()
    );
    assert_gone_from_keyring(backend, &server_a);
    let err = cli.fails(&["servers", "remove", &server_a], "");
    assert!(err.contains("no updates server"), "{err}");
    cli.ok(&["servers", "remove-grid", "Test Grid"], "");
    for id in [&server_b, &server_c, &grid_news_id] {
        assert_gone_from_keyring(backend, id);
    }
    let listed = cli.json(&["servers", "list"], "");
    assert_eq!(listed["servers"], Value::Array(vec![]));
    assert_eq!(listed["grids"], Value::Array(vec![]));

    // The rest of the caps go too, leaving the keyring as it was.
    for id in [&file_id, &ssk_id] {
        cli.ok(&["caps", "remove", id], "");
        assert_gone_from_keyring(backend, id);
    }
    assert!(cli
        .ok(&["caps", "list"], "")
        .contains("no caps are watched"));

    // THE SECRETS TEST: no file the notifier wrote and nothing it printed holds a secret.
    let files = files_under(cli.home.path());
    assert!(
        files.iter().any(|f| f.ends_with("config.json")),
        "{files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert_no_secret(&bytes, &secrets, &file.display().to_string());
    }
    assert!(!cli.printed.is_empty());
    assert_no_secret(&cli.printed, &secrets, "the output");
    // The check itself works: a haystack with one secret piece inside is caught.
    let planted = format!("xx{}yy", &swiss_b[3..19]);
    assert!(holds_secret(planted.as_bytes(), &secrets));
}

/// Whether keyutils can be used here: a session keyring exists and accepts a key.
fn keyutils_usable() -> bool {
    let shown = Command::new("keyctl")
        .args(["show", "@s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(shown, Ok(s) if s.success()) {
        println!(
            "skipped: no session keyring (`keyctl show @s` failed); run under `keyctl session -`"
        );
        return false;
    }
    // Without a session keyring of its own the process falls back to the user-session
    // keyring, which `keyctl show` accepts but which refuses new keys.
    let store = KeyringSecretStore::new(KeyringBackend::Keyutils);
    let id = new_id("probe-").unwrap();
    match store.put(&id, "probe") {
        Ok(()) => {
            store.delete(&id).unwrap();
            true
        }
        Err(e) => {
            println!("skipped: the kernel keyring refuses keys here ({e})");
            false
        }
    }
}

#[test]
fn every_command_over_keyutils() {
    if !keyutils_usable() {
        return;
    }
    exercise(KeyringBackend::Keyutils);
}

#[test]
fn every_command_over_secret_service() {
    match std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
        Some(v) if !v.is_empty() => exercise(KeyringBackend::SecretService),
        _ => println!("skipped: no session bus (DBUS_SESSION_BUS_ADDRESS is not set)"),
    }
}

#[test]
fn missing_secret_service_is_a_clear_error_and_stores_nothing() {
    // No bus at all: the error must say what to start, and no config entry may be left behind.
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tahoe-notifier"))
        .arg("--home")
        .arg(home.path())
        .args(["caps", "add"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("DISPLAY")
        .env("XDG_RUNTIME_DIR", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(DIR_RW.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("gnome-keyring"), "{stderr}");
    assert!(stderr.contains("--keyring keyutils"), "{stderr}");
    assert_no_secret(stderr.as_bytes(), &cap_secrets(DIR_RW), "stderr");
    let config = home.path().join("config").join("config.json");
    if let Ok(text) = std::fs::read_to_string(config) {
        assert!(!text.contains("cap-"), "{text}");
    }
}
