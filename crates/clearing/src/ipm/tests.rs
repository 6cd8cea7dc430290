//! The IPM writer and reader, against the layout and each other.

use bytes::Bytes;
use iso8583::Message;
use zeroize::Zeroizing;

use super::pos::NameLocation;
use super::*;
use crate::item::{ClearedKind, Presentment};

fn info(blocked: bool) -> FileInfo {
    FileInfo {
        date: "20240315".into(),
        processor_id: "00000012345".into(),
        sequence: 7,
        acquiring_institution: "412345".into(),
        forwarding_institution: "412345".into(),
        blocked,
    }
}

fn presentment(txn: TxnId, amount: u64) -> Presentment {
    Presentment {
        txn,
        kind: ClearedKind::Purchase,
        pan: Zeroizing::new("5413330089010434".into()),
        masked_pan: "541333******0434".into(),
        processing_code: "000000".into(),
        amount,
        approved_amount: amount,
        currency: "826".into(),
        local_time: "240315101112".into(),
        entry_mode: "051".into(),
        condition: "00".into(),
        merchant_id: "MERCHANT0000001".into(),
        mcc: "5411".into(),
        name_location: location("DEMO STORE [1]!^|", "LONDON", "GBR"),
        terminal: "TERM0001".into(),
        stan: "000123".into(),
        rrn: "240315000123".into(),
        auth_id: "A1B2C3".into(),
        destination: "mc".into(),
        ard: "24123454075000000000121".into(),
        date: "20240315".into(),
    }
}

/// A 1987 field 43: name (22) and a space, city (13) and a space, code.
fn location(name: &str, city: &str, code: &str) -> String {
    format!("{name:<23}{city:<14}{code}")
}

fn write_file(blocked: bool, items: &[Presentment]) -> (Vec<u8>, IpmTotals) {
    let mut writer = IpmWriter::new(Vec::new(), &info(blocked)).unwrap();
    for p in items {
        writer.push(p).unwrap();
    }
    writer.finish().unwrap()
}

