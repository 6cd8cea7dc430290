//! What the security stages cost per transaction: MAC verification and
//! signing of a typical 0200 (iso87ascii, 18 fields), PIN translation
//! (format 0 TDES → format 3 TDES, and → format 4 AES) and DUKPT key
//! derivation (the worst-case TDES counter with 10 bits set, and AES).
//!
//! Run: `cargo bench --bench security`

use std::hint::black_box;

use cardswitch::iso8583::{Dialect, Message, Mti};
use cardswitch::security::mac::{self, MacAlgorithm};
use cardswitch::security::pin::{self, PinFormat, PinZone};
use cardswitch::security::{KeyAlgorithm, SecretKey, dukpt};
use criterion::{Criterion, criterion_group, criterion_main};

const PAN: &str = "4761739001010119";

fn key(algorithm: KeyAlgorithm, byte: u8) -> SecretKey {
    SecretKey::new(algorithm, &vec![byte; algorithm.key_len()]).unwrap()
}

fn typical_0200() -> Message {
    let mut m = Message::new(Mti::parse("0200").unwrap());
    m.set(2, PAN)
        .set(3, "000000")
        .set(4, "000000012345")
        .set(7, "1125143015")
        .set(11, "004711")
        .set(12, "143015")
        .set(13, "1125")
        .set(14, "2812")
        .set(18, "5411")
        .set(22, "051")
        .set(25, "00")
        .set(32, "4761739")
        .set(35, "4761739001010119=28122011143804400000")
        .set(37, "433014004711")
        .set(41, "TERM0001")
        .set(42, "MERCHANT0000001")
        .set(49, "978")
        .set(52, vec![0x12u8, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0]);
    m
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
