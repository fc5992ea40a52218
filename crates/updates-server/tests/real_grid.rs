//! `tahoe-updates-server` beside each storage node of a real Tahoe grid on 127.0.0.1, driven
//! through the gateway's web API and observed by a real WebSocket client over pinned TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use local_grid::{Format, Grid, StorageNode};
use mutable_updates::client::{self, ConnectError};
use mutable_updates::message::{
    ClientMessage, ErrorCode, ProofRequest, ServerMessage, Status, SubscriptionStatus,
};
use mutable_updates::nurl::{Nurl, Swissnum};
use tahoe_caps::{Cap, StorageIndex};
use tokio_tungstenite::tungstenite::Message;

const PATH: &str = "/v1/mutable_updates";

/// One `tahoe-updates-server` process beside one storage node.
struct UpdatesServer {
    child: Child,
    nurl: Nurl,
    metrics: std::net::SocketAddr,
    _scratch: tempfile::TempDir,
}

impl Drop for UpdatesServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl UpdatesServer {
    fn start(node: &StorageNode) -> Self {
        Self::start_with(&["--node-dir".as_ref(), node.dir.as_os_str()])
    }

    fn start_with(extra: &[&std::ffi::OsStr]) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let nurl_file = scratch.path().join("nurl");
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tahoe-updates-server"))
            .arg("run")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--rescan-interval",
                "1",
                "--exit-when-stdin-closes",
            ])
            .arg("--nurl-file")
            .arg(&nurl_file)
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .args(extra)
            .env("RUST_LOG", "info")
            // The pipe's write end lives in this process only: when the test binary exits, even
            // with the fixture still in a static, the server sees end of file and stops.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tahoe-updates-server");
        let nurl = wait_for_nurl(&nurl_file);
        Self {
            child,
            nurl,
            metrics,
            _scratch: scratch,
        }
    }
}

fn wait_for_nurl(path: &Path) -> Nurl {
    for _ in 0..300 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(nurl) = text.trim().parse() {
                return nurl;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "tahoe-updates-server wrote no NURL to {} within 15 s",
        path.display()
    );
}

struct Fixture {
    grid: &'static Grid,
    servers: Vec<UpdatesServer>,
}

/// One grid and one updates server per storage node for the whole test binary.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let grid =
            local_grid::shared().expect("start a real Tahoe grid (run tests/bootstrap-python.sh?)");
        let servers = grid
            .storage_nodes()
            .iter()
            .map(UpdatesServer::start)
            .collect();
        Fixture { grid, servers }
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn connect(nurl: &Nurl) -> Socket {
    client::connect(nurl, PATH)
        .await
        .expect("connect to the updates server")
}

async fn send(socket: &mut Socket, message: ClientMessage) {
    socket
        .send(Message::Text(message.to_json().into()))
        .await
        .unwrap();
}

/// The next protocol message, skipping pings; `None` when nothing comes within `wait`.
async fn next_message(socket: &mut Socket, wait: Duration) -> Option<ServerMessage> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??;
        match frame.expect("WebSocket error") {
            Message::Text(text) => {
                return Some(ServerMessage::parse(text.as_str()).expect("valid server message"))
            }
            Message::Close(frame) => panic!("server closed the connection: {frame:?}"),
            _ => continue,
        }
    }
}

async fn subscribe(socket: &mut Socket, raw: &[&str]) -> Status {
    let json =
        serde_json::json!({"tahoe-mutable-notification-version": 1, "subscribe": raw}).to_string();
    socket.send(Message::Text(json.into())).await.unwrap();
    match next_message(socket, Duration::from_secs(10)).await {
        Some(ServerMessage::Status(status)) => status,
        other => panic!("expected a status, got {other:?}"),
    }
}

fn storage_index_of(cap: &str) -> StorageIndex {
    cap.parse::<Cap>().unwrap().storage_index().unwrap()
}

