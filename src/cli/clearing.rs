//! `cardswitch clearing run` and `cardswitch recon`: end-of-day clearing
//! files, settlement report and reconciliation, from the journal's log
//! (they work while the daemon runs).
//!
//! Exit status: 0 done (or already done, or nothing to clear: `--date
//! previous` before the journal's first business date), 1 failed, 65 the
//! files or the journal disagree with the recorded batch, 75 not yet
//! possible (the day has not ended, transactions still in flight: the timer
//! tries again), and for `recon` 3 when there are breaks.
//!
//! Output goes through a locked stdout, written once the work is done; a
//! closed stdout (`| head`) ends the output quietly with the same status.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use cardswitch::clearing::recon::{self, BankFormat, SwitchItem};
use cardswitch::clearing::run::{self, ClearingError, Outcome, Run};
use cardswitch::clearing::settings::ClearingConfig;
use cardswitch::config::Config;

/// Arguments of `clearing`.
#[derive(Debug, Args)]
pub struct ClearingArgs {
    /// Configuration file (its `[journal]` and `[clearing]` sections).
    #[arg(long, short, global = true, default_value = "cardswitch.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: ClearingCommand,
}

#[derive(Debug, Subcommand)]
enum ClearingCommand {
    /// Writes a business date's clearing files (one per destination with
    /// activity), settlement report and manifest, exactly once.
    Run {
        /// Business date, YYYY-MM-DD, or `previous` (the business date
        /// before the current one, for the daily timer).
        #[arg(long)]
        date: String,
        /// Output directory (default: `[clearing] out_dir`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Rewrite the files of a cleared date from its recorded batch.
        #[arg(long)]
        reissue: bool,
    },
}

/// Arguments of `recon`.
#[derive(Debug, Args)]
pub struct ReconArgs {
    /// Configuration file (its `[journal]` and `[clearing]` sections).
    #[arg(long, short, default_value = "cardswitch.toml")]
    config: PathBuf,
    /// Business date, YYYY-MM-DD or `previous` (it must have been cleared).
    #[arg(long)]
    date: String,
    /// The bank's settlement file.
    #[arg(long)]
    bank_file: PathBuf,
    /// Only what was cleared to this destination (a bank's file covers its
    /// own transactions) [default: every destination].
    #[arg(long)]
    destination: Option<String>,
    /// Its format.
    #[arg(long, value_enum, default_value = "csv")]
    format: FileFormat,
    /// Break report (CSV) [default: OUT_DIR/breaks-DEST-YYYYMMDD.csv with
    /// --destination, else OUT_DIR/breaks-YYYYMMDD.csv].
    #[arg(long)]
    breaks: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FileFormat {
    Csv,
    Ipm,
}

/// Exit status of `recon` when it found breaks.
const BREAKS: u8 = 3;

fn load(path: &std::path::Path) -> Result<(Config, ClearingConfig), Box<dyn std::error::Error>> {
    let config = Config::load(path)?;
    let clearing = config.clearing.clone().ok_or_else(|| {
        format!(
            "{}: no [clearing] section (see docs/configuration.md)",
            path.display()
        )
    })?;
    Ok((config, clearing))
}

/// Writes `text` to stdout through a locked handle. A broken pipe (the
/// reader went away, as with `| head`) ends the output quietly: the work is
/// done and its exit status stands. Any other failure is an error.
fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        done => done,
    }
}

/// Writes a line to stderr; a closed stderr is ignored (there is nowhere
/// left to say anything).
fn complain(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A progress bar on a terminal; nothing otherwise (the run prints one line
/// at the end).
fn bar() -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(1000)
    } else {
        indicatif::ProgressBar::hidden()
    }
}

