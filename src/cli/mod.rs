//! Subcommands of the `cardswitch` binary.

mod iso;

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
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        match self.command {
            Command::Iso(cmd) => cmd.run(),
        }
    }
}
