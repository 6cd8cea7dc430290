//! Starting and stopping the daemon: bind listeners, open destination links,
//! reload tables on request, shut down gracefully.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapter::Destination;
use crate::admin::audit::AuditLog;
use crate::admin::auth::Tokens;
use crate::config::{Config, ConfigError};
use crate::journal::cutover::CutoverError;
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
    /// The admin API could not start.
    #[error("admin API: {0}")]
    Admin(String),
}

/// What operators act on, through signals or the admin API: the config,
/// the switch, the listeners' counters and the admin tokens.
#[derive(Debug)]
pub struct Control {
    config: Config,
    switch: Arc<Switch>,
    listeners: Vec<(String, SocketAddr, Arc<ListenerStats>)>,
    tokens: RwLock<Arc<Tokens>>,
    audit: Option<Arc<AuditLog>>,
    /// Runs at every reload whose config file is valid (the daemon
    /// re-applies its log level).
    on_reload: std::sync::Mutex<Hook>,
}

/// Something the binary re-reads at each reload besides what [`Control`]
/// owns (its log level).
pub type ReloadHook = Box<dyn Fn() + Send + Sync>;

/// The reload hook, if set.
struct Hook(Option<ReloadHook>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hook(set)"
        } else {
            "Hook(none)"
        })
    }
}

