//! Deciding what a seqnum means: a change to report, one to check against the listing, or
//! nothing new.
//!
//! Several servers report the same publish (each holds a share of the slot), a server that was
//! down reports a stale seqnum, a resubscribe reports the current seqnum again, and a server
//! may lie. What a seqnum claim is worth depends on whether it came with a slot proof that
//! verified against the cap's fingerprint ([`Claim::Verified`]) or not:
//!
//! - **Verified** seqnums are the slot writer's own signed words. The highest verified seqnum
//!   per slot is the truth: a rise above it is a change to report ([`Verdict::Report`]); an
//!   equal one is a copy from another server; a lower one is either a replayed old proof or a
//!   slot that lost all its shares and was published again from a low seqnum, which only the
//!   listing can tell apart ([`Verdict::CheckListing`]).
//! - **Unverified** seqnums (servers that do not offer proofs) are kept per (server, slot), so
//!   that no server's claim, however high, can hide another server's change. A server's new
//!   value that no other server already gave is checked against the listing: a hostile claim
//!   changes nothing there and raises nothing; a real publish does.
//! - An update without any seqnum (the proposal's first revision) is always a listing check.
//!
//! The highest reported seqnum per slot is recorded only once the change has been recorded
//! ([`SeqnumTracker::reported`]), so a crash while describing it loses nothing: the next
//! resubscribe reports it again, "while away", and the history's uniqueness per (cap, seqnum)
//! keeps it from being recorded twice. Removing a cap forgets everything about its slot.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, Connection};
use tahoe_caps::StorageIndex;

use crate::history::{self, seqnum_to_sql, HistoryError};

/// Where a seqnum came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A live update pushed by a server while subscribed.
    Live,
    /// The current seqnum a server reports when a subscription starts (or restarts).
    Resubscribe,
}

/// What a server said about a slot's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A seqnum from a slot proof that verified against the cap's fingerprint.
    Verified(u64),
    /// A seqnum without a proof (or from a server that offers none).
    Unverified(u64),
    /// An update that named no seqnum at all.
    NoSeqnum,
}

/// A new version of a slot: one change to describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The slot.
    pub storage_index: StorageIndex,
    /// The new seqnum (0 when the update named none).
    pub seqnum: u64,
    /// The highest seqnum reported before, if any.
    pub previous: Option<u64>,
    /// Whether the change happened while the client was not subscribed.
    pub while_away: bool,
}

impl Change {
    /// How many publishes at least this change stands for (seqnums can jump when updates were
    /// missed); 1 when there was no previous value or the seqnum went down.
    pub fn publishes(&self) -> u64 {
        self.previous
            .map_or(1, |p| self.seqnum.saturating_sub(p).max(1))
    }
}

/// What to do about one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing new (a copy of a known version, a stale server, a first baseline).
    Nothing,
    /// A verified new version: describe and report it.
    Report(Change),
    /// Maybe a new version: report it only if the listing differs from the last one seen.
    CheckListing(Change),
}

#[derive(Debug, Default)]
struct SlotState {
    /// Highest seqnum of a change recorded (dedupe only: it may come from an unverified claim).
    reported: Option<u64>,
    /// Highest verified seqnum.
    verified: Option<u64>,
    /// The last claim of each server: server id, seqnum.
    claims: Vec<(Arc<str>, u64)>,
}

impl SlotState {
    fn claim_of(&self, server: &str) -> Option<u64> {
        self.claims
            .iter()
            .find(|(s, _)| &**s == server)
            .map(|(_, n)| *n)
    }

    fn is_new(&self) -> bool {
        self.reported.is_none() && self.verified.is_none() && self.claims.is_empty()
    }
}

/// The seqnums seen per slot and per server, persisted in the history database's `seqnums` and
/// `server_seqnums` tables (on a connection of its own).
#[derive(Debug)]
pub struct SeqnumTracker {
    conn: Connection,
    slots: HashMap<StorageIndex, SlotState>,
    /// One shared copy of each server id.
    server_ids: HashMap<String, Arc<str>>,
}

