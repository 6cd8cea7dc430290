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

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        match self.command {
            Command::Iso(cmd) => cmd.run(),
            Command::Serve(args) => args.run(),
            Command::Config(ConfigCommand::Check { file }) => serve::check(file),
            Command::Sim(cmd) => cmd.run(),
            Command::Demo(args) => args.run(),
            Command::Journal(args) => args.run(),
            Command::Keys(args) => args.run(),
            Command::Ctl(args) => args.run(),
            Command::Tokens(args) => args.run(),
            Command::Clearing(args) => args.run(),
            Command::Recon(args) => args.run(),
        }
    }
}
