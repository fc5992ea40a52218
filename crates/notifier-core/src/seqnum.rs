//! Exactly-once change detection: the highest seqnum seen per storage index.
//!
//! Several servers report the same publish (each holds a share of the slot), a server that was
//! down reports a stale seqnum, and a resubscribe reports the current seqnum again. The rule that
//! makes each publish one change: remember the highest seqnum seen per storage index (persisted,
//! so restarts do not repeat or lose changes) and report a change only when a seqnum rises above
//! it. A rise seen in a live update is a change as it happens; a rise seen when (re)subscribing
//! is a change that happened while away.
//!
//! The decision and the write of the new highest seqnum happen together in [`SeqnumTracker::observe`],
//! before the caller notifies anyone: after a crash in between, a change is at worst reported
//! once less, never twice.

use std::collections::HashMap;
use std::path::Path;

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

/// A rise of a slot's seqnum: one change to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The slot.
    pub storage_index: StorageIndex,
    /// The new highest seqnum.
    pub seqnum: u64,
    /// The highest seqnum known before, if any.
    pub previous: Option<u64>,
    /// Whether the change happened while the client was not subscribed.
    pub while_away: bool,
}

impl Change {
    /// How many publishes at least this change stands for (seqnums can jump when updates were
    /// missed); 1 when there was no previous value.
    pub fn publishes(&self) -> u64 {
        self.previous
            .map_or(1, |p| self.seqnum.saturating_sub(p).max(1))
    }
}

/// The highest seqnum seen per storage index, persisted in the history database's `seqnums`
/// table.
#[derive(Debug)]
pub struct SeqnumTracker {
    conn: Connection,
    highest: HashMap<StorageIndex, u64>,
}