/// Nodes holding at least one share of `si`: the servers that must report its changes.
fn holders(grid: &Grid, si: &StorageIndex) -> Vec<usize> {
    grid.storage_nodes()
        .iter()
        .enumerate()
        .filter(|(_, node)| {
            node.storage_dir
                .join("shares")
                .join(si.share_dir())
                .is_dir()
        })
        .map(|(index, _)| index)
        .collect()
}

async fn subscribe_with(socket: &mut Socket, raw: &[&str], proofs: Option<ProofRequest>) -> Status {
    let mut json = serde_json::json!({"tahoe-mutable-notification-version": 1, "subscribe": raw});
    if let Some(proofs) = proofs {
        json["options"] = serde_json::json!({ "proofs": proofs.as_str() });
    }
    socket
        .send(Message::Text(json.to_string().into()))
        .await
        .unwrap();
    match next_message(socket, Duration::from_secs(10)).await {
        Some(ServerMessage::Status(status)) => status,
        other => panic!("expected a status, got {other:?}"),
    }
}

/// Issue 12: a client that asks for proofs gets, in its status and in every update, the slot's
/// signed prefix and signature as the real Tahoe node wrote them, which verify against the
/// fingerprint in the cap; "without-keys" leaves the key out; a plain v1 client on the same
/// server sees exactly what it saw before (no proof anywhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_in_status_and_updates_verify_against_the_caps_fingerprint_sdmf_and_mdmf() {
    let fixture = fixture();
    for (format, make_file) in [
        (Format::Sdmf, false),
        (Format::Mdmf, false),
        (Format::Sdmf, true),
        (Format::Mdmf, true),
    ] {
        let cap = if make_file {
            fixture.grid.create_mutable_file(format, b"first").unwrap()
        } else {
            fixture.grid.create_mutable_dir(format).unwrap()
        };
        let parsed: Cap = cap.parse().unwrap();
        let fingerprint = parsed
            .fingerprint()
            .expect("a mutable cap has a fingerprint");
        let si = parsed.storage_index().unwrap();
        let raw = si.to_string();
        let holders = holders(fixture.grid, &si);
        assert!(!holders.is_empty());
        let server = &fixture.servers[holders[0]];
        let mut with_keys = connect(&server.nurl).await;
        let mut without_keys = connect(&server.nurl).await;
        let mut plain = connect(&server.nurl).await;

        let status = subscribe_with(&mut with_keys, &[&raw], Some(ProofRequest::WithKeys)).await;
        assert_eq!(status.seqnum(&raw), Some(1));
        let proof = status.proof(&raw).expect("a proof in the with-keys status");
        assert!(
            proof.verification_key().is_some(),
            "with-keys: the key is sent"
        );
        let verified = proof
            .verify(&fingerprint, None)
            .expect("the status proof verifies with the cap's fingerprint");
        assert_eq!(verified.seqnum(), 1);
        let key = verified.verification_key().clone();
        // Against another slot's fingerprint it must fail.
        let mut wrong = fingerprint;
        wrong[0] ^= 1;
        assert!(proof.verify(&wrong, None).is_err());

        let status =
            subscribe_with(&mut without_keys, &[&raw], Some(ProofRequest::WithoutKeys)).await;
        let keyless = status
            .proof(&raw)
            .expect("a proof in the without-keys status");
        assert!(keyless.verification_key().is_none(), "without-keys: no key");
        assert_eq!(
            keyless.verify(&fingerprint, Some(&key)).unwrap().seqnum(),
            1
        );

        let status = subscribe_with(&mut plain, &[&raw], None).await;
        assert_eq!(status.seqnum(&raw), Some(1));
        assert!(status.proofs.is_empty(), "a plain v1 client gets no proofs");

        if make_file {
            fixture
                .grid
                .overwrite_mutable_file(&cap, b"second version")
                .unwrap();
        } else {
            fixture.grid.put_child(&cap, "new.txt", b"hello").unwrap();
        }
        for (socket, asked) in [
            (&mut with_keys, true),
            (&mut without_keys, true),
            (&mut plain, false),
        ] {
            match next_message(socket, Duration::from_secs(10)).await {
                Some(ServerMessage::Update(update)) => {
                    assert_eq!(update.storage_index, si);
                    assert_eq!(update.seqnum, Some(2));
                    match (asked, &update.proof) {
                        (true, Some(proof)) => {
                            assert!(
                                proof.verification_key().is_none(),
                                "updates never carry the key"
                            );
                            let verified = proof
                                .verify(&fingerprint, Some(&key))
                                .expect("the update's proof verifies with the kept key");
                            assert_eq!(verified.seqnum(), 2);
                        }
                        (true, None) => {
                            panic!("{format:?}: an update without a proof for a client that asked")
                        }
                        (false, None) => {}
                        (false, Some(_)) => panic!("a plain client got a proof"),
                    }
                }
                other => panic!("expected an update, got {other:?}"),
            }
        }
        eprintln!(
            "{format:?} {}: proof verified (status with key {} bytes raw, update without key {} bytes raw)",
            if make_file { "file" } else { "directory" },
            proof.len_bytes(),
            keyless.len_bytes()
        );
    }
}