/// A running switch.
#[derive(Debug)]
pub struct Running {
    control: Arc<Control>,
    admin: Option<SocketAddr>,
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
    let tokens = match &config.admin {
        Some(admin) => {
            Tokens::load(&admin.tokens_file).map_err(|e| ServeError::Admin(e.to_string()))?
        }
        None => Tokens::default(),
    };
    let tables = Tables {
        terminals: config.terminals.clone(),
        routes: config.routes.clone(),
    };
    let switch = Arc::new(Switch::new(
        config.switch.clone(),
        tables,
        config.risk.clone(),
        destinations,
        journal,
        saf,
    ));
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
    let admin = match config.admin.clone() {
        None => None,
        Some(admin) => {
            let socket =
                TcpListener::bind(admin.address)
                    .await
                    .map_err(|source| ServeError::Bind {
                        name: "admin".into(),
                        address: admin.address,
                        source,
                    })?;
            let audit = AuditLog::open(&admin.audit_log).map_err(|e| {
                ServeError::Admin(format!("audit log {}: {e}", admin.audit_log.display()))
            })?;
            Some((socket, admin, Arc::new(audit)))
        }
    };
    let control = Arc::new(Control {
        config,
        switch,
        listeners: bound,
        tokens: RwLock::new(Arc::new(tokens)),
        audit: admin.as_ref().map(|(_, _, audit)| Arc::clone(audit)),
        on_reload: std::sync::Mutex::new(Hook(None)),
    });
    let admin = admin.map(|(socket, admin, audit)| {
        let address = socket.local_addr().unwrap_or(admin.address);
        info!(%address, tls = admin.tls.is_some(), "admin API listening");
        listener_tasks.spawn(crate::admin::run(
            socket,
            admin,
            Arc::clone(&control),
            audit,
            sessions.clone(),
        ));
        address
    });
    Ok(Running {
        control,
        admin,
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
        self.control
            .listeners
            .iter()
            .find(|(name, _, _)| name == listener)
            .map(|(_, a, _)| *a)
    }

    /// The admin API's address, when it runs.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// A listener's counters.
    pub fn listener_stats(&self, listener: &str) -> Option<&Arc<ListenerStats>> {
        self.control
            .listeners
            .iter()
            .find(|(name, _, _)| name == listener)
            .map(|(_, _, s)| s)
    }

    /// The configuration the daemon started with.
    pub fn config(&self) -> &Config {
        &self.control.config
    }

    /// The switch.
    pub fn switch(&self) -> &Arc<Switch> {
        &self.control.switch
    }

    /// See [`Control::reload`].
    pub fn reload(&self) -> Result<(), ConfigError> {
        self.control.reload()
    }

    /// Sets what runs at every reload (by signal or by the admin API) whose
    /// config file is valid, before the new tables are swapped in.
    pub fn on_reload(&self, hook: ReloadHook) {
        *self
            .control
            .on_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Hook(Some(hook));
    }

    /// Graceful shutdown: stop accepting, let requests in flight finish (up
    /// to the configured grace), stop store-and-forward (what it still owes
    /// stays queued in the journal), then close the destination links. The
    /// journal closes when the last task holding it ends.
    pub async fn shutdown(mut self) {
        self.sessions.cancel();
        let grace = self.control.config.switch.shutdown_grace;
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

impl Control {
    /// The configuration the daemon started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The switch.
    pub fn switch(&self) -> &Arc<Switch> {
        &self.switch
    }

    /// Every listener's name and counters.
    pub fn listener_stats(&self) -> impl Iterator<Item = (&str, &Arc<ListenerStats>)> {
        self.listeners.iter().map(|(name, _, s)| (name.as_str(), s))
    }

    /// The admin API's valid tokens.
    pub fn tokens(&self) -> Arc<Tokens> {
        match self.tokens.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Why the daemon is not ready to take traffic (empty when it is): the
    /// journal must take records and every destination without a fallback
    /// must have a link up (one with a fallback is covered by it).
    pub fn readiness(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(reason) = self.switch.journal().failed() {
            problems.push(format!("journal: {reason}"));
        }
        for destination in self.switch.destinations() {
            if destination.links_up() == 0 && destination.config().fallback.is_none() {
                problems.push(format!("destination {}: no link up", destination.name()));
            }
        }
        problems
    }

    /// Closes the current business date on an operator's request: the
    /// next date starts now (durably, in the journal directory, before it
    /// takes effect), so the closed one can be cleared at once. Returns the
    /// date closed and the one started.
    pub fn cutover(&self) -> Result<(String, String), CutoverError> {
        let journal = self.switch.journal().config();
        let now = crate::journal::wal::now_micros();
        let closed = journal.cutover.date(now);
        let start = journal.cutover.start_next(&journal.dir, now)?;
        info!(closed = %closed, started = %start.date, "business date closed by an operator");
        Ok((closed, start.date))
    }

    /// Re-reads terminals, routes (with their keys from the key store) and
    /// risk rules from the config file and swaps them in atomically; on any
    /// error the old ones stay. TLS certificates and keys of listeners,
    /// destinations and the admin API are re-read too: new connections use
    /// them, established ones keep their session; a certificate that fails
    /// to load keeps its old version. The admin token file is re-read and
    /// the audit log reopened (for log rotation).
    pub fn reload(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let acceptors = self
            .config
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref())
            .chain(self.config.admin.iter().filter_map(|a| a.tls.as_ref()));
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
            Ok(reloaded) => {
                // The file is valid as a whole: its log level applies too.
                if let Some(hook) = self
                    .on_reload
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .0
                    .as_ref()
                {
                    hook();
                }
                info!(
                    terminals = reloaded.terminals.len(),
                    routes = reloaded.routes.len(),
                    risk_rules = reloaded.risk.rule_ids().len(),
                    "tables reloaded"
                );
                self.switch.risk().replace(reloaded.risk);
                self.switch.replace_tables(Tables {
                    terminals: reloaded.terminals,
                    routes: reloaded.routes,
                });
            }
            Err(ConfigError::Invalid(mut more)) => problems.append(&mut more),
            Err(other) => problems.push(other.to_string()),
        }
        if let Some(admin) = &self.config.admin {
            match Tokens::load(&admin.tokens_file) {
                Ok(tokens) => {
                    let tokens = Arc::new(tokens);
                    match self.tokens.write() {
                        Ok(mut t) => *t = tokens,
                        Err(poisoned) => *poisoned.into_inner() = tokens,
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if let Some(audit) = &self.audit
            && let Err(e) = audit.reopen()
        {
            problems.push(format!("audit log: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}
