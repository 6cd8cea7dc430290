//! `cardswitch journal …`: look into the write-ahead journal, check it,
//! export it, back it up, rebuild its index.
//!
//! Everything except `reindex` reads the log files directly, so it works
//! while the daemon runs (the daemon holds the sled index). No output ever
//! shows a clear PAN.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use cardswitch::config::Config;
use cardswitch::journal::view::{self, CSV_HEADER, TxnView};
use cardswitch::journal::{Index, JournalConfig, wal};

/// What a journal command refuses in its input.
#[derive(Debug, thiserror::Error)]
enum JournalCliError {
    /// `--date` is not a date.
    #[error("--date {0}: expected YYYY-MM-DD")]
    Date(String),
    /// A segment path that ends in no file name.
    #[error("segment without a name")]
    NoFileName,
    /// A line of `card-hash` input that is not a PAN (numbered from 1).
    #[error("line {0}: not a PAN (12 to 19 digits)")]
    NotAPan(usize),
}

/// Arguments of `journal`.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Configuration file naming the journal (its `[journal]` section).
    #[arg(long, short, global = true, default_value = "cardswitch.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Jsonl,
    Csv,
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Transactions (with their reversal state) by RRN or journal id, as
    /// one JSON array in journal id order: an RRN may name an original and
    /// its reversals; a journal id names one.
    Show {
        /// Retrieval reference number.
        #[arg(long, conflicts_with = "txn", required_unless_present = "txn")]
        rrn: Option<String>,
        /// Journal id.
        #[arg(long)]
        txn: Option<u64>,
    },
    /// The last records of the log.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing new records as they are written.
        #[arg(long, short)]
        follow: bool,
    },
    /// Counts by business date and state, records by kind, reversals owed.
    Stats,
    /// Checks the CRC of every record of every segment.
    Verify,
    /// Transactions of a business date, with masked PANs.
    Export {
        /// Business date, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Reversals queued and not yet acknowledged.
    Saf,
    /// Rebuilds the index from the log (the daemon must be stopped).
    Reindex,
    /// Copies the log to DIR consistently, even while the daemon runs.
    Backup {
        /// Target directory (created if missing).
        dir: PathBuf,
    },
    /// Prints the keyed hash of each PAN read from standard input (one per
    /// line, not echoed at a terminal): the value risk block lists
    /// (`[[risk.block]] cards`) and the journal's card look-ups use.
    CardHash,
    /// Writes a new random data key file (mode 0600).
    Keygen {
        /// The file to create.
        file: PathBuf,
    },
}

impl JournalArgs {
    /// Runs the command.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        // Everything printed goes through `out` with `?`: a closed output
        // (`… | head`) is an error that ends the command quietly
        // (`super::quiet_on_closed_output`), never a panic.
        let mut out = std::io::stdout().lock();
        if let JournalCommand::Keygen { file } = &self.command {
            cardswitch::journal::generate_data_key(file)?;
            writeln!(out, "{}: new data key written (mode 0600)", file.display())?;
            return Ok(ExitCode::SUCCESS);
        }
        let config = Config::load(&self.config)?.journal;
        let dir = config.dir.clone();
        let out = &mut out;
        match self.command {
            JournalCommand::Show { rrn, txn } => show(out, &config, rrn.as_deref(), txn),
            JournalCommand::Tail { lines, follow } => tail(out, &dir, lines, follow),
            JournalCommand::Stats => stats(out, &config),
            JournalCommand::Verify => verify(out, &dir),
            JournalCommand::Export {
                date,
                format,
                out: file,
            } => export(out, &config, &date, format, file),
            JournalCommand::Saf => saf(out, &config),
            JournalCommand::Reindex => reindex(out, &config),
            JournalCommand::Backup { dir: target } => backup(out, &dir, &target),
            JournalCommand::CardHash => card_hash(out, &config),
            JournalCommand::Keygen { .. } => Ok(ExitCode::SUCCESS),
        }
    }
}

