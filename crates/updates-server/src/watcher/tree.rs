//! The watcher thread's own state: which directories are watched, what each slot holds, and how
//! an inotify event or a rescan turns into index updates and [`SlotChange`]s.
//!
//! Everything here runs on the watcher thread alone, so it needs no locks; the only shared data is
//! the [`SharedIndex`], written once per slot whose state really changed.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use inotify::{EventMask, EventOwned, EventStream, WatchDescriptor, WatchMask, Watches};
use tahoe_caps::StorageIndex;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::index::SharedIndex;
use super::WatcherOptions;
use mutable_updates::proof::SlotProof;

use crate::share::{is_transient, read_share, ShareError, ShareHeader, ShareRead};
use crate::slots::{SlotChange, SlotState};

/// Name of the folder under the storage directory that holds finished shares.
const SHARES: &str = "shares";

/// The kernel's file holding the per-user inotify watch limit, named in the limit error.
const MAX_USER_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

/// Where a watched directory sits in `storage/shares/<prefix>/<SI>/<shnum>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirKind {
    /// `storage/`: watched only to see `shares/` appear or go.
    Storage,
    /// `storage/shares/`: holds the two-character prefix folders (and `incoming/`, ignored).
    Root,
    /// `storage/shares/<prefix>/`: holds slot folders.
    Prefix,
    /// `storage/shares/<prefix>/<SI>/`: holds share files.
    Slot(StorageIndex),
}

impl DirKind {
    /// What to hear about: children appearing and going everywhere, writes only inside slots.
    /// `ONLYDIR` and `DONT_FOLLOW` keep a stray file or symlink from being watched as a folder.
    fn mask(self) -> WatchMask {
        let tree = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
            | WatchMask::DONT_FOLLOW;
        match self {
            // Tahoe rewrites shares in place: the content is final when the writer closes the
            // file, so CLOSE_WRITE is the one event worth a read (MODIFY fires mid-write).
            DirKind::Slot(_) => tree | WatchMask::CLOSE_WRITE,
            _ => tree,
        }
    }
}

/// A directory with an inotify watch.
#[derive(Debug)]
struct WatchedDir {
    path: PathBuf,
    kind: DirKind,
}

/// Result of trying to watch a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchOutcome {
    /// Watched (now or already).
    Watched,
    /// Could not be watched (limit or error): it is in the rescan list.
    Polled,
    /// The directory is not there (any more).
    Missing,
}

/// What one share file holds, as last read successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ShareInfo {
    /// A mutable share: its seqnum and, if it could be cut out, the proof of that version
    /// (not yet checked: [`Tree::publish`] checks the one it serves).
    Mutable(u64, Option<Arc<SlotProof>>),
    Immutable,
}

/// Longest wait between two attempts at a folder that could not be read for a passing reason.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// First wait before trying a folder again.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Most folders tried again (retries) or rescanned (unwatched folders) in one turn of the
/// watcher's loop: the rest wait for the next turn, so inotify events are never kept waiting
/// behind a rescan of the whole tree (finding 22).
pub(super) const MAX_SCANS_PER_TURN: usize = 512;

/// A folder to read again after a transient failure (EMFILE, ENFILE, EAGAIN, EIO, ...).
#[derive(Debug, Clone, Copy)]
struct Retry {
    kind: DirKind,
    attempts: u32,
    due: Instant,
}

/// Everything known about one slot folder.
#[derive(Debug, Default)]
struct SlotRecord {
    /// Share number → content, only for shares read successfully at least once.
    shares: BTreeMap<u32, ShareInfo>,
    /// Highest seqnum already announced (or known at start-up): a change is sent only above it.
    announced: u64,
    /// The state last written to the shared index, to skip the write lock when nothing changed.
    published: Option<SlotState>,
    /// The proof candidate last checked, and what the check left (the same proof, or `None`
    /// when its signature did not verify under its own key: a share caught mid-write).
    checked_proof: Option<(Arc<SlotProof>, Option<Arc<SlotProof>>)>,
}

impl SlotRecord {
    fn state(&self) -> SlotState {
        let max_seqnum = self
            .shares
            .values()
            .filter_map(|share| match share {
                ShareInfo::Mutable(seqnum, _) => Some(*seqnum),
                ShareInfo::Immutable => None,
            })
            .max();
        match max_seqnum {
            Some(seqnum) => SlotState::Mutable { seqnum },
            None if self.shares.is_empty() => SlotState::Absent,
            None => SlotState::Immutable,
        }
    }