impl SeqnumTracker {
    /// Opens the tracker on the history database at `path` (creating and migrating it if
    /// needed) and loads the known seqnums.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Self::with_connection(history::open_connection(path)?)
    }

    /// A tracker on a migrated in-memory database (tests).
    pub fn in_memory() -> Result<Self, HistoryError> {
        // Same migrations as a file, on a private in-memory database.
        Self::with_connection(history::open_connection(Path::new(":memory:"))?)
    }

    fn with_connection(conn: Connection) -> Result<Self, HistoryError> {
        let mut highest = HashMap::new();
        {
            let mut stmt = conn.prepare("SELECT storage_index, seqnum FROM seqnums")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (si, seqnum) = row?;
                let si: StorageIndex = si.parse().map_err(|_| HistoryError::BadValue {
                    what: "storage index",
                })?;
                let seqnum =
                    u64::try_from(seqnum).map_err(|_| HistoryError::BadValue { what: "seqnum" })?;
                highest.insert(si, seqnum);
            }
        }
        Ok(Self { conn, highest })
    }

    /// The highest seqnum seen for `si`, if any.
    pub fn highest(&self, si: &StorageIndex) -> Option<u64> {
        self.highest.get(si).copied()
    }

    /// Records a seqnum reported for `si` and says whether it is a change.
    ///
    /// - Above the highest seen: a change (while away if it came from a (re)subscribe); the new
    ///   highest is persisted before returning.
    /// - Equal or below: `None` (another server's copy of a known change, or a stale server).
    /// - Nothing known yet for `si`: a [`Source::Resubscribe`] value is the baseline and not a
    ///   change (the cap was just added); a [`Source::Live`] value is a change, since the server
    ///   saw a publish happen.
    pub fn observe(
        &mut self,
        si: StorageIndex,
        seqnum: u64,
        source: Source,
    ) -> Result<Option<Change>, HistoryError> {
        let previous = self.highest(&si);
        let is_change = match (previous, source) {
            (Some(p), _) => seqnum > p,
            (None, Source::Live) => true,
            (None, Source::Resubscribe) => false,
        };
        if previous.is_some_and(|p| seqnum <= p) {
            return Ok(None);
        }
        self.store(si, seqnum)?;
        if !is_change {
            tracing::debug!(si = %si, seqnum, "seqnum baseline recorded");
            return Ok(None);
        }
        let change = Change {
            storage_index: si,
            seqnum,
            previous,
            while_away: source == Source::Resubscribe,
        };
        tracing::debug!(si = %si, seqnum, ?previous, while_away = change.while_away, "change");
        Ok(Some(change))
    }

    /// Sets the baseline for `si` without reporting a change (e.g. when a cap is added and its
    /// current seqnum is known). Never lowers a known value.
    pub fn set_baseline(&mut self, si: StorageIndex, seqnum: u64) -> Result<(), HistoryError> {
        if self.highest(&si).is_some_and(|p| seqnum <= p) {
            return Ok(());
        }
        self.store(si, seqnum)
    }

    /// Forgets `si` (its cap was removed).
    pub fn forget(&mut self, si: &StorageIndex) -> Result<(), HistoryError> {
        self.conn.execute(
            "DELETE FROM seqnums WHERE storage_index = ?1",
            [si.to_base32()],
        )?;
        self.highest.remove(si);
        Ok(())
    }

    fn store(&mut self, si: StorageIndex, seqnum: u64) -> Result<(), HistoryError> {
        // The WHERE keeps the stored value monotonic even if another process raced us.
        self.conn.execute(
            "INSERT INTO seqnums (storage_index, seqnum, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (storage_index) DO UPDATE
             SET seqnum = excluded.seqnum, updated_ms = excluded.updated_ms
             WHERE excluded.seqnum > seqnums.seqnum",
            params![si.to_base32(), seqnum_to_sql(seqnum), history::now_ms()],
        )?;
        self.highest.insert(si, seqnum);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn si(n: u8) -> StorageIndex {
        StorageIndex::from_bytes([n; 16])
    }

    #[test]
    fn resubscribe_without_history_is_a_baseline() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        assert_eq!(t.observe(si(1), 4, Source::Resubscribe).unwrap(), None);
        assert_eq!(t.highest(&si(1)), Some(4));
    }

    #[test]
    fn live_without_history_is_a_change() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        let c = t.observe(si(1), 4, Source::Live).unwrap().unwrap();
        assert_eq!(c.previous, None);
        assert!(!c.while_away);
        assert_eq!(c.publishes(), 1);
    }

    #[test]
    fn one_publish_reported_by_three_servers_is_one_change() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        t.set_baseline(si(1), 3).unwrap();
        let first = t.observe(si(1), 4, Source::Live).unwrap();
        assert_eq!(
            first,
            Some(Change {
                storage_index: si(1),
                seqnum: 4,
                previous: Some(3),
                while_away: false
            })
        );
        assert_eq!(t.observe(si(1), 4, Source::Live).unwrap(), None);
        assert_eq!(t.observe(si(1), 4, Source::Resubscribe).unwrap(), None);
        // A stale server reporting an older seqnum is ignored too.
        assert_eq!(t.observe(si(1), 2, Source::Live).unwrap(), None);
        assert_eq!(t.highest(&si(1)), Some(4));
    }

    #[test]
    fn rise_on_resubscribe_is_while_away() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        t.set_baseline(si(1), 3).unwrap();
        let c = t.observe(si(1), 6, Source::Resubscribe).unwrap().unwrap();
        assert!(c.while_away);
        assert_eq!(c.publishes(), 3);
    }

    #[test]
    fn slots_are_independent() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        t.set_baseline(si(1), 3).unwrap();
        t.set_baseline(si(2), 10).unwrap();
        assert!(t.observe(si(1), 4, Source::Live).unwrap().is_some());
        assert!(t.observe(si(2), 4, Source::Live).unwrap().is_none());
    }

    #[test]
    fn baseline_never_lowers() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        t.set_baseline(si(1), 5).unwrap();
        t.set_baseline(si(1), 2).unwrap();
        assert_eq!(t.highest(&si(1)), Some(5));
    }

    #[test]
    fn persisted_across_reopen_no_repeat() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("h.sqlite3");
        {
            let mut t = SeqnumTracker::open(&path).unwrap();
            t.set_baseline(si(1), 3).unwrap();
            assert!(t.observe(si(1), 4, Source::Live).unwrap().is_some());
        }
        let mut t = SeqnumTracker::open(&path).unwrap();
        assert_eq!(t.highest(&si(1)), Some(4));
        // The same seqnum after a restart is not reported again.
        assert_eq!(t.observe(si(1), 4, Source::Resubscribe).unwrap(), None);
        assert!(
            t.observe(si(1), 5, Source::Resubscribe)
                .unwrap()
                .unwrap()
                .while_away
        );
        t.forget(&si(1)).unwrap();
        drop(t);
        assert_eq!(SeqnumTracker::open(&path).unwrap().highest(&si(1)), None);
    }

    #[test]
    fn huge_seqnums_do_not_wrap() {
        let mut t = SeqnumTracker::in_memory().unwrap();
        t.set_baseline(si(1), u64::MAX - 1).unwrap();
        assert!(t.observe(si(1), u64::MAX, Source::Live).unwrap().is_some());
    }
}