async fn assert_one_update_per_holder(fixture: &Fixture, cap: &str, change: impl FnOnce()) {
    let si = storage_index_of(cap);
    let holders = holders(fixture.grid, &si);
    assert!(!holders.is_empty(), "no storage node holds the new slot");
    let mut sockets = Vec::new();
    for &index in &holders {
        let mut socket = connect(&fixture.servers[index].nurl).await;
        let status = subscribe(&mut socket, &[&si.to_string()]).await;
        assert_eq!(
            status.get(&si.to_string()),
            Some(&SubscriptionStatus::Subscribed)
        );
        assert_eq!(
            status.seqnum(&si.to_string()),
            Some(1),
            "a new slot starts at seqnum 1"
        );
        sockets.push(socket);
    }
    change();
    for socket in &mut sockets {
        match next_message(socket, Duration::from_secs(10)).await {
            Some(ServerMessage::Update(update)) => {
                assert_eq!(update.storage_index, si);
                assert_eq!(update.seqnum, Some(2));
            }
            other => panic!("expected one update, got {other:?}"),
        }
        // A publish rewrites every share several times: still exactly one update.
        assert!(
            next_message(socket, Duration::from_millis(1500))
                .await
                .is_none(),
            "a second message arrived for one publish"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_child_gives_one_update_per_server_sdmf_and_mdmf() {
    let fixture = fixture();
    for format in [Format::Sdmf, Format::Mdmf] {
        let dircap = fixture.grid.create_mutable_dir(format).unwrap();
        let grid = fixture.grid;
        assert_one_update_per_holder(fixture, &dircap, || {
            grid.put_child(&dircap, "report.pdf", b"quarterly numbers")
                .unwrap();
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwriting_a_mutable_file_gives_one_update_per_server_sdmf_and_mdmf() {
    let fixture = fixture();
    for format in [Format::Sdmf, Format::Mdmf] {
        let filecap = fixture.grid.create_mutable_file(format, b"first").unwrap();
        let grid = fixture.grid;
        assert_one_update_per_holder(fixture, &filecap, || {
            grid.overwrite_mutable_file(&filecap, b"second version")
                .unwrap();
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_has_one_entry_per_requested_index_with_its_error_code() {
    let fixture = fixture();
    let mutable =
        storage_index_of(&fixture.grid.create_mutable_dir(Format::Sdmf).unwrap()).to_string();
    let immutable =
        storage_index_of(&fixture.grid.create_immutable_file(&[7u8; 4096]).unwrap()).to_string();
    let unknown = StorageIndex::from_bytes([0x5a; 16]).to_string();
    let malformed = "not-a-storage-index";
    let mut socket = connect(&fixture.servers[0].nurl).await;
    let status = subscribe(&mut socket, &[&mutable, &unknown, &immutable, malformed]).await;
    assert_eq!(status.entries.len(), 4, "{status:?}");
    assert_eq!(status.get(&mutable), Some(&SubscriptionStatus::Subscribed));
    assert_eq!(status.seqnum(&mutable), Some(1));
    let code_of = |raw: &str| match status.get(raw) {
        Some(SubscriptionStatus::Refused { code, .. }) => code.clone(),
        other => panic!("{raw}: expected a refusal, got {other:?}"),
    };
    assert_eq!(code_of(&unknown), ErrorCode::NotFound);
    assert_eq!(code_of(&immutable), ErrorCode::NotMutable);
    assert_eq!(code_of(malformed), ErrorCode::MalformedStorageIndex);
    assert_eq!(status.seqnums.len(), 1, "seqnums only for subscribed SIs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_updates_and_bad_messages_keep_the_connection() {
    let fixture = fixture();
    let dircap = fixture.grid.create_mutable_dir(Format::Sdmf).unwrap();
    let si = storage_index_of(&dircap);
    let server = holders(fixture.grid, &si)[0];
    let mut socket = connect(&fixture.servers[server].nurl).await;
    subscribe(&mut socket, &[&si.to_string()]).await;

    socket
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    match next_message(&mut socket, Duration::from_secs(5)).await {
        Some(ServerMessage::Error(error)) => assert_eq!(error.code, ErrorCode::MalformedMessage),
        other => panic!("expected an error reply, got {other:?}"),
    }
    send(&mut socket, ClientMessage::unsubscribe([si])).await;
    match next_message(&mut socket, Duration::from_secs(5)).await {
        Some(ServerMessage::Status(status)) => {
            assert_eq!(
                status.get(&si.to_string()),
                Some(&SubscriptionStatus::Subscribed)
            );
        }
        other => panic!("expected a status for the unsubscribe, got {other:?}"),
    }
    fixture.grid.put_child(&dircap, "after.txt", b"x").unwrap();
    assert!(next_message(&mut socket, Duration::from_millis(1500))
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_swissnum_is_refused_with_401() {
    let fixture = fixture();
    let right = &fixture.servers[0].nurl;
    let wrong = Nurl::new(
        right.spki_hash,
        right.host.clone(),
        right.port,
        Swissnum::new("wrongwrongwrongwrongwrongwrong12".to_owned()),
    );
    match client::connect(&wrong, PATH).await {
        Err(ConnectError::Unauthorized { .. }) => {}
        other => panic!(
            "expected 401 Unauthorized, got {:?}",
            other.map(|_| "a connection")
        ),
    }
    // No Authorization header at all.
    let tcp = tokio::net::TcpStream::connect((right.host.as_str(), right.port))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(
        mutable_updates::pinning::pinned_client_config(right.spki_hash),
    );
    let tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("tahoe.invalid").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let url = format!("wss://{}:{}{PATH}", right.host, right.port);
    match tokio_tungstenite::client_async(url, tls).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected HTTP 401, got {:?}", other.map(|_| "a connection")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pinning_another_hash_refuses_the_server() {
    let fixture = fixture();
    let right = &fixture.servers[0].nurl;
    let mut other_hash = right.spki_hash;
    other_hash[0] ^= 0xff;
    let pinned_elsewhere = Nurl::new(
        other_hash,
        right.host.clone(),
        right.port,
        right.swissnum().clone(),
    );
    match client::connect(&pinned_elsewhere, PATH).await {
        Err(ConnectError::PinMismatch { .. }) => {}
        other => panic!(
            "expected a pin mismatch, got {:?}",
            other.map(|_| "a connection")
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_nurl_is_the_storage_servers_own_but_for_the_port() {
    let fixture = fixture();
    for (node, server) in fixture.grid.storage_nodes().iter().zip(&fixture.servers) {
        let announced: Nurl = node.nurl_text().unwrap().parse().unwrap();
        assert_eq!(
            announced.spki_hash, server.nurl.spki_hash,
            "{}: pinned hash differs",
            node.name
        );
        assert_eq!(
            announced.swissnum().as_bytes(),
            server.nurl.swissnum().as_bytes()
        );
        assert_ne!(announced.port, server.nurl.port);
    }
}

/// A slot that does not exist yet answers `not-found`; once created it is reported only to a
/// client that subscribes again (the spec's semantics). The slot is made with a signature key we
/// chose, so we know its storage index before Tahoe does: this also checks our key chain
/// (signature key → write key → read key → SI) against real Tahoe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_created_after_subscribing_needs_a_new_subscribe() {
    let fixture = fixture();
    let key_der = generate_rsa_key_der(fixture.grid.tahoe_bin());
    let write_key = tahoe_caps::hash::mutable_write_key(&key_der);
    let si =
        tahoe_caps::hash::mutable_storage_index(&tahoe_caps::hash::mutable_read_key(&write_key));
    let mut socket = connect(&fixture.servers[0].nurl).await;
    let status = subscribe(&mut socket, &[&si.to_string()]).await;
    assert!(matches!(
        status.get(&si.to_string()),
        Some(SubscriptionStatus::Refused {
            code: ErrorCode::NotFound,
            ..
        })
    ));

    let cap = fixture
        .grid
        .create_mutable_file_with_key(Format::Sdmf, &key_der, b"made with our key")
        .unwrap();
    assert_eq!(
        storage_index_of(&cap),
        si,
        "our SI derivation disagrees with Tahoe's"
    );
    assert!(
        next_message(&mut socket, Duration::from_millis(1500))
            .await
            .is_none(),
        "updates must not arrive for a slot that was not subscribed"
    );
    let mut status = subscribe(&mut socket, &[&si.to_string()]).await;
    for _ in 0..20 {
        if status.get(&si.to_string()) == Some(&SubscriptionStatus::Subscribed) {
            break;
        }
        // The watcher indexes new shares as their directory appears; give it a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = subscribe(&mut socket, &[&si.to_string()]).await;
    }
    assert_eq!(
        status.get(&si.to_string()),
        Some(&SubscriptionStatus::Subscribed)
    );
    assert_eq!(status.seqnum(&si.to_string()), Some(1));
}

/// A 2048-bit RSA signature key in PKCS#8 DER, the form Tahoe hashes into the write key, made by
/// the `cryptography` package that tahoe-lafs itself depends on.
fn generate_rsa_key_der(tahoe_bin: &Path) -> Vec<u8> {
    let python: PathBuf = tahoe_bin.with_file_name("python");
    let script = "import sys\nfrom cryptography.hazmat.primitives.asymmetric import rsa\nfrom cryptography.hazmat.primitives import serialization as s\nk = rsa.generate_private_key(public_exponent=65537, key_size=2048)\nsys.stdout.buffer.write(k.private_bytes(s.Encoding.DER, s.PrivateFormat.PKCS8, s.NoEncryption()))\n";
    let output = Command::new(&python)
        .args(["-c", script])
        .output()
        .expect("run the venv's python");
    assert!(
        output.status.success(),
        "key generation failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_page_counts_connections_and_watched_slots() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fixture = fixture();
    let server = &fixture.servers[0];
    let _held = connect(&server.nurl).await;
    let mut stream = tokio::net::TcpStream::connect(server.metrics)
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.0 200 OK"), "{page}");
    let value = |name: &str| -> u64 {
        page.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from the metrics page"))
            .parse()
            .unwrap()
    };
    assert!(value("tahoe_updates_connections") >= 1);
    assert!(value("tahoe_updates_watcher_watches") >= 1);
    let _ = value("tahoe_updates_watcher_mutable_slots");
    let _ = value("tahoe_updates_queue_overflows_total");
    assert!(!page.contains(std::str::from_utf8(server.nurl.swissnum().as_bytes()).unwrap()));
}
