//! From nothing to a notification with the CLI, as a new user would: the operator invites with
//! `servers invite` through a magic-wormhole mailbox (a real local one), the user joins with
//! `servers join`, watches a folder of theirs by its Tahoe alias (made by the real
//! `tahoe create-alias`) and gets a desktop notification when it changes. A used code and a
//! mistyped code fail cleanly and leave nothing behind. Nothing secret (the code, the grid
//! description's swissnums, the alias's or the news directory's write-caps) reaches a file, an
//! output or the bus, and no write-cap reaches the keyring.
//!
//! Real parts: a Tahoe 1.20 grid, the updates server's code beside each storage node, the
//! mailbox server from PyPI, the session keyring (keyutils) and, under
//! `tests/with-desktop-services.sh`, dunst on the session bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../notifier-core/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use local_grid::desktop::NotifyMonitor;
use local_grid::magic_folder::WormholeMailbox;
use local_grid::{Format, Grid};
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore, SecretStore};
use serde_json::Value;
use support::InProcessServer;

fn keyutils_usable() -> bool {
    let shown = Command::new("keyctl")
        .args(["show", "@s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(shown, Ok(s) if s.success()) {
        println!("skipped: no session keyring; run under `keyctl session -`");
        return false;
    }
    true
}

/// One person's `tahoe-notifier`: their config folder and their home (whose `~/.tahoe` is
/// their Tahoe node). Everything it printed is kept for the secrets scan.
struct Person {
    home: PathBuf,
    user_home: PathBuf,
    mailbox: String,
    printed: Vec<String>,
}

impl Person {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tahoe-notifier"));
        command
            .arg("--home")
            .arg(&self.home)
            .args(["--keyring", "keyutils", "--json"])
            .args(args)
            .env("HOME", &self.user_home)
            .env("TAHOE_NOTIFIER_MAILBOX", &self.mailbox)
            .env_remove("TAHOE_NOTIFIER_HOME");
        command
    }

    fn run(&mut self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        self.keep(&output);
        output
    }

    fn keep(&mut self, output: &Output) {
        self.printed
            .push(String::from_utf8_lossy(&output.stdout).into_owned());
        self.printed
            .push(String::from_utf8_lossy(&output.stderr).into_owned());
    }

    fn json(&mut self, args: &[&str], stdin: &str) -> Value {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn fails(&mut self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, stdin);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

/// A running `servers invite`: its code, and the rest of what it prints.
struct Invite {
    child: Child,
    code: String,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Invite {
    fn start(operator: &Person, args: &[&str], stdin: &str) -> Invite {
        let mut full = vec!["servers", "invite"];
        full.extend_from_slice(args);
        let mut child = operator
            .command(&full)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let code = first["code"].as_str().unwrap().to_owned();
        assert!(
            code.split('-').count() == 3 && code.split('-').next().unwrap().parse::<u32>().is_ok(),
            "a code like 7-guitarist-revenge: {code}"
        );
        Invite { child, code, lines }
    }

    /// What the operator's side said at the end, and its exit status.
    fn finish(mut self, operator: &mut Person) -> (Option<Value>, bool, String) {
        let last = self
            .lines
            .next()
            .and_then(Result::ok)
            .and_then(|line| serde_json::from_str(&line).ok());
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = self.child.wait().unwrap();
        operator.printed.push(stderr.clone());
        operator
            .printed
            .push(self.code.clone() + " (the operator's own terminal)");
        (last, status.success(), stderr)
    }
}

/// Every file under `dir`, as text (lossy).
fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_join_and_an_alias_bring_the_first_notification() {
    if !keyutils_usable() {
        return;
    }
    let grid = local_grid::shared().expect("a local grid");
    let mut servers = Vec::new();
    for node in grid.storage_nodes() {
        servers.push(InProcessServer::start(node).await);
    }
    let nurls: Vec<String> = servers.iter().map(|s| s.nurl.to_string()).collect();
    tokio::task::spawn_blocking(move || scenario(grid, &nurls))
        .await
        .unwrap();
    drop(servers);
}

fn scenario(grid: &'static Grid, nurls: &[String]) {
    let work = tempfile::tempdir().unwrap();
    let mailbox = WormholeMailbox::start(grid, work.path()).unwrap();
    let monitor = NotifyMonitor::start();

    // The operator's side: each updates server's NURL file, the news directory.
    let operator_dir = work.path().join("operator");
    std::fs::create_dir_all(&operator_dir).unwrap();
    let mut nurl_args: Vec<String> = Vec::new();
    for (i, nurl) in nurls.iter().enumerate() {
        let file = operator_dir.join(format!("updates-{i}.nurl"));
        std::fs::write(&file, format!("{nurl}\n")).unwrap();
        nurl_args.extend(["--nurl-file".to_owned(), file.display().to_string()]);
    }
    let news_write = grid.create_mutable_dir(Format::Sdmf).unwrap();
    let mut operator = Person {
        home: operator_dir.join("home"),
        user_home: operator_dir.clone(),
        mailbox: mailbox.url().to_owned(),
        printed: Vec::new(),
    };
    let mut invite_args: Vec<&str> = vec!["--name", "Invite Grid", "--own-gateway", "--news"];
    invite_args.extend(nurl_args.iter().map(String::as_str));

    // The user's side: a Tahoe node at ~/.tahoe (its node.url names the grid's gateway) with an
    // alias made by the real `tahoe create-alias`.
    let user_home = work.path().join("user");
    let node_dir = user_home.join(".tahoe");
    std::fs::create_dir_all(node_dir.join("private")).unwrap();
    std::fs::write(
        node_dir.join("node.url"),
        format!("{}\n", grid.gateway_url()),
    )
    .unwrap();
    let (alias_write, alias_read) = grid.create_alias(&node_dir, "shared").unwrap();
    assert!(
        alias_write.starts_with("URI:DIR2:"),
        "a write-cap: tahoe made it"
    );
    let mut user = Person {
        home: work.path().join("notifier-home"),
        user_home: user_home.clone(),
        mailbox: mailbox.url().to_owned(),
        printed: Vec::new(),
    };

    // A mistyped code: both sides fail cleanly, the user's side keeps nothing.
    let invite = Invite::start(&operator, &invite_args, &news_write);
    let nameplate = invite.code.split('-').next().unwrap().to_owned();
    let err = user.fails(&["servers", "join"], &format!("{nameplate}-wrong-guess\n"));
    assert!(err.contains("did not match the operator's"), "{err}");
    let (_, operator_ok, operator_err) = invite.finish(&mut operator);
    assert!(!operator_ok);
    assert!(operator_err.contains("did not match"), "{operator_err}");
    assert_eq!(
        user.json(&["servers", "list"], "")["grids"],
        Value::Array(vec![]),
        "a failed join imports nothing"
    );

    // The real invite: joined once; the operator is told.
    let invite = Invite::start(&operator, &invite_args, &news_write);
    let code = invite.code.clone();
    let joined = user.json(&["servers", "join"], &format!("{code}\n"));
    assert_eq!(joined["grid"]["name"], "Invite Grid");
    assert_eq!(joined["grid"]["news"], true);
    assert_eq!(
        joined["grid"]["gateway_url"],
        grid.gateway_url().trim_end_matches('/')
    );
    assert!(
        joined["grid"]["gateway_url_from"]
            .as_str()
            .unwrap()
            .contains("node.url"),
        "{joined}"
    );
    assert_eq!(joined["servers"].as_array().unwrap().len(), nurls.len());
    let (last, operator_ok, operator_err) = invite.finish(&mut operator);
    assert!(operator_ok, "{operator_err}");
    assert_eq!(last.unwrap()["joined"], "Invite Grid");

    // The same code again: refused, nothing changes.
    let err = user.fails(&["servers", "join"], &format!("{code}\n"));
    assert!(
        err.contains("no invite is waiting under that code"),
        "{err}"
    );
    assert_eq!(
        user.json(&["servers", "list"], "")["grids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Watch the alias; Tahoe's own reduction is what is kept.
    let added = user.json(&["caps", "add", "--alias", "shared"], "");
    assert_eq!(added["label"], "shared");
    assert_eq!(added["cap_kind"], "DIR2-RO");
    let cap_id = added["id"].as_str().unwrap().to_owned();
    let keyring = KeyringSecretStore::new(KeyringBackend::Keyutils);
    assert_eq!(keyring.get(&cap_id).unwrap(), alias_read);

    // A change through the gateway is one desktop notification naming the file.
    let mut watch = user
        .command(&["watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (sender, events) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed_by_watch = Vec::new();
    let mut wait_for = |wanted: &dyn Fn(&str) -> bool, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("watch never said {what}: {printed_by_watch:?}"));
            printed_by_watch.push(line.clone());
            if wanted(&line) {
                return;
            }
        }
    };
    wait_for(
        &|l| l.contains("cap-status") && l.contains(&format!("\"subscribed_on\":{}", nurls.len())),
        "the alias is subscribed everywhere",
    );
    grid.put_child(&alias_write, "welcome.txt", b"hello")
        .unwrap();
    wait_for(
        &|l| l.contains("changed") && l.contains("welcome.txt"),
        "the change",
    );
    if let Some(monitor) = &monitor {
        assert!(
            monitor.wait_for(&["welcome.txt"], Duration::from_secs(10)),
            "a desktop notification naming the file: {:?}",
            monitor.calls()
        );
    } else {
        println!("no desktop services: the Notify call is not checked");
    }
    let _ = watch.kill();
    let output = watch.wait_with_output().unwrap();
    user.keep(&output);
    user.printed.extend(printed_by_watch);

    // Secrets: the code, the grid's swissnums, both write-caps, anywhere but where they belong.
    let mut secrets: Vec<(String, &str)> = vec![
        (code.clone(), "the invite code"),
        (alias_write.clone(), "the alias's write-cap"),
        (news_write.clone(), "the news directory's write-cap"),
    ];
    for nurl in nurls {
        let swissnum = nurl.rsplit('/').next().unwrap().trim_end_matches("#v=1");
        secrets.push((swissnum.to_owned(), "a swissnum of the grid's description"));
    }
    let mut places: Vec<(String, String)> = Vec::new();
    for (path, text) in files_under(&user.home) {
        places.push((path.display().to_string(), text));
    }
    for (i, text) in user.printed.iter().enumerate() {
        places.push((format!("user output #{i}"), text.clone()));
    }
    if let Some(monitor) = &monitor {
        places.push((
            "the Notify calls".to_owned(),
            std::fs::read_to_string(monitor.log()).unwrap_or_default(),
        ));
    }
    for (place, text) in &places {
        for (secret, what) in &secrets {
            assert!(!text.contains(secret.as_str()), "{what} found in {place}");
        }
        assert!(!text.contains("URI:DIR2:"), "a write-cap found in {place}");
    }
    // The keyring holds the grid's NURLs and read-caps, never a write-cap.
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(user.home.join("config").join("config.json")).unwrap(),
    )
    .unwrap();
    let mut ids: Vec<String> = Vec::new();
    for key in ["caps", "servers"] {
        for entry in config[key].as_array().unwrap() {
            ids.push(entry["id"].as_str().unwrap().to_owned());
        }
    }
    for grid in config["grids"].as_array().unwrap() {
        ids.push(grid["news_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let stored = keyring.get(id).unwrap();
        assert!(
            !stored.contains(&alias_write)
                && !stored.contains(&news_write)
                && !stored.contains("URI:DIR2:"),
            "a write-cap in the keyring under {id}"
        );
        assert!(!stored.contains(&code));
    }
    assert_eq!(
        ids.len(),
        1 + nurls.len() + 1,
        "a cap, the servers, the news cap"
    );
    println!(
        "scanned {} places for {} secrets; {} keyring entries hold no write-cap",
        places.len(),
        secrets.len(),
        ids.len()
    );
}
