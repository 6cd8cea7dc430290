//! Unit tests of the switch's decisions: no socket, no journal, no clock.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::adapter::Exchange;
use crate::iso8583::Message;
use crate::journal::Vault;
use crate::route::RouteEntry;
use crate::txn::Malformed;

const CARD: &str = "4761739001010010";

fn request(mti: &'static str, pc: &str, pan: &str, amount: u64) -> Message {
    let mut m = Message::new(Mti::from_static(mti));
    m.set(2, pan.to_string())
        .set(3, pc.to_string())
        .set(4, format!("{amount:012}"))
        .set(7, "1126010000")
        .set(11, "000042")
        .set(41, "TERM0001")
        .set(49, "978");
    m
}

fn txn(mti: &'static str, pc: &str, pan: &str, amount: u64) -> Txn {
    let m = request(mti, pc, pan, amount);
    let kind = Txn::classify(&m).unwrap();
    Txn::new(kind, m).unwrap()
}

fn purchase() -> Txn {
    txn("0200", "000000", CARD, 1000)
}

fn terminal(allowed: &[TxnKind], enabled: bool) -> Arc<Terminal> {
    Arc::new(Terminal {
        id: "TERM0001".into(),
        merchant_id: "MERCHANT0000001".into(),
        name_location: "SHOP".into(),
        mcc: "5411".into(),
        currency: "978".into(),
        allowed: allowed.iter().copied().collect(),
        enabled,
        protection: Arc::default(),
    })
}

fn received(kind: TxnKind, mti: &str, pan: &str, amount: u64, currency: &str) -> Received {
    Received {
        kind,
        mti: mti.into(),
        processing_code: "000000".into(),
        amount,
        currency: currency.into(),
        pan: Vault::new(&[7; 32]).seal(pan),
        terminal: "TERM0001".into(),
        merchant: None,
        stan: "000042".into(),
        transmission: "1126010000".into(),
        local_time: None,
        local_date: None,
        entry_mode: None,
        condition: None,
        rrn: "000000000001".into(),
        original: None,
        replacement: None,
    }
}

fn outcome(code: &str, source: Source) -> Outcome {
    Outcome {
        code: code.into(),
        auth_id: Some("AB12CD".into()),
        source,
    }
}

fn forwarded(destination: &str) -> Forwarded {
    Forwarded {
        destination: destination.into(),
        switch_stan: 7,
        transmission: "1126010001".into(),
        local_93: None,
    }
}

fn routes() -> RouteTable {
    let entry = |prefix: &str, destination: &str| {
        (
            format!("route {prefix}"),
            RouteEntry {
                prefix: Some(prefix.into()),
                range: None,
                destination: destination.into(),
            },
        )
    };
    let names: BTreeSet<String> = ["bank_a", "bank_b"].map(String::from).into();
    RouteTable::build(
        vec![entry("476173", "bank_a"), entry("5", "gone")],
        &names
            .iter()
            .chain(["gone".to_string()].iter())
            .cloned()
            .collect(),
    )
    .unwrap()
}

fn forward_to(destination: &str) -> Decision<'_> {
    Decision::Forward {
        destination,
        original: None,
    }
}

#[test]
fn a_request_without_a_numeric_stan_is_malformed() {
    let mut m = request("0200", "000000", CARD, 1000);
    m.set(11, "00004X");
    let kind = Txn::classify(&m).unwrap();
    let Err(Malformed { request }) = Txn::new(kind, m) else {
        panic!("a non-numeric STAN makes no Txn");
    };
    assert_eq!(request.text(11), Some("00004X"), "the request comes back");
}

