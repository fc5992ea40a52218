//! One folder on the shared real grid, watched from a home of its own through a given list of
//! updates servers, and the engine running over it: what the engine's tests against
//! particular servers share (included with `#[path]`, beside `mod support`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use local_grid::{Format, Grid};
use notifier_core::engine::{
    ChangeReport, Engine, EngineCommand, EngineError, EngineEvent, EngineOptions,
};
use notifier_core::grid::description::parse_grid_file;
use notifier_core::net::link::LinkTiming;
use notifier_core::notify::NotificationSink;
use notifier_core::store::caps::CapStore;
use notifier_core::store::config::ConfigFile;
use notifier_core::store::keyring::SecretStore;
use notifier_core::store::paths::Paths;
use notifier_core::store::servers::ServerStore;
use tahoe_caps::Cap;
use tokio::sync::mpsc;

pub fn grid() -> &'static Grid {
    local_grid::shared().expect("a real Tahoe grid (run tests/bootstrap-python.sh?)")
}

pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

/// A new SDMF folder holding `first.txt`: its (write) cap.
pub async fn new_folder() -> String {
    blocking(|| {
        let dircap = grid().create_mutable_dir(Format::Sdmf).unwrap();
        grid().put_child(&dircap, "first.txt", b"one").unwrap();
        dircap
    })
    .await
}

/// A home whose one grid (the shared grid's gateway, the updates servers given) watches one
/// cap. The cap leaves the keyring when this is dropped.
pub struct Watching {
    pub paths: Paths,
    pub secrets: Arc<dyn SecretStore>,
    pub caps: CapStore,
    pub cap_id: String,
    _home: tempfile::TempDir,
}

impl Watching {
    pub fn new(
        grid_name: &str,
        nurls: &[String],
        cap: &Cap,
        secrets: Arc<dyn SecretStore>,
    ) -> Self {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path());
        paths.ensure_dirs().unwrap();
        let description = serde_json::json!({
            "name": grid_name,
            "gateway_url": grid().gateway_url(),
            "updates_servers": nurls,
        })
        .to_string();
        ServerStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets))
            .import_grid(&parse_grid_file(&description).unwrap())
            .unwrap();
        let caps = CapStore::new(ConfigFile::new(paths.config_file()), Arc::clone(&secrets));
        let cap_id = caps.add(cap, "Shared folder", None).unwrap().id;
        Self {
            paths,
            secrets,
            caps,
            cap_id,
            _home: home,
        }
    }

    /// Starts the engine on the current `LocalSet` (reconnecting quickly) and waits until the
    /// cap is subscribed on `servers` servers; a change reported before that fails the test.
    pub async fn start_engine(&self, servers: usize) -> RunningEngine {
        self.start_engine_with(servers, |_| {}, None).await
    }

    /// [`Watching::start_engine`] with options of the test's (`configure`) and a sink, waiting
    /// until every cap of the home is subscribed on `servers` servers.
    pub async fn start_engine_with(
        &self,
        servers: usize,
        configure: impl FnOnce(&mut EngineOptions),
        sink: Option<Arc<dyn NotificationSink>>,
    ) -> RunningEngine {
        let mut options = EngineOptions::new(self.paths.clone(), Arc::clone(&self.secrets));
        options.link_timing = LinkTiming {
            backoff_initial: Duration::from_millis(100),
            ..LinkTiming::default()
        };
        configure(&mut options);
        let engine = Engine::open(options, sink).unwrap();
        let (commands, commands_rx) = mpsc::channel(8);
        let (events_tx, mut events) = mpsc::channel(1024);
        let task = tokio::task::spawn_local(engine.run(commands_rx, events_tx));
        let mut waiting: std::collections::HashSet<String> = self
            .caps
            .list()
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Some(EngineEvent::CapStatus {
                    id, subscribed_on, ..
                })) if subscribed_on == servers => {
                    waiting.remove(&id);
                }
                Ok(Some(EngineEvent::Changed(report))) => {
                    panic!("a change reported before any publish: {report:?}")
                }
                Ok(Some(_)) => {}
                _ => panic!("the cap was not subscribed on all {servers} servers"),
            }
        }
        RunningEngine {
            commands,
            events,
            task,
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.caps.remove(&self.cap_id);
    }
}

/// An engine started by [`Watching::start_engine`].
pub struct RunningEngine {
    pub events: mpsc::Receiver<EngineEvent>,
    commands: mpsc::Sender<EngineCommand>,
    task: tokio::task::JoinHandle<Result<(), EngineError>>,
}

impl RunningEngine {
    /// Asks it to stop and waits until it has.
    pub async fn shutdown(self) {
        let _ = self.commands.send(EngineCommand::Shutdown).await;
        self.task.await.unwrap().unwrap();
    }
}

/// Every `Changed` event within `window`.
pub async fn changes_within(
    events: &mut mpsc::Receiver<EngineEvent>,
    window: Duration,
) -> Vec<ChangeReport> {
    let deadline = tokio::time::Instant::now() + window;
    let mut found = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let EngineEvent::Changed(report) = event {
            found.push(report);
        }
    }
    found
}
