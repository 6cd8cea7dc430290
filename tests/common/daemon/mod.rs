//! The `cardswitch serve` configuration of a test, written from code
//! ([`Daemon`]), and the switch run from it: the real binary
//! ([`Daemon::spawn`], a [`Process`]) or inside the test
//! ([`Daemon::start_in_process`]).
//!
//! ```ignore
//! let daemon = Daemon::new(dir.path())
//!     .timeout_ms(2000)
//!     .listener(Listener::new("pos", "iso87ascii"))
//!     .destination(Destination::new("bank", bank.addr(), "iso87binary"))
//!     .route("476173", "bank")
//!     .terminal(Terminal::new("TERM0001", "M1"));
//! let process = daemon.spawn();
//! process.wait_log("link up");
//! common::purchases(process.addr("pos"), "476173", "00", 4).await;
//! ```
//!
//! Every file the configuration names (journal, data key, key store tokens,
//! audit log) lives in the directory given to [`Daemon::new`]. A listener
//! or the admin API without an address binds `127.0.0.1:0` in process; a
//! spawned daemon gets a free port, reported by [`Process::addr`] and
//! [`Process::admin`]. Keys without a typed method go in with `line`.

mod entries;
mod process;

pub use entries::{Destination, Listener, Terminal};
pub use process::Process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A TOML string: quoted and escaped.
pub(super) fn q(text: impl AsRef<str>) -> String {
    toml::Value::String(text.as_ref().to_string()).to_string()
}

/// A TOML string of a path.
pub(super) fn qp(path: &Path) -> String {
    q(path.to_string_lossy())
}

/// A loopback address nothing listens on at the moment (bound, then
/// released).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The `[admin]` section.
#[derive(Clone, Debug, Default)]
struct Admin {
    address: Option<SocketAddr>,
    tls: Option<(PathBuf, PathBuf)>,
}

/// The configuration of one `cardswitch serve`, and how to start it.
#[derive(Clone, Debug)]
pub struct Daemon {
    dir: PathBuf,
    file: String,
    acquirer_id: String,
    timeout_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    journal: Vec<String>,
    key_store: bool,
    log: Option<(String, String)>,
    admin: Option<Admin>,
    listeners: Vec<Listener>,
    destinations: Vec<Destination>,
    routes: Vec<String>,
    routes_file: Option<String>,
    terminals: Vec<Terminal>,
    extra: String,
    env: Vec<(String, Option<String>)>,
}

impl Daemon {
    /// A configuration kept in `dir` (as `cardswitch.toml`), journaling
    /// into `dir/journal` with a data key file ([`super::journal_section`]),
    /// acquirer 4123456; nothing else until added.
    pub fn new(dir: &Path) -> Daemon {
        Daemon {
            dir: dir.to_path_buf(),
            file: "cardswitch.toml".to_string(),
            acquirer_id: "4123456".to_string(),
            timeout_ms: None,
            shutdown_grace_ms: None,
            journal: Vec::new(),
            key_store: false,
            log: None,
            admin: None,
            listeners: Vec::new(),
            destinations: Vec::new(),
            routes: Vec::new(),
            routes_file: None,
            terminals: Vec::new(),
            extra: String::new(),
            env: Vec::new(),
        }
    }

    /// The config file's name in the directory (default `cardswitch.toml`).
    pub fn file_name(mut self, name: &str) -> Daemon {
        self.file = name.to_string();
        self
    }

    /// `switch.timeout_ms`.
    pub fn timeout_ms(mut self, ms: u64) -> Daemon {
        self.timeout_ms = Some(ms);
        self
    }

    /// `switch.shutdown_grace_ms`.
    pub fn shutdown_grace_ms(mut self, ms: u64) -> Daemon {
        self.shutdown_grace_ms = Some(ms);
        self
    }

    /// `journal.cutover` (`HH:MM`, UTC).
    pub fn cutover(self, cutover: &str) -> Daemon {
        self.journal_line(&format!("cutover = {}", q(cutover)))
    }