    /// A proof of the version with this seqnum, from the lowest-numbered share that has one.
    fn proof_candidate(&self, seqnum: u64) -> Option<Arc<SlotProof>> {
        self.shares.values().find_map(|share| match share {
            ShareInfo::Mutable(found, Some(proof)) if *found == seqnum => Some(Arc::clone(proof)),
            _ => None,
        })
    }
}

/// Whether a proof's signature verifies under the key it carries. This says nothing of whether
/// the key is the slot's (only a client holding the cap can tell); it catches a share read while
/// Tahoe was rewriting it (a new prefix beside the old signature), so no torn proof is served.
fn self_consistent(proof: &SlotProof) -> bool {
    let Some(key) = proof.verification_key() else {
        return false;
    };
    let fingerprint = tahoe_caps::hash::mutable_pubkey_fingerprint(key);
    proof.verify(&fingerprint, None).is_ok()
}

/// The watcher thread's state.
#[derive(Debug)]
pub(super) struct Tree {
    storage_dir: PathBuf,
    shares_dir: PathBuf,
    options: WatcherOptions,
    watches: Watches,
    dirs: HashMap<WatchDescriptor, WatchedDir>,
    dir_watches: HashMap<PathBuf, WatchDescriptor>,
    /// Directories without a watch, rescanned every `rescan_interval`.
    polled: BTreeMap<PathBuf, DirKind>,
    /// Where the last bounded rescan of `polled` stopped.
    poll_cursor: Option<PathBuf>,
    /// Folders to read again after a transient failure, with backoff.
    retries: HashMap<PathBuf, Retry>,
    /// Whether `shares/` is known to exist and has been scanned.
    root_ready: bool,
    slots: HashMap<StorageIndex, SlotRecord>,
    shared: Arc<SharedIndex>,
    /// Changes found while handling one event or tick, sent right after.
    pending: Vec<SlotChange>,
    /// False during the start-up scan: what is already on disk then is no change.
    emitting: bool,
    limit_logged: bool,
    receiver_gone: bool,
}

impl Tree {
    pub(super) fn new(
        storage_dir: PathBuf,
        options: WatcherOptions,
        watches: Watches,
        shared: Arc<SharedIndex>,
    ) -> Self {
        let shares_dir = storage_dir.join(SHARES);
        Self {
            storage_dir,
            shares_dir,
            options,
            watches,
            dirs: HashMap::new(),
            dir_watches: HashMap::new(),
            polled: BTreeMap::new(),
            poll_cursor: None,
            retries: HashMap::new(),
            root_ready: false,
            slots: HashMap::new(),
            shared,
            pending: Vec::new(),
            emitting: false,
            limit_logged: false,
            receiver_gone: false,
        }
    }

    /// Watches and indexes the whole tree without announcing anything: what is on disk at start is
    /// the baseline, and subscribers learn it through status replies.
    pub(super) fn initial_scan(&mut self) {
        let started = Instant::now();
        self.emitting = false;
        self.watch_storage_dir();
        self.setup_root();
        self.emitting = true;
        self.pending.clear();
        self.update_gauges();
        let stats = self.shared.stats();
        info!(
            storage_dir = %self.storage_dir.display(),
            mutable = stats.mutable_slots,
            immutable = stats.immutable_slots,
            watches = stats.watches,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "share tree indexed"
        );
    }

