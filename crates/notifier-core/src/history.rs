//! The history database: every change and every news message seen, with read/unread state, for
//! the UI and for "what did I miss". Also holds the highest seqnum per storage index (see
//! [`crate::engine::seqnum`]) and the last directory snapshot per cap (see [`crate::describe::snapshot`]).
//!
//! An embedded SQLite file (rusqlite, bundled). The schema is versioned with `PRAGMA
//! user_version`: each entry of [`MIGRATIONS`] moves the file one version up, inside a
//! transaction, so an empty file becomes the current schema and an old file is upgraded in place.
//! Nothing stored here is secret: changes are described by names, sizes and counts; caps appear
//! only as ids and storage indexes, and child caps only as SHA-256 hashes.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use tahoe_caps::StorageIndex;
use thiserror::Error;

use crate::news::Severity;

/// Schema migrations; entry `i` takes the database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE changes (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         cap_id TEXT NOT NULL,
         storage_index TEXT NOT NULL,
         seqnum INTEGER NOT NULL,
         while_away INTEGER NOT NULL,
         summary TEXT NOT NULL,
         details TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         read INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX changes_by_time ON changes (at_ms DESC, id DESC);
     CREATE INDEX changes_by_cap ON changes (cap_id, at_ms DESC);
     CREATE TABLE news (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         grid TEXT NOT NULL,
         name TEXT NOT NULL,
         title TEXT,
         severity TEXT NOT NULL,
         body TEXT NOT NULL,
         expires_ms INTEGER,
         at_ms INTEGER NOT NULL,
         read INTEGER NOT NULL DEFAULT 0,
         UNIQUE (grid, name)
     );
     CREATE INDEX news_by_time ON news (at_ms DESC, id DESC);
     CREATE TABLE seqnums (
         storage_index TEXT PRIMARY KEY,
         seqnum INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL
     );
     CREATE TABLE snapshots (
         cap_id TEXT PRIMARY KEY,
         snapshot TEXT NOT NULL,
         updated_ms INTEGER NOT NULL
     );",
    // 1 -> 2: seqnums per server and verified seqnums (crate::engine::seqnum), and one row per
    // (cap, seqnum): two engines on one home, or a change reported again after a crash, used to
    // record a publish twice. Rows of polled changes (seqnum 0) may repeat.
    "CREATE TABLE server_seqnums (
         server_id TEXT NOT NULL,
         storage_index TEXT NOT NULL,
         seqnum INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL,
         PRIMARY KEY (server_id, storage_index)
     );
     ALTER TABLE seqnums ADD COLUMN verified INTEGER;
     DELETE FROM changes WHERE seqnum > 0 AND id NOT IN
         (SELECT MIN(id) FROM changes WHERE seqnum > 0 GROUP BY cap_id, seqnum);
     CREATE UNIQUE INDEX changes_once ON changes (cap_id, seqnum) WHERE seqnum > 0;",
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Why a history operation failed.
#[derive(Debug, Error)]
pub enum HistoryError {
    /// SQLite reported an error.
    #[error("history database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer version.
    #[error(
        "the history database has schema version {found}, newer than this tahoe-notifier \
         understands ({SCHEMA_VERSION}): upgrade tahoe-notifier"
    )]
    TooNew {
        /// The version found.
        found: u32,
    },
    /// A stored value could not be decoded.
    #[error("the history database holds an unreadable {what}")]
    BadValue {
        /// Which value.
        what: &'static str,
    },
    /// This cap's change to this seqnum is in the history already (another engine on the
    /// same home, or a change reported again after a crash).
    #[error("the change to seqnum {seqnum} is recorded already")]
    AlreadyRecorded {
        /// The seqnum.
        seqnum: u64,
    },
    /// JSON encoding failed.
    #[error("cannot encode {what} as JSON: {source}")]
    Json {
        /// Which value.
        what: &'static str,
        /// The error.
        source: serde_json::Error,
    },
}

/// Milliseconds since the Unix epoch, the time unit of the database.
pub fn now_ms() -> i64 {
    system_time_ms(SystemTime::now())
}

/// A `SystemTime` in milliseconds since the Unix epoch (negative before it).
pub fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Milliseconds since the epoch back to a `SystemTime`.
pub fn ms_to_system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Opens (creating if needed) the database at `path` and brings its schema up to date. Used by
/// [`History::open`] and by [`crate::engine::seqnum::SeqnumTracker::open`], which share the file.
pub fn open_connection(path: &Path) -> Result<Connection, HistoryError> {
    let conn = Connection::open(path)?;
    prepare(conn)
}