fn show(
    out: &mut impl Write,
    config: &JournalConfig,
    rrn: Option<&str>,
    txn: Option<u64>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let states = view::replay(&config.dir, &config.cutover)?;
    let found: Vec<TxnView> = states
        .values()
        .filter(|s| match (rrn, txn) {
            (Some(rrn), _) => s.request.rrn == rrn,
            (None, Some(id)) => s.id == id,
            (None, None) => false,
        })
        .map(TxnView::from)
        .collect();
    if found.is_empty() {
        eprintln!("no such transaction");
        return Ok(ExitCode::FAILURE);
    }
    // One JSON document, always an array (in journal id order): an RRN
    // may name several transactions (an original and its reversals).
    writeln!(out, "{}", serde_json::to_string_pretty(&found)?)?;
    Ok(ExitCode::SUCCESS)
}

fn describe(entry: &wal::Entry<'_>) -> String {
    let record = entry
        .record()
        .map(|r| format!("{r:?}").chars().take(200).collect::<String>())
        .unwrap_or_else(|| "(undecodable)".into());
    let secs = entry.ts / 1_000_000;
    let t = cardswitch::clock::DateTime::from_unix(secs);
    format!(
        "{:>10} {:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z {:<22} {record}",
        entry.seq,
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        entry.ts % 1_000_000,
        entry.kind.name()
    )
}

