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

#[test]
fn velocity_count_is_65_and_expires_with_the_window() {
    let e = engine(VELOCITY);
    let at = |ms: u64| RiskInput {
        now_ms: T0 + ms,
        ..input(&CARD)
    };
    for ms in [0, 1000, 2000] {
        assert_eq!(e.evaluate(&at(ms)), Ok(()), "at {ms}");
    }
    assert_eq!(e.evaluate(&at(3000)), declined("card-burst", "65"));
    // Another card has its own window.
    assert_eq!(
        e.evaluate(&RiskInput {
            card: &card(1),
            ..at(3000)
        }),
        Ok(())
    );
    // Still 3 in the window just before the first event leaves it.
    assert_eq!(e.evaluate(&at(59_999)), declined("card-burst", "65"));
    // The event at 0 has left the window at 60 000 ms.
    assert_eq!(e.evaluate(&at(60_000)), Ok(()));
    assert_eq!(e.evaluate(&at(60_500)), declined("card-burst", "65"));
    assert_eq!(e.evaluate(&at(61_000)), Ok(()));
    // Long after: everything expired, three more pass.
    for ms in [500_000, 500_001, 500_002] {
        assert_eq!(e.evaluate(&at(ms)), Ok(()), "at {ms}");
    }
    assert_eq!(e.evaluate(&at(500_003)), declined("card-burst", "65"));
    assert_eq!(e.tracked_cards(), 2);
}

#[test]
fn velocity_counts_only_its_kinds() {
    let e = engine(VELOCITY);
    let i = input(&CARD);
    for _ in 0..10 {
        assert_eq!(
            e.evaluate(&RiskInput {
                kind: TxnKind::Refund,
                ..i
            }),
            Ok(())
        );
        assert_eq!(
            e.evaluate(&RiskInput {
                kind: TxnKind::Reversal,
                ..i
            }),
            Ok(())
        );
    }
    assert_eq!(e.tracked_cards(), 0);
    for _ in 0..3 {
        assert_eq!(
            e.evaluate(&RiskInput {
                kind: TxnKind::Authorization,
                ..i
            }),
            Ok(())
        );
    }
    assert_eq!(e.evaluate(&i), declined("card-burst", "65"));

    let refunds = engine(
        r#"
        [[velocity]]
        id = "refunds"
        window_secs = 60
        max_count = 1
        kinds = ["refund"]
        "#,
    );
    let refund = RiskInput {
        kind: TxnKind::Refund,
        ..i
    };
    assert_eq!(refunds.evaluate(&refund), Ok(()));
    assert_eq!(refunds.evaluate(&refund), declined("refunds", "65"));
    assert_eq!(refunds.evaluate(&i), Ok(()));
}

#[test]
fn velocity_amount_is_61_and_counts_only_its_currency() {
    let e = engine(
        r#"
        [[velocity]]
        id = "card-spend"
        window_secs = 3600
        max_count = 100
        max_amount = 10000
        currency = "840"
        "#,
    );
    let i = input(&CARD);
    let at = |ms: u64, amount: u64| RiskInput {
        now_ms: T0 + ms,
        amount,
        ..i
    };
    assert_eq!(e.evaluate(&at(0, 6000)), Ok(()));
    assert_eq!(e.evaluate(&at(1, 4000)), Ok(()));
    assert_eq!(e.evaluate(&at(2, 1)), declined("card-spend", "61"));
    // Another currency is not counted, whatever the amount.
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "978",
            ..at(3, 1_000_000)
        }),
        Ok(())
    );
    // After the 6000 leaves the window, 6000 fits again.
    assert_eq!(
        e.evaluate(&at(3_600_000, 6001)),
        declined("card-spend", "61")
    );
    assert_eq!(e.evaluate(&at(3_600_000, 6000)), Ok(()));
    // A new card over the limit on its own is declined and not tracked.
    assert_eq!(e.tracked_cards(), 1);
    assert_eq!(
        e.evaluate(&RiskInput {
            card: &card(9),
            ..at(0, 10_001)
        }),
        declined("card-spend", "61")
    );
    assert_eq!(e.tracked_cards(), 1);
    // Amounts near u64::MAX do not overflow.
    assert_eq!(
        e.evaluate(&RiskInput {
            card: &card(9),
            ..at(0, u64::MAX)
        }),
        declined("card-spend", "61")
    );
}

