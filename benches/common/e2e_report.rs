//! The end-to-end bench's tables and its check of the targets of issue 18.

use super::{Baseline, CONNECTIONS, Cpu, Load, Outcome, PIPELINE, SwitchRun};

/// Prints every table, then the targets with what was measured.
pub fn print(load: Load, base: &Baseline, switches: &[SwitchRun]) {
    print_piped(load, base, switches);
    print_single(base, switches);
    print_rates(load, base, switches);
    print_threads(switches);
    print_sustained(base, switches);
    print_targets(base, switches);
}

fn pct(a: f64, b: f64) -> f64 {
    100.0 * a / b.max(1.0)
}

fn print_piped(load: Load, base: &Baseline, switches: &[SwitchRun]) {
    println!(
        "\n## Closed loop, {CONNECTIONS} connections × {PIPELINE} in flight, {} transactions (driver + bank stub on CPU 0, switch/relay on CPU 1)\n",
        load.count
    );
    println!(
        "| path | tx/s | % of relay | p50 µs | p99 µs | max µs | CPU µs/tx during | CPU µs/tx until quiet | busy after the load | all checked out |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let relay = base.relay.throughput;
    let row = |name: &str, r: &Outcome, cpu: Option<&Cpu>| {
        println!(
            "| {name} | {:.0} | {:.1}% | {} | {} | {} | {} | {} | {} | {} |",
            r.throughput,
            pct(r.throughput, relay),
            r.p50,
            r.p99,
            r.max,
            cpu.map(|c| format!("{:.2}", c.during)).unwrap_or_default(),
            cpu.map(|c| format!("{:.2}", c.total)).unwrap_or_default(),
            cpu.map(|c| format!("{:.1} s", c.quiet_after.as_secs_f64()))
                .unwrap_or_default(),
            r.checked_out()
        );
    };
    row("driver → bank (direct)", &base.direct, None);
    row("driver → relay → bank", &base.relay, Some(&base.relay_cpu));
    for s in switches {
        row(
            &format!("driver → switch → bank, journal {}", s.durability),
            &s.piped,
            Some(&s.cpu),
        );
    }
}

fn print_single(base: &Baseline, switches: &[SwitchRun]) {
    println!("\n## Closed loop, {CONNECTIONS} connections × 1 in flight\n");
    println!("| path | tx/s | % of relay | p50 µs | p99 µs | all checked out |");
    println!("|---|---:|---:|---:|---:|---|");
    let relay = base.relay_single.throughput;
    let row = |name: &str, r: &Outcome| {
        println!(
            "| {name} | {:.0} | {:.1}% | {} | {} | {} |",
            r.throughput,
            pct(r.throughput, relay),
            r.p50,
            r.p99,
            r.checked_out()
        );
    };
    row("direct", &base.direct_single);
    row("relay", &base.relay_single);
    for s in switches {
        row(&format!("switch, journal {}", s.durability), &s.single);
    }
}

fn print_rates(load: Load, base: &Baseline, switches: &[SwitchRun]) {
    println!(
        "\n## Open loop ({} s per rate; latency from when each request was due)\n",
        load.seconds
    );
    println!(
        "| rate | path | p50 µs | p99 µs | p99.9 µs | max µs | p99 over relay µs | inside the switch: ≤ 5 ms | inside: p99 ≤ | all checked out |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (i, (rate, d, r)) in base.rates.iter().enumerate() {
        let row = |name: &str, o: &Outcome, extra: &str| {
            println!(
                "| {rate}/s | {name} | {} | {} | {} | {} | {extra} | {} |",
                o.p50,
                o.p99,
                o.p999,
                o.max,
                o.checked_out()
            );
        };
        row("direct", d, " | |");
        row("relay", r, " | |");
        for switch in switches {
            if let Some((s, inner)) = switch.rates.get(i) {
                row(
                    &format!("switch, journal {}", switch.durability),
                    s,
                    &format!(
                        "{} | {:.2}% | {} ms",
                        s.p99 as i64 - r.p99 as i64,
                        100.0 * inner.within_5ms,
                        inner.p99_bound_ms
                    ),
                );
            }
        }
    }
    println!(
        "\ntwo back-to-back fdatasyncs on the journal's disk: p99 {} µs",
        base.fdatasync_pair_p99
    );
}

fn print_threads(switches: &[SwitchRun]) {
    for s in switches {
        let split: Vec<String> = s
            .cpu
            .threads
            .iter()
            .map(|(name, us)| format!("{name} {us:.2}"))
            .collect();
        println!(
            "\nswitch, journal {}: CPU µs/tx by thread (closed loop, until quiet): {}",
            s.durability,
            split.join(", ")
        );
        println!(
            "switch, journal {}: resident memory after its runs {} MiB",
            s.durability,
            s.rss_mib.map_or("?".into(), |m| m.to_string())
        );
    }
}

fn print_sustained(base: &Baseline, switches: &[SwitchRun]) {
    for (s, (closed, open)) in switches
        .iter()
        .filter_map(|s| s.sustained.as_ref().map(|r| (s, r)))
    {
        for run in [closed, open] {
            let how = match run.rate {
                Some(rate) => format!("open loop {rate}/s"),
                None => format!("closed loop {CONNECTIONS} × {PIPELINE}"),
            };
            println!(
                "\nsustained, journal {}: {} s {how}: {:.0} tx/s ({:.1}% of relay), p99 {} µs, all checked out {}; index lag at the end {} records / {} ms; CPU until quiet {:.2} µs/tx, busy {:.1} s after the load",
                s.durability,
                run.seconds,
                run.run.throughput,
                pct(run.run.throughput, base.relay.throughput),
                run.run.p99,
                run.run.checked_out(),
                run.lag_records.map_or("?".into(), |v| format!("{v:.0}")),
                run.lag_ms.map_or("?".into(), |v| format!("{v:.0}")),
                run.cpu.total,
                run.cpu.quiet_after.as_secs_f64()
            );
        }
    }
}

fn print_targets(base: &Baseline, switches: &[SwitchRun]) {
    let find = |d: &str| switches.iter().find(|s| s.durability == d);
    let (Some(synced), Some(none)) = (find("fsync"), find("none")) else {
        return;
    };
    println!("\n## Targets (issue 18)\n");
    let check = |what: String, ok: bool| {
        println!("- [{}] {what}", if ok { "x" } else { " " });
    };
    let relay = base.relay.throughput;
    check(
        format!(
            "driver not the bottleneck: direct {:.0} tx/s = {:.1}× the fastest switch",
            base.direct.throughput,
            base.direct.throughput / none.piped.throughput.max(synced.piped.throughput).max(1.0)
        ),
        base.direct.throughput >= 5.0 * none.piped.throughput.max(synced.piped.throughput),
    );
    check(
        format!(
            "none 8×16 ≥ 25% of relay: {:.1}%",
            pct(none.piped.throughput, relay)
        ),
        none.piped.throughput >= 0.25 * relay,
    );
    check(
        format!(
            "none CPU until quiet ≤ 8 µs/tx: {:.2} µs/tx",
            none.cpu.total
        ),
        none.cpu.total <= 8.0,
    );
    check(
        format!(
            "fsync 8×16 ≥ 80% of none: {:.1}%",
            pct(synced.piped.throughput, none.piped.throughput)
        ),
        synced.piped.throughput >= 0.8 * none.piped.throughput,
    );
    check(
        format!(
            "none 8×1 ≥ 60% of relay: {:.1}%",
            pct(none.single.throughput, base.relay_single.throughput)
        ),
        none.single.throughput >= 0.6 * base.relay_single.throughput,
    );
    let Some((_, _, relay_5k)) = base.rates.first() else {
        return;
    };
    if let Some((s, _)) = none.rates.first() {
        check(
            format!(
                "none 5,000/s p99 ≤ relay p99 + 250 µs: {} vs {} + 250",
                s.p99, relay_5k.p99
            ),
            s.p99 <= relay_5k.p99 + 250,
        );
        check(
            format!("none 5,000/s p99.9 ≤ 2 ms: {} µs", s.p999),
            s.p999 <= 2_000,
        );
    }
    if let Some((s, _)) = synced.rates.first() {
        let added = s.p99.saturating_sub(relay_5k.p99);
        check(
            format!(
                "fsync 5,000/s p99 over relay ≤ two fdatasyncs' p99 + 1 ms: {added} vs {} + 1000 µs",
                base.fdatasync_pair_p99
            ),
            added <= base.fdatasync_pair_p99 + 1_000,
        );
    }
    if let Some((closed, open)) = &none.sustained {
        check(
            format!(
                "sustained {} s closed loop ≥ 25% of relay: {:.1}% (all checked out: {})",
                closed.seconds,
                pct(closed.run.throughput, relay),
                closed.run.checked_out()
            ),
            closed.run.throughput >= 0.25 * relay && closed.run.checked_out(),
        );
        for run in [closed, open] {
            check(
                format!(
                    "index lag at the end of the sustained {} < 1 s: {} ms",
                    run.rate
                        .map_or("closed loop".into(), |r| format!("open loop at {r}/s")),
                    run.lag_ms.map_or("?".into(), |v| format!("{v:.0}"))
                ),
                run.lag_ms.is_some_and(|ms| ms < 1_000.0),
            );
        }
    }
}
