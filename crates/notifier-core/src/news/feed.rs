//! Reading and publishing a grid's operator news through the gateway.
//!
//! The grid's news cap names a directory whose child [`NEWS_DIR_V1`] holds one file per message
//! (see [`crate::news`]). A refresh lists `v1`, fetches only the files the history does not have
//! yet, records them and returns them oldest first. A [`NEWS_DIR_V2`] child (or a news directory
//! with something in it but no `v1`) means the operator publishes in a format this version does
//! not read: the caller should say that an upgrade is needed.
//!
//! A new message changes `v1`, not the root, so a push client subscribes to both storage
//! indexes: [`NewsRefresh::v1_storage_index`] gives the second one.

use std::collections::HashSet;

use tahoe_caps::{Cap, StorageIndex};
use thiserror::Error;
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::describe::text::clean_line;
use crate::history::{History, HistoryError, NewNews};
use crate::net::gateway::{Gateway, GatewayError};
use crate::news::{
    self, message_file_name, parse_message_file_name, NewsDraft, NewsError, NewsMessage,
    NEWS_DIR_V1, NEWS_DIR_V2,
};

/// Largest news file fetched. Longer files are skipped (a message keeps at most
/// [`news::MAX_MESSAGE_BYTES`] anyway; a file this much larger is not a message).
pub const MAX_NEWS_FILE_BYTES: usize = 1024 * 1024;

/// Why news could not be read or published.
#[derive(Debug, Error)]
pub enum NewsFeedError {
    /// The gateway call failed.
    #[error("{0}")]
    Gateway(#[from] GatewayError),
    /// The history database failed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The news cap is not a directory cap.
    #[error("the grid's news cap is not a directory cap")]
    NotADirectory,
    /// The `v1` child of the news directory is a file, not a directory.
    #[error("the grid's news directory has a `v1` that is not a directory")]
    V1NotADirectory,
    /// Publishing needs the news directory's write-cap.
    #[error("publishing news needs the news directory's write-cap, not a read-cap")]
    ReadOnly,
    /// The draft could not be rendered.
    #[error(transparent)]
    Draft(#[from] NewsError),
}

/// What a refresh found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewsRefresh {
    /// Messages recorded for the first time, oldest first (by file name), not yet expired.
    pub new_messages: Vec<NewsMessage>,
    /// Messages recorded for the first time that had already expired: stored in the history
    /// (with their expiry) but not to be shown as new.
    pub expired_messages: Vec<NewsMessage>,
    /// The operator publishes in a newer format ("this grid's news needs a newer Tahoe
    /// Notifier").
    pub upgrade_required: bool,
    /// The storage index of `v1`, to subscribe to (new messages change it, not the root).
    pub v1_storage_index: Option<StorageIndex>,
    /// The fingerprint of `v1`'s own verification key (a directory of its own, with its own
    /// key), to check its slot proofs with.
    pub v1_fingerprint: Option<[u8; 32]>,
}

/// One grid's news feed.
#[derive(Debug, Clone)]
pub struct NewsFeed {
    grid: String,
    news_cap: Cap,
    /// Files that are not messages (binary, too large): not fetched again on every refresh.
    skipped: HashSet<String>,
}

impl NewsFeed {
    /// The feed of grid `grid` (its name in the history) read through `news_cap` (a directory
    /// read-cap; a write-cap works too and is only used to read).
    pub fn new(grid: impl Into<String>, news_cap: Cap) -> NewsFeed {
        NewsFeed {
            grid: grid.into(),
            news_cap: news_cap.read_only(),
            skipped: HashSet::new(),
        }
    }

    /// The grid's name.
    pub fn grid(&self) -> &str {
        &self.grid
    }

    /// The storage index of the news directory's root (subscribe to it too).
    pub fn root_storage_index(&self) -> Option<StorageIndex> {
        self.news_cap.storage_index()
    }