#[test]
fn velocity_with_currency_and_no_amount_counts_that_currency_only() {
    let e = engine(
        r#"
        [[velocity]]
        id = "usd-count"
        window_secs = 60
        max_count = 1
        currency = "840"
        "#,
    );
    let i = input(&CARD);
    assert_eq!(e.evaluate(&i), Ok(()));
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "978",
            ..i
        }),
        Ok(())
    );
    assert_eq!(e.evaluate(&i), declined("usd-count", "65"));
}

#[test]
fn a_declined_request_does_not_consume_state() {
    let e = engine(
        r#"
        [[amount_limit]]
        id = "cap"
        currency = "840"
        max_amount = 100
        [[velocity]]
        id = "once"
        window_secs = 60
        max_count = 1
        "#,
    );
    let i = input(&CARD);
    assert_eq!(
        e.evaluate(&RiskInput { amount: 200, ..i }),
        declined("cap", "61")
    );
    assert_eq!(e.tracked_cards(), 0);
    assert_eq!(e.evaluate(&RiskInput { amount: 50, ..i }), Ok(()));
    assert_eq!(
        e.evaluate(&RiskInput { amount: 50, ..i }),
        declined("once", "65")
    );
}

#[test]
fn velocity_counts_attempts_declined_by_a_later_rule() {
    let e = engine(
        r#"
        [[velocity]]
        id = "twice"
        window_secs = 60
        max_count = 2
        [[merchant_daily]]
        id = "daily"
        currency = "840"
        max_amount = 1000
        "#,
    );
    let i = input(&CARD);
    assert_eq!(e.evaluate(&RiskInput { amount: 1000, ..i }), Ok(()));
    assert_eq!(
        e.evaluate(&RiskInput { amount: 1, ..i }),
        declined("daily", "61")
    );
    assert_eq!(
        e.evaluate(&RiskInput { amount: 1, ..i }),
        declined("twice", "65")
    );
}

const DAILY: &str = r#"
    [[merchant_daily]]
    id = "daily-cap"
    merchants = ["M1", "M2"]
    currency = "840"
    max_amount = 10000
"#;

#[test]
fn merchant_daily_is_61_per_merchant_and_resets_on_a_new_date() {
    let e = engine(DAILY);
    let i = input(&CARD);
    let m1 = |amount: u64, date: &'static str| RiskInput { amount, date, ..i };
    assert_eq!(e.evaluate(&m1(6000, "20250101")), Ok(()));
    assert_eq!(
        e.evaluate(&RiskInput {
            merchant: "M1   ",
            ..m1(4000, "20250101")
        }),
        Ok(())
    );
    assert_eq!(e.evaluate(&m1(1, "20250101")), declined("daily-cap", "61"));
    // M2 has its own total; M3 is not listed.
    assert_eq!(
        e.evaluate(&RiskInput {
            merchant: "M2",
            ..m1(10000, "20250101")
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            merchant: "M2",
            ..m1(1, "20250101")
        }),
        declined("daily-cap", "61")
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            merchant: "M3",
            ..m1(99_999, "20250101")
        }),
        Ok(())
    );
    // Other currency and refunds are not counted.
    assert_eq!(
        e.evaluate(&RiskInput {
            currency: "978",
            ..m1(5000, "20250101")
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            kind: TxnKind::Refund,
            ..m1(5000, "20250101")
        }),
        Ok(())
    );
    // A new business date starts from 0.
    assert_eq!(e.evaluate(&m1(10000, "20250102")), Ok(()));
    assert_eq!(e.evaluate(&m1(1, "20250102")), declined("daily-cap", "61"));
    // A first transaction over the cap on its own.
    assert_eq!(
        e.evaluate(&RiskInput {
            merchant: "M2",
            ..m1(10001, "20250103")
        }),
        declined("daily-cap", "61")
    );
}

/// With no `merchants`, every merchant has its own total: short ids, and
/// long ids that differ only after their 15th character.
#[test]
fn merchant_daily_without_merchants_covers_every_merchant_apart() {
    for merchants in [
        &["A", "B", "C"][..],
        &[
            "A-MERCHANT-ID-LONGER-THAN-15",
            "A-MERCHANT-ID-LONGER-THAN-16",
        ][..],
    ] {
        let e = engine(
            r#"
            [[merchant_daily]]
            id = "all"
            currency = "840"
            max_amount = 100
            "#,
        );
        let i = RiskInput {
            amount: 100,
            ..input(&CARD)
        };
        for &merchant in merchants {
            assert_eq!(e.evaluate(&RiskInput { merchant, ..i }), Ok(()));
            assert_eq!(
                e.evaluate(&RiskInput {
                    merchant,
                    amount: 1,
                    ..i
                }),
                declined("all", "61")
            );
        }
    }
}

