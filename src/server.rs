//! Starting and stopping the daemon: bind listeners, open destination links,
//! reload tables on request, shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapter::Destination;
use crate::config::{Config, ConfigError};
use crate::journal::saf::{self, SafContext};
use crate::journal::{Journal, JournalError, recovery};
use crate::switch::{Switch, Tables};
use crate::terminal::listener::{self, ListenerStats};

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listener address could not be bound.
    #[error("listener `{name}`: cannot bind {address}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The journal could not be opened or recovered.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A running switch.
#[derive(Debug)]
pub struct Running {
    config: Config,
    switch: Arc<Switch>,
    listeners: Vec<(String, SocketAddr, Arc<ListenerStats>)>,
    sessions: CancellationToken,
    saf: CancellationToken,
    links: CancellationToken,
    listener_tasks: JoinSet<()>,
    saf_tasks: JoinSet<()>,
    link_tasks: JoinSet<()>,
}

/// Opens the journal and settles what a crash left open, binds every
/// listener, opens every destination's links and starts store-and-forward.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    let (journal, _) = Journal::open(config.journal.clone())?;
    let journal = Arc::new(journal);
    let recovered = recovery::recover(&journal).await?;
    let sessions = CancellationToken::new();
    let saf_token = CancellationToken::new();
    let links = CancellationToken::new();
    let destinations: Vec<Arc<Destination>> = config
        .destinations
        .iter()
        .map(|d| Destination::new(d.clone()))
        .collect();
    let mut link_tasks = JoinSet::new();
    for destination in &destinations {
        destination.start(&mut link_tasks, &links);
    }
    let mut saf_tasks = JoinSet::new();
    let context = SafContext {
        journal: Arc::clone(&journal),
        settings: config.switch.clone(),
        retry_min: config.journal.saf_retry_min,
        retry_max: config.journal.saf_retry_max,
    };
    let saf = saf::start(
        &context,
        &destinations,
        recovered.saf,
        &mut saf_tasks,
        &saf_token,
    );
    let switch = Arc::new(Switch::new(&config, destinations, journal, saf));
    let mut listener_tasks = JoinSet::new();
    let mut bound = Vec::new();
    for l in &config.listeners {
        let socket = TcpListener::bind(l.address)
            .await
            .map_err(|source| ServeError::Bind {
                name: l.name.clone(),
                address: l.address,
                source,
            })?;
        let address = socket.local_addr().unwrap_or(l.address);
        let stats = Arc::new(ListenerStats::default());
        info!(listener = %l.name, %address, dialect = l.dialect.name(), "listening");
        bound.push((l.name.clone(), address, Arc::clone(&stats)));
        listener_tasks.spawn(listener::run(
            socket,
            Arc::new(l.clone()),
            Arc::clone(&switch),
            stats,
            sessions.clone(),
        ));
    }
    Ok(Running {
        config,
        switch,
        listeners: bound,
        sessions,
        saf: saf_token,
        links,
        listener_tasks,
        saf_tasks,
        link_tasks,
    })
}

impl Drop for Running {
    /// A switch dropped without [`Running::shutdown`] still stops: listeners,
    /// sessions and links all watch these tokens.
    fn drop(&mut self) {
        self.sessions.cancel();
        self.saf.cancel();
        self.links.cancel();
    }
}

impl Running {
    /// The address a listener is bound to (useful with port 0).
    pub fn address(&self, listener: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(name, _, _)| name == listener)
            .map(|(_, a, _)| *a)
    }

    /// A listener's counters.
    pub fn listener_stats(&self, listener: &str) -> Option<&Arc<ListenerStats>> {
        self.listeners
            .iter()
            .find(|(name, _, _)| name == listener)
            .map(|(_, _, s)| s)
    }

    /// The configuration the daemon started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The switch.
    pub fn switch(&self) -> &Arc<Switch> {
        &self.switch
    }

    /// Re-reads terminals and routes (with their keys from the key store)
    /// from the config file and swaps them in atomically; on any error the
    /// old tables stay. TLS certificates and keys of listeners and
    /// destinations are re-read too: new connections use them, established
    /// ones keep their session; a certificate that fails to load keeps its
    /// old version.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let acceptors = self.config.listeners.iter().filter_map(|l| l.tls.as_ref());
        for tls in acceptors {
            if let Err(e) = tls.reload() {
                problems.push(e.to_string());
            }
        }
        let connectors = self
            .config
            .destinations
            .iter()
            .filter_map(|d| d.tls.as_ref());
        for tls in connectors {
            if let Err(e) = tls.reload() {
                problems.push(e.to_string());
            }
        }
        match self.config.reload_tables() {
            Ok((terminals, routes)) => {
                info!(
                    terminals = terminals.len(),
                    routes = routes.len(),
                    "tables reloaded"
                );
                self.switch.replace_tables(Tables { terminals, routes });
            }
            Err(ConfigError::Invalid(mut more)) => problems.append(&mut more),
            Err(other) => problems.push(other.to_string()),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Graceful shutdown: stop accepting, let requests in flight finish (up
    /// to the configured grace), stop store-and-forward (what it still owes
    /// stays queued in the journal), then close the destination links. The
    /// journal closes when the last task holding it ends.
    pub async fn shutdown(mut self) {
        self.sessions.cancel();
        let grace = self.config.switch.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            while self.listener_tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                ?grace,
                "requests still in flight after the grace period; closing"
            );
            self.listener_tasks.abort_all();
        }
        self.saf.cancel();
        while self.saf_tasks.join_next().await.is_some() {}
        self.links.cancel();
        while self.link_tasks.join_next().await.is_some() {}
        info!("stopped");
    }
}
