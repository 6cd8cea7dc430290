//! Starting and stopping the daemon: bind listeners, open destination links,
//! reload tables on request, shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapter::Destination;
use crate::admin::AdminConfig;
use crate::admin::audit::AuditLog;
use crate::admin::auth::Tokens;
use crate::config::{Config, ConfigError};
use crate::control::{Control, ReloadHook};
use crate::journal::{Journal, JournalError};
use crate::reversal::recovery;
use crate::reversal::saf::{self, SafContext};
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
    Admin(#[from] crate::admin::StartError),
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
    let (destinations, link_tasks) = open_destinations(&config, &links);
    let mut saf_tasks = JoinSet::new();
    let context = SafContext {
        journal: Arc::clone(&journal),
        institution: config.switch.institution.clone(),
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
    let tokens = load_tokens(&config)?;
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
    let bound = bind_listeners(&config, &switch, &sessions, &mut listener_tasks).await?;
    let admin = BoundAdmin::bind(config.admin.clone()).await?;
    let audit = admin.as_ref().map(|admin| Arc::clone(&admin.audit));
    let control = Arc::new(Control::new(config, switch, bound, tokens, audit));
    let admin = admin.map(|admin| admin.spawn(&control, &sessions, &mut listener_tasks));
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

/// One [`Destination`] per configured destination, each with its links
/// opened as tasks that stop when `links` is cancelled.
fn open_destinations(
    config: &Config,
    links: &CancellationToken,
) -> (Vec<Arc<Destination>>, JoinSet<()>) {
    let destinations: Vec<Arc<Destination>> = config
        .destinations
        .iter()
        .map(|d| Destination::new(d.clone()))
        .collect();
    let mut link_tasks = JoinSet::new();
    for destination in &destinations {
        destination.start(&mut link_tasks, links);
    }
    (destinations, link_tasks)
}

/// The admin API's bearer tokens, or none when the admin API is off.
fn load_tokens(config: &Config) -> Result<Tokens, ServeError> {
    match &config.admin {
        Some(admin) => {
            Tokens::load(&admin.tokens_file).map_err(|e| crate::admin::StartError::from(e).into())
        }
        None => Ok(Tokens::default()),
    }
}

/// Binds every terminal listener in config order and spawns its accept
/// loop on `tasks`; returns each listener's name, bound address and
/// counters. The first address that cannot be bound ends the start.
async fn bind_listeners(
    config: &Config,
    switch: &Arc<Switch>,
    sessions: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<Vec<(String, SocketAddr, Arc<ListenerStats>)>, ServeError> {
    let mut bound = Vec::new();
    for l in &config.listeners {
        let socket =
            listener::bind(l.address, l.max_connections).map_err(|source| ServeError::Bind {
                name: l.name.clone(),
                address: l.address,
                source,
            })?;
        let address = socket.local_addr().unwrap_or(l.address);
        let stats = Arc::new(ListenerStats::default());
        info!(listener = %l.name, %address, dialect = l.dialect.name(), "listening");
        bound.push((l.name.clone(), address, Arc::clone(&stats)));
        tasks.spawn(listener::run(
            socket,
            Arc::new(l.clone()),
            Arc::clone(switch),
            stats,
            sessions.clone(),
        ));
    }
    Ok(bound)
}

/// The admin API between binding its socket and serving it: the control
/// it serves is built in between, with the audit log opened here.
struct BoundAdmin {
    socket: TcpListener,
    config: AdminConfig,
    audit: Arc<AuditLog>,
}

impl BoundAdmin {
    /// Binds the admin address and opens the audit log, when the admin API
    /// is configured.
    async fn bind(config: Option<AdminConfig>) -> Result<Option<BoundAdmin>, ServeError> {
        let Some(admin) = config else {
            return Ok(None);
        };
        let socket = TcpListener::bind(admin.address)
            .await
            .map_err(|source| ServeError::Bind {
                name: "admin".into(),
                address: admin.address,
                source,
            })?;
        let audit = AuditLog::open(&admin.audit_log).map_err(|source| {
            crate::admin::StartError::AuditLog {
                path: admin.audit_log.clone(),
                source,
            }
        })?;
        Ok(Some(BoundAdmin {
            socket,
            config: admin,
            audit: Arc::new(audit),
        }))
    }

    /// Spawns the admin API on `tasks` (it stops with the sessions) and
    /// returns the address it listens on.
    fn spawn(
        self,
        control: &Arc<Control>,
        sessions: &CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> SocketAddr {
        let address = self.socket.local_addr().unwrap_or(self.config.address);
        info!(%address, tls = self.config.tls.is_some(), "admin API listening");
        tasks.spawn(crate::admin::run(
            self.socket,
            self.config,
            Arc::clone(control) as Arc<dyn crate::admin::Operations>,
            self.audit,
            sessions.clone(),
        ));
        address
    }
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
        self.control.listener(listener).map(|(address, _)| address)
    }

    /// The admin API's address, when it runs.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// A listener's counters.
    pub fn listener_stats(&self, listener: &str) -> Option<&Arc<ListenerStats>> {
        self.control.listener(listener).map(|(_, stats)| stats)
    }

    /// The configuration the daemon started with.
    pub fn config(&self) -> &Config {
        self.control.config()
    }

    /// The switch.
    pub fn switch(&self) -> &Arc<Switch> {
        self.control.switch()
    }

    /// See [`Control::reload`].
    pub fn reload(&self) -> Result<(), ConfigError> {
        self.control.reload()
    }

    /// Sets what runs at every reload (by signal or by the admin API) whose
    /// config file is valid, before the new tables are swapped in.
    pub fn on_reload(&self, hook: ReloadHook) {
        self.control.on_reload(hook);
    }

    /// Graceful shutdown: stop accepting, let requests in flight finish (up
    /// to the configured grace), stop store-and-forward (what it still owes
    /// stays queued in the journal), then close the destination links. The
    /// journal closes when the last task holding it ends.
    pub async fn shutdown(mut self) {
        self.sessions.cancel();
        let grace = self.control.config().switch.shutdown_grace;
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
