//! Pricing, totals and the rendered report.

use super::render::{CSV_HEADER, csv_field, printable};
use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::RoundingStrategy;
use zeroize::Zeroizing;

use super::*;

fn pct(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

fn presentment(
    txn: TxnId,
    kind: ClearedKind,
    merchant: &str,
    destination: &str,
    currency: &str,
    amount: u64,
) -> Presentment {
    Presentment {
        txn,
        kind,
        pan: Zeroizing::new("4111111111111111".to_owned()),
        masked_pan: "411111******1111".to_owned(),
        processing_code: if kind.is_credit() { "200000" } else { "000000" }.to_owned(),
        amount,
        approved_amount: amount,
        currency: currency.to_owned(),
        local_time: "250101120000".to_owned(),
        entry_mode: "051".to_owned(),
        condition: "00".to_owned(),
        merchant_id: merchant.to_owned(),
        mcc: "5411".to_owned(),
        name_location: "SHOP".to_owned(),
        terminal: "T1".to_owned(),
        stan: "000001".to_owned(),
        rrn: "000000000001".to_owned(),
        auth_id: "123456".to_owned(),
        destination: destination.to_owned(),
        ard: String::new(),
        date: "20250101".to_owned(),
    }
}

fn reversed(
    txn: TxnId,
    merchant: &str,
    destination: &str,
    currency: &str,
    amount: u64,
) -> Reversed {
    Reversed {
        txn,
        kind: ClearedKind::Purchase,
        merchant_id: merchant.to_owned(),
        destination: destination.to_owned(),
        currency: currency.to_owned(),
        amount,
    }
}

fn priced(percent: &str, fixed: u64) -> Pricing {
    Pricing::new(pct(percent), fixed).expect("valid pricing")
}

#[test]
fn fee_rounds_half_away_from_zero_per_transaction() {
    // 1.75 % of 1001 = 17.5175 → 18.
    assert_eq!(priced("1.75", 0).fee(1001), Ok(18));
    // 1 % of 50 = 0.5 exactly → 1 (banker's rounding would give 0).
    assert_eq!(priced("1", 0).fee(50), Ok(1));
    // 1 % of 150 = 1.5 → 2; 1 % of 250 = 2.5 → 3 (not 2).
    assert_eq!(priced("1", 0).fee(250), Ok(3));
    // 1 % of 149 = 1.49 → 1.
    assert_eq!(priced("1", 0).fee(149), Ok(1));
    // Fixed fee added after rounding: 1.75 % of 1001 + 30 = 48.
    assert_eq!(priced("1.75", 30).fee(1001), Ok(48));
    assert_eq!(priced("0", 25).fee(0), Ok(25));
    assert_eq!(priced("2.9", 30).fee(0), Ok(30));
    // Scale beyond two decimals: 0.125 % of 400 = 0.5 → 1.
    assert_eq!(priced("0.125", 0).fee(400), Ok(1));
    assert_eq!(priced("100", 0).fee(u64::MAX), Ok(u64::MAX));
}

#[test]
fn fee_overflow_and_bad_percent_are_errors() {
    assert!(matches!(
        priced("100", 1).fee(u64::MAX),
        Err(SettlementError::FeeOverflow { .. })
    ));
    assert!(matches!(
        Pricing::new(pct("-0.5"), 0),
        Err(SettlementError::PercentOutOfRange { .. })
    ));
    assert!(matches!(
        Pricing::new(pct("100.01"), 0),
        Err(SettlementError::PercentOutOfRange { .. })
    ));
    // Fields are public: a negative percentage set directly is refused
    // when pricing.
    let negative = Pricing {
        percent: pct("-1"),
        fixed: 0,
    };
    assert!(matches!(
        negative.fee(100),
        Err(SettlementError::PercentOutOfRange { .. })
    ));
    // Trailing zeros cost nothing: 50 % of u64::MAX = …807.5 → …808.
    assert_eq!(
        priced("50.000000000000000000000000", 0).fee(u64::MAX),
        Ok(9_223_372_036_854_775_808)
    );
    // Many significant digits on a huge amount: an error, never a
    // silently rounded intermediate.
    assert!(matches!(
        priced("12.3456789012345678901234567", 0).fee(u64::MAX),
        Err(SettlementError::FeeOverflow { .. })
    ));
    assert_eq!(
        priced("12.3456789012345678901234567", 0).fee(1_000_000),
        Ok(123_457)
    );
}

#[test]
fn refunds_carry_no_fee() {
    let p = priced("2", 10);
    assert_eq!(p.fee_for(ClearedKind::Refund, 10_000), Ok(0));
    assert_eq!(p.fee_for(ClearedKind::Purchase, 10_000), Ok(210));
    assert_eq!(p.fee_for(ClearedKind::Completion, 10_000), Ok(210));
}

#[test]
fn pricing_table_lookup_is_trimmed() {
    let mut table = PricingTable::new(priced("1", 0));
    table.insert(" M1 ", priced("2", 5));
    assert_eq!(table.get("M1             ").fixed, 5);
    assert_eq!(table.get("M1").percent, pct("2"));
    assert_eq!(table.get("M2").percent, pct("1"));
    assert_eq!(table.len(), 1);
}

fn sample() -> SettlementReport {
    let mut pricing = PricingTable::new(priced("1.75", 0));
    pricing.insert("SHOP-JP", priced("1", 10));
    let mut s = Settlement::new(pricing);
    let items = [
        presentment(
            1,
            ClearedKind::Purchase,
            "SHOP-US        ",
            "visa",
            "840",
            1001,
        ),
        presentment(2, ClearedKind::Completion, "SHOP-US", "visa", "840", 2000),
        presentment(3, ClearedKind::Refund, "SHOP-US", "mc", "840", 500),
        presentment(4, ClearedKind::Purchase, "SHOP-JP", "jcb", "392", 1500),
        presentment(5, ClearedKind::Purchase, "SHOP-BH", "visa", "048", 12_345),
        presentment(
            6,
            ClearedKind::Refund,
            "REFUNDS, \"ONLY\"",
            "mc",
            "840",
            700,
        ),
    ];
    for p in &items {
        s.add_presentment(p).expect("add");
    }
    s.add_reversal(&reversed(7, "SHOP-US", "visa", "840", 300))
        .expect("reversal");
    s.report()
}

#[test]
fn report_totals() {
    let report = sample();
    let us = report
        .merchants
        .iter()
        .find(|l| l.merchant == "SHOP-US")
        .expect("SHOP-US line");
    assert_eq!(
        us.totals.purchases,
        Tally {
            count: 1,
            amount: 1001
        }
    );
    assert_eq!(
        us.totals.completions,
        Tally {
            count: 1,
            amount: 2000
        }
    );
    assert_eq!(
        us.totals.refunds,
        Tally {
            count: 1,
            amount: 500
        }
    );
    assert_eq!(
        us.totals.reversals,
        Tally {
            count: 1,
            amount: 300
        }
    );
    // 18 (1.75 % of 1001) + 35 (1.75 % of 2000).
    assert_eq!(us.totals.fees, 53);
    assert_eq!(us.totals.net_payable(), 1001 + 2000 - 500 - 53);
    assert_eq!(us.totals.count(), 3);

    let refunds_only = report
        .merchants
        .iter()
        .find(|l| l.merchant == "REFUNDS, \"ONLY\"")
        .expect("refund merchant");
    assert_eq!(refunds_only.totals.net_payable(), -700);
    assert_eq!(
        refunds_only
            .currency
            .format(refunds_only.totals.net_payable()),
        "-7.00"
    );

    let usd = report
        .currencies
        .iter()
        .find(|l| l.currency.code == "840")
        .expect("USD line");
    assert_eq!(usd.totals.gross_debits(), 3001);
    assert_eq!(usd.totals.credits(), 1200);
    assert_eq!(usd.totals.fees, 53);
    assert_eq!(usd.totals.net_payable(), 3001 - 1200 - 53);

    let visa_usd = report
        .destinations
        .iter()
        .find(|l| l.destination == "visa" && l.currency.code == "840")
        .expect("visa USD");
    assert_eq!(
        visa_usd.totals,
        DestinationTotals {
            count: 2,
            gross_debits: 3001,
            credits: 0
        }
    );
    let mc = report
        .destinations
        .iter()
        .find(|l| l.destination == "mc")
        .expect("mc");
    assert_eq!(mc.totals.net_position(), -1200);

    // Deterministic order: merchants sorted by id.
    let ids: Vec<&str> = report
        .merchants
        .iter()
        .map(|l| l.merchant.as_str())
        .collect();
    assert_eq!(ids, ["REFUNDS, \"ONLY\"", "SHOP-BH", "SHOP-JP", "SHOP-US"]);
}

#[test]
fn csv_formats_with_currency_exponent_and_quotes_text() {
    let report = sample();
    let mut buf = Vec::new();
    report.write_csv(&mut buf).expect("csv");
    let csv = String::from_utf8(buf).expect("utf-8");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.first().copied(), Some(CSV_HEADER.join(",").as_str()));
    // Every line has the header's number of columns (outside quotes).
    for line in &lines {
        let mut in_quotes = false;
        let mut columns = 1;
        for c in line.chars() {
            match c {
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => columns += 1,
                _ => {}
            }
        }
        assert_eq!(columns, CSV_HEADER.len(), "{line}");
    }
    // JPY, exponent 0: 1500 yen, fee 1 % + 10 = 25.
    assert!(csv.contains(
        "merchant,SHOP-JP,,392,JPY,0,yes,1,1,1500,1500,0,0,0,0,0,0,0,0,0,1500,1500,0,0,25,25,1475,1475,1500,1500\n"
    ));
    // BHD, exponent 3: 12.345 dinars, fee 1.75 % = 216.0375 → 216 fils.
    assert!(csv.contains(
        "merchant,SHOP-BH,,048,BHD,3,yes,1,1,12345,12.345,0,0,0.000,0,0,0.000,0,0,0.000,12345,12.345,0,0.000,216,0.216,12129,12.129,12345,12.345\n"
    ));
    // Refund-only merchant: quoted id, negative net.
    assert!(csv.contains("merchant,\"REFUNDS, \"\"ONLY\"\"\",,840,USD,2,yes,1,"));
    assert!(csv.contains(",-700,-7.00,-700,-7.00\n"));
    let mut jcb = vec!["destination", "", "jcb", "392", "JPY", "0", "yes", "1"];
    jcb.extend([""; 12]);
    jcb.extend(["1500", "1500", "0", "0", "", "", "", "", "1500", "1500"]);
    assert!(csv.contains(&format!("\n{}\n", jcb.join(","))), "{csv}");
    assert!(csv.contains("\ncurrency,,,048,BHD,3,yes,1,"));
    // Sections in order: currency, destination, merchant.
    let kinds: Vec<&str> = lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort_by_key(|k| match *k {
        "currency" => 0,
        "destination" => 1,
        _ => 2,
    });
    assert_eq!(kinds, sorted);
}

