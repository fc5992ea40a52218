//! A TCP proxy on loopback that forwards to one updates server and injects network faults into
//! the connections it holds: cut, half-open, a server that stops reading the client, and a
//! server whose bytes are held back (silence).
//!
//! A fault applies to the connections open when it is injected; connections accepted later are
//! forwarded normally, so the client can recover by reconnecting — which is what is tested.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a proxied connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Close both sides now.
    Cut,
    /// Stop forwarding and stop reading both sides, but keep both sockets open for `hold`, then
    /// close: to the client it is a peer that vanished without a FIN (a half-open connection).
    HalfOpen { hold: Duration },
    /// Stop reading what the client sends (the server "stops reading"); the server's bytes
    /// still reach the client. Ends when the server ends the connection, or after `hold`.
    StopReadingClient { hold: Duration },
    /// Hold back everything the server sends for `hold` (the client hears nothing), still
    /// forwarding the client's bytes; then close.
    Silence { hold: Duration },
}

impl Mode {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Cut => "cut",
            Self::HalfOpen { .. } => "half-open",
            Self::StopReadingClient { .. } => "stop-reading",
            Self::Silence { .. } => "silence",
        }
    }
}

/// One proxy: a listening port forwarding to `target`.
pub struct FaultProxy {
    /// The port clients connect to.
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    live: Arc<Mutex<Vec<watch::Sender<Mode>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a fresh loopback port and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let live: Arc<Mutex<Vec<watch::Sender<Mode>>>> = Arc::default();
        let task = {
            let accepted = Arc::clone(&accepted);
            let live = Arc::clone(&live);
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        // E.g. out of descriptors: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let (mode, modes) = watch::channel(Mode::Pass);
                    {
                        let mut live = live.lock().unwrap();
                        live.retain(|sender| !sender.is_closed());
                        live.push(mode);
                    }
                    tokio::spawn(forward(client, target, modes));
                }
            })
        };
        Self {
            port,
            accepted,
            live,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Puts every open connection into `mode`; returns how many it hit.
    pub fn inject(&self, mode: Mode) -> usize {
        let mut live = self.live.lock().unwrap();
        live.retain(|sender| !sender.is_closed());
        for sender in live.iter() {
            let _ = sender.send(mode);
        }
        live.len()
    }
}

/// Forwards one connection until either side ends or a fault ends it.
async fn forward(mut client: TcpStream, target: SocketAddr, mut modes: watch::Receiver<Mode>) {
    // The server may be down (killed): then the client sees its connection closed at once.
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_server = vec![0u8; 16 * 1024];
    let mut held_until: Option<tokio::time::Instant> = None;
    loop {
        let mode = *modes.borrow_and_update();
        let (read_client, read_server) = match mode {
            Mode::Pass => (true, true),
            Mode::Cut => return,
            Mode::HalfOpen { hold } | Mode::Silence { hold } | Mode::StopReadingClient { hold } => {
                let until = *held_until.get_or_insert_with(|| tokio::time::Instant::now() + hold);
                if tokio::time::Instant::now() >= until {
                    return;
                }
                match mode {
                    Mode::HalfOpen { .. } => (false, false),
                    Mode::Silence { .. } => (true, false),
                    _ => (false, true),
                }
            }
        };
        let deadline = held_until
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600));
        tokio::select! {
            changed = modes.changed() => {
                if changed.is_err() {
                    // The proxy is gone.
                    return;
                }
            }
            () = tokio::time::sleep_until(deadline) => return,
            read = client.read(&mut from_client), if read_client => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if server.write_all(&from_client[..n]).await.is_err() {
                        return;
                    }
                }
            },
            read = server.read(&mut from_server), if read_server => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if client.write_all(&from_server[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}
