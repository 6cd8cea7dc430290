//! The admin API: metrics, health, links, reload and look-ups over HTTP/1.1
//! (optionally TLS), for operators and their tools.
//!
//! | method and path | role | what |
//! |---|---|---|
//! | `GET /health/live` | none | the process answers |
//! | `GET /health/ready` | none | journal writable, config loaded, every destination without a fallback has a link up (503 otherwise) |
//! | `GET /metrics` | viewer | Prometheus text format 0.0.4 |
//! | `GET /v1/destinations` | viewer | destinations, their links and counters |
//! | `GET /v1/links` | viewer | every link: up, in rotation |
//! | `POST /v1/links/{destination}/{index}/disable` | operator | take a link out of rotation |
//! | `POST /v1/links/{destination}/{index}/enable` | operator | put it back |
//! | `POST /v1/reload` | operator | terminals, routes, risk rules, certificates, tokens |
//! | `POST /v1/cutover` | operator | close the business date now: the next one starts at once |
//! | `GET /v1/transactions?rrn=R` or `?terminal=T&stan=S` | viewer | a transaction's life, masked PAN |
//! | `GET /v1/saf` | viewer | reversals owed |
//!
//! Every request but the health checks needs `Authorization: Bearer
//! TOKEN` ([`auth`]; the scheme in any case): none or an unknown token gets
//! 401, a viewer token on an operator action 403. Every `POST` by a valid
//! token, allowed or not, is written to the audit log ([`audit`]) by its
//! writer thread; requests refused for want of a valid token are counted
//! (`admin_auth_failures_total`) and summarised in at most one audit line
//! per interval, so a client without a token cannot make the daemon write.
//! No answer carries key material or a clear PAN.
//!
//! Connections are bounded in total and per client address without ever
//! waiting in the accept loop ([`conns`]): idle or half-sent connections are
//! pushed out for new ones and closed after [`HEADER_TIMEOUT`], so they
//! cannot keep `/health/live` or anything else from being answered.

pub mod audit;
pub mod auth;
pub mod conns;
mod source;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::journal::cutover::CutoverError;
use crate::journal::view::TxnView;
use crate::security::tls::TlsAcceptor;
use crate::switch::Switch;
use crate::terminal::listener::ListenerStats;
use audit::{AuditEntry, AuditLog};
use auth::{Principal, Role};
use conns::{Admission, Busy, MAX_CONNECTIONS, MAX_PER_CLIENT};

/// What the API acts on in the running daemon. The daemon's control
/// (`crate::control::Control`) implements it, so the API never names the
/// server or the config loader.
pub trait Operations: Send + Sync + std::fmt::Debug {
    /// The switch: metrics, journal, destinations.
    fn switch(&self) -> &Arc<Switch>;
    /// The valid tokens.
    fn tokens(&self) -> Arc<auth::Tokens>;
    /// Every listener's name and counters.
    fn listener_stats(&self) -> Vec<(&str, &Arc<ListenerStats>)>;
    /// Why the daemon is not ready to take traffic (empty when it is).
    fn readiness(&self) -> Vec<String>;
    /// Closes the current business date: the date closed and the one started.
    fn cutover(&self) -> Result<(String, String), CutoverError>;
    /// Reloads what can be reloaded; what failed keeps its old version.
    fn reload(&self) -> Result<(), ReloadProblems>;
}

