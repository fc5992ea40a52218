//! Talking to a running engine host from another process (the window, the CLI): a thin
//! wrapper over the `org.tahoe_lafs.Notifier1` interface of [`super::service`].
//!
//! The calls are async (zbus on tokio); a face without a runtime of its own makes a
//! current-thread one for them.

use thiserror::Error;

use super::service::{INTERFACE, OBJECT_PATH};
use super::HostState;
use crate::store::paths::Paths;

/// Why the host could not be reached or did not answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No session bus here.
    #[error("no D-Bus session bus: {0}")]
    NoBus(String),
    /// The bus is there, but no host owns the name of this home.
    #[error(
        "Tahoe Notifier is not running for this home (start the tray, or `tahoe-notifier watch`)"
    )]
    NotRunning,
    /// The host answered with an error.
    #[error("the running Tahoe Notifier refused: {0}")]
    Refused(String),
    /// The host's answer could not be read.
    #[error("the running Tahoe Notifier answered something unreadable: {0}")]
    BadAnswer(String),
}

#[zbus::proxy(
    interface = "org.tahoe_lafs.Notifier1",
    default_path = "/org/tahoe_lafs/Notifier"
)]
trait Notifier {
    fn get_state(&self) -> zbus::Result<String>;
    fn reconnect(&self) -> zbus::Result<()>;
    fn pause(&self, mode: &str) -> zbus::Result<()>;
    fn mark_all_read(&self) -> zbus::Result<()>;
    fn open_window(&self, target: &str) -> zbus::Result<()>;
    fn quit(&self) -> zbus::Result<()>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn state_changed(&self, state: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn window_requested(&self, target: &str) -> zbus::Result<()>;
}

/// A connection to the host of one home.
pub struct HostClient {
    proxy: NotifierProxy<'static>,
}

impl std::fmt::Debug for HostClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostClient")
            .field("name", &self.proxy.inner().destination().as_str())
            .finish()
    }
}

fn refused(error: zbus::Error) -> ClientError {
    match error {
        zbus::Error::MethodError(name, _, _)
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            ClientError::NotRunning
        }
        zbus::Error::FDO(fdo) => match *fdo {
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                ClientError::NotRunning
            }
            other => ClientError::Refused(other.to_string()),
        },
        other => ClientError::Refused(other.to_string()),
    }
}

impl HostClient {
    /// Connects to the host serving `paths`, if one runs ([`ClientError::NotRunning`] if not).
    pub async fn connect(paths: &Paths) -> Result<HostClient, ClientError> {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
            return Err(ClientError::NoBus(
                "DBUS_SESSION_BUS_ADDRESS is not set".to_owned(),
            ));
        }
        let connection = zbus::Connection::session()
            .await
            .map_err(|e| ClientError::NoBus(e.to_string()))?;
        let name = super::service::bus_name_for(paths);
        let bus = zbus::fdo::DBusProxy::new(&connection)
            .await
            .map_err(|e| ClientError::NoBus(e.to_string()))?;
        let bus_name = zbus::names::BusName::try_from(name.clone())
            .map_err(|e| ClientError::Refused(e.to_string()))?;
        if !bus
            .name_has_owner(bus_name)
            .await
            .map_err(|e| refused(zbus::Error::FDO(Box::new(e))))?
        {
            return Err(ClientError::NotRunning);
        }
        let proxy = NotifierProxy::builder(&connection)
            .destination(name)
            .and_then(|builder| builder.interface(INTERFACE))
            .and_then(|builder| builder.path(OBJECT_PATH))
            .map_err(refused)?
            .build()
            .await
            .map_err(refused)?;
        Ok(HostClient { proxy })
    }

    /// The host's state: servers, caps, pause, keyring, unread counts (never a cap).
    pub async fn state(&self) -> Result<HostState, ClientError> {
        let json = self.proxy.get_state().await.map_err(refused)?;
        serde_json::from_str(&json).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    /// Every link reconnects now.
    pub async fn reconnect(&self) -> Result<(), ClientError> {
        self.proxy.reconnect().await.map_err(refused)
    }

    /// Pauses notifications: `hour`, `tomorrow` (08:00 local) or `resume`.
    pub async fn pause(&self, mode: &str) -> Result<(), ClientError> {
        self.proxy.pause(mode).await.map_err(refused)
    }

    /// Marks every change and news item read.
    pub async fn mark_all_read(&self) -> Result<(), ClientError> {
        self.proxy.mark_all_read().await.map_err(refused)
    }

    /// Asks the host's face to show the window at `target` (`""`: where it was).
    pub async fn open_window(&self, target: &str) -> Result<(), ClientError> {
        self.proxy.open_window(target).await.map_err(refused)
    }

    /// Stops the host.
    pub async fn quit(&self) -> Result<(), ClientError> {
        self.proxy.quit().await.map_err(refused)
    }

    /// The host's state after each change of it (`StateChanged`), unreadable ones skipped.
    pub async fn state_changes(
        &self,
    ) -> Result<impl futures_util::Stream<Item = HostState> + Unpin, ClientError> {
        use futures_util::StreamExt as _;
        let stream = self.proxy.receive_state_changed().await.map_err(refused)?;
        Ok(stream
            .filter_map(|signal| async move {
                let args = signal.args().ok()?;
                serde_json::from_str(args.state()).ok()
            })
            .boxed())
    }

    /// Each item the window is asked to show (`WindowRequested`; `""`: where it was).
    pub async fn window_requests(
        &self,
    ) -> Result<impl futures_util::Stream<Item = String> + Unpin, ClientError> {
        use futures_util::StreamExt as _;
        let stream = self
            .proxy
            .receive_window_requested()
            .await
            .map_err(refused)?;
        Ok(stream
            .filter_map(|signal| async move {
                let args = signal.args().ok()?;
                let target: String = (*args.target()).to_owned();
                Some(target)
            })
            .boxed())
    }

    /// Resolves once the host has left the bus (stopped or crashed).
    pub async fn gone(&self) {
        use futures_util::StreamExt as _;
        let Ok(mut owners) = self.proxy.inner().receive_owner_changed().await else {
            return;
        };
        while let Some(owner) = owners.next().await {
            if owner.is_none() {
                return;
            }
        }
    }

    /// The host's version.
    pub async fn version(&self) -> Result<String, ClientError> {
        self.proxy.version().await.map_err(refused)
    }
}
