//! Watches a Tahoe storage node's share directory and reports when a mutable slot's seqnum rises.
//!
//! # Layout
//! Shares live in `NODEDIR/storage/shares/<prefix>/<SI>/<shnum>`, where `<prefix>` is the first two
//! characters of the storage index. `shares/incoming/` holds immutable uploads in progress; it is
//! ignored: a finished upload is renamed into its slot folder, which we see as `MOVED_TO`.
//!
//! # Design
//! * **Start-up**: the whole tree is watched and indexed on the calling thread, before
//!   [`ShareWatcher::start`] returns, so lookups are right from the first request. What is on disk
//!   then is the baseline: it is not announced as a change.
//! * **One watch per directory** (not per file): the storage dir (for `shares/` appearing), `shares/`,
//!   each prefix folder and each slot folder. Slot folders also report `CLOSE_WRITE`.
//! * **Why `CLOSE_WRITE`**: Tahoe rewrites shares in place (`open rb+`, seek, write, close). A
//!   publish gives each share several `MODIFY` events mid-write and four `CLOSE_WRITE`s, of which
//!   only one carries the new seqnum; a lease renewal gives a `CLOSE_WRITE` with the seqnum
//!   unchanged. `MODIFY` is not even subscribed to: the content is only final at close. Each
//!   `CLOSE_WRITE` re-reads the first 477 bytes of that one share, and a change is sent only when
//!   the slot's highest seqnum rises above the highest already announced: one [`SlotChange`] per
//!   slot per new seqnum, however many shares and events a publish produces.
//! * **Why rescan new directories**: a new slot is made with `makedirs` and its share files are
//!   written at once, before our watch on the new folder can exist. Every new folder is therefore
//!   watched first and then listed; a file seen both ways is simply read twice.
//! * **Watch limit**: when the kernel refuses a watch (`ENOSPC`, the per-user
//!   `fs.inotify.max_user_watches`) or [`WatcherOptions::max_watches`] is reached, one loud
//!   `tracing::error!` names the sysctl and its current value, and the folders without a watch are
//!   rescanned every [`WatcherOptions::rescan_interval`] (trying to watch them again first), so
//!   changes there arrive late but are never missed. An inotify queue overflow rescans everything.
//! * **Lookups** ([`SlotDirectory`]) read a `RwLock`ed hash map that only the watcher thread
//!   writes, and only when a slot's state changes: no lookup ever waits on the disk.
//! * **Thread**: one dedicated thread runs a single-threaded Tokio runtime that waits on the
//!   inotify descriptor, the rescan timer and the stop signal, and awaits the `changes` channel: a
//!   full channel holds the watcher back instead of dropping changes. Handling an event is one
//!   small file read and a hash-map update, well under a millisecond.
//!
//! Unreadable, vanished and half-written share files are logged and skipped; a share keeps its
//! last good seqnum, and none is ever guessed.

mod index;
mod tree;

use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use inotify::Inotify;
use mutable_updates::proof::SlotProof;
use tahoe_caps::StorageIndex;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use self::index::SharedIndex;
use self::tree::Tree;
use crate::slots::{SlotChange, SlotDirectory, SlotState};

/// Size of the buffer inotify events are read into.
const EVENT_BUFFER: usize = 64 * 1024;

/// How the watcher behaves.
#[derive(Debug, Clone)]
pub struct WatcherOptions {
    /// How often folders that have no inotify watch are rescanned (and a watch retried); also how
    /// often a missing storage or `shares` directory is looked for. Default: 2 s.
    pub rescan_interval: Duration,
    /// At most this many inotify watches (all of them: storage dir, `shares/`, prefix and slot
    /// folders). `None`: as many as the kernel allows. Lets tests and operators exercise the
    /// watch-limit fallback without exhausting the real limit.
    pub max_watches: Option<usize>,
}

impl Default for WatcherOptions {
    fn default() -> Self {
        Self {
            rescan_interval: Duration::from_secs(2),
            max_watches: None,
        }
    }
}

/// Counters for metrics, as of the call to [`ShareWatcher::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatcherStats {
    /// Mutable slots in the index.
    pub mutable_slots: u64,
    /// Immutable share sets in the index.
    pub immutable_slots: u64,
    /// inotify events handled.
    pub events_processed: u64,
    /// [`SlotChange`]s handed to the channel.
    pub changes_emitted: u64,
    /// Rescans: periodic ones of unwatched folders, and full ones after lost events.
    pub rescans: u64,
    /// Share reads skipped: truncated or half-written, unreadable, unknown format.
    pub skipped_reads: u64,
    /// Reads of a folder or share that failed for a passing reason (EMFILE, ENFILE, EAGAIN,
    /// EIO, ...) and were scheduled again with backoff.
    pub retries: u64,
    /// Folders waiting to be read again now (gauge).
    pub pending_retries: u64,
    /// Proofs not served because their signature did not verify under their own key (a share
    /// read while being rewritten); the next read of the share replaces them.
    pub torn_proofs: u64,
    /// inotify watches held now.
    pub watches: u64,
    /// Folders without a watch, rescanned periodically.
    pub unwatched_dirs: u64,
    /// The watch limit (real or [`WatcherOptions::max_watches`]) was reached at least once.
    pub watch_limit_hit: bool,
    /// Time from the last event (or rescan) that produced changes to those changes being sent, µs.
    pub last_lag_us: u64,
    /// The highest such time seen, µs.
    pub max_lag_us: u64,
}

