//! The tray icon: five looks (`icons/tray-*.png`, see `icons/generate.py`), the one-line
//! summary as tooltip and as the menu's first line, and the menu — Open, the last changes,
//! pause, mark all read, reconnect, quit. Everything is drawn from the host's [`HostState`];
//! every menu entry is a [`HostCommand`], so the tray holds no logic of its own.

use std::sync::OnceLock;

use ksni::menu::{StandardItem, SubMenu};
use ksni::{Icon, MenuItem, ToolTip};
use notifier_core::engine::EngineCommand;
use notifier_core::host::service::pause_until;
use notifier_core::host::{HostCommand, HostHandle, HostState};
use notifier_core::status::{clock, TrayState};
use time::OffsetDateTime;

/// Longest menu line, in characters.
const MAX_ITEM_CHARS: usize = 60;

/// The tray's id on the bus (the StatusNotifierItem `Id`).
pub const TRAY_ID: &str = "tahoe-notifier";

/// What the tray shows, and where its menu sends the user's choices.
#[derive(Debug)]
pub struct TrayIcon {
    state: HostState,
    handle: HostHandle,
    local_offset: time::UtcOffset,
}

impl TrayIcon {
    /// An icon that shows nothing yet ("starting").
    pub fn new(handle: HostHandle, local_offset: time::UtcOffset) -> TrayIcon {
        TrayIcon {
            state: HostState::default(),
            handle,
            local_offset,
        }
    }

    /// Shows `state` from now on.
    pub fn show(&mut self, state: HostState) {
        self.state = state;
    }

    fn look(&self) -> TrayState {
        self.state
            .live
            .tray_state(self.state.unread_changes, OffsetDateTime::now_utc())
    }

    fn summary(&self) -> String {
        self.state.live.summary(
            self.state.unread_changes,
            OffsetDateTime::now_utc(),
            self.local_offset,
        )
    }

    fn send(&self, command: HostCommand) {
        if !self.handle.send(command) {
            tracing::warn!("the engine host has stopped; the menu does nothing");
        }
    }

    fn pause(&self, mode: &str) {
        match pause_until(mode, OffsetDateTime::now_utc(), self.local_offset) {
            Ok(until) => self.send(HostCommand::Pause(until)),
            Err(error) => tracing::warn!(error, "no such pause"),
        }
    }
}

/// The PNG of a look.
fn png_of(look: TrayState) -> &'static [u8] {
    match look {
        TrayState::Connected => include_bytes!("../../../icons/tray-connected.png"),
        TrayState::Degraded => include_bytes!("../../../icons/tray-degraded.png"),
        TrayState::Offline => include_bytes!("../../../icons/tray-offline.png"),
        TrayState::Unread => include_bytes!("../../../icons/tray-unread.png"),
        TrayState::Paused => include_bytes!("../../../icons/tray-paused.png"),
    }
}

/// The five looks as pixmaps, decoded once.
fn pixmap_of(look: TrayState) -> Vec<Icon> {
    static LOOKS: OnceLock<[Option<Icon>; 5]> = OnceLock::new();
    let looks = LOOKS.get_or_init(|| {
        [
            TrayState::Connected,
            TrayState::Degraded,
            TrayState::Offline,
            TrayState::Unread,
            TrayState::Paused,
        ]
        .map(|look| match decode_argb(png_of(look)) {
            Ok(icon) => Some(icon),
            Err(error) => {
                tracing::warn!(%error, ?look, "cannot decode a tray look");
                None
            }
        })
    });
    let index = match look {
        TrayState::Connected => 0,
        TrayState::Degraded => 1,
        TrayState::Offline => 2,
        TrayState::Unread => 3,
        TrayState::Paused => 4,
    };
    looks[index].iter().cloned().collect()
}

/// A PNG as the ARGB32 (network byte order) pixmap the StatusNotifierItem protocol carries.
pub fn decode_argb(png_bytes: &[u8]) -> Result<Icon, png::DecodingError> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info()?;
    let mut buffer = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let frame = reader.next_frame(&mut buffer)?;
    let rgba = &buffer[..frame.buffer_size()];
    let channels = frame.color_type.samples();
    let mut data = Vec::with_capacity(rgba.len() / channels * 4);
    for pixel in rgba.chunks_exact(channels) {
        let (r, g, b, a) = match pixel {
            [r, g, b, a] => (*r, *g, *b, *a),
            [grey, a] => (*grey, *grey, *grey, *a),
            _ => (0, 0, 0, 0),
        };
        data.extend_from_slice(&[a, r, g, b]);
    }
    Ok(Icon {
        width: i32::try_from(frame.width).unwrap_or(0),
        height: i32::try_from(frame.height).unwrap_or(0),
        data,
    })
}

