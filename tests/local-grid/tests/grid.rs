//! Integration tests against a real Tahoe-LAFS grid on loopback.
//!
//! Most tests share one grid (starting one takes several seconds). Tests that publish and
//! check every share, or that stop nodes, hold `EXCLUSIVE` so they do not see each other's
//! effects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use local_grid::{Format, Grid, GridError, GridOptions};

static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn grid() -> &'static Grid {
    match local_grid::shared() {
        Ok(grid) => grid,
        Err(e) => panic!("shared grid failed to start: {e}"),
    }
}

/// The storage index of `cap`, as printed by `tahoe debug dump-cap`.
fn storage_index(grid: &Grid, cap: &str) -> String {
    let out = Command::new(grid.tahoe_bin())
        .args(["debug", "dump-cap", cap])
        .stdin(Stdio::null())
        .output()
        .expect("run tahoe debug dump-cap");
    assert!(out.status.success(), "tahoe debug dump-cap failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let si = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("storage index:"))
        .expect("dump-cap prints a storage index")
        .trim()
        .to_owned();
    assert_eq!(si.len(), 26, "Tahoe base32 storage index");
    si
}

/// Every share file of slot `si`, over all storage nodes.
fn share_files(grid: &Grid, si: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for node in grid.storage_nodes() {
        let dir = node.storage_dir.join("shares").join(&si[..2]).join(si);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries {
                files.push(entry.unwrap().path());
            }
        }
    }
    files.sort();
    files
}

/// The seqnum of a mutable share: big-endian u64 at byte 469 (container header 468 bytes, then
/// the share's version byte). The real reader lives in crates/updates-server.
fn seqnum(share: &Path) -> u64 {
    let bytes = std::fs::read(share).unwrap();
    assert!(
        bytes.starts_with(b"Tahoe mutable container v"),
        "{} is not a mutable share",
        share.display()
    );
    u64::from_be_bytes(bytes[469..477].try_into().unwrap())
}

fn seqnums(grid: &Grid, si: &str) -> Vec<u64> {
    share_files(grid, si).iter().map(|f| seqnum(f)).collect()
}

fn assert_seqnums(grid: &Grid, si: &str, expected: u64) {
    let got = seqnums(grid, si);
    assert_eq!(got.len(), 3, "k=2/N=3 on 3 servers: 3 shares");
    assert!(
        got.iter().all(|&s| s == expected),
        "seqnums {got:?}, expected all {expected}"
    );
}

fn is_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) has a /proc entry but is gone for our purpose.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn all_storage_nodes_connected_and_described() {
    let _guard = exclusive();
    let grid = grid();
    let statuses = grid.server_statuses().unwrap();
    let mut names: Vec<&str> = statuses.iter().map(|s| s.nickname.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["storage0", "storage1", "storage2"]);

    assert!(grid.gateway_url().starts_with("http://127.0.0.1:"));
    assert!(grid.gateway_url().ends_with('/'));
    let node_url = std::fs::read_to_string(grid.gateway_dir().join("node.url")).unwrap();
    assert_eq!(node_url.trim(), grid.gateway_url());
    assert!(grid.introducer_furl().starts_with("pb://"));
    assert_eq!(grid.node_pids().len(), 5);

    for (i, node) in grid.storage_nodes().iter().enumerate() {
        assert_eq!(node.name, format!("storage{i}"));
        assert!(node.storage_dir.is_dir(), "{} has storage", node.name);
        let nurl = node.nurl_text().unwrap();
        let furl = std::fs::read_to_string(node.dir.join("private/storage.furl")).unwrap();
        let swissnum = furl.trim().rsplit('/').next().unwrap();
        assert!(nurl.starts_with("pb://"), "NURL scheme");
        assert!(
            nurl.ends_with(&format!("@127.0.0.1:{}/{swissnum}#v=1", node.port)),
            "NURL of {} names its port and swissnum",
            node.name
        );
        // The hash part: unpadded URL-safe base64 of a SHA-256, 43 characters.
        let hash = nurl
            .strip_prefix("pb://")
            .and_then(|r| r.split('@').next())
            .unwrap();
        assert_eq!(hash.len(), 43);
    }
}