fn tail(
    out: &mut impl Write,
    dir: &Path,
    lines: usize,
    follow: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut last: Vec<String> = Vec::new();
    let mut next = 0;
    wal::scan(dir, 0, |_, e| {
        last.push(describe(e));
        if last.len() > lines {
            last.remove(0);
        }
        next = e.seq + 1;
        Ok(())
    })?;
    for line in &last {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let mut new = Vec::new();
        wal::scan(dir, next, |_, e| {
            new.push(describe(e));
            next = e.seq + 1;
            Ok(())
        })?;
        for line in &new {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
}

fn stats(
    out: &mut impl Write,
    config: &JournalConfig,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let states = view::replay(&config.dir, &config.cutover)?;
    let mut by_date: std::collections::BTreeMap<(String, &str), u64> = Default::default();
    let mut owed = 0;
    for s in states.values() {
        *by_date.entry((s.date.clone(), s.phase.name())).or_default() += 1;
        owed += u64::from(s.reversal_pending());
    }
    writeln!(out, "{:<10} {:<14} {:>10}", "date", "state", "count")?;
    for ((date, state), count) in by_date {
        writeln!(out, "{date:<10} {state:<14} {count:>10}")?;
    }
    writeln!(out)?;
    writeln!(out, "{:<22} {:>10}", "record kind", "count")?;
    for (kind, count) in view::record_counts(&config.dir)? {
        writeln!(out, "{:<22} {count:>10}", kind.name())?;
    }
    writeln!(out)?;
    writeln!(out, "transactions: {}", states.len())?;
    writeln!(out, "reversals owed (store-and-forward): {owed}")?;
    writeln!(out, "segments: {}", wal::segments(&config.dir)?.len())?;
    Ok(ExitCode::SUCCESS)
}

fn verify(out: &mut impl Write, dir: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let segments = wal::segments(dir)?;
    let mut failed = false;
    let mut total = 0;
    for (i, segment) in segments.iter().enumerate() {
        let data = std::fs::read(&segment.path)?;
        let name = segment.path.display().to_string();
        let last = i + 1 == segments.len();
        match wal::scan_bytes(&data, &name, last, |e| {
            if e.record().is_none() {
                return Err(wal::WalError::Corrupt {
                    segment: name.clone(),
                    offset: e.offset,
                    reason: wal::Corruption::Undecodable(e.seq),
                });
            }
            Ok(())
        }) {
            Ok(scan) => {
                total += scan.records;
                let tail = if scan.tail > 0 {
                    format!(", {} bytes being written or torn at the end", scan.tail)
                } else {
                    String::new()
                };
                writeln!(out, "{name}: ok, {} records{tail}", scan.records)?;
            }
            Err(e) => {
                failed = true;
                writeln!(out, "{e}")?;
            }
        }
    }
    writeln!(
        out,
        "{} segments, {total} records, {}",
        segments.len(),
        if failed { "CORRUPT" } else { "all CRCs good" }
    )?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn export(
    out: &mut impl Write,
    config: &JournalConfig,
    date: &str,
    format: Format,
    file: Option<PathBuf>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let compact: String = date.chars().filter(|c| *c != '-').collect();
    if compact.len() != 8 || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return Err(JournalCliError::Date(date.to_string()).into());
    }
    let states = view::replay(&config.dir, &config.cutover)?;
    let mut text = String::new();
    if matches!(format, Format::Csv) {
        text.push_str(CSV_HEADER);
        text.push('\n');
    }
    let mut count = 0;
    for s in states.values().filter(|s| s.date == compact) {
        let view = TxnView::from(s);
        match format {
            Format::Jsonl => text.push_str(&serde_json::to_string(&view)?),
            Format::Csv => text.push_str(&view.csv()),
        }
        text.push('\n');
        count += 1;
    }
    match file {
        Some(path) => {
            cardswitch::journal::write_atomically(&path, text.as_bytes())?;
            eprintln!("{}: {count} transactions", path.display());
        }
        None => {
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn saf(
    out: &mut impl Write,
    config: &JournalConfig,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let states = view::replay(&config.dir, &config.cutover)?;
    writeln!(
        out,
        "{:>10} {:<12} {:<9} {:>8} {:>12} {:<8} {:<19} {:<12}",
        "txn", "destination", "reason", "attempts", "amount", "currency", "pan", "rrn"
    )?;
    let mut pending: Vec<_> = states.values().filter(|s| s.reversal_pending()).collect();
    pending.sort_by_key(|s| s.reversal.as_ref().map_or(0, |r| r.queued_seq));
    for s in &pending {
        let v = TxnView::from(*s);
        writeln!(
            out,
            "{:>10} {:<12} {:<9} {:>8} {:>12} {:<8} {:<19} {:<12}",
            v.id,
            v.destination.unwrap_or_default(),
            v.reversal_reason.unwrap_or_default(),
            v.reversal_attempts.unwrap_or_default(),
            v.original_amount,
            v.currency,
            v.pan,
            v.rrn
        )?;
    }
    writeln!(out, "{} reversals owed", pending.len())?;
    Ok(ExitCode::SUCCESS)
}

fn reindex(
    out: &mut impl Write,
    config: &JournalConfig,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let total: u64 = view::record_counts(&config.dir)?.values().sum();
    let index = Index::open(&config.index_dir(), config.cutover.clone())?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let applied = index.rebuild(&config.dir, |n| bar.set_position(n))?;
    bar.finish_and_clear();
    writeln!(
        out,
        "index rebuilt from {applied} records ({})",
        config.index_dir().display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn backup(
    out: &mut impl Write,
    dir: &Path,
    target: &Path,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(target)?;
    let segments = wal::segments(dir)?;
    let mut records = 0;
    for (i, segment) in segments.iter().enumerate() {
        let data = std::fs::read(&segment.path)?;
        let name = segment.path.display().to_string();
        // The active segment may end in a record being written: the copy
        // stops after the last whole record, a consistent prefix of the log.
        let scan = wal::scan_bytes(&data, &name, i + 1 == segments.len(), |_| Ok(()))?;
        records += scan.records;
        let file_name = segment
            .path
            .file_name()
            .ok_or(JournalCliError::NoFileName)?;
        let end = usize::try_from(scan.end)?;
        cardswitch::journal::write_atomically(
            &target.join(file_name),
            data.get(..end).unwrap_or_default(),
        )?;
    }
    writeln!(
        out,
        "{} segments, {records} records copied to {} (the index is rebuilt from them; back up the data key separately)",
        segments.len(),
        target.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn card_hash(
    out: &mut impl Write,
    config: &JournalConfig,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let vault = config.vault()?;
    let stdin = std::io::stdin();
    let mut lines: Box<dyn Iterator<Item = std::io::Result<String>>> = if stdin.is_terminal() {
        Box::new(std::iter::from_fn(|| {
            Some(rpassword::prompt_password(
                "PAN (not echoed, empty line ends): ",
            ))
        }))
    } else {
        Box::new(std::io::BufRead::lines(stdin.lock()))
    };
    for (number, line) in lines.by_ref().enumerate() {
        let line = zeroize::Zeroizing::new(line?);
        let pan = zeroize::Zeroizing::new(line.trim().to_string());
        if pan.is_empty() {
            break;
        }
        if !(12..=19).contains(&pan.len()) || !pan.bytes().all(|b| b.is_ascii_digit()) {
            return Err(JournalCliError::NotAPan(number + 1).into());
        }
        writeln!(out, "{}", hex::encode(vault.digest(&pan)))?;
    }
    Ok(ExitCode::SUCCESS)
}
