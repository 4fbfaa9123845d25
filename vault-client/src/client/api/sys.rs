//! `/v1/sys/…`: state, init, seal and unseal, break-glass recovery, metrics, backup.

use std::sync::atomic::Ordering;

use http::Method;
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::client::Client;
use crate::client::body::{read_body, to_json};
use crate::client::exchange::Attempt;
use crate::error::Error;
use crate::secret::Secret;
use crate::wire::{
    Health, InitResponse, RecoverProgress, RecoverShare, RecoveryCreate, RecoveryShares,
    StateResponse, Status,
};

impl Client {
    /// `GET /v1/sys/health`: the state. The daemon answers 200 unsealed, 503 sealed and
    /// 501 uninitialized; all three are `Ok` here.
    pub async fn health(&self) -> Result<Health, Error> {
        let answer = self
            .call(Method::GET, "/v1/sys/health".to_owned(), None)
            .await?;
        if matches!(answer.status, 200 | 501 | 503)
            && let Ok(health) = serde_json::from_slice::<Health>(&answer.body)
        {
            return Ok(health);
        }
        answer.json("/v1/sys/health")
    }

    /// `GET /v1/sys/status`: vault id, state, KMS, master key version, counts.
    pub async fn status(&self) -> Result<Status, Error> {
        self.get("/v1/sys/status".to_owned()).await
    }

    /// `POST /v1/sys/init`: creates the master key; the vault is unsealed afterwards.
    pub async fn init(&self) -> Result<InitResponse, Error> {
        self.post_empty("/v1/sys/init".to_owned()).await
    }

    /// `POST /v1/sys/unseal`: unwraps the master key through the KMS.
    pub async fn unseal(&self) -> Result<StateResponse, Error> {
        self.post_empty("/v1/sys/unseal".to_owned()).await
    }

    /// `POST /v1/sys/seal`: wipes every key from the daemon's memory.
    pub async fn seal(&self) -> Result<StateResponse, Error> {
        self.post_empty("/v1/sys/seal".to_owned()).await
    }

    /// `POST /v1/sys/recovery`: a new recovery key, split into one share per age recipient
    /// (`threshold` of them open the vault without the KMS). The answer holds each share
    /// encrypted to its holder; earlier shares stop counting (`docs/break-glass.md`).
    pub async fn create_recovery(
        &self,
        threshold: u8,
        recipients: &[String],
    ) -> Result<RecoveryShares, Error> {
        let body = to_json(&RecoveryCreate {
            threshold,
            recipients: recipients.to_vec(),
        })?;
        self.request(Method::POST, "/v1/sys/recovery".to_owned(), Some(body))
            .await
    }

    /// `POST /v1/sys/recover`: hands in one decrypted recovery share while the vault is sealed;
    /// the one that reaches the threshold unseals it. A refused share is
    /// [`ApiCode::ShareRefused`](crate::ApiCode::ShareRefused).
    pub async fn recover(&self, share: Secret) -> Result<RecoverProgress, Error> {
        let body = to_json(&RecoverShare { share: Some(share) })?;
        self.request(Method::POST, "/v1/sys/recover".to_owned(), Some(body))
            .await
    }

    /// `GET /v1/sys/metrics`: Prometheus text format.
    pub async fn metrics(&self) -> Result<String, Error> {
        let path = "/v1/sys/metrics";
        let answer = self.call(Method::GET, path.to_owned(), None).await?;
        let body = answer.success()?;
        String::from_utf8(body.to_vec())
            .map_err(|_| Error::Protocol(format!("answer to {path} is not UTF-8")))
    }

    /// `GET /v1/sys/backup`: a consistent snapshot of the whole vault (ciphertext only; works
    /// while sealed), written to `out` as it arrives; returns the number of bytes written.
    /// Needs `sys:backup`.
    ///
    /// The client's timeout bounds the connection and the answer's headers, and then each wait
    /// for the next piece of the body, not the whole transfer: a large vault takes minutes. A
    /// backup the daemon could not complete breaks off ([`Error::Protocol`]) and what `out`
    /// received fails the file's checksum; check the file before keeping it (`vault-cli backup
    /// create` does). `out` is flushed, not synced.
    pub async fn backup(&self, mut out: impl AsyncWrite + Unpin) -> Result<u64, Error> {
        let path = "/v1/sys/backup";
        let timeout = self.inner.timeout;
        let start = self.inner.preferred.load(Ordering::Relaxed);
        let (position, conn, response) =
            tokio::time::timeout(timeout, self.send(start, 0, &Method::GET, path, &None))
                .await
                .map_err(|_| Error::Timeout)?
                .map_err(Attempt::into_error)?;
        let node = self.node_at(start, position);
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let request_id = crate::client::exchange::request_id_of(&response);
            let body = tokio::time::timeout(timeout, read_body(response.into_body()))
                .await
                .map_err(|_| Error::Timeout)??;
            self.put_idle(node, conn);
            return Err(Error::from_answer(status, &body, request_id));
        }
        let content_type = response.headers().get(CONTENT_TYPE);
        if content_type.is_none_or(|t| t.as_bytes() != b"application/octet-stream") {
            return Err(Error::Protocol(format!(
                "answer to {path} is not application/octet-stream"
            )));
        }
        let mut body = response.into_body();
        let mut written = 0u64;
        loop {
            let frame = match tokio::time::timeout(timeout, body.frame()).await {
                Err(_) => return Err(Error::Timeout),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(Error::Protocol(format!(
                        "the backup broke off after {written} bytes ({e}); the daemon's log says why"
                    )));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                out.write_all(&data).await.map_err(Error::Output)?;
                written += data.len() as u64;
            }
        }
        out.flush().await.map_err(Error::Output)?;
        self.put_idle(node, conn);
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    /// A server that answers one backup request per connection with `answer`, then closes.
    async fn backup_server(name: &str, answer: &'static [u8]) -> (PathBuf, PathBuf) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let dir = std::env::temp_dir().join(format!("vault-client-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                stream.write_all(answer).await.unwrap();
                // Dropping the stream closes it: a chunked body without its last chunk is cut.
            }
        });
        (dir, sock)
    }

    #[tokio::test]
    async fn backup_streams_the_body_and_reports_a_cut() {
        let (dir, sock) = backup_server(
            "backup",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
              transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await;
        let client = Client::new(&sock).with_timeout(Duration::from_secs(5));
        let mut out = Vec::new();
        assert_eq!(client.backup(&mut out).await.unwrap(), 5);
        assert_eq!(out, b"abcde");
        let _ = std::fs::remove_dir_all(&dir);

        let (dir, sock) = backup_server(
            "backup-cut",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
              transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        )
        .await;
        let client = Client::new(&sock).with_timeout(Duration::from_secs(5));
        let mut out = Vec::new();
        let err = client.backup(&mut out).await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
        assert!(err.to_string().contains("broke off after 3 bytes"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);

        let (dir, sock) = backup_server(
            "backup-denied",
            b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 51\r\n\r\n\
              {\"error\":{\"code\":\"denied\",\"message\":\"not granted\"}}",
        )
        .await;
        let client = Client::new(&sock).with_timeout(Duration::from_secs(5));
        let err = client.backup(Vec::new()).await.unwrap_err();
        assert_eq!(err.code(), Some(&crate::ApiCode::Denied));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
