//! Golden clearing files (`fixtures/golden/clearing/`, see its README): a
//! Mastercard IPM file, 1014-blocked and plain VBS, and the flat CSV file,
//! written by the library writers from four fixed presentments. The test
//! writes them again and compares byte for byte, then reads the IPM back
//! for meaning (DE 2, 4, 24, 31, 33, 49, 71, 94, PDS 0105 / 0301 / 0306).
//!
//! Unlike `fixtures/golden/iso87*` these bytes come from cardswitch itself:
//! they pin the format against unnoticed change, and were checked with an
//! independent reader (cardutil) when made. `UPDATE_GOLDEN=1 cargo test
//! --test golden_clearing` rewrites them after an intended change; read the
//! diff and re-run the cardutil check of the README before committing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cardswitch::clearing::ard::ard;
use cardswitch::clearing::csv::{CsvWriter, HEADER};
use cardswitch::clearing::ipm::{FileInfo, IpmMessage, IpmReader, IpmTotals, IpmWriter};
use cardswitch::clearing::{ClearedKind, Presentment};
use zeroize::Zeroizing;

/// The business date of the file.
const DATE: &str = "20261125";
/// The acquirer BIN in the ARDs.
const ACQUIRER_BIN: &str = "412345";
/// DE 32, and DE 33 / DE 94.
const ACQUIRING_INSTITUTION: &str = "4123456";
const FORWARDING_INSTITUTION: &str = "4123456";

const BLOCKED: &str = "20261125-blocked.ipm";
const VBS: &str = "20261125-vbs.ipm";
const CSV: &str = "20261125.csv";

fn info(blocked: bool) -> FileInfo {
    FileInfo {
        date: DATE.into(),
        processor_id: "00000012345".into(),
        sequence: 1,
        acquiring_institution: ACQUIRING_INSTITUTION.into(),
        forwarding_institution: FORWARDING_INSTITUTION.into(),
        blocked,
    }
}

/// A 1987 field 43: name (22) and a space, city (13) and a space, code (3).
fn location(name: &str, city: &str, code: &str) -> String {
    let text = format!("{name:<23}{city:<14}{code}");
    assert_eq!(text.len(), 40, "{text:?}");
    text
}

/// The fixed presentments. Their ARDs are written out (a fixture is
/// literal); `ards_are_the_switch_s` checks them against `clearing::ard`.
fn presentments() -> Vec<Presentment> {
    #[allow(clippy::too_many_arguments)]
    fn item(
        txn: u64,
        kind: ClearedKind,
        (pan, masked): (&str, &str),
        (amount, approved, currency): (u64, u64, &str),
        local_time: &str,
        (entry_mode, condition): (&str, &str),
        (merchant_id, mcc, name_location): (&str, &str, String),
        (terminal, stan, rrn, auth_id): (&str, &str, &str, &str),
        ard: &str,
    ) -> Presentment {
        Presentment {
            txn,
            kind,
            pan: Zeroizing::new(pan.into()),
            masked_pan: masked.into(),
            processing_code: if kind.is_credit() { "200000" } else { "000000" }.into(),
            amount,
            approved_amount: approved,
            currency: currency.into(),
            local_time: local_time.into(),
            entry_mode: entry_mode.into(),
            condition: condition.into(),
            merchant_id: merchant_id.into(),
            mcc: mcc.into(),
            name_location,
            terminal: terminal.into(),
            stan: stan.into(),
            rrn: rrn.into(),
            auth_id: auth_id.into(),
            destination: "mc".into(),
            ard: ard.into(),
            date: DATE.into(),
        }
    }
    vec![
        // Chip purchase with PIN, GBP (exponent 2): 45.99.
        item(
            1001,
            ClearedKind::Purchase,
            ("5413330089010434", "541333******0434"),
            (4599, 4599, "826"),
            "261125093015",
            ("051", "00"),
            (
                "MERCHANT0000001",
                "5411",
                location("ACME SUPERMARKET 123", "LONDON", "GBR"),
            ),
            ("TERM0001", "000101", "633009000101", "483920"),
            "24123456329000000010017",
        ),
        // E-commerce refund, GBP: 12.50 credited. CP500-only `[ ]` in the name.
        item(
            1002,
            ClearedKind::Refund,
            ("5555555555554444", "555555******4444"),
            (1250, 1250, "826"),
            "261125114502",
            ("812", "59"),
            (
                "WEBSHOP00000002",
                "5732",
                location("WEB SHOP [UK]", "MANCHESTER", "GBR"),
            ),
            ("TERM0002", "000102", "633011000102", "A1B2C3"),
            "24123456329000000010025",
        ),
        // Pre-authorisation of 200.00 USD completed for 187.50, contactless,
        // at a U.S. hotel (state code NY).
        item(
            1003,
            ClearedKind::Completion,
            ("2223000048400011", "222300******0011"),
            (18750, 20000, "840"),
            "261125071000",
            ("071", "00"),
            (
                "HOTEL0000000003",
                "7011",
                location("GRAND HOTEL", "NEW YORK", "NY "),
            ),
            ("TERM0003", "000103", "633007000103", "735104"),
            "24123456329000000010033",
        ),
        // Magnetic-stripe purchase in JPY (exponent 0): 12,800 yen.
        item(
            1004,
            ClearedKind::Purchase,
            ("5105105105105100", "510510******5100"),
            (12800, 12800, "392"),
            "261125203344",
            ("901", "00"),
            (
                "MERCHANT0000004",
                "5812",
                location("SUSHI KAZU", "TOKYO", "JPN"),
            ),
            ("TERM0004", "000104", "633020000104", "019283"),
            "24123456329000000010041",
        ),
    ]
}

