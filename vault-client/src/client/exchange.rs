//! One exchange: a request and its whole answer within the timeout, over the nodes in failover
//! order.

use std::io;
use std::sync::atomic::Ordering;

use http::{Method, Request};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::client::body::{RequestBody, build_request, read_body};
use crate::client::{Client, Transport};
use crate::error::{ApiCode, Error};

impl Client {
    /// One exchange, bounded by the timeout.
    pub(super) async fn call(
        &self,
        method: Method,
        path: String,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Answer, Error> {
        tokio::time::timeout(self.inner.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| Error::Timeout)?
    }

    /// One request and its whole answer. Over TLS, a `503 sealed` answer moves on to the next
    /// node, if one is left to try; when every node is sealed or unreachable, a sealed answer
    /// is returned rather than a connection error.
    async fn exchange(
        &self,
        method: Method,
        path: String,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Answer, Error> {
        // Positions in the failover order only grow: each node is tried at most once.
        let start = self.inner.preferred.load(Ordering::Relaxed);
        let mut from = 0;
        let mut sealed = None;
        loop {
            let (position, conn, response) =
                match self.send(start, from, &method, &path, &body).await {
                    Ok(sent) => sent,
                    // No node left that could be reached: a sealed node's answer says more.
                    Err(Attempt::Unsent(e)) => return sealed.ok_or(e),
                    Err(Attempt::Sent(e)) => return Err(e),
                };
            let node = self.node_at(start, position);
            let status = response.status().as_u16();
            let request_id = request_id_of(&response);
            if let Some(id) = &request_id {
                let _ = REQUEST_IDS.try_with(|ids| ids.borrow_mut().push(id.clone()));
            }
            let body = read_body(response.into_body()).await?;
            self.put_idle(node, conn);
            let answer = Answer {
                status,
                body,
                request_id,
            };
            if answer.try_next_node() && position + 1 < self.node_count() {
                from = position + 1;
                sealed = Some(answer);
                continue;
            }
            self.inner.preferred.store(node, Ordering::Relaxed);
            return Ok(answer);
        }
    }

    /// Sends a request and waits for the answer's headers, trying the nodes in the failover
    /// order that starts at node `start`, from position `from` on, while a node cannot take the
    /// request; returns the position of the node that did. The connection goes back to the pool
    /// (`put_idle`) once the caller has read the body.
    pub(super) async fn send(
        &self,
        start: usize,
        from: usize,
        method: &Method,
        path: &str,
        body: &Option<Zeroizing<Vec<u8>>>,
    ) -> Result<(usize, SendRequest<RequestBody>, http::Response<Incoming>), Attempt> {
        let mut unsent = None;
        for position in from..self.node_count() {
            let node = self.node_at(start, position);
            let request = build_request(method.clone(), path, body.clone(), self.host(node))
                .map_err(Attempt::Sent)?;
            match self.send_to(node, request).await {
                Ok((conn, response)) => return Ok((position, conn, response)),
                Err(Attempt::Unsent(e)) => unsent = Some(e),
                Err(Attempt::Sent(e)) => return Err(Attempt::Sent(e)),
            }
        }
        Err(Attempt::Unsent(unsent.unwrap_or_else(|| {
            Error::Protocol("no node left to try".into())
        })))
    }

    /// Sends `request` to `node`: on a pooled connection, else (or when the pooled one turns
    /// out closed) on a new one.
    async fn send_to(
        &self,
        node: usize,
        mut request: Request<RequestBody>,
    ) -> Result<(SendRequest<RequestBody>, http::Response<Incoming>), Attempt> {
        loop {
            let (mut conn, reused) = match self.take_idle(node).await {
                Some(conn) => (conn, true),
                None => (self.connect(node).await.map_err(Attempt::Unsent)?, false),
            };
            match conn.try_send_request(request).await {
                Ok(response) => return Ok((conn, response)),
                Err(mut err) => match err.take_message() {
                    // The request never left: a pooled connection went away. Try a fresh one.
                    Some(back) if reused => request = back,
                    Some(_) => return Err(Attempt::Unsent(from_hyper(err.into_error()))),
                    None => return Err(Attempt::Sent(from_hyper(err.into_error()))),
                },
            }
        }
    }

    fn node_count(&self) -> usize {
        match &self.inner.transport {
            Transport::Tls { nodes, .. } => nodes.len(),
            Transport::Unix(_) => 1,
        }
    }

    /// The node at `position` of the failover order that starts at node `start`.
    pub(super) fn node_at(&self, start: usize, position: usize) -> usize {
        (start + position) % self.node_count()
    }

    /// The `Host` header for `node`.
    fn host(&self, node: usize) -> &str {
        match &self.inner.transport {
            Transport::Tls { nodes, .. } => &nodes[node].addr,
            Transport::Unix(_) => "localhost",
        }
    }
}

/// How sending a request failed.
pub(super) enum Attempt {
    /// It may have reached a node (or cannot be sent at all): it must not be repeated elsewhere.
    Sent(Error),
    /// The request reached no node: another node may take it.
    Unsent(Error),
}

impl Attempt {
    pub(super) fn into_error(self) -> Error {
        match self {
            Self::Sent(e) | Self::Unsent(e) => e,
        }
    }
}

pub(super) fn from_hyper(err: hyper::Error) -> Error {
    if err.is_parse() || err.is_parse_status() || err.is_user() {
        Error::Protocol(err.to_string())
    } else {
        // Closed, canceled, incomplete answer, or an I/O error on the socket.
        Error::Connect(io::Error::new(io::ErrorKind::ConnectionAborted, err))
    }
}

/// The answer header that carries the request id (the `request` of the call's audit entry).
const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    /// The request ids of the answers received inside [`with_request_ids`].
    static REQUEST_IDS: std::cell::RefCell<Vec<String>>;
}

/// Runs `calls` (any calls of any [`Client`]) and returns, with their result, the request id of
/// every answer they received, in order: each is the `request` of that request's audit entry
/// and access log line. A call retried ([`Retry`](crate::Retry)) has one per try.
///
/// ```no_run
/// # async fn demo(client: vault_client::Client) -> Result<(), vault_client::Error> {
/// let (token, ids) = vault_client::with_request_ids(client.unseal_token("acme", "t1", None)).await;
/// let token = token?;
/// println!("read {} bytes, request {}", token.secret().len(), ids.join(","));
/// # Ok(()) }
/// ```
pub async fn with_request_ids<F: std::future::Future>(calls: F) -> (F::Output, Vec<String>) {
    REQUEST_IDS
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let output = calls.await;
            let ids = REQUEST_IDS.with(|ids| ids.take());
            (output, ids)
        })
        .await
}