fn prepare(mut conn: Connection) -> Result<Connection, HistoryError> {
    // Several connections (the engine, the UI, the CLI) may use the file at once: WAL lets
    // readers proceed during a write, and the busy timeout makes writers wait instead of failing.
    conn.busy_timeout(Duration::from_secs(5))?;
    // In-memory databases answer "memory" here; that is fine.
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), HistoryError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(HistoryError::TooNew { found });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // user_version cannot be bound as a parameter; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", version + 1))?;
        tx.commit()?;
        tracing::info!(version = version + 1, "history database migrated");
    }
    Ok(())
}

/// A change to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChange {
    /// The cap entry's id.
    pub cap_id: String,
    /// The slot's storage index.
    pub storage_index: StorageIndex,
    /// The new seqnum.
    pub seqnum: u64,
    /// Whether it happened while the client was away (seen on resubscribe).
    pub while_away: bool,
    /// One-line text, e.g. "Team Docs: added report.pdf, 2 more".
    pub summary: String,
    /// Structured details (e.g. the diff's names), as JSON.
    pub details: serde_json::Value,
    /// When it was observed, ms since the epoch.
    pub at_ms: i64,
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    /// Row id.
    pub id: i64,
    /// The cap entry's id.
    pub cap_id: String,
    /// The slot's storage index.
    pub storage_index: StorageIndex,
    /// The new seqnum.
    pub seqnum: u64,
    /// Whether it happened while away.
    pub while_away: bool,
    /// One-line text.
    pub summary: String,
    /// Structured details.
    pub details: serde_json::Value,
    /// When it was observed, ms since the epoch.
    pub at_ms: i64,
    /// Whether the user has seen it.
    pub read: bool,
}

/// A news message to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNews {
    /// The grid's name.
    pub grid: String,
    /// The message's file name in the news directory (unique per grid).
    pub name: String,
    /// Its title, if the front matter gave one.
    pub title: Option<String>,
    /// Its severity.
    pub severity: Severity,
    /// Its text (already sanitized by [`crate::news`]).
    pub body: String,
    /// When it stops being shown, ms since the epoch.
    pub expires_ms: Option<i64>,
    /// When it was seen, ms since the epoch.
    pub at_ms: i64,
}

/// A recorded news message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsRecord {
    /// Row id.
    pub id: i64,
    /// The grid's name.
    pub grid: String,
    /// The message's file name.
    pub name: String,
    /// Title.
    pub title: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// Text.
    pub body: String,
    /// Expiry, ms since the epoch.
    pub expires_ms: Option<i64>,
    /// When it was seen, ms since the epoch.
    pub at_ms: i64,
    /// Whether the user has seen it.
    pub read: bool,
}

/// Which changes to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    /// Only this cap's changes.
    pub cap_id: Option<String>,
    /// Only unread ones.
    pub unread_only: bool,
    /// At most this many (newest first); `None` = all.
    pub limit: Option<u32>,
}

/// Unread counts for badges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnreadCounts {
    /// Unread changes, all caps.
    pub changes: u64,
    /// Unread news messages.
    pub news: u64,
    /// Unread changes per cap id, sorted by cap id; caps with none are left out.
    pub by_cap: Vec<(String, u64)>,
}

/// The history database.
#[derive(Debug)]
pub struct History {
    conn: Connection,
}