#[test]
fn summary_is_aligned_and_formatted() {
    let summary = sample().summary();
    let currency = summary.find("Per currency").expect("currency section");
    let destination = summary
        .find("Per destination")
        .expect("destination section");
    let merchant = summary.find("Per merchant").expect("merchant section");
    assert!(currency < destination && destination < merchant);
    assert!(summary.contains("12.345"));
    assert!(summary.contains("1475"));
    assert!(summary.contains("-7.00"));
    assert!(!summary.contains('?'));
    // Within a table every row has the same width as its rule (numbers
    // are right-aligned, so no row is trimmed shorter).
    let section: Vec<&str> = summary[currency..destination].lines().collect();
    let rule = section.get(2).expect("rule line");
    for row in section.iter().skip(3).filter(|l| !l.is_empty()) {
        assert_eq!(row.chars().count(), rule.chars().count(), "{row}");
    }
}

#[test]
fn unknown_currency_is_flagged_with_exponent_two() {
    let mut s = Settlement::new(PricingTable::default());
    s.add_presentment(&presentment(
        1,
        ClearedKind::Purchase,
        "M",
        "d",
        "123",
        12_345,
    ))
    .expect("add");
    let report = s.report();
    let line = report.merchants.first().expect("line");
    assert!(!line.currency.known());
    assert_eq!(line.currency.exponent(), 2);
    assert_eq!(line.currency.label(), "123?");
    assert!(report.has_unknown_currency());
    let mut buf = Vec::new();
    report.write_csv(&mut buf).expect("csv");
    let csv = String::from_utf8(buf).expect("utf-8");
    assert!(csv.contains("merchant,M,,123,,2,no,1,1,12345,123.45,"));
    let summary = report.summary();
    assert!(summary.contains("123?"));
    assert!(summary.contains("unknown ISO 4217"));
}

