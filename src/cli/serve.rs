//! `cardswitch serve` and `cardswitch config check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use cardswitch::config::{Config, LogFormat, LogSettings};
use cardswitch::server;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (see docs/configuration.md).
    #[arg(long, short)]
    config: PathBuf,
}

/// Changes the daemon's log level on a reload.
type LevelHandle = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// Installs the daemon's log subscriber on stderr in the configured format.
/// `RUST_LOG`, when set, fixes the filter; otherwise the configured level
/// applies and the returned handle changes it on a reload.
fn init_daemon_logging(settings: &LogSettings) -> Option<LevelHandle> {
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&settings.level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match settings.format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colours only for a person at a terminal, never into
                    // journald or a file.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    (installed.is_ok() && !fixed).then_some(handle)
}

/// Applies the `[log]` level of the config file again (at each reload).
fn reload_level(handle: Option<&LevelHandle>, config: &std::path::Path) {
    let Some(handle) = handle else {
        info!("log level fixed by RUST_LOG; [log] level not reloaded");
        return;
    };
    match LogSettings::load(config).and_then(|s| {
        EnvFilter::try_new(&s.level)
            .map_err(|e| cardswitch::config::ConfigError::Invalid(vec![format!("log.level: {e}")]))
    }) {
        Ok(filter) => {
            // Said under the old level, which is what the operator watches.
            info!(level = %filter, "log level reloaded");
            let _ = handle.modify(|f| *f = filter);
        }
        Err(e) => error!("log level not reloaded:\n{e}"),
    }
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
        let config = Config::load(&self.config)?;
        let level = init_daemon_logging(&config.log);
        let path = self.config.clone();
        // A worker that is about to park wakes the journal writer for what
        // its tasks appended: one group per wake-up (see `wal::wake`).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .on_thread_park(cardswitch::journal::wal::on_thread_park)
            .build()?;
        runtime.block_on(async move {
            let running = server::start(config).await?;
            // The log level is re-applied by every reload, SIGHUP or API.
            running.on_reload(Box::new(move || reload_level(level.as_ref(), &path)));
            let mut hangup = signal(SignalKind::hangup())?;
            let mut terminate = signal(SignalKind::terminate())?;
            let mut interrupt = signal(SignalKind::interrupt())?;
            wait_for_links(&running).await;
            systemd::notify(&[NotifyState::Ready]);
            // Fed from this loop, so a stuck main loop is restarted by
            // systemd (WatchdogSec=); at half the interval, as sd_watchdog_enabled(3) advises.
            let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
            let mut feed = tokio::time::interval(watchdog.unwrap_or(std::time::Duration::from_secs(3600)));
            loop {
                tokio::select! {
                    _ = hangup.recv() => {
                        systemd::notify(&[NotifyState::Reloading, systemd::monotonic_now()]);
                        match running.reload() {
                            Ok(()) => {}
                            Err(e) => error!("reload incomplete; whatever failed keeps its old version:\n{e}"),
                        }
                        systemd::notify(&[NotifyState::Ready]);
                    },
                    _ = feed.tick(), if watchdog.is_some() => systemd::notify(&[NotifyState::Watchdog]),
                    _ = terminate.recv() => break,
                    _ = interrupt.recv() => break,
                }
            }
            info!("shutting down");
            systemd::notify(&[NotifyState::Stopping]);
            running.shutdown().await;
            Ok(ExitCode::SUCCESS)
        })
    }
}

/// How long start-up waits for every destination to have a link up before
/// it reports ready anyway (a bank that is down must not keep the switch
/// from serving the others).
const LINKS_AT_START: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until every destination has a link up, at most [`LINKS_AT_START`].
async fn wait_for_links(running: &server::Running) {
    let since = std::time::Instant::now();
    loop {
        let down: Vec<&str> = running
            .config()
            .destinations
            .iter()
            .map(|d| d.name.as_str())
            .filter(|name| {
                running
                    .switch()
                    .destination(name)
                    .is_some_and(|d| d.links_up() == 0)
            })
            .collect();
        if down.is_empty() {
            return;
        }
        if since.elapsed() >= LINKS_AT_START {
            warn!(destinations = ?down, "ready with destinations that have no link up yet");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// systemd notifications (`Type=notify`); nothing happens outside systemd.
mod systemd {
    use sd_notify::NotifyState;

    /// Sends state changes to the service manager, if there is one.
    pub fn notify(states: &[NotifyState<'_>]) {
        if let Err(error) = sd_notify::notify(states) {
            tracing::warn!(%error, "cannot notify systemd");
        }
    }

    /// `MONOTONIC_USEC=` now, which systemd wants with `RELOADING=1`.
    pub fn monotonic_now() -> NotifyState<'static> {
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::MonotonicUsec(0))
    }
}

/// `config check FILE`: validate and report.
pub fn check(path: PathBuf) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match Config::load(&path) {
        Ok(config) => {
            super::say(&format!(
                "{}: ok ({} listeners, {} destinations, {} terminals, {} routes)",
                path.display(),
                config.listeners.len(),
                config.destinations.len(),
                config.terminals.len(),
                config.routes.len()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
