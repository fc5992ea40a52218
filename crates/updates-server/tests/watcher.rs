//! The share-directory watcher against synthetic share trees written in Tahoe's on-disk layout,
//! with Tahoe's way of writing: in place, several open/seek/write/close rounds per publish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tahoe_caps::StorageIndex;
use tokio::sync::mpsc;
use updates_server::share::{DATA_OFFSET, MUTABLE_HEADER_LEN, MUTABLE_MAGIC_V2};
use updates_server::slots::{SlotChange, SlotDirectory, SlotState};
use updates_server::watcher::{ShareWatcher, WatcherOptions};

/// How long to wait for something that must happen.
const EXPECT: Duration = Duration::from_secs(5);
/// How long to wait before concluding that nothing happens.
const QUIET: Duration = Duration::from_millis(300);

/// Size of the synthetic mutable share files.
const SHARE_LEN: usize = 2777;
/// Offset of the first lease slot in a mutable container.
const LEASE_OFFSET: u64 = 100;

fn si(n: u8) -> StorageIndex {
    StorageIndex::from_bytes([n; 16])
}

/// A share tree under a temporary `storage/` directory.
struct Grid {
    _dir: tempfile::TempDir,
    storage: PathBuf,
}

impl Grid {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        fs::create_dir_all(storage.join("shares")).unwrap();
        Self { _dir: dir, storage }
    }

    fn slot_dir(&self, storage_index: &StorageIndex) -> PathBuf {
        self.storage.join("shares").join(storage_index.share_dir())
    }

    fn share(&self, storage_index: &StorageIndex, shnum: u32) -> PathBuf {
        self.slot_dir(storage_index).join(shnum.to_string())
    }

    /// Creates a slot with finished mutable shares, the way Tahoe does: `makedirs`, then files.
    fn create_mutable(&self, storage_index: &StorageIndex, shnums: &[u32], seqnum: u64) {
        fs::create_dir_all(self.slot_dir(storage_index)).unwrap();
        for &shnum in shnums {
            fs::write(self.share(storage_index, shnum), mutable_share(seqnum)).unwrap();
        }
    }

    fn create_immutable(&self, storage_index: &StorageIndex, shnums: &[u32]) {
        fs::create_dir_all(self.slot_dir(storage_index)).unwrap();
        for &shnum in shnums {
            fs::write(self.share(storage_index, shnum), immutable_share()).unwrap();
        }
    }

    /// Publishes `seqnum` to the given shares the way a Tahoe storage server does: each share is
    /// opened read-write and closed four times; only one round writes the new seqnum.
    fn publish(&self, storage_index: &StorageIndex, shnums: &[u32], old: u64, seqnum: u64) {
        for &shnum in shnums {
            let path = self.share(storage_index, shnum);
            // Test-and-set reads the old header and rewrites it unchanged.
            write_in_place(&path, DATA_OFFSET as u64 + 1, &old.to_be_bytes());
            write_in_place(&path, LEASE_OFFSET, &[0x33; 92]);
            write_in_place(&path, DATA_OFFSET as u64 + 1, &seqnum.to_be_bytes());
            write_in_place(&path, 2000, &[0x44; 100]);
        }
    }

    /// A lease renewal: rewrites a lease slot and leaves the seqnum as it is.
    fn renew_lease(&self, storage_index: &StorageIndex, shnum: u32, seqnum: u64) {
        let path = self.share(storage_index, shnum);
        write_in_place(&path, LEASE_OFFSET + 92, &[0x55; 92]);
        write_in_place(&path, DATA_OFFSET as u64 + 1, &seqnum.to_be_bytes());
    }
}

