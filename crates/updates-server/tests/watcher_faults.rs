//! Storage-node faults under the share watcher: shares truncated mid-write, files that cannot be
//! read as shares (a FIFO, a directory), a slot deleted and recreated with a lower seqnum, a full
//! disk (a 1 MiB tmpfs when this runs as root and may mount), and the real inotify limit
//! (`TAHOE_NOTIFIER_LONG_TESTS=1` only: it lowers a system-wide setting for a moment). None may
//! crash or hang the watcher or produce a seqnum that is not on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tahoe_caps::StorageIndex;
use tokio::sync::mpsc;
use updates_server::share::{DATA_OFFSET, MUTABLE_HEADER_LEN, MUTABLE_MAGIC_V2};
use updates_server::slots::{SlotChange, SlotDirectory, SlotState};
use updates_server::watcher::{ShareWatcher, WatcherOptions};

const EXPECT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);
const SHARE_LEN: usize = 1200;

fn si(n: u8) -> StorageIndex {
    StorageIndex::from_bytes([n; 16])
}

fn mutable_share(seqnum: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; SHARE_LEN];
    bytes[..32].copy_from_slice(MUTABLE_MAGIC_V2);
    let data_length = (SHARE_LEN - DATA_OFFSET) as u64;
    bytes[84..92].copy_from_slice(&data_length.to_be_bytes());
    bytes[DATA_OFFSET + 1..MUTABLE_HEADER_LEN].copy_from_slice(&seqnum.to_be_bytes());
    bytes
}

fn slot_dir(storage: &Path, storage_index: &StorageIndex) -> PathBuf {
    storage.join("shares").join(storage_index.share_dir())
}

fn create_mutable(storage: &Path, storage_index: &StorageIndex, shnum: u32, seqnum: u64) {
    let dir = slot_dir(storage, storage_index);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(shnum.to_string()), mutable_share(seqnum)).unwrap();
}

fn write_in_place(path: &Path, offset: u64, data: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(data)
}

fn set_seqnum(path: &Path, seqnum: u64) {
    write_in_place(path, DATA_OFFSET as u64 + 1, &seqnum.to_be_bytes()).unwrap();
}

/// Starts a watcher off the test's thread, so that a start-up scan that blocks (on a FIFO, say)
/// fails the test instead of hanging it; `release` unblocks such a scan before failing.
async fn start(
    storage: &Path,
    options: WatcherOptions,
    release: impl FnOnce(),
) -> (ShareWatcher, mpsc::Receiver<SlotChange>) {
    let (tx, rx) = mpsc::channel(64);
    let storage = storage.to_owned();
    let starting =
        tokio::task::spawn_blocking(move || ShareWatcher::start(storage, options, tx).unwrap());
    match tokio::time::timeout(EXPECT, starting).await {
        Ok(watcher) => (watcher.unwrap(), rx),
        Err(_) => {
            release();
            panic!("the watcher's start-up scan blocked");
        }
    }
}

async fn next_change(rx: &mut mpsc::Receiver<SlotChange>) -> Option<SlotChange> {
    tokio::time::timeout(EXPECT, rx.recv()).await.ok().flatten()
}

async fn assert_quiet(rx: &mut mpsc::Receiver<SlotChange>) {
    if let Ok(Some(change)) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("unexpected change {change:?}");
    }
}

async fn wait_state(watcher: &ShareWatcher, storage_index: &StorageIndex, expected: SlotState) {
    let deadline = tokio::time::Instant::now() + EXPECT;
    while watcher.state(storage_index) != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "state of {storage_index} is {:?}, expected {expected:?}",
            watcher.state(storage_index)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn change(storage_index: StorageIndex, seqnum: u64) -> Option<SlotChange> {
    Some(SlotChange::new(storage_index, seqnum))
}

#[tokio::test]
async fn a_share_truncated_mid_rewrite_keeps_its_last_seqnum_until_completed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    create_mutable(&storage, &si(1), 0, 3);
    let share = slot_dir(&storage, &si(1)).join("0");
    let (watcher, mut rx) = start(&storage, WatcherOptions::default(), || {}).await;

    // Rewritten from scratch and caught (closed) half way: inside the container header, then
    // inside the seqnum itself, whose first bytes already hold the new value's.
    let full = mutable_share(0x0102_0304_0506_0708);
    for cut in [0, 100, DATA_OFFSET, DATA_OFFSET + 1, MUTABLE_HEADER_LEN - 3] {
        fs::write(&share, &full[..cut]).unwrap();
        assert_quiet(&mut rx).await;
        assert_eq!(watcher.state(&si(1)), SlotState::Mutable { seqnum: 3 });
    }
    // The data length still zero (header written before the data length is): not a seqnum.
    let mut no_length = full.clone();
    no_length[84..92].fill(0);
    fs::write(&share, &no_length).unwrap();
    assert_quiet(&mut rx).await;
    // Completed: exactly the final seqnum, once.
    fs::write(&share, &full).unwrap();
    assert_eq!(
        next_change(&mut rx).await,
        change(si(1), 0x0102_0304_0506_0708)
    );
    assert_quiet(&mut rx).await;
    assert!(watcher.stats().skipped_reads >= 6, "{:?}", watcher.stats());
}

