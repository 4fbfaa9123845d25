//! The metrics listener (`[metrics] listen`): plain HTTP on a loopback address, `GET /metrics`
//! and nothing else. It holds nothing secret and needs no identity, so scrapes are counted in
//! `vaultd_metrics_scrapes_total`, not written as audit entries (an API call to
//! `/v1/sys/metrics` on the socket still is one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::App;
use super::message::{self, Body};

/// Scrapes served at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 4;
/// Time to send the request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` (a loopback address: the config checks it).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` on `listener` until the task is aborted.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        answer(&app, req.method(), req.uri().path()).await,
                    )
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
}

async fn answer(app: &App, method: &Method, path: &str) -> http::Response<Body> {
    match (method, path) {
        (&Method::GET, "/metrics") => {
            app.metrics.record_scrape();
            message::text(
                StatusCode::OK,
                super::api::render_metrics(app).await,
                super::metrics::CONTENT_TYPE,
            )
        }
        (_, "/metrics") => message::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET only\n".into(),
            "text/plain; charset=utf-8",
        ),
        _ => message::text(
            StatusCode::NOT_FOUND,
            "this listener serves GET /metrics only\n".into(),
            "text/plain; charset=utf-8",
        ),
    }
}
