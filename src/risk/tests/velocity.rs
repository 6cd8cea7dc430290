//! Velocity rules: counts and amounts per card over a window.

use super::*;

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