impl ClearingArgs {
    /// Runs the subcommand.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        let ClearingCommand::Run { date, out, reissue } = self.command;
        let (config, clearing) = load(&self.config)?;
        let vault = config.journal.vault()?;
        let out_dir = out.unwrap_or_else(|| clearing.out_dir.clone());
        let job = Run {
            date: &date,
            out_dir: &out_dir,
            reissue,
            journal: &config.journal,
            vault: &vault,
            clearing: &clearing,
            acquiring_institution: &config.switch.institution.acquirer_id,
            forwarding_institution: config
                .switch
                .institution
                .forwarding_id
                .as_deref()
                .unwrap_or(&config.switch.institution.acquirer_id),
        };
        let bar = bar();
        let started = std::time::Instant::now();
        let outcome = run::run(&job, &mut |done| bar.set_position((done * 1000.0) as u64));
        bar.finish_and_clear();
        let mut text = String::new();
        match outcome {
            Ok(Outcome::Cleared(batch, report)) | Ok(Outcome::Reissued(batch, report)) => {
                text.push_str(&report.summary());
                let verb = if reissue { "reissued" } else { "cleared" };
                for file in &batch.files {
                    let _ = writeln!(
                        text,
                        "{verb}: {} ({} records, sha256 {})",
                        out_dir.join(&file.name).display(),
                        file.records,
                        file.sha256
                    );
                }
                let _ = writeln!(
                    text,
                    "batch {}: {} requests of the day, cutoff at journal record {}; manifest {}",
                    batch.batch,
                    batch.received,
                    batch.cutoff,
                    out_dir
                        .join(format!("manifest-{}.json", batch.date))
                        .display()
                );
                let _ = writeln!(
                    text,
                    "done in {:.1} s, peak RSS {}",
                    started.elapsed().as_secs_f64(),
                    peak_rss()
                );
            }
            Ok(Outcome::AlreadyCleared(batch)) => {
                let _ = writeln!(
                    text,
                    "{} was cleared already (batch {}); its {} files in {} are the recorded ones",
                    batch.date,
                    batch.batch,
                    batch.files.len(),
                    out_dir.display()
                );
            }
            Ok(Outcome::NothingToClear { date, first }) => {
                let _ = match first {
                    Some(first) => writeln!(
                        text,
                        "nothing to clear: {date} is before the journal's first business date ({first}); nothing written"
                    ),
                    None => writeln!(
                        text,
                        "nothing to clear: the journal has no records yet ({}); nothing written",
                        config.journal.dir.display()
                    ),
                };
            }
            Err(e) => return fail(&e),
        }
        emit(&text)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// The process's peak resident memory (`VmHWM`, Linux), for the operator
/// and the clearing benchmark.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().strip_suffix(" kB")?.trim().parse::<u64>().ok())
        })
        .map_or_else(|| "unknown".into(), |kb| format!("{} MiB", kb / 1024))
}

fn fail(e: &ClearingError) -> Result<ExitCode, Box<dyn std::error::Error>> {
    complain(&format!("error: {e}"));
    Ok(ExitCode::from(e.exit_code()))
}

impl ReconArgs {
    /// Runs the reconciliation.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        let (config, clearing) = load(&self.config)?;
        let vault = config.journal.vault()?;
        let date = match run::resolve_date(&self.date, &config.journal) {
            Ok(d) => d,
            Err(e) => return fail(&e),
        };
        // The default break report names the destination: reconciling bank
        // A, then bank B, leaves two reports.
        let path = match self.breaks {
            Some(path) => path,
            None => clearing
                .out_dir
                .join(recon::breaks_file_name(&date, self.destination.as_deref())?),
        };
        let format = match self.format {
            FileFormat::Csv => BankFormat::Csv,
            FileFormat::Ipm => BankFormat::Ipm,
        };
        let bank = recon::read_bank_file(&self.bank_file, format)?;
        let mut cleared = Vec::new();
        let found = run::cleared(&config.journal, &vault, &clearing, &date, |p| {
            if self
                .destination
                .as_ref()
                .is_none_or(|d| *d == p.destination)
            {
                cleared.push(SwitchItem::from(p));
            }
        });
        if let Err(e) = found {
            return fail(&e);
        }
        let result = recon::reconcile(cleared, bank);
        let mut report = Vec::new();
        result.write_breaks(&mut report)?;
        cardswitch::files::write_atomically(&path, &report)?;
        let mut text = result.summary();
        let _ = writeln!(text, "break report: {}", path.display());
        emit(&text)?;
        Ok(if result.is_clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(BREAKS)
        })
    }
}