/// What a reload could not take: one problem per line, each part named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ReloadProblems(pub Vec<String>);

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The token file could not be used.
    #[error(transparent)]
    Tokens(#[from] auth::TokenError),
    /// The audit log could not be opened.
    #[error("audit log {}: {source}", .path.display())]
    AuditLog {
        /// The audit log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why one admin API connection ended before the client or the daemon
/// closed it (logged at debug level).
#[derive(Debug, thiserror::Error)]
enum ConnectionEnd {
    /// HTTP on the connection failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
    /// The TLS handshake did not finish in time.
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// A newer connection took the slot of this idle one.
    #[error("pushed out for a newer connection while idle")]
    PushedOut,
}

/// `[admin]` of the config file, validated.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where the API listens (default 127.0.0.1:9180).
    pub address: SocketAddr,
    /// The token file (hashes, names, roles).
    pub tokens_file: PathBuf,
    /// The audit log.
    pub audit_log: PathBuf,
    /// TLS for the API, if set.
    pub tls: Option<Arc<TlsAcceptor>>,
}

/// Characters of a request path written to the audit log.
const MAX_AUDITED_PATH: usize = 128;

/// Time a client has to send its request head (or to finish its TLS
/// handshake), on a new connection and between requests of a kept-alive
/// one.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

type Answer = Response<Full<Bytes>>;

/// Serves the API on `socket` until `shutdown`.
pub async fn run(
    socket: TcpListener,
    config: AdminConfig,
    control: Arc<dyn Operations>,
    audit: Arc<AuditLog>,
    shutdown: CancellationToken,
) {
    let admission = Admission::new(MAX_CONNECTIONS, MAX_PER_CLIENT);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Never waits: a full house pushes out an idle connection or
        // closes this one.
        let Some(slot) = admission.admit(peer.ip()) else {
            debug!(%peer, "admin API: every connection busy, closing a new one");
            drop(stream);
            continue;
        };
        let (control, audit, tls) = (Arc::clone(&control), Arc::clone(&audit), config.tls.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let busy = Arc::clone(&slot.busy);
            let service = service_fn(move |request| {
                let (control, audit) = (Arc::clone(&control), Arc::clone(&audit));
                let busy = Busy::new(&busy);
                async move {
                    let answer = handle(&control, &audit, peer, request).await;
                    drop(busy);
                    Ok::<_, Infallible>(answer)
                }
            });
            let closed = slot.close.clone();
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let served = async {
                match tls {
                    None => http
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                        .map_err(ConnectionEnd::from),
                    Some(tls) => {
                        let accepted =
                            tokio::time::timeout(HEADER_TIMEOUT, tls.acceptor().accept(stream))
                                .await;
                        match accepted {
                            Ok(Ok(stream)) => http
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                                .map_err(ConnectionEnd::from),
                            Ok(Err(e)) => Err(ConnectionEnd::Handshake(e)),
                            Err(_) => Err(ConnectionEnd::HandshakeTimeout),
                        }
                    }
                }
            };
            let served = tokio::select! {
                r = served => r,
                _ = shutdown.cancelled() => Ok(()),
                _ = closed.cancelled() => Err(ConnectionEnd::PushedOut),
            };
            if let Err(error) = served {
                debug!(%peer, %error, "admin API connection ended");
            }
            drop(slot);
        });
    }
    // What the last interval's refused requests add up to is on record.
    audit.flush().await;
    info!("admin API stopped");
}

fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn json_answer(status: StatusCode, value: &serde_json::Value) -> Answer {
    answer(status, "application/json", value.to_string())
}

fn error(status: StatusCode, message: &str) -> Answer {
    json_answer(status, &json!({ "error": message }))
}

/// What a route needs: nothing, a viewer, or an operator.
fn required_role(method: &Method, path: &str) -> Option<Role> {
    match (method, path) {
        (&Method::GET, "/health/live" | "/health/ready") => None,
        (&Method::POST, _) => Some(Role::Operator),
        _ => Some(Role::Viewer),
    }
}