#[test]
fn a_txn_is_typed_at_the_edge() {
    let mut m = request("0420", "000000", CARD, 1000);
    m.set(90, "0200000041112601000000000000000000000000000")
        .set(95, "000000000400000000000400C00000000C00000000");
    let t = Txn::new(Txn::classify(&m).unwrap(), m).unwrap();
    assert_eq!(t.kind(), TxnKind::Reversal);
    assert_eq!(
        (t.amount(), t.currency(), t.stan()),
        (1000, Some("978"), 42)
    );
    assert_eq!(t.terminal(), crate::txn::TerminalId::new("TERM0001"));
    assert_eq!(t.original().stan, "000041");
    assert_eq!(t.original().transmission, Some("1126010000"));
    assert_eq!(t.replacement(), Some(400));
    assert!(!t.has_rrn());
}

#[test]
fn admission_replays_refuses_or_journals() {
    assert_eq!(admit(Ok(Some(7)), true), Admission::Replay(7));
    assert_eq!(
        admit::<u8>(Err(Refusal::System), false),
        Admission::Refuse(Refusal::System)
    );
    assert_eq!(admit::<u8>(Ok(None), true), Admission::MemoryFull);
    assert_eq!(admit::<u8>(Ok(None), false), Admission::Journal);
}

#[test]
fn a_retransmission_is_the_same_class_time_and_amount() {
    let t = purchase();
    let same = received(TxnKind::Purchase, "0200", CARD, 1000, "978");
    assert!(same_request(&t, *b"20", &same));
    assert!(!same_request(&t, *b"10", &same), "other class");
    let other_amount = received(TxnKind::Purchase, "0200", CARD, 999, "978");
    assert!(!same_request(&t, *b"20", &other_amount));
    let mut other_time = same.clone();
    other_time.transmission = "1126010001".into();
    assert!(!same_request(&t, *b"20", &other_time));
}

#[test]
fn a_reversal_names_an_original_of_another_class() {
    let reversal = txn("0400", "000000", CARD, 1000);
    let original = received(TxnKind::Purchase, "0200", CARD, 1000, "978");
    assert!(names_original(&reversal, *b"20", &original));
    assert!(!names_original(&reversal, *b"40", &original), "a reversal");
}

#[test]
fn the_screen_refuses_an_unknown_terminal() {
    assert_eq!(
        screen(&purchase(), None).map(|(_, p)| p),
        Err(Refusal::UnknownTerminal)
    );
}

#[test]
fn the_screen_refuses_what_a_terminal_may_not_do() {
    let disabled = terminal(&[TxnKind::Purchase], false);
    assert_eq!(
        screen(&purchase(), Some(&disabled)).map(|(_, p)| p),
        Err(Refusal::NotPermitted)
    );
    let refunds_only = terminal(&[TxnKind::Refund], true);
    assert_eq!(
        screen(&purchase(), Some(&refunds_only)).map(|(_, p)| p),
        Err(Refusal::NotPermitted)
    );
}

#[test]
fn the_screen_refuses_a_card_number_failing_luhn() {
    let t = terminal(&[TxnKind::Purchase], true);
    let bad = txn("0200", "000000", "4761739001010011", 1000);
    assert_eq!(
        screen(&bad, Some(&t)).map(|(_, p)| p),
        Err(Refusal::InvalidCard)
    );
}

#[test]
fn the_screen_plans_by_kind() {
    let all = terminal(
        &[
            TxnKind::Purchase,
            TxnKind::Reversal,
            TxnKind::Completion,
            TxnKind::Authorization,
        ],
        true,
    );
    for (mti, pc, plan) in [
        ("0200", "000000", Plan::Authorise),
        ("0100", "000000", Plan::Authorise),
        ("0400", "000000", Plan::Reverse),
        ("0220", "000000", Plan::Complete),
    ] {
        let t = txn(mti, pc, CARD, 1000);
        assert_eq!(screen(&t, Some(&all)).map(|(_, p)| p), Ok(plan), "{mti}");
    }
}

#[test]
fn a_reversal_of_an_unknown_original_is_accepted_with_nothing_owed() {
    assert_eq!(
        reversal(None),
        Decision::Accept {
            destination: None,
            owed: false
        }
    );
}

