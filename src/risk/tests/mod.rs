use std::sync::Arc;

use super::*;

fn config(toml: &str) -> RiskConfig {
    toml::from_str(toml).unwrap()
}

fn rules(toml: &str) -> RuleSet {
    RuleSet::build(&config(toml)).unwrap()
}

fn engine(toml: &str) -> RiskEngine {
    RiskEngine::new(rules(toml))
}

fn build_error(toml: &str) -> String {
    RuleSet::build(&config(toml)).unwrap_err().to_string()
}

/// A digest for card `n`, landing in shard `n % 64`.
fn card(n: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&n.to_le_bytes());
    d[8] = 0xA5;
    d[31] = (n % 64) as u8;
    d
}

const CARD: [u8; 32] = [7; 32];
const T0: u64 = 1_000_000;

fn input(card: &[u8; 32]) -> RiskInput<'_> {
    RiskInput {
        kind: TxnKind::Purchase,
        amount: 1000,
        currency: "840",
        pan: "4111111111111111",
        card,
        terminal: "T1",
        merchant: "M1",
        mcc: "5411",
        date: "20250101",
        now_ms: T0,
    }
}

fn declined(rule: &str, code: &'static str) -> Result<(), RiskHit> {
    Err(RiskHit {
        rule: Arc::from(rule),
        code,
    })
}

#[test]
fn engine_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RiskEngine>();
}

#[test]
fn empty_rules_pass_everything() {
    let e = RiskEngine::new(RuleSet::build(&RiskConfig::default()).unwrap());
    assert_eq!(e.evaluate(&input(&CARD)), Ok(()));
    assert!(e.rule_ids().is_empty());
    assert_eq!(e.tracked_cards(), 0);
}

#[test]
fn block_terminal_is_58_and_ignores_padding() {
    let e = engine(
        r#"
        [[block]]
        id = "bad-terminals"
        terminals = ["T0000009", "T9"]
        "#,
    );
    let i = input(&CARD);
    assert_eq!(
        e.evaluate(&RiskInput {
            terminal: "T0000009",
            ..i
        }),
        declined("bad-terminals", "58")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            terminal: "T9      ",
            ..i
        }),
        declined("bad-terminals", "58")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            terminal: "T0000008",
            ..i
        }),
        Ok(())
    );
}

#[test]
fn block_bin_prefixes_are_62() {
    let e = engine(
        r#"
        [[block]]
        id = "stolen"
        bins = ["412345", "55554444", "0"]
        "#,
    );
    let i = input(&CARD);
    for pan in ["4123450000000001", "5555444412341234", "0123"] {
        assert_eq!(
            e.evaluate(&RiskInput { pan, ..i }),
            declined("stolen", "62"),
            "{pan}"
        );
    }
    for pan in [
        "4123460000000001",
        "5555444312341234",
        "41234",
        "4111111111111111",
        "",
    ] {
        assert_eq!(e.evaluate(&RiskInput { pan, ..i }), Ok(()), "{pan}");
    }
}

#[test]
fn block_bin_ranges_are_inclusive_and_merged() {
    let e = engine(
        r#"
        [[block]]
        id = "ranges"
        ranges = [["400000", "400999"], ["4100", "4105"], ["4103", "4110"], ["0000", "0009"]]
        "#,
    );
    let i = input(&CARD);
    for pan in [
        "4000000000000000",
        "4005001234567890",
        "4009990000000000",
        "4100000000000000",
        "4108000000000000",
        "4110999999999999",
        "0005000000000000",
    ] {
        assert_eq!(
            e.evaluate(&RiskInput { pan, ..i }),
            declined("ranges", "62"),
            "{pan}"
        );
    }
    for pan in [
        "4010000000000000",
        "3999999999999999",
        "4111000000000000",
        "0010000000000000",
    ] {
        assert_eq!(e.evaluate(&RiskInput { pan, ..i }), Ok(()), "{pan}");
    }
}

#[test]
fn block_card_digest_is_62() {
    let blocked = card(42);
    let e = engine(&format!(
        "[[block]]\nid = \"cards\"\ncards = [\"{}\"]\n",
        hex::encode_upper(blocked)
    ));
    assert_eq!(e.evaluate(&input(&blocked)), declined("cards", "62"));
    assert_eq!(e.evaluate(&input(&card(43))), Ok(()));
}