fn read_all(bytes: &[u8], blocked: bool) -> Vec<IpmMessage> {
    IpmReader::new(bytes, blocked)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn ebcdic(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    cp500::encode_printable(text.as_bytes(), &mut out).unwrap();
    out
}

#[test]
fn header_bytes_by_hand() {
    let (bytes, _) = write_file(false, &[]);
    let mut expected = vec![0x00, 0x00, 0x00, 66];
    expected.extend_from_slice(&[0xF1, 0xF6, 0xF4, 0xF4]); // 1644
    // bits 1, 24, 48 | 71
    expected.extend_from_slice(&[0x80, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00]);
    expected.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    expected.extend_from_slice(&[0xF6, 0xF9, 0xF7]); // DE 24 697
    expected.extend(ebcdic("032")); // DE 48 LLL
    expected.extend(ebcdic("0105025"));
    expected.extend(ebcdic("0022403150000001234500007")); // file ID
    expected.extend(ebcdic("00000001")); // DE 71
    assert_eq!(expected.len(), 70);
    assert_eq!(
        bytes.get(..70),
        Some(&expected[..]),
        "{}",
        hex::encode(&bytes)
    );
    assert_eq!(info(false).file_id().unwrap(), "0022403150000001234500007");
}

#[test]
fn round_trip_unblocked_and_blocked() {
    let mut items: Vec<Presentment> = (1..=5).map(|i| presentment(i, 1000 * i)).collect();
    items[1].kind = ClearedKind::Refund;
    items[1].processing_code = "200000".into();
    items[2].auth_id = String::new();
    items[3].entry_mode = "812".into();
    items[3].condition = "59".into();
    items[4].name_location = location("SHOP ON MAIN", "NEW YORK", "NY ");
    items[4].mcc = "6011".into();
    for blocked in [false, true] {
        let (bytes, totals) = write_file(blocked, &items);
        assert_eq!(
            totals,
            IpmTotals {
                messages: 7,
                presentments: 5,
                amount_checksum: 15_000
            }
        );
        let messages = read_all(&bytes, blocked);
        assert_eq!(messages.len(), 7);
        let detected: Vec<_> = IpmReader::detect(&bytes[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(detected, messages, "detect, blocked = {blocked}");

        let header = &messages[0];
        assert_eq!(header.mti, "1644");
        assert_eq!(header.function_code(), Some("697"));
        assert_eq!(header.pds(105), Some("0022403150000001234500007"));
        assert_eq!(header.field(71), Some("00000001"));

        for (i, (m, p)) in messages[1..6].iter().zip(&items).enumerate() {
            assert_eq!(m.mti, "1240");
            assert_eq!(m.record, i as u64 + 2);
            assert_eq!(m.field(2), Some(p.pan.as_str()));
            assert_eq!(m.field(3), Some(p.processing_code.as_str()));
            assert_eq!(m.field(4), Some(format!("{:012}", p.amount).as_str()));
            assert_eq!(m.field(12), Some("240315101112"));
            assert_eq!(m.field(24), Some("200"));
            assert_eq!(m.field(26), Some(p.mcc.as_str()));
            assert_eq!(m.field(31), Some(p.ard.as_str()));
            assert_eq!(m.field(32), Some("412345"));
            assert_eq!(m.field(42), Some("MERCHANT0000001"));
            assert_eq!(m.field(49), Some("826"));
            assert_eq!(m.field(71), Some(format!("{:08}", i + 2).as_str()));
        }
        let m = &messages[1..6];
        assert_eq!(m[0].field(22), Some("D19101C99001"));
        assert_eq!(m[0].field(38), Some("A1B2C3"));
        let de43 = format!("DEMO STORE [1]!^|\\\\LONDON\\{}GBR", " ".repeat(13));
        assert_eq!(m[0].field(43), Some(de43.as_str()));
        assert_eq!(m[0].pds(23), Some("NA"));
        assert_eq!(m[0].pds.len(), 1);
        assert_eq!(m[2].field(38), None);
        assert_eq!(m[3].field(22), Some("009550S99000"));
        assert_eq!(m[3].pds(23), Some("CT6"));
        let de43 = format!("SHOP ON MAIN\\\\NEW YORK\\{}NY USA", " ".repeat(10));
        assert_eq!(m[4].field(43), Some(de43.as_str()));
        assert_eq!(m[4].pds(23), Some("ATM"));

        let trailer = &messages[6];
        assert_eq!(trailer.function_code(), Some("695"));
        assert_eq!(trailer.pds(105), header.pds(105));
        assert_eq!(trailer.pds(301), Some("0000000000015000"));
        assert_eq!(trailer.pds(306), Some("00000007"));
        assert_eq!(trailer.field(71), Some("00000007"));
    }
}

#[test]
fn vbs_ends_with_zero_length_record() {
    let (bytes, _) = write_file(false, &[presentment(1, 5)]);
    assert_eq!(bytes.get(bytes.len() - 4..), Some(&[0u8, 0, 0, 0][..]));
    // Walk the length chain: header, presentment, trailer, end.
    let mut at = 0;
    let mut lengths = Vec::new();
    loop {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        lengths.push(len);
        at += 4 + len;
        if len == 0 {
            break;
        }
    }
    assert_eq!(at, bytes.len());
    assert_eq!(lengths.len(), 4);
}

#[test]
fn blocks_of_1014_with_padding() {
    let items: Vec<Presentment> = (1..=40).map(|i| presentment(i, i)).collect();
    let (plain, _) = write_file(false, &items);
    let (blocked, _) = write_file(true, &items);
    assert!(plain.len() > 3 * BLOCK_DATA, "spans several blocks");
    assert_eq!(blocked.len() % BLOCK, 0);
    assert_eq!(blocked.len() / BLOCK, plain.len().div_ceil(BLOCK_DATA));
    let mut unblocked = Vec::new();
    for block in blocked.chunks(BLOCK) {
        assert_eq!(block.len(), BLOCK);
        assert_eq!(&block[BLOCK_DATA..], &[PAD, PAD]);
        unblocked.extend_from_slice(&block[..BLOCK_DATA]);
    }
    assert_eq!(&unblocked[..plain.len()], &plain[..]);
    assert!(unblocked[plain.len()..].iter().all(|&b| b == PAD));
    // A file that is exactly one block long gets no extra block.
    let (small, _) = write_file(true, &[]);
    assert_eq!(small.len(), BLOCK);
}

#[test]
fn trailer_checksum_and_count() {
    let items: Vec<Presentment> = (1..=3).map(|i| presentment(i, 999_999_999_999)).collect();
    let (bytes, totals) = write_file(true, &items);
    assert_eq!(totals.messages, 5);
    assert_eq!(totals.amount_checksum, 2_999_999_999_997);
    let trailer = read_all(&bytes, true).pop().unwrap();
    assert_eq!(trailer.pds(301), Some("0002999999999997"));
    assert_eq!(trailer.pds(306), Some("00000005"));
}

#[test]
fn checksum_overflow_is_refused_before_writing() {
    let mut writer = IpmWriter::new(Vec::new(), &info(false)).unwrap();
    let big = presentment(1, 999_999_999_999);
    for _ in 0..10_000 {
        writer.push(&big).unwrap();
    }
    assert!(matches!(
        writer.push(&big),
        Err(IpmError::Full { txn: 1, .. })
    ));
    writer.push(&presentment(2, 9_999)).unwrap();
    let (bytes, totals) = writer.finish().unwrap();
    assert_eq!(totals.amount_checksum, MAX_CHECKSUM);
    assert_eq!(totals.presentments, 10_001);
    let trailer = read_all(&bytes, false).pop().unwrap();
    assert_eq!(trailer.pds(301), Some("9999999999999999"));
}

#[test]
fn bad_presentments_are_refused_and_the_file_stays_valid() {
    type Spoil = fn(&mut Presentment);
    let cases: [(u8, Spoil); 16] = [
        (2, |p| p.pan = Zeroizing::new("54133300890104X4".into())),
        (2, |p| p.pan = Zeroizing::new("54133300890104345678".into())),
        (2, |p| p.pan = Zeroizing::new(String::new())),
        (3, |p| p.processing_code = "00000".into()),
        (4, |p| p.amount = 1_000_000_000_000),
        (12, |p| p.local_time = "240230101112".into()),
        (12, |p| p.local_time = "2403151011".into()),
        (26, |p| p.mcc = "54a1".into()),
        (31, |p| p.ard = "2412345".into()),
        (38, |p| p.auth_id = "1234567".into()),
        (38, |p| p.auth_id = "12\u{e9}45".into()),
        (42, |p| p.merchant_id = "M\tX".into()),
        (43, |p| {
            p.name_location = location("SHOP\\ONE", "LONDON", "GBR")
        }),
        (43, |p| p.name_location = location("SHOP", "LONDON", "826")),
        (43, |p| p.name_location = String::new()),
        (49, |p| p.currency = "GBP".into()),
    ];
    let mut writer = IpmWriter::new(Vec::new(), &info(true)).unwrap();
    for (i, (de, spoil)) in cases.iter().enumerate() {
        let mut p = presentment(100 + i as u64, 1);
        spoil(&mut p);
        match writer.push(&p) {
            Err(IpmError::Field {
                txn,
                de: got,
                reason,
            }) => {
                assert_eq!((txn, got), (100 + i as u64, *de), "{reason}");
                assert!(!reason.contains("5413"));
            }
            other => panic!("case {i}: {other:?}"),
        }
    }
    writer.push(&presentment(1, 10)).unwrap();
    let (bytes, totals) = writer.finish().unwrap();
    assert_eq!(totals.presentments, 1);
    let messages = read_all(&bytes, true);
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1].field(71), Some("00000002"));
}

#[test]
fn bad_file_info_is_refused() {
    let cases: [fn(&mut FileInfo); 6] = [
        |i| i.date = "20240230".into(),
        |i| i.date = "2024031".into(),
        |i| i.processor_id = "1234".into(),
        |i| i.sequence = 0,
        |i| i.sequence = 100_000,
        |i| i.acquiring_institution = "123456789012".into(),
    ];
    for spoil in cases {
        let mut i = info(false);
        spoil(&mut i);
        assert!(matches!(
            IpmWriter::new(Vec::new(), &i),
            Err(IpmError::FileInfo { .. })
        ));
    }
}

#[test]
fn pos_data_code_mapping() {
    let cases = [
        ("051", "00", "D19101C99001"),        // chip, PIN pad
        ("071", "00", "M19101M99001"),        // contactless M/Chip
        ("901", "00", "219101B99001"),        // magnetic stripe, full track
        ("912", "00", "A09101A99000"),        // contactless stripe, no PIN pad
        ("801", "00", "D19101B99001"),        // chip fallback to stripe
        ("012", "08", "609910699000"),        // keyed, mail/telephone order
        ("812", "59", "009550S99000"),        // e-commerce
        ("100", "01", "099910799001"),        // credential on file
        ("028", "02", "251201299001"),        // unattended, PIN pad down
        ("", "", "099999099001"),             // nothing known
        ("ab", "zz", "099999099001"),         // garbage: nothing known
        ("A00101A00000", "", "A00101A00000"), // already ISO 8583:1993
    ];
    for (mode, condition, expected) in cases {
        let got = pos_data_code(mode, condition);
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            expected,
            "{mode} / {condition}"
        );
    }
}

