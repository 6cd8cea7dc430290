//! The admin API end to end: token roles (401/403), the audit log,
//! metrics that move with traffic, links taken out of rotation steering
//! traffic to the fallback, transaction look-ups with masked PANs, and
//! `cardswitch ctl`.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{
    add_token, bank, cardswitch, financial, http, purchases, purchases_on, rrn_answered, sample,
};
use crate::common::daemon::{Daemon, Destination, Listener, Terminal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_roles_audit_metrics_and_link_steering() {
    let main_bank = bank().await;
    let backup_bank = bank().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tokens = dir.join("tokens.toml");
    let viewer = add_token(&tokens, "vera", "viewer");
    let operator = add_token(&tokens, "otto", "operator");
    let stored = std::fs::read_to_string(&tokens).unwrap();
    assert!(!stored.contains(&viewer) && !stored.contains(&operator));

    let mut daemon = Daemon::new(dir)
        .timeout_ms(2000)
        .admin()
        .listener(Listener::new("pos", "iso87ascii"))
        .destination(
            Destination::new("bank", main_bank.addr(), "iso87binary")
                .links(2)
                .fallback("backup"),
        )
        .destination(Destination::new(
            "backup",
            backup_bank.addr(),
            "iso87binary",
        ))
        .route("476173", "bank")
        .route("476175", "bank")
        .terminal(Terminal::new("TERM0001", "M1"))
        .section("[[risk.block]]\nid = \"stolen-bins\"\nbins = [\"476175\"]\n")
        .env("RUST_LOG", "info")
        .spawn();
    let (listen, admin) = (daemon.addr("pos"), daemon.admin());
    // Ready once both destinations have their links up.
    let since = Instant::now();
    loop {
        if TcpStream::connect(admin).is_ok() && http(admin, "GET", "/health/ready", None).0 == 200 {
            let (_, links) = http(admin, "GET", "/v1/links", Some(&viewer));
            if links.matches("\"up\":true").count() == 3 {
                break;
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "daemon not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Health needs no token; everything else does, and actions need an operator.
    assert_eq!(http(admin, "GET", "/health/live", None).0, 200);
    assert_eq!(http(admin, "GET", "/metrics", None).0, 401);
    assert_eq!(http(admin, "GET", "/metrics", Some("not-a-token")).0, 401);
    assert_eq!(http(admin, "POST", "/v1/reload", None).0, 401);
    assert_eq!(http(admin, "POST", "/v1/reload", Some(&viewer)).0, 403);
    let (status, body) = http(admin, "POST", "/v1/reload", Some(&operator));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"complete\":true"), "{body}");
    assert_eq!(http(admin, "GET", "/v1/nothing", Some(&viewer)).0, 404);

    // Metrics move with traffic.
    let (status, before) = http(admin, "GET", "/metrics", Some(&viewer));
    assert_eq!(status, 200);
    purchases(listen, 20).await;
    let (_, after) = http(admin, "GET", "/metrics", Some(&viewer));
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        delta("cardswitch_requests_total{listener=\"pos\",mti=\"0200\"}"),
        20.0
    );
    assert_eq!(
        delta("cardswitch_responses_total{listener=\"pos\",mti=\"0210\",code=\"00\"}"),
        20.0
    );
    assert_eq!(
        delta("cardswitch_destination_responses_total{destination=\"bank\",code=\"00\"}"),
        20.0
    );
    assert_eq!(delta("cardswitch_request_duration_seconds_count"), 20.0);
    // What the switch adds is each request's duration less its wait for the
    // bank: as many samples, a smaller total.
    assert_eq!(
        delta("cardswitch_switch_added_duration_seconds_count"),
        20.0
    );
    let added = delta("cardswitch_switch_added_duration_seconds_sum");
    assert!(
        added > 0.0 && added < delta("cardswitch_request_duration_seconds_sum"),
        "switch-added {added} s"
    );
    assert!(
        sample(
            &after,
            "cardswitch_destination_duration_seconds_count{destination=\"bank\"}"
        ) >= 20.0
    );
    assert!(sample(&after, "cardswitch_journal_fsync_duration_seconds_count") > 0.0);
    assert!(sample(&after, "cardswitch_journal_groups_total") > 0.0);
    assert_eq!(
        sample(
            &after,
            "cardswitch_link_up{destination=\"bank\",link=\"1\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "cardswitch_saf_depth{destination=\"bank\"}"),
        0.0
    );
    assert_eq!(sample(&after, "cardswitch_in_flight"), 0.0);
    // The index follows the log and says how far behind it is: caught up
    // (no record, no time behind) soon after the traffic.
    for series in [
        "cardswitch_journal_index_lag_records ",
        "cardswitch_journal_index_lag_milliseconds ",
    ] {
        assert!(after.lines().any(|l| l.starts_with(series)), "{series}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, now) = http(admin, "GET", "/metrics", Some(&viewer));
        let lag = (
            sample(&now, "cardswitch_journal_index_lag_records"),
            sample(&now, "cardswitch_journal_index_lag_milliseconds"),
        );
        if lag == (0.0, 0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "index still behind: {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A risk decline: answered 62 by the daemon, counted by rule, and its
    // transaction names the rule.
    let main_before = financial(&main_bank);
    purchases_on(listen, "476175", "62", 3).await;
    assert_eq!(
        financial(&main_bank),
        main_before,
        "declined before the bank"
    );
    let (_, metrics) = http(admin, "GET", "/metrics", Some(&viewer));
    assert_eq!(
        sample(
            &metrics,
            "cardswitch_risk_declines_total{rule=\"stolen-bins\",code=\"62\"}"
        ),
        3.0
    );

    // Taking the main bank's links out steers traffic to the fallback.
    let ctl = |args: &[&str], token: &str| {
        let file = dir.join(format!("{token}.token"));
        std::fs::write(&file, token).unwrap();
        let mut all = vec!["ctl", "--url"];
        let url = format!("http://{admin}");
        all.push(&url);
        all.extend(["--token-file", file.to_str().unwrap()]);
        all.extend(args);
        let out = cardswitch(&all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, _) = ctl(&["link", "disable", "bank/0"], &viewer);
    assert_eq!(code, Some(1), "a viewer may not disable a link");
    assert_eq!(ctl(&["link", "disable", "bank/0"], &operator).0, Some(0));
    let (main_before, backup_before) = (financial(&main_bank), financial(&backup_bank));
    purchases(listen, 10).await;
    assert_eq!(
        financial(&main_bank) - main_before,
        10,
        "bank/1 still carries traffic"
    );
    assert_eq!(financial(&backup_bank), backup_before);
    assert_eq!(ctl(&["link", "disable", "bank/1"], &operator).0, Some(0));
    let (out_status, out) = ctl(&["links"], &viewer);
    assert_eq!(out_status, Some(0));
    assert!(out.contains("bank/0") && out.contains("false"), "{out}");
    let (main_before, backup_before) = (financial(&main_bank), financial(&backup_bank));
    purchases(listen, 10).await;
    assert_eq!(
        financial(&main_bank),
        main_before,
        "no link of bank in rotation"
    );
    assert_eq!(
        financial(&backup_bank) - backup_before,
        10,
        "all went to the fallback"
    );
    let (_, metrics) = http(admin, "GET", "/metrics", Some(&viewer));
    assert_eq!(
        sample(
            &metrics,
            "cardswitch_link_enabled{destination=\"bank\",link=\"0\"}"
        ),
        0.0
    );
    assert_eq!(ctl(&["link", "enable", "bank/0"], &operator).0, Some(0));
    assert_eq!(ctl(&["link", "enable", "bank/1"], &operator).0, Some(0));
    assert_eq!(
        http(admin, "POST", "/v1/links/bank/7/disable", Some(&operator)).0,
        404
    );
    let (main_before, backup_before) = (financial(&main_bank), financial(&backup_bank));
    purchases(listen, 5).await;
    assert_eq!(financial(&main_bank) - main_before, 5);
    assert_eq!(financial(&backup_bank), backup_before);

    // Status, a transaction by RRN (masked PAN only) and the SAF queue.
    let (code, status) = ctl(&["status"], &viewer);
    assert_eq!(code, Some(0), "{status}");
    assert!(
        status.contains("ready: yes") && status.contains("backup"),
        "{status}"
    );
    let events: Vec<String> = daemon
        .lines()
        .iter()
        .filter(|l| l.contains("transaction"))
        .cloned()
        .collect();
    let rrn = rrn_answered(&events, "00");
    let (status, body) = http(
        admin,
        "GET",
        &format!("/v1/transactions?rrn={rrn}"),
        Some(&viewer),
    );
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    let txn = &found["transactions"][0];
    assert_eq!(txn["rrn"], rrn.as_str());
    let pan = txn["pan"].as_str().unwrap();
    assert!(pan.starts_with("476173") && pan.contains("******"), "{pan}");
    assert_eq!(txn["state"], "answered");
    let (code, out) = ctl(&["txn", "--rrn", &rrn], &viewer);
    assert_eq!(code, Some(0));
    assert!(out.contains(&rrn), "{out}");
    assert_eq!(
        http(admin, "GET", "/v1/transactions?rrn=a%27b", Some(&viewer)).0,
        400
    );
    // Keys longer than their field are refused, not cut.
    let too_long = format!("/v1/transactions?rrn={rrn}9");
    assert_eq!(http(admin, "GET", &too_long, Some(&viewer)).0, 400);
    let declined = rrn_answered(&events, "62");
    let (_, body) = http(
        admin,
        "GET",
        &format!("/v1/transactions?rrn={declined}"),
        Some(&viewer),
    );
    assert!(body.contains("\"risk_rule\":\"stolen-bins\""), "{body}");
    let (status, saf) = http(admin, "GET", "/v1/saf", Some(&viewer));
    assert_eq!((status, saf.contains("\"depth\":0")), (200, true), "{saf}");

    // Every POST is in the audit log: who, what, when, result.
    let audit = std::fs::read_to_string(dir.join("audit.log")).unwrap();
    let entries: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |who: &str, action: &str, status: u64| {
        entries.iter().any(|e| {
            e["who"] == who
                && e["action"] == action
                && e["status"] == status
                && e["time"].is_string()
        })
    };
    // Refused for want of a token: counted, not a line each (#16.16).
    assert!(!entries.iter().any(|e| e["status"] == 401));
    assert!(
        sample(
            &metrics,
            "cardswitch_admin_auth_failures_total{reason=\"missing\"}"
        ) >= 2.0
    );
    assert!(
        sample(
            &metrics,
            "cardswitch_admin_auth_failures_total{reason=\"unknown_token\"}"
        ) >= 1.0
    );
    assert!(find("vera", "POST /v1/reload", 403));
    assert!(find("otto", "POST /v1/reload", 200));
    assert!(find("vera", "POST /v1/links/bank/0/disable", 403));
    assert!(find("otto", "POST /v1/links/bank/0/disable", 200));
    assert!(find("otto", "POST /v1/links/bank/1/enable", 200));
    assert!(
        entries
            .iter()
            .all(|e| e["result"] == "ok" || e["status"] != 200)
    );

    // A token removed from the file stops working at the next reload.
    let out = cardswitch(&[
        "tokens",
        "--file",
        tokens.to_str().unwrap(),
        "remove",
        "vera",
    ]);
    assert!(out.status.success());
    assert_eq!(http(admin, "POST", "/v1/reload", Some(&operator)).0, 200);
    assert_eq!(http(admin, "GET", "/metrics", Some(&viewer)).0, 401);

    // No answer or log line carries a token.
    let exit = daemon.stop().await;
    assert!(exit.success());
    for line in daemon.lines().iter() {
        assert!(
            !line.contains(&operator) && !line.contains(&viewer),
            "{line}"
        );
    }
    // At the latest when the daemon stops, the refused ones are summarised.
    let audit = std::fs::read_to_string(dir.join("audit.log")).unwrap();
    let refused: u64 = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["action"] == "failed authentication")
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert!(refused >= 4, "{audit}");
    main_bank.stop().await;
    backup_bank.stop().await;
}
