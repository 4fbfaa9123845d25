//! Connections to the daemon: the pool of idle ones, and new ones over the Unix socket or TLS.

use std::sync::PoisonError;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use crate::client::body::RequestBody;
use crate::client::exchange::from_hyper;
use crate::client::{Client, Transport};
use crate::error::Error;

/// Idle connections kept for reuse; more are closed after their answer.
const MAX_IDLE: usize = 8;

impl Client {
    /// A pooled connection to `node` that is open and ready for a request, if any.
    pub(super) async fn take_idle(&self, node: usize) -> Option<SendRequest<RequestBody>> {
        loop {
            let mut conn = {
                let mut idle = self
                    .inner
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let at = idle.iter().rposition(|(n, _)| *n == node)?;
                idle.swap_remove(at).1
            };
            if !conn.is_closed() && conn.ready().await.is_ok() {
                return Some(conn);
            }
        }
    }

    pub(super) fn put_idle(&self, node: usize, conn: SendRequest<RequestBody>) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((node, conn));
        }
    }

    pub(super) async fn connect(&self, node: usize) -> Result<SendRequest<RequestBody>, Error> {
        match &self.inner.transport {
            Transport::Tls { nodes, tls } => {
                let stream = nodes[node].connect(tls).await.map_err(Error::Connect)?;
                handshake(stream).await
            }
            Transport::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(Error::Connect)?;
                handshake(stream).await
            }
        }
    }
}

/// HTTP/1.1 on an established stream.
async fn handshake<S>(stream: S) -> Result<SendRequest<RequestBody>, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(from_hyper)?;
    // The connection task ends when the daemon closes it or the last sender is dropped;
    // its error, if any, reaches the caller through the pending request.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A tiny HTTP server on a socket in a temp dir: answers every request on the same connection.
    #[tokio::test]
    async fn reuses_connections_and_parses_health() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let dir = std::env::temp_dir().join(format!("vault-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let body = br#"{"state":"sealed"}"#;
                            let head = format!(
                                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            stream.write_all(head.as_bytes()).await.unwrap();
                            stream.write_all(body).await.unwrap();
                        }
                    }
                });
            }
        });

        let client = Client::new(&sock).with_timeout(Duration::from_secs(5));
        for _ in 0..3 {
            let health = client.health().await.unwrap();
            assert_eq!(health.state, crate::wire::VaultState::Sealed);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        let err = client.status().await.unwrap_err();
        assert!(matches!(err, Error::Api { status: 503, .. }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn missing_socket_is_connect_error() {
        let client = Client::new("/nonexistent/vaultd.sock");
        assert!(matches!(client.health().await, Err(Error::Connect(_))));
    }
}
