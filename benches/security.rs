//! What the security stages cost per transaction: MAC verification and
//! signing of a typical 0200 (iso87ascii, 18 fields), PIN translation
//! (format 0 TDES → format 3 TDES, and → format 4 AES) and DUKPT key
//! derivation (the worst-case TDES counter with 10 bits set, and AES).
//!
//! Run: `cargo bench --bench security`

use std::hint::black_box;

mod common;

use cardswitch::iso8583::Dialect;
use cardswitch::security::mac::{self, MacAlgorithm};
use cardswitch::security::pin::{self, PinFormat, PinZone};
use cardswitch::security::{KeyAlgorithm, SecretKey, dukpt};
use common::typical_0200;
use criterion::{Criterion, criterion_group, criterion_main};

const PAN: &str = "4761739001010119";

fn key(algorithm: KeyAlgorithm, byte: u8) -> SecretKey {
    SecretKey::new(algorithm, &vec![byte; algorithm.key_len()]).unwrap()
}

fn macs(c: &mut Criterion) {
    let dialect = Dialect::resolve("iso87ascii").unwrap();
    for (name, algorithm, k) in [
        (
            "retail",
            MacAlgorithm::Retail,
            key(KeyAlgorithm::Tdes2, 0x3C),
        ),
        (
            "aes-cmac",
            MacAlgorithm::AesCmac,
            key(KeyAlgorithm::Aes128, 0x3C),
        ),
        ("sm4", MacAlgorithm::Sm4, key(KeyAlgorithm::Sm4, 0x3C)),
    ] {
        let mut m = typical_0200();
        let frame = mac::sign(&dialect, &mut m, algorithm, &k).unwrap();
        c.bench_function(&format!("mac verify 0200 {name}"), |b| {
            b.iter(|| mac::verify_message(&dialect, black_box(&frame), &m, algorithm, &k).unwrap())
        });
        c.bench_function(&format!("mac sign 0200 {name}"), |b| {
            b.iter(|| {
                let mut out = m.clone();
                mac::sign(&dialect, black_box(&mut out), algorithm, &k).unwrap()
            })
        });
    }
}

fn pins(c: &mut Criterion) {
    let tpk = key(KeyAlgorithm::Tdes2, 0x5A);
    let zpk = key(KeyAlgorithm::Tdes2, 0x6B);
    let aes = key(KeyAlgorithm::Aes128, 0x7C);
    let block = pin::encipher(PinFormat::Iso0, &tpk, b"1234", PAN).unwrap();
    let from = PinZone {
        key: &tpk,
        format: PinFormat::Iso0,
    };
    for (name, to) in [
        (
            "iso0 tdes → iso3 tdes",
            PinZone {
                key: &zpk,
                format: PinFormat::Iso3,
            },
        ),
        (
            "iso0 tdes → iso4 aes",
            PinZone {
                key: &aes,
                format: PinFormat::Iso4,
            },
        ),
    ] {
        c.bench_function(&format!("pin translate {name}"), |b| {
            b.iter(|| pin::translate(black_box(&block), PAN, from, to).unwrap())
        });
    }
}

fn dukpt_keys(c: &mut Criterion) {
    let bdk = hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap();
    // Counter 0x1FF800: ten bits set, the most work X9.24-1 allows.
    let ksn = hex::decode("FFFF9876543210FFF800").unwrap();
    c.bench_function("dukpt tdes pin key (10 counter bits)", |b| {
        b.iter(|| dukpt::tdes_working_key(&bdk, black_box(&ksn), dukpt::TdesVariant::Pin).unwrap())
    });
    let bdk = hex::decode("FEDCBA9876543210F1F1F1F1F1F1F1F1").unwrap();
    let ksn = hex::decode("12345678901234560000FFFF").unwrap();
    c.bench_function("dukpt aes-128 pin key (16 counter bits)", |b| {
        b.iter(|| {
            dukpt::aes_working_key(
                &bdk,
                black_box(&ksn),
                dukpt::AesKeyUsage::PinEncryption,
                dukpt::AesKeyType::Aes128,
            )
            .unwrap()
        })
    });
}

criterion_group!(benches, macs, pins, dukpt_keys);
criterion_main!(benches);