/// Why the watcher could not start.
#[derive(Debug, Error)]
pub enum WatchError {
    /// The storage path exists but is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// The inotify instance could not be made (too many instances, …).
    #[error("cannot start inotify: {0}")]
    Inotify(#[source] io::Error),
    /// The watcher thread's runtime could not be built.
    #[error("cannot start the watcher's runtime: {0}")]
    Runtime(#[source] io::Error),
    /// The watcher thread could not be started.
    #[error("cannot start the watcher thread: {0}")]
    Thread(#[source] io::Error),
}

/// Watches one storage node's shares; a cheap, cloneable handle.
///
/// The thread stops on [`ShareWatcher::shutdown`] or when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct ShareWatcher {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<SharedIndex>,
    control: Mutex<Control>,
    /// Turns `Some(why)` when the watcher thread ended without being told to stop.
    failed: tokio::sync::watch::Receiver<Option<String>>,
}

/// Reports a watcher thread that ends on its own (a returned reason, or a panic) to
/// [`ShareWatcher::failed`].
struct DeathNotice {
    sender: tokio::sync::watch::Sender<Option<String>>,
    reason: Option<String>,
    stopped: bool,
}

impl Drop for DeathNotice {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let reason = self.reason.take().unwrap_or_else(|| {
            if thread::panicking() {
                "the share watcher thread panicked".to_owned()
            } else {
                "the share watcher thread ended".to_owned()
            }
        });
        let _ = self.sender.send(Some(reason));
    }
}

#[derive(Debug)]
struct Control {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareWatcher")
            .field("stats", &self.shared.stats())
            .finish_non_exhaustive()
    }
}

impl ShareWatcher {
    /// Indexes `storage_dir` (a node's `NODEDIR/storage`) and starts watching it.
    ///
    /// Returns once the start-up scan is done. A missing storage or `shares` directory is no
    /// error: it is picked up when it appears. Changes go to `changes`; the watcher waits when
    /// that channel is full. Needs no ambient Tokio runtime.
    pub fn start(
        storage_dir: PathBuf,
        options: WatcherOptions,
        changes: mpsc::Sender<SlotChange>,
    ) -> Result<ShareWatcher, WatchError> {
        if let Ok(metadata) = fs::metadata(&storage_dir) {
            if !metadata.is_dir() {
                return Err(WatchError::NotADirectory(storage_dir));
            }
        }
        let inotify = Inotify::init().map_err(WatchError::Inotify)?;
        let shared = Arc::new(SharedIndex::default());
        // Watches and the scan go on this thread; events meanwhile queue in the kernel.
        let mut tree = Tree::new(storage_dir, options, inotify.watches(), Arc::clone(&shared));
        tree.initial_scan();

        let (stop_tx, stop_rx) = oneshot::channel();
        let (failed_tx, failed_rx) = tokio::sync::watch::channel(None);
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<Result<(), WatchError>>(1);
        let thread = thread::Builder::new()
            .name("share-watcher".to_owned())
            .spawn(move || {
                let mut notice = DeathNotice {
                    sender: failed_tx,
                    reason: None,
                    stopped: false,
                };
                // Built on its own thread, so no runtime is ever dropped inside the caller's.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(WatchError::Runtime(e)));
                        return;
                    }
                };
                let events = {
                    let _context = runtime.enter();
                    inotify.into_event_stream(vec![0u8; EVENT_BUFFER])
                };
                let events = match events {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = ready_tx.send(Err(WatchError::Inotify(e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                match runtime.block_on(tree.run(events, stop_rx, changes)) {
                    None => notice.stopped = true,
                    Some(reason) => notice.reason = Some(reason),
                }
            })
            .map_err(WatchError::Thread)?;
        let started = match ready_rx.recv() {
            Ok(result) => result,
            // The thread ended without a word: only a panic does that.
            Err(_) => Err(WatchError::Thread(io::Error::other(
                "watcher thread ended during start-up",
            ))),
        };
        if let Err(e) = started {
            let _ = thread.join();
            return Err(e);
        }
        Ok(ShareWatcher {
            inner: Arc::new(Inner {
                shared,
                control: Mutex::new(Control {
                    stop: Some(stop_tx),
                    thread: Some(thread),
                }),
                failed: failed_rx,
            }),
        })
    }

    /// Resolves, with the reason, once the watcher has stopped watching without being told to
    /// (the inotify stream ended, the thread panicked). Lookups then answer from a frozen
    /// index, so a server should exit non-zero and let its supervisor restart it (finding 16).
    /// Never resolves after [`shutdown`](Self::shutdown).
    pub async fn failed(&self) -> String {
        let mut failed = self.inner.failed.clone();
        loop {
            if let Some(reason) = failed.borrow_and_update().clone() {
                return reason;
            }
            if failed.changed().await.is_err() {
                // The thread is gone and said nothing: it was stopped.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> WatcherStats {
        self.inner.shared.stats()
    }

    /// Stops the watcher thread and waits for it (a few microseconds unless it is mid-scan).
    /// Lookups keep answering from the last index. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.inner.stop();
    }
}

impl Inner {
    fn stop(&self) {
        let (stop, thread) = {
            let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
            (control.stop.take(), control.thread.take())
        };
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(thread) = thread {
            if thread.join().is_err() {
                error!("the share watcher thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl SlotDirectory for ShareWatcher {
    fn state(&self, storage_index: &StorageIndex) -> SlotState {
        self.inner.shared.state(storage_index)
    }

    fn state_with_proof(
        &self,
        storage_index: &StorageIndex,
    ) -> (SlotState, Option<Arc<SlotProof>>) {
        self.inner.shared.state_with_proof(storage_index)
    }
}
