//! From a server's word to a recorded, notified change: verifying slot proofs, asking the
//! seqnum tracker what a claim means, describing the change from the gateway's listing (off
//! the engine's loop, retried while the listing still shows the old version), recording it once
//! and handing it to the notification policy.

use std::collections::HashMap;
use std::time::Duration;

use mutable_updates::proof::{SlotProof, VerificationKey};
use tahoe_caps::StorageIndex;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ChangeReport, Engine, EngineEvent, Watched, WatchedCap};
use crate::describe::snapshot::Snapshot;
use crate::engine::details::{self, ChangeDescription};
use crate::engine::seqnum::{Change, Claim, Source, Verdict};
use crate::history::{ChangeFilter, HistoryError, NewChange};
use crate::net::gateway::Gateway;
use crate::notify::{ChangeNote, PolicyInput};

/// Waits before fetching a listing again when it still shows the old version: the other
/// servers may not have taken the new shares yet, and the gateway serves the version most
/// servers hold (the review's finding 7).
const LISTING_RETRIES: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Least time between two listing checks of one slot asked for by updates without a seqnum: a
/// hostile server must not make us fetch listings as fast as it can send them.
const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// A change waiting for its listing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    change: Change,
    /// Verified (report it even if the listing shows no difference) or a check (report it
    /// only if the listing differs).
    verified: bool,
}

impl Pending {
    /// The one to keep of two pending changes of a slot: a verified one over a check, then the
    /// higher seqnum.
    fn merge(self, other: Pending) -> Pending {
        match (self.verified, other.verified) {
            (true, false) => self,
            (false, true) => other,
            _ if other.change.seqnum > self.change.seqnum => other,
            _ => self,
        }
    }
}

/// What a finished listing fetch hands back to the engine.
pub(super) type Described = (
    StorageIndex,
    Pending,
    Result<Snapshot, details::Unavailable>,
);

/// The engine's changes being described: one fetch at a time per slot.
#[derive(Debug, Default)]
pub(super) struct Describing {
    pub(super) tasks: tokio::task::JoinSet<Described>,
    in_flight: HashMap<StorageIndex, Option<Pending>>,
    last_check: HashMap<StorageIndex, Instant>,
    /// Verification keys from proofs that verified, by slot (updates leave the key out).
    pub(super) keys: HashMap<StorageIndex, VerificationKey>,
    /// Proofs that failed to verify, for the status page and the tests.
    pub(super) rejected_proofs: u64,
}

impl Engine {
    /// A status entry's or an update's seqnum, made a [`Claim`]: verified when its proof
    /// checks out against the cap's fingerprint. A proof that fails is a lie or a forgery: the
    /// claim is dropped (`None`) rather than believed unverified.
    pub(super) fn claim(
        &mut self,
        server: &str,
        si: StorageIndex,
        seqnum: Option<u64>,
        proof: Option<&SlotProof>,
    ) -> Option<Claim> {
        let Some(proof) = proof else {
            return Some(seqnum.map_or(Claim::NoSeqnum, Claim::Unverified));
        };
        let fingerprint = match self.watched.get(&si) {
            Some(Watched::Cap(cap)) => cap.cap.fingerprint(),
            Some(Watched::News { fingerprint, .. }) => Some(*fingerprint),
            None => None,
        }?;
        match proof.verify(&fingerprint, self.describing.keys.get(&si)) {
            Ok(verified) => {
                if seqnum.is_some_and(|n| n != verified.seqnum()) {
                    tracing::info!(server, %si, "a server's seqnum differs from its own proof's: the proof's is used");
                }
                self.describing
                    .keys
                    .entry(si)
                    .or_insert_with(|| verified.verification_key().clone());
                Some(Claim::Verified(verified.seqnum()))
            }
            Err(error) => {
                self.describing.rejected_proofs += 1;
                tracing::warn!(server, %si, %error, "a slot proof did not verify: the seqnum is ignored");
                None
            }
        }
    }