async fn handle(
    control: &Arc<dyn Operations>,
    audit: &AuditLog,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Answer {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let Some(needed) = required_role(&method, &path) else {
        return route(control, &method, &path, &query).await;
    };
    let header = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    let checked = control.tokens().check(header).cloned();
    let principal: Principal = match checked {
        Ok(principal) => principal,
        Err(reason) => {
            // Counted and summarised, never a line (or a log event) each:
            // anyone can send these as fast as the network allows.
            control.switch().metrics().auth_failed(reason.as_str());
            audit.refused(reason, peer.ip());
            let mut r = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            if let Ok(v) = "Bearer".parse() {
                r.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
            return r;
        }
    };
    let (response, note) = match needed {
        needed if principal.role < needed => (
            error(
                StatusCode::FORBIDDEN,
                &format!("this needs the {} role", needed.as_str()),
            ),
            None,
        ),
        _ if method == Method::POST && path == "/v1/reload" => reload(control.as_ref()),
        _ => (route(control, &method, &path, &query).await, None),
    };
    if method == Method::POST {
        let status = response.status();
        let result = match status {
            StatusCode::FORBIDDEN => "denied".to_string(),
            _ if note.is_some() => note.unwrap_or_default(),
            s if s.is_success() => "ok".to_string(),
            s => format!("failed ({s})"),
        };
        // Anyone may try a path: only its first bytes are kept.
        let shown: String = path.chars().take(MAX_AUDITED_PATH).collect();
        let entry = AuditEntry {
            time: crate::clock::DateTime::now().rfc3339(),
            who: principal.name.as_str(),
            role: principal.role.as_str(),
            remote: peer.to_string(),
            action: format!("{method} {shown}"),
            status: status.as_u16(),
            result,
        };
        info!(who = entry.who, action = %entry.action, status = entry.status, "admin action");
        if let Err(e) = audit.write(&entry).await {
            // An action that cannot be audited is not confirmed.
            warn!(error = %e, "audit log write failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the action ran but could not be written to the audit log",
            );
        }
    }
    response
}

/// `POST /v1/reload`: it runs either way; what failed keeps its old
/// version and is listed (`complete: false`), the rest is in force. The
/// second value is the audit log's result.
fn reload(control: &dyn Operations) -> (Answer, Option<String>) {
    let problems: Vec<String> = match control.reload() {
        Ok(()) => Vec::new(),
        Err(ReloadProblems(problems)) => problems,
    };
    let note = (!problems.is_empty())
        .then(|| format!("partial: {} part(s) kept their old version", problems.len()));
    let answer = json_answer(
        StatusCode::OK,
        &json!({"reloaded": true, "complete": problems.is_empty(), "problems": problems}),
    );
    (answer, note)
}

async fn route(control: &Arc<dyn Operations>, method: &Method, path: &str, query: &str) -> Answer {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["health", "live"]) => json_answer(StatusCode::OK, &json!({"live": true})),
        (&Method::GET, ["health", "ready"]) => {
            let problems = control.readiness();
            let status = if problems.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_answer(
                status,
                &json!({"ready": problems.is_empty(), "problems": problems}),
            )
        }
        (&Method::GET, ["metrics"]) => match source::render(control) {
            Ok(text) => answer(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ),
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed"),
        },
        (&Method::GET, ["v1", "destinations"]) => {
            json_answer(StatusCode::OK, &source::destinations(control.as_ref()))
        }
        (&Method::GET, ["v1", "links"]) => {
            json_answer(StatusCode::OK, &source::links(control.as_ref()))
        }
        (&Method::POST, ["v1", "links", destination, index, action]) => {
            let enabled = match *action {
                "enable" => true,
                "disable" => false,
                _ => return error(StatusCode::NOT_FOUND, "no such action"),
            };
            let found = control
                .switch()
                .destination(destination)
                .zip(index.parse::<usize>().ok())
                .and_then(|(d, i)| d.set_enabled(i, enabled));
            match found {
                Some(()) => json_answer(
                    StatusCode::OK,
                    &json!({"link": format!("{destination}/{index}"), "enabled": enabled}),
                ),
                None => error(StatusCode::NOT_FOUND, "no such link"),
            }
        }
        (&Method::POST, ["v1", "cutover"]) => match control.cutover() {
            Ok((closed, started)) => json_answer(
                StatusCode::OK,
                &json!({"closed": closed, "business_date": started}),
            ),
            Err(e @ CutoverError::AlreadyEarly { .. }) => {
                error(StatusCode::CONFLICT, &e.to_string())
            }
            Err(e) => {
                warn!(error = %e, "cutover failed");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the cutover could not be recorded",
                )
            }
        },
        (&Method::GET, ["v1", "transactions"]) => transactions(control.as_ref(), query).await,
        (&Method::GET, ["v1", "saf"]) => {
            let index = control.switch().journal().index();
            match index.saf_all() {
                Ok(states) => {
                    let views: Vec<TxnView> = states.iter().map(TxnView::from).collect();
                    json_answer(
                        StatusCode::OK,
                        &json!({"depth": views.len(), "queue": views}),
                    )
                }
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        (_, ["health", ..] | ["metrics"] | ["v1", ..]) if method != Method::GET => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// `?rrn=R` or `?terminal=T&stan=S`.
async fn transactions(control: &dyn Operations, query: &str) -> Answer {
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let journal = control.switch().journal();
    journal.index_current().await;
    let found = match (param("rrn"), param("terminal"), param("stan")) {
        (Some(rrn), _, _) if valid_key(&rrn, 12) => journal.index().by_rrn(&rrn),
        (None, Some(terminal), Some(stan))
            if valid_key(&terminal, 8)
                && valid_key(&stan, 6)
                && stan.bytes().all(|b| b.is_ascii_digit()) =>
        {
            journal.index().by_request(&terminal, &stan, None)
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give ?rrn=R (up to 12 letters and digits) or ?terminal=T&stan=S (up to 8 letters and digits, and up to 6 digits)",
            );
        }
    };
    match found {
        Ok(states) => {
            let views: Vec<TxnView> = states.iter().map(TxnView::from).collect();
            json_answer(StatusCode::OK, &json!({"transactions": views}))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Look-up keys are short and plain (at most `max` letters and digits, the
/// length of their ISO 8583 field): anything else is refused rather than
/// decoded or cut.
fn valid_key(value: &str, max: usize) -> bool {
    (1..=max).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric())
}