    /// The event loop: inotify events, periodic rescans and retries, until told to stop.
    /// Returns `None` when told to stop, or why it could not go on (the inotify stream ended):
    /// the server must then not keep serving a frozen index.
    pub(super) async fn run(
        mut self,
        mut events: EventStream<Vec<u8>>,
        mut stop: oneshot::Receiver<()>,
        changes: mpsc::Sender<SlotChange>,
    ) -> Option<String> {
        // A zero interval would make `interval` panic; a millisecond is as eager as is useful.
        let period = self.options.rescan_interval.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the start-up scan just covered it.
        ticks.tick().await;
        let mut died = None;
        loop {
            let retry_due = self.next_retry_due().map(tokio::time::Instant::from_std);
            let started = tokio::select! {
                biased;
                _ = &mut stop => break,
                event = events.next() => {
                    let started = Instant::now();
                    match event {
                        Some(Ok(event)) => {
                            SharedIndex::bump(&self.shared.events_processed);
                            self.handle_event(&event);
                        }
                        Some(Err(e)) => {
                            // Reading the inotify descriptor failed: events may be lost, so
                            // look at everything again, then pause to avoid spinning on a
                            // descriptor that keeps failing.
                            error!(error = %e, "reading inotify events failed; rescanning all shares");
                            self.full_rescan();
                            tokio::time::sleep(period).await;
                        }
                        None => {
                            error!("inotify event stream ended; share changes are no longer watched");
                            died = Some("the inotify event stream ended".to_owned());
                            break;
                        }
                    }
                    started
                }
                _ = ticks.tick() => {
                    let started = Instant::now();
                    self.tick();
                    started
                }
                () = sleep_until_or_forever(retry_due) => {
                    let started = Instant::now();
                    self.run_due_retries();
                    started
                }
            };
            self.update_gauges();
            if !self.flush(&changes, &mut stop, started).await {
                break;
            }
        }
        debug!("share watcher stopped");
        died
    }

    // ---- retries -----------------------------------------------------------------------------

    /// Puts a folder that could not be read for a passing reason on the retry list, with a
    /// doubling delay (50 ms up to 5 s): it is read again until it succeeds, never dropped.
    fn schedule_retry(&mut self, path: &Path, kind: DirKind, error: &io::Error) {
        SharedIndex::bump(&self.shared.retries);
        let retry = self.retries.entry(path.to_owned()).or_insert(Retry {
            kind,
            attempts: 0,
            due: Instant::now(),
        });
        retry.kind = kind;
        retry.attempts = retry.attempts.saturating_add(1);
        let delay = FIRST_RETRY_DELAY
            .saturating_mul(1u32 << retry.attempts.min(10))
            .min(MAX_RETRY_DELAY);
        retry.due = Instant::now() + delay;
        if retry.attempts == 1 {
            warn!(path = %path.display(), %error, "cannot read folder or share now; trying again with backoff");
        } else {
            debug!(path = %path.display(), %error, attempts = retry.attempts, "still cannot read; trying again");
        }
    }

    fn retry_succeeded(&mut self, path: &Path) {
        if let Some(retry) = self.retries.remove(path) {
            info!(path = %path.display(), attempts = retry.attempts, "read again after a transient failure");
        }
    }

    fn next_retry_due(&self) -> Option<Instant> {
        self.retries.values().map(|retry| retry.due).min()
    }

    /// Tries again the folders whose retry is due, at most [`MAX_SCANS_PER_TURN`] per call.
    fn run_due_retries(&mut self) {
        let now = Instant::now();
        let mut due: Vec<(PathBuf, Retry)> = self
            .retries
            .iter()
            .filter(|(_, retry)| retry.due <= now)
            .map(|(path, retry)| (path.clone(), *retry))
            .collect();
        due.sort_by_key(|(_, retry)| retry.due);
        due.truncate(MAX_SCANS_PER_TURN);
        for (path, retry) in due {
            match retry.kind {
                DirKind::Storage => {
                    self.retries.remove(&path);
                }
                DirKind::Root => self.scan_root(false),
                DirKind::Prefix => self.scan_prefix(&path, false),
                DirKind::Slot(storage_index) => self.scan_slot(storage_index, &path),
            }
        }
    }

