//! The tray icon: five looks (see `icons/generate.py`), a one-line summary as tooltip and as
//! the menu's first line, and the menu — Open, the last five changes, pause, mark all read,
//! quit.

use std::sync::Arc;
use std::time::Duration;

use notifier_core::history::ChangeFilter;
use tauri::image::Image;
use tauri::menu::{IsMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Emitter as _, Manager as _, Wry};
use time::OffsetDateTime;

use crate::app::{Core, CHANGED_EVENT};
use notifier_core::status::{clock, TrayState};

/// The tray icon's id.
pub const TRAY_ID: &str = "main-tray";

/// How many recent changes the menu lists.
const RECENT: u32 = 5;
/// Longest menu line, in characters.
const MAX_ITEM_CHARS: usize = 60;

fn icon_bytes(state: TrayState) -> &'static [u8] {
    match state {
        TrayState::Connected => include_bytes!("../../icons/tray-connected.png"),
        TrayState::Degraded => include_bytes!("../../icons/tray-degraded.png"),
        TrayState::Offline => include_bytes!("../../icons/tray-offline.png"),
        TrayState::Unread => include_bytes!("../../icons/tray-unread.png"),
        TrayState::Paused => include_bytes!("../../icons/tray-paused.png"),
    }
}

fn icon(state: TrayState) -> tauri::Result<Image<'static>> {
    Image::from_bytes(icon_bytes(state))
}

/// Creates the tray icon.
pub fn create(app: &AppHandle, core: &Arc<Core>) -> tauri::Result<()> {
    let view = core.tray_view();
    core.tray_changed(&view);
    let menu = build_menu(app, core, &view.1)?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(view.0)?)
        .tooltip(&view.1)
        .menu(&menu)
        .on_menu_event(on_menu_event)
        .build(app)?;
    Ok(())
}

/// Redraws the icon and menu if what they show changed.
pub fn refresh(app: &AppHandle, core: &Arc<Core>) {
    refresh_with_menu(app, core, false);
}

/// Redraws the icon if its look changed, and the menu then or when `menu_too` (a new change
/// for the recent list).
pub fn refresh_with_menu(app: &AppHandle, core: &Arc<Core>, menu_too: bool) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let view = core.tray_view();
    let changed = core.tray_changed(&view);
    if changed {
        tracing::info!(state = ?view.0, "tray");
        if let Err(error) = icon(view.0).and_then(|image| tray.set_icon(Some(image))) {
            tracing::warn!(%error, "cannot set the tray icon");
        }
        let _ = tray.set_tooltip(Some(&view.1));
    }
    if changed || menu_too {
        match build_menu(app, core, &view.1) {
            Ok(menu) => {
                let _ = tray.set_menu(Some(menu));
            }
            Err(error) => tracing::warn!(%error, "cannot rebuild the tray menu"),
        }
    }
}

fn build_menu(app: &AppHandle, core: &Core, summary: &str) -> tauri::Result<Menu<Wry>> {
    let mut items: Vec<Box<dyn IsMenuItem<Wry>>> = vec![
        Box::new(MenuItem::with_id(
            app,
            "status",
            shorten(summary),
            false,
            None::<&str>,
        )?),
        Box::new(PredefinedMenuItem::separator(app)?),
        Box::new(MenuItem::with_id(
            app,
            "open",
            "Open Tahoe Notifier",
            true,
            None::<&str>,
        )?),
        Box::new(PredefinedMenuItem::separator(app)?),
        Box::new(MenuItem::with_id(
            app,
            "recent-header",
            "Recent changes",
            false,
            None::<&str>,
        )?),
    ];
    let recent = core
        .history()
        .list_changes(&ChangeFilter {
            limit: Some(RECENT),
            ..ChangeFilter::default()
        })
        .unwrap_or_default();
    if recent.is_empty() {
        items.push(Box::new(MenuItem::with_id(
            app,
            "recent-none",
            "    No changes yet",
            false,
            None::<&str>,
        )?));
    }
    for change in &recent {
        let mark = if change.read { "    " } else { "●  " };
        items.push(Box::new(MenuItem::with_id(
            app,
            format!("recent:{}", change.id),
            format!("{mark}{}", shorten(&change.summary)),
            true,
            None::<&str>,
        )?));
    }
    items.push(Box::new(PredefinedMenuItem::separator(app)?));
    let now = OffsetDateTime::now_utc();
    let paused_until = core.live().paused_until.filter(|until| now < *until);
    let pause_title = match paused_until {
        Some(until) => format!("Paused until {}", clock(to_local(until))),
        None => "Pause notifications".to_owned(),
    };
    let pause = Submenu::with_id_and_items(
        app,
        "pause",
        pause_title,
        true,
        &[
            &MenuItem::with_id(app, "pause-hour", "For 1 hour", true, None::<&str>)?,
            &MenuItem::with_id(
                app,
                "pause-tomorrow",
                "Until tomorrow morning",
                true,
                None::<&str>,
            )?,
            &MenuItem::with_id(
                app,
                "resume",
                "Resume notifications",
                paused_until.is_some(),
                None::<&str>,
            )?,
        ],
    )?;
    items.push(Box::new(pause));
    let unread = core.unread().unwrap_or(0);
    items.push(Box::new(MenuItem::with_id(
        app,
        "mark-all-read",
        "Mark all read",
        unread > 0,
        None::<&str>,
    )?));
    items.push(Box::new(PredefinedMenuItem::separator(app)?));
    items.push(Box::new(MenuItem::with_id(
        app,
        "quit",
        "Quit",
        true,
        None::<&str>,
    )?));
    let refs: Vec<&dyn IsMenuItem<Wry>> = items.iter().map(|item| item.as_ref()).collect();
    Menu::with_items(app, &refs)
}