#[test]
fn name_location_mapping() {
    let l = NameLocation::parse(b"CLOSED STORE           LONDON        GBR").unwrap();
    assert_eq!((l.name, l.city), (&b"CLOSED STORE"[..], &b"LONDON"[..]));
    assert_eq!((l.state, l.country), (*b"   ", *b"GBR"));
    let l = NameLocation::parse(b"A                      NEW YORK      NY ").unwrap();
    assert_eq!((l.state, l.country), (*b"NY ", *b"USA"));
    assert!(NameLocation::parse(b"ABCDEFGHIJKLMNOPQRSTUVW LONDON        GBR").is_err());
    assert!(NameLocation::parse(b"ABCDEFGHIJKLMNOPQRSTUV LONDON        GBR").is_ok());
    assert!(NameLocation::parse(b"                       LONDON        GBR").is_err());
    assert!(NameLocation::parse(b"SHOP                   LONDON        gbr").is_err());
    assert!(NameLocation::parse(b"SHOP                   LONDON").is_err());
    let no_city = location("SHOP", "", "FRA");
    let l = NameLocation::parse(no_city.as_bytes()).unwrap();
    assert_eq!(l.city, b"");
}

#[test]
fn reader_errors_name_record_and_offset() {
    let items = [presentment(1, 1), presentment(2, 2)];
    let (plain, _) = write_file(false, &items);
    let header_len = 70;
    let first_len = u32::from_be_bytes(plain[70..74].try_into().unwrap()) as usize;

    // Truncated in the second presentment.
    let cut = &plain[..header_len + 4 + first_len + 10];
    let results: Vec<_> = IpmReader::new(cut, false).collect();
    assert_eq!(results.len(), 3);
    assert!(matches!(
        results[2],
        Err(IpmError::Truncated { record: 3, offset }) if offset == (header_len + 4 + first_len) as u64
    ));

    // No end record.
    let cut = &plain[..plain.len() - 4];
    let last = IpmReader::new(cut, false).last().unwrap();
    assert!(matches!(last, Err(IpmError::Truncated { record: 5, .. })));

    // An unknown data element (bit 7) in the first presentment.
    let mut bad = plain.clone();
    bad[header_len + 8] |= 0x02;
    let err = IpmReader::new(&bad[..], false).nth(1).unwrap().unwrap_err();
    assert!(
        matches!(&err, IpmError::Malformed { record: 2, offset, reason } if *offset == (header_len + 8) as u64 && reason.contains("DE 7")),
        "{err}"
    );

    // A PAN length prefix that is not digits.
    let mut bad = plain.clone();
    bad[header_len + 24] = 0xC1;
    let err = IpmReader::new(&bad[..], false).nth(1).unwrap().unwrap_err();
    assert!(
        matches!(&err, IpmError::Malformed { record: 2, offset, .. } if *offset == (header_len + 24) as u64),
        "{err}"
    );

    // A huge record length is refused before allocating.
    let mut bad = plain.clone();
    bad[..4].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    let err = IpmReader::new(&bad[..], false).next().unwrap().unwrap_err();
    assert!(matches!(
        err,
        IpmError::Malformed {
            record: 1,
            offset: 0,
            ..
        }
    ));

    // Blocked file read with a damaged block trailer: the offset is the
    // stored file's.
    let many: Vec<Presentment> = (1..=10).map(|i| presentment(i, i)).collect();
    let (mut blocked, _) = write_file(true, &many);
    blocked[BLOCK + BLOCK_DATA] = 0x00;
    let err = IpmReader::new(&blocked[..], true)
        .find_map(Result::err)
        .unwrap();
    assert!(
        matches!(&err, IpmError::Malformed { offset, .. } if *offset == (BLOCK + BLOCK_DATA) as u64),
        "{err}"
    );
    // Offsets of messages in a blocked file count the padding.
    let (blocked, _) = write_file(true, &many);
    let (plain, _) = write_file(false, &many);
    let stored: Vec<u64> = read_all(&blocked, true).iter().map(|m| m.offset).collect();
    let vbs: Vec<u64> = read_all(&plain, false).iter().map(|m| m.offset).collect();
    assert!(stored.iter().any(|&o| o > BLOCK as u64));
    for (s, v) in stored.iter().zip(&vbs) {
        assert_eq!(*s, v + 2 * (v / BLOCK_DATA as u64));
    }
}

