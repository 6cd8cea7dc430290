//! Reconciliation: matching, bank files, break reports.

use super::*;
use crate::ipm::{FileInfo, IpmWriter};
use crate::item::ClearedKind;

#[test]
fn break_reports_are_named_after_their_destination() {
    assert_eq!(
        breaks_file_name("20261125", Some("bank_a")).unwrap(),
        "breaks-bank_a-20261125.csv"
    );
    assert_eq!(
        breaks_file_name("20261125", None).unwrap(),
        "breaks-20261125.csv"
    );
    for bad in ["", "../x", "a/b", "a.b", "a b"] {
        assert!(
            matches!(
                breaks_file_name("20261125", Some(bad)),
                Err(ReconError::Destination(_))
            ),
            "{bad:?}"
        );
    }
}

fn s(txn: TxnId, rrn: &str, amount: u64) -> SwitchItem {
    SwitchItem {
        txn,
        ard: String::new(),
        rrn: rrn.into(),
        amount,
        currency: "978".into(),
        masked_pan: "476173******0119".into(),
        direction: Direction::Debit,
        destination: "visa".into(),
    }
}

fn b(line: usize, rrn: &str, amount: u64) -> BankItem {
    BankItem {
        line,
        rrn: rrn.into(),
        ard: String::new(),
        masked_pan: "476173******0119".into(),
        amount,
        currency: "978".into(),
        auth_code: "A00001".into(),
        direction: Direction::Debit,
    }
}

fn kinds(recon: &Recon) -> Vec<(BreakKind, String)> {
    recon
        .breaks()
        .iter()
        .map(|b| (b.kind, b.rrn.clone()))
        .collect()
}

#[test]
fn clean_recon() {
    let switch = vec![s(1, "R1", 100), s(2, "R2", 250)];
    let bank = vec![b(2, "R2", 250), b(3, "R1", 100)];
    let recon = reconcile(switch, bank);
    assert!(recon.is_clean(), "{:?}", recon.breaks());
    assert_eq!(recon.matched(), 2);
    assert_eq!(
        recon.totals().get("978"),
        Some(&Totals {
            count: 2,
            debits: 350,
            credits: 0
        })
    );
    let summary = recon.summary();
    assert!(summary.contains("matched: 2\n"), "{summary}");
    assert!(summary.contains("missing_at_bank: 0\n"), "{summary}");
    assert!(
        summary.contains("matched 978: 2 item(s), debits 350, credits 0"),
        "{summary}"
    );
    let mut out = Vec::new();
    recon.write_breaks(&mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{BREAKS_HEADER}\n")
    );
}

