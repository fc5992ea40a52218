//! Finding 16 (and 2): a share or folder the watcher cannot read because the process is out of
//! file descriptors is read again with backoff once descriptors are free, instead of being
//! dropped until the next write. Its own test binary: it lowers this process's RLIMIT_NOFILE.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tahoe_caps::StorageIndex;
use tokio::sync::mpsc;
use updates_server::share::{DATA_OFFSET, MUTABLE_HEADER_LEN, MUTABLE_MAGIC_V2};
use updates_server::slots::{SlotDirectory, SlotState};
use updates_server::watcher::{ShareWatcher, WatcherOptions};

fn mutable_share(seqnum: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 1200];
    bytes[..32].copy_from_slice(MUTABLE_MAGIC_V2);
    let data_length = (bytes.len() - DATA_OFFSET) as u64;
    bytes[84..92].copy_from_slice(&data_length.to_be_bytes());
    bytes[DATA_OFFSET + 1..MUTABLE_HEADER_LEN].copy_from_slice(&seqnum.to_be_bytes());
    bytes
}

/// Runs `during` with no descriptor to spare: every open() fails with EMFILE (a soft limit of
/// 0 refuses every new descriptor number; those already open stay usable).
fn without_descriptors(during: impl FnOnce()) -> Rlimit {
    let saved = getrlimit(Resource::Nofile);
    let tight = Rlimit {
        current: Some(0),
        maximum: saved.maximum,
    };
    setrlimit(Resource::Nofile, tight).unwrap();
    during();
    saved
}

#[tokio::test(flavor = "current_thread")]
async fn reads_that_fail_with_emfile_are_retried_once_descriptors_are_free() {
    let root = tempfile::tempdir().unwrap();
    let storage = root.path().join("storage");
    let known = StorageIndex::from_bytes([1; 16]);
    let fresh = StorageIndex::from_bytes([0x42; 16]);
    let known_dir = storage.join("shares").join(known.share_dir());
    fs::create_dir_all(&known_dir).unwrap();
    fs::write(known_dir.join("0"), mutable_share(1)).unwrap();
    // Prepared beside the tree: a new version of the known share, and a whole new prefix
    // folder with a slot in it. Renames need no descriptor, so they happen while none is free.
    let staging = root.path().join("staging");
    fs::create_dir_all(&staging).unwrap();
    fs::write(staging.join("share"), mutable_share(2)).unwrap();
    let fresh_rel = fresh.share_dir();
    let fresh_prefix = Path::new(&fresh_rel).parent().unwrap().to_owned();
    let staged_slot = staging.join(&fresh_rel);
    fs::create_dir_all(&staged_slot).unwrap();
    fs::write(staged_slot.join("3"), mutable_share(5)).unwrap();

    let (tx, mut rx) = mpsc::channel(16);
    let watcher = ShareWatcher::start(
        storage.clone(),
        WatcherOptions {
            rescan_interval: Duration::from_secs(60),
            ..WatcherOptions::default()
        },
        tx,
    )
    .unwrap();
    assert_eq!(watcher.state(&known), SlotState::Mutable { seqnum: 1 });

    let saved = without_descriptors(|| {
        fs::rename(staging.join("share"), known_dir.join("0")).unwrap();
        fs::rename(
            staging.join(&fresh_prefix),
            storage.join("shares").join(&fresh_prefix),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(400));
    });
    let during = watcher.stats();
    assert!(
        during.retries >= 2,
        "both failed reads were scheduled again: {during:?}"
    );
    assert_eq!(watcher.state(&known), SlotState::Mutable { seqnum: 1 });
    assert_eq!(watcher.state(&fresh), SlotState::Absent);
    setrlimit(Resource::Nofile, saved).unwrap();

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let change = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the retried reads report their changes")
            .unwrap();
        seen.push((change.storage_index, change.seqnum));
    }
    seen.sort();
    assert_eq!(seen, vec![(known, 2), (fresh, 5)]);
    assert_eq!(watcher.state(&fresh), SlotState::Mutable { seqnum: 5 });
    let after = watcher.stats();
    assert_eq!(after.pending_retries, 0);
    println!(
        "EMFILE: {} reads scheduled again during the shortage, both changes reported after it ({} retries in all)",
        during.retries, after.retries
    );
    watcher.shutdown();
}