impl SeqnumTracker {
    /// Opens the tracker on the history database at `path` (creating and migrating it if
    /// needed) and loads what it knows.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Self::with_connection(history::open_connection(path)?)
    }

    /// A tracker on a migrated in-memory database (tests).
    pub fn in_memory() -> Result<Self, HistoryError> {
        Self::with_connection(history::open_connection(Path::new(":memory:"))?)
    }

    fn with_connection(conn: Connection) -> Result<Self, HistoryError> {
        // A claim lost to a power cut is only re-checked against the listing: durability
        // against a crash of the process (what NORMAL gives in WAL mode) is enough, and it
        // spares an fsync per server per slot when thousands of caps are first subscribed.
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        let mut tracker = Self {
            conn,
            slots: HashMap::new(),
            server_ids: HashMap::new(),
        };
        let parse_si = |text: String| {
            text.parse::<StorageIndex>()
                .map_err(|_| HistoryError::BadValue {
                    what: "storage index",
                })
        };
        let parse_n =
            |n: i64| u64::try_from(n).map_err(|_| HistoryError::BadValue { what: "seqnum" });
        let rows: Vec<(String, i64, Option<i64>)> = {
            let mut stmt = tracker
                .conn
                .prepare("SELECT storage_index, seqnum, verified FROM seqnums")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (si, reported, verified) in rows {
            let slot = tracker.slots.entry(parse_si(si)?).or_default();
            slot.reported = Some(parse_n(reported)?);
            slot.verified = verified.map(parse_n).transpose()?;
        }
        let rows: Vec<(String, String, i64)> = {
            let mut stmt = tracker
                .conn
                .prepare("SELECT server_id, storage_index, seqnum FROM server_seqnums")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (server, si, n) in rows {
            let server = tracker.intern(&server);
            let n = parse_n(n)?;
            tracker
                .slots
                .entry(parse_si(si)?)
                .or_default()
                .claims
                .push((server, n));
        }
        Ok(tracker)
    }

    fn intern(&mut self, server: &str) -> Arc<str> {
        Arc::clone(
            self.server_ids
                .entry(server.to_owned())
                .or_insert_with(|| Arc::from(server)),
        )
    }

    /// The highest seqnum of a change recorded for `si`, if any.
    pub fn reported_seqnum(&self, si: &StorageIndex) -> Option<u64> {
        self.slots.get(si).and_then(|s| s.reported)
    }

    /// The highest verified seqnum of `si`, if any.
    pub fn verified_seqnum(&self, si: &StorageIndex) -> Option<u64> {
        self.slots.get(si).and_then(|s| s.verified)
    }

    /// Takes in what `server` said about `si` and says what it means (see the module
    /// documentation). The claim is persisted before returning.
    pub fn observe(
        &mut self,
        server: &str,
        si: StorageIndex,
        claim: Claim,
        source: Source,
    ) -> Result<Verdict, HistoryError> {
        let while_away = source == Source::Resubscribe;
        let server_id = self.intern(server);
        let slot = self.slots.entry(si).or_default();
        let first_sight = slot.is_new();
        let previous = slot.reported;
        let change = |seqnum| Change {
            storage_index: si,
            seqnum,
            previous,
            while_away,
        };
        let (verdict, new_claim, new_verified, new_reported) = match claim {
            Claim::NoSeqnum => (Verdict::CheckListing(change(0)), None, None, None),
            Claim::Verified(n) => {
                let own = slot.claim_of(server);
                let verdict = if first_sight && source == Source::Resubscribe {
                    // A new cap's current version: the baseline, not a change.
                    Verdict::Nothing
                } else {
                    match slot.verified.or(previous) {
                        None => Verdict::Report(change(n)),
                        Some(known) if n > known => Verdict::Report(change(n)),
                        Some(known) if n == known => Verdict::Nothing,
                        // Lower than a verified version: a replayed proof, or a slot published
                        // anew after it lost every share. Only a new listing says which; a
                        // server repeating its own lower value says nothing new.
                        Some(_) if own == Some(n) => Verdict::Nothing,
                        Some(_) if slot.verified.is_some() => Verdict::CheckListing(change(n)),
                        // Lower than an unverified record only: that record was a claim.
                        Some(_) => Verdict::Nothing,
                    }
                };
                let raise = slot.verified.is_none_or(|v| n > v);
                let reported = (first_sight && source == Source::Resubscribe).then_some(n);
                (
                    verdict,
                    (own != Some(n)).then_some(n),
                    raise.then_some(n),
                    reported,
                )
            }
            Claim::Unverified(n) => {
                let own = slot.claim_of(server);
                let copy = own == Some(n)
                    || slot
                        .verified
                        .is_some_and(|v| n <= v && own.is_none_or(|o| n >= o))
                    || previous == Some(n)
                    || slot.claims.iter().any(|(s, c)| &**s != server && *c == n);
                let baseline = first_sight && source == Source::Resubscribe;
                let verdict = if baseline || copy {
                    Verdict::Nothing
                } else {
                    Verdict::CheckListing(change(n))
                };
                let reported = (first_sight && source == Source::Resubscribe).then_some(n);
                (verdict, (own != Some(n)).then_some(n), None, reported)
            }
        };
        if let Some(n) = new_claim {
            match slot.claims.iter_mut().find(|(s, _)| **s == *server_id) {
                Some(entry) => entry.1 = n,
                None => slot.claims.push((Arc::clone(&server_id), n)),
            }
            self.conn.execute(
                "INSERT INTO server_seqnums (server_id, storage_index, seqnum, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (server_id, storage_index) DO UPDATE
                 SET seqnum = excluded.seqnum, updated_ms = excluded.updated_ms",
                params![
                    &*server_id,
                    si.to_base32(),
                    seqnum_to_sql(n),
                    history::now_ms()
                ],
            )?;
        }
        if new_verified.is_some() || new_reported.is_some() {
            let slot = self.slots.entry(si).or_default();
            if let Some(v) = new_verified {
                slot.verified = Some(v);
            }
            if let Some(r) = new_reported {
                slot.reported = Some(slot.reported.map_or(r, |p| p.max(r)));
            }
            self.store_slot(si)?;
        }
        tracing::debug!(%si, server, ?claim, ?source, ?verdict, "seqnum claim");
        Ok(verdict)
    }

    /// Records that the change to `seqnum` of `si` was reported (recorded in the history).
    pub fn reported(&mut self, si: StorageIndex, seqnum: u64) -> Result<(), HistoryError> {
        let slot = self.slots.entry(si).or_default();
        if slot.reported.is_some_and(|r| r >= seqnum) && seqnum != 0 {
            return Ok(());
        }
        if seqnum == 0 {
            return Ok(());
        }
        slot.reported = Some(seqnum);
        self.store_slot(si)
    }

    /// Records a slot's current version as known without reporting it (a cap just added whose
    /// seqnum is known). Never lowers what is known.
    pub fn set_baseline(&mut self, si: StorageIndex, seqnum: u64) -> Result<(), HistoryError> {
        let slot = self.slots.entry(si).or_default();
        if slot.reported.is_some_and(|r| r >= seqnum) {
            return Ok(());
        }
        slot.reported = Some(seqnum);
        self.store_slot(si)
    }

    fn store_slot(&mut self, si: StorageIndex) -> Result<(), HistoryError> {
        let Some(slot) = self.slots.get(&si) else {
            return Ok(());
        };
        let Some(reported) = slot.reported.or(slot.verified) else {
            return Ok(());
        };
        self.conn.execute(
            "INSERT INTO seqnums (storage_index, seqnum, verified, updated_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (storage_index) DO UPDATE
             SET seqnum = excluded.seqnum, verified = excluded.verified,
                 updated_ms = excluded.updated_ms",
            params![
                si.to_base32(),
                seqnum_to_sql(reported),
                slot.verified.map(seqnum_to_sql),
                history::now_ms()
            ],
        )?;
        Ok(())
    }

    /// Forgets `si` entirely (its cap was removed): a cap added again starts afresh.
    pub fn forget(&mut self, si: &StorageIndex) -> Result<(), HistoryError> {
        let text = si.to_base32();
        self.conn
            .execute("DELETE FROM seqnums WHERE storage_index = ?1", [&text])?;
        self.conn.execute(
            "DELETE FROM server_seqnums WHERE storage_index = ?1",
            [&text],
        )?;
        self.slots.remove(si);
        Ok(())
    }

    /// Forgets what `server` said (it was removed from the config).
    pub fn forget_server(&mut self, server: &str) -> Result<(), HistoryError> {
        self.conn
            .execute("DELETE FROM server_seqnums WHERE server_id = ?1", [server])?;
        for slot in self.slots.values_mut() {
            slot.claims.retain(|(s, _)| &**s != server);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Claim::{NoSeqnum, Unverified, Verified};
    use Source::{Live, Resubscribe};

    fn si(n: u8) -> StorageIndex {
        StorageIndex::from_bytes([n; 16])
    }

    fn is_report(v: Verdict, seqnum: u64) -> bool {
        matches!(v, Verdict::Report(c) if c.seqnum == seqnum)
    }

    fn is_check(v: Verdict, seqnum: u64) -> bool {
        matches!(v, Verdict::CheckListing(c) if c.seqnum == seqnum)
    }

    #[test]
    fn a_first_resubscribe_is_a_baseline_and_a_verified_rise_a_change() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        assert_eq!(
            t.observe("a", si(1), Verified(4), Resubscribe).unwrap(),
            Verdict::Nothing
        );
        assert_eq!(
            t.observe("b", si(1), Verified(4), Resubscribe).unwrap(),
            Verdict::Nothing
        );
        let v = t.observe("a", si(1), Verified(5), Live).unwrap();
        assert!(is_report(v, 5), "{v:?}");
        t.reported(si(1), 5).unwrap();
        // The same publish from the other servers: one change.
        assert_eq!(
            t.observe("b", si(1), Verified(5), Live).unwrap(),
            Verdict::Nothing
        );
        assert_eq!(
            t.observe("c", si(1), Verified(5), Live).unwrap(),
            Verdict::Nothing
        );
        // A rise seen on reconnect happened while away.
        let v = t.observe("b", si(1), Verified(7), Resubscribe).unwrap();
        assert!(
            matches!(v, Verdict::Report(c) if c.while_away && c.publishes() == 2),
            "{v:?}"
        );
    }

    #[test]
    fn one_servers_huge_unverified_claim_hides_nothing_and_is_only_a_listing_check() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        for server in ["a", "b", "forger"] {
            t.observe(server, si(1), Unverified(3), Resubscribe)
                .unwrap();
        }
        // The forger (the review's finding 1) claims 2^63: a listing check, never a report.
        let v = t
            .observe("forger", si(1), Unverified(u64::MAX / 2), Live)
            .unwrap();
        assert!(is_check(v, u64::MAX / 2), "{v:?}");
        // The honest servers' next publish is still seen.
        let v = t.observe("a", si(1), Unverified(4), Live).unwrap();
        assert!(is_check(v, 4), "{v:?}");
        t.reported(si(1), 4).unwrap();
        assert_eq!(
            t.observe("b", si(1), Unverified(4), Live).unwrap(),
            Verdict::Nothing
        );
        // And verified proofs are never outweighed by the unverified record.
        let v = t.observe("b", si(1), Verified(5), Live).unwrap();
        assert!(is_report(v, 5), "{v:?}");
    }

    #[test]
    fn replays_of_older_verified_proofs_are_not_changes_but_a_republish_can_be() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        t.observe("a", si(1), Verified(7), Resubscribe).unwrap();
        // A server replaying seqnum 3: only the listing can tell a replay from a slot that lost
        // all its shares and was published again (finding 23).
        let v = t.observe("b", si(1), Verified(3), Live).unwrap();
        assert!(is_check(v, 3), "{v:?}");
        // The same server saying it again adds nothing.
        assert_eq!(
            t.observe("b", si(1), Verified(3), Live).unwrap(),
            Verdict::Nothing
        );
        // An unverified lower value below a verified one is a copy of old news.
        assert_eq!(
            t.observe("c", si(1), Unverified(2), Live).unwrap(),
            Verdict::Nothing
        );
    }

    #[test]
    fn seqnumless_updates_are_listing_checks() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        t.observe("a", si(1), Verified(1), Resubscribe).unwrap();
        assert!(is_check(t.observe("a", si(1), NoSeqnum, Live).unwrap(), 0));
        assert!(is_check(t.observe("a", si(1), NoSeqnum, Live).unwrap(), 0));
        assert_eq!(t.verified_seqnum(&si(1)), Some(1));
    }

    #[test]
    fn persisted_across_reopen_and_forgotten_on_removal() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("h.sqlite3");
        {
            let mut t = SeqnumTracker::open(&path).unwrap();
            t.observe("a", si(1), Verified(3), Resubscribe).unwrap();
            t.observe("b", si(1), Unverified(3), Resubscribe).unwrap();
            assert!(is_report(
                t.observe("a", si(1), Verified(4), Live).unwrap(),
                4
            ));
            t.reported(si(1), 4).unwrap();
            t.observe("b", si(1), Unverified(4), Live).unwrap();
        }
        let mut t = SeqnumTracker::open(&path).unwrap();
        assert_eq!(t.reported_seqnum(&si(1)), Some(4));
        assert_eq!(t.verified_seqnum(&si(1)), Some(4));
        // After a restart, the same seqnums are nothing new...
        assert_eq!(
            t.observe("a", si(1), Verified(4), Resubscribe).unwrap(),
            Verdict::Nothing
        );
        assert_eq!(
            t.observe("b", si(1), Unverified(4), Resubscribe).unwrap(),
            Verdict::Nothing
        );
        // ...and a change during the downtime is one change, while away.
        let v = t.observe("a", si(1), Verified(5), Resubscribe).unwrap();
        assert!(matches!(v, Verdict::Report(c) if c.while_away), "{v:?}");
        // A change never recorded (a crash while describing it) comes back on reconnect.
        let v = t.observe("a", si(1), Verified(5), Resubscribe).unwrap();
        assert_eq!(v, Verdict::Nothing, "the verified record moved on");
        t.forget(&si(1)).unwrap();
        drop(t);
        let mut t = SeqnumTracker::open(&path).unwrap();
        assert_eq!(t.reported_seqnum(&si(1)), None);
        // Added again: a fresh baseline, whatever was said before.
        assert_eq!(
            t.observe("b", si(1), Unverified(9), Resubscribe).unwrap(),
            Verdict::Nothing
        );
    }

    #[test]
    fn an_old_poisoned_record_no_longer_silences_anything() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        // What the old tracker left after a forged 2^63 (finding 1): a reported value only.
        t.set_baseline(si(1), u64::MAX).unwrap();
        let v = t.observe("a", si(1), Verified(6), Live).unwrap();
        assert_eq!(
            v,
            Verdict::Nothing,
            "lower than the unverified record: taken as the baseline"
        );
        assert_eq!(t.verified_seqnum(&si(1)), Some(6));
        assert!(is_report(
            t.observe("a", si(1), Verified(7), Live).unwrap(),
            7
        ));
    }

    #[test]
    fn huge_seqnums_do_not_wrap() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        t.observe("a", si(1), Verified(u64::MAX - 1), Resubscribe)
            .unwrap();
        assert!(is_report(
            t.observe("a", si(1), Verified(u64::MAX), Live).unwrap(),
            u64::MAX
        ));
    }
}