#[test]
fn every_break_kind() {
    let mut credit = s(5, "R5", 500);
    credit.direction = Direction::Credit;
    let switch = vec![
        s(1, "R1", 100),
        s(2, "R2", 200),
        s(3, "R3", 300),
        s(4, "R4", 400),
        credit,
        s(6, "R6", 600),
    ];
    let mut bank = vec![
        b(2, "R2", 201),
        b(3, "R3", 300),
        b(4, "R4", 400),
        b(5, "R5", 500),
        b(6, "R6", 600),
        b(7, "R9", 900),
    ];
    bank[1].currency = "840".into();
    bank[2].masked_pan = "476173******0127".into();
    let recon = reconcile(switch, bank);
    assert_eq!(
        kinds(&recon),
        [
            (BreakKind::MissingAtBank, "R1".to_string()),
            (BreakKind::UnknownToSwitch, "R9".into()),
            (BreakKind::AmountMismatch, "R2".into()),
            (BreakKind::CurrencyMismatch, "R3".into()),
            (BreakKind::PanMismatch, "R4".into()),
            (BreakKind::DirectionMismatch, "R5".into()),
        ]
    );
    assert_eq!(recon.matched(), 1);
    assert!(!recon.is_clean());
    for kind in BreakKind::ALL {
        assert_eq!(recon.count(kind), 1, "{kind}");
    }
    let mut out = Vec::new();
    recon.write_breaks(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert_eq!(
        lines[1],
        "missing_at_bank,R1,R1,,100,,978,,476173******0119,,1,debit,"
    );
    assert_eq!(
        lines[2],
        "unknown_to_switch,R9,R9,,,900,,978,476173******0119,7,,,debit"
    );
    assert_eq!(
        lines[3],
        "amount_mismatch,R2,R2,,200,201,978,978,476173******0119,2,2,debit,debit"
    );
    assert_eq!(
        lines[5],
        "pan_mismatch,R4,R4,,400,400,978,978,476173******0119/476173******0127,4,4,debit,debit"
    );
    assert!(recon.summary().contains("type_mismatch: 1\n"));
}

#[test]
fn two_differences_are_two_breaks() {
    let mut bank = b(2, "R1", 101);
    bank.currency = "840".into();
    let recon = reconcile(vec![s(1, "R1", 100)], vec![bank]);
    assert_eq!(
        kinds(&recon),
        [
            (BreakKind::AmountMismatch, "R1".to_string()),
            (BreakKind::CurrencyMismatch, "R1".into())
        ]
    );
    assert_eq!(recon.matched(), 0);
}

#[test]
fn duplicate_rrns_resolved_by_amount() {
    // Three switch items share an RRN; the bank lines come in another
    // order and each finds the one with its amount.
    let switch = vec![s(1, "DUP", 100), s(2, "DUP", 200), s(3, "DUP", 300)];
    let bank = vec![b(2, "DUP", 300), b(3, "DUP", 100), b(4, "DUP", 200)];
    let recon = reconcile(switch.clone(), bank);
    assert!(recon.is_clean(), "{:?}", recon.breaks());
    assert_eq!(recon.matched(), 3);

    // Greedy matching in file order would take item 1 (amount 100) for
    // the first line and report two breaks; exact candidates go first.
    let bank = vec![b(2, "DUP", 999), b(3, "DUP", 100), b(4, "DUP", 300)];
    let recon = reconcile(switch, bank);
    let breaks = recon.breaks();
    assert_eq!(breaks.len(), 1, "{breaks:?}");
    assert_eq!(breaks[0].kind, BreakKind::AmountMismatch);
    assert_eq!(breaks[0].switch_txn, Some(2));
    assert_eq!(breaks[0].bank_line, Some(2));
}

#[test]
fn ard_first_then_rrn() {
    let mut a = s(1, "R1", 100);
    a.ard = "24123456330000000000017".into();
    let mut c = s(2, "R1", 100);
    c.ard = "24123456330000000000025".into();
    // The bank line has the second ARD and the same RRN as the first.
    let mut line = b(2, "R1", 100);
    line.ard = c.ard.clone();
    let recon = reconcile(vec![a.clone(), c.clone()], vec![line]);
    assert_eq!(recon.breaks().len(), 1);
    assert_eq!(recon.breaks()[0].kind, BreakKind::MissingAtBank);
    assert_eq!(recon.breaks()[0].switch_txn, Some(1));
    assert_eq!(recon.breaks()[0].key, a.ard);

    // An ARD the switch does not know is unknown even if its RRN is.
    let mut line = b(2, "R1", 100);
    line.ard = "24123456330000000000033".into();
    let recon = reconcile(vec![a], vec![line]);
    assert_eq!(recon.count(BreakKind::UnknownToSwitch), 1);
    assert_eq!(recon.count(BreakKind::MissingAtBank), 1);
}

#[test]
fn break_order_is_deterministic() {
    let switch: Vec<SwitchItem> = (0..20).map(|i| s(i, &format!("R{i:02}"), 10)).collect();
    let bank: Vec<BankItem> = (10..30)
        .map(|i| b(usize::try_from(i).unwrap(), &format!("R{i:02}"), 10))
        .collect();
    let one = reconcile(switch.clone(), bank.clone());
    let mut rev_switch = switch;
    rev_switch.reverse();
    let mut rev_bank = bank;
    rev_bank.reverse();
    let two = reconcile(rev_switch, rev_bank);
    assert_eq!(one.breaks(), two.breaks());
    assert_eq!(one.count(BreakKind::MissingAtBank), 10);
    assert_eq!(one.count(BreakKind::UnknownToSwitch), 10);
    assert_eq!(one.breaks()[0].rrn, "R00");
}

const GOOD: &str = "rrn,ard,pan,amount,currency,auth_code,type\n\
    612300000001,24123456330000000123475,476173******0119,1250,978,A00001,debit\n\
    612300000002,,476173******0127,990,978,A00002,credit\n\
    612300000003,,545454******5454,300,840,,debit\n\
    TRAILER,3,1550,990\n";

fn parse(text: &str) -> Result<Vec<BankItem>, ReconError> {
    read_bank_csv(text.as_bytes())
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn reads_the_documented_format() {
    let items = parse(GOOD).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].line, 2);
    assert_eq!(items[0].ard, "24123456330000000123475");
    assert_eq!(items[1].direction, Direction::Credit);
    assert_eq!(items[2].masked_pan, "545454******5454");
    assert_eq!(items[2].auth_code, "");
    // CRLF and no final newline are fine; the round trip is exact.
    let crlf = GOOD.replace('\n', "\r\n");
    assert_eq!(parse(crlf.trim_end()).unwrap(), items);
    let mut out = Vec::new();
    write_bank_csv(&items, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), GOOD);
    // The module documentation's example.
    let doc = "rrn,ard,pan,amount,currency,auth_code,type\n\
        612300000001,24123456330000000123475,476173******0119,1250,978,A00001,debit\n\
        612300000002,,476173******0127,990,978,A00002,credit\n\
        612300000003,,545454******5454,300,840,A00003,debit\n\
        TRAILER,3,1550,990\n";
    assert_eq!(parse(doc).unwrap().len(), 3);
    assert_eq!(parse(&format!("{CSV_HEADER}\nTRAILER,0,0,0")).unwrap(), []);
}