    /// Hands the pending changes to the channel; false when told to stop meanwhile.
    async fn flush(
        &mut self,
        changes: &mpsc::Sender<SlotChange>,
        stop: &mut oneshot::Receiver<()>,
        started: Instant,
    ) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let pending = std::mem::take(&mut self.pending);
        for change in pending {
            if self.receiver_gone {
                break;
            }
            // A full channel holds the watcher back rather than dropping a change; the inotify
            // queue keeps the events meanwhile, and an overflow there triggers a full rescan.
            tokio::select! {
                biased;
                _ = &mut *stop => return false,
                sent = changes.send(change) => match sent {
                    Ok(()) => SharedIndex::bump(&self.shared.changes_emitted),
                    Err(_) => {
                        warn!("the slot change receiver is gone; still indexing for lookups");
                        self.receiver_gone = true;
                    }
                },
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.record_lag(micros);
        true
    }

    fn update_gauges(&self) {
        let shared = &self.shared;
        shared
            .watches
            .store(self.dirs.len() as u64, Ordering::Relaxed);
        shared
            .unwatched_dirs
            .store(self.polled.len() as u64, Ordering::Relaxed);
        shared
            .pending_retries
            .store(self.retries.len() as u64, Ordering::Relaxed);
    }

    // ---- events ------------------------------------------------------------------------------

    fn handle_event(&mut self, event: &EventOwned) {
        let mask = event.mask;
        if mask.contains(EventMask::Q_OVERFLOW) {
            warn!("inotify queue overflowed; rescanning all shares");
            self.full_rescan();
            return;
        }
        let Some(dir) = self.dirs.get(&event.wd) else {
            // A watch we already dropped (its folder went away): nothing to do.
            return;
        };
        let (dir_path, kind) = (dir.path.clone(), dir.kind);
        if mask.contains(EventMask::IGNORED) {
            // The kernel removed the watch (its folder was deleted).
            self.forget_watch(&event.wd);
            return;
        }
        let appeared = mask.intersects(EventMask::CREATE | EventMask::MOVED_TO);
        let vanished = mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM);
        let is_dir = mask.contains(EventMask::ISDIR);
        let Some(name) = event.name.as_deref() else {
            if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
                self.dir_gone(&dir_path, kind);
            }
            return;
        };
        let child = dir_path.join(name);
        match kind {
            DirKind::Storage => {
                if name == SHARES && is_dir {
                    if appeared {
                        self.setup_root();
                    } else if vanished {
                        self.root_gone();
                    }
                }
            }
            DirKind::Root => {
                if is_dir && is_prefix(name) {
                    if appeared {
                        self.watch_and_scan_prefix(&child, false);
                    } else if vanished {
                        self.prefix_gone(&child);
                    }
                }
            }
            DirKind::Prefix => {
                if let Some(storage_index) = slot_name(&dir_path, name).filter(|_| is_dir) {
                    if appeared {
                        self.watch_and_scan_slot(storage_index, &child);
                    } else if vanished {
                        self.slot_gone(storage_index, &child);
                    }
                }
            }
            DirKind::Slot(storage_index) => {
                let Some(shnum) = name.to_str().and_then(share_number).filter(|_| !is_dir) else {
                    return;
                };
                if vanished {
                    self.remove_share(storage_index, shnum);
                } else if appeared || mask.contains(EventMask::CLOSE_WRITE) {
                    // Only one of the four CLOSE_WRITEs of a publish carries the new seqnum, and
                    // a lease renewal brings none: re-read and let `publish` compare.
                    if let Err(e) = self.read_share(storage_index, shnum, &child) {
                        let slot = dir_path.clone();
                        self.schedule_retry(&slot, kind, &e);
                    }
                    self.publish(storage_index);
                }
            }
        }
    }

    // ---- watches -----------------------------------------------------------------------------

    fn watch_storage_dir(&mut self) {
        if self.dir_watches.contains_key(&self.storage_dir) {
            return;
        }
        let path = self.storage_dir.clone();
        if self.watch_dir(&path, DirKind::Storage) == WatchOutcome::Missing {
            debug!(path = %path.display(), "storage directory does not exist yet; polling for it");
        }
    }

    /// Adds a watch, or puts the directory on the rescan list when it cannot have one.
    fn watch_dir(&mut self, path: &Path, kind: DirKind) -> WatchOutcome {
        if self.dir_watches.contains_key(path) {
            return WatchOutcome::Watched;
        }
        if let Some(max) = self.options.max_watches {
            if self.dirs.len() >= max {
                self.watch_limit_hit(path, kind, true);
                return WatchOutcome::Polled;
            }
        }
        match self.watches.add(path, kind.mask()) {
            Ok(wd) => {
                // The same inode watched under another path (a renamed folder) reuses its
                // descriptor: forget the old path.
                if let Some(old) = self.dirs.insert(
                    wd.clone(),
                    WatchedDir {
                        path: path.to_owned(),
                        kind,
                    },
                ) {
                    self.dir_watches.remove(&old.path);
                }
                self.dir_watches.insert(path.to_owned(), wd);
                self.polled.remove(path);
                WatchOutcome::Watched
            }
            Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                // ENOSPC from inotify_add_watch: the per-user watch limit.
                self.watch_limit_hit(path, kind, false);
                WatchOutcome::Polled
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.polled.remove(path);
                WatchOutcome::Missing
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e,
                    "cannot watch directory; rescanning it periodically instead");
                self.polled.insert(path.to_owned(), kind);
                WatchOutcome::Polled
            }
        }
    }

    fn watch_limit_hit(&mut self, path: &Path, kind: DirKind, simulated: bool) {
        self.shared.watch_limit_hit.store(true, Ordering::Relaxed);
        self.polled.insert(path.to_owned(), kind);
        if self.limit_logged {
            return;
        }
        self.limit_logged = true;
        let current = fs::read_to_string(MAX_USER_WATCHES)
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        error!(
            watches_in_use = self.dirs.len(),
            simulated_limit = ?self.options.max_watches.filter(|_| simulated),
            first_unwatched = %path.display(),
            "INOTIFY WATCH LIMIT REACHED: fs.inotify.max_user_watches is {current}; raise it with \
             `sysctl fs.inotify.max_user_watches=<more>` (and in /etc/sysctl.d to keep it). Until \
             then, share directories without a watch are rescanned every {:?}, so changes there \
             arrive late but are not missed",
            self.options.rescan_interval
        );
    }

    /// Drops our record of a watch the kernel has removed.
    fn forget_watch(&mut self, wd: &WatchDescriptor) {
        if let Some(dir) = self.dirs.remove(wd) {
            if self.dir_watches.get(&dir.path) == Some(wd) {
                self.dir_watches.remove(&dir.path);
            }
        }
    }

    /// Removes the watches and rescan entries of `path` and everything below it.
    fn unwatch_below(&mut self, path: &Path) {
        let gone: Vec<PathBuf> = self
            .dir_watches
            .keys()
            .filter(|watched| watched.starts_with(path))
            .cloned()
            .collect();
        for watched in gone {
            if let Some(wd) = self.dir_watches.remove(&watched) {
                self.dirs.remove(&wd);
                // Fails when the kernel already dropped the watch with the folder: that is fine.
                let _ = self.watches.remove(wd);
            }
        }
        self.polled.retain(|polled, _| !polled.starts_with(path));
        self.retries.retain(|retry, _| !retry.starts_with(path));
    }

    // ---- scans -------------------------------------------------------------------------------

    /// Watches `shares/` and indexes everything under it.
    fn setup_root(&mut self) {
        let path = self.shares_dir.clone();
        match self.watch_dir(&path, DirKind::Root) {
            WatchOutcome::Missing => {
                self.root_ready = false;
                debug!(path = %path.display(), "no shares directory yet");
            }
            WatchOutcome::Watched | WatchOutcome::Polled => {
                self.root_ready = true;
                self.scan_root(true);
            }
        }
    }

    /// Lists `shares/`; `revisit` also rescans prefix folders already tracked.
    fn scan_root(&mut self, revisit: bool) {
        let path = self.shares_dir.clone();
        let children = match list_dirs(&path) {
            Ok(children) => {
                self.retry_succeeded(&path);
                children
            }
            Err(e) if is_transient(&e) => {
                self.schedule_retry(&path, DirKind::Root, &e);
                return;
            }
            Err(_) => return,
        };
        for (child, name) in children {
            if is_prefix(&name) && (revisit || !self.is_tracked(&child)) {
                self.watch_and_scan_prefix(&child, revisit);
            }
        }
    }

    /// Watches a prefix folder, then lists it: slot folders made before the watch existed would
    /// otherwise never be seen.
    fn watch_and_scan_prefix(&mut self, path: &Path, revisit: bool) {
        if self.watch_dir(path, DirKind::Prefix) != WatchOutcome::Missing {
            self.scan_prefix(path, revisit);
        }
    }

    fn scan_prefix(&mut self, path: &Path, revisit: bool) {
        let children = match list_dirs(path) {
            Ok(children) => {
                self.retry_succeeded(path);
                children
            }
            Err(e) if is_transient(&e) => {
                self.schedule_retry(path, DirKind::Prefix, &e);
                return;
            }
            Err(_) => return,
        };
        for (child, name) in children {
            if let Some(storage_index) = slot_name(path, &name) {
                if revisit || !self.is_tracked(&child) {
                    self.watch_and_scan_slot(storage_index, &child);
                }
            }
        }
    }

    /// Watches a slot folder, then reads its shares: Tahoe creates the folder and writes the
    /// share files right away, before our watch can exist.
    fn watch_and_scan_slot(&mut self, storage_index: StorageIndex, path: &Path) {
        match self.watch_dir(path, DirKind::Slot(storage_index)) {
            WatchOutcome::Missing => self.slot_gone(storage_index, path),
            WatchOutcome::Watched | WatchOutcome::Polled => self.scan_slot(storage_index, path),
        }
    }

    /// Re-reads every share of one slot and drops the shares that are no longer there.
    fn scan_slot(&mut self, storage_index: StorageIndex, path: &Path) {
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.slot_gone(storage_index, path);
                return;
            }
            Err(e) if is_transient(&e) => {
                self.schedule_retry(path, DirKind::Slot(storage_index), &e);
                return;
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot list slot directory");
                return;
            }
        };
        let mut present = Vec::new();
        let mut failed = None;
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    // A listing cut short: shares not seen must not count as gone.
                    failed = Some(e);
                    break;
                }
            };
            let name = entry.file_name();
            if let Some(shnum) = name.to_str().and_then(share_number) {
                present.push(shnum);
                if let Err(e) = self.read_share(storage_index, shnum, &entry.path()) {
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) => self.schedule_retry(path, DirKind::Slot(storage_index), &e),
            None => {
                if let Some(record) = self.slots.get_mut(&storage_index) {
                    record.shares.retain(|shnum, _| present.contains(shnum));
                }
                self.retry_succeeded(path);
            }
        }
        self.publish(storage_index);
    }

    /// Rescans the folders that have no watch, trying again to watch them first.
    fn tick(&mut self) {
        if !self.dir_watches.contains_key(&self.storage_dir) {
            self.watch_storage_dir();
        }
        if !self.root_ready && self.shares_dir.is_dir() {
            info!(path = %self.shares_dir.display(), "shares directory appeared");
            self.setup_root();
        }
        if self.polled.is_empty() {
            return;
        }
        SharedIndex::bump(&self.shared.rescans);
        // At most MAX_SCANS_PER_TURN folders per tick, going round from where the last tick
        // stopped: with many unwatched folders each is visited every few ticks, and a tick never
        // outlasts its interval by so much that events pile up (finding 22).
        let after = self.poll_cursor.take();
        let mut polled: Vec<(PathBuf, DirKind)> = match &after {
            Some(cursor) => self
                .polled
                .range::<PathBuf, _>((
                    std::ops::Bound::Excluded(cursor),
                    std::ops::Bound::Unbounded,
                ))
                .take(MAX_SCANS_PER_TURN)
                .map(|(path, kind)| (path.clone(), *kind))
                .collect(),
            None => Vec::new(),
        };
        if polled.len() < MAX_SCANS_PER_TURN {
            let room = MAX_SCANS_PER_TURN - polled.len();
            let wrapped: Vec<(PathBuf, DirKind)> = self
                .polled
                .iter()
                .take_while(|(path, _)| after.as_ref().is_none_or(|cursor| *path <= cursor))
                .take(room)
                .map(|(path, kind)| (path.clone(), *kind))
                .collect();
            polled.extend(wrapped);
        }
        self.poll_cursor = polled.last().map(|(path, _)| path.clone());
        // Once the limit refuses one watch it refuses the rest: stop asking until next tick.
        let mut retry_watches = true;
        for (path, kind) in polled {
            if !self.polled.contains_key(&path) {
                continue; // dropped while handling an earlier entry
            }
            let outcome = if retry_watches {
                self.polled.remove(&path);
                let outcome = self.watch_dir(&path, kind);
                if outcome == WatchOutcome::Polled {
                    retry_watches = false;
                } else if outcome == WatchOutcome::Watched {
                    debug!(path = %path.display(), "directory watched again");
                }
                outcome
            } else if path.is_dir() {
                WatchOutcome::Polled
            } else {
                WatchOutcome::Missing
            };
            match (outcome, kind) {
                (WatchOutcome::Missing, _) => self.dir_gone(&path, kind),
                (_, DirKind::Storage) => {}
                (_, DirKind::Root) => self.scan_root(false),
                (_, DirKind::Prefix) => self.scan_prefix(&path, false),
                (_, DirKind::Slot(storage_index)) => self.scan_slot(storage_index, &path),
            }
        }
    }

    /// After lost events: re-reads every known slot and looks for new folders.
    fn full_rescan(&mut self) {
        SharedIndex::bump(&self.shared.rescans);
        let known: Vec<StorageIndex> = self.slots.keys().copied().collect();
        if self.shares_dir.is_dir() {
            self.setup_root();
        } else {
            self.root_gone();
        }
        for storage_index in known {
            let path = self.slot_path(&storage_index);
            if !path.is_dir() {
                self.slot_gone(storage_index, &path);
            }
        }
    }

    fn is_tracked(&self, path: &Path) -> bool {
        self.dir_watches.contains_key(path) || self.polled.contains_key(path)
    }

    fn slot_path(&self, storage_index: &StorageIndex) -> PathBuf {
        self.shares_dir.join(storage_index.share_dir())
    }

    // ---- removals ----------------------------------------------------------------------------

    fn dir_gone(&mut self, path: &Path, kind: DirKind) {
        match kind {
            DirKind::Storage => {
                warn!(path = %path.display(), "storage directory went away; polling for it");
                self.unwatch_below(path);
                self.root_gone();
            }
            DirKind::Root => self.root_gone(),
            DirKind::Prefix => self.prefix_gone(path),
            DirKind::Slot(storage_index) => self.slot_gone(storage_index, path),
        }
    }

    fn root_gone(&mut self) {
        let path = self.shares_dir.clone();
        self.unwatch_below(&path);
        self.root_ready = false;
        let all: Vec<StorageIndex> = self.slots.keys().copied().collect();
        for storage_index in all {
            self.forget_slot(storage_index);
        }
    }

    fn prefix_gone(&mut self, path: &Path) {
        self.unwatch_below(path);
        let prefix = path.file_name().and_then(OsStr::to_str).unwrap_or_default();
        let gone: Vec<StorageIndex> = self
            .slots
            .keys()
            .filter(|storage_index| storage_index.to_base32().starts_with(prefix))
            .copied()
            .collect();
        for storage_index in gone {
            self.forget_slot(storage_index);
        }
    }

    fn slot_gone(&mut self, storage_index: StorageIndex, path: &Path) {
        self.unwatch_below(path);
        self.forget_slot(storage_index);
    }

    fn forget_slot(&mut self, storage_index: StorageIndex) {
        if let Some(record) = self.slots.remove(&storage_index) {
            if record
                .published
                .is_some_and(|state| state != SlotState::Absent)
            {
                self.shared.set(storage_index, SlotState::Absent);
            }
            debug!(%storage_index, "slot left the index");
        }
    }

    fn remove_share(&mut self, storage_index: StorageIndex, shnum: u32) {
        if let Some(record) = self.slots.get_mut(&storage_index) {
            record.shares.remove(&shnum);
        }
        self.publish(storage_index);
    }

    // ---- shares ------------------------------------------------------------------------------

    /// Reads one share (header and proof) into the slot's record. A share that cannot be read
    /// keeps its last good value (files never shrink); a read that failed for a passing reason
    /// (out of descriptors, EAGAIN, EIO) is returned so that the caller can try the slot again.
    fn read_share(
        &mut self,
        storage_index: StorageIndex,
        shnum: u32,
        path: &Path,
    ) -> Result<(), io::Error> {
        let info = match read_share(path) {
            Ok(ShareRead {
                header: ShareHeader::Mutable { seqnum, .. },
                proof,
            }) => {
                let proof = proof
                    .filter(|proof| proof.prefix().seqnum() == seqnum)
                    .map(Arc::new);
                ShareInfo::Mutable(seqnum, proof)
            }
            Ok(ShareRead {
                header: ShareHeader::Immutable { .. },
                ..
            }) => ShareInfo::Immutable,
            Err(ShareError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                // Deleted between the event and the read.
                if let Some(record) = self.slots.get_mut(&storage_index) {
                    record.shares.remove(&shnum);
                }
                return Ok(());
            }
            Err(ShareError::Io { source, .. }) if is_transient(&source) => {
                SharedIndex::bump(&self.shared.skipped_reads);
                return Err(source);
            }
            Err(e) => {
                SharedIndex::bump(&self.shared.skipped_reads);
                match e {
                    ShareError::Truncated { .. } | ShareError::Incomplete { .. } => {
                        debug!(path = %path.display(), error = %e, "share not complete yet; skipped");
                    }
                    _ => warn!(path = %path.display(), error = %e, "share skipped"),
                }
                return Ok(());
            }
        };
        self.slots
            .entry(storage_index)
            .or_default()
            .shares
            .insert(shnum, info);
        Ok(())
    }

    /// Writes the slot's state to the shared index if it changed, and queues a change when its
    /// seqnum rose above what was already announced.
    fn publish(&mut self, storage_index: StorageIndex) {
        let Some(record) = self.slots.get_mut(&storage_index) else {
            return;
        };
        let state = record.state();
        let candidate = match state {
            SlotState::Mutable { seqnum } => record.proof_candidate(seqnum),
            _ => None,
        };
        // Check a new candidate's signature once: every share of a version carries the same
        // prefix, signature and key, and a lease renewal rewrites them unchanged, so a read that
        // brings the same bytes again costs a comparison, not an RSA verification.
        let proof_changed = match (&record.checked_proof, &candidate) {
            (Some((checked, _)), Some(candidate)) => **checked != **candidate,
            (None, None) => false,
            _ => true,
        };
        if proof_changed {
            record.checked_proof = candidate.map(|candidate| {
                let served = self_consistent(&candidate).then(|| Arc::clone(&candidate));
                if served.is_none() {
                    SharedIndex::bump(&self.shared.torn_proofs);
                    debug!(%storage_index, "share's proof does not verify under its own key (caught mid-write?); not served");
                }
                (candidate, served)
            });
        }
        let proof = record
            .checked_proof
            .as_ref()
            .and_then(|(_, served)| served.clone());
        if record.published != Some(state) || proof_changed {
            self.shared
                .set_with_proof(storage_index, state, proof.clone());
            record.published = Some(state);
        }
        match state {
            SlotState::Absent => {
                self.slots.remove(&storage_index);
                debug!(%storage_index, "slot left the index");
            }
            SlotState::Mutable { seqnum } if seqnum > record.announced => {
                record.announced = seqnum;
                if self.emitting {
                    self.pending.push(SlotChange {
                        storage_index,
                        seqnum,
                        proof,
                    });
                }
            }
            SlotState::Mutable { .. } | SlotState::Immutable => {}
        }
    }
}