/// A mutable container v2 with SDMF share data of the given seqnum.
fn mutable_share(seqnum: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; SHARE_LEN];
    bytes[..32].copy_from_slice(MUTABLE_MAGIC_V2);
    bytes[32..52].fill(0xab); // write-enabler node id
    bytes[52..84].fill(0xcd); // write enabler
    let data_length = (SHARE_LEN - DATA_OFFSET - 4) as u64;
    bytes[84..92].copy_from_slice(&data_length.to_be_bytes());
    bytes[92..100].copy_from_slice(&((SHARE_LEN - 4) as u64).to_be_bytes());
    bytes[DATA_OFFSET] = 0; // SDMF
    bytes[DATA_OFFSET + 1..MUTABLE_HEADER_LEN].copy_from_slice(&seqnum.to_be_bytes());
    bytes[MUTABLE_HEADER_LEN..MUTABLE_HEADER_LEN + 32].fill(0x99); // root hash, …
    bytes
}

/// An immutable share, container version 2.
fn immutable_share() -> Vec<u8> {
    let mut bytes = 2u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&500u64.to_be_bytes());
    bytes.extend_from_slice(&0u64.to_be_bytes());
    bytes.extend_from_slice(&[0x77; 500]);
    bytes
}

/// Opens an existing file read-write, seeks, writes, closes: one CLOSE_WRITE.
fn write_in_place(path: &Path, offset: u64, data: &[u8]) {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(data).unwrap();
}

fn start(grid: &Grid, options: WatcherOptions) -> (ShareWatcher, mpsc::Receiver<SlotChange>) {
    let (tx, rx) = mpsc::channel(64);
    let watcher = ShareWatcher::start(grid.storage.clone(), options, tx).unwrap();
    (watcher, rx)
}

async fn next_change(rx: &mut mpsc::Receiver<SlotChange>) -> SlotChange {
    tokio::time::timeout(EXPECT, rx.recv())
        .await
        .expect("no slot change within 5 s")
        .expect("channel closed")
}

async fn assert_quiet(rx: &mut mpsc::Receiver<SlotChange>) {
    if let Ok(change) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("unexpected change {change:?}");
    }
}

