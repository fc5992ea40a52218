//! One forged share must not silence a cap (the security review's finding 1), on a real grid:
//! a copy of a watched folder's real share, its seqnum raised to 2^63, served by one more real
//! `tahoe-updates-server` that holds no genuine share (Tahoe lets the first writer of an SI
//! create its slot on a server that has none, so anyone who knows the SI can do this). The
//! forged seqnum's proof does not verify: it raises no notification of its own, and the next
//! real publish through the gateway is reported, naming the file. Before slot proofs, the
//! engine took 2^63 as the truth for every server and never reported the folder again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
#[path = "support/watching.rs"]
mod watching;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mutable_updates::nurl::Nurl;
use support::{secrets, InProcessServer};
use tahoe_caps::Cap;
use watching::{blocking, changes_within, grid, new_folder, Watching};

/// Byte offset of a mutable share file's seqnum: the 468-byte container header and leases, then
/// the share data's version byte.
const SEQNUM_OFFSET: usize = 469;

/// The forger: a real `tahoe-updates-server` over a storage folder of its own holding only the
/// forged share, with a certificate and swissnum of its own (listed in the grid like any other).
struct Forger {
    child: Child,
    nurl: Nurl,
    share: PathBuf,
    _work: tempfile::TempDir,
}

impl Drop for Forger {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Forger {
    fn start(genuine_share: &std::path::Path, relative: &std::path::Path, seqnum: u64) -> Forger {
        let work = tempfile::tempdir().unwrap();
        let storage = work.path().join("storage");
        let share = storage.join(relative);
        std::fs::create_dir_all(share.parent().unwrap()).unwrap();
        let mut bytes = std::fs::read(genuine_share).unwrap();
        bytes[SEQNUM_OFFSET..SEQNUM_OFFSET + 8].copy_from_slice(&seqnum.to_be_bytes());
        std::fs::write(&share, &bytes).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["forger.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(work.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(work.path().join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(
            work.path().join("swissnum"),
            "forgerforgerforgerforgerforgerfo\n",
        )
        .unwrap();
        let nurl_path = work.path().join("nurl");
        let child = Command::new(local_grid::bins::workspace_binary("tahoe-updates-server"))
            .arg("run")
            .args(["--listen", "127.0.0.1:0", "--exit-when-stdin-closes"])
            .arg("--storage-dir")
            .arg(&storage)
            .arg("--tls-cert")
            .arg(work.path().join("cert.pem"))
            .arg("--tls-key")
            .arg(work.path().join("key.pem"))
            .arg("--swissnum-file")
            .arg(work.path().join("swissnum"))
            .arg("--nurl-file")
            .arg(&nurl_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the forging tahoe-updates-server");
        let started = Instant::now();
        let nurl = loop {
            if let Ok(nurl) = std::fs::read_to_string(&nurl_path)
                .unwrap_or_default()
                .trim()
                .parse::<Nurl>()
            {
                break nurl;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the forger wrote no NURL"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Forger {
            child,
            nurl,
            share,
            _work: work,
        }
    }

    /// Writes the forged share again with another seqnum (a live update from the forger).
    fn reforge(&self, seqnum: u64) {
        let mut bytes = std::fs::read(&self.share).unwrap();
        bytes[SEQNUM_OFFSET..SEQNUM_OFFSET + 8].copy_from_slice(&seqnum.to_be_bytes());
        std::fs::write(&self.share, &bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_share_with_a_huge_seqnum_does_not_silence_the_cap() {
    let grid = grid();
    let mut honest = Vec::new();
    for node in grid.storage_nodes() {
        honest.push(InProcessServer::start(node).await);
    }
    let dircap = new_folder().await;
    let cap: Cap = dircap.parse().unwrap();
    let si = cap.storage_index().unwrap().to_base32();
    // A genuine share of the folder, from the first storage node that has one.
    let (genuine, relative) = grid
        .storage_nodes()
        .iter()
        .find_map(|node| {
            let relative = PathBuf::from("shares").join(&si[..2]).join(&si);
            let folder = node.dir.join("storage").join(&relative);
            let share = std::fs::read_dir(&folder).ok()?.flatten().next()?.path();
            Some((share.clone(), relative.join(share.file_name()?)))
        })
        .expect("a share of the folder on some node");
    let forger = Forger::start(&genuine, &relative, 1 << 63);

    let mut nurls: Vec<String> = honest.iter().map(|s| s.nurl.to_string()).collect();
    nurls.push(forger.nurl.to_string());
    let watching = Watching::new("forged grid", &nurls, &cap, secrets());

    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            // Subscribed on all four (the forger too: it holds "a share"), the forged seqnum
            // raising no change meanwhile.
            let mut engine = watching.start_engine(4).await;
            let events = &mut engine.events;
            // The forgery raises nothing, at subscribe time or as a live update.
            forger.reforge((1 << 63) + 1);
            let spurious = changes_within(events, Duration::from_secs(4)).await;
            assert!(
                spurious.is_empty(),
                "the forger's seqnums were believed: {spurious:?}"
            );

            // The next real publish is reported, once, naming the file.
            let writer = dircap.clone();
            blocking(move || {
                grid.put_child(&writer, "after-forgery.txt", b"two")
                    .unwrap()
            })
            .await;
            let changes = changes_within(events, Duration::from_secs(10)).await;
            assert_eq!(changes.len(), 1, "one change for one publish: {changes:?}");
            assert!(
                changes[0].summary.contains("after-forgery.txt"),
                "{changes:?}"
            );
            assert!(changes[0].seqnum < 1 << 63, "a real seqnum: {changes:?}");
            engine.shutdown().await;
        })
        .await;
}