#[tokio::test]
async fn a_directory_in_place_of_a_share_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    create_mutable(&storage, &si(1), 0, 4);
    fs::create_dir(slot_dir(&storage, &si(1)).join("1")).unwrap();
    let (watcher, mut rx) = start(&storage, WatcherOptions::default(), || {}).await;
    assert_eq!(watcher.state(&si(1)), SlotState::Mutable { seqnum: 4 });
    assert!(watcher.stats().skipped_reads >= 1, "{:?}", watcher.stats());
    // One appearing later, too.
    fs::create_dir(slot_dir(&storage, &si(1)).join("2")).unwrap();
    set_seqnum(&slot_dir(&storage, &si(1)).join("0"), 5);
    assert_eq!(next_change(&mut rx).await, change(si(1), 5));
    assert_quiet(&mut rx).await;
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

/// Opens a FIFO for writing without blocking, which lets a reader blocked in `open` go on.
fn release_fifo(path: &Path) {
    let _ = OpenOptions::new().write(true).open(path);
}

#[tokio::test]
async fn a_fifo_in_place_of_a_share_is_skipped_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    create_mutable(&storage, &si(1), 0, 2);
    create_mutable(&storage, &si(2), 0, 7);
    let fifo_at_start = slot_dir(&storage, &si(1)).join("1");
    mkfifo(&fifo_at_start);
    let release = fifo_at_start.clone();
    let (watcher, mut rx) = start(&storage, WatcherOptions::default(), move || {
        release_fifo(&release)
    })
    .await;
    assert_eq!(watcher.state(&si(1)), SlotState::Mutable { seqnum: 2 });

    // One appearing while the watcher runs must not stall it either.
    let fifo_later = slot_dir(&storage, &si(2)).join("3");
    mkfifo(&fifo_later);
    set_seqnum(&slot_dir(&storage, &si(2)).join("0"), 8);
    let got = next_change(&mut rx).await;
    if got.is_none() {
        release_fifo(&fifo_later);
        panic!("the watcher stalled on a FIFO");
    }
    assert_eq!(got, change(si(2), 8));
    set_seqnum(&slot_dir(&storage, &si(1)).join("0"), 3);
    assert_eq!(next_change(&mut rx).await, change(si(1), 3));
    assert!(watcher.stats().skipped_reads >= 2, "{:?}", watcher.stats());
}

/// A recreated slot is a new slot: Tahoe only deletes a slot's folder when its last share goes
/// (or an operator does), and a slot created again starts over. The index shows the new
/// (lower) seqnum, and the change is announced, since subscribers must learn that what they had
/// is gone; clients compare seqnums per server and treat a lower one as a new slot's.
#[tokio::test]
async fn a_slot_deleted_and_recreated_with_a_lower_seqnum_is_announced_as_new() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    create_mutable(&storage, &si(1), 0, 9);
    let (watcher, mut rx) = start(&storage, WatcherOptions::default(), || {}).await;

    // Deleted, seen to be gone, then made again lower.
    fs::remove_dir_all(slot_dir(&storage, &si(1))).unwrap();
    wait_state(&watcher, &si(1), SlotState::Absent).await;
    create_mutable(&storage, &si(1), 0, 2);
    assert_eq!(next_change(&mut rx).await, change(si(1), 2));
    assert_eq!(watcher.state(&si(1)), SlotState::Mutable { seqnum: 2 });

    // Deleted and made again at once (no pause for the watcher to look in between).
    fs::remove_dir_all(slot_dir(&storage, &si(1))).unwrap();
    create_mutable(&storage, &si(1), 0, 1);
    assert_eq!(next_change(&mut rx).await, change(si(1), 1));
    wait_state(&watcher, &si(1), SlotState::Mutable { seqnum: 1 }).await;
    set_seqnum(&slot_dir(&storage, &si(1)).join("0"), 2);
    assert_eq!(next_change(&mut rx).await, change(si(1), 2));
    assert_quiet(&mut rx).await;
}

