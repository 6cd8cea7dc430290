//! Clearing runs over journals written straight to disk: a closed stdout,
//! a truncated segment, reruns, break reports per destination, and a date
//! before the journal began.

use super::*;
use cardswitch::config::Config;

fn written_day(dir: &Path, count: u32, segment_bytes: u64, today: bool) -> (PathBuf, String) {
    use cardswitch::journal::Durability;
    use cardswitch::journal::record::{Forwarded, Merchant, Received, Record, Source};
    use cardswitch::journal::wal::{Wal, WalConfig};

    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = config(dir, addr, addr, "00:00", "clearing.toml");
    let vault = Config::load(&config).unwrap().journal.vault().unwrap();
    let cutover = Cutover::utc(if today { 0 } else { 86_399 });
    let (wal, _) = Wal::open(WalConfig {
        dir: dir.join("journal"),
        segment_bytes,
        durability: Durability::None,
        cutover: cutover.clone(),
    })
    .unwrap();
    let write = |record: &Record| {
        let (seq, durable) = wal.append_durable(record).unwrap();
        durable.wait_blocking().unwrap();
        seq
    };
    let b = card_b();
    for n in 0..count {
        let (pan, destination) = if n % 2 == 0 {
            (CARD_A, "bank_a")
        } else {
            (b.as_str(), "bank_b")
        };
        let id = write(&Record::Received(Box::new(Received {
            kind: cardswitch::txn::TxnKind::Purchase,
            mti: "0200".into(),
            processing_code: "000000".into(),
            amount: 1000 + u64::from(n),
            currency: "978".into(),
            pan: vault.seal(pan),
            terminal: "TERM0001".into(),
            merchant: Some(Merchant {
                id: "M1".into(),
                mcc: "5411".into(),
                name_location: format!("{:<22} {:<13} GBR", "SHOP M1", "LONDON"),
            }),
            stan: format!("{:06}", n + 1),
            transmission: "1126101500".into(),
            local_time: Some("101500".into()),
            local_date: Some("1126".into()),
            entry_mode: Some("051".into()),
            condition: Some("00".into()),
            rrn: format!("63301{:07}", n + 1),
            original: None,
            replacement: None,
        })));
        write(&Record::Forwarded {
            txn: id,
            to: Forwarded {
                destination: destination.into(),
                switch_stan: n + 1,
                transmission: "1126101500".into(),
                local_93: None,
            },
        });
        write(&Record::Responded {
            txn: id,
            code: "00".into(),
            auth_id: Some(format!("A{n:05}")),
            source: Source::Destination,
        });
    }
    wal.close();
    let date = cutover.date(cardswitch::journal::wal::now_micros());
    (
        config,
        format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..]),
    )
}

/// Runs the binary with its stdout a pipe whose reader is closed before
/// anything is written; returns the exit status and stderr.
fn with_stdout_closed(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An empty bank settlement file: every cleared item is missing at the
/// bank.
fn empty_bank_file(dir: &Path) -> PathBuf {
    let file = dir.join("empty-bank.csv");
    std::fs::write(
        &file,
        format!(
            "{}\nTRAILER,0,0,0\n",
            cardswitch::clearing::recon::CSV_HEADER
        ),
    )
    .unwrap();
    file
}

/// #16.7: `clearing run` and `recon` end quietly, with their normal
/// status, when their stdout is closed (`| head`).
#[test]
fn a_closed_stdout_ends_clearing_and_recon_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 6, 64 << 20, false);
    let config = config.to_str().unwrap();
    let (code, stderr) =
        with_stdout_closed(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let compact = date.replace('-', "");
    assert!(
        dir.path()
            .join(format!("journal/clearing/{compact}.json"))
            .exists(),
        "the batch is recorded"
    );
    // Again: cleared already, said to a closed stdout.
    let (code, stderr) =
        with_stdout_closed(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Reconciliation with breaks: its own status (3), no panic.
    let bank = empty_bank_file(dir.path());
    let (code, stderr) = with_stdout_closed(&[
        "recon",
        "--config",
        config,
        "--date",
        &date,
        "--bank-file",
        bank.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// #16.10: a segment cut short in the middle of the log is reported by
/// `clearing run` with the segment file and offset `journal verify` gives.
#[test]
fn a_truncated_segment_is_named_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 12, 700, false);
    let config = config.to_str().unwrap();
    let segments = cardswitch::journal::wal::segments(&dir.path().join("journal")).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    // The second segment loses the last 5 bytes of its last record.
    let cut = &segments[1].path;
    let len = std::fs::metadata(cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (code, verified) = cli(&["journal", "verify", "--config", config]);
    assert_ne!(code, 0, "{verified}");
    let named = verified
        .lines()
        .find(|l| l.contains("corrupt record"))
        .unwrap_or_else(|| panic!("{verified}"))
        .to_string();
    assert!(named.contains(&cut.display().to_string()), "{named}");
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(&named),
        "clearing says {said:?}, verify {named:?}"
    );
    assert!(!said.contains("offset 0:"), "{said}");

    // Cut at a record boundary (the segment's last record gone whole):
    // the segment and the end of its last whole record are named.
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 12, 700, false);
    let config = config.to_str().unwrap();
    let journal = dir.path().join("journal");
    let segments = cardswitch::journal::wal::segments(&journal).unwrap();
    let cut = &segments[1].path;
    let data = std::fs::read(cut).unwrap();
    let mut ends = Vec::new();
    cardswitch::journal::wal::scan_bytes(&data, "", false, |e| {
        ends.push(e.offset);
        Ok(())
    })
    .unwrap();
    let last = *ends.last().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(last)
        .unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(&format!(
            "journal segment {}: corrupt record at offset {last}:",
            cut.display()
        )),
        "{said}"
    );
}