fn check_dir_publishes(format: Format, prefix: &str) {
    let _guard = exclusive();
    let grid = grid();
    let dircap = grid.create_mutable_dir(format).unwrap();
    assert!(dircap.starts_with(prefix), "a {prefix} cap");
    let si = storage_index(grid, &dircap);
    assert_seqnums(grid, &si, 1);

    let child = grid
        .put_child(&dircap, "hello world.txt", b"hello")
        .unwrap();
    assert!(child.starts_with("URI:LIT:"), "a 5-byte file is a literal");
    assert_seqnums(grid, &si, 2);

    grid.put_child(&dircap, "big", &[7u8; 4096]).unwrap();
    assert_seqnums(grid, &si, 3);

    let json = grid.list_dir_json(&dircap).unwrap();
    assert_eq!(json[0], "dirnode");
    let children = json[1]["children"].as_object().unwrap();
    assert!(children.contains_key("hello world.txt"));
    assert!(children["big"][1]["ro_uri"]
        .as_str()
        .unwrap()
        .starts_with("URI:CHK:"));

    let sub = grid.mkdir_child(&dircap, "sub dir", Format::Sdmf).unwrap();
    assert!(sub.starts_with("URI:DIR2:"));
    assert_seqnums(grid, &si, 4);
    grid.delete_child(&dircap, "hello world.txt").unwrap();
    assert_seqnums(grid, &si, 5);
    let json = grid.list_dir_json(&dircap).unwrap();
    let children = json[1]["children"].as_object().unwrap();
    assert!(!children.contains_key("hello world.txt"));
    assert!(children.contains_key("sub dir"));
}

#[test]
fn sdmf_dir_seqnum_rises_by_one_per_publish() {
    check_dir_publishes(Format::Sdmf, "URI:DIR2:");
}

#[test]
fn mdmf_dir_seqnum_rises_by_one_per_publish() {
    check_dir_publishes(Format::Mdmf, "URI:DIR2-MDMF:");
}

#[test]
fn mutable_files_overwrite_and_read_back() {
    let _guard = exclusive();
    let grid = grid();
    for (format, prefix) in [(Format::Sdmf, "URI:SSK:"), (Format::Mdmf, "URI:MDMF:")] {
        let cap = grid.create_mutable_file(format, b"version one").unwrap();
        assert!(cap.starts_with(prefix));
        let si = storage_index(grid, &cap);
        assert_seqnums(grid, &si, 1);
        grid.overwrite_mutable_file(&cap, b"version two").unwrap();
        assert_seqnums(grid, &si, 2);
        assert_eq!(grid.read_file(&cap).unwrap(), b"version two");
    }
}

#[test]
fn immutable_file_has_immutable_shares() {
    let grid = grid();
    let data = vec![42u8; 10_000];
    let cap = grid.create_immutable_file(&data).unwrap();
    assert!(cap.starts_with("URI:CHK:"));
    assert_eq!(grid.read_file(&cap).unwrap(), data);
    let si = storage_index(grid, &cap);
    let shares = share_files(grid, &si);
    assert!(!shares.is_empty());
    for share in shares {
        let bytes = std::fs::read(share).unwrap();
        assert!(!bytes.starts_with(b"Tahoe mutable container"));
    }
}

#[test]
fn errors_name_the_operation_but_never_the_cap() {
    let grid = grid();
    // Well-formed but unknown: no server holds this slot.
    let cap =
        "URI:DIR2:hm2bntrmz6ltgqbpaxdhagkvfi:tmcx6voxkqiznfpm5gbjtdocjyqg2r5m4oudqoi5u4dcgicusz5a";
    let err = grid.list_dir_json(cap).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GridError::Http { .. }), "{text}");
    assert!(text.starts_with("list directory failed: HTTP "), "{text}");
    assert!(!text.contains("hm2bntrmz6ltgqbpaxdhagkvfi"), "{text}");
    assert!(!text.contains("tmcx6voxkqiznfpm5gbjtdocjyqg2r5m4oudqoi5u4dcgicusz5a"));

    let err = grid.put_child("URI:DIR2:notacap", "x", b"y").unwrap_err();
    assert!(!err.to_string().contains("notacap"), "{err}");

    assert!(matches!(
        grid.stop_storage_node(99),
        Err(GridError::NoSuchNode {
            index: 99,
            count: 3
        })
    ));
}

