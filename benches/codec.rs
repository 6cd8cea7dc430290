//! Codec benchmarks: decode, encode and decode+encode of a typical 0200
//! (18 fields including track 2 and a PIN block) in both 1987 dialects, and
//! the iso8583_rs baseline (parse + assemble of its sample 1100 message) next
//! to our codec on the very same bytes.
//!
//! Run: `cargo bench --bench codec`

use std::hint::black_box;
use std::path::Path;

use bytes::{Bytes, BytesMut};
mod common;

use cardswitch::iso8583::{Dialect, Message};
use common::typical_0200;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iso8583_rs::iso8583::iso_spec;

fn codec(c: &mut Criterion) {
    let message = typical_0200();
    for name in ["iso87ascii", "iso87binary"] {
        let dialect = Dialect::builtin(name).unwrap().unwrap();
        let wire = message.to_bytes(&dialect).unwrap();
        let mut group = c.benchmark_group(format!("0200/{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("decode", |b| {
            b.iter(|| Message::decode(&dialect, black_box(wire.clone())).unwrap())
        });
        let mut out = BytesMut::with_capacity(512);
        group.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(&message).encode(&dialect, &mut out).unwrap();
            })
        });
        group.bench_function("decode+encode", |b| {
            b.iter(|| {
                let m = Message::decode(&dialect, black_box(wire.clone())).unwrap();
                out.clear();
                m.encode(&dialect, &mut out).unwrap();
            })
        });
        group.finish();
    }
}

/// iso8583_rs on its own sample message, and our codec on the same bytes
/// under the equivalent dialect (`fixtures/iso8583_rs/sample_spec.toml`).
fn baseline(c: &mut Criterion) {
    let spec = iso_spec::spec("SampleSpec");
    let layout = spec.get_message_from_header("1100").unwrap();
    let mut msg = iso_spec::new_msg(spec, layout);
    msg.set("message_type", "1100").unwrap();
    for (pos, value) in [
        (2, "4567909845671235"),
        (3, "004000"),
        (4, "000000000029"),
        (11, "779581"),
        (14, "2204"),
        (19, "840"),
        (38, "APPR01"),
        (39, "000"),
        (52, "0102030405060708"),
        (61, "reserved_1"),
        (62, "reserved-2"),
        (63, "87877622525"),
        (64, "1112131415161718"),
        (96, "1234"),
        (128, "2122232425262728"),
        (160, "5678"),
    ] {
        msg.set_on(pos, value).unwrap();
    }
    let wire = msg.assemble().unwrap();

    let mut group = c.benchmark_group("sample1100");
    group.throughput(Throughput::Elements(1));
    group.bench_function("iso8583_rs parse+assemble", |b| {
        b.iter(|| {
            let mut buf = black_box(&wire).clone();
            let parsed = spec.parse(&mut buf).unwrap();
            black_box(parsed.assemble().unwrap())
        })
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/iso8583_rs/sample_spec.toml");
    let dialect = Dialect::load(&path).unwrap();
    let bytes = Bytes::from(wire.clone());
    let mut out = BytesMut::with_capacity(512);
    group.bench_function("cardswitch decode+encode", |b| {
        b.iter(|| {
            let m = Message::decode(&dialect, black_box(bytes.clone())).unwrap();
            out.clear();
            m.encode(&dialect, &mut out).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, codec, baseline);
criterion_main!(benches);