/// A tmpfs of 1 MiB, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_leaves_half_written_shares_unannounced_and_the_watcher_running() {
    let Some(disk) = SmallDisk::mount() else {
        // Without root (or in a container that forbids mounts) the partial file a full disk
        // leaves behind is what a_share_truncated_mid_rewrite_… already covers.
        eprintln!("cannot mount a tmpfs here: full-disk test skipped");
        return;
    };
    let storage = disk.dir.path().join("storage");
    create_mutable(&storage, &si(1), 0, 5);
    let (watcher, mut rx) = start(&storage, WatcherOptions::default(), || {}).await;

    // Fill the disk.
    let mut filler = fs::File::create(disk.dir.path().join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    let mut filled = 0usize;
    while filler.write_all(&chunk).is_ok() {
        filled += chunk.len();
    }
    drop(filler);

    // A new slot's share cannot be written whole: ENOSPC part way, as Tahoe would meet it.
    fs::create_dir_all(slot_dir(&storage, &si(2))).unwrap_or_default();
    let new_share = slot_dir(&storage, &si(2)).join("0");
    let written = fs::write(&new_share, mutable_share(4));
    let partial_len = fs::metadata(&new_share).map(|m| m.len()).unwrap_or(0);
    assert!(written.is_err(), "the disk was not full");
    // An in-place seqnum update needs no new blocks and still goes through.
    set_seqnum(&slot_dir(&storage, &si(1)).join("0"), 6);
    assert_eq!(next_change(&mut rx).await, change(si(1), 6));
    assert_quiet(&mut rx).await;
    assert_eq!(watcher.state(&si(2)), SlotState::Absent);

    // Space again: the share is completed and announced with its real seqnum.
    fs::remove_file(disk.dir.path().join("filler")).unwrap();
    fs::write(&new_share, mutable_share(4)).unwrap();
    assert_eq!(next_change(&mut rx).await, change(si(2), 4));
    println!(
        "full disk: filled {filled} bytes; the new share got {partial_len} of {SHARE_LEN} bytes (write failed: {:?}); stats {:?}",
        written.err().map(|e| e.kind()),
        watcher.stats()
    );
    watcher.shutdown();
}

/// Restores `fs.inotify.max_user_watches` on drop, however the test ends.
struct WatchLimit {
    original: String,
}

const MAX_USER_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

impl Drop for WatchLimit {
    fn drop(&mut self) {
        fs::write(MAX_USER_WATCHES, &self.original).expect("restore max_user_watches");
    }
}

/// inotify watches held now by all processes (of every user: an upper bound for ours).
fn watches_in_use() -> usize {
    let mut count = 0;
    for process in fs::read_dir("/proc").into_iter().flatten().flatten() {
        for fd in fs::read_dir(process.path().join("fdinfo"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(info) = fs::read_to_string(fd.path()) {
                count += info
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count();
            }
        }
    }
    count
}

#[tokio::test]
async fn the_real_inotify_watch_limit_falls_back_to_rescans() {
    if std::env::var_os("TAHOE_NOTIFIER_LONG_TESTS").is_none_or(|v| v != "1") {
        eprintln!(
            "lowers a system-wide sysctl for a few seconds: run with TAHOE_NOTIFIER_LONG_TESTS=1"
        );
        return;
    }
    let Ok(original) = fs::read_to_string(MAX_USER_WATCHES) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    for n in 1..=8 {
        create_mutable(&storage, &si(n * 10), 0, 1);
    }
    // Room for storage/, shares/ and a couple more of ours.
    let limit = watches_in_use() + 4;
    if fs::write(MAX_USER_WATCHES, limit.to_string()).is_err() {
        eprintln!("{MAX_USER_WATCHES} is not writable here: test skipped");
        return;
    }
    let guard = WatchLimit {
        original: original.trim().to_owned(),
    };
    let options = WatcherOptions {
        rescan_interval: Duration::from_millis(100),
        max_watches: None,
    };
    let started = start(&storage, options, || {}).await;
    // Restore at once: the watcher has met the limit during its start-up scan.
    drop(guard);
    let (watcher, mut rx) = started;
    let stats = watcher.stats();
    println!("real limit {limit}: {stats:?}");
    assert!(stats.watch_limit_hit, "{stats:?}");
    assert!(stats.unwatched_dirs > 0, "{stats:?}");
    for n in 1..=8 {
        assert_eq!(watcher.state(&si(n * 10)), SlotState::Mutable { seqnum: 1 });
        set_seqnum(&slot_dir(&storage, &si(n * 10)).join("0"), 2);
    }
    let mut seen = Vec::new();
    for _ in 1..=8 {
        let got = next_change(&mut rx).await.expect("a change");
        assert_eq!(got.seqnum, 2);
        seen.push(got.storage_index);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);
}
