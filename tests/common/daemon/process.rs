//! A spawned `cardswitch serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `cardswitch serve`; killed (SIGKILL) when dropped unless
/// stopped.
pub struct Process {
    pub(super) child: Option<Child>,
    pub(super) config: PathBuf,
    pub(super) listeners: Vec<(String, SocketAddr)>,
    pub(super) admin: Option<SocketAddr>,
    pub(super) lines: Arc<Mutex<Vec<String>>>,
    pub(super) events: Mutex<Receiver<String>>,
    pub(super) reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    /// The address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
            .1
    }

    /// The address of the admin API.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("no [admin] configured")
    }

    /// The config file it runs on.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (as `kill` takes it: `-HUP`, `-TERM`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// Ready: with the admin API, `GET /health/ready` answers 200 (15 s at
    /// most); without it, the log says `link up` (10 s at most).
    pub async fn wait_ready(&self) {
        let Some(admin) = self.admin else {
            self.wait_log("link up");
            return;
        };
        let since = Instant::now();
        while !(std::net::TcpStream::connect(admin).is_ok()
            && crate::common::http::request(admin, "GET", "/health/ready", None).0 == 200)
        {
            assert!(
                since.elapsed() < Duration::from_secs(15),
                "daemon not ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next log line not yet taken, waiting up to `timeout`; `None`
    /// when none comes (or the daemon has exited and all were taken).
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.events.lock().unwrap().recv_timeout(timeout).ok()
    }

    /// Takes log lines until one contains `needle` (10 s at most) and
    /// returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!("no log line containing {needle:?}"),
            }
        }
    }

    /// The log lines not yet taken, without waiting.
    pub fn rest(&self) -> Vec<String> {
        self.events.lock().unwrap().try_iter().collect()
    }

    /// Every log line so far (taken or not).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// SIGTERM, then waits for the exit and the end of its log.
    pub async fn stop(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.wait().await
    }

    /// Waits for the exit (after a signal sent by [`Process::signal`]) and
    /// the end of its log.
    pub async fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }

    /// SIGKILL, and waits for the exit.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