fn write_ipm(blocked: bool) -> (Vec<u8>, IpmTotals) {
    let mut writer = IpmWriter::new(Vec::new(), &info(blocked)).unwrap();
    for p in &presentments() {
        writer.push(p).unwrap();
    }
    writer.finish().unwrap()
}

fn write_csv() -> Vec<u8> {
    let mut writer = CsvWriter::new(Vec::new()).unwrap();
    for p in &presentments() {
        writer.push(p).unwrap();
    }
    writer.finish().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/golden/clearing")
        .join(name)
}

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Hex of `bytes` around offset `at` (16 bytes either side, clipped), the
/// byte at `at` in brackets.
fn window(bytes: &[u8], at: usize) -> String {
    let start = at.saturating_sub(16).min(bytes.len());
    let end = (at + 17).min(bytes.len());
    let mut text = format!("@{start:#06x}:");
    for (offset, byte) in bytes[start..end].iter().enumerate() {
        if start + offset == at {
            text.push_str(&format!(" [{byte:02x}]"));
        } else {
            text.push_str(&format!(" {byte:02x}"));
        }
    }
    if at >= bytes.len() {
        text.push_str(" [end]");
    }
    text
}

/// Under `UPDATE_GOLDEN=1`, rewrites the three fixtures from the writers,
/// once, before any test reads them (tests run on parallel threads).
fn update_fixtures_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let files = [
            (BLOCKED, write_ipm(true).0),
            (VBS, write_ipm(false).0),
            (CSV, write_csv()),
        ];
        for (name, bytes) in files {
            let path = fixture(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            eprintln!(
                "UPDATE_GOLDEN: wrote {} ({} bytes)",
                path.display(),
                bytes.len()
            );
        }
    });
}

/// The bytes of the fixture `name`.
fn read_fixture(name: &str) -> Vec<u8> {
    if update() {
        update_fixtures_once();
    }
    let path = fixture(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_GOLDEN=1 cargo test --test golden_clearing writes it)",
            path.display()
        )
    })
}

/// Compares `built` with the fixture `name` byte for byte; on a mismatch,
/// says where, with the bytes around it in hex.
fn check_golden(name: &str, built: &[u8]) {
    let golden = read_fixture(name);
    if golden == built {
        return;
    }
    let at = golden
        .iter()
        .zip(built)
        .position(|(a, b)| a != b)
        .unwrap_or(golden.len().min(built.len()));
    panic!(
        "{name}: differs from the golden file at byte {at} ({at:#x}); golden {} bytes, \
         written {} bytes\n  golden  {}\n  written {}\n\
         If the change is intended: UPDATE_GOLDEN=1 cargo test --test golden_clearing, \
         then re-run the cardutil check in fixtures/golden/clearing/README.md",
        golden.len(),
        built.len(),
        window(&golden, at),
        window(built, at),
    );
}