#[test]
fn parse_errors_name_line_and_column() {
    let replace = |line: usize, with: &str| {
        let mut lines: Vec<&str> = GOOD.lines().collect();
        lines[line - 1] = with;
        lines.join("\n")
    };
    let cases = [
        (
            replace(3, "612300000002,,476173******0127,990,978,A00002"),
            "line 3: 6 column(s), expected 7",
        ),
        (
            replace(3, "612300000002,,476173******0127,990,978,A00002,credit,x"),
            "line 3: 8 column(s)",
        ),
        (
            replace(3, "612300000002,,476173******0127,9x0,978,A00002,credit"),
            "line 3, column `amount`: expected digits",
        ),
        (
            replace(3, "612300000002,,476173******0127,-990,978,A00002,credit"),
            "line 3, column `amount`",
        ),
        (
            replace(
                3,
                "612300000002,,476173******0127,99999999999999999999,978,A00002,credit",
            ),
            "line 3, column `amount`: amount too large",
        ),
        (
            replace(2, "612300000001,,476173******0119,1250,97,A00001,debit"),
            "line 2, column `currency`",
        ),
        (
            replace(2, "612300000001,,476173******0119,1250,EUR,A00001,debit"),
            "line 2, column `currency`",
        ),
        (
            replace(4, "612300000003,,5454545454545454,300,840,,debit"),
            "line 4, column `pan`",
        ),
        (
            replace(4, "612300000003,123,545454******5454,300,840,,debit"),
            "line 4, column `ard`",
        ),
        (
            replace(4, "612300000003,,545454******5454,300,840,,refund"),
            "line 4, column `type`",
        ),
        (
            replace(4, "612300000003,,545454******5454,300,840,TOOLONG,debit"),
            "line 4, column `auth_code`",
        ),
        (
            replace(4, ",,545454******5454,300,840,,debit"),
            "line 4, column `rrn`",
        ),
        (replace(3, ""), "line 3: 1 column(s)"),
        (replace(1, "rrn,pan,amount"), "line 1: expected the header"),
        (String::new(), "line 1: empty file"),
        (
            format!("{CSV_HEADER}\n"),
            "line 2: end of file without the trailer",
        ),
        (
            GOOD.replace("TRAILER,3,1550,990\n", ""),
            "line 5: end of file without the trailer",
        ),
        (format!("{GOOD}more\n"), "line 6: text after the trailer"),
        (format!("{GOOD}\n"), "line 6: text after the trailer"),
    ];
    for (text, expected) in cases {
        let e = error(&text);
        assert!(
            e.starts_with(expected),
            "{e:?} should start with {expected:?}"
        );
        assert!(!e.contains("5454545454545454"), "no clear PAN in {e}");
    }
    let mut bytes = GOOD.as_bytes().to_vec();
    bytes[60] = 0xff;
    assert!(
        read_bank_csv(&bytes[..])
            .unwrap_err()
            .to_string()
            .starts_with("line 2: not UTF-8")
    );
    let long = format!("{CSV_HEADER}\n{}\n", "1".repeat(5000));
    assert!(error(&long).starts_with("line 2: longer than 1024 bytes"));
}

