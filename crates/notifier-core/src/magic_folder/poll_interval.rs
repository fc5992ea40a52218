//! A longer magic-folder poll interval for linked folders: what it saves, and how to set it.
//!
//! magic-folder 24.3.0 has no API or CLI to change a folder's poll interval once the folder
//! exists: `--poll-interval` is taken only by `magic-folder add` and `magic-folder join`, and
//! kept in the `config` table of the folder's `state.sqlite`. Leaving and re-adding a folder
//! would make a new personal directory and collective (the other participants would have to
//! invite us again), so that is no way to change it. What [`apply`] does instead, only with
//! the user's consent and only while the daemon is stopped, is update that one column — the
//! value `add --poll-interval` would have written. The daemon reads it when it starts.
//!
//! The poll stays as a safety net (a missed push, an updates server down): with the bridge a
//! change is fetched within seconds, so the poll is rarely what fetches it.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use thiserror::Error;

/// The interval suggested for linked folders: one safety-net poll an hour.
pub const SUGGESTED_POLL_INTERVAL_SECS: u64 = 3600;

/// Gateway bytes one personal-directory read costs in a poll, measured on the test grid
/// (SDMF directory of a few entries, 3 storage nodes, k=2 of N=3; see
/// `docs/magic-folder.md`). A poll reads the collective and every other participant's
/// personal directory; a directory with many files costs more.
pub const MEASURED_BYTES_PER_DIRECTORY_READ: u64 = 11_000;

/// What polling costs at the current and the suggested interval.
#[derive(Debug, Clone, PartialEq)]
pub struct PollCost {
    /// Directory reads per poll: the collective plus every other participant.
    pub reads_per_poll: u64,
    /// Current interval, seconds.
    pub current_secs: u64,
    /// Suggested interval, seconds.
    pub suggested_secs: u64,
    /// Polls per hour now.
    pub polls_per_hour_now: f64,
    /// Polls per hour at the suggested interval.
    pub polls_per_hour_suggested: f64,
    /// Estimated bytes per hour now.
    pub bytes_per_hour_now: u64,
    /// Estimated bytes per hour at the suggested interval.
    pub bytes_per_hour_suggested: u64,
}

impl PollCost {
    /// The cost for a folder with `other_participants` polled every `current_secs`, against
    /// `suggested_secs`, at `bytes_per_read` per directory read.
    pub fn estimate(
        other_participants: u64,
        current_secs: u64,
        suggested_secs: u64,
        bytes_per_read: u64,
    ) -> PollCost {
        let reads_per_poll = other_participants + 1;
        let per_hour = |secs: u64| 3600.0 / secs.max(1) as f64;
        let bytes = |secs: u64| {
            let polls = per_hour(secs);
            (polls * (reads_per_poll * bytes_per_read) as f64).round() as u64
        };
        PollCost {
            reads_per_poll,
            current_secs,
            suggested_secs,
            polls_per_hour_now: per_hour(current_secs),
            polls_per_hour_suggested: per_hour(suggested_secs),
            bytes_per_hour_now: bytes(current_secs),
            bytes_per_hour_suggested: bytes(suggested_secs),
        }
    }

    /// Bytes per hour saved by the suggested interval.
    pub fn bytes_per_hour_saved(&self) -> u64 {
        self.bytes_per_hour_now
            .saturating_sub(self.bytes_per_hour_suggested)
    }
}

/// Why the interval could not be changed.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The daemon runs: it would overwrite nothing, but would not see the change either, and
    /// writing under a running daemon's feet is not something to do.
    #[error(
        "the magic-folder daemon of {} is running: stop it first, then run this again, then \
         start it (`magic-folder --config {} run`)", dir.display(), dir.display()
    )]
    DaemonRunning {
        /// Its config directory.
        dir: PathBuf,
    },
    /// No such folder in the daemon's `global.sqlite`.
    #[error("the magic-folder config in {} has no folder named {folder:?}", dir.display())]
    UnknownFolder {
        /// Its config directory.
        dir: PathBuf,
        /// The folder.
        folder: String,
    },
    /// The database is not laid out as magic-folder 24.3.0 lays it out.
    #[error(
        "{} is not laid out as magic-folder 24.3.0 writes it ({reason}); set the interval when \
         adding the folder instead (`magic-folder add --poll-interval N`)", path.display()
    )]
    UnexpectedSchema {
        /// The database.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// SQLite failed.
    #[error("cannot update {}: {source}", path.display())]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// Zero seconds.
    #[error("the poll interval must be at least 1 second")]
    Zero,
}