#[test]
fn a_reversal_is_owed_for_an_approved_or_unknown_forwarded_original() {
    let approved = outcome("00", Source::Destination);
    let timed_out = outcome("91", Source::Switch);
    let declined = outcome("51", Source::Destination);
    let bank_91 = outcome("91", Source::Destination);
    let owed = |outcome: Option<&Outcome>, destination: Option<&'static str>| {
        reversal(Some(Reversed {
            outcome,
            destination,
        }))
    };
    let accept = |destination, owed| Decision::Accept { destination, owed };
    assert_eq!(
        owed(Some(&approved), Some("bank_a")),
        accept(Some("bank_a"), true)
    );
    assert_eq!(owed(None, Some("bank_a")), accept(Some("bank_a"), true));
    assert_eq!(
        owed(Some(&timed_out), Some("bank_a")),
        accept(Some("bank_a"), true)
    );
    assert_eq!(
        owed(Some(&declined), Some("bank_a")),
        accept(Some("bank_a"), false)
    );
    assert_eq!(
        owed(Some(&bank_91), Some("bank_a")),
        accept(Some("bank_a"), false)
    );
    assert_eq!(
        owed(Some(&approved), None),
        accept(None, false),
        "never forwarded"
    );
}

#[test]
fn a_completion_needs_an_authorisation_of_the_same_card_and_currency() {
    let completion = received(TxnKind::Completion, "0220", CARD, 800, "978");
    let pre = received(TxnKind::Authorization, "0100", CARD, 1000, "978");
    assert_eq!(completion_matches(&completion, &pre), Ok(()));
    let purchase = received(TxnKind::Purchase, "0200", CARD, 1000, "978");
    let other_card = received(
        TxnKind::Authorization,
        "0100",
        "4000000000000002",
        1000,
        "978",
    );
    let other_currency = received(TxnKind::Authorization, "0100", CARD, 1000, "840");
    for original in [purchase, other_card, other_currency] {
        assert_eq!(
            completion_matches(&completion, &original),
            Err(Refusal::OriginalNotFound)
        );
    }
}

#[test]
fn a_completion_of_an_original_not_approved_by_its_bank_is_refused() {
    let request = received(TxnKind::Completion, "0220", CARD, 800, "978");
    let pre = received(TxnKind::Authorization, "0100", CARD, 1000, "978");
    let to = forwarded("bank_a");
    let not_found = Decision::Refuse(Refusal::OriginalNotFound);
    let declined = outcome("05", Source::Destination);
    let by_switch = outcome("00", Source::Switch);
    let approved = outcome("00", Source::Destination);
    assert_eq!(completion(&request, &pre, None, Some(&to)), not_found);
    assert_eq!(
        completion(&request, &pre, Some(&declined), Some(&to)),
        not_found
    );
    assert_eq!(
        completion(&request, &pre, Some(&by_switch), Some(&to)),
        not_found
    );
    assert_eq!(completion(&request, &pre, Some(&approved), None), not_found);
}

#[test]
fn a_completion_over_its_pre_authorisation_is_refused() {
    let request = received(TxnKind::Completion, "0220", CARD, 1001, "978");
    let pre = received(TxnKind::Authorization, "0100", CARD, 1000, "978");
    let approved = outcome("00", Source::Destination);
    assert_eq!(
        completion(&request, &pre, Some(&approved), Some(&forwarded("bank_a"))),
        Decision::Refuse(Refusal::InvalidAmount)
    );
}

#[test]
fn a_completion_goes_where_its_pre_authorisation_went() {
    let completion_request = received(TxnKind::Completion, "0220", CARD, 1000, "978");
    let pre = received(TxnKind::Authorization, "0100", CARD, 1000, "978");
    let approved = outcome("00", Source::Destination);
    let to = forwarded("bank_b");
    let Decision::Forward {
        destination,
        original: Some(reference),
    } = completion(&completion_request, &pre, Some(&approved), Some(&to))
    else {
        panic!("forwarded");
    };
    assert_eq!(destination, "bank_b");
    assert_eq!(
        reference,
        OriginalRef {
            destination: Arc::from("bank_b"),
            mti: Mti::from_static("0100"),
            switch_stan: 7,
            transmission: "1126010001".into(),
            local_93: None,
        }
    );
}