#[test]
fn trailer_mismatch_names_the_trailer_line() {
    let cases = [
        (
            "TRAILER,2,1550,990",
            "line 5 (trailer): states 2 item line(s), the file has 3",
        ),
        (
            "TRAILER,3,1551,990",
            "line 5 (trailer): states debits of 1551, the lines sum to 1550",
        ),
        (
            "TRAILER,3,1550,0",
            "line 5 (trailer): states credits of 0, the lines sum to 990",
        ),
        (
            "TRAILER,3,1550",
            "line 5 (trailer): 3 column(s), expected 4",
        ),
        (
            "TRAILER,3,15x0,990",
            "line 5 (trailer): sum of debits: expected digits",
        ),
        ("TRAILER", "line 5 (trailer): 1 column(s)"),
    ];
    for (trailer, expected) in cases {
        let text = GOOD.replace("TRAILER,3,1550,990", trailer);
        let e = error(&text);
        assert!(
            e.starts_with(expected),
            "{e:?} should start with {expected:?}"
        );
    }
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.csv");
    std::fs::write(&path, GOOD.replace(",978,A00002", ",97,A00002")).unwrap();
    let e = read_bank_file(&path, BankFormat::Csv)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}: line 3, column `currency`", path.display())),
        "{e}"
    );
    let missing = dir.path().join("none.csv");
    let e = read_bank_file(&missing, BankFormat::Csv)
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.csv: cannot open"), "{e}");
    std::fs::write(&path, GOOD).unwrap();
    assert_eq!(read_bank_file(&path, BankFormat::Csv).unwrap().len(), 3);
}

#[test]
fn random_input_never_panics() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let good_lines: Vec<&str> = GOOD.lines().collect();
    let alphabet = b"0123456789,*TRAILERdebitcredit\r\n \xff-A";
    for round in 0..3000 {
        let bytes: Vec<u8> = if round % 3 == 0 {
            (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect()
        } else if round % 3 == 1 {
            // Valid lines shuffled, dropped, duplicated.
            let mut text = String::new();
            for _ in 0..rng.usize(0..8) {
                text.push_str(good_lines[rng.usize(..good_lines.len())]);
                text.push('\n');
            }
            text.into_bytes()
        } else {
            // A valid file with a few bytes mutated.
            let mut bytes = GOOD.as_bytes().to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..bytes.len());
                bytes[at] = alphabet[rng.usize(..alphabet.len())];
            }
            bytes
        };
        if let Ok(items) = read_bank_csv(&bytes[..]) {
            let switch: Vec<SwitchItem> = items
                .iter()
                .map(|i| s(i.line as u64, &i.rrn, i.amount))
                .collect();
            let recon = reconcile(switch, items);
            let _ = recon.summary();
            recon.write_breaks(io::sink()).unwrap();
        }
    }
}

fn presentment(txn: TxnId, kind: ClearedKind, amount: u64) -> Presentment {
    Presentment {
        txn,
        kind,
        pan: "5413330089010434".to_string().into(),
        masked_pan: "541333******0434".into(),
        processing_code: if kind.is_credit() { "200000" } else { "000000" }.into(),
        amount,
        approved_amount: amount,
        currency: "826".into(),
        local_time: "240315101112".into(),
        entry_mode: "051".into(),
        condition: "00".into(),
        merchant_id: "MERCHANT0000001".into(),
        mcc: "5411".into(),
        name_location: format!("{:<22} {:<13} GBR", "DEMO STORE", "LONDON"),
        terminal: "TERM0001".into(),
        stan: format!("{txn:06}"),
        rrn: format!("2403150{txn:05}"),
        auth_id: format!("A{txn:04}"),
        destination: "mc".into(),
        ard: super::super::ard::ard("412345", "20240315", txn).unwrap(),
        date: "20240315".into(),
    }
}

fn ipm_file(blocked: bool, items: &[Presentment]) -> Vec<u8> {
    let info = FileInfo {
        date: "20240315".into(),
        processor_id: "00000012345".into(),
        sequence: 1,
        acquiring_institution: "412345".into(),
        forwarding_institution: "412345".into(),
        blocked,
    };
    let mut writer = IpmWriter::new(Vec::new(), &info).unwrap();
    for p in items {
        writer.push(p).unwrap();
    }
    writer.finish().unwrap().0
}

