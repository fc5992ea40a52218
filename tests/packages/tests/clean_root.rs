//! The two packages where a user would install them: a clean Debian 12 root made with
//! `mmdebstrap --variant=apt bookworm` from Debian's packages (no Rust, no `-dev` package), into
//! which `apt-get install ./tahoe-updates-server_….deb ./tahoe-notifier_….deb` pulls what the
//! packages depend on. There, the installed `tahoe-updates-server` serves the storage nodes of a
//! real grid (started on the host, its node directories inside the root) and the installed
//! `tahoe-notifier watch` reports a change made through the host's gateway. Also: lintian on
//! the packages (no errors), and the validators on the installed desktop entries, metainfo and
//! unit. Prints the packages' sizes and the times; the root is removed afterwards.
//!
//! `TAHOE_NOTIFIER_LONG_TESTS=1` only (it builds release binaries unless `TAHOE_NOTIFIER_DEBS`
//! names a folder holding the two .debs, downloads a few hundred MB from Debian's mirror, and
//! takes minutes). Needs root (mmdebstrap, chroot), mmdebstrap, lintian, desktop-file-utils,
//! appstream, systemd and keyutils (`tests/bootstrap.sh`), and Debian's mirror.
//!
//! ```sh
//! TAHOE_NOTIFIER_LONG_TESTS=1 cargo test -p package-tests --test clean_root -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use local_grid::{Format, Grid, GridOptions};
use package_tests::{check, documented_man_pages, have_tool, verify_unit, workspace_root};
use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The environment of every command run inside the root: nothing of the host's.
const ROOT_PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
/// The user's home inside the root.
const HOME: &str = "/home/tester";

fn long_tests() -> bool {
    std::env::var_os("TAHOE_NOTIFIER_LONG_TESTS").is_some_and(|v| v == "1")
}

/// Figures for the report at the end, in the order they were taken.
#[derive(Default)]
struct Report(Vec<(String, String)>);

impl Report {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let (what, value) = (what.into(), value.into());
        println!("clean_root: {what}: {value}");
        self.0.push((what, value));
    }

    fn time(&mut self, what: &str, elapsed: Duration) {
        self.add(what, format!("{:.1} s", elapsed.as_secs_f64()));
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        println!("\nclean_root: summary");
        for (what, value) in &self.0 {
            println!("  {what:<52} {value}");
        }
    }
}