/// The request id an answer carries.
pub(super) fn request_id_of<B>(response: &http::Response<B>) -> Option<String> {
    response
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A complete answer.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Zeroizing<Vec<u8>>,
    pub(super) request_id: Option<String>,
}

impl Answer {
    /// `503` with the error code `sealed`: another node may be unsealed, and nothing was done
    /// here, so the request is worth the next node.
    fn try_next_node(&self) -> bool {
        self.status == 503
            && Error::from_answer(self.status, &self.body, None).code() == Some(&ApiCode::Sealed)
    }

    /// The body of a 2xx answer, or the error the answer carries.
    pub(super) fn success(self) -> Result<Zeroizing<Vec<u8>>, Error> {
        if (200..300).contains(&self.status) {
            Ok(self.body)
        } else {
            Err(Error::from_answer(self.status, &self.body, self.request_id))
        }
    }

    pub(super) fn json<T: DeserializeOwned>(self, path: &str) -> Result<T, Error> {
        let body = self.success()?;
        // The serde message could quote the answer (personal data, even a secret): report where
        // it went wrong, not what was there.
        serde_json::from_slice(&body).map_err(|e| {
            Error::Protocol(format!(
                "answer to {path} is not the expected JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::wire::{JobStarted, TokenMeta, UnsealTokenResponse};

    #[test]
    fn protocol_error_does_not_quote_the_answer() {
        let answer = Answer {
            status: 200,
            body: Zeroizing::new(br#"{"secret":"hunter2","binding":7}"#.to_vec()),
            request_id: None,
        };
        let err = answer.json::<UnsealTokenResponse>("/v1/x").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(matches!(err, Error::Protocol(_)));
    }

    #[test]
    fn error_answer_becomes_api_error() {
        let answer = Answer {
            status: 404,
            body: Zeroizing::new(
                br#"{"error":{"code":"not_found","message":"no such token"}}"#.to_vec(),
            ),
            request_id: None,
        };
        let err = answer.json::<TokenMeta>("/v1/x").unwrap_err();
        assert_eq!(err.code(), Some(&crate::ApiCode::NotFound));
    }

    #[test]
    fn accepted_answer_is_success() {
        let answer = Answer {
            status: 202,
            body: Zeroizing::new(br#"{"id":"8f3a0c1d2e4b5a69"}"#.to_vec()),
            request_id: None,
        };
        let started = answer.json::<JobStarted>("/v1/keys/rewrap").unwrap();
        assert_eq!(started.id, "8f3a0c1d2e4b5a69");
    }
}
