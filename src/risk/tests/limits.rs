//! Daily limits, reloads and the rules engine shared across requests.

use std::sync::Arc;

use super::*;

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