    /// Takes in what `server` said about `si` and acts on what it means.
    pub(super) async fn observe(
        &mut self,
        server: &str,
        si: StorageIndex,
        claim: Claim,
        source: Source,
        events: &mpsc::Sender<EngineEvent>,
    ) {
        // A hostile server's words about slots we never asked for go nowhere (finding 3).
        let Some(watched) = self.watched.get(&si).cloned() else {
            return;
        };
        let verdict = match self.tracker.observe(server, si, claim, source) {
            Ok(verdict) => verdict,
            Err(error) => {
                self.notice(events, format!("cannot record a seqnum: {error}"))
                    .await;
                return;
            }
        };
        let pending = match verdict {
            Verdict::Nothing => return,
            Verdict::Report(change) => Pending {
                change,
                verified: true,
            },
            Verdict::CheckListing(change) => Pending {
                change,
                verified: false,
            },
        };
        match watched {
            Watched::Cap(cap) => self.start_describing(&cap, pending),
            Watched::News { grid, .. } => {
                self.refresh_news_spread(&grid, si, events).await;
                if pending.verified {
                    if let Err(error) = self.tracker.reported(si, pending.change.seqnum) {
                        tracing::warn!(%error, "cannot record a news seqnum");
                    }
                }
            }
        }
    }

    /// Fetches the cap's listing for `pending` in the background, unless one is being fetched
    /// for the slot already (then `pending` waits for it, merged with any other waiting one).
    pub(super) fn start_describing(&mut self, cap: &WatchedCap, pending: Pending) {
        let si = pending.change.storage_index;
        if let Some(waiting) = self.describing.in_flight.get_mut(&si) {
            *waiting = Some(waiting.map_or(pending, |w| w.merge(pending)));
            return;
        }
        let previous = self.history.load_snapshot(&cap.id).unwrap_or(None);
        // Only updates without a seqnum are spaced out: each names a new version otherwise,
        // and one in flight per slot already merges a burst.
        let spaced = if pending.verified || pending.change.seqnum != 0 {
            None
        } else {
            let last = self.describing.last_check.get(&si).copied();
            self.describing.last_check.insert(si, Instant::now());
            last.map(|at| at + MIN_CHECK_INTERVAL)
        };
        // A popular slot's subscribers spread their fetches (crate::engine::spread); a change no proof
        // vouches for is not announced before its listing shows it.
        let spread = self.spread_wait(&si);
        if pending.verified && self.options.spread.announces_early(spread) {
            self.announce_early(cap, spread);
        }
        let spread_until = (!spread.is_zero()).then(|| Instant::now() + spread);
        let not_before = spaced.max(spread_until);
        self.describing.in_flight.insert(si, None);
        let gateway = self.gateway_for(cap.grid.as_deref()).cloned();
        let read_cap = cap.cap.clone();
        // A verified change is real: wait up to the whole schedule for the listing to show it.
        // A check is not known to be real, and a change made meanwhile would be taken for it:
        // only the first pauses.
        // After a change found by polling, a listing equal to the polled one is that change
        // seen again from a server (polling cannot know seqnums): waiting for the listing to
        // move would take the next change for this one.
        let retries = if self.last_change_was_polled(cap) {
            &[][..]
        } else if pending.verified {
            &LISTING_RETRIES[..]
        } else {
            &LISTING_RETRIES[..2]
        };
        self.describing.tasks.spawn(async move {
            if let Some(at) = not_before {
                tokio::time::sleep_until(at).await;
            }
            let fetched =
                fetch_until_changed(gateway.as_ref(), &read_cap, previous.as_ref(), retries).await;
            (si, pending, fetched)
        });
    }

