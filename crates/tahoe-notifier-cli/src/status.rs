//! `tahoe-notifier status`: the stored state at a glance: grids, gateway, servers, caps with
//! their mute flags and unread counts, and whether the keyring works.
//!
//! This shows what is configured, not what is reachable on the network: probing the updates
//! servers and the gateway belongs to the engine (and `watch`), which can add its findings
//! beside these sections.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use notifier_core::ids;
use notifier_core::store::caps::CapStoreError;
use notifier_core::store::config::CapEntry;
use notifier_core::store::keyring::{SecretError, SecretStore};
use serde_json::{json, Value};

use crate::caps::entry_json;
use crate::context::Context;
use crate::output::{print_json, print_text, shown, table};
use crate::servers::{grid_json, server_json, server_table};
use notifier_core::grid::tahoe_node::NodeDir;

/// Show the configured grids, gateway, updates servers and caps (with mute flags and unread
/// counts) and whether the keyring is reachable. Does not contact any server.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// A local Tahoe node directory (default: ~/.tahoe if it exists), for its gateway URL and
    /// storage-server nicknames.
    #[arg(long, value_name = "DIR")]
    node_dir: Option<PathBuf>,
}

/// Whether the keyring answers, and what is wrong if not.
#[derive(Debug)]
struct KeyringState {
    reachable: bool,
    problem: Option<String>,
}

/// Whether a cap's secret is in the keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretState {
    Present,
    Missing,
    Damaged,
    Unknown,
}

impl SecretState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Missing => "missing",
            Self::Damaged => "damaged",
            Self::Unknown => "unknown",
        }
    }
}