fn shorten(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= MAX_ITEM_CHARS {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(MAX_ITEM_CHARS - 1).collect();
        format!("{cut}…")
    }
}

fn on_menu_event(app: &AppHandle, event: MenuEvent) {
    let Some(core) = app.try_state::<Arc<Core>>().map(|state| Arc::clone(&state)) else {
        return;
    };
    let id = event.id().as_ref();
    match id {
        "open" => crate::window::open(app, None),
        "pause-hour" => pause(app, &core, Pause::OneHour),
        "pause-tomorrow" => pause(app, &core, Pause::UntilTomorrow),
        "resume" => pause(app, &core, Pause::Resume),
        "mark-all-read" => {
            if let Err(error) = core.history().mark_all_read(None) {
                tracing::warn!(%error, "cannot mark all read");
            }
            refresh_with_menu(app, &core, true);
            let _ = app.emit(CHANGED_EVENT, ());
        }
        "quit" => {
            core.stop_engine();
            app.exit(0);
        }
        other => {
            if let Some(history_id) = other.strip_prefix("recent:") {
                crate::window::open(app, Some(format!("change:{history_id}")));
            }
        }
    }
}

/// What the user asked of the pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// One hour from now.
    OneHour,
    /// Until 08:00 tomorrow, local time.
    UntilTomorrow,
    /// End the pause.
    Resume,
}

/// Sets or ends the pause, then redraws.
pub fn pause(app: &AppHandle, core: &Arc<Core>, how: Pause) {
    let now = OffsetDateTime::now_utc();
    let until = match how {
        Pause::OneHour => Some(now + Duration::from_secs(3600)),
        Pause::UntilTomorrow => Some(tomorrow_morning(now)),
        Pause::Resume => None,
    };
    core.live().paused_until = until;
    refresh_with_menu(app, core, true);
    let _ = app.emit(CHANGED_EVENT, ());
    if let Some(until) = until {
        redraw_when_pause_ends(app, core, until);
    }
}

/// The icon must change back by itself when the pause runs out.
pub fn redraw_when_pause_ends(app: &AppHandle, core: &Arc<Core>, until: OffsetDateTime) {
    let (app, core) = (app.clone(), Arc::clone(core));
    let wait = (until - OffsetDateTime::now_utc()).unsigned_abs() + Duration::from_secs(1);
    tauri::async_runtime::spawn(async move {
        tokio::time::sleep(wait).await;
        refresh_with_menu(&app, &core, true);
        let _ = app.emit(CHANGED_EVENT, ());
    });
}

fn to_local(t: OffsetDateTime) -> OffsetDateTime {
    match time::UtcOffset::current_local_offset() {
        Ok(offset) => t.to_offset(offset),
        Err(_) => t,
    }
}

/// 08:00 of the next local day.
fn tomorrow_morning(now: OffsetDateTime) -> OffsetDateTime {
    let local = to_local(now);
    let morning = time::Time::from_hms(8, 0, 0).unwrap_or(time::Time::MIDNIGHT);
    let date = local.date().next_day().unwrap_or(local.date());
    date.with_time(morning).assume_offset(local.offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tomorrow_morning_is_after_now_and_within_a_day_and_a_half() {
        let now = OffsetDateTime::now_utc();
        let until = tomorrow_morning(now);
        assert!(until > now);
        assert!(until - now <= time::Duration::hours(33));
    }

    #[test]
    fn long_lines_are_shortened() {
        let long = "x".repeat(200);
        assert_eq!(shorten(&long).chars().count(), MAX_ITEM_CHARS);
        assert_eq!(shorten("a\nb"), "a");
    }
}