#[test]
fn reversals_are_never_checked_nor_counted() {
    let e = engine(&format!(
        "{VELOCITY}{DAILY}
        [[block]]
        id = \"everything\"
        bins = [\"4\"]
        terminals = [\"T1\"]
        cards = [\"{}\"]
        ",
        hex::encode(CARD)
    ));
    let reversal = RiskInput {
        kind: TxnKind::Reversal,
        amount: u64::MAX,
        ..input(&CARD)
    };
    for _ in 0..5 {
        assert_eq!(e.evaluate(&reversal), Ok(()));
    }
    assert_eq!(e.tracked_cards(), 0);
}

#[test]
fn evaluation_order_is_block_currency_amount_velocity_daily() {
    let e = engine(
        r#"
        [[merchant_daily]]
        id = "daily"
        currency = "840"
        max_amount = 10
        [[velocity]]
        id = "velocity"
        window_secs = 60
        max_count = 1
        max_amount = 10
        currency = "840"
        [[amount_limit]]
        id = "amount"
        currency = "840"
        max_amount = 10
        [[currencies]]
        id = "currency"
        allowed = ["978"]
        [[block]]
        id = "block"
        bins = ["4"]
        "#,
    );
    assert_eq!(
        e.rule_ids(),
        ["block", "currency", "amount", "velocity", "daily"].map(Arc::<str>::from)
    );
    let i = RiskInput {
        amount: 11,
        ..input(&CARD)
    };
    assert_eq!(e.evaluate(&i), declined("block", "62"));
    assert_eq!(
        e.evaluate(&RiskInput { pan: "5", ..i }),
        declined("currency", "57")
    );
}

#[test]
fn input_debug_masks_the_pan() {
    let shown = format!("{:?}", input(&CARD));
    assert!(shown.contains("pan: Pan(411111******1111)"), "{shown}");
    assert!(!shown.contains("4111111111111111"), "{shown}");
}

#[test]
fn hit_displays_rule_and_code() {
    let hit = RiskHit {
        rule: Arc::from("stolen"),
        code: "62",
    };
    assert_eq!(hit.to_string(), "risk rule stolen → 62");
}

#[test]
fn replace_keeps_unchanged_state_and_drops_changed() {
    let two = |window: u64, extra: &str| {
        rules(&format!(
            r#"
            [[velocity]]
            id = "v"
            window_secs = {window}
            max_count = 1
            [[merchant_daily]]
            id = "d"
            currency = "840"
            max_amount = 2000
            {extra}
            "#
        ))
    };
    let e = RiskEngine::new(two(60, ""));
    let i = input(&CARD);
    assert_eq!(e.evaluate(&i), Ok(()));
    assert_eq!(
        e.evaluate(&RiskInput {
            card: &card(1),
            ..i
        }),
        Ok(())
    );
    assert_eq!(e.evaluate(&i), declined("v", "65"));
    assert_eq!(e.tracked_cards(), 2);

    // Same id and window, a new rule added: the velocity and daily state
    // are kept.
    e.replace(two(60, "[[block]]\nid = \"b\"\nterminals = [\"T9\"]"));
    assert_eq!(e.rule_ids(), ["b", "v", "d"].map(Arc::<str>::from));
    assert_eq!(e.tracked_cards(), 2);
    assert_eq!(e.evaluate(&i), declined("v", "65"));
    assert_eq!(
        e.evaluate(&RiskInput {
            card: &card(2),
            ..i
        }),
        declined("d", "61")
    );
    assert_eq!(e.tracked_cards(), 3);

    // A changed window drops the velocity state; the daily total is kept.
    e.replace(two(120, ""));
    assert_eq!(e.tracked_cards(), 0);
    assert_eq!(e.evaluate(&RiskInput { amount: 0, ..i }), Ok(()));
    assert_eq!(
        e.evaluate(&RiskInput {
            amount: 1,
            card: &card(3),
            ..i
        }),
        declined("d", "61")
    );
    assert_eq!(e.tracked_cards(), 2);

    // A changed daily currency drops its total; the velocity state is kept.
    e.replace(rules(
        r#"
        [[velocity]]
        id = "v"
        window_secs = 120
        max_count = 1
        [[merchant_daily]]
        id = "d"
        currency = "978"
        max_amount = 2000
        "#,
    ));
    assert_eq!(e.tracked_cards(), 2);
    assert_eq!(e.evaluate(&i), declined("v", "65"));
    let euro = RiskInput {
        currency: "978",
        amount: 2000,
        ..i
    };
    assert_eq!(
        e.evaluate(&RiskInput {
            card: &card(4),
            ..euro
        }),
        Ok(())
    );
    assert_eq!(
        e.evaluate(&RiskInput {
            card: &card(5),
            ..euro
        }),
        declined("d", "61")
    );

    // Removing the rules drops their state; bringing them back starts anew.
    e.replace(rules(""));
    assert!(e.rule_ids().is_empty());
    assert_eq!(e.tracked_cards(), 0);
    assert_eq!(e.evaluate(&i), Ok(()));
    e.replace(two(120, ""));
    assert_eq!(e.tracked_cards(), 0);
    assert_eq!(e.evaluate(&RiskInput { amount: 2000, ..i }), Ok(()));
    assert_eq!(e.evaluate(&i), declined("v", "65"));
}

#[test]
fn full_shard_leaves_new_cards_untracked_and_sweeps_idle_ones() {
    // 128 cards over 64 shards: 2 per shard.
    let e = engine(&format!("max_cards = 128\n{VELOCITY}"));
    let at = |card: &'static [u8; 32], ms: u64| RiskInput {
        now_ms: T0 + ms,
        ..input(card)
    };
    static CARDS: std::sync::LazyLock<Vec<[u8; 32]>> =
        std::sync::LazyLock::new(|| (0..4).map(|n| card(n * 64)).collect());
    let [a, b, c, d] = [&CARDS[0], &CARDS[1], &CARDS[2], &CARDS[3]];
    assert_eq!(e.evaluate(&at(a, 0)), Ok(()));
    assert_eq!(e.evaluate(&at(b, 0)), Ok(()));
    assert_eq!(e.untracked(), 0);
    // Shard 0 is full: c passes as a card without history, every time.
    for ms in 1..=5 {
        assert_eq!(e.evaluate(&at(c, ms)), Ok(()));
    }
    assert_eq!(e.untracked(), 5);
    assert_eq!(e.tracked_cards(), 2);
    // a and b stay tracked.
    assert_eq!(e.evaluate(&at(a, 10)), Ok(()));
    assert_eq!(e.evaluate(&at(a, 11)), Ok(()));
    assert_eq!(e.evaluate(&at(a, 12)), declined("card-burst", "65"));
    // Once b's window is over (a is still live), a sweep frees b's place.
    assert_eq!(e.evaluate(&at(a, 59_000)), declined("card-burst", "65"));
    assert_eq!(e.evaluate(&at(d, 60_005)), Ok(()));
    assert_eq!(e.untracked(), 5);
    assert_eq!(e.tracked_cards(), 2);
    assert_eq!(e.evaluate(&at(c, 60_006)), Ok(()));
    assert_eq!(e.untracked(), 6);
}

#[test]
fn tracked_cards_never_exceed_max_cards() {
    let e = engine(&format!("max_cards = 100\n{VELOCITY}"));
    let cards: Vec<[u8; 32]> = (0..1000).map(card).collect();
    for (n, c) in cards.iter().enumerate() {
        assert_eq!(
            e.evaluate(&RiskInput {
                now_ms: T0 + n as u64,
                ..input(c)
            }),
            Ok(())
        );
        assert!(e.tracked_cards() <= 100);
    }
    assert_eq!(e.tracked_cards(), 100);
    assert_eq!(e.untracked(), 900);
    // A lowered bound keeps the tracked cards but stops new ones.
    e.replace(rules(&format!("max_cards = 10\n{VELOCITY}")));
    assert_eq!(e.tracked_cards(), 100);
    assert_eq!(
        e.evaluate(&RiskInput {
            now_ms: T0 + 1000,
            ..input(&card(5000))
        }),
        Ok(())
    );
    assert_eq!(e.untracked(), 901);
}

#[test]
fn concurrent_attempts_on_one_card_pass_exactly_max_count() {
    let e = Arc::new(engine(
        r#"
        [[velocity]]
        id = "fifty"
        window_secs = 3600
        max_count = 50
        "#,
    ));
    let passed: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let e = Arc::clone(&e);
                s.spawn(move || {
                    (0..100)
                        .filter(|_| e.evaluate(&input(&CARD)).is_ok())
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(passed, 50);
}

#[test]
fn validation_errors_name_rule_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[[block]]\nid = \"x\"\n[[velocity]]\nid = \"x\"\nwindow_secs = 1\nmax_count = 1",
            r#"risk rule "x": id: duplicate id (ids are unique across all risk rules)"#,
        ),
        (
            "[[block]]\nid = \"\"",
            r#"risk rule "": id: must not be empty"#,
        ),
        (
            "[[block]]\nid = \"b\"\ncards = [\"zz\"]",
            r#"risk rule "b": cards[0]: must be 64 hex characters"#,
        ),
        (
            &format!(
                "[[block]]\nid = \"b\"\ncards = [\"{}\", \"{}\"]",
                "a".repeat(64),
                "a".repeat(62)
            ),
            r#"risk rule "b": cards[1]: must be 64 hex characters"#,
        ),
        (
            "[[block]]\nid = \"b\"\nbins = [\"41a\"]",
            r#"risk rule "b": bins[0]: must be 1 to 11 digits"#,
        ),
        (
            "[[block]]\nid = \"b\"\nbins = [\"4\", \"123456789012\"]",
            r#"risk rule "b": bins[1]: must be 1 to 11 digits"#,
        ),
        (
            "[[block]]\nid = \"b\"\nranges = [[\"4000\", \"40000\"]]",
            r#"risk rule "b": ranges[0]: must be two prefixes of equal length (1 to 11 digits), low first"#,
        ),
        (
            "[[block]]\nid = \"b\"\nranges = [[\"4100\", \"4000\"]]",
            r#"risk rule "b": ranges[0]: must be two prefixes of equal length (1 to 11 digits), low first"#,
        ),
        (
            "[[block]]\nid = \"b\"\nterminals = [\"T1\", \"  \"]",
            r#"risk rule "b": terminals[1]: must be 1 to 15 characters"#,
        ),
        (
            "[[currencies]]\nid = \"c\"\nallowed = [\"840\"]\nmerchants = [\"MERCHANT00000001\"]",
            r#"risk rule "c": merchants[0]: must be 1 to 15 characters"#,
        ),
        (
            "[[amount_limit]]\nid = \"a\"\ncurrency = \"84\"\nmax_amount = 1",
            r#"risk rule "a": currency: must be 3 digits (ISO 4217 numeric)"#,
        ),
        (
            "[[amount_limit]]\nid = \"a\"\ncurrency = \"840\"\nmax_amount = 1\nmcc = [\"799\"]",
            r#"risk rule "a": mcc[0]: must be 4 digits"#,
        ),
        (
            "[[velocity]]\nid = \"card-burst\"\nwindow_secs = 0\nmax_count = 1",
            r#"risk rule "card-burst": window_secs: must be greater than 0"#,
        ),
        (
            "[[velocity]]\nid = \"v\"\nwindow_secs = 18446744073709551615\nmax_count = 1",
            r#"risk rule "v": window_secs: is too large"#,
        ),
        (
            "[[velocity]]\nid = \"v\"\nwindow_secs = 1\nmax_count = 0",
            r#"risk rule "v": max_count: must be greater than 0"#,
        ),
        (
            "[[velocity]]\nid = \"v\"\nwindow_secs = 1\nmax_count = 1\nmax_amount = 5",
            r#"risk rule "v": max_amount: needs `currency` (amounts of different currencies do not add up)"#,
        ),
        (
            "[[velocity]]\nid = \"v\"\nwindow_secs = 1\nmax_count = 1\ncurrency = \"USD\"",
            r#"risk rule "v": currency: must be 3 digits (ISO 4217 numeric)"#,
        ),
        (
            "[[velocity]]\nid = \"v\"\nwindow_secs = 1\nmax_count = 1\nkinds = [\"purchase\", \"reversal\"]",
            r#"risk rule "v": kinds[1]: reversals are never risk-checked"#,
        ),
        (
            "[[merchant_daily]]\nid = \"d\"\ncurrency = \"840\"\nmax_amount = 1\nkinds = []",
            r#"risk rule "d": kinds: must list at least one kind"#,
        ),
        (
            "[[merchant_daily]]\nid = \"d\"\ncurrency = \"8400\"\nmax_amount = 1",
            r#"risk rule "d": currency: must be 3 digits (ISO 4217 numeric)"#,
        ),
        (
            "[[currencies]]\nid = \"c\"\nallowed = [\"840\", \"EUR\"]",
            r#"risk rule "c": allowed[1]: must be 3 digits (ISO 4217 numeric)"#,
        ),
        (
            "[[currencies]]\nid = \"c\"\nallowed = []",
            r#"risk rule "c": allowed: must list at least one currency"#,
        ),
        (
            "[[currencies]]\nid = \"c\"\nallowed = [\"840\"]\nkinds = [\"reversal\"]",
            r#"risk rule "c": kinds[0]: reversals are never risk-checked"#,
        ),
        ("max_cards = 0", "risk: max_cards: must be greater than 0"),
    ];
    for (toml, expected) in cases {
        assert_eq!(&build_error(toml), expected, "for {toml}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let err = toml::from_str::<RiskConfig>("[[velocity]]\nid = \"v\"\nwindow = 1\nmax_count = 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `window`"), "{err}");
    let err = toml::from_str::<RiskConfig>("max_card = 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `max_card`"), "{err}");
}

