//! Parse cost of the caps a notifier sees most: directory read-caps and write-caps, each with
//! the storage index derived (two or four SHA-256 blocks), against a 5 µs budget.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tahoe_caps::Cap;

const DIRECTORY_READ_CAP: &str =
    "URI:DIR2-RO:uk4r3cnhlj2wyiah6zcj3ndhwi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
const FILE_WRITE_CAP: &str =
    "URI:SSK:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

fn parse_and_derive_storage_index(c: &mut Criterion) {
    c.bench_function("parse DIR2-RO read-cap + storage index", |b| {
        b.iter(|| {
            let cap: Result<Cap, _> = black_box(DIRECTORY_READ_CAP).parse();
            cap.ok().and_then(|cap| cap.storage_index())
        })
    });
    c.bench_function("parse SSK write-cap + storage index", |b| {
        b.iter(|| {
            let cap: Result<Cap, _> = black_box(FILE_WRITE_CAP).parse();
            cap.ok().and_then(|cap| cap.storage_index())
        })
    });
    c.bench_function("render DIR2-RO read-cap", |b| {
        let cap = Cap::parse(DIRECTORY_READ_CAP).ok();
        b.iter(|| black_box(&cap).as_ref().map(ToString::to_string))
    });
}

criterion_group!(benches, parse_and_derive_storage_index);
criterion_main!(benches);
