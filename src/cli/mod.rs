//! Subcommands of the `cardswitch` binary.

mod clearing;
mod ctl;
mod demo;
mod iso;
mod journal;
mod keys;
mod serve;
mod sim;
mod tokens;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cardswitch — a card-acquiring switch.
#[derive(Debug, Parser)]
#[command(name = "cardswitch", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read and write ISO 8583 messages (captured traffic, test messages).
    #[command(subcommand)]
    Iso(iso::IsoCommand),
    /// Run the switch daemon.
    Serve(serve::ServeArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Simulators: a bank host (`sim bank`) and a POS terminal load
    /// generator (`sim pos`).
    #[command(subcommand)]
    Sim(Box<sim::SimCommand>),
    /// The write-ahead journal: show, tail, stats, verify, export, saf,
    /// reindex, backup, keygen.
    Journal(journal::JournalArgs),
    /// The encrypted key store: init, generate, import, list, rotate,
    /// export-kcv.
    Keys(keys::KeysArgs),
    /// Run the whole switch on loopback with simulated banks and terminals,
    /// no configuration needed, and print a summary.
    Demo(demo::DemoArgs),
    /// Talk to a running daemon's admin API: status, links, link
    /// disable|enable, reload, txn, saf, metrics.
    Ctl(ctl::CtlArgs),
    /// Bearer tokens of the admin API: add, list, remove.
    Tokens(tokens::TokensArgs),
    /// End-of-day clearing: `clearing run --date D` writes the clearing
    /// files, settlement report and manifest of a business date.
    Clearing(clearing::ClearingArgs),
    /// Reconciles a bank's settlement file with what the switch cleared for
    /// a date; exits 3 when there are breaks.
    Recon(clearing::ReconArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file without starting; exits non-zero and
    /// names file, key and reason of each problem.
    Check {
        /// The file.
        file: std::path::PathBuf,
    },
}

/// Ends a command quietly when the reader of its standard output has gone
/// (`cardswitch journal export … | head`): an error caused by
/// [`std::io::ErrorKind::BrokenPipe`] becomes a successful exit, without a
/// message. Every other result passes through unchanged.
///
/// A command prints with `writeln!(out, …)?` on a locked
/// [`std::io::stdout`] (never `println!`, which panics on a closed
/// output) and wraps its result in this. Use it only for commands that
/// write to no socket, so that a peer's broken pipe is not mistaken for a
/// closed output.
pub(crate) fn quiet_on_closed_output(
    result: Result<ExitCode, Box<dyn std::error::Error>>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match result {
        Err(error) if is_broken_pipe(error.as_ref()) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

/// Whether `error`, or anything in its chain of sources, is an I/O error
/// of kind [`std::io::ErrorKind::BrokenPipe`].
fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints one line on stdout. A closed output (broken pipe: `… | head`)
/// is not an error: the line goes nowhere and the command goes on to its
/// normal end. For commands that also talk to sockets (`ctl`, `sim`,
/// `demo`), where [`quiet_on_closed_output`] would mistake a peer's broken
/// pipe for a closed output.
pub(crate) fn say(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        match self.command {
            Command::Iso(cmd) => quiet_on_closed_output(cmd.run()),
            Command::Serve(args) => args.run(),
            Command::Config(ConfigCommand::Check { file }) => {
                quiet_on_closed_output(serve::check(file))
            }
            Command::Sim(cmd) => cmd.run(),
            Command::Demo(args) => args.run(),
            Command::Journal(args) => quiet_on_closed_output(args.run()),
            Command::Keys(args) => quiet_on_closed_output(args.run()),
            Command::Ctl(args) => args.run(),
            Command::Tokens(args) => quiet_on_closed_output(args.run()),
            Command::Clearing(args) => args.run(),
            Command::Recon(args) => args.run(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn only_a_broken_pipe_ends_quietly() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(
            quiet_on_closed_output(Err(pipe().into())).ok(),
            Some(ExitCode::SUCCESS)
        );
        assert_eq!(
            quiet_on_closed_output(Err(Box::new(Wrapped(pipe())))).ok(),
            Some(ExitCode::SUCCESS)
        );
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(quiet_on_closed_output(Err(other.into())).is_err());
        assert!(quiet_on_closed_output(Err("no such transaction".into())).is_err());
        assert_eq!(
            quiet_on_closed_output(Ok(ExitCode::FAILURE)).ok(),
            Some(ExitCode::FAILURE)
        );
    }
}