/// A process that is killed when the test ends, however it ends.
struct Running {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` inside `root`, as root, with a clean environment plus `env`.
fn in_root(root: &Path, env: &[&str], command: &[&str]) -> Command {
    let mut chroot = Command::new("chroot");
    chroot
        .arg(root)
        .arg("/usr/bin/env")
        .arg("-i")
        .arg(ROOT_PATH)
        .arg("LANG=C.UTF-8")
        .args(env)
        .args(command);
    chroot
}

/// Runs `command` inside `root` and returns its standard output; it must succeed.
fn in_root_ok(root: &Path, env: &[&str], command: &[&str]) -> String {
    let checked = check(&mut in_root(root, env, command));
    assert!(checked.success, "{}: {}", checked.command, checked.text);
    checked.stdout
}

/// The installed `tahoe-notifier` inside `root`, in a new session keyring (`keyctl session -`),
/// with the kernel key store: separate sessions of one user share it through the user's
/// persistent keyring, so each command sees what the previous one stored.
fn notifier(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("keyctl");
    command
        .args(["session", "-", "chroot"])
        .arg(root)
        .args(["/usr/bin/env", "-i", ROOT_PATH, "LANG=C.UTF-8"])
        .arg(format!("HOME={HOME}"))
        .args(["/usr/bin/tahoe-notifier", "--keyring", "keyutils", "--json"])
        .args(args);
    command
}

/// Runs a short `tahoe-notifier` command with `stdin`; it must succeed. Returns its JSON answer.
fn notifier_ok(root: &Path, args: &[&str], stdin: &str) -> Value {
    let mut child = notifier(root, args)
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
    assert!(
        output.status.success(),
        "tahoe-notifier {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // keyctl says which session it joined on standard output, before the program's answer.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer: String = stdout
        .lines()
        .filter(|line| !line.starts_with("Joined session keyring"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&answer).unwrap_or(Value::Null)
}

/// The two .debs: from `TAHOE_NOTIFIER_DEBS`, else built now by `packaging/build.sh`.
fn packages(report: &mut Report) -> (PathBuf, PathBuf) {
    let arch = String::from_utf8(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let arch = arch.trim();
    let dir = match std::env::var_os("TAHOE_NOTIFIER_DEBS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // The target directory this test was built into, so that the release build shares
            // it with the workspace's other builds.
            let target = local_grid::bins::profile_dir()
                .parent()
                .expect("a profile folder lives in the target folder")
                .to_path_buf();
            let out = target.join("debian");
            let started = Instant::now();
            let mut build = Command::new(workspace_root().join("packaging/build.sh"));
            // `cargo test` gives this process the test package's CARGO_PKG_*, CARGO_MANIFEST_*
            // and so on, which build scripts (ring's) watch: passed on, they would make the
            // release build redo work that a build from a shell then redoes again.
            for (name, _) in std::env::vars_os() {
                if name
                    .to_str()
                    .is_some_and(|n| n.starts_with("CARGO_") && n != "CARGO_HOME")
                {
                    build.env_remove(name);
                }
            }
            let status = build
                .arg("--out")
                .arg(&out)
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .unwrap();
            assert!(status.success(), "packaging/build.sh failed");
            report.time(
                "packaging/build.sh (release build + cargo-deb)",
                started.elapsed(),
            );
            out
        }
    };
    let deb = |package: &str| {
        let path = dir.join(format!("{package}_{VERSION}-1_{arch}.deb"));
        assert!(path.is_file(), "{} is missing", path.display());
        path
    };
    (deb("tahoe-updates-server"), deb("tahoe-notifier"))
}

fn deb_field(deb: &Path, field: &str) -> String {
    let output = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg(field)
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Installed packages of the root: (name, installed size in KiB).
fn installed(root: &Path) -> Vec<(String, u64)> {
    in_root_ok(
        root,
        &[],
        &[
            "dpkg-query",
            "-W",
            "-f",
            "${db:Status-Abbrev}|${Package}|${Installed-Size}\n",
        ],
    )
    .lines()
    .filter(|line| line.starts_with("ii"))
    .filter_map(|line| {
        let mut parts = line.split('|').skip(1);
        let name = parts.next()?.to_owned();
        let size = parts.next()?.trim().parse().unwrap_or(0);
        Some((name, size))
    })
    .collect()
}

#[test]
fn packages_install_and_push_a_change_in_a_clean_debian_root() {
    if !long_tests() {
        println!(
            "skipped: set TAHOE_NOTIFIER_LONG_TESTS=1 (builds release packages and a Debian root)"
        );
        return;
    }
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    assert_eq!(uid.trim(), "0", "needs root: mmdebstrap and chroot");
    for tool in [
        "mmdebstrap",
        "lintian",
        "desktop-file-validate",
        "appstreamcli",
        "systemd-analyze",
        "keyctl",
        "chroot",
    ] {
        assert!(have_tool(tool), "{tool} is needed (tests/bootstrap.sh)");
    }
    let mut report = Report::default();

    // The packages, their sizes, and what lintian says.
    let (server_deb, notifier_deb) = packages(&mut report);
    for deb in [&server_deb, &notifier_deb] {
        let name = deb_field(deb, "Package");
        report.add(
            format!("{name}: .deb size"),
            format!("{} KiB", fs::metadata(deb).unwrap().len() / 1024),
        );
        report.add(
            format!("{name}: Installed-Size"),
            format!("{} KiB", deb_field(deb, "Installed-Size")),
        );
        report.add(format!("{name}: Depends"), deb_field(deb, "Depends"));
    }
    let lintian = check(
        Command::new("lintian")
            .args(["--display-info", "--pedantic"])
            .arg(&server_deb)
            .arg(&notifier_deb),
    );
    let tags: Vec<&str> = lintian
        .text
        .lines()
        .filter(|l| l.len() > 2 && l.as_bytes()[1] == b':')
        .collect();
    println!("lintian:\n{}", tags.join("\n"));
    let errors: Vec<&&str> = tags.iter().filter(|l| l.starts_with("E:")).collect();
    assert!(
        lintian.success && errors.is_empty(),
        "lintian errors: {errors:?}\n{}",
        lintian.text
    );
    for level in ["W:", "I:", "P:"] {
        report.add(
            format!("lintian {level} tags"),
            tags.iter()
                .filter(|l| l.starts_with(level))
                .count()
                .to_string(),
        );
    }
    report.add("lintian E: tags", "0");

    // A clean root from Debian's packages.
    let scratch = tempfile::tempdir().unwrap();
    // mmdebstrap makes the folder (0755: apt's download user must be able to enter "/").
    let root = scratch.path().join("root");
    let started = Instant::now();
    let status = Command::new("mmdebstrap")
        .args(["--variant=apt", "--quiet", "bookworm"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success(), "mmdebstrap failed");
    report.time("mmdebstrap --variant=apt bookworm", started.elapsed());
    // Name resolution for apt inside the root.
    fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).unwrap();
    let before = installed(&root);
    report.add("packages in the clean root", before.len().to_string());
    assert!(
        !before
            .iter()
            .any(|(name, _)| name == "rustc" || name == "cargo"),
        "Rust in the clean root"
    );

    // A running grid, its storage nodes' directories inside the root so that the server in the
    // root can read them.
    let started = Instant::now();
    let grid = Grid::start(GridOptions {
        base_dir: Some(root.join("srv/grid")),
        ..GridOptions::default()
    })
    .expect("a local grid inside the root");
    report.time(
        "local grid started (3 storage nodes, gateway)",
        started.elapsed(),
    );
    let dircap = grid.create_mutable_dir(Format::Sdmf).unwrap();

    let started = Instant::now();
    in_root_ok(&root, &[], &["apt-get", "update", "-qq"]);
    report.time("apt-get update in the root", started.elapsed());

    // Install, as a user would: apt resolves the dependencies from Debian's archive.
    let debs = root.join("tmp/debs");
    fs::create_dir_all(&debs).unwrap();
    for deb in [&server_deb, &notifier_deb] {
        let copy = debs.join(deb.file_name().unwrap());
        fs::copy(deb, &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let install_started = Instant::now();
    let apt = check(&mut in_root(
        &root,
        &["DEBIAN_FRONTEND=noninteractive"],
        &[
            "sh",
            "-c",
            "cd /tmp/debs && apt-get install -y -q ./tahoe-updates-server_*.deb ./tahoe-notifier_*.deb",
        ],
    ));
    let install_time = install_started.elapsed();
    let tail: Vec<&str> = apt.text.lines().rev().take(15).collect();
    assert!(apt.success, "apt-get install failed:\n{}", apt.text);
    println!(
        "apt-get install (last lines):\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    report.time(
        "apt-get install ./tahoe-updates-server_*.deb ./tahoe-notifier_*.deb",
        install_time,
    );

    let after = installed(&root);
    let added: Vec<&(String, u64)> = after.iter().filter(|p| !before.contains(p)).collect();
    report.add(
        "packages apt added (with ours)",
        format!(
            "{}, {} MiB installed",
            added.len(),
            added.iter().map(|(_, kib)| kib).sum::<u64>() / 1024
        ),
    );
    let unwanted: Vec<&String> = after
        .iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.ends_with("-dev")
                || ["rustc", "cargo"].contains(&name.as_str())
                || name.starts_with("libstd-rust")
        })
        .collect();
    assert!(
        unwanted.is_empty(),
        "the root has build packages: {unwanted:?}"
    );
    report.add("-dev, rustc or cargo packages in the root", "none");

    // The installed binaries say the workspace's version and find all their libraries.
    for bin in [
        "tahoe-notifier-tray",
        "tahoe-notifier-app",
        "tahoe-notifier",
        "tahoe-updates-server",
    ] {
        let said = in_root_ok(&root, &[], &[&format!("/usr/bin/{bin}"), "--version"]);
        assert_eq!(said.trim(), format!("{bin} {VERSION}"));
        let libraries = in_root_ok(&root, &[], &["ldd", &format!("/usr/bin/{bin}")]);
        assert!(!libraries.contains("not found"), "{bin}: {libraries}");
        // The always-running tray speaks its icon over D-Bus: no toolkit, no web view.
        if bin == "tahoe-notifier-tray" {
            for toolkit in ["libgtk", "libwebkit2gtk", "libayatana"] {
                assert!(
                    !libraries.contains(toolkit),
                    "{bin} links {toolkit}: {libraries}"
                );
            }
        }
    }

    // The installed server beside each storage node, as the unit runs it: the NURL goes to the
    // state directory, not into the node directory.
    let logs = scratch.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let mut servers = Vec::new();
    let mut nurls = Vec::new();
    for node in grid.storage_nodes() {
        let inside = Path::new("/").join(node.dir.strip_prefix(&root).unwrap());
        let state = format!("/var/lib/tahoe-updates-server/{}", node.name);
        let state_on_host = root.join(state.trim_start_matches('/'));
        fs::create_dir_all(&state_on_host).unwrap();
        fs::set_permissions(&state_on_host, fs::Permissions::from_mode(0o700)).unwrap();
        let nurl_file = format!("{state}/updates-server.nurl");
        let mut child = in_root(
            &root,
            &["RUST_LOG=info"],
            &[
                "/usr/bin/tahoe-updates-server",
                "run",
                "--node-dir",
                inside.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--public-host",
                "127.0.0.1",
                "--nurl-file",
                &nurl_file,
                "--exit-when-stdin-closes",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(logs.join(format!("{}.log", node.name))).unwrap())
        .spawn()
        .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let listening = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.starts_with("listening on"));
        assert!(listening, "the server for {} did not start", node.name);
        // Keep reading so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let nurl = fs::read_to_string(root.join(nurl_file.trim_start_matches('/'))).unwrap();
        let mode = fs::metadata(root.join(nurl_file.trim_start_matches('/')))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the NURL file is readable by others");
        assert!(
            !node.dir.join("private/updates-server.nurl").exists(),
            "a NURL was written into the node directory"
        );
        nurls.push(nurl.trim().to_owned());
        servers.push(Running {
            child,
            _stdin: stdin,
        });
    }

    // The installed CLI in the root: import the grid, add the folder, watch.
    let home = root.join(HOME.trim_start_matches('/'));
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    let grid_file = home.join("grid.json");
    fs::write(
        &grid_file,
        serde_json::json!({
            "name": "clean root grid",
            "gateway_url": grid.gateway_url(),
            "updates_servers": nurls,
        })
        .to_string(),
    )
    .unwrap();
    fs::set_permissions(&grid_file, fs::Permissions::from_mode(0o600)).unwrap();
    notifier_ok(
        &root,
        &["servers", "import", &format!("{HOME}/grid.json")],
        "",
    );
    // It held the swissnums; they are in the keyring now.
    fs::remove_file(&grid_file).unwrap();
    let added = notifier_ok(
        &root,
        &["caps", "add", "--label", "Clean Root Folder"],
        &format!("{dircap}\n"),
    );
    let id = added["id"]
        .as_str()
        .expect("caps add prints the id")
        .to_owned();

    let mut watch = notifier(&root, &["watch", "--no-desktop"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(logs.join("watch.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let watching = Running {
        child: watch,
        _stdin: None,
    };
    let (sender, events) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                if sender.send(event).is_err() {
                    break;
                }
            }
        }
    });
    let wait_for = |wait: Duration, pick: &dyn Fn(&Value) -> bool| -> Option<Value> {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match events.recv_timeout(left) {
                Ok(event) if pick(&event) => return Some(event),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let servers_count = nurls.len();
    let subscribed = wait_for(Duration::from_secs(60), &|e| {
        e["event"] == "cap-status" && e["id"] == id.as_str() && e["subscribed_on"] == servers_count
    });
    assert!(
        subscribed.is_some(),
        "watch never subscribed the folder on all {servers_count} servers (logs in {})",
        logs.display()
    );

    // A change through the host's gateway, pushed by the servers in the root.
    let changed_at = Instant::now();
    grid.put_child(&dircap, "hello.txt", b"hello from the host")
        .unwrap();
    let changed = wait_for(Duration::from_secs(30), &|e| {
        e["event"] == "changed" && e["cap_id"] == id.as_str()
    })
    .expect("the installed tahoe-notifier reported the change");
    let reported_after = changed_at.elapsed();
    let first_notification = install_started.elapsed();
    let summary = changed["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("Clean Root Folder") && summary.contains("hello.txt"),
        "{changed}"
    );
    report.add("reported", summary);
    report.time("change → report", reported_after);
    report.time(
        "apt-get install start → first notification",
        first_notification,
    );
    report.time(
        "  of which the test's own steps after apt",
        first_notification - install_time,
    );

    // The installed files, checked where the package put them.
    for entry in [
        "usr/share/applications/org.tahoe_lafs.Notifier.desktop",
        "etc/xdg/autostart/tahoe-notifier.desktop",
    ] {
        let checked = check(Command::new("desktop-file-validate").arg(root.join(entry)));
        assert!(
            checked.success && checked.text.trim().is_empty(),
            "{}: {}",
            checked.command,
            checked.text
        );
        report.add(format!("desktop-file-validate /{entry}"), "no findings");
    }
    let checked = check(
        Command::new("appstreamcli")
            .args(["validate", "--no-net"])
            .arg(root.join("usr/share/metainfo/org.tahoe_lafs.Notifier.metainfo.xml")),
    );
    assert!(checked.success, "{}: {}", checked.command, checked.text);
    report.add(
        "appstreamcli validate (metainfo)",
        checked.text.trim().replace('\n', "; "),
    );
    let unit_path = root.join("usr/lib/systemd/system/tahoe-updates-server@.service");
    let unit = fs::read_to_string(&unit_path).unwrap();
    for page in documented_man_pages(&unit) {
        assert!(
            root.join(format!("usr/share/man/man1/{page}.gz")).is_file(),
            "the unit names {page}, which the package does not install"
        );
    }
    let checked = verify_unit(&root, "storage1");
    assert!(
        checked.success && checked.text.trim().is_empty(),
        "{}: {}",
        checked.command,
        checked.text
    );
    report.add(
        "systemd-analyze verify tahoe-updates-server@storage1",
        "no findings",
    );

    drop(watching);
    drop(servers);
    drop(grid);
    let started = Instant::now();
    drop(scratch);
    report.time("root removed", started.elapsed());
}