#[test]
fn reader_errors_from_the_dialect() {
    let (plain, _) = write_file(false, &[presentment(1, 1)]);
    // The first presentment: record at 70, message at 74.
    let first = 74;
    let error_at = |spoil: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = plain.clone();
        spoil(&mut bytes);
        match IpmReader::new(&bytes[..], false).nth(1) {
            Some(Err(IpmError::Malformed {
                record,
                offset,
                reason,
            })) => (record, offset, reason),
            other => panic!("{other:?}"),
        }
    };
    // Version digit 0: not an ISO 8583:1993 message type.
    let (record, offset, reason) = error_at(&|b| b[first] = 0xF0);
    assert_eq!((record, offset), (2, first as u64));
    assert!(reason.contains("0240 is not an ISO 8583:1993"), "{reason}");
    // Bit 1 cleared.
    let (_, offset, reason) = error_at(&|b| b[first + 4] &= 0x7F);
    assert_eq!(offset, first as u64 + 4);
    assert!(reason.starts_with("bit 1 (secondary bitmap"), "{reason}");
    // A PAN length of 25: beyond DE 2's maximum.
    let (_, offset, reason) =
        error_at(&|b| b[first + 20..first + 22].copy_from_slice(&[0xF2, 0xF5]));
    assert_eq!(offset, first as u64 + 20);
    assert_eq!(reason, "DE 2 length 25 is beyond the IPM maximum 19");
    // A PDS tag that is not digits: the offset is the tag's in the file.
    let tag = plain
        .windows(7)
        .position(|w| w == ebcdic("0023002"))
        .unwrap();
    let (_, offset, reason) = error_at(&|b| b[tag + 1] = 0xC1);
    assert_eq!(offset, tag as u64);
    assert_eq!(reason, "DE 48: PDS tag is not 4 EBCDIC digits");
    // A DE 2 running past the end of the record.
    let mut short = plain[..first + 24].to_vec();
    short[70..74].copy_from_slice(&24u32.to_be_bytes());
    short.extend_from_slice(&[0, 0, 0, 0]);
    let err = IpmReader::new(&short[..], false)
        .nth(1)
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, IpmError::Malformed { offset, reason, .. }
            if *offset == first as u64 + 22 && reason == "DE 2 (16 bytes) runs past the end of the record"),
        "{err}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(500))]

    /// Whatever record the `ipm` dialect decodes, it encodes again to
    /// the same bytes (the invariant the codec's fuzz target checks for
    /// every built-in dialect), edits or not.
    #[test]
    fn decoded_records_encode_to_the_same_bytes(
        edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 0..4),
    ) {
        let (bytes, _) = write_file(false, &[presentment(1, 1), presentment(2, 2)]);
        let dialect = ipm_dialect().unwrap();
        let mut at = 0;
        while let Some(prefix) = bytes.get(at..at + 4) {
            let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            let mut record = bytes[at + 4..at + 4 + len].to_vec();
            for (i, value) in &edits {
                let i = i % record.len();
                record[i] = *value;
            }
            let frame = Bytes::from(record);
            if let Ok(m) = Message::decode(&dialect, frame.clone()) {
                proptest::prop_assert_eq!(m.to_bytes(&dialect).unwrap(), frame);
            }
            at += 4 + len;
        }
    }
}