/// Waits until the watcher reports `expected` for the slot.
async fn wait_state(watcher: &ShareWatcher, storage_index: &StorageIndex, expected: SlotState) {
    let deadline = Instant::now() + EXPECT;
    loop {
        let state = watcher.state(storage_index);
        if state == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{storage_index} stayed {state:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn initial_scan_indexes_mutable_and_immutable() {
    let grid = Grid::new();
    grid.create_mutable(&si(1), &[0, 1, 2], 3);
    // A server that missed a publish: shares disagree, the highest counts.
    grid.create_mutable(&si(2), &[0], 6);
    fs::write(grid.share(&si(2), 4), mutable_share(7)).unwrap();
    grid.create_immutable(&si(3), &[1, 5]);
    // Immutable uploads in progress and stray files are no slots.
    let incoming = grid.storage.join("shares/incoming").join(si(4).share_dir());
    fs::create_dir_all(&incoming).unwrap();
    fs::write(incoming.join("0"), immutable_share()).unwrap();
    fs::write(grid.slot_dir(&si(1)).join("notes.txt"), b"hello").unwrap();

    let (watcher, mut rx) = start(&grid, WatcherOptions::default());
    assert_eq!(watcher.state(&si(1)), SlotState::Mutable { seqnum: 3 });
    assert_eq!(watcher.state(&si(2)), SlotState::Mutable { seqnum: 7 });
    assert_eq!(watcher.state(&si(3)), SlotState::Immutable);
    assert_eq!(watcher.state(&si(4)), SlotState::Absent);
    assert_eq!(watcher.state(&si(9)), SlotState::Absent);
    let stats = watcher.stats();
    assert_eq!((stats.mutable_slots, stats.immutable_slots), (2, 1));
    assert!(!stats.watch_limit_hit);
    // What is on disk at start is the baseline, not a change.
    assert_quiet(&mut rx).await;
    watcher.shutdown();
}

#[tokio::test]
async fn publish_over_three_shares_gives_exactly_one_change() {
    let grid = Grid::new();
    grid.create_mutable(&si(1), &[0, 1, 2], 3);
    grid.create_mutable(&si(2), &[0, 1, 2], 10);
    let (watcher, mut rx) = start(&grid, WatcherOptions::default());

    grid.publish(&si(1), &[0, 1, 2], 3, 4);
    let change = next_change(&mut rx).await;
    assert_eq!(change, SlotChange::new(si(1), 4));
    assert_quiet(&mut rx).await;
    assert_eq!(watcher.state(&si(1)), SlotState::Mutable { seqnum: 4 });

    // A server that missed a publish jumps by two: one change, the new seqnum.
    grid.publish(&si(1), &[0, 1, 2], 4, 6);
    assert_eq!(next_change(&mut rx).await.seqnum, 6);
    assert_quiet(&mut rx).await;

    // A lower seqnum (a stale share written back) announces nothing.
    grid.publish(&si(2), &[1], 10, 9);
    assert_quiet(&mut rx).await;
    assert_eq!(watcher.state(&si(2)), SlotState::Mutable { seqnum: 10 });

    let stats = watcher.stats();
    assert_eq!(stats.changes_emitted, 2);
    // The kernel merges identical queued events, so fewer than the 24 CLOSE_WRITEs may arrive.
    assert!(stats.events_processed >= 1, "{stats:?}");
    assert!(stats.max_lag_us >= stats.last_lag_us);
}

#[tokio::test]
async fn lease_renewal_gives_no_change() {
    let grid = Grid::new();
    grid.create_mutable(&si(1), &[0, 1, 2], 5);
    let (watcher, mut rx) = start(&grid, WatcherOptions::default());
    for shnum in [0, 1, 2] {
        grid.renew_lease(&si(1), shnum, 5);
    }
    assert_quiet(&mut rx).await;
    assert_eq!(watcher.state(&si(1)), SlotState::Mutable { seqnum: 5 });
    assert!(watcher.stats().events_processed >= 1);
}

#[tokio::test]
async fn new_slots_are_found_even_when_files_precede_the_watch() {
    let grid = Grid::new();
    grid.create_mutable(&si(1), &[0], 1);
    let (watcher, mut rx) = start(&grid, WatcherOptions::default());

    // A new prefix folder, slot folder and shares, written at once.
    grid.create_mutable(&si(200), &[0, 1, 2], 1);
    assert_eq!(next_change(&mut rx).await, SlotChange::new(si(200), 1));
    // A new slot under a prefix folder that already exists.
    let sibling = {
        let mut bytes = *si(1).as_bytes();
        bytes[15] = 0x42;
        StorageIndex::from_bytes(bytes)
    };
    assert_eq!(&sibling.to_base32()[..2], &si(1).to_base32()[..2]);
    grid.create_mutable(&sibling, &[3], 1);
    assert_eq!(next_change(&mut rx).await.storage_index, sibling);
    // A finished immutable upload renamed in from incoming/.
    let incoming = grid.storage.join("shares/incoming/x");
    fs::create_dir_all(&incoming).unwrap();
    fs::write(incoming.join("0"), immutable_share()).unwrap();
    fs::create_dir_all(grid.slot_dir(&si(77))).unwrap();
    fs::rename(incoming.join("0"), grid.share(&si(77), 0)).unwrap();
    wait_state(&watcher, &si(77), SlotState::Immutable).await;

    assert_quiet(&mut rx).await;
    assert_eq!(watcher.state(&si(200)), SlotState::Mutable { seqnum: 1 });
    assert_eq!(watcher.stats().mutable_slots, 3);
}

#[tokio::test]
async fn deleted_slot_leaves_the_index_and_can_come_back() {
    let grid = Grid::new();
    grid.create_mutable(&si(1), &[0, 1], 4);
    grid.create_mutable(&si(2), &[0, 1], 2);
    let (watcher, mut rx) = start(&grid, WatcherOptions::default());

    fs::remove_dir_all(grid.slot_dir(&si(1))).unwrap();
    wait_state(&watcher, &si(1), SlotState::Absent).await;
    assert_eq!(watcher.stats().mutable_slots, 1);

    // Removing shares one by one: the slot stays until its last share goes.
    fs::remove_file(grid.share(&si(2), 0)).unwrap();
    assert_quiet(&mut rx).await;
    assert_eq!(watcher.state(&si(2)), SlotState::Mutable { seqnum: 2 });
    fs::remove_file(grid.share(&si(2), 1)).unwrap();
    wait_state(&watcher, &si(2), SlotState::Absent).await;

    // The same slot made again is a new slot to announce, and is watched again.
    grid.create_mutable(&si(1), &[0], 1);
    assert_eq!(next_change(&mut rx).await, SlotChange::new(si(1), 1));
    grid.publish(&si(1), &[0], 1, 2);
    assert_eq!(next_change(&mut rx).await.seqnum, 2);
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn truncated_share_gives_nothing_until_complete() {
    let grid = Grid::new();
    grid.create_mutable(&si(1), &[0], 3);
    let (watcher, mut rx) = start(&grid, WatcherOptions::default());

    // A share caught mid-creation in an existing slot: shorter than its header.
    let full = mutable_share(9);
    fs::write(grid.share(&si(1), 1), &full[..300]).unwrap();
    // A new slot whose only share is cut inside the seqnum.
    fs::create_dir_all(grid.slot_dir(&si(2))).unwrap();
    fs::write(grid.share(&si(2), 0), &full[..MUTABLE_HEADER_LEN - 3]).unwrap();
    assert_quiet(&mut rx).await;
    assert_eq!(watcher.state(&si(1)), SlotState::Mutable { seqnum: 3 });
    assert_eq!(watcher.state(&si(2)), SlotState::Absent);
    assert!(watcher.stats().skipped_reads >= 2);

    // Completed in place: one change each.
    write_in_place(&grid.share(&si(1), 1), 0, &full);
    assert_eq!(next_change(&mut rx).await, SlotChange::new(si(1), 9));
    write_in_place(&grid.share(&si(2), 0), 0, &full);
    assert_eq!(next_change(&mut rx).await, SlotChange::new(si(2), 9));
    assert_quiet(&mut rx).await;
}

/// Collects what the watcher logs, to see the watch-limit error.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn watch_limit_falls_back_to_periodic_rescans() {
    let grid = Grid::new();
    for n in 1..=6 {
        grid.create_mutable(&si(n * 10), &[0, 1], 1);
    }
    let logs = LogBuffer::default();
    let subscriber = {
        let logs = logs.clone();
        tracing_subscriber::fmt()
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .finish()
    };
    // The limit is hit during the start-up scan, which runs on this thread.
    let options = WatcherOptions {
        rescan_interval: Duration::from_millis(100),
        // storage/, shares/ and two more: most slot folders go without a watch.
        max_watches: Some(4),
    };
    let (watcher, mut rx) = tracing::subscriber::with_default(subscriber, || start(&grid, options));
    let stats = watcher.stats();
    assert!(stats.watch_limit_hit);
    assert_eq!(stats.watches, 4);
    assert!(stats.unwatched_dirs > 0, "{stats:?}");
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("ERROR"), "{logged}");
    assert!(
        logged.contains("sysctl fs.inotify.max_user_watches"),
        "{logged}"
    );
    assert_eq!(logged.matches("WATCH LIMIT").count(), 1, "{logged}");

    // Every slot is indexed, watched or not, and every publish is delivered.
    for n in 1..=6 {
        assert_eq!(watcher.state(&si(n * 10)), SlotState::Mutable { seqnum: 1 });
        grid.publish(&si(n * 10), &[0, 1], 1, 2);
    }
    let mut seen = Vec::new();
    for _ in 1..=6 {
        let change = next_change(&mut rx).await;
        assert_eq!(change.seqnum, 2);
        seen.push(change.storage_index);
    }
    seen.sort();
    let mut expected: Vec<StorageIndex> = (1..=6).map(|n| si(n * 10)).collect();
    expected.sort();
    assert_eq!(seen, expected);
    // New slots too, and deletions.
    grid.create_mutable(&si(250), &[0], 1);
    assert_eq!(next_change(&mut rx).await.storage_index, si(250));
    fs::remove_dir_all(grid.slot_dir(&si(60))).unwrap();
    wait_state(&watcher, &si(60), SlotState::Absent).await;
    assert_quiet(&mut rx).await;
    assert!(watcher.stats().rescans > 0);
}

#[tokio::test]
async fn unreadable_share_is_skipped() {
    use std::os::unix::fs::PermissionsExt;

    let grid = Grid::new();
    grid.create_mutable(&si(1), &[0, 1], 2);
    let locked = grid.share(&si(1), 0);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    // As root (how these tests run in CI) mode 000 does not stop reads, so the skip itself cannot
    // be observed there; the rest of the test still runs.
    let really_unreadable = File::open(&locked).is_err();

    let (watcher, mut rx) = start(&grid, WatcherOptions::default());
    assert_eq!(watcher.state(&si(1)), SlotState::Mutable { seqnum: 2 });
    if really_unreadable {
        assert!(watcher.stats().skipped_reads >= 1);
    } else {
        eprintln!("running as root: mode 000 does not block reads, skip not observable");
    }
    grid.publish(&si(1), &[1], 2, 3);
    assert_eq!(next_change(&mut rx).await.seqnum, 3);
    assert_quiet(&mut rx).await;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o644)).unwrap();
}

