//! One day of traffic through the switch, cleared and reconciled; a
//! completion reversed in full; an operator's early cutover.

use super::*;

/// Runs the day's traffic and stops the switch.
async fn one_day() -> Day {
    away_from_midnight().await;
    let dir = tempfile::tempdir().unwrap();
    let (bank_a, bank_b) = (bank().await, bank().await);
    let daemon = switch(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "23:59",
        "daemon.toml",
    );
    let clearing_config = config(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "00:00",
        "clearing.toml",
    );
    let (running, mut conn) = start(&daemon).await;
    let mut send = async |m: &Message, expected: &str| {
        let answer = common::exchange(&mut conn, m).await;
        assert_eq!(
            answer.response_code(),
            Some(expected),
            "{} {}",
            m.mti().as_str(),
            m.text(4).unwrap()
        );
        answer
    };
    let b = card_b();
    // Cleared: a purchase, a refund.
    send(
        &request("0200", "000000", CARD_A, 1, 1000, "TERM0001"),
        "00",
    )
    .await;
    send(&request("0200", "200000", CARD_A, 2, 500, "TERM0001"), "00").await;
    // Not cleared: a decline, a timeout (reversed by the switch).
    send(
        &request("0200", "000000", CARD_A, 3, 5100, "TERM0001"),
        "51",
    )
    .await;
    send(
        &request("0200", "000000", CARD_A, 4, 9100, "TERM0001"),
        "91",
    )
    .await;
    // A purchase reversed in full, one reversed in part (1,800 stands).
    let reversed = request("0200", "000000", CARD_A, 5, 2000, "TERM0001");
    send(&reversed, "00").await;
    send(&follow_up("0400", &reversed, 6, 2000), "00").await;
    let partial = request("0200", "000000", CARD_A, 7, 3000, "TERM0001");
    send(&partial, "00").await;
    let mut cut = follow_up("0400", &partial, 8, 3000);
    cut.set(95, format!("{:012}{:030}", 1800, 0));
    send(&cut, "00").await;
    // A pre-authorisation completed for less; a second completion and one
    // for more than approved are refused; a pre-authorisation alone does
    // not clear.
    let pre = request("0100", "000000", CARD_A, 9, 4000, "TERM0001");
    send(&pre, "00").await;
    // A completion on another card is refused; one the bank declines gives
    // the pre-authorisation back for the next.
    let mut other_card = follow_up("0220", &pre, 16, 3500);
    other_card.set(2, card_b());
    send(&other_card, "25").await;
    send(&follow_up("0220", &pre, 17, 3333), "05").await;
    send(&follow_up("0220", &pre, 10, 3500), "00").await;
    send(&follow_up("0220", &pre, 11, 100), "25").await;
    let small = request("0100", "000000", CARD_A, 12, 1000, "TERM0001");
    send(&small, "00").await;
    send(&follow_up("0220", &small, 13, 2000), "13").await;
    // Bank B: dollars and yen.
    send(&request("0200", "000000", &b, 14, 777, "TERM0002"), "00").await;
    send(&request("0200", "000000", &b, 15, 1500, "TERM0003"), "00").await;
    // The timed-out purchase's reversal reaches bank A (its store-and-forward).
    let since = Instant::now();
    while bank_a.ledger().unmatched_reversals() == 0 {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "timeout reversal sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(conn);
    running.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // After a restart the journal still knows the pre-authorisation was
    // completed: a second completion is refused.
    let (running, mut conn) = start(&daemon).await;
    let answer = common::exchange(&mut conn, &follow_up("0220", &pre, 18, 500)).await;
    assert_eq!(
        answer.response_code(),
        Some("25"),
        "completed before the restart"
    );
    drop(conn);
    running.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let compact = Cutover::utc(23 * 3600 + 59 * 60).date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64,
    );
    let date = format!("{}-{}-{}", &compact[..4], &compact[4..6], &compact[6..]);
    Day {
        dir,
        clearing_config,
        date,
        compact,
        bank_a,
        bank_b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_clears_once_exactly_and_reconciles() {
    let day = one_day().await;
    let config = day.clearing_config.to_str().unwrap().to_string();
    let out = day.dir.path().join("out");
    let (code, said) = cli(&["clearing", "run", "--config", &config, "--date", &day.date]);
    assert_eq!(code, 0, "{said}");
    assert!(
        !said.contains(CARD_A) && !said.contains(&card_b()),
        "{said}"
    );
    let d = &day.compact;
    let ipm = out.join(format!("bank_a-{d}.ipm"));
    let csv = out.join(format!("bank_b-{d}.csv"));
    let settlement = out.join(format!("settlement-{d}.csv"));
    let manifest = out.join(format!("manifest-{d}.json"));

    // Bank A's IPM file: header, four presentments, trailer.
    let bytes = std::fs::read(&ipm).unwrap();
    assert_eq!(bytes.len() % 1014, 0, "1014-blocked");
    let messages: Vec<_> = IpmReader::new(&bytes[..], true)
        .collect::<Result<_, _>>()
        .unwrap();
    let mtis: Vec<&str> = messages.iter().map(|m| m.mti.as_str()).collect();
    assert_eq!(mtis, ["1644", "1240", "1240", "1240", "1240", "1644"]);
    let field = |m: &cardswitch::clearing::ipm::IpmMessage, f: u8| {
        m.fields.get(&f).cloned().unwrap_or_default()
    };
    let presentments: Vec<(String, String, String)> = messages[1..5]
        .iter()
        .map(|m| (field(m, 3), field(m, 4), field(m, 2)))
        .collect();
    assert_eq!(
        presentments,
        [
            ("000000".into(), "000000001000".into(), CARD_A.into()),
            ("200000".into(), "000000000500".into(), CARD_A.into()),
            ("000000".into(), "000000001800".into(), CARD_A.into()),
            ("000000".into(), "000000003500".into(), CARD_A.into()),
        ]
    );
    for m in &messages[1..5] {
        assert_eq!(field(m, 24), "200");
        assert_eq!(field(m, 49), "978");
        assert_eq!(field(m, 38).len(), 6, "approval code");
        let ard = field(m, 31);
        assert!(
            ard.len() == 23 && cardswitch::card::luhn_valid(&ard),
            "{ard}"
        );
    }
    let trailer = &messages[5];
    assert_eq!(field(trailer, 24), "695");
    assert_eq!(
        trailer.pds.get(&301).map(String::as_str),
        Some("0000000000006800")
    );
    assert_eq!(trailer.pds.get(&306).map(String::as_str), Some("00000006"));

    // Bank B's flat file: dollars and yen.
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].contains(",debit,777,840,"), "{text}");
    assert!(lines[2].contains(",debit,1500,392,"), "{text}");
    assert_eq!(lines[3], "TRAILER,2,2277,0");

    // Settlement: fees per transaction, rounded half away from zero.
    let rows = csv_rows(&std::fs::read_to_string(&settlement).unwrap());
    let merchant = |id: &str| {
        rows.iter()
            .find(|r| {
                r.get("record").map(String::as_str) == Some("merchant")
                    && r.get("merchant").map(String::as_str) == Some(id)
            })
            .unwrap_or_else(|| panic!("merchant {id} in {rows:?}"))
            .clone()
    };
    let m1 = merchant("M1");
    // 1.75 % + 0.10 of 10.00, 18.00 and 35.00: 0.28 + 0.42 + 0.71.
    assert_eq!(m1["fees_minor"], "141", "{m1:?}");
    assert_eq!(m1["net_payable_minor"], "5659", "{m1:?}");
    assert_eq!(m1["reversal_minor"], "3200", "{m1:?}");
    assert_eq!(merchant("M2")["net_payable"], "7.65");
    assert_eq!(
        merchant("M3")["net_payable"],
        "1477",
        "yen have no minor unit"
    );

    // The manifest names every file with its SHA-256.
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let files = listed["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for f in files {
        let path = out.join(f["name"].as_str().unwrap());
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            sha256(&path),
            "{}",
            path.display()
        );
    }
    assert_eq!(listed["files"][0]["totals"]["978"]["debits"], 6300);
    assert_eq!(listed["files"][0]["totals"]["978"]["credits"], 500);
    let no_temp = std::fs::read_dir(&out)
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp"));
    assert!(no_temp, "no temporary file left");

    // Again: nothing cleared twice, files untouched.
    let digests = || [&ipm, &csv, &settlement, &manifest].map(|p| sha256(p));
    let before = digests();
    let (code, said) = cli(&["clearing", "run", "--config", &config, "--date", &day.date]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("cleared already"), "{said}");
    let after = digests();
    assert_eq!(before, after);

    // A lost file is noticed; a reissue rewrites it byte for byte.
    std::fs::remove_file(&csv).unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", &config, "--date", &day.date]);
    assert_eq!(code, 65, "{said}");
    assert!(said.contains("--reissue"), "{said}");
    let (code, said) = cli(&[
        "clearing",
        "run",
        "--config",
        &config,
        "--date",
        &day.date,
        "--reissue",
    ]);
    assert_eq!(code, 0, "{said}");
    let reissued = digests();
    assert_eq!(before, reissued);

    // A reissue that would not give the recorded files (here: the pricing
    // changed since) is refused before anything is replaced.
    let repriced = day.dir.path().join("repriced.toml");
    std::fs::write(
        &repriced,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("percent = \"1.75\"", "percent = \"2.00\""),
    )
    .unwrap();
    let (code, said) = cli(&[
        "clearing",
        "run",
        "--config",
        repriced.to_str().unwrap(),
        "--date",
        &day.date,
        "--reissue",
    ]);
    assert_eq!(code, 65, "{said}");
    assert!(said.contains("settlement"), "{said}");
    let untouched = digests();
    assert_eq!(before, untouched);
    let leftovers = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);

    // A date before the journal began is a mistake, not an empty day.
    let (code, said) = cli(&[
        "clearing",
        "run",
        "--config",
        &config,
        "--date",
        "2001-01-01",
    ]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("before the journal's first business date"),
        "{said}"
    );
    assert!(
        !day.dir
            .path()
            .join("journal/clearing/20010101.json")
            .exists()
    );

    // Today has not ended: clearing it is refused, to be retried (75).
    let today = Cutover::utc(0).date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64,
    );
    let today = format!("{}-{}-{}", &today[..4], &today[4..6], &today[6..]);
    let (code, said) = cli(&["clearing", "run", "--config", &config, "--date", &today]);
    assert_eq!(code, 75, "{said}");

    // Each bank's own settlement file reconciles with what was cleared.
    for (bank, name) in [(&day.bank_a, "bank_a"), (&day.bank_b, "bank_b")] {
        let file = day.dir.path().join(format!("{name}-settlement.csv"));
        let mut text = Vec::new();
        bank.ledger()
            .settlement_csv(&Breaks::default(), &mut text)
            .unwrap();
        std::fs::write(&file, text).unwrap();
        let breaks = day.dir.path().join(format!("{name}-breaks.csv"));
        let (code, said) = recon(&config, &day.date, name, &file, &breaks);
        assert_eq!(code, 0, "{name}: {said}");
        assert!(
            !said.contains(CARD_A) && !said.contains(&card_b()),
            "{said}"
        );
    }

    // Breaks put in on purpose are found, and nothing else.
    let file = day.dir.path().join("bank_a-broken.csv");
    let mut text = Vec::new();
    let broken = day
        .bank_a
        .ledger()
        .settlement_csv(
            &Breaks {
                drop: 1,
                unknown: 1,
                amount: 1,
                currency: 1,
                seed: 7,
            },
            &mut text,
        )
        .unwrap();
    std::fs::write(&file, text).unwrap();
    let breaks = day.dir.path().join("breaks.csv");
    let (code, said) = recon(&config, &day.date, "bank_a", &file, &breaks);
    assert_eq!(code, 3, "{said}");
    let found = csv_rows(&std::fs::read_to_string(&breaks).unwrap());
    assert_eq!(found.len(), 4, "{found:?}");
    let kinds: Vec<(String, String)> = found
        .iter()
        .map(|r| (r["break"].clone(), r["rrn"].clone()))
        .collect();
    for (kind, rrn) in broken.all() {
        assert!(
            kinds.contains(&(kind.to_string(), rrn.clone())),
            "{kind} {rrn} not in {kinds:?}"
        );
    }
    day.bank_a.stop().await;
    day.bank_b.stop().await;
}