/// Whether the daemon of `config_dir` runs: its `api_client_endpoint` names an endpoint (it
/// writes `not running` when it stops).
pub fn daemon_running(config_dir: &Path) -> bool {
    std::fs::read_to_string(config_dir.join("api_client_endpoint"))
        .map(|text| {
            let text = text.trim();
            !text.is_empty() && text != "not running"
        })
        .unwrap_or(false)
}

/// Sets `folder`'s poll interval to `seconds` in the stopped daemon's state database (see the
/// module docs). Returns the previous interval.
pub fn apply(config_dir: &Path, folder: &str, seconds: u64) -> Result<u64, ApplyError> {
    if seconds == 0 {
        return Err(ApplyError::Zero);
    }
    if daemon_running(config_dir) {
        return Err(ApplyError::DaemonRunning {
            dir: config_dir.to_owned(),
        });
    }
    let global_path = config_dir.join("global.sqlite");
    let sqlite = |path: &Path| {
        let path = path.to_owned();
        move |source| ApplyError::Sqlite { path, source }
    };
    let global = Connection::open_with_flags(&global_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(&global_path))?;
    let location: Option<String> = global
        .query_row(
            "SELECT location FROM magic_folders WHERE name = ?1",
            [folder],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| ApplyError::UnexpectedSchema {
            path: global_path.clone(),
            reason: e.to_string(),
        })?;
    let location = location.ok_or_else(|| ApplyError::UnknownFolder {
        dir: config_dir.to_owned(),
        folder: folder.to_owned(),
    })?;
    let state_path = Path::new(&location).join("state.sqlite");
    let state = Connection::open_with_flags(&state_path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(sqlite(&state_path))?;
    let rows: i64 = state
        .query_row("SELECT count(*) FROM config", [], |row| row.get(0))
        .map_err(|e| ApplyError::UnexpectedSchema {
            path: state_path.clone(),
            reason: e.to_string(),
        })?;
    if rows != 1 {
        return Err(ApplyError::UnexpectedSchema {
            path: state_path,
            reason: format!("{rows} rows in its config table instead of 1"),
        });
    }
    let previous: i64 = state
        .query_row("SELECT poll_interval FROM config", [], |row| row.get(0))
        .map_err(|e| ApplyError::UnexpectedSchema {
            path: state_path.clone(),
            reason: e.to_string(),
        })?;
    let seconds_sql = i64::try_from(seconds).map_err(|_| ApplyError::Zero)?;
    state
        .execute("UPDATE config SET poll_interval = ?1", [seconds_sql])
        .map_err(sqlite(&state_path))?;
    Ok(u64::try_from(previous).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_hourly_poll_costs_a_sixtieth_of_the_default() {
        let cost = PollCost::estimate(1, 60, 3600, 16_000);
        assert_eq!(cost.reads_per_poll, 2);
        assert_eq!(cost.bytes_per_hour_now, 60 * 2 * 16_000);
        assert_eq!(cost.bytes_per_hour_suggested, 2 * 16_000);
        assert_eq!(cost.bytes_per_hour_saved(), 59 * 2 * 16_000);
    }

    #[test]
    fn apply_edits_a_stopped_daemons_folder_and_refuses_a_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("folder-x");
        std::fs::create_dir(&state_dir).unwrap();
        let global = Connection::open(dir.path().join("global.sqlite")).unwrap();
        global
            .execute_batch("CREATE TABLE magic_folders (name TEXT PRIMARY KEY, location TEXT);")
            .unwrap();
        global
            .execute(
                "INSERT INTO magic_folders VALUES ('Shared', ?1)",
                [state_dir.to_str().unwrap()],
            )
            .unwrap();
        let state = Connection::open(state_dir.join("state.sqlite")).unwrap();
        state
            .execute_batch(
                "CREATE TABLE config (author_name TEXT PRIMARY KEY, poll_interval INTEGER NOT NULL,
                 scan_interval INTEGER); INSERT INTO config VALUES ('bob', 60, 60);",
            )
            .unwrap();
        std::fs::write(dir.path().join("api_client_endpoint"), "tcp:127.0.0.1:1\n").unwrap();
        assert!(matches!(
            apply(dir.path(), "Shared", 3600),
            Err(ApplyError::DaemonRunning { .. })
        ));
        std::fs::write(dir.path().join("api_client_endpoint"), "not running\n").unwrap();
        assert!(matches!(
            apply(dir.path(), "Other", 3600),
            Err(ApplyError::UnknownFolder { .. })
        ));
        assert_eq!(apply(dir.path(), "Shared", 3600).unwrap(), 60);
        let now: i64 = state
            .query_row("SELECT poll_interval FROM config", [], |r| r.get(0))
            .unwrap();
        assert_eq!(now, 3600);
    }
}
