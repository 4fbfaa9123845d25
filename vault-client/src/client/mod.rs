//! [`Client`]: one async method per endpoint of the vaultd HTTP API, over the Unix socket or
//! over TLS to a list of nodes (`docs/tls.md`).
//!
//! HTTP/1.1 with keep-alive: idle connections wait in a small pool and are reused; a connection
//! the daemon closed while idle is noticed before use, and a request it never started on is
//! retried once on a fresh connection. Every call is bounded by one timeout that covers connect,
//! request and the whole answer body, except [`Client::backup`], whose body streams for as long
//! as it flows (the timeout then bounds the wait for each piece of it).
//!
//! Request bodies are serialized into zeroizing buffers of the exact size, and answer bodies are
//! collected into zeroizing buffers, so the client leaves no copy of a secret behind in its own
//! allocations (hyper's socket buffers are outside its reach).
//!
//! Over TLS, a request starts at the node that answered last and moves on to the next node (in
//! list order, each node at most once per request) when a connection to it cannot be made, or
//! when it answers `503 sealed`. A request that failed after it was sent is not repeated on
//! another node: it may have been carried out there.

mod api;
mod body;
mod builder;
mod exchange;
mod path;
mod pool;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;

use crate::error::Error;
use crate::tls::{Node, TlsOptions};
use body::RequestBody;

pub use api::{AuditQuery, ExpiryFilter};
pub(crate) use body::to_json;
pub use builder::{ClientBuilder, DEFAULT_SOCKET, Retry};
pub use exchange::with_request_ids;
pub(crate) use path::token_path;

/// The timeout of a call unless [`Client::with_timeout`] sets another.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// An async client for one vaultd socket, or for vaultd nodes over TLS.
///
/// Cheap to clone: clones share the connection pool. Creating a client does not connect; the
/// first call does. See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    timeout: Duration,
    /// How idempotent calls are retried.
    retry: Retry,
    /// Idle connections, each with the index of its node (always 0 on the Unix socket).
    idle: Mutex<Vec<(usize, SendRequest<RequestBody>)>>,
    /// The node that answered last: where the next request starts.
    preferred: AtomicUsize,
}

/// Where the daemon is.
#[derive(Clone)]
enum Transport {
    /// vaultd's TCP listener on each of these nodes, with mutual TLS.
    Tls { nodes: Vec<Node>, tls: TlsOptions },
    /// The local Unix socket.
    Unix(PathBuf),
}

impl Client {
    /// A client for the daemon listening on `socket`, with the default 30 s timeout and
    /// [`Retry::default`].
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self::with_transport(
            Transport::Unix(socket.into()),
            DEFAULT_TIMEOUT,
            Retry::default(),
        )
    }

    /// A client for vaultd's TCP listener on `nodes` (`host:port` or `[v6]:port`, in failover
    /// order), over TLS 1.3 with the client certificate of `tls`, with the default 30 s
    /// timeout. Fails on an empty list or an address that does not parse.
    pub fn tls<I, S>(nodes: I, tls: TlsOptions) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes = crate::tls::nodes(nodes, &tls)?;
        Ok(Self::with_transport(
            Transport::Tls { nodes, tls },
            DEFAULT_TIMEOUT,
            Retry::default(),
        ))
    }

    fn with_transport(transport: Transport, timeout: Duration, retry: Retry) -> Self {
        Self {
            inner: Arc::new(Inner {
                transport,
                timeout,
                retry,
                idle: Mutex::new(Vec::new()),
                preferred: AtomicUsize::new(0),
            }),
        }
    }

    /// The same client with another per-call timeout (connect, request and answer together;
    /// over TLS, for all the nodes a call tries). The clone gets a pool of its own.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self::with_transport(self.inner.transport.clone(), timeout, self.inner.retry)
    }

    /// The same client with another [`Retry`] of idempotent calls. The clone gets a pool of
    /// its own.
    #[must_use]
    pub fn with_retry(self, retry: Retry) -> Self {
        Self::with_transport(self.inner.transport.clone(), self.inner.timeout, retry)
    }

    /// The socket this client talks to (`None` over TLS).
    pub fn socket(&self) -> Option<&Path> {
        match &self.inner.transport {
            Transport::Tls { .. } => None,
            Transport::Unix(socket) => Some(socket),
        }
    }

    /// The node addresses this client talks to, in failover order (empty on the Unix socket).
    pub fn nodes(&self) -> Vec<&str> {
        match &self.inner.transport {
            Transport::Tls { nodes, .. } => nodes.iter().map(|n| n.addr.as_str()).collect(),
            Transport::Unix(_) => Vec::new(),
        }
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Client");
        match &self.inner.transport {
            Transport::Tls { .. } => d.field("nodes", &self.nodes()),
            Transport::Unix(socket) => d.field("socket", socket),
        };
        d.field("timeout", &self.inner.timeout)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}