    /// Lists the news directory, fetches and records the messages not yet in `history`, and
    /// returns them (see [`NewsRefresh`]). Each message is returned by exactly one refresh.
    pub async fn refresh(
        &mut self,
        gateway: &Gateway,
        history: &History,
    ) -> Result<NewsRefresh, NewsFeedError> {
        if !self.news_cap.is_directory() {
            return Err(NewsFeedError::NotADirectory);
        }
        let root = gateway.list_children_caps(&self.news_cap).await?;
        let has_v2 = root.iter().any(|(name, _)| name == NEWS_DIR_V2);
        let v1 = root
            .iter()
            .find(|(name, _)| name == NEWS_DIR_V1)
            .map(|(_, cap)| cap.clone());
        let mut out = NewsRefresh {
            upgrade_required: has_v2 || (v1.is_none() && !root.is_empty()),
            ..NewsRefresh::default()
        };
        let Some(v1) = v1 else {
            return Ok(out);
        };
        if !v1.is_directory() {
            return Err(NewsFeedError::V1NotADirectory);
        }
        out.v1_storage_index = v1.storage_index();
        out.v1_fingerprint = v1.fingerprint();

        let known: HashSet<String> = history
            .list_news(false, None)?
            .into_iter()
            .filter(|r| r.grid == self.grid)
            .map(|r| r.name)
            .collect();
        let now = OffsetDateTime::now_utc();
        // Sorted by name: the publication order.
        for (name, cap) in gateway.list_children_caps(&v1).await? {
            if known.contains(&name) || self.skipped.contains(&name) {
                continue;
            }
            if cap.is_directory() {
                tracing::debug!(grid = %self.grid, name = %clean_line(&name, 100), "directory in news v1 ignored");
                self.skipped.insert(name);
                continue;
            }
            let raw = match gateway.read(&cap, MAX_NEWS_FILE_BYTES).await {
                Ok(raw) => raw,
                Err(GatewayError::TooLarge { .. }) => {
                    tracing::warn!(grid = %self.grid, name = %clean_line(&name, 100), "news file too large; ignored");
                    self.skipped.insert(name);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let message = match news::parse_message(&name, &raw) {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(grid = %self.grid, %error, "news file ignored");
                    self.skipped.insert(name);
                    continue;
                }
            };
            let record = NewNews {
                grid: self.grid.clone(),
                name: message.name.clone(),
                title: message.title.clone(),
                severity: message.severity,
                body: message.body.clone(),
                expires_ms: message.expires.map(to_ms),
                at_ms: crate::history::now_ms(),
            };
            if history.insert_news(&record)?.is_none() {
                // Recorded meanwhile by another refresh (another process): not new.
                continue;
            }
            if message.is_expired(now) {
                out.expired_messages.push(message);
            } else {
                out.new_messages.push(message);
            }
        }
        Ok(out)
    }
}

fn to_ms(t: OffsetDateTime) -> i64 {
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

/// Publishes `draft` into the news directory `news_write_cap` (creating `v1` on first use, in
/// the directory's own format) as a file named by [`message_file_name`]; returns the file name.
///
/// The name is the current UTC time, or just after the newest existing message when the clock
/// is behind it: readers take the last name as the newest message.
pub async fn publish(
    gateway: &Gateway,
    news_write_cap: &Cap,
    draft: &NewsDraft,
) -> Result<String, NewsFeedError> {
    if !news_write_cap.is_directory() {
        return Err(NewsFeedError::NotADirectory);
    }
    if news_write_cap.is_readonly() {
        return Err(NewsFeedError::ReadOnly);
    }
    let text = news::render_message(draft)?;
    let latest = match gateway.child_cap(news_write_cap, NEWS_DIR_V1).await? {
        None => {
            gateway.mkdir_child(news_write_cap, NEWS_DIR_V1).await?;
            tracing::info!("news directory v1 created");
            None
        }
        Some(v1) if !v1.is_directory() => return Err(NewsFeedError::V1NotADirectory),
        Some(v1) => gateway
            .list_children_caps(&v1)
            .await?
            .into_iter()
            .filter_map(|(name, _)| parse_message_file_name(&name))
            .max(),
    };
    let name = message_file_name(next_name_time(OffsetDateTime::now_utc(), latest));
    gateway
        .put_file_at(news_write_cap, &[NEWS_DIR_V1, &name], text.as_bytes())
        .await?;
    tracing::info!(name = %name, "news message published");
    Ok(name)
}

/// `now`, or one microsecond after `latest` when that is not earlier.
fn next_name_time(now: OffsetDateTime, latest: Option<OffsetDateTime>) -> OffsetDateTime {
    match latest {
        Some(latest) if latest >= now => latest + TimeDuration::microseconds(1),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn names_move_forward_past_the_latest() {
        let now = datetime!(2025-06-01 12:00 UTC);
        assert_eq!(next_name_time(now, None), now);
        assert_eq!(
            next_name_time(now, Some(datetime!(2025-05-01 0:00 UTC))),
            now
        );
        let ahead = datetime!(2025-06-02 0:00 UTC);
        assert_eq!(
            message_file_name(next_name_time(now, Some(ahead))),
            "2025-06-02T00:00:00.000001.txt"
        );
    }

    #[test]
    fn expiry_in_ms() {
        assert_eq!(to_ms(datetime!(1970-01-01 0:00:01 UTC)), 1000);
        assert_eq!(to_ms(datetime!(1969-12-31 23:59:59 UTC)), -1000);
    }

    #[tokio::test]
    async fn publishing_needs_a_write_cap_and_a_good_draft() {
        let g = Gateway::new("http://127.0.0.1:9/").unwrap();
        let rw = Cap::parse(
            "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a",
        )
        .unwrap();
        let draft = NewsDraft {
            body: "hello".into(),
            ..NewsDraft::default()
        };
        assert!(matches!(
            publish(&g, &rw.read_only(), &draft).await,
            Err(NewsFeedError::ReadOnly)
        ));
        assert!(matches!(
            publish(&g, &rw, &NewsDraft::default()).await,
            Err(NewsFeedError::Draft(NewsError::BadBody))
        ));
    }
}