/// Runs `status`.
pub fn run(ctx: &Context, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    // Asked before any thread exists (the time crate refuses after).
    let local_offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let config = ctx
        .config_file()
        .load()
        .context("cannot read the configuration")?;
    let node = NodeDir::find(args.node_dir.as_deref())?;
    let (node_gateway, announced) = match &node {
        Some(node) => (node.gateway_url()?, node.storage_announcements()?),
        None => (None, Vec::new()),
    };
    let unread = match ctx.existing_history()? {
        Some(history) => Some(
            history
                .unread_counts()
                .context("cannot count the unread changes")?,
        ),
        None => None,
    };
    let unread_by_cap: HashMap<&str, u64> = unread
        .as_ref()
        .map(|u| u.by_cap.iter().map(|(id, n)| (id.as_str(), *n)).collect())
        .unwrap_or_default();
    let secrets = ctx.secrets();
    let keyring = probe_keyring(secrets.as_ref());
    // Checking each cap's keyring entry tells a user of keyutils, after a reboot, which caps
    // must be added again; when the keyring is unreachable every answer would be the same error.
    let store = ctx.cap_store();
    let secret_states: Vec<SecretState> = config
        .caps
        .iter()
        .map(|cap| {
            if keyring.reachable {
                secret_state(&store, cap)
            } else {
                SecretState::Unknown
            }
        })
        .collect();

    let live = crate::running::host_state(ctx.paths()).unwrap_or_else(|error| {
        tracing::warn!(error = %format!("{error:#}"), "the running engine did not answer");
        None
    });

    if ctx.json() {
        let caps: Vec<Value> = config
            .caps
            .iter()
            .zip(&secret_states)
            .map(|(cap, state)| {
                let mut value = entry_json(cap);
                value["unread"] = json!(unread_by_cap.get(cap.id.as_str()).copied().unwrap_or(0));
                value["secret"] = json!(state.as_str());
                value
            })
            .collect();
        print_json(&json!({
            "config_file": ctx.paths().config_file().display().to_string(),
            "history_file": ctx.paths().history_db().display().to_string(),
            "keyring": {
                "backend": ctx.backend().as_str(),
                "reachable": keyring.reachable,
                "problem": keyring.problem,
                "warning": ctx.backend().warning(),
            },
            "node_dir": node.as_ref().map(|n| n.path().display().to_string()),
            "node_gateway_url": node_gateway,
            "grids": config.grids.iter().map(grid_json).collect::<Vec<_>>(),
            "servers": config.servers.iter().map(|s| server_json(s, &announced)).collect::<Vec<_>>(),
            "caps": caps,
            "unread": {
                "changes": unread.as_ref().map_or(0, |u| u.changes),
                "news": unread.as_ref().map_or(0, |u| u.news),
            },
            "running": live.as_ref().map(live_json),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut text = String::new();
    text.push_str(&format!(
        "config:   {}\nhistory:  {}{}\n",
        ctx.paths().config_file().display(),
        ctx.paths().history_db().display(),
        if unread.is_none() {
            " (nothing recorded yet)"
        } else {
            ""
        }
    ));
    text.push_str(&format!(
        "keyring:  {} ({})\n",
        ctx.backend(),
        match &keyring.problem {
            None => "reachable".to_owned(),
            Some(problem) => format!("NOT reachable: {problem}"),
        }
    ));

    text.push_str("\ngrids:\n");
    if config.grids.is_empty() {
        text.push_str("  none imported (tahoe-notifier servers import <grid-file.json>)\n");
    }
    for grid in &config.grids {
        text.push_str(&format!(
            "  {}: gateway {}{}\n",
            shown(&grid.name),
            shown(&grid.gateway_url),
            if grid.news_id.is_some() {
                ", with news"
            } else {
                ""
            }
        ));
    }
    if let Some(node) = &node {
        text.push_str(&format!(
            "  local Tahoe node {}: gateway {}\n",
            node.path().display(),
            node_gateway
                .as_deref()
                .map_or_else(|| "unknown (no node.url)".to_owned(), shown)
        ));
    }

    text.push_str("\nupdates servers:\n");
    if config.servers.is_empty() {
        text.push_str("  none\n");
    } else {
        text.push_str(&indent(&server_table(&config.servers, &announced)));
    }

    text.push_str("\ncaps:\n");
    if config.caps.is_empty() {
        text.push_str("  none watched (tahoe-notifier caps add)\n");
    } else {
        let rows: Vec<Vec<String>> = config
            .caps
            .iter()
            .zip(&secret_states)
            .map(|(cap, state)| {
                vec![
                    cap.id.clone(),
                    if cap.muted { "muted" } else { "-" }.to_owned(),
                    unread_by_cap
                        .get(cap.id.as_str())
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                    state.as_str().to_owned(),
                    shown(&cap.label),
                ]
            })
            .collect();
        text.push_str(&indent(&table(
            &["ID", "MUTED", "UNREAD", "IN KEYRING", "LABEL"],
            &rows,
        )));
        if secret_states.contains(&SecretState::Missing) {
            text.push_str(
                "  caps missing from the keyring must be removed and added again (keyutils \
                 forgets everything at reboot)\n",
            );
        }
    }
    if let Some(unread) = &unread {
        text.push_str(&format!(
            "\nunread: {} changes, {} news\n",
            unread.changes, unread.news
        ));
    }
    text.push_str(&live_text(live.as_ref(), &config.caps, local_offset));
    print_text(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The running engine's view, for `--json`.
fn live_json(state: &notifier_core::host::HostState) -> Value {
    json!({
        "servers": state.live.servers.values().map(|s| json!({
            "id": s.id, "name": s.name, "state": s.state, "last_error": s.last_error,
        })).collect::<Vec<_>>(),
        "caps": state.live.caps.iter().map(|(id, c)| (id.clone(), json!({
            "subscribed_on": c.subscribed_on, "servers": c.servers, "polling": c.polling,
        }))).collect::<serde_json::Map<_, _>>(),
        "paused_until": state.live.paused_until.map(|u| u.unix_timestamp()),
        "keyring_problem": state.live.keyring_problem.as_ref().map(|p| p.message.clone()),
    })
}

/// The running engine's view, in words: which servers are connected and where each cap is
/// subscribed.
fn live_text(
    state: Option<&notifier_core::host::HostState>,
    caps: &[CapEntry],
    local_offset: time::UtcOffset,
) -> String {
    let Some(state) = state else {
        return "\nengine: not running (tahoe-notifier watch, or the tray app, runs it)\n"
            .to_owned();
    };
    let mut text = String::from("\nengine: running\n");
    if let Some(until) = state.live.paused_until {
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
        let at = until
            .to_offset(local_offset)
            .format(&format)
            .unwrap_or_else(|_| until.to_string());
        text.push_str(&format!("  notifications paused until {at}\n"));
    }
    for server in state.live.servers.values() {
        text.push_str(&format!(
            "  server {}: {}{}\n",
            shown(&server.name),
            server.state,
            server
                .last_error
                .as_deref()
                .map(|e| format!(" ({})", shown(e)))
                .unwrap_or_default()
        ));
    }
    for cap in caps {
        if let Some(status) = state.live.caps.get(&cap.id) {
            text.push_str(&format!(
                "  \"{}\": subscribed on {} of {} servers{}\n",
                shown(&cap.label),
                status.subscribed_on,
                status.servers,
                if status.polling {
                    ", polling the gateway"
                } else {
                    ""
                }
            ));
        }
    }
    text
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// Tries a harmless read: an id that was never stored. "No such secret" proves the keyring
/// answered; anything else says why it cannot be used.
fn probe_keyring(secrets: &dyn SecretStore) -> KeyringState {
    let probe_id = match ids::new_id("probe-") {
        Ok(id) => id,
        Err(e) => {
            return KeyringState {
                reachable: false,
                problem: Some(e.to_string()),
            }
        }
    };
    // A search for a missing id answers even while the collection is locked, so the lock is
    // read first (without prompting); keyutils is probed with a throwaway write there.
    let mut result = secrets.check_usable();
    if result.is_ok() {
        result = secrets.get(&probe_id).map(drop);
        if matches!(result, Err(SecretError::Missing { .. })) {
            result = Ok(());
        }
    }
    match result {
        Ok(()) => KeyringState {
            reachable: true,
            problem: None,
        },
        Err(e) => KeyringState {
            reachable: false,
            problem: Some(e.to_string()),
        },
    }
}

fn secret_state(store: &notifier_core::store::caps::CapStore, cap: &CapEntry) -> SecretState {
    match store.get_cap(&cap.id) {
        Ok(_) => SecretState::Present,
        Err(CapStoreError::Secret(SecretError::Missing { .. })) => SecretState::Missing,
        Err(
            CapStoreError::StoredCapMismatch(_)
            | CapStoreError::Secret(SecretError::NotText { .. }),
        ) => SecretState::Damaged,
        Err(_) => SecretState::Unknown,
    }
}
