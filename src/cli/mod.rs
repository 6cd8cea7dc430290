//! Subcommands of the `cardswitch` binary.

mod iso;
mod sim;

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
    /// Simulators: a bank host (`sim bank`) and a POS terminal load
    /// generator (`sim pos`).
    #[command(subcommand)]
    Sim(sim::SimCommand),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        match self.command {
            Command::Iso(cmd) => cmd.run(),
            Command::Sim(cmd) => cmd.run(),
        }
    }
}
