//! A real `nats-server` (Debian's) on loopback, for the tests and benches of the updates
//! server's watcher and edge roles.
//!
//! ```no_run
//! use local_grid::nats::{NatsOptions, NatsServer};
//! let Some(binary) = NatsServer::binary() else { return Ok(()); }; // not installed: skip
//! let broker = NatsServer::start(&binary, &NatsOptions { monitoring: true, ..NatsOptions::default() })?;
//! broker.wait_ready(std::time::Duration::from_secs(10))?;
//! let before = broker.message_counts()?;
//! # Ok::<(), local_grid::GridError>(())
//! ```

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{free_port, http, GridError};

/// How the broker is started.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Its client port; 0 picks a free one. A restart passes the old one, so that clients
    /// reconnect to the same URL.
    pub port: u16,
    /// Also serve nats-server's monitoring page (`-m`, for [`NatsServer::message_counts`]).
    pub monitoring: bool,
    /// Run it on these CPUs only (`taskset -c`, e.g. `"1"`), for benches that keep servers
    /// and load generator apart.
    pub cpus: Option<String>,
}

/// Messages through the broker since it started, from its `/varz` page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageCounts {
    /// Messages published to it.
    pub in_msgs: u64,
    /// Messages it delivered to subscribers (one publish with two subscribers counts two).
    pub out_msgs: u64,
    /// Payload bytes published to it.
    pub in_bytes: u64,
    /// Payload bytes it delivered.
    pub out_bytes: u64,
}

impl std::ops::Sub for MessageCounts {
    type Output = MessageCounts;

    fn sub(self, earlier: MessageCounts) -> MessageCounts {
        MessageCounts {
            in_msgs: self.in_msgs.saturating_sub(earlier.in_msgs),
            out_msgs: self.out_msgs.saturating_sub(earlier.out_msgs),
            in_bytes: self.in_bytes.saturating_sub(earlier.in_bytes),
            out_bytes: self.out_bytes.saturating_sub(earlier.out_bytes),
        }
    }
}

/// A running `nats-server`, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    monitor_port: Option<u16>,
}

impl NatsServer {
    /// Where nats-server is installed, if it is (`apt-get install nats-server`; the
    /// bootstrap script installs it).
    pub fn binary() -> Option<PathBuf> {
        ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
    }

    /// Starts the broker on 127.0.0.1 without waiting for it (see [`NatsServer::wait_ready`]).
    pub fn start(binary: &Path, options: &NatsOptions) -> Result<NatsServer, GridError> {
        let port = match options.port {
            0 => free_port()?,
            port => port,
        };
        let monitor_port = options.monitoring.then(free_port).transpose()?;
        let mut command = match &options.cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpus).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(monitor) = monitor_port {
            command.args(["-m", &monitor.to_string()]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| GridError::io(format!("starting {}", binary.display()), e))?;
        Ok(NatsServer {
            child: Some(child),
            port,
            monitor_port,
        })
    }

    /// Waits until it accepts clients (and serves its monitoring page, if asked for).
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), GridError> {
        let started = Instant::now();
        let ports = [Some(self.port), self.monitor_port];
        for port in ports.into_iter().flatten() {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
                if started.elapsed() > timeout {
                    return Err(GridError::Timeout {
                        what: format!("nats-server listening on port {port}"),
                        waited: timeout,
                        logs: String::new(),
                    });
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Its client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL its clients are given: `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The process id (of `taskset`'s exec'd broker when pinned: the same process).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The message counters of its `/varz` page (started with `monitoring`).
    pub fn message_counts(&self) -> Result<MessageCounts, GridError> {
        let operation = "nats-server /varz";
        let Some(port) = self.monitor_port else {
            return Err(GridError::InvalidOptions(format!(
                "{operation}: the broker was started without monitoring"
            )));
        };
        let answer = http::request(port, "GET", "/varz", &[], None)
            .map_err(|e| GridError::io(operation.to_owned(), e))?;
        let varz: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| GridError::BadResponse {
                operation,
                detail: e.to_string(),
            })?;
        let field = |name: &str| {
            varz.get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| GridError::BadResponse {
                    operation,
                    detail: format!("no {name}"),
                })
        };
        Ok(MessageCounts {
            in_msgs: field("in_msgs")?,
            out_msgs: field("out_msgs")?,
            in_bytes: field("in_bytes")?,
            out_bytes: field("out_bytes")?,
        })
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
