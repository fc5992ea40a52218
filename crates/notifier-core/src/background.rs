//! The engine on its own thread, for owners that live on another runtime (the tray app).
//!
//! [`Engine::run`]'s future is not `Send` (it holds the SQLite history across awaits), so it
//! cannot be spawned on a multi-threaded runtime. [`spawn_engine`] gives it a dedicated std
//! thread with a current-thread tokio runtime and hands back channels to talk to it.

use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;
use tokio::sync::mpsc;

use crate::engine::{Engine, EngineCommand, EngineError, EngineEvent, EngineOptions};
use crate::notify::NotificationSink;

/// How many events may wait for the owner before the engine waits for it.
const EVENT_BUFFER: usize = 1024;

/// Why the engine could not be started.
#[derive(Debug, Error)]
pub enum SpawnError {
    /// The engine could not open its stores or history.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// No thread or async runtime could be made for it.
    #[error("cannot start the engine's thread: {0}")]
    Thread(String),
}

/// A running engine.
#[derive(Debug)]
pub struct EngineHandle {
    /// Commands to the engine; [`EngineCommand::Shutdown`] (or dropping every sender) stops it.
    pub commands: mpsc::Sender<EngineCommand>,
    /// What the engine reports, in order. Ends when the engine stops.
    pub events: mpsc::Receiver<EngineEvent>,
    /// The engine's thread; yields how the engine ended.
    pub join: JoinHandle<Result<(), EngineError>>,
}

/// Opens the engine (stores, history) and runs it on a new thread.
///
/// Opening happens on that thread too, and its error is returned here, so a caller learns at
/// once that the config or history is unusable rather than from a thread that ended early.
pub fn spawn_engine(
    options: EngineOptions,
    sink: Option<Arc<dyn NotificationSink>>,
) -> Result<EngineHandle, SpawnError> {
    let (commands, commands_rx) = mpsc::channel(64);
    let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
    let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel::<Result<(), SpawnError>>(1);
    let join = std::thread::Builder::new()
        .name("tahoe-notifier-engine".to_owned())
        .spawn(move || {
            let engine = match Engine::open(options, sink) {
                Ok(engine) => engine,
                Err(error) => {
                    let _ = opened_tx.send(Err(error.into()));
                    return Ok(());
                }
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = opened_tx.send(Err(SpawnError::Thread(error.to_string())));
                    return Ok(());
                }
            };
            let _ = opened_tx.send(Ok(()));
            runtime.block_on(engine.run(commands_rx, events_tx))
        })
        .map_err(|error| SpawnError::Thread(error.to_string()))?;
    match opened_rx.recv() {
        Ok(Ok(())) => Ok(EngineHandle {
            commands,
            events,
            join,
        }),
        Ok(Err(error)) => {
            let _ = join.join();
            Err(error)
        }
        Err(_) => Err(SpawnError::Thread(
            "the engine thread ended before it started".to_owned(),
        )),
    }
}