#[test]
fn a_merchant_location_ipm_cannot_carry_is_refused_with_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let path = config(dir.path(), addr, addr, "00:00", "cardswitch.toml");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "SHOP M1                LONDON        GBR",
        "SHOP M1 LONDON",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let (code, said) = cli(&["config", "check", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{said}");
    assert!(
        said.contains("terminal TERM0001: name_location:") && said.contains("country code"),
        "{said}"
    );
}

/// #16.9: a completion reversed in full is a reversal in the settlement
/// report, beside a purchase reversed in full and one reversed in part:
/// 3 reversals, 80.00 + 50.00 + 70.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_reversed_in_full_counts_in_the_reversal_columns() {
    away_from_midnight().await;
    let dir = tempfile::tempdir().unwrap();
    let (bank_a, bank_b) = (bank().await, bank().await);
    let daemon = switch(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "23:59",
        "daemon.toml",
    );
    let clearing_config = config(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "00:00",
        "clearing.toml",
    );
    let (running, mut conn) = start(&daemon).await;
    let mut send = async |m: &Message| {
        let answer = common::exchange(&mut conn, m).await;
        assert_eq!(answer.response_code(), Some("00"), "{}", m.mti().as_str());
    };
    // Pre-authorisation 100.00, completed for 80.00, the completion
    // reversed in full.
    let pre = request("0100", "000000", CARD_A, 1, 10_000, "TERM0001");
    send(&pre).await;
    let completion = follow_up("0220", &pre, 2, 8_000);
    send(&completion).await;
    send(&follow_up("0400", &completion, 3, 8_000)).await;
    // A purchase of 50.00 reversed in full.
    let purchase = request("0200", "000000", CARD_A, 4, 5_000, "TERM0001");
    send(&purchase).await;
    send(&follow_up("0400", &purchase, 5, 5_000)).await;
    // A purchase of 100.00 reversed in part: 30.00 stands, 70.00 reversed.
    let partial = request("0200", "000000", CARD_A, 6, 10_000, "TERM0001");
    send(&partial).await;
    let mut cut = follow_up("0400", &partial, 7, 10_000);
    cut.set(95, format!("{:012}{:030}", 3_000, 0));
    send(&cut).await;
    drop(conn);
    running.shutdown().await;
    bank_a.stop().await;
    bank_b.stop().await;

    let (compact, date) = daemon_date();
    let config = clearing_config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    let settlement = dir.path().join(format!("out/settlement-{compact}.csv"));
    let rows = csv_rows(&std::fs::read_to_string(&settlement).unwrap());
    for record in ["merchant", "currency"] {
        let row = rows
            .iter()
            .find(|r| r["record"] == record && r["currency"] == "978")
            .unwrap_or_else(|| panic!("{record} row in {rows:?}"));
        assert_eq!(row["reversal_count"], "3", "{record}: {row:?}");
        assert_eq!(row["reversal_minor"], "20000", "{record}: {row:?}");
        assert_eq!(row["reversal"], "200.00", "{record}: {row:?}");
        // What clears: the 30.00 that stands, nothing of the completion.
        assert_eq!(row["completion_count"], "0", "{record}: {row:?}");
        assert_eq!(row["purchase_minor"], "3000", "{record}: {row:?}");
    }
}