impl History {
    /// Opens or creates the database at `path` (usually [`crate::store::paths::Paths::history_db`]).
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Ok(Self {
            conn: open_connection(path)?,
        })
    }

    /// A throwaway in-memory database (tests, dry runs).
    pub fn in_memory() -> Result<Self, HistoryError> {
        Ok(Self {
            conn: prepare(Connection::open_in_memory()?)?,
        })
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<u32, HistoryError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Records a change; returns its row id. A second change of one cap to one seqnum (other
    /// than 0, which polled changes carry) is refused with [`HistoryError::AlreadyRecorded`].
    pub fn insert_change(&self, change: &NewChange) -> Result<i64, HistoryError> {
        let details =
            serde_json::to_string(&change.details).map_err(|source| HistoryError::Json {
                what: "change details",
                source,
            })?;
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO changes
                 (cap_id, storage_index, seqnum, while_away, summary, details, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                change.cap_id,
                change.storage_index.to_base32(),
                seqnum_to_sql(change.seqnum),
                change.while_away,
                change.summary,
                details,
                change.at_ms,
            ],
        )?;
        if inserted == 0 {
            return Err(HistoryError::AlreadyRecorded {
                seqnum: change.seqnum,
            });
        }
        Ok(self.conn.last_insert_rowid())
    }

    /// Changes, newest first.
    pub fn list_changes(&self, filter: &ChangeFilter) -> Result<Vec<ChangeRecord>, HistoryError> {
        let limit = filter.limit.map_or(-1, i64::from);
        let mut stmt = self.conn.prepare(
            "SELECT id, cap_id, storage_index, seqnum, while_away, summary, details, at_ms, read
             FROM changes
             WHERE (?1 IS NULL OR cap_id = ?1) AND (?2 = 0 OR read = 0)
             ORDER BY at_ms DESC, id DESC
             LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![filter.cap_id, filter.unread_only, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, bool>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, cap_id, si, seqnum, while_away, summary, details, at_ms, read) = row?;
            out.push(ChangeRecord {
                id,
                cap_id,
                storage_index: si.parse().map_err(|_| HistoryError::BadValue {
                    what: "storage index",
                })?,
                seqnum: u64::try_from(seqnum)
                    .map_err(|_| HistoryError::BadValue { what: "seqnum" })?,
                while_away,
                summary,
                details: serde_json::from_str(&details).map_err(|_| HistoryError::BadValue {
                    what: "change details",
                })?,
                at_ms,
                read,
            });
        }
        Ok(out)
    }

    /// Records a news message; returns its row id, or `None` if this grid already has a message
    /// of that name (news is re-listed on every check; each message is recorded once).
    pub fn insert_news(&self, news: &NewNews) -> Result<Option<i64>, HistoryError> {
        let inserted = self.conn.execute(
            "INSERT INTO news (grid, name, title, severity, body, expires_ms, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (grid, name) DO NOTHING",
            params![
                news.grid,
                news.name,
                news.title,
                news.severity.as_str(),
                news.body,
                news.expires_ms,
                news.at_ms,
            ],
        )?;
        Ok((inserted == 1).then(|| self.conn.last_insert_rowid()))
    }

    /// News messages, newest first (by the time they were seen).
    pub fn list_news(
        &self,
        unread_only: bool,
        limit: Option<u32>,
    ) -> Result<Vec<NewsRecord>, HistoryError> {
        let limit = limit.map_or(-1, i64::from);
        let mut stmt = self.conn.prepare(
            "SELECT id, grid, name, title, severity, body, expires_ms, at_ms, read
             FROM news WHERE (?1 = 0 OR read = 0)
             ORDER BY at_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![unread_only, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, bool>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, grid, name, title, severity, body, expires_ms, at_ms, read) = row?;
            out.push(NewsRecord {
                id,
                grid,
                name,
                title,
                severity: severity
                    .parse()
                    .map_err(|_| HistoryError::BadValue { what: "severity" })?,
                body,
                expires_ms,
                at_ms,
                read,
            });
        }
        Ok(out)
    }

    /// A number that moves whenever another connection (another process, or the engine's own
    /// connection) has committed to the database since this one last asked: SQLite's
    /// `PRAGMA data_version`, which reads no table, so a face may ask it every second.
    pub fn data_version(&self) -> Result<i64, HistoryError> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// Unread counts, overall and per cap.
    pub fn unread_counts(&self) -> Result<UnreadCounts, HistoryError> {
        let news: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM news WHERE read = 0", [], |r| r.get(0))?;
        let mut stmt = self.conn.prepare(
            "SELECT cap_id, COUNT(*) FROM changes WHERE read = 0 GROUP BY cap_id ORDER BY cap_id",
        )?;
        let by_cap = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .map(|row| row.map(|(cap, n)| (cap, n.unsigned_abs())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UnreadCounts {
            changes: by_cap.iter().map(|(_, n)| n).sum(),
            news: news.unsigned_abs(),
            by_cap,
        })
    }

    /// Marks one change read; returns whether it existed.
    pub fn mark_change_read(&self, id: i64) -> Result<bool, HistoryError> {
        Ok(self
            .conn
            .execute("UPDATE changes SET read = 1 WHERE id = ?1", [id])?
            == 1)
    }

    /// Marks one news message read; returns whether it existed.
    pub fn mark_news_read(&self, id: i64) -> Result<bool, HistoryError> {
        Ok(self
            .conn
            .execute("UPDATE news SET read = 1 WHERE id = ?1", [id])?
            == 1)
    }

    /// Marks everything read: with `cap_id`, only that cap's changes; without, all changes and
    /// all news. Returns how many rows changed.
    pub fn mark_all_read(&self, cap_id: Option<&str>) -> Result<u64, HistoryError> {
        let n = match cap_id {
            Some(cap) => self.conn.execute(
                "UPDATE changes SET read = 1 WHERE read = 0 AND cap_id = ?1",
                [cap],
            )?,
            None => {
                self.conn
                    .execute("UPDATE changes SET read = 1 WHERE read = 0", [])?
                    + self
                        .conn
                        .execute("UPDATE news SET read = 1 WHERE read = 0", [])?
            }
        };
        Ok(n as u64)
    }

    /// Forgets a removed cap: its changes and its snapshot.
    pub fn forget_cap(&self, cap_id: &str) -> Result<(), HistoryError> {
        self.conn
            .execute("DELETE FROM changes WHERE cap_id = ?1", [cap_id])?;
        self.conn
            .execute("DELETE FROM snapshots WHERE cap_id = ?1", [cap_id])?;
        Ok(())
    }

    /// Stores the latest snapshot of a cap (replacing the previous one).
    pub fn save_snapshot(
        &self,
        cap_id: &str,
        snapshot: &crate::describe::snapshot::Snapshot,
    ) -> Result<(), HistoryError> {
        let text = serde_json::to_string(snapshot).map_err(|source| HistoryError::Json {
            what: "snapshot",
            source,
        })?;
        self.conn.execute(
            "INSERT INTO snapshots (cap_id, snapshot, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (cap_id) DO UPDATE SET snapshot = excluded.snapshot,
                                                updated_ms = excluded.updated_ms",
            params![cap_id, text, now_ms()],
        )?;
        Ok(())
    }

    /// The latest snapshot of a cap, if any.
    pub fn load_snapshot(
        &self,
        cap_id: &str,
    ) -> Result<Option<crate::describe::snapshot::Snapshot>, HistoryError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT snapshot FROM snapshots WHERE cap_id = ?1",
                [cap_id],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|_| HistoryError::BadValue { what: "snapshot" })
        })
        .transpose()
    }
}