/// The subdirectories of `path` with their UTF-8 names. A missing folder has none; any other
/// error (logged) is returned, so that a transient one can be tried again.
fn list_dirs(path: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot list directory");
            return Err(e);
        }
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string() {
            dirs.push((entry.path(), name));
        }
    }
    Ok(dirs)
}

async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A prefix folder's name: two characters of Tahoe base32 (this leaves out `incoming`).
fn is_prefix(name: impl AsRef<OsStr>) -> bool {
    name.as_ref().to_str().is_some_and(|name| {
        name.len() == 2
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

/// The storage index named by a slot folder inside the prefix folder `parent`.
fn slot_name(parent: &Path, name: impl AsRef<OsStr>) -> Option<StorageIndex> {
    let name = name.as_ref().to_str()?;
    let prefix = parent.file_name()?.to_str()?;
    if !name.starts_with(prefix) {
        return None;
    }
    name.parse().ok()
}

/// A share file's name is its decimal share number.
fn share_number(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_prefix(OsStr::new("s5")));
        assert!(!is_prefix(OsStr::new("incoming")));
        assert!(!is_prefix(OsStr::new("S5")));
        assert!(!is_prefix(OsStr::new("s1")));
        let parent = Path::new("/x/shares/s5");
        assert!(slot_name(parent, "s5afkz2xwlqkfbyhs7q3fjsxaa").is_some());
        assert!(slot_name(parent, "vwybaofops7fnw3nwvpw5d4ppu").is_none());
        assert!(slot_name(parent, "s5afkz2xwlqkfbyhs7q3fjsxa").is_none());
        assert_eq!(share_number("0"), Some(0));
        assert_eq!(share_number("12"), Some(12));
        assert_eq!(share_number("+1"), None);
        assert_eq!(share_number("1.tmp"), None);
        assert_eq!(share_number(""), None);
    }
}
