//! `cardswitch serve` and `cardswitch config check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

use cardswitch::config::Config;
use cardswitch::server;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (see docs/config.md).
    #[arg(long, short)]
    config: PathBuf,
}

/// Installs the log subscriber on stderr: `RUST_LOG` filters, else `default`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

impl ServeArgs {
    /// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads terminals,
    /// routes, their keys, and TLS certificates.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        init_logging("info");
        let config = Config::load(&self.config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let running = server::start(config).await?;
            let mut hangup = signal(SignalKind::hangup())?;
            let mut terminate = signal(SignalKind::terminate())?;
            let mut interrupt = signal(SignalKind::interrupt())?;
            loop {
                tokio::select! {
                    _ = hangup.recv() => match running.reload() {
                        Ok(()) => {}
                        Err(e) => error!("reload incomplete; whatever failed keeps its old version:\n{e}"),
                    },
                    _ = terminate.recv() => break,
                    _ = interrupt.recv() => break,
                }
            }
            info!("shutting down");
            running.shutdown().await;
            Ok(ExitCode::SUCCESS)
        })
    }
}

/// `config check FILE`: validate and report.
pub fn check(path: PathBuf) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match Config::load(&path) {
        Ok(config) => {
            println!(
                "{}: ok ({} listeners, {} destinations, {} terminals, {} routes)",
                path.display(),
                config.listeners.len(),
                config.destinations.len(),
                config.terminals.len(),
                config.routes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
