//! Remakes the real Tahoe-LAFS 1.20 share fixtures that `mutable-updates`' proof tests verify
//! (`crates/mutable-updates/tests/fixtures/shares/`).
//!
//! Starts a private grid (3 storage nodes, k=2, N=3), makes four mutable slots through the
//! gateway's web API — an SDMF file (`PUT /uri?format=sdmf`), an MDMF file
//! (`PUT /uri?format=mdmf`), an SDMF directory (`POST /uri?t=mkdir`) and an MDMF directory
//! (`POST /uri?t=mkdir&format=mdmf`) — and publishes each a second time (overwrite the file, add
//! a child to the directory). After each publish it copies one share file, exactly as it lies on
//! the storage node (`storage/shares/<si[..2]>/<si>/<shnum>`), always the same share of the same
//! node, and finally writes `fixtures.json` with each slot's read-cap, storage index and the
//! seqnum in each copied share. Old fixture files in the directory are replaced.
//!
//! ```sh
//! TAHOE_NOTIFIER_VENV=/path/to/venv cargo run -p local-grid --example make_share_fixtures
//! # or choose the output directory:
//! cargo run -p local-grid --example make_share_fixtures -- /tmp/shares
//! ```
//!
//! The slots' keys are fresh random test keys: the caps in `fixtures.json` protect nothing.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use local_grid::{Format, Grid, GridOptions};
use tahoe_caps::Cap;

type Error = Box<dyn std::error::Error>;

/// One slot to make: its fixture name, whether it is a directory, and its format.
struct Slot {
    name: &'static str,
    directory: bool,
    format: Format,
}

const SLOTS: [Slot; 4] = [
    Slot {
        name: "sdmf-file",
        directory: false,
        format: Format::Sdmf,
    },
    Slot {
        name: "mdmf-file",
        directory: false,
        format: Format::Mdmf,
    },
    Slot {
        name: "sdmf-dir",
        directory: true,
        format: Format::Sdmf,
    },
    Slot {
        name: "mdmf-dir",
        directory: true,
        format: Format::Mdmf,
    },
];

fn main() -> Result<(), Error> {
    let out = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../crates/mutable-updates/tests/fixtures/shares"),
    };
    std::fs::create_dir_all(&out)?;
    let grid = Grid::start(GridOptions::default())?;
    println!("grid ready at {}", grid.gateway_url());

    let mut slots_json = Vec::new();
    for slot in &SLOTS {
        let write_cap = match (slot.directory, slot.format) {
            (true, format) => grid.create_mutable_dir(format)?,
            (false, format) => {
                grid.create_mutable_file(format, format!("{} version 1\n", slot.name).as_bytes())?
            }
        };
        let cap: Cap = write_cap.parse()?;
        let read_cap = cap.read_only().to_string();
        let storage_index = cap
            .storage_index()
            .ok_or("a mutable cap without a storage index")?
            .to_string();
        // Pick the share to follow once, then copy that same file after every publish.
        let (node, shnum) = first_share(&grid, &storage_index)?;

        let mut versions = Vec::new();
        for version in 1..=2u32 {
            if version == 2 {
                if slot.directory {
                    grid.put_child(&write_cap, "child.txt", b"a small child\n")?;
                } else {
                    grid.overwrite_mutable_file(
                        &write_cap,
                        format!("{} version 2, a little longer\n", slot.name).as_bytes(),
                    )?;
                }
            }
            let source = share_path(&grid, node, &storage_index, shnum);
            let bytes = std::fs::read(&source)?;
            let seqnum = seqnum_of(&bytes).ok_or("share file too short for a seqnum")?;
            let file = format!("{}.v{version}.sh{shnum}", slot.name);
            std::fs::write(out.join(&file), &bytes)?;
            println!("{file}: {} bytes, seqnum {seqnum}", bytes.len());
            versions.push(serde_json::json!({
                "file": file,
                "seqnum": seqnum,
                "shnum": shnum,
                "bytes": bytes.len(),
            }));
        }
        slots_json.push(serde_json::json!({
            "name": slot.name,
            "format": match slot.format { Format::Sdmf => "SDMF", Format::Mdmf => "MDMF" },
            "directory": slot.directory,
            "read_cap": read_cap,
            "storage_index": storage_index,
            "versions": versions,
        }));
    }

    let tahoe_version = std::process::Command::new(grid.tahoe_bin())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_default();
    let doc = serde_json::json!({
        "made_by": "cargo run -p local-grid --example make_share_fixtures",
        "tahoe": tahoe_version,
        "encoding": {"k": 2, "happy": 2, "N": 3},
        "slots": slots_json,
    });
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    std::fs::write(out.join("fixtures.json"), text)?;
    println!("wrote {}", out.join("fixtures.json").display());
    Ok(())
}

/// The (storage node, share number) of the lowest-numbered share of `storage_index` on any node.
fn first_share(grid: &Grid, storage_index: &str) -> Result<(usize, u32), Error> {
    let mut best: Option<(u32, usize)> = None;
    for (index, node) in grid.storage_nodes().iter().enumerate() {
        let dir = node
            .storage_dir
            .join("shares")
            .join(&storage_index[..2])
            .join(storage_index);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let name = entry?.file_name();
            if let Some(shnum) = name.to_str().and_then(|n| n.parse::<u32>().ok()) {
                if best.is_none_or(|(b, _)| shnum < b) {
                    best = Some((shnum, index));
                }
            }
        }
    }
    let (shnum, node) = best.ok_or("no share of the new slot on any storage node")?;
    Ok((node, shnum))
}

fn share_path(grid: &Grid, node: usize, storage_index: &str, shnum: u32) -> PathBuf {
    grid.storage_nodes()[node]
        .storage_dir
        .join("shares")
        .join(&storage_index[..2])
        .join(storage_index)
        .join(shnum.to_string())
}

/// The big-endian seqnum at bytes 469..477 of a mutable share file (468-byte container header,
/// then the share's version byte).
fn seqnum_of(file: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = file.get(469..477)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