#[test]
fn reads_an_ipm_bank_file() {
    let cleared = [
        presentment(1, ClearedKind::Purchase, 1250),
        presentment(2, ClearedKind::Refund, 990),
        presentment(3, ClearedKind::Completion, 4200),
    ];
    for blocked in [false, true] {
        let bytes = ipm_file(blocked, &cleared);
        let items = read_bank_ipm(&bytes[..]).unwrap();
        assert_eq!(items.len(), 3);
        let first = &items[0];
        assert_eq!(first.line, 2, "record 1 is the file header");
        assert_eq!(first.ard, cleared[0].ard);
        assert_eq!(first.rrn, "", "the IPM layout has no DE 37");
        assert_eq!(first.masked_pan, "541333******0434");
        assert_eq!((first.amount, first.currency.as_str()), (1250, "826"));
        assert_eq!(first.auth_code, "A0001");
        assert_eq!(first.direction, Direction::Debit);
        assert_eq!(items[1].direction, Direction::Credit);
        let switch = cleared.iter().map(SwitchItem::from).collect();
        let recon = reconcile(switch, items);
        assert!(recon.is_clean(), "{:?}", recon.breaks());
        assert_eq!(recon.matched(), 3);
    }
    // Through a named file, and a break found by ARD.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.ipm");
    std::fs::write(&path, ipm_file(true, &cleared[..2])).unwrap();
    let bank = read_bank_file(&path, BankFormat::Ipm).unwrap();
    let switch = cleared.iter().map(SwitchItem::from).collect();
    let recon = reconcile(switch, bank);
    assert_eq!(recon.breaks().len(), 1);
    assert_eq!(recon.breaks()[0].kind, BreakKind::MissingAtBank);
    assert_eq!(recon.breaks()[0].key, cleared[2].ard);
}

#[test]
fn ipm_errors_name_the_record() {
    let bytes = ipm_file(false, &[presentment(1, ClearedKind::Purchase, 100)]);
    // Truncated: the reader's error, with record and offset.
    let e = read_bank_ipm(&bytes[..bytes.len() - 6])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("IPM record "), "{e}");
    // A message type other than 1240/1644 (EBCDIC `1240` → `1740`).
    let mut fee = bytes.clone();
    let at = fee
        .windows(4)
        .position(|w| w == [0xF1, 0xF2, 0xF4, 0xF0])
        .unwrap();
    fee[at + 1] = 0xF7;
    let e = read_bank_ipm(&fee[..]).unwrap_err().to_string();
    assert!(e.starts_with("IPM record 2: message type"), "{e}");
    // A malformed amount in DE 4: find the 12 EBCDIC digits of 100.
    let mut amount = bytes;
    let digits: Vec<u8> = format!("{:012}", 100)
        .bytes()
        .map(|b| b - b'0' + 0xF0)
        .collect();
    let at = amount.windows(12).position(|w| w == &digits[..]).unwrap();
    amount[at + 3] = 0xC1; // `A`
    let e = read_bank_ipm(&amount[..]).unwrap_err().to_string();
    assert_eq!(e, "IPM record 2, DE 4: expected digits (minor units)");
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..2000 {
        let len = rng.usize(0..400);
        let random: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let _ = read_bank_ipm(&random[..]);
    }
}

#[test]
fn switch_item_from_presentment() {
    let p = Presentment {
        txn: 42,
        kind: ClearedKind::Refund,
        pan: "4761739001010119".to_string().into(),
        masked_pan: "476173******0119".into(),
        processing_code: "200000".into(),
        amount: 990,
        approved_amount: 990,
        currency: "978".into(),
        local_time: "261126101500".into(),
        entry_mode: String::new(),
        condition: String::new(),
        merchant_id: "M1".into(),
        mcc: "5411".into(),
        name_location: String::new(),
        terminal: "TERM0001".into(),
        stan: "000001".into(),
        rrn: "612300000002".into(),
        auth_id: "A00002".into(),
        destination: "visa".into(),
        ard: "24123456330000000000421".into(),
        date: "20261126".into(),
    };
    let item = SwitchItem::from(&p);
    assert_eq!(item.direction, Direction::Credit);
    assert_eq!((item.txn, item.amount), (42, 990));
    assert_eq!(item.ard, p.ard);
    assert_eq!(item.destination, "visa");
}