#[test]
fn defaults_and_full_example_parse() {
    let set = rules(&format!(
        r#"
        max_cards = 5000
        [[block]]
        id = "stolen"
        bins = ["412345", "55554444"]
        ranges = [["400000", "400999"]]
        cards = ["{}"]
        terminals = ["T0000009"]
        [[amount_limit]]
        id = "gambling-cap"
        mcc = ["7995"]
        terminals = ["T1"]
        currency = "840"
        max_amount = 50000
        kinds = ["purchase", "authorization"]
        [[velocity]]
        id = "card-burst"
        window_secs = 3600
        max_count = 10
        max_amount = 200000
        currency = "840"
        [[merchant_daily]]
        id = "daily-cap"
        merchants = ["M1"]
        currency = "840"
        max_amount = 10000000
        [[currencies]]
        id = "usd-only"
        merchants = ["M1"]
        allowed = ["840", "978"]
        "#,
        "ab".repeat(32)
    ));
    assert_eq!(set.max_cards(), 5000);
    assert_eq!(rules("").max_cards(), DEFAULT_MAX_CARDS);
    assert_eq!(
        set.rule_ids(),
        [
            "stolen",
            "usd-only",
            "gambling-cap",
            "card-burst",
            "daily-cap"
        ]
        .map(Arc::<str>::from)
    );
}

