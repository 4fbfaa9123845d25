//! The HTTP/1.1 API over a Unix socket (`docs/api.md`).
//!
//! [`run`] follows mini-redis: the caller binds the listener and passes a shutdown future; a
//! semaphore caps connections; accept errors back off; on shutdown the listener closes and
//! in-flight requests drain (bounded by [`DRAIN_TIMEOUT`]). Each connection has a header-read
//! timeout, which hyper also applies while a kept-alive connection waits for its next request.
//! There is no timeout on writing an answer: a streamed backup (`GET /v1/sys/backup`) takes as
//! long as it takes, and ends itself when the client stops reading (`api/backup.rs`).
//!
//! - `message`: body limits, JSON in and out, error answers, streamed answers.
//! - `routes`: path and method → [`routes::Route`] and the capability it needs.
//! - `api/`: one file per operation group.
//! - `metrics`: request counters in Prometheus text format.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use crate::policy::{Identity, Policy};
use crate::vault::Vault;

mod api;
mod message;
mod metrics;
mod routes;

pub use metrics::Metrics;

/// Longest wait for in-flight requests at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request handler shares.
pub struct App {
    /// The engine.
    pub vault: Vault,
    /// Who may do what.
    pub policy: Policy,
    /// Request counters.
    pub metrics: Metrics,
}

/// Limits of the connection layer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time allowed for request headers, and idle time between requests.
    pub header_timeout: Duration,
}

/// Serves `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    listener: UnixListener,
    app: Arc<App>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { backoff = Duration::from_millis(10); stream }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let identity = match stream.peer_cred() {
            Ok(cred) => Identity {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no peer credentials; closing connection");
                continue;
            }
        };
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(api::handle(&app, identity, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timed out; closing remaining connections"),
    }
}