/// Written by cardutil 0.7.3 (`IpmWriter(out, encoding='cp500')`, see
/// `specs/clearing-ipm.md`): header, one 1240 with elements this crate
/// does not write (DE 5, 9, 14, 23, 33, 37, 41, 50, binary DE 55, three
/// PDS), trailer.
const CARDUTIL_FILE: &str = "00000042f1f6f4f480000100000100000200000000000000f6f9f7f0f3f2f0f1f0f5f0f2f5f0f0f1f2f4f0f3f1f5f0f0f0f0f0f0f5f8f9f1f0f0f1f1f0f1f0f0f0f0f0f0f0f10000012cf1f2f4f0f89407428ce1c2000200000000000000f1f6f2f2f2f3f0f0f0f0f4f8f4f0f0f0f1f1f0f0f0f0f0f0f0f0f0f0f0f0f0f1f2f3f4f5f0f0f0f0f0f0f0f1f5f0f0f0f6f1f0f0f0f0f0f0f2f4f0f3f1f4f2f3f5f9f0f1f2f7f1f2c3f5f1f0f1f0c3f1f1f1f0f1f0f0f1f2f0f0f5f9f9f9f2f3f7f5f4f1f2f3f4f5f4f0f7f5f0f0f0f0f0f0f0f0f1f2f3f0f6f0f0f0f0f0f0d9d9d5f0f0f0f0f0f0f0f0f1c1c2c3f1f2f3e3c5d9d4f0f0f0f1d4c5d9c3c8f0f0f0f0f0f0f0f0f0f1f4f4c3c1c6c5404ae4d5d65ae0f140c8c9c7c840e2e34fe0d7c1d9c9e2e0f7f5f0f0f140404040405fbb40c6d9c1f0f3f5f0f0f2f3f0f0f3c3e3f2f0f1f5f8f0f1f0d4c3c3f1f1f1f1f1f1e7f0f1f6f5f0f0f1d4f9f7f8f8f2f6f0f1f19f2608a1b2c3d4e5f60718f0f0f0f0f0f0f0f200000068f1f6f4f480000100000100000200000000000000f6f9f5f0f7f0f0f1f0f5f0f2f5f0f0f1f2f4f0f3f1f5f0f0f0f0f0f0f5f8f9f1f0f0f1f1f0f1f0f3f0f1f0f1f6f0f0f0f0f0f0f0f0f0f0f0f1f2f3f4f5f0f3f0f6f0f0f8f0f0f0f0f0f0f0f3f0f0f0f0f0f0f0f300000000";

