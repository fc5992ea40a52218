//! Writes mutable shares as a Tahoe storage server does, for the server tests that need many
//! fast writes without a grid (the real-grid tests write through the gateway).

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::Path;

use tahoe_caps::StorageIndex;
use updates_server::share::{DATA_OFFSET, MUTABLE_MAGIC_V2};

/// Writes a share the way a Tahoe storage server publishes: created once, then rewritten in place.
pub fn write_share(storage: &Path, storage_index: &StorageIndex, seqnum: u64) {
    let dir = storage.join("shares").join(storage_index.share_dir());
    let path = dir.join("0");
    if !path.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let share_data_length: u64 = 1 + 8 + 64;
        let mut header = vec![0u8; DATA_OFFSET + share_data_length as usize];
        header[..32].copy_from_slice(MUTABLE_MAGIC_V2);
        header[84..92].copy_from_slice(&share_data_length.to_be_bytes());
        std::fs::write(&path, header).unwrap();
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.seek(SeekFrom::Start(DATA_OFFSET as u64)).unwrap();
    let mut data = [0u8; 9];
    data[1..].copy_from_slice(&seqnum.to_be_bytes());
    file.write_all(&data).unwrap();
}