#[test]
fn blocked_terminal_wins_over_blocked_card_and_kinds_do_not_matter() {
    let e = engine(
        r#"
        [[block]]
        id = "cards"
        bins = ["4"]
        [[block]]
        id = "terminals"
        terminals = ["T1"]
        "#,
    );
    let i = input(&CARD);
    assert_eq!(e.evaluate(&i), declined("terminals", "58"));
    assert_eq!(
        e.evaluate(&RiskInput {
            terminal: "T2",
            ..i
        }),
        declined("cards", "62")
    );
    for kind in [TxnKind::Authorization, TxnKind::Refund] {
        assert_eq!(
            e.evaluate(&RiskInput {
                kind,
                terminal: "T2",
                ..i
            }),
            declined("cards", "62")
        );
    }
    assert_eq!(
        e.evaluate(&RiskInput {
            kind: TxnKind::Reversal,
            ..i
        }),
        Ok(())
    );
}

#[test]
fn currency_rule_is_57_for_listed_merchants() {
    let e = engine(
        r#"
        [[currencies]]
        id = "usd-only"
        merchants = ["M1"]
        allowed = ["840", "978"]
        "#,
    );
    let i = input(&CARD);
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "826",
            ..i
        }),
        declined("usd-only", "57")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "826",
            merchant: "M1             ",
            ..i
        }),
        declined("usd-only", "57")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "826",
            kind: TxnKind::Refund,
            ..i
        }),
        declined("usd-only", "57")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "978",
            ..i
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "840",
            ..i
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "826",
            merchant: "M2",
            ..i
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "826",
            kind: TxnKind::Reversal,
            ..i
        }),
        Ok(())
    );
}

#[test]
fn currency_rule_without_merchants_covers_all_and_respects_kinds() {
    let e = engine(
        r#"
        [[currencies]]
        id = "eur"
        allowed = ["978"]
        kinds = ["purchase"]
        "#,
    );
    let i = input(&CARD);
    assert_eq!(
        e.evaluate(&RiskInput {
            merchant: "ANY",
            ..i
        }),
        declined("eur", "57")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            kind: TxnKind::Authorization,
            ..i
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            kind: TxnKind::Refund,
            ..i
        }),
        Ok(())
    );
}

#[test]
fn amount_limit_is_61_over_the_limit_only_for_its_scope() {
    let e = engine(
        r#"
        [[amount_limit]]
        id = "gambling-cap"
        mcc = ["7995"]
        currency = "840"
        max_amount = 50000
        "#,
    );
    let i = RiskInput {
        mcc: "7995",
        ..input(&CARD)
    };
    assert_eq!(e.evaluate(&RiskInput { amount: 50000, ..i }), Ok(()));
    assert_eq!(
        e.evaluate(&RiskInput { amount: 50001, ..i }),
        declined("gambling-cap", "61")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            amount: 50001,
            kind: TxnKind::Authorization,
            ..i
        }),
        declined("gambling-cap", "61")
    );
    // Other MCC, other currency, refund (not in the default kinds): no hit.
    assert_eq!(
        e.evaluate(&RiskInput {
            amount: 50001,
            mcc: "5411",
            ..i
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            amount: 50001,
            currency: "978",
            ..i
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            amount: 50001,
            kind: TxnKind::Refund,
            ..i
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            amount: u64::MAX,
            kind: TxnKind::Reversal,
            ..i
        }),
        Ok(())
    );
}

#[test]
fn amount_limit_by_terminal_and_kinds() {
    let e = engine(
        r#"
        [[amount_limit]]
        id = "t1-refunds"
        terminals = ["T1"]
        currency = "840"
        max_amount = 100
        kinds = ["refund"]
        "#,
    );
    let i = RiskInput {
        amount: 101,
        ..input(&CARD)
    };
    assert_eq!(
        e.evaluate(&RiskInput {
            kind: TxnKind::Refund,
            ..i
        }),
        declined("t1-refunds", "61")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            kind: TxnKind::Refund,
            terminal: "T1      ",
            ..i
        }),
        declined("t1-refunds", "61")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            kind: TxnKind::Refund,
            terminal: "T2",
            ..i
        }),
        Ok(())
    );
    assert_eq!(e.evaluate(&i), Ok(()));
}

const VELOCITY: &str = r#"
    [[velocity]]
    id = "card-burst"
    window_secs = 60
    max_count = 3
"#;

const DAILY: &str = r#"
    [[merchant_daily]]
    id = "daily-cap"
    merchants = ["M1", "M2"]
    currency = "840"
    max_amount = 10000
"#;

mod limits;
mod velocity;
