//! What the risk stage costs per transaction: `RiskEngine::evaluate` with a
//! realistic rule set (a block list of 200 BINs, 20 ranges, 1,000 cards and
//! 50 terminals; 10 amount limits; a velocity rule with count and amount;
//! a merchant daily cap; a currency rule) and 100,000 cards in the velocity
//! table: the normal (pass) path on random known cards, and a BIN-blocked
//! card. As in the switch, the request's own data is in cache (its card
//! digest was just computed) while the velocity table is not.
//!
//! Run: `cargo bench --bench risk`

use std::hint::black_box;

use cardswitch::risk::{
    AmountLimitRule, BlockRule, CurrencyRule, MerchantDailyRule, RiskConfig, RiskEngine, RiskInput,
    RuleSet, VelocityRule,
};
use cardswitch::txn::TxnKind;
use criterion::{Criterion, criterion_group, criterion_main};

/// The allocator of the `cardswitch` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Cards in the velocity table.
const CARDS: usize = 100_000;
/// Merchants (one terminal each).
const MERCHANTS: usize = 1_000;
/// The issuer BIN of the cards that pass.
const PASS_BIN: &str = "4761739";
/// Clock advance per transaction: each of the 100,000 cards is seen 3.6
/// times per hour (every card stays in the one-hour window), far below the
/// velocity limit of 20.
const STEP_MS: u64 = 10;
/// The bench clock's start, ms.
const T0: u64 = 1_000_000;

fn digits(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n).map(|_| char::from(b'0' + rng.u8(0..10))).collect()
}

fn config(rng: &mut fastrand::Rng) -> (RiskConfig, Vec<String>) {
    let mut bins = Vec::new();
    while bins.len() < 200 {
        let len = if rng.bool() { 6 } else { 8 };
        let bin = format!("{}{}", rng.u8(3..7), digits(rng, len - 1));
        if !PASS_BIN.starts_with(&bin[..len.min(PASS_BIN.len())]) {
            bins.push(bin);
        }
    }
    let mut ranges = Vec::new();
    while ranges.len() < 20 {
        let low = rng.u32(300_000..700_000);
        let high = low + rng.u32(0..1000);
        let pass: u32 = PASS_BIN[..6].parse().unwrap_or(0);
        if !(low..=high).contains(&pass) {
            ranges.push([low.to_string(), high.to_string()]);
        }
    }
    let cards = (0..1_000)
        .map(|_| {
            let mut d = [0u8; 32];
            rng.fill(&mut d);
            hex::encode(d)
        })
        .collect();
    let mccs = [
        "7995", "5411", "5812", "5999", "4829", "6051", "5967", "7011", "4111", "5732",
    ];
    let amount_limit = (0..10)
        .map(|i| AmountLimitRule {
            id: format!("limit-{i}"),
            mcc: mccs
                .iter()
                .skip(i)
                .take(1 + i % 3)
                .map(|m| m.to_string())
                .collect(),
            terminals: Vec::new(),
            currency: "840".into(),
            max_amount: 1_000_000 + 100_000 * i as u64,
            kinds: None,
        })
        .collect();
    let config = RiskConfig {
        max_cards: None,
        block: vec![BlockRule {
            id: "stolen".into(),
            bins: bins.clone(),
            ranges,
            cards,
            terminals: (0..50).map(|i| format!("B{i:07}")).collect(),
        }],
        amount_limit,
        velocity: vec![VelocityRule {
            id: "card-burst".into(),
            window_secs: 3600,
            max_count: 20,
            max_amount: Some(10_000_000),
            currency: Some("840".into()),
            kinds: None,
        }],
        merchant_daily: vec![MerchantDailyRule {
            id: "daily-cap".into(),
            merchants: Vec::new(),
            currency: "840".into(),
            max_amount: u64::MAX / 2,
            kinds: None,
        }],
        currencies: vec![CurrencyRule {
            id: "usd-eur".into(),
            merchants: Vec::new(),
            allowed: vec!["840".into(), "978".into()],
            kinds: None,
        }],
    };
    (config, bins)
}

/// Seed of the velocity table's card digests.
const CARD_SEED: u64 = 0xC0FF_EE00_0000_0000;

/// The keyed digest of card `i` of the 100,000: deterministic, so the bench
/// loop derives it (a few ns) instead of reading it from a 3.2 MB table — in
/// the switch the digest has just been computed and is in cache.
fn card(i: u32) -> [u8; 32] {
    let mut d = [0u8; 32];
    fastrand::Rng::with_seed(CARD_SEED ^ u64::from(i)).fill(&mut d);
    d
}