    /// Tells the user at once that `cap` changed, when its details wait `wait` for their turn:
    /// the described change replaces this notification when it comes.
    fn announce_early(&self, cap: &WatchedCap, wait: Duration) {
        let Some(notifications) = &self.notifications else {
            return;
        };
        let note = ChangeNote::early(&cap.id, &cap.label, wait);
        // The policy's queue is roomy; a full one means the desktop is far behind, and the
        // described change still comes.
        if notifications.try_send(PolicyInput::Change(note)).is_err() {
            tracing::debug!(cap = %cap.id, "early notice not queued");
        }
    }

    /// A listing arrived for a pending change: report it (or drop a check that shows nothing
    /// new), then start the next one waiting for the slot.
    pub(super) async fn described(&mut self, done: Described, events: &mpsc::Sender<EngineEvent>) {
        let (si, pending, fetched) = done;
        let waiting = self.describing.in_flight.remove(&si).flatten();
        if let Some(Watched::Cap(cap)) = self.watched.get(&si).cloned() {
            self.report_described(&cap, pending, fetched, events).await;
            if let Some(next) = waiting.filter(|next| !self.reported_already(next)) {
                self.start_describing(&cap, next);
            }
        }
    }

    /// Whether `pending` is a proven version that has been reported already: a server
    /// without proofs (an edge) told of it first, its listing check reported it, and the
    /// node's proof of the same seqnum came while that check ran. Describing it again would
    /// wait for the listing to move and take the next change for this one (found by
    /// `tests/edges_grid.rs`). Checks are never dropped: a lowered seqnum (a slot
    /// republished from scratch) is a check at or below the reported one.
    fn reported_already(&self, pending: &Pending) -> bool {
        pending.verified
            && pending.change.seqnum != 0
            && self
                .tracker
                .reported_seqnum(&pending.change.storage_index)
                .is_some_and(|reported| reported >= pending.change.seqnum)
    }

    async fn report_described(
        &mut self,
        cap: &WatchedCap,
        pending: Pending,
        fetched: Result<Snapshot, details::Unavailable>,
        events: &mpsc::Sender<EngineEvent>,
    ) {
        let change = pending.change;
        if self.reported_already(&pending) {
            // Its listing may already show a later change, which must not be saved as this
            // one's snapshot (that change would then find nothing new).
            tracing::debug!(cap = %cap.id, seqnum = change.seqnum, "a proven seqnum reported already");
            return;
        }
        if !pending.verified {
            // A change no proof vouches for is believed only if the listing shows it.
            let unchanged = match &fetched {
                Ok(listing) => {
                    matches!(self.history.load_snapshot(&cap.id), Ok(Some(old)) if old == *listing)
                }
                Err(_) => true,
            };
            if unchanged {
                tracing::debug!(cap = %cap.id, seqnum = change.seqnum, "an unverified seqnum with no visible change: not reported");
                return;
            }
        }
        if self.already_reported_by_polling(cap, &fetched) {
            tracing::debug!(cap = %cap.id, seqnum = change.seqnum, "the seqnum rise is the change polling already reported");
            if let Err(error) = self.tracker.reported(change.storage_index, change.seqnum) {
                tracing::warn!(%error, "cannot record a seqnum");
            }
            return;
        }
        let description = details::describe_fetched(
            &self.history,
            &cap.id,
            &cap.label,
            &cap.cap,
            &change,
            fetched,
        );
        let recorded = self
            .record_and_notify(
                cap,
                change.storage_index,
                change.seqnum,
                change.while_away,
                description,
                events,
            )
            .await;
        if recorded {
            if let Err(error) = self.tracker.reported(change.storage_index, change.seqnum) {
                tracing::warn!(%error, "cannot record a seqnum");
            }
        }
    }

    /// Whether a seqnum rise only confirms what polling the gateway already reported: the
    /// cap's last recorded change came from polling (which cannot know the seqnum), and the
    /// listing is still the one polling saw. Found by the fault-injection test: with every
    /// server down past a poll, the change was reported by the poll and again, "while away",
    /// when a server came back. Read from the history, so an engine restart in between keeps it.
    fn already_reported_by_polling(
        &self,
        cap: &WatchedCap,
        fetched: &Result<Snapshot, details::Unavailable>,
    ) -> bool {
        let Ok(listing) = fetched else {
            return false;
        };
        if !matches!(self.history.load_snapshot(&cap.id), Ok(Some(polled)) if polled == *listing) {
            return false;
        }
        self.last_change_was_polled(cap)
    }

