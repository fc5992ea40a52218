//! Shared by the engine's end-to-end tests and its benchmark (included with `#[path]`): the
//! updates server's code run in process beside a storage node of a real local grid, and the
//! keyring the test session provides.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use local_grid::StorageNode;
use mutable_updates::nurl::Nurl;
use mutable_updates::pinning::{server_config_from_pem, spki_hash_of_pem};
use notifier_core::store::keyring::{KeyringBackend, KeyringSecretStore, SecretStore};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use updates_server::endpoint::UpdatesEndpoint;
use updates_server::limits::Limits;
use updates_server::node::IdentitySources;
use updates_server::watcher::{ShareWatcher, WatcherOptions};

/// The updates server's code for one storage node, stoppable and restartable on its port.
pub struct InProcessServer {
    node: StorageNode,
    limits: Limits,
    /// The port it listens on (kept across restarts).
    pub port: u16,
    /// Its NURL (the storage node's own certificate pin and swissnum).
    pub nurl: Nurl,
    running: Option<(
        watch::Sender<bool>,
        ShareWatcher,
        tokio::task::JoinHandle<()>,
    )>,
}

impl InProcessServer {
    /// Starts serving on a fresh loopback port.
    pub async fn start(node: &StorageNode) -> Self {
        Self::start_with_limits(node, Limits::default()).await
    }

    /// Starts serving on a fresh loopback port with `limits` (e.g. a benchmark's crowd from
    /// one address).
    pub async fn start_with_limits(node: &StorageNode, limits: Limits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let identity = IdentitySources {
            node_dir: Some(node.dir.clone()),
            ..IdentitySources::default()
        }
        .load()
        .unwrap();
        let nurl = Nurl::new(
            spki_hash_of_pem(&identity.cert_pem).unwrap(),
            "127.0.0.1".to_owned(),
            port,
            identity.swissnum.clone(),
        );
        let mut server = Self {
            node: node.clone(),
            limits,
            port,
            nurl,
            running: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let identity = IdentitySources {
            node_dir: Some(self.node.dir.clone()),
            ..IdentitySources::default()
        }
        .load()
        .unwrap();
        let tls = server_config_from_pem(&identity.cert_pem, &identity.key_pem).unwrap();
        let (changes_tx, changes_rx) = mpsc::channel(1024);
        let watcher = ShareWatcher::start(
            identity.storage_dir.clone(),
            WatcherOptions::default(),
            changes_tx,
        )
        .unwrap();
        let endpoint = Arc::new(UpdatesEndpoint::new(
            Arc::new(watcher.clone()),
            &identity.swissnum,
            Some(tls),
            self.limits.clone(),
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let forward = {
                let endpoint = Arc::clone(&endpoint);
                tokio::spawn(async move { endpoint.forward_changes(changes_rx).await })
            };
            endpoint.serve(listener, shutdown_rx).await;
            forward.abort();
        });
        self.running = Some((shutdown, watcher, task));
    }

    /// Stops serving (connections drop, the port closes).
    pub async fn stop(&mut self) {
        if let Some((shutdown, watcher, task)) = self.running.take() {
            let _ = shutdown.send(true);
            let _ = task.await;
            watcher.shutdown();
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&mut self) {
        let address: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let listener = TcpListener::bind(address).await.unwrap();
        self.serve(listener);
    }
}

/// The keyring of the test session: the Secret Service when there is a session bus, else the
/// kernel key store.
pub fn secrets() -> Arc<dyn SecretStore> {
    let backend = if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        KeyringBackend::SecretService
    } else {
        KeyringBackend::Keyutils
    };
    Arc::new(KeyringSecretStore::new(backend))
}