/// SQLite integers are signed; seqnums are u64 but never near 2^63 in practice. Clamp rather
/// than wrap, so ordering stays right even for absurd values.
pub(crate) fn seqnum_to_sql(seqnum: u64) -> i64 {
    i64::try_from(seqnum).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn si(n: u8) -> StorageIndex {
        StorageIndex::from_bytes([n; 16])
    }

    fn change(cap: &str, seqnum: u64, at_ms: i64) -> NewChange {
        NewChange {
            cap_id: cap.into(),
            storage_index: si(1),
            seqnum,
            while_away: false,
            summary: format!("{cap}: changed"),
            details: json!({"added": ["a.txt"]}),
            at_ms,
        }
    }

    fn news(name: &str, at_ms: i64) -> NewNews {
        NewNews {
            grid: "Bob's Grid".into(),
            name: name.into(),
            title: Some("Maintenance".into()),
            severity: Severity::Warning,
            body: "Down on Sunday.".into(),
            expires_ms: Some(at_ms + 1000),
            at_ms,
        }
    }

    #[test]
    fn empty_file_is_migrated_to_current_schema() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("h.sqlite3");
        std::fs::write(&path, b"").unwrap();
        let h = History::open(&path).unwrap();
        assert_eq!(h.schema_version().unwrap(), SCHEMA_VERSION);
        drop(h);
        // Reopening does not migrate again.
        let h = History::open(&path).unwrap();
        assert_eq!(h.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(h.list_changes(&ChangeFilter::default()).unwrap().is_empty());
    }

    #[test]
    fn the_data_version_moves_only_when_another_connection_commits() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("h.sqlite3");
        let face = History::open(&path).unwrap();
        let engine = History::open(&path).unwrap();
        let before = face.data_version().unwrap();
        assert_eq!(face.data_version().unwrap(), before, "nobody wrote");
        engine.insert_change(&change("cap-a", 2, 1_000)).unwrap();
        let after = face.data_version().unwrap();
        assert_ne!(after, before, "the engine's commit is seen");
        assert_eq!(face.data_version().unwrap(), after);
    }

    #[test]
    fn newer_schema_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("h.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        let err = History::open(&path).unwrap_err();
        assert!(matches!(err, HistoryError::TooNew { found: 99 }));
        assert!(err.to_string().contains("upgrade"));
    }

    #[test]
    fn changes_round_trip_newest_first_with_filter() {
        let h = History::in_memory().unwrap();
        let a1 = h.insert_change(&change("cap-a", 2, 100)).unwrap();
        let b1 = h.insert_change(&change("cap-b", 5, 300)).unwrap();
        let a2 = h.insert_change(&change("cap-a", 3, 200)).unwrap();
        let all = h.list_changes(&ChangeFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![b1, a2, a1]
        );
        assert_eq!(all[0].seqnum, 5);
        assert_eq!(all[0].storage_index, si(1));
        assert_eq!(all[0].details, json!({"added": ["a.txt"]}));
        assert!(!all[0].read);
        let only_a = h
            .list_changes(&ChangeFilter {
                cap_id: Some("cap-a".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            only_a.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![a2, a1]
        );
        let limited = h
            .list_changes(&ChangeFilter {
                limit: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(limited.len(), 1);
    }

    #[test]
    fn same_time_orders_by_insertion() {
        let h = History::in_memory().unwrap();
        let first = h.insert_change(&change("cap-a", 2, 100)).unwrap();
        let second = h.insert_change(&change("cap-a", 3, 100)).unwrap();
        let all = h.list_changes(&ChangeFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![second, first]
        );
    }

    #[test]
    fn unread_counts_and_marking() {
        let h = History::in_memory().unwrap();
        let a1 = h.insert_change(&change("cap-a", 2, 100)).unwrap();
        h.insert_change(&change("cap-a", 3, 200)).unwrap();
        h.insert_change(&change("cap-b", 5, 300)).unwrap();
        let n1 = h
            .insert_news(&news("2025-01-01T00:00:00.000000.txt", 50))
            .unwrap()
            .unwrap();
        h.insert_news(&news("2025-01-02T00:00:00.000000.txt", 60))
            .unwrap();

        let counts = h.unread_counts().unwrap();
        assert_eq!(counts.changes, 3);
        assert_eq!(counts.news, 2);
        assert_eq!(
            counts.by_cap,
            vec![("cap-a".into(), 2), ("cap-b".into(), 1)]
        );

        assert!(h.mark_change_read(a1).unwrap());
        assert!(!h.mark_change_read(9999).unwrap());
        assert!(h.mark_news_read(n1).unwrap());
        let counts = h.unread_counts().unwrap();
        assert_eq!((counts.changes, counts.news), (2, 1));
        let unread = h
            .list_changes(&ChangeFilter {
                unread_only: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(unread.len(), 2);

        assert_eq!(h.mark_all_read(Some("cap-a")).unwrap(), 1);
        assert_eq!(h.unread_counts().unwrap().by_cap, vec![("cap-b".into(), 1)]);
        assert_eq!(h.mark_all_read(None).unwrap(), 2);
        assert_eq!(h.unread_counts().unwrap(), UnreadCounts::default());
    }

    #[test]
    fn news_is_recorded_once_per_grid_and_name() {
        let h = History::in_memory().unwrap();
        let n = news("2025-01-01T00:00:00.000000.txt", 50);
        assert!(h.insert_news(&n).unwrap().is_some());
        assert!(h.insert_news(&n).unwrap().is_none());
        let other_grid = NewNews {
            grid: "Other".into(),
            ..n.clone()
        };
        assert!(h.insert_news(&other_grid).unwrap().is_some());
        h.insert_news(&news("2025-01-03T00:00:00.000000.txt", 70))
            .unwrap();
        let listed = h.list_news(false, None).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].name, "2025-01-03T00:00:00.000000.txt");
        assert_eq!(listed[0].severity, Severity::Warning);
        assert_eq!(listed[0].title.as_deref(), Some("Maintenance"));
        assert_eq!(listed[0].expires_ms, Some(1070));
        assert_eq!(h.list_news(true, Some(1)).unwrap().len(), 1);
    }

    #[test]
    fn forget_cap_removes_its_rows() {
        let h = History::in_memory().unwrap();
        h.insert_change(&change("cap-a", 2, 100)).unwrap();
        h.insert_change(&change("cap-b", 2, 100)).unwrap();
        h.forget_cap("cap-a").unwrap();
        let all = h.list_changes(&ChangeFilter::default()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].cap_id, "cap-b");
    }

    #[test]
    fn history_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("h.sqlite3");
        History::open(&path)
            .unwrap()
            .insert_change(&change("cap-a", 7, 1))
            .unwrap();
        let h = History::open(&path).unwrap();
        assert_eq!(
            h.list_changes(&ChangeFilter::default()).unwrap()[0].seqnum,
            7
        );
    }

    #[test]
    fn time_helpers_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(system_time_ms(t), 1_700_000_000_123);
        assert_eq!(ms_to_system_time(1_700_000_000_123), t);
        assert_eq!(system_time_ms(ms_to_system_time(-5)), -5);
        assert!(now_ms() > 1_600_000_000_000);
    }
}
