//! `cardswitch demo`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;

use cardswitch::demo::{self, DemoOptions};

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Transactions to run.
    #[arg(long, default_value_t = 5000)]
    count: u64,
    /// Terminal connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 8)]
    pipeline: usize,
}

impl DemoArgs {
    /// Runs the demo; exits 0 only if every response checked out.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        if std::env::var_os("RUST_LOG").is_some() {
            super::serve::init_logging("info");
        }
        let options = DemoOptions {
            count: self.count,
            connections: self.connections.max(1),
            pipeline: self.pipeline.max(1),
            progress: std::io::stderr().is_terminal(),
        };
        eprintln!(
            "cardswitch demo: 2 simulated banks (bank_a iso87binary, bank_b iso87ascii), \
             the switch, {} terminals × {} in flight, {} transactions",
            options.connections, options.pipeline, options.count
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let outcome = runtime.block_on(demo::run(&options))?;
        super::say(&outcome.report.to_string())?;
        super::say("Requests per bank:")?;
        for (bank, count) in &outcome.banks {
            super::say(&format!("  {bank:<8} {count:>8}"))?;
        }
        super::say(&format!(
            "Disabled terminal: {}",
            outcome
                .local
                .by_code
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        if outcome.all_checked_out() {
            super::say("All responses checked out.")?;
            Ok(ExitCode::SUCCESS)
        } else {
            super::say("Some responses did NOT check out.")?;
            Ok(ExitCode::FAILURE)
        }
    }
}
