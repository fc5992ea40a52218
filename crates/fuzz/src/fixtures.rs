//! The real Tahoe-LAFS 1.20 share files of `crates/mutable-updates/tests/fixtures/shares/`
//! (four slots, two versions each), compiled in: the fixed keys and the only genuine
//! (prefix, signature) pairs the proof oracles know.

use std::str::FromStr;
use std::sync::OnceLock;

use mutable_updates::proof::{SlotProof, VerificationKey};
use tahoe_caps::Cap;

const FIXTURES_JSON: &str =
    include_str!("../../mutable-updates/tests/fixtures/shares/fixtures.json");

/// `(file name, bytes)` of every fixture share file.
pub const SHARE_FILES: [(&str, &[u8]); 8] = [
    (
        "sdmf-file.v1.sh0",
        include_bytes!("../../mutable-updates/tests/fixtures/shares/sdmf-file.v1.sh0"),
    ),
    (
        "sdmf-file.v2.sh0",
        include_bytes!("../../mutable-updates/tests/fixtures/shares/sdmf-file.v2.sh0"),
    ),
    (
        "mdmf-file.v1.sh0",
        include_bytes!("../../mutable-updates/tests/fixtures/shares/mdmf-file.v1.sh0"),
    ),
    (
        "mdmf-file.v2.sh0",
        include_bytes!("../../mutable-updates/tests/fixtures/shares/mdmf-file.v2.sh0"),
    ),
    (
        "sdmf-dir.v1.sh0",
        include_bytes!("../../mutable-updates/tests/fixtures/shares/sdmf-dir.v1.sh0"),
    ),
    (
        "sdmf-dir.v2.sh0",
        include_bytes!("../../mutable-updates/tests/fixtures/shares/sdmf-dir.v2.sh0"),
    ),
    (
        "mdmf-dir.v1.sh0",
        include_bytes!("../../mutable-updates/tests/fixtures/shares/mdmf-dir.v1.sh0"),
    ),
    (
        "mdmf-dir.v2.sh0",
        include_bytes!("../../mutable-updates/tests/fixtures/shares/mdmf-dir.v2.sh0"),
    ),
];

/// One real slot: its read-cap's fingerprint, its key and every version's genuine proof.
#[derive(Debug)]
pub struct Slot {
    /// `sdmf-file`, `mdmf-file`, `sdmf-dir` or `mdmf-dir`.
    pub name: String,
    /// The read-cap's fingerprint: what a proof's key must hash to.
    pub fingerprint: [u8; 32],
    /// The slot's verification key, parsed (a client's "known key").
    pub key: VerificationKey,
    /// The proofs cut from the real share files, seqnum 1 and 2.
    pub genuine: Vec<SlotProof>,
}

impl Slot {
    /// Whether `prefix` and `signature` are exactly those of a version the writer published.
    pub fn is_genuine(&self, prefix: &[u8], signature: &[u8]) -> bool {
        self.genuine
            .iter()
            .any(|p| p.prefix_bytes() == prefix && p.signature() == signature)
    }
}

/// The four slots. Panics (once, at first use) if the fixtures are broken: the oracles would
/// be meaningless without them.
pub fn slots() -> &'static [Slot] {
    static SLOTS: OnceLock<Vec<Slot>> = OnceLock::new();
    SLOTS.get_or_init(load_slots)
}

fn load_slots() -> Vec<Slot> {
    let fixtures: serde_json::Value =
        serde_json::from_str(FIXTURES_JSON).expect("fixtures.json is JSON");
    let mut slots = Vec::new();
    for slot in fixtures["slots"]
        .as_array()
        .expect("fixtures.json has slots")
    {
        let name = slot["name"].as_str().expect("slot name").to_owned();
        let cap = Cap::from_str(slot["read_cap"].as_str().expect("read_cap")).expect("read-cap");
        let fingerprint = cap.fingerprint().expect("a mutable cap");
        let mut genuine = Vec::new();
        for version in slot["versions"].as_array().expect("versions") {
            let file = version["file"].as_str().expect("file name");
            let (_, bytes) = SHARE_FILES
                .iter()
                .find(|(n, _)| *n == file)
                .expect("fixtures.json names a compiled-in share file");
            genuine.push(SlotProof::from_share_file(bytes).expect("a real share has a proof"));
        }
        let der = genuine[0].verification_key().expect("shares carry the key");
        let key = VerificationKey::from_der(der).expect("the real key parses");
        assert_eq!(
            key.fingerprint(),
            &fingerprint,
            "{name}: key matches the cap"
        );
        slots.push(Slot {
            name,
            fingerprint,
            key,
            genuine,
        });
    }
    assert_eq!(slots.len(), 4, "four fixture slots");
    slots
}
