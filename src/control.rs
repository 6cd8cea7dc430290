//! What operators act on in a running daemon — through signals, `ctl` and
//! the admin API: the config, the switch, the listeners' counters, the
//! admin tokens; reloads and early cutovers.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tracing::info;

use crate::admin::audit::AuditLog;
use crate::admin::auth::Tokens;
use crate::admin::{Operations, ReloadProblems};
use crate::config::{Config, ConfigError};
use crate::journal::cutover::CutoverError;
use crate::switch::{Switch, Tables};
use crate::terminal::listener::ListenerStats;

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

impl Control {
    /// The daemon's control over its parts, as [`crate::server::start`]
    /// assembles them: `listeners` are each listener's name, bound address
    /// and counters.
    pub fn new(
        config: Config,
        switch: Arc<Switch>,
        listeners: Vec<(String, SocketAddr, Arc<ListenerStats>)>,
        tokens: Tokens,
        audit: Option<Arc<AuditLog>>,
    ) -> Control {
        Control {
            config,
            switch,
            listeners,
            tokens: RwLock::new(Arc::new(tokens)),
            audit,
            on_reload: std::sync::Mutex::new(Hook(None)),
        }
    }

    /// A listener's bound address and counters.
    pub fn listener(&self, name: &str) -> Option<(SocketAddr, &Arc<ListenerStats>)> {
        self.listeners
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, a, s)| (*a, s))
    }

    /// Sets what runs at every reload (by signal or by the admin API) whose
    /// config file is valid, before the new tables are swapped in.
    pub fn on_reload(&self, hook: ReloadHook) {
        *self.on_reload.lock().unwrap_or_else(|p| p.into_inner()) = Hook(Some(hook));
    }

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

impl Operations for Control {
    fn switch(&self) -> &Arc<Switch> {
        &self.switch
    }

    fn tokens(&self) -> Arc<Tokens> {
        Control::tokens(self)
    }

    fn listener_stats(&self) -> Vec<(&str, &Arc<ListenerStats>)> {
        Control::listener_stats(self).collect()
    }

    fn readiness(&self) -> Vec<String> {
        Control::readiness(self)
    }

    fn cutover(&self) -> Result<(String, String), CutoverError> {
        Control::cutover(self)
    }

    fn reload(&self) -> Result<(), ReloadProblems> {
        Control::reload(self)
            .map_err(|e| ReloadProblems(e.to_string().lines().map(String::from).collect()))
    }
}