#[test]
fn reads_a_file_written_by_cardutil() {
    let plain = hex::decode(CARDUTIL_FILE).unwrap();
    // cardutil's blocked output of the same records: these bytes padded
    // with 40 to one block.
    let mut blocked = plain.clone();
    blocked.resize(BLOCK, PAD);
    for (bytes, is_blocked) in [(&plain, false), (&blocked, true)] {
        let messages = read_all(bytes, is_blocked);
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].pds(105), Some("0012403150000005891001101"));
        let m = &messages[1];
        assert_eq!(m.mti, "1240");
        let expect = [
            (2, "2223000048400011"),
            (4, "000000012345"),
            (5, "000000015000"),
            (9, "61000000"),
            (12, "240314235901"),
            (14, "2712"),
            (22, "C51010C11101"),
            (23, "001"),
            (33, "000000"),
            (37, "RRN000000001"),
            (41, "TERM0001"),
            (43, "CAFE [UNO]\\1 HIGH ST!\\PARIS\\75001     ^| FRA"),
            (48, "0023003CT20158010MCC111111X0165001M"),
            (50, "826"),
            (55, "9F2608A1B2C3D4E5F60718"),
            (71, "00000002"),
        ];
        for (de, value) in expect {
            assert_eq!(m.field(de), Some(value), "DE {de}");
        }
        assert_eq!(m.pds(23), Some("CT2"));
        assert_eq!(m.pds(158), Some("MCC111111X"));
        assert_eq!(m.pds(165), Some("M"));
        assert_eq!(messages[2].pds(301), Some("0000000000012345"));
        assert_eq!(messages[2].pds(306), Some("00000003"));
    }
}

