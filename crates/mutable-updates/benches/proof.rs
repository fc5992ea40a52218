//! Client CPU to verify one slot proof (real Tahoe 1.20 shares, 2048-bit keys), and the size of
//! a proof on the wire before any encoding.
//!
//! - `verify with key`: fingerprint hash of the key, DER parse, RSA-PSS verification: what a
//!   client pays for the first proof of a slot.
//! - `verify with known key`: the proof leaves the key out and the client uses the
//!   `VerificationKey` it kept: RSA-PSS verification only.
//! - `extract from share file`: what a server pays to cut a proof out of a share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mutable_updates::proof::SlotProof;

const SHARES: [(&str, &[u8]); 2] = [
    (
        "SDMF",
        include_bytes!("../tests/fixtures/shares/sdmf-dir.v2.sh0"),
    ),
    (
        "MDMF",
        include_bytes!("../tests/fixtures/shares/mdmf-dir.v2.sh0"),
    ),
];

fn proofs(c: &mut Criterion) {
    for (name, file) in SHARES {
        let proof = SlotProof::from_share_file(file).unwrap();
        let fingerprint =
            tahoe_caps::hash::mutable_pubkey_fingerprint(proof.verification_key().unwrap());
        let verified = proof.verify(&fingerprint, None).unwrap();
        let known = verified.verification_key().clone();
        let keyless = proof.clone().without_key();
        println!(
            "{name} proof: {} bytes = prefix {} + signature {} + key {}; without key {} bytes",
            proof.len_bytes(),
            proof.prefix_bytes().len(),
            proof.signature().len(),
            proof.verification_key().map_or(0, <[u8]>::len),
            keyless.len_bytes(),
        );

        c.bench_function(&format!("{name} verify with key"), |b| {
            b.iter(|| black_box(&proof).verify(&fingerprint, None).unwrap())
        });
        c.bench_function(&format!("{name} verify with known key"), |b| {
            b.iter(|| {
                black_box(&keyless)
                    .verify(&fingerprint, Some(&known))
                    .unwrap()
            })
        });
        c.bench_function(&format!("{name} extract from share file"), |b| {
            b.iter(|| SlotProof::from_share_file(black_box(file)).unwrap())
        });
    }
}

criterion_group!(benches, proofs);
criterion_main!(benches);