#[test]
fn a_failed_add_changes_nothing() {
    let mut s = Settlement::new(PricingTable::new(priced("100", 1)));
    let p = presentment(9, ClearedKind::Purchase, "M", "d", "840", u64::MAX);
    assert!(matches!(
        s.add_presentment(&p),
        Err(SettlementError::Pricing { txn: 9, .. })
    ));
    assert_eq!(s.report(), SettlementReport::default());
}

#[test]
fn text_fields_cannot_break_the_csv() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    assert_eq!(csv_field(" padded"), "\" padded\"");
    assert_eq!(printable("a\u{1b}[2Jb"), "a?[2Jb");
}

proptest! {
    #[test]
    fn fee_matches_rust_decimal_midpoint_away_from_zero(
        amount in 0u64..1_000_000_000_000,
        mantissa in 0i64..=10_000_000,
        scale in 0u32..=6,
        fixed in 0u64..1_000,
    ) {
        let percent = Decimal::new(mantissa, scale);
        prop_assume!(percent <= Decimal::ONE_HUNDRED);
        let pricing = Pricing { percent, fixed };
        let expected = (Decimal::from(amount) * percent / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            + Decimal::from(fixed);
        prop_assert_eq!(pricing.fee(amount).map(Decimal::from), Ok(expected));
    }

    #[test]
    fn gross_over_merchants_equals_destinations_equals_inputs(
        items in proptest::collection::vec(
            (0u8..3, 0usize..4, 0usize..3, 0usize..4, proptest::num::u64::ANY, any::<bool>()),
            0..60,
        ),
        percent_hundredths in 0i64..=500,
        fixed in 0u64..100,
    ) {
        let merchants = ["A", "B ", "C,\"x\"", " D"];
        let destinations = ["visa", "mc", "jcb"];
        let currencies = ["840", "392", "048", "ZZ9"];
        let mut settlement =
            Settlement::new(PricingTable::new(Pricing { percent: Decimal::new(percent_hundredths, 2), fixed }));
        let mut expected: BTreeMap<String, Gross> = BTreeMap::new();
        let mut expected_fees: BTreeMap<String, i128> = BTreeMap::new();
        for (txn, (kind, m, d, c, amount, is_reversal)) in (0u64..).zip(&items) {
            let kind = match kind {
                0 => ClearedKind::Purchase,
                1 => ClearedKind::Refund,
                _ => ClearedKind::Completion,
            };
            let merchant = merchants[*m % merchants.len()];
            let destination = destinations[*d % destinations.len()];
            let currency = currencies[*c % currencies.len()];
            if *is_reversal {
                settlement
                    .add_reversal(&reversed(txn, merchant, destination, currency, *amount))
                    .expect("reversal");
                continue;
            }
            let p = presentment(txn, kind, merchant, destination, currency, *amount);
            match settlement.add_presentment(&p) {
                Ok(()) => {}
                // Huge amounts with a fixed fee may overflow u64: skipped.
                Err(SettlementError::Pricing { .. }) => continue,
                Err(e) => panic!("{e}"),
            }
            let sum = expected.entry(currency.to_owned()).or_default();
            if kind.is_credit() {
                sum.credits += i128::from(*amount);
            } else {
                sum.debits += i128::from(*amount);
                *expected_fees.entry(currency.to_owned()).or_default() += i128::from(
                    Pricing { percent: Decimal::new(percent_hundredths, 2), fixed }
                        .fee(*amount)
                        .expect("fee"),
                );
            }
        }
        let report = settlement.report();
        let over_merchants = report.gross_by_currency();
        let over_destinations = report.destination_gross_by_currency();
        // Reversal-only currencies have merchant lines but no
        // destination lines: compare on the presented currencies, and
        // check the others are zero.
        for (code, gross) in &over_merchants {
            let want = expected.get(code).copied().unwrap_or_default();
            prop_assert_eq!(*gross, want);
        }
        for (code, want) in &expected {
            prop_assert_eq!(over_merchants.get(code), Some(want));
        }
        prop_assert_eq!(&over_destinations, &expected);
        for line in &report.currencies {
            let want = expected.get(&line.currency.code).copied().unwrap_or_default();
            prop_assert_eq!(line.totals.gross_debits(), want.debits);
            prop_assert_eq!(line.totals.credits(), want.credits);
            let fees = expected_fees.get(&line.currency.code).copied().unwrap_or_default();
            prop_assert_eq!(line.totals.fees, fees);
            prop_assert_eq!(
                line.totals.net_payable(),
                want.debits - want.credits - fees
            );
            let merchant_net: i128 = report
                .merchants
                .iter()
                .filter(|m| m.currency.code == line.currency.code)
                .map(|m| m.totals.net_payable())
                .sum();
            prop_assert_eq!(merchant_net, line.totals.net_payable());
        }
    }
}
