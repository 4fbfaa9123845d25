//! One accept and serve path for every listener (`docs/tls.md`): the Unix socket and the TCP
//! listener with mutual TLS differ only in how a connection is accepted and how the caller is
//! identified ([`Listener`]); the permit, the handshake deadline, hyper's limits and timeouts,
//! the refusal log line and the graceful drain are [`serve`], written once.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{App, Limits, api, tls};
use crate::policy::Identity;

/// Largest buffer hyper keeps for a connection's request head.
const MAX_BUF: usize = 64 * 1024;

/// A kind of listening socket.
pub(super) trait Listener: Send + 'static {
    /// For logs and metrics: `unix` or `tcp`.
    const NAME: &'static str;
    /// A connection accepted by the kernel, not yet established (no handshake, no identity).
    type Accepted: Send + 'static;
    /// The established byte stream that HTTP runs on.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Who connected, for log lines (a socket address, or `local`).
    type Peer: fmt::Display + Send + 'static;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Accepted, Self::Peer)>> + Send;

    /// Establishes an accepted connection: its stream and the caller's identity, or why it is
    /// refused (logged by [`serve`]; never key material). Runs in the connection's own task,
    /// under the handshake deadline.
    fn establish(
        accepted: Self::Accepted,
    ) -> impl Future<Output = Result<(Self::Stream, Identity), String>> + Send;
}

/// The Unix socket: callers are identified by the kernel (SO_PEERCRED).
pub(super) struct Unix(pub(super) UnixListener);

/// A caller on the Unix socket, before its credentials are read.
pub(super) struct Local;

impl fmt::Display for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("local")
    }
}

impl Listener for Unix {
    const NAME: &'static str = "unix";
    type Accepted = UnixStream;
    type Stream = UnixStream;
    type Peer = Local;

    async fn accept(&self) -> io::Result<(UnixStream, Local)> {
        let (stream, _) = self.0.accept().await?;
        Ok((stream, Local))
    }

    async fn establish(stream: UnixStream) -> Result<(UnixStream, Identity), String> {
        let cred = stream
            .peer_cred()
            .map_err(|e| format!("no peer credentials: {e}"))?;
        Ok((stream, Identity::local(cred.uid(), cred.gid(), cred.pid())))
    }
}

/// The TCP listener: TLS 1.3 with a required client certificate; callers are named by it.
pub(super) struct Tls {
    pub(super) listener: TcpListener,
    pub(super) acceptor: TlsAcceptor,
}

impl Listener for Tls {
    const NAME: &'static str = "tcp";
    type Accepted = (TcpStream, TlsAcceptor);
    type Stream = TlsStream<TcpStream>;
    type Peer = SocketAddr;

    async fn accept(&self) -> io::Result<((TcpStream, TlsAcceptor), SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        // Small request/answer exchanges: do not wait to fill segments.
        let _ = stream.set_nodelay(true);
        Ok(((stream, self.acceptor.clone()), peer))
    }

    async fn establish(
        (stream, acceptor): (TcpStream, TlsAcceptor),
    ) -> Result<(TlsStream<TcpStream>, Identity), String> {
        // rustls verifies the certificate (chain to client_ca, validity period, client-auth
        // usage) inside the handshake; its error says what failed.
        let stream = acceptor
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
            .ok_or("TLS handshake completed without a client certificate")?;
        let subject = tls::subject_name(leaf)?;
        Ok((stream, Identity::Certificate(subject)))
    }
}

/// Serves `listener` until `stop` turns true: one permit per connection (at most
/// `max_connections` at once for this listener), accept errors back off, the connection is
/// established within `header_timeout` in its own task, then served by hyper with the header
/// timeout and buffer limit; every connection is watched by `graceful` from accept on. The
/// listener is closed when this returns.
pub(super) async fn serve<L: Listener>(
    listener: L,
    app: Arc<App>,
    limits: Limits,
    graceful: &GracefulShutdown,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (accepted, peer) = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => { backoff = Duration::from_millis(10); accepted }
                Err(e) => {
                    tracing::warn!(listener = L::NAME, error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        // Taken before the handshake: a drain waits for it, and a connection established after
        // the drain began is closed before its first request.
        let watcher = graceful.watcher();
        let app = app.clone();
        tokio::spawn(async move {
            let established =
                match tokio::time::timeout(limits.header_timeout, L::establish(accepted)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!(
                        "handshake timed out after {} s",
                        limits.header_timeout.as_secs()
                    )),
                };
            let (stream, identity) = match established {
                Ok(established) => established,
                Err(reason) => {
                    tracing::warn!(listener = L::NAME, %peer, error = %reason, "connection refused");
                    app.metrics.record_refused(L::NAME);
                    drop(permit);
                    return;
                }
            };
            // Counted against its caller for as long as it lives.
            let _counted = match app.callers.connect(&identity) {
                Ok(counted) => counted,
                Err(held) => {
                    tracing::warn!(
                        listener = L::NAME,
                        %peer,
                        who = %identity,
                        held,
                        "connection refused: the caller holds max_connections_per_caller already"
                    );
                    app.metrics.record_refused(L::NAME);
                    drop(permit);
                    return;
                }
            };
            tracing::debug!(listener = L::NAME, %peer, who = %identity, "connection established");
            let service = service_fn(move |req| {
                let app = app.clone();
                let identity = identity.clone();
                async move { Ok::<_, std::convert::Infallible>(api::handle(&app, &identity, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_BUF)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(listener = L::NAME, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}
