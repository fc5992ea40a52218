//! A real `tahoe-updates-server` process beside one storage node, on a fixed port so that its
//! NURL stays valid across SIGKILL and restart.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_grid::StorageNode;
use mutable_updates::nurl::{Nurl, Swissnum};

/// The `tahoe-updates-server` binary of this workspace (`TAHOE_UPDATES_SERVER_BIN` if set).
pub fn updates_server_binary() -> PathBuf {
    local_grid::bins::workspace_binary("tahoe-updates-server")
}

/// One server process (or none, while killed).
pub struct ServerProcess {
    node: StorageNode,
    /// Where it listens, the same across restarts.
    pub port: u16,
    /// Its NURL (pointing at `port`).
    pub nurl: Nurl,
    ping_interval_s: u64,
    child: Option<Child>,
    scratch: tempfile::TempDir,
    /// Starts so far (1 + restarts).
    pub starts: usize,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    /// Starts a server for `node` on a fresh port, pinging every `ping_interval_s` seconds.
    pub fn start(node: &StorageNode, ping_interval_s: u64) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut server = Self {
            node: node.clone(),
            port,
            nurl: Nurl::new([0; 32], "127.0.0.1".to_owned(), port, Swissnum::new("")),
            ping_interval_s,
            child: None,
            scratch,
            starts: 0,
        };
        server.nurl = server.spawn();
        server
    }

    fn nurl_file(&self) -> PathBuf {
        self.scratch.path().join("nurl")
    }

    fn spawn_child(&mut self) {
        let nurl_file = self.nurl_file();
        let _ = std::fs::remove_file(&nurl_file);
        let child = Command::new(updates_server_binary())
            .arg("run")
            .arg("--node-dir")
            .arg(&self.node.dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--nurl-file")
            .arg(&nurl_file)
            .arg("--ping-interval")
            .arg(self.ping_interval_s.to_string())
            .arg("--exit-when-stdin-closes")
            .env("RUST_LOG", "warn")
            // The write end of the pipe lives in this process only: the server never outlives
            // the test, however it ends.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tahoe-updates-server");
        self.child = Some(child);
        self.starts += 1;
    }

    /// The NURL once the server has written it (it listens by then).
    fn written_nurl(&mut self) -> Option<Nurl> {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("tahoe-updates-server exited at start: {status}");
        }
        std::fs::read_to_string(self.nurl_file())
            .ok()
            .and_then(|text| text.trim().parse::<Nurl>().ok())
    }

    fn spawn(&mut self) -> Nurl {
        self.spawn_child();
        let started = Instant::now();
        loop {
            if let Some(nurl) = self.written_nurl() {
                return nurl;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tahoe-updates-server wrote no NURL within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is running.
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no goodbye to the clients, the kernel closes the sockets.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts it again on the same port and waits until it listens; the NURL must come out
    /// the same.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running server");
        self.spawn_child();
        let started = Instant::now();
        let nurl = loop {
            if let Some(nurl) = self.written_nurl() {
                break nurl;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tahoe-updates-server wrote no NURL within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Compared, never printed: it holds the swissnum.
        assert!(nurl == self.nurl, "the NURL changed across a restart");
    }
}