    /// Whether the cap's last recorded change was found by polling the gateway.
    fn last_change_was_polled(&self, cap: &WatchedCap) -> bool {
        let Ok(last) = self.history.list_changes(&ChangeFilter {
            cap_id: Some(cap.id.clone()),
            unread_only: false,
            limit: Some(1),
        }) else {
            return false;
        };
        last.first().is_some_and(|change| {
            change.details.get("polled") == Some(&serde_json::Value::Bool(true))
        })
    }

    /// Records a change in the history, hands it to the notification policy and tells the
    /// owner. `false` (nothing notified) when the history has this change already.
    pub(super) async fn record_and_notify(
        &mut self,
        cap: &WatchedCap,
        si: StorageIndex,
        seqnum: u64,
        while_away: bool,
        description: ChangeDescription,
        events: &mpsc::Sender<EngineEvent>,
    ) -> bool {
        let record = NewChange {
            cap_id: cap.id.clone(),
            storage_index: si,
            seqnum,
            while_away,
            summary: description.summary.clone(),
            details: description.details_json.clone(),
            at_ms: crate::history::now_ms(),
        };
        let history_id = match self.history.insert_change(&record) {
            Ok(id) => id,
            Err(HistoryError::AlreadyRecorded { .. }) => {
                tracing::debug!(cap = %cap.id, seqnum, "change recorded already (by another engine or before a crash)");
                return false;
            }
            Err(error) => {
                self.notice(events, format!("cannot record a change: {error}"))
                    .await;
                -1
            }
        };
        // Muted caps too: the policy drops them, and knows of mutes the engine learns later.
        self.notify(PolicyInput::Change(ChangeNote::from_description(
            &cap.id,
            &cap.label,
            &description,
            Some(format!("change:{history_id}")),
        )))
        .await;
        let _ = events
            .send(EngineEvent::Changed(ChangeReport {
                history_id,
                cap_id: cap.id.clone(),
                storage_index: si,
                seqnum,
                while_away,
                summary: description.summary,
                body: description.body,
                muted: cap.muted,
                details: description.details_json,
            }))
            .await;
        true
    }
}

/// The cap's listing, fetched again (a few times, with growing pauses) while it still equals
/// `previous`: a change announced by the first server to take its share is often not yet what
/// the gateway serves.
async fn fetch_until_changed(
    gateway: Option<&Gateway>,
    cap: &tahoe_caps::Cap,
    previous: Option<&Snapshot>,
    retries: &[Duration],
) -> Result<Snapshot, details::Unavailable> {
    let mut fetched = details::fetch_state(gateway, cap).await;
    for &pause in retries {
        match (&fetched, previous) {
            (Ok(listing), Some(old)) if listing == old => {}
            _ => break,
        }
        tokio::time::sleep(pause).await;
        fetched = details::fetch_state(gateway, cap).await;
    }
    fetched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(seqnum: u64, verified: bool) -> Pending {
        Pending {
            change: Change {
                storage_index: StorageIndex::from_bytes([1; 16]),
                seqnum,
                previous: None,
                while_away: false,
            },
            verified,
        }
    }

    #[test]
    fn a_verified_pending_change_wins_then_the_higher_seqnum() {
        assert!(pending(3, false).merge(pending(2, true)).verified);
        assert!(pending(2, true).merge(pending(9, false)).verified);
        assert_eq!(pending(2, true).merge(pending(5, true)).change.seqnum, 5);
        assert_eq!(pending(7, false).merge(pending(5, false)).change.seqnum, 7);
    }
}