#[test]
fn full_shard_sweeps_at_most_once_a_second() {
    let e = engine(
        r#"
        max_cards = 128
        [[velocity]]
        id = "hourly"
        window_secs = 3600
        max_count = 5
        "#,
    );
    let (a, b, c) = (card(0), card(64), card(128));
    let at = |card, s: u64, ms: u64| RiskInput {
        now_ms: T0 + s * 1000 + ms,
        ..input(card)
    };
    assert_eq!(e.evaluate(&at(&a, 0, 0)), Ok(()));
    assert_eq!(e.evaluate(&at(&b, 100, 0)), Ok(()));
    // Full: the sweep finds nothing to drop (a is live until 3600 s).
    assert_eq!(e.evaluate(&at(&c, 3599, 999)), Ok(()));
    assert_eq!((e.tracked_cards(), e.untracked()), (2, 1));
    // a has left its window, but the last sweep was under a second ago.
    assert_eq!(e.evaluate(&at(&c, 3600, 500)), Ok(()));
    assert_eq!((e.tracked_cards(), e.untracked()), (2, 2));
    // A second later the full shard sweeps again, drops a and takes c.
    assert_eq!(e.evaluate(&at(&c, 3601, 0)), Ok(()));
    assert_eq!((e.tracked_cards(), e.untracked()), (2, 2));
    for s in 3602..3606 {
        assert_eq!(e.evaluate(&at(&c, s, 0)), Ok(()));
    }
    assert_eq!(e.evaluate(&at(&c, 3606, 0)), declined("hourly", "65"));
}