#[test]
fn debug_masks_the_pan() {
    let (bytes, _) = write_file(false, &[presentment(1, 1)]);
    let m = &read_all(&bytes, false)[1];
    let shown = format!("{m:?}");
    assert!(shown.contains("541333******0434"), "{shown}");
    assert!(!shown.contains("5413330089010434"));
}

/// Feeds `bytes` to the reader (blocked, unblocked and detected) to the
/// end; it must stop without panicking.
fn read_everything(bytes: &[u8]) {
    for blocked in [false, true] {
        let count = IpmReader::new(bytes, blocked).take(100_000).count();
        assert!(count <= bytes.len() / 4 + 1);
    }
    if let Ok(reader) = IpmReader::detect(bytes) {
        let _ = reader.take(100_000).count();
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

    #[test]
    fn reader_never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
        read_everything(&bytes);
    }

    #[test]
    fn reader_never_panics_on_mutated_files(
        blocked: bool,
        count in 0usize..6,
        edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..8),
        cut in proptest::option::of(proptest::num::usize::ANY),
    ) {
        let items: Vec<Presentment> = (1..=count as u64).map(|i| presentment(i, i)).collect();
        let (mut bytes, _) = write_file(blocked, &items);
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        read_everything(&bytes);
    }
}

/// Writes sample files for the check with cardutil (see
/// `specs/clearing-ipm.md`): `cargo test --lib clearing::ipm -- --ignored
/// write_sample_files`, then read `/tmp/cardswitch-ipm-sample-*.ipm`.
#[test]
#[ignore]
fn write_sample_files() {
    let mut items: Vec<Presentment> = (1..=3).map(|i| presentment(i, 1234 * i)).collect();
    items[1].processing_code = "200000".into();
    items[1].kind = ClearedKind::Refund;
    items[2].entry_mode = "812".into();
    items[2].condition = "59".into();
    items[2].auth_id = "XY789 ".into();
    for (blocked, name) in [(true, "blocked"), (false, "vbs")] {
        let (bytes, totals) = write_file(blocked, &items);
        let path = std::env::temp_dir().join(format!("cardswitch-ipm-sample-{name}.ipm"));
        std::fs::write(&path, &bytes).unwrap();
        println!("{}: {} bytes, {totals:?}", path.display(), bytes.len());
    }
}

/// Throughput of the writer (release: `cargo test --release --lib
/// clearing::ipm -- --ignored --nocapture writer_throughput`).
#[test]
#[ignore]
fn writer_throughput() {
    let items: Vec<Presentment> = (1..=1000).map(|i| presentment(i, i)).collect();
    let total = 2_000_000;
    for blocked in [false, true] {
        let start = std::time::Instant::now();
        let mut writer = IpmWriter::new(io::sink(), &info(blocked)).unwrap();
        for i in 0..total {
            writer.push(&items[i % items.len()]).unwrap();
        }
        let (_, totals) = writer.finish().unwrap();
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "blocked={blocked}: {} records in {seconds:.3} s = {:.0} records/s",
            totals.presentments,
            totals.presentments as f64 / seconds
        );
    }
}