#[test]
fn ipm_blocked_is_byte_for_byte_the_golden_file() {
    let (bytes, totals) = write_ipm(true);
    assert_eq!(
        totals,
        IpmTotals {
            messages: 6,
            presentments: 4,
            amount_checksum: 4599 + 1250 + 18750 + 12800,
        }
    );
    assert_eq!(bytes.len() % 1014, 0, "whole 1014-byte blocks");
    check_golden(BLOCKED, &bytes);
}

#[test]
fn ipm_vbs_is_byte_for_byte_the_golden_file() {
    let (bytes, _) = write_ipm(false);
    check_golden(VBS, &bytes);
}

#[test]
fn csv_is_byte_for_byte_the_golden_file() {
    check_golden(CSV, &write_csv());
}

/// The blocked fixture is the VBS fixture cut into 1,012-byte pieces, each
/// followed by 40 40, the last padded with 0x40.
#[test]
fn blocked_fixture_is_the_vbs_fixture_blocked() {
    let blocked = read_fixture(BLOCKED);
    let vbs = read_fixture(VBS);
    assert_eq!(blocked.len() % 1014, 0);
    let mut data = Vec::new();
    for block in blocked.chunks(1014) {
        assert_eq!(&block[1012..], [0x40, 0x40], "block ends with 40 40");
        data.extend_from_slice(&block[..1012]);
    }
    assert!(data.len() >= vbs.len());
    assert_eq!(&data[..vbs.len()], &vbs[..]);
    assert!(data[vbs.len()..].iter().all(|&b| b == 0x40), "padding");
    assert_eq!(&vbs[vbs.len() - 4..], [0, 0, 0, 0], "VBS end record");
}