/// Inode, modification time and size of every file under `dirs`.
fn stats(dirs: &[PathBuf]) -> BTreeMap<PathBuf, (u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut found = BTreeMap::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let m = std::fs::metadata(&path).unwrap();
            if m.is_file() {
                found.insert(path, (m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
            }
        }
    }
    found
}

/// #16.11: a rerun for a cleared date leaves every file of it untouched
/// (same inode and modification time), the manifest included; a manifest
/// lost after the batch was recorded is written again.
#[test]
fn a_rerun_leaves_every_file_of_the_date_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 6, 64 << 20, false);
    let config = config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    let dirs = [dir.path().join("out"), dir.path().join("journal/clearing")];
    let before = stats(&dirs);
    let compact = date.replace('-', "");
    let manifest = dir.path().join(format!("out/manifest-{compact}.json"));
    assert!(before.contains_key(&manifest), "{before:?}");
    std::thread::sleep(Duration::from_millis(20));
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("cleared already"), "{said}");
    assert_eq!(stats(&dirs), before);

    // A run stopped between the batch record and the manifest: the next
    // run writes the manifest, with the batch record's bytes.
    std::fs::remove_file(&manifest).unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        std::fs::read(dir.path().join(format!("journal/clearing/{compact}.json"))).unwrap()
    );
    // A manifest that is not the recorded one is reported, not replaced.
    std::fs::write(&manifest, "{}\n").unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 65, "{said}");
    assert!(
        said.contains("manifest") && said.contains("--reissue"),
        "{said}"
    );
    assert_eq!(std::fs::read(&manifest).unwrap(), b"{}\n");
}

/// #16.12: the default break report names its destination: reconciling
/// bank A, then bank B, leaves two reports.
#[test]
fn break_reports_of_two_destinations_are_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 6, 64 << 20, false);
    let config = config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    let bank = empty_bank_file(dir.path());
    let compact = date.replace('-', "");
    for destination in ["bank_a", "bank_b"] {
        let (code, said) = cli(&[
            "recon",
            "--config",
            config,
            "--date",
            &date,
            "--destination",
            destination,
            "--bank-file",
            bank.to_str().unwrap(),
        ]);
        assert_eq!(code, 3, "{said}");
        let report = dir
            .path()
            .join(format!("out/breaks-{destination}-{compact}.csv"));
        assert!(said.contains(&report.display().to_string()), "{said}");
    }
    for destination in ["bank_a", "bank_b"] {
        let report = dir
            .path()
            .join(format!("out/breaks-{destination}-{compact}.csv"));
        let rows = csv_rows(&std::fs::read_to_string(&report).unwrap());
        assert_eq!(rows.len(), 3, "{destination}: {rows:?}");
        assert!(rows.iter().all(|r| r["break"] == "missing_at_bank"));
    }
    // A destination that cannot be one is refused before anything is
    // written.
    let (code, said) = cli(&[
        "recon",
        "--config",
        config,
        "--date",
        &date,
        "--destination",
        "../elsewhere",
        "--bank-file",
        bank.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("not a destination name"), "{said}");
}

/// #16.13: the timer's first night: `--date previous` before the journal's
/// first business date (or with no journal at all) has nothing to clear,
/// exit 0, and writes nothing; the same date given explicitly is refused.
#[test]
fn nothing_to_clear_before_the_journal_is_a_success() {
    // No journal yet: the daemon never ran.
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = config(dir.path(), addr, addr, "00:00", "clearing.toml");
    let config = config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", "previous"]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("nothing to clear"), "{said}");
    assert!(!dir.path().join("journal").exists(), "nothing created");
    assert!(!dir.path().join("out").exists(), "nothing created");

    // A journal whose first business date is today.
    let dir = tempfile::tempdir().unwrap();
    let (config, today) = written_day(dir.path(), 2, 64 << 20, true);
    let config = config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", "previous"]);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("nothing to clear")
            && said.contains(&format!(
                "before the journal's first business date ({})",
                today.replace('-', "")
            )),
        "{said}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("journal/clearing"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "no batch recorded"
    );
    assert!(!dir.path().join("out").exists(), "no file written");
    // Named explicitly, the same date is a mistake (exit 1).
    let previous = Cutover::utc(86_399).date(cardswitch::journal::wal::now_micros());
    let explicit = format!("{}-{}-{}", &previous[..4], &previous[4..6], &previous[6..]);
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &explicit]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("before the journal's first business date"),
        "{said}"
    );
}