#[test]
fn stopped_and_killed_nodes_come_back() {
    let _guard = exclusive();
    let grid = grid();

    let old_pid = grid.storage_node_pid(1).unwrap();
    grid.stop_storage_node(1).unwrap();
    assert_eq!(grid.storage_node_pid(1), None);
    assert!(!is_alive(old_pid));
    assert!(matches!(
        grid.stop_storage_node(1),
        Err(GridError::NotRunning(1))
    ));
    grid.wait_disconnected(1, Duration::from_secs(30)).unwrap();

    // A publish while storage1 is down leaves its share behind by one.
    let cap = grid.create_mutable_file(Format::Sdmf, b"one").unwrap();
    let si = storage_index(grid, &cap);
    grid.start_storage_node(1).unwrap();
    assert!(matches!(
        grid.start_storage_node(1),
        Err(GridError::AlreadyRunning(1))
    ));
    grid.wait_all_connected(Duration::from_secs(60)).unwrap();
    assert!(grid
        .server_statuses()
        .unwrap()
        .iter()
        .all(|s| s.is_connected()));

    // A crash (SIGKILL) leaves a stale pidfile; the node must still start again.
    let killed = grid.storage_node_pid(2).unwrap();
    grid.kill_storage_node(2).unwrap();
    assert!(!is_alive(killed));
    grid.wait_disconnected(2, Duration::from_secs(30)).unwrap();
    grid.start_storage_node(2).unwrap();
    grid.wait_all_connected(Duration::from_secs(60)).unwrap();

    grid.overwrite_mutable_file(&cap, b"two").unwrap();
    assert_eq!(grid.read_file(&cap).unwrap(), b"two");
    let seqs = seqnums(grid, &si);
    assert!(
        seqs.contains(&2),
        "the publish reached the servers: {seqs:?}"
    );
}

#[test]
fn dropping_a_grid_stops_it_and_removes_its_directory() {
    let grid = Grid::start(GridOptions {
        storage_nodes: 1,
        shares_needed: 1,
        shares_happy: 1,
        shares_total: 1,
        base_dir: None,
        storage_web: true,
    })
    .unwrap();
    let node = &grid.storage_nodes()[0];
    let reads_before = node.readv_count().unwrap();
    let cap = grid.create_mutable_file(Format::Sdmf, b"x").unwrap();
    assert_eq!(grid.read_file(&cap).unwrap(), b"x");
    // The node's own counters (its web port): the read went to its shares.
    assert!(node.readv_count().unwrap() > reads_before);
    let pids = grid.node_pids();
    let dir = grid.base_dir().to_path_buf();
    assert_eq!(pids.len(), 3);
    assert!(dir.is_dir());

    drop(grid);
    assert_eq!(wait_gone(&pids, Duration::from_secs(1)), Vec::<u32>::new());
    assert!(!dir.exists(), "temporary directory removed");
}

#[test]
fn invalid_options_are_refused() {
    for options in [
        GridOptions {
            storage_nodes: 0,
            ..GridOptions::default()
        },
        GridOptions {
            shares_needed: 4,
            ..GridOptions::default()
        },
    ] {
        let err = Grid::start(options).unwrap_err();
        assert!(matches!(err, GridError::InvalidOptions(_)), "{err}");
    }
}

/// Run only as a child of `grid_processes_die_with_a_killed_test_process`.
#[test]
#[ignore = "helper: started by another test in a child process"]
fn child_process_holding_a_grid() {
    if std::env::var_os("LOCAL_GRID_CHILD").is_none() {
        return;
    }
    let grid = Grid::start(GridOptions {
        storage_nodes: 1,
        shares_needed: 1,
        shares_happy: 1,
        shares_total: 1,
        base_dir: None,
        storage_web: false,
    })
    .unwrap();
    let pids: Vec<String> = grid.node_pids().iter().map(u32::to_string).collect();
    println!("LOCAL-GRID-DIR {}", grid.base_dir().display());
    println!("LOCAL-GRID-PIDS {}", pids.join(" "));
    // Statics are never dropped, so leaking is what a shared grid does; then wait to be killed.
    std::mem::forget(grid);
    thread::sleep(Duration::from_secs(300));
}

#[test]
fn grid_processes_die_with_a_killed_test_process() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_process_holding_a_grid",
            "--nocapture",
        ])
        .env("LOCAL_GRID_CHILD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut dir = None;
    let mut pids = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while pids.is_empty() {
        let line = lines
            .next()
            .expect("child printed its grid")
            .expect("read child output");
        if let Some(d) = line.strip_prefix("LOCAL-GRID-DIR ") {
            dir = Some(PathBuf::from(d));
        } else if let Some(p) = line.strip_prefix("LOCAL-GRID-PIDS ") {
            pids = p.split(' ').map(|p| p.parse::<u32>().unwrap()).collect();
        }
    }
    let dir = dir.unwrap();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&p| is_alive(p)));

    // SIGKILL: the child runs no clean-up code at all.
    child.kill().unwrap();
    child.wait().unwrap();

    let left = wait_gone(&pids, Duration::from_secs(15));
    assert!(
        left.is_empty(),
        "tahoe processes outlived their test process: {left:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.exists(), "janitor removed {}", dir.display());
}
