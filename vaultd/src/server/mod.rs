//! The HTTP/1.1 API over a Unix socket and, optionally, over TCP with mutual TLS
//! (`docs/api.md`, `docs/tls.md`).
//!
//! [`run`] follows mini-redis: the caller binds the listeners and passes a shutdown future; a
//! semaphore per listener caps connections; accept errors back off; on shutdown the listeners
//! close and in-flight requests drain (bounded by [`DRAIN_TIMEOUT`]). Each connection is
//! established (SO_PEERCRED, or the TLS handshake) within the header timeout, and then has a
//! header-read timeout, which hyper also applies while a kept-alive connection waits for its
//! next request. There is no timeout on writing an answer: a streamed backup
//! (`GET /v1/sys/backup`) takes as long as it takes, and ends itself when the client stops
//! reading (`api/backup.rs`).
//!
//! - `listener`: the one accept and serve path, and the two kinds of listener.
//! - [`tls`]: the rustls server configuration and the caller's name in a client certificate.
//! - `message`: body limits, JSON in and out, error answers, streamed answers.
//! - `routes`: path and method → [`routes::Route`] and the capability it needs.
//! - `api/`: one file per operation group.
//! - `metrics`: request counters in Prometheus text format.
//! - `callers`: per-caller connection caps, refused-request budgets, quotas and brakes.
//! - `alarms`: raising an alarm (entry, metric, log line, optional seal).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::policy::Policy;
use crate::vault::Vault;

mod alarms;
mod api;
mod callers;
mod listener;
mod message;
mod metrics;
pub mod metrics_listener;
mod openapi;
mod routes;
pub mod tls;

pub use callers::{CallerLimits, Callers};
pub use metrics::Metrics;

/// Longest wait for in-flight requests at shutdown.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request handler shares.
pub struct App {
    /// The engine.
    pub vault: Vault,
    /// Who may do what.
    pub policy: Policy,
    /// Request counters (shared with the metered KMS provider).
    pub metrics: Arc<Metrics>,
    /// Per-caller connections and refused-request budgets.
    pub callers: Arc<Callers>,
    /// Long reads of the audit log (verify, export, filtered pages) run one at a time, off the
    /// async workers (`api/audit.rs`).
    pub long_reads: tokio::sync::Semaphore,
    /// Seal the vault when an alarm is raised (`docs/alarms.md`).
    pub seal_on_alarm: bool,
    /// The automatic rotation policy, reported with the key history.
    pub rotation: Option<crate::config::RotationPolicy>,
}

/// Limits of the connection layer, applied to each listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections served at once per listener; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time allowed to establish a connection (the TLS handshake), for request headers, and
    /// idle time between requests.
    pub header_timeout: Duration,
}

/// The bound sockets to serve.
pub struct Listeners {
    /// The Unix socket.
    pub unix: UnixListener,
    /// The TCP socket and its TLS configuration (`server::tls::server_config`), if configured.
    pub tcp: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
}

/// Serves `listeners` until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    listeners: Listeners,
    app: Arc<App>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (stop, stopped) = watch::channel(false);
    let summaries = summarize_refusals(&app, stopped.clone());
    let unix = listener::serve(
        listener::Unix(listeners.unix),
        app.clone(),
        limits,
        &graceful,
        stopped.clone(),
    );
    let tcp = async {
        if let Some((tcp, config)) = listeners.tcp {
            let tls = listener::Tls {
                listener: tcp,
                acceptor: tokio_rustls::TlsAcceptor::from(config),
            };
            listener::serve(tls, app.clone(), limits, &graceful, stopped).await;
        }
    };
    let signal = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    tokio::join!(unix, tcp, signal, summaries);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timed out; closing remaining connections"),
    }
}

/// Once per refusal window, and once more at shutdown, writes each caller's 429s of the window
/// as one `limits.rate_limited` audit entry (`server/callers.rs`); counts whose entry could not
/// be written are kept for the next window.
async fn summarize_refusals(app: &App, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(app.callers.window());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|stop| *stop) => true,
        };
        let mut unwritten = Vec::new();
        for summary in app.callers.take_summaries() {
            let mut ev = crate::audit::Event::caller(
                &summary.identity,
                "limits.rate_limited",
                crate::audit::request_id(),
            );
            ev.detail.insert("count".into(), summary.count.to_string());
            ev.detail.insert("from".into(), summary.from.to_string());
            ev.detail.insert("to".into(), summary.to.to_string());
            let recorded = app
                .vault
                .record(
                    &mut ev,
                    vault_client::audit::Outcome::Error,
                    Some("rate_limited"),
                )
                .await;
            match recorded {
                Ok(()) => tracing::warn!(
                    who = %summary.identity,
                    count = summary.count,
                    "requests answered 429 rate_limited over the last window: one audit entry for them"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "could not record a summary of 429s; kept for the next window");
                    unwritten.push(summary);
                }
            }
        }
        app.callers.restore(unwritten);
        if stopping {
            return;
        }
    }
}

/// Fuzzing (`crate::fuzz`): parses a request line as the server does; the method from one
/// byte.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fuzz_route(method: u8, path: &str, query: Option<&str>) {
    use ::http::Method;
    let methods = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
    ];
    let method = &methods[usize::from(method) % methods.len()];
    if let Ok(route) = routes::parse(method, path, query) {
        let _ = (route.name(), route.access(), route.token());
    }
}

/// Fuzzing (`crate::fuzz`): parses a request body as the endpoint `kind` picks does.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fuzz_body(kind: u8, body: &[u8]) {
    use vault_client::wire;
    match kind % 14 {
        0 => drop(message::parse_required::<wire::PutToken>(body)),
        1 => drop(message::parse::<wire::UnsealToken>(body, true)),
        2 => drop(message::parse_required::<wire::TransitSeal>(body)),
        3 => drop(message::parse_required::<wire::TransitUnseal>(body)),
        4 => drop(message::parse_required::<
            wire::Batch<wire::TransitUnsealItem>,
        >(body)),
        5 => drop(message::parse_required::<wire::Retire>(body)),
        6 => drop(message::parse_required::<wire::KeyConfig>(body)),
        7 => drop(message::parse_required::<wire::KmsRotate>(body)),
        8 => drop(message::parse::<wire::RewrapStart>(body, true)),
        9 => drop(message::parse_required::<wire::LeaseToken>(body)),
        10 => drop(message::parse_required::<wire::ReleaseLease>(body)),
        11 => drop(message::parse_required::<wire::RecoveryCreate>(body)),
        12 => drop(message::parse_required::<wire::RecoverShare>(body)),
        _ => drop(message::parse_required::<wire::AuditHashRequest>(body)),
    }
}