fn read_ipm(bytes: &[u8], blocked: bool) -> Vec<IpmMessage> {
    IpmReader::new(bytes, blocked)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// The golden IPM file read back: what every message means, not only its
/// bytes.
#[test]
fn golden_ipm_reads_back_to_the_presentments() {
    let blocked = read_fixture(BLOCKED);
    let messages = read_ipm(&blocked, true);
    assert_eq!(messages, read_ipm(&read_fixture(VBS), false));
    let detected = IpmReader::detect(&blocked[..]).unwrap();
    assert!(detected.blocked());

    let items = presentments();
    assert_eq!(messages.len(), items.len() + 2);
    // 002 (member to clearing system), 261125, processor ID, sequence 1.
    let file_id = "0022611250000001234500001";
    assert_eq!(info(true).file_id().unwrap(), file_id);

    let header = &messages[0];
    assert_eq!(header.mti, "1644");
    assert_eq!(header.function_code(), Some("697"));
    assert_eq!(header.field(71), Some("00000001"));
    assert_eq!(header.pds(105), Some(file_id));
    assert_eq!(
        header.fields.keys().copied().collect::<Vec<_>>(),
        [24, 48, 71]
    );

    // (DE 2, DE 4, DE 31, DE 49) of each 1240, literally.
    let expected = [
        (
            "5413330089010434",
            "000000004599",
            "24123456329000000010017",
            "826",
        ),
        (
            "5555555555554444",
            "000000001250",
            "24123456329000000010025",
            "826",
        ),
        (
            "2223000048400011",
            "000000018750",
            "24123456329000000010033",
            "840",
        ),
        (
            "5105105105105100",
            "000000012800",
            "24123456329000000010041",
            "392",
        ),
    ];
    for (i, (m, (pan, amount, ard, currency))) in messages[1..=4].iter().zip(expected).enumerate() {
        let what = format!("1240 #{}", i + 1);
        assert_eq!(m.mti, "1240", "{what}");
        assert_eq!(m.field(2), Some(pan), "{what} DE 2");
        assert_eq!(m.field(4), Some(amount), "{what} DE 4");
        assert_eq!(m.function_code(), Some("200"), "{what} DE 24");
        assert_eq!(m.field(31), Some(ard), "{what} DE 31");
        assert_eq!(m.field(32), Some(ACQUIRING_INSTITUTION), "{what} DE 32");
        assert_eq!(m.field(33), Some(FORWARDING_INSTITUTION), "{what} DE 33");
        assert_eq!(m.field(49), Some(currency), "{what} DE 49");
        let number = format!("{:08}", i + 2);
        assert_eq!(m.field(71), Some(number.as_str()), "{what} DE 71");
        assert_eq!(m.field(94), Some(FORWARDING_INSTITUTION), "{what} DE 94");
        assert_eq!(
            m.fields.keys().copied().collect::<Vec<_>>(),
            [
                2, 3, 4, 12, 22, 24, 26, 31, 32, 33, 38, 42, 43, 48, 49, 71, 94
            ],
            "{what}: elements"
        );
    }

    let [purchase, refund, completion, yen] = &messages[1..=4] else {
        unreachable!()
    };
    assert_eq!(purchase.field(3), Some("000000"));
    assert_eq!(purchase.field(12), Some("261125093015"));
    assert_eq!(purchase.field(22), Some("D19101C99001"), "chip, PIN");
    assert_eq!(purchase.pds(23), Some("NA"));
    assert_eq!(
        purchase.field(43),
        Some("ACME SUPERMARKET 123\\\\LONDON\\             GBR")
    );
    assert_eq!(refund.field(3), Some("200000"));
    assert_eq!(refund.field(22), Some("009550S99000"), "e-commerce");
    assert_eq!(refund.pds(23), Some("CT6"));
    assert_eq!(
        refund.field(43),
        Some("WEB SHOP [UK]\\\\MANCHESTER\\             GBR"),
        "CP500 [ ]"
    );
    assert_eq!(completion.field(3), Some("000000"));
    assert_eq!(completion.field(26), Some("7011"));
    assert_eq!(completion.field(22).map(|c| &c[..1]), Some("M"));
    assert_eq!(
        completion.field(43),
        Some("GRAND HOTEL\\\\NEW YORK\\          NY USA")
    );
    assert_eq!(yen.field(42), Some("MERCHANT0000004"));
    assert_eq!(yen.field(38), Some("019283"));

    let trailer = &messages[5];
    assert_eq!(trailer.mti, "1644");
    assert_eq!(trailer.function_code(), Some("695"));
    assert_eq!(trailer.field(71), Some("00000006"));
    assert_eq!(trailer.pds(105), Some(file_id));
    assert_eq!(
        trailer.pds(301),
        Some("0000000000037399"),
        "4599+1250+18750+12800"
    );
    assert_eq!(trailer.pds(306), Some("00000006"));
}

#[test]
fn golden_csv_reads_back_to_the_presentments() {
    let text = String::from_utf8(read_fixture(CSV)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(text.ends_with('\n') && !text.contains('\r'));
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0], HEADER);
    assert_eq!(
        lines[1],
        "1001,24123456329000000010017,633009000101,5413330089010434,000000,debit,4599,826,\
         261125093015,483920,MERCHANT0000001,5411,TERM0001,000101"
    );
    let kinds: Vec<(&str, &str, &str)> = lines[1..5]
        .iter()
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), HEADER.split(',').count(), "{line}");
            (cols[5], cols[6], cols[7])
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("debit", "4599", "826"),
            ("credit", "1250", "826"),
            ("debit", "18750", "840"),
            ("debit", "12800", "392"),
        ]
    );
    // Control totals over every currency: debits, credits.
    assert_eq!(lines[5], "TRAILER,4,36149,1250");
}

#[test]
fn ards_are_the_switch_s() {
    for p in presentments() {
        assert_eq!(
            ard(ACQUIRER_BIN, DATE, p.txn).as_deref(),
            Some(p.ard.as_str()),
            "txn {}",
            p.txn
        );
    }
}