    /// Another line of `[journal]`.
    pub fn journal_line(mut self, line: &str) -> Daemon {
        self.journal.push(line.to_string());
        self
    }

    /// A key store holding [`super::TEST_KEYS`] under a master key file
    /// ([`super::security_section`]).
    pub fn key_store(mut self) -> Daemon {
        self.key_store = true;
        self
    }

    /// The journal seals PANs under the key store's `data` key instead of
    /// a data key file (implies [`Daemon::key_store`]).
    pub fn data_key_from_store(mut self) -> Daemon {
        self.key_store = true;
        self.journal.push("data_key = \"data\"".to_string());
        self
    }

    /// `[log]`: `format` (`text` or `json`) and `level`.
    pub fn log(mut self, format: &str, level: &str) -> Daemon {
        self.log = Some((format.to_string(), level.to_string()));
        self
    }

    /// The admin API, with `tokens.toml` and `audit.log` in the directory
    /// (add tokens with `cardswitch tokens --file DIR/tokens.toml add`).
    pub fn admin(mut self) -> Daemon {
        self.admin = Some(Admin::default());
        self
    }

    /// The admin API over TLS with this certificate and key.
    pub fn admin_tls(mut self, cert: &Path, key: &Path) -> Daemon {
        self.admin = Some(Admin {
            tls: Some((cert.to_path_buf(), key.to_path_buf())),
            ..Admin::default()
        });
        self
    }

    /// A listener.
    pub fn listener(mut self, listener: Listener) -> Daemon {
        self.listeners.push(listener);
        self
    }

    /// A destination.
    pub fn destination(mut self, destination: Destination) -> Daemon {
        self.destinations.push(destination);
        self
    }

    /// A route of the BIN `prefix` to `destination`.
    pub fn route(mut self, prefix: &str, destination: &str) -> Daemon {
        self.routes.push(format!(
            "[[route]]\nprefix = {}\ndestination = {}\n",
            q(prefix),
            q(destination)
        ));
        self
    }

    /// A route of the BIN range `low..=high` to `destination`.
    pub fn route_range(mut self, low: &str, high: &str, destination: &str) -> Daemon {
        self.routes.push(format!(
            "[[route]]\nrange = [{}, {}]\ndestination = {}\n",
            q(low),
            q(high),
            q(destination)
        ));
        self
    }

    /// The routes go to this file beside the config (`routes_file`),
    /// which a test may rewrite before a reload.
    pub fn routes_in_file(mut self, name: &str) -> Daemon {
        self.routes_file = Some(name.to_string());
        self
    }

    /// A terminal.
    pub fn terminal(mut self, terminal: Terminal) -> Daemon {
        self.terminals.push(terminal);
        self
    }

    /// Sections without a typed method (`[[risk.block]]`, `[clearing]`,
    /// …), appended as they are.
    pub fn section(mut self, toml: &str) -> Daemon {
        self.extra.push_str(toml);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// An environment variable of a spawned daemon.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Daemon {
        self.env.push((
            key.to_string(),
            Some(value.as_ref().to_string_lossy().into_owned()),
        ));
        self
    }

    /// An environment variable a spawned daemon must not inherit.
    pub fn env_remove(mut self, key: &str) -> Daemon {
        self.env.push((key.to_string(), None));
        self
    }

    /// The directory of the configuration.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path the configuration is written to.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }

