//! Parsing and rendering costs of the messages a busy server handles most.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mutable_updates::{ClientMessage, ServerMessage, Status, SubscriptionStatus};
use tahoe_caps::StorageIndex;

fn indexes(n: usize) -> Vec<StorageIndex> {
    (0..n)
        .map(|i| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
            bytes[8..]
                .copy_from_slice(&(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            StorageIndex::from_bytes(bytes)
        })
        .collect()
}

fn messages(c: &mut Criterion) {
    let sis = indexes(1000);
    let subscribe = ClientMessage::subscribe(sis.iter().copied()).to_json();
    c.bench_function("parse subscribe of 1000 SIs", |b| {
        b.iter(|| ClientMessage::parse(black_box(&subscribe)).unwrap())
    });

    let mut status = Status::new();
    for (i, si) in sis.iter().enumerate() {
        let text = si.to_base32();
        if i % 10 == 0 {
            status.push(
                text,
                SubscriptionStatus::refused(
                    mutable_updates::ErrorCode::NotFound,
                    "this server holds no share of that slot",
                ),
            );
        } else {
            status.push_seqnum(text.clone(), i as u64);
            status.push(text, SubscriptionStatus::Subscribed);
        }
    }
    let status = ServerMessage::Status(status);
    c.bench_function("render status of 1000 entries", |b| {
        b.iter(|| black_box(&status).to_json())
    });
    let status_json = status.to_json();
    c.bench_function("parse status of 1000 entries", |b| {
        b.iter(|| ServerMessage::parse(black_box(&status_json)).unwrap())
    });
}

criterion_group!(benches, messages);
criterion_main!(benches);