#[tokio::test]
async fn shares_directory_appearing_later_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let (tx, mut rx) = mpsc::channel(8);
    let options = WatcherOptions {
        rescan_interval: Duration::from_millis(100),
        max_watches: None,
    };
    // Neither storage/ nor shares/ exists yet.
    let watcher = ShareWatcher::start(storage.clone(), options, tx).unwrap();
    assert_eq!(watcher.stats().watches, 0);
    fs::create_dir_all(&storage).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let slot = storage.join("shares").join(si(5).share_dir());
    fs::create_dir_all(&slot).unwrap();
    fs::write(slot.join("0"), mutable_share(8)).unwrap();
    assert_eq!(next_change(&mut rx).await, SlotChange::new(si(5), 8));
    assert_eq!(watcher.state(&si(5)), SlotState::Mutable { seqnum: 8 });

    // shares/ removed entirely: everything leaves the index; made again: found again.
    fs::remove_dir_all(storage.join("shares")).unwrap();
    wait_state(&watcher, &si(5), SlotState::Absent).await;
    fs::create_dir_all(&slot).unwrap();
    fs::write(slot.join("0"), mutable_share(9)).unwrap();
    assert_eq!(next_change(&mut rx).await.seqnum, 9);
}

#[tokio::test]
async fn shutdown_stops_the_watcher_and_lookups_still_answer() {
    let grid = Grid::new();
    grid.create_mutable(&si(1), &[0], 1);
    let (watcher, mut rx) = start(&grid, WatcherOptions::default());
    let clone = watcher.clone();
    watcher.shutdown();
    watcher.shutdown();
    grid.publish(&si(1), &[0], 1, 2);
    // The thread is gone: its sender dropped, no change comes.
    let closed = tokio::time::timeout(EXPECT, rx.recv()).await.unwrap();
    assert_eq!(closed, None);
    assert_eq!(clone.state(&si(1)), SlotState::Mutable { seqnum: 1 });
    drop(clone);
}

#[tokio::test]
async fn start_refuses_a_file_as_storage_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("storage");
    fs::write(&file, b"not a directory").unwrap();
    let (tx, _rx) = mpsc::channel(1);
    assert!(ShareWatcher::start(file, WatcherOptions::default(), tx).is_err());
}

#[tokio::test]
async fn many_slots_published_together_each_give_one_change() {
    let grid = Grid::new();
    let slots: Vec<StorageIndex> = (0..=255u8).step_by(3).map(si).collect();
    for storage_index in &slots {
        grid.create_mutable(storage_index, &[0, 1, 2], 1);
    }
    let (watcher, mut rx) = start(&grid, WatcherOptions::default());
    for storage_index in &slots {
        grid.publish(storage_index, &[0, 1, 2], 1, 2);
    }
    let mut seen = Vec::new();
    for _ in &slots {
        let change = next_change(&mut rx).await;
        assert_eq!(change.seqnum, 2);
        seen.push(change.storage_index);
    }
    seen.sort();
    let mut expected = slots.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert_quiet(&mut rx).await;
    assert_eq!(watcher.stats().changes_emitted, slots.len() as u64);
}