/// Writes `count` approved purchases (alternately to bank_a and bank_b)
/// straight into `DIR/journal` as the switch journals them, one group per
/// record and segments closed at `segment_bytes`, filed under the business
/// date of a cutover one second before midnight UTC (yesterday for
/// clearing's 00:00) — or today with `today`. Returns the clearing config
/// and the date (`YYYY-MM-DD`).
/// #16.14: an operator closes the business date on demand (`ctl cutover`,
/// operator role, audited) and the closed date clears at once, with one
/// configuration for the daemon and clearing and no wall-clock wait; a
/// second cutover the same day is refused, and the traffic after it
/// belongs to the next date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cutover_closes_the_day_for_clearing_at_once() {
    away_from_midnight().await;
    let dir = tempfile::tempdir().unwrap();
    let (bank_a, bank_b) = (bank().await, bank().await);
    let daemon = switch(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "00:00",
        "cardswitch.toml",
    )
    .admin()
    .with_free_ports();
    let path = daemon.write();
    let tokens = dir.path().join("tokens.toml");
    let token = |name: &str, role: &str| {
        let (code, said) = cli(&[
            "tokens",
            "--file",
            tokens.to_str().unwrap(),
            "add",
            name,
            "--role",
            role,
        ]);
        assert_eq!(code, 0, "{said}");
        let file = dir.path().join(format!("{name}.token"));
        // The token is the first line printed (stdout); advice follows.
        std::fs::write(&file, said.lines().next().unwrap_or_default()).unwrap();
        file
    };
    let (operator, viewer) = (token("otto", "operator"), token("vera", "viewer"));
    let mut daemon = daemon.spawn();
    let (pos, admin) = (daemon.addr("pos"), daemon.admin());
    let url = format!("http://{admin}");
    let ctl = |token: &Path, command: &str| {
        cli(&[
            "ctl",
            "--url",
            &url,
            "--token-file",
            token.to_str().unwrap(),
            command,
        ])
    };
    let since = Instant::now();
    while ctl(&viewer, "status").0 != 0 {
        assert!(since.elapsed() < Duration::from_secs(15), "daemon ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = common::purchases(pos, "476173", "00", 5).await;
    assert!(report.all_checked_out(), "{}", report.to_json());

    let today = Cutover::utc(0).date(cardswitch::journal::wal::now_micros());
    let date = format!("{}-{}-{}", &today[..4], &today[4..6], &today[6..]);
    let config = path.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_ne!(code, 0, "the day has not ended yet: {said}");

    assert_eq!(ctl(&viewer, "cutover").0, 1, "a viewer may not cut over");
    let (code, said) = ctl(&operator, "cutover");
    assert_eq!(code, 0, "{said}");
    let answer: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(answer["closed"], today.as_str(), "{said}");
    let next = answer["business_date"].as_str().unwrap().to_string();
    assert!(next > today, "{said}");
    let (code, said) = ctl(&operator, "cutover");
    assert_ne!(code, 0, "a second cutover the same day is refused: {said}");

    // Traffic after the cutover belongs to the next date, not the closed one.
    let report = common::purchases(pos, "476173", "00", 3).await;
    assert!(report.all_checked_out(), "{}", report.to_json());
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    let ipm = dir.path().join(format!("out/bank_a-{today}.ipm"));
    let bytes = std::fs::read(&ipm).unwrap();
    let presentments = IpmReader::new(&bytes[..], true)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .iter()
        .filter(|m| m.mti.as_str() == "1240")
        .count();
    assert_eq!(presentments, 5, "the closed day's purchases only");
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(
        audit.matches("POST /v1/cutover").count(),
        3,
        "every attempt is audited: {audit}"
    );
    let stopped = daemon.stop().await;
    assert!(stopped.success(), "clean stop: {stopped}");
    bank_a.stop().await;
    bank_b.stop().await;
}
