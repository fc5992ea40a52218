//! The Activity and News pages: the recorded changes and news, read state.

use notifier_core::history::ChangeFilter;
use serde::Serialize;
use serde_json::Value;
use tauri::AppHandle;

use super::{changed, CommandError, Result, Shared};

/// One change as the Activity page shows it.
#[derive(Debug, Serialize)]
pub struct ChangeView {
    id: i64,
    cap_id: String,
    label: String,
    summary: String,
    details: Value,
    at_ms: i64,
    read: bool,
    while_away: bool,
}

/// The history, newest first, optionally of one cap or unread only.
#[tauri::command(async)]
pub fn list_changes(
    core: Shared<'_>,
    cap_id: Option<String>,
    unread_only: Option<bool>,
) -> Result<Vec<ChangeView>> {
    let labels: std::collections::HashMap<String, String> = core
        .caps
        .list()?
        .into_iter()
        .map(|e| (e.id, e.label))
        .collect();
    let records = core.history().list_changes(&ChangeFilter {
        cap_id,
        unread_only: unread_only.unwrap_or(false),
        limit: Some(500),
    })?;
    Ok(records
        .into_iter()
        .map(|r| ChangeView {
            label: labels
                .get(&r.cap_id)
                .cloned()
                .unwrap_or_else(|| "(removed)".to_owned()),
            id: r.id,
            cap_id: r.cap_id,
            summary: r.summary,
            details: r.details,
            at_ms: r.at_ms,
            read: r.read,
            while_away: r.while_away,
        })
        .collect())
}

/// One news item for the News page.
#[derive(Debug, Serialize)]
pub struct NewsView {
    id: i64,
    grid: String,
    name: String,
    title: String,
    severity: String,
    body: String,
    at_ms: i64,
    expires_ms: Option<i64>,
    read: bool,
}

/// Operator news, newest first, without expired items.
#[tauri::command(async)]
pub fn list_news(core: Shared<'_>) -> Result<Vec<NewsView>> {
    let now = notifier_core::history::now_ms();
    let records = core.history().list_news(false, Some(200))?;
    Ok(records
        .into_iter()
        .filter(|n| n.expires_ms.is_none_or(|e| e > now))
        .map(|n| NewsView {
            title: n.title.clone().unwrap_or_else(|| {
                n.body
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("News")
                    .to_owned()
            }),
            id: n.id,
            grid: n.grid,
            name: n.name,
            severity: n.severity.to_string(),
            body: n.body,
            at_ms: n.at_ms,
            expires_ms: n.expires_ms,
            read: n.read,
        })
        .collect())
}

/// Marks one change read.
#[tauri::command(async)]
pub fn mark_change_read(app: AppHandle, core: Shared<'_>, id: i64) -> Result<()> {
    core.history().mark_change_read(id)?;
    changed(&app, &core);
    Ok(())
}

/// Marks one news item read.
#[tauri::command(async)]
pub fn mark_news_read(app: AppHandle, core: Shared<'_>, id: i64) -> Result<()> {
    core.history().mark_news_read(id)?;
    changed(&app, &core);
    Ok(())
}

/// Marks everything read (or everything of one cap).
#[tauri::command(async)]
pub fn mark_all_read(app: AppHandle, core: Shared<'_>, cap_id: Option<String>) -> Result<u64> {
    let marked = core
        .notifier()
        .mark_all_read(cap_id.as_deref())
        .map_err(CommandError::new)?;
    changed(&app, &core);
    Ok(marked)
}