#[test]
fn a_risk_decline_refuses_with_the_rules_code() {
    let routes = routes();
    let up = |_: &str| {
        Some(Link {
            up: true,
            fallback: None,
        })
    };
    assert_eq!(
        authorisation(&purchase(), &routes, Err("61"), up),
        Decision::Refuse(Refusal::Risk("61"))
    );
}

#[test]
fn an_authorisation_is_routed_by_bin() {
    let routes = routes();
    let up = |_: &str| {
        Some(Link {
            up: true,
            fallback: None,
        })
    };
    assert_eq!(
        authorisation(&purchase(), &routes, Ok(()), up),
        forward_to("bank_a")
    );
    let no_route = txn("0200", "000000", "6011000990139424", 1000);
    assert_eq!(
        authorisation(&no_route, &routes, Ok(()), up),
        Decision::Refuse(Refusal::NoRoute)
    );
    // Routed to a destination the switch does not have.
    let gone = txn("0200", "000000", "5555555555554444", 1000);
    let only_banks = |name: &str| {
        name.starts_with("bank").then_some(Link {
            up: true,
            fallback: None,
        })
    };
    assert_eq!(
        authorisation(&gone, &routes, Ok(()), only_banks),
        Decision::Refuse(Refusal::NoRoute)
    );
}

#[test]
fn a_destination_without_links_falls_back_or_is_unavailable() {
    let routes = routes();
    let links = |fallback_up: bool| {
        move |name: &str| match name {
            "bank_a" => Some(Link {
                up: false,
                fallback: Some("bank_b"),
            }),
            "bank_b" => Some(Link {
                up: fallback_up,
                fallback: None,
            }),
            _ => None,
        }
    };
    assert_eq!(
        authorisation(&purchase(), &routes, Ok(()), links(true)),
        forward_to("bank_b")
    );
    assert_eq!(
        authorisation(&purchase(), &routes, Ok(()), links(false)),
        Decision::Refuse(Refusal::IssuerUnavailable)
    );
    let alone = |_: &str| {
        Some(Link {
            up: false,
            fallback: None,
        })
    };
    assert_eq!(
        authorisation(&purchase(), &routes, Ok(()), alone),
        Decision::Refuse(Refusal::IssuerUnavailable)
    );
}

#[test]
fn a_reply_is_an_answer_an_unknown_outcome_or_a_refusal() {
    let mut response = Message::new(Mti::from_static("0210"));
    response.set(39, "00").set(38, "AB12CD");
    let exchange = |response: Message| {
        Ok(Exchange {
            response,
            stan: 7,
            waited: Duration::from_millis(3),
        })
    };
    assert_eq!(
        reply(IsoVersion::Iso1987, &exchange(response.clone())),
        Reply::Answered(translate::Answer {
            code: "00".into(),
            auth_id: Some("AB12CD".into())
        })
    );
    response.remove(39);
    assert_eq!(
        reply(IsoVersion::Iso1987, &exchange(response)),
        Reply::Unreadable
    );
    for sent_unanswered in [LinkError::Timeout(Duration::from_secs(5)), LinkError::Lost] {
        assert_eq!(
            reply(IsoVersion::Iso1987, &Err(sent_unanswered)),
            Reply::Unanswered
        );
    }
    assert_eq!(
        reply(IsoVersion::Iso1987, &Err(LinkError::Unavailable)),
        Reply::Refuse(Refusal::IssuerUnavailable)
    );
    for never_sent in [
        LinkError::NotJournaled,
        LinkError::Encode(crate::security::mac::MacError::Missing.into()),
    ] {
        assert_eq!(
            reply(IsoVersion::Iso1987, &Err(never_sent)),
            Reply::Refuse(Refusal::System)
        );
    }
}