/// The first line of `text`, cut to a menu's width.
fn shorten(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= MAX_ITEM_CHARS {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(MAX_ITEM_CHARS - 1).collect();
        format!("{cut}…")
    }
}

fn item(
    label: impl Into<String>,
    activate: impl Fn(&mut TrayIcon) + Send + 'static,
) -> MenuItem<TrayIcon> {
    StandardItem {
        label: label.into(),
        activate: Box::new(activate),
        ..Default::default()
    }
    .into()
}

fn line(label: impl Into<String>) -> MenuItem<TrayIcon> {
    StandardItem {
        label: label.into(),
        enabled: false,
        ..Default::default()
    }
    .into()
}

impl ksni::Tray for TrayIcon {
    fn id(&self) -> String {
        TRAY_ID.to_owned()
    }

    fn title(&self) -> String {
        "Tahoe Notifier".to_owned()
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::ApplicationStatus
    }

    fn status(&self) -> ksni::Status {
        match self.look() {
            TrayState::Unread | TrayState::Offline => ksni::Status::NeedsAttention,
            _ => ksni::Status::Active,
        }
    }

    fn icon_pixmap(&self) -> Vec<Icon> {
        pixmap_of(self.look())
    }

    fn attention_icon_pixmap(&self) -> Vec<Icon> {
        pixmap_of(self.look())
    }

    fn tool_tip(&self) -> ToolTip {
        ToolTip {
            title: self.summary(),
            ..Default::default()
        }
    }

    /// A click on the icon opens the window where it was.
    fn activate(&mut self, _x: i32, _y: i32) {
        self.send(HostCommand::Open(None));
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let mut menu = vec![
            line(shorten(&self.summary())),
            MenuItem::Separator,
            item("Open Tahoe Notifier", |tray| {
                tray.send(HostCommand::Open(None))
            }),
            MenuItem::Separator,
            line("Recent changes"),
        ];
        if self.state.recent.is_empty() {
            menu.push(line("    No changes yet"));
        }
        for (id, summary) in &self.state.recent {
            let target = format!("change:{id}");
            menu.push(item(format!("    {}", shorten(summary)), move |tray| {
                tray.send(HostCommand::Open(Some(target.clone())));
            }));
        }
        menu.push(MenuItem::Separator);
        let now = OffsetDateTime::now_utc();
        let paused_until = self.state.live.paused_until.filter(|until| now < *until);
        let pause_title = match paused_until {
            Some(until) => format!("Paused until {}", clock(until.to_offset(self.local_offset))),
            None => "Pause notifications".to_owned(),
        };
        let mut pause_items = vec![
            item("For 1 hour", |tray| tray.pause("hour")),
            item("Until tomorrow morning", |tray| tray.pause("tomorrow")),
        ];
        if paused_until.is_some() {
            pause_items.push(item("Resume notifications", |tray| tray.pause("resume")));
        }
        menu.push(
            SubMenu {
                label: pause_title,
                submenu: pause_items,
                ..Default::default()
            }
            .into(),
        );
        let unread = self.state.unread_changes + self.state.unread_news;
        menu.push(
            StandardItem {
                label: "Mark all read".to_owned(),
                enabled: unread > 0,
                activate: Box::new(|tray: &mut TrayIcon| tray.send(HostCommand::MarkAllRead)),
                ..Default::default()
            }
            .into(),
        );
        menu.push(item("Reconnect now", |tray| {
            tray.send(HostCommand::Engine(EngineCommand::ReconnectAll));
        }));
        menu.push(MenuItem::Separator);
        menu.push(item("Quit", |tray| tray.send(HostCommand::Quit)));
        menu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_look_decodes_to_a_square_argb_pixmap() {
        for look in [
            TrayState::Connected,
            TrayState::Degraded,
            TrayState::Offline,
            TrayState::Unread,
            TrayState::Paused,
        ] {
            let icons = pixmap_of(look);
            let icon = icons.first().expect("a pixmap");
            assert_eq!((icon.width, icon.height), (64, 64), "{look:?}");
            assert_eq!(icon.data.len(), 64 * 64 * 4, "{look:?}");
            assert!(
                icon.data.chunks_exact(4).any(|p| p[0] > 0),
                "{look:?} is all transparent"
            );
        }
        assert_ne!(
            pixmap_of(TrayState::Connected)[0].data,
            pixmap_of(TrayState::Unread)[0].data
        );
    }

    #[test]
    fn long_lines_are_shortened() {
        let long = "x".repeat(200);
        assert_eq!(shorten(&long).chars().count(), MAX_ITEM_CHARS);
        assert_eq!(shorten("a\nb"), "a");
    }
}
