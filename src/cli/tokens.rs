//! `cardswitch tokens …`: the admin API's bearer tokens.
//!
//! `add` prints the new token once, on standard output; the file keeps only
//! its SHA-256 (see [`cardswitch::admin::auth`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use cardswitch::admin::auth::{self, Role};

/// Arguments of `tokens`.
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// The token file (`admin.tokens_file` of the config).
    #[arg(long, global = true, default_value = "tokens.toml")]
    file: PathBuf,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Creates a token and prints it (the only time it is shown).
    Add {
        /// Who holds it (shown in the audit log).
        name: String,
        /// `viewer` (read-only) or `operator` (everything).
        #[arg(long, value_parser = ["viewer", "operator"])]
        role: String,
    },
    /// Lists names and roles.
    List,
    /// Removes a token (takes effect at the daemon's next reload).
    Remove {
        /// Its name.
        name: String,
    },
}

impl TokensArgs {
    /// Runs the command.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        match self.command {
            TokensCommand::Add { name, role } => {
                let role = if role == "operator" {
                    Role::Operator
                } else {
                    Role::Viewer
                };
                let token = auth::add(&self.file, &name, role)?;
                super::say(&token)?;
                eprintln!(
                    "token `{name}` ({}) added to {}; it is not shown again. Reload the daemon to use it.",
                    role.as_str(),
                    self.file.display()
                );
            }
            TokensCommand::List => {
                for entry in auth::list(&self.file)? {
                    super::say(&format!("{}\t{}", entry.name, entry.role.as_str()))?;
                }
            }
            TokensCommand::Remove { name } => {
                auth::remove(&self.file, &name)?;
                eprintln!("token `{name}` removed; reload the daemon for it to take effect");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
