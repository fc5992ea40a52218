//! The running engine host of this home, reached over D-Bus (`notifier_core::host::client`):
//! `status` shows its live view, `pause` and `history read --all` go through it so that its
//! state and the tray follow at once.

use notifier_core::host::client::{ClientError, HostClient};
use notifier_core::host::HostState;
use notifier_core::store::paths::Paths;

/// Runs `call` against the host of `paths` on a runtime of its own; `Ok(None)` when no host
/// runs (or there is no session bus).
pub fn with_host<T>(
    paths: &Paths,
    call: impl AsyncFnOnce(&HostClient) -> Result<T, ClientError>,
) -> anyhow::Result<Option<T>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = match HostClient::connect(paths).await {
            Ok(client) => client,
            Err(ClientError::NotRunning | ClientError::NoBus(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        Ok(Some(call(&client).await?))
    })
}

/// The running host's state, if one runs.
pub fn host_state(paths: &Paths) -> anyhow::Result<Option<HostState>> {
    with_host(paths, async |client| client.state().await)
}