/// The request strings, one allocation each as in a decoded request.
struct World {
    pans: Vec<String>,
    blocked_pans: Vec<String>,
    terminals: Vec<String>,
    merchants: Vec<String>,
}

fn world(rng: &mut fastrand::Rng, bins: &[String]) -> World {
    World {
        pans: (0..1_000)
            .map(|_| format!("{PASS_BIN}{}", digits(rng, 9)))
            .collect(),
        blocked_pans: bins
            .iter()
            .map(|b| format!("{b}{}", digits(rng, 16 - b.len())))
            .collect(),
        terminals: (0..MERCHANTS).map(|i| format!("T{i:07}")).collect(),
        merchants: (0..MERCHANTS).map(|i| format!("MERCHANT{i:07}")).collect(),
    }
}

/// A request, compactly: indexes into the world.
#[derive(Clone, Copy)]
struct Txn {
    kind: TxnKind,
    amount: u32,
    card: u32,
    pan: u16,
    merchant: u16,
}

const MCCS: [&str; 5] = ["5411", "5812", "5999", "7995", "4111"];

impl Txn {
    fn random(rng: &mut fastrand::Rng, pans: usize) -> Txn {
        Txn {
            kind: if rng.u8(0..4) == 0 {
                TxnKind::Authorization
            } else {
                TxnKind::Purchase
            },
            amount: rng.u32(100..=10_000),
            card: rng.u32(..CARDS as u32),
            pan: rng.u16(..pans as u16),
            merchant: rng.u16(..MERCHANTS as u16),
        }
    }

    fn input<'a>(
        &self,
        w: &'a World,
        pans: &'a [String],
        card: &'a [u8; 32],
        now_ms: u64,
    ) -> RiskInput<'a> {
        let m = usize::from(self.merchant);
        RiskInput {
            kind: self.kind,
            amount: u64::from(self.amount),
            currency: "840",
            pan: &pans[usize::from(self.pan)],
            card,
            terminal: &w.terminals[m],
            merchant: &w.merchants[m],
            mcc: MCCS[m % MCCS.len()],
            date: "20250101",
            now_ms,
        }
    }
}

/// Blocked requests, used cyclically.
const INPUTS: usize = 1 << 16;

fn evaluate(c: &mut Criterion) {
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    let (config, bins) = config(&mut rng);
    let engine = RiskEngine::new(RuleSet::build(&config).unwrap());
    let w = world(&mut rng, &bins);

    // Fill the velocity table: one transaction per card.
    let mut now = T0;
    for i in 0..CARDS as u32 {
        let t = Txn {
            card: i,
            ..Txn::random(&mut rng, w.pans.len())
        };
        engine
            .evaluate(&t.input(&w, &w.pans, &card(i), now))
            .unwrap();
        now += 1;
    }
    assert_eq!(engine.tracked_cards(), CARDS);

    // Every card once per round, in random order: each comes back every
    // 100,000 requests (1,000 s of the bench's clock, inside the one-hour
    // window), so the table stays at 100,000 cards however long it runs.
    let mut order: Vec<u32> = (0..CARDS as u32).collect();
    rng.shuffle(&mut order);
    let pass: Vec<Txn> = order
        .into_iter()
        .map(|card| Txn {
            card,
            ..Txn::random(&mut rng, w.pans.len())
        })
        .collect();
    // One round of the requests, checking that they take the pass path.
    for t in &pass {
        now += STEP_MS;
        engine
            .evaluate(&t.input(&w, &w.pans, &card(t.card), now))
            .unwrap();
    }
    let blocked: Vec<Txn> = (0..INPUTS)
        .map(|_| Txn::random(&mut rng, w.blocked_pans.len()))
        .collect();
    for t in &blocked {
        let hit = engine.evaluate(&t.input(&w, &w.blocked_pans, &card(t.card), now));
        assert_eq!(hit.unwrap_err().code, "62");
    }

    let mut i = 0;
    c.bench_function("risk evaluate pass (100k cards)", |b| {
        b.iter(|| {
            let t = &pass[i % CARDS];
            i += 1;
            now += STEP_MS;
            let card = card(t.card);
            engine.evaluate(black_box(&t.input(&w, &w.pans, &card, now)))
        })
    });
    // The table stayed full while the clock ran.
    assert_eq!(engine.tracked_cards(), CARDS);
    let mut i = 0;
    c.bench_function("risk evaluate bin-blocked", |b| {
        b.iter(|| {
            let t = &blocked[i % INPUTS];
            i += 1;
            let card = card(t.card);
            engine.evaluate(black_box(&t.input(&w, &w.blocked_pans, &card, now)))
        })
    });
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