    /// The configuration as TOML.
    pub fn toml(&self) -> String {
        let mut text = String::new();
        if let Some(file) = &self.routes_file {
            text.push_str(&format!("routes_file = {}\n", q(file)));
        }
        text.push_str(&super::journal_section(&self.dir));
        for line in &self.journal {
            if line.starts_with("data_key =") {
                text = text
                    .lines()
                    .filter(|l| !l.starts_with("data_key_file"))
                    .map(|l| format!("{l}\n"))
                    .collect();
            }
            text.push_str(line);
            text.push('\n');
        }
        if self.key_store {
            text.push_str(&super::security_section(&self.dir));
        }
        if let Some((format, level)) = &self.log {
            text.push_str(&format!(
                "[log]\nformat = {}\nlevel = {}\n",
                q(format),
                q(level)
            ));
        }
        text.push_str(&format!(
            "[switch]\nacquirer_id = {}\n",
            q(&self.acquirer_id)
        ));
        if let Some(ms) = self.timeout_ms {
            text.push_str(&format!("timeout_ms = {ms}\n"));
        }
        if let Some(ms) = self.shutdown_grace_ms {
            text.push_str(&format!("shutdown_grace_ms = {ms}\n"));
        }
        if let Some(admin) = &self.admin {
            let address = admin
                .address
                .map_or("127.0.0.1:0".to_string(), |a| a.to_string());
            text.push_str(&format!(
                "[admin]\naddress = {}\ntokens_file = \"tokens.toml\"\naudit_log = \"audit.log\"\n",
                q(address)
            ));
            if let Some((cert, key)) = &admin.tls {
                text.push_str(&format!(
                    "tls = {{ cert = {}, key = {} }}\n",
                    qp(cert),
                    qp(key)
                ));
            }
        }
        for listener in &self.listeners {
            text.push_str(&listener.render(listener.address));
        }
        for destination in &self.destinations {
            text.push_str(&destination.render());
        }
        if self.routes_file.is_none() {
            text.extend(self.routes.iter().map(String::as_str));
        }
        for terminal in &self.terminals {
            text.push_str(&terminal.render());
        }
        text.push_str(&self.extra);
        text
    }

    /// Writes the configuration (and its routes file) and returns its path.
    pub fn write(&self) -> PathBuf {
        std::fs::create_dir_all(&self.dir).unwrap();
        if let Some(file) = &self.routes_file {
            std::fs::write(self.dir.join(file), self.routes.concat()).unwrap();
        }
        let path = self.path();
        std::fs::write(&path, self.toml()).unwrap();
        path
    }

    /// The configuration, written and loaded.
    pub fn load(&self) -> cardswitch::config::Config {
        cardswitch::config::Config::load(&self.write()).unwrap()
    }

    /// Writes the configuration, starts the switch in this process and
    /// waits (10 s at most) until every destination has a link up.
    pub async fn start_in_process(&self) -> cardswitch::server::Running {
        let running = cardswitch::server::start(self.load()).await.unwrap();
        let since = Instant::now();
        for d in &self.destinations {
            while running.switch().destination(&d.name).unwrap().links_up() == 0 {
                assert!(
                    since.elapsed() < Duration::from_secs(10),
                    "no link of {} up",
                    d.name
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        running
    }

    /// Gives every listener and the admin API without an address a free
    /// port, so that the same ports serve every [`Daemon::spawn`] of the
    /// result.
    pub fn with_free_ports(mut self) -> Daemon {
        for listener in &mut self.listeners {
            listener.address.get_or_insert_with(free_addr);
        }
        if let Some(admin) = &mut self.admin {
            admin.address.get_or_insert_with(free_addr);
        }
        self
    }

    /// Writes the configuration (free ports where none is set) and starts
    /// the real `cardswitch serve` on it, stdin closed, stderr read into
    /// [`Process::lines`]. Does not wait: see [`Process::wait_ready`],
    /// [`Process::wait_log`].
    pub fn spawn(&self) -> Process {
        let daemon = self.clone().with_free_ports();
        let config = daemon.write();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cardswitch"));
        command
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in &daemon.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            })
        };
        Process {
            child: Some(child),
            config,
            listeners: daemon
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.address.unwrap()))
                .collect(),
            admin: daemon.admin.as_ref().and_then(|a| a.address),
            lines,
            events: Mutex::new(rx),
            reader: Some(reader),
        }
    }

    /// [`Daemon::spawn`], then [`Process::wait_ready`].
    pub async fn start(&self) -> Process {
        let process = self.spawn();
        process.wait_ready().await;
        process
    }
}
