//! The audit log: one JSON line per operator action (and per refused
//! attempt at one): who, what, when, from where, and the result. Each line
//! is synced before the answer goes out, so an action the API confirmed is
//! on record. A reload reopens the file, so logrotate can move it away and
//! then reload the daemon.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// One audited action.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry<'a> {
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The token's name, or `-` when none was valid.
    pub who: &'a str,
    /// The token's role, or `-`.
    pub role: &'a str,
    /// The client's address.
    pub remote: String,
    /// Method and path.
    pub action: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// `ok`, `denied`, or what went wrong.
    pub result: String,
}

/// The append-only audit file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the audit file for appending.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(open_append(path)?),
        })
    }

    /// Reopens the file by its name (after a log rotation moved it).
    pub fn reopen(&self) -> std::io::Result<()> {
        let file = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
        Ok(())
    }

    /// Appends one entry and syncs it.
    pub fn write(&self, entry: &AuditEntry<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line)?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_json_lines_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for status in [200, 403] {
            log.write(&AuditEntry {
                time: "2026-11-26T05:00:00Z".into(),
                who: "otto",
                role: "operator",
                remote: "127.0.0.1:1".into(),
                action: "POST /v1/reload".into(),
                status,
                result: "ok".into(),
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["status"], 403);
        assert_eq!(lines[0]["who"], "otto");
        std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
        log.reopen().unwrap();
        log.write(&AuditEntry {
            time: "2026-11-26T05:00:01Z".into(),
            who: "otto",
            role: "operator",
            remote: "127.0.0.1:1".into(),
            action: "POST /v1/reload".into(),
            status: 200,
            result: "ok".into(),
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
