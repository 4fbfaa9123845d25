//! [`ClientBuilder`] and [`Client::from_env`]: where the daemon is, the per-call timeout, and
//! how idempotent calls are retried ([`Retry`]).

use std::path::PathBuf;
use std::time::Duration;

use super::{Client, DEFAULT_TIMEOUT, Transport};
use crate::error::Error;
use crate::tls::TlsOptions;

/// The socket [`Client::from_env`] uses when `VAULT_SOCKET` is not set: the one
/// `packaging/systemd` gives the daemon.
pub const DEFAULT_SOCKET: &str = "/run/vaultd/vaultd.sock";

/// How a call that changes nothing (a `GET`, a token or transit unseal) is repeated when the
/// daemon answers `sealed`, `unavailable` or `kms_throttled`, or cannot be reached: up to
/// `attempts` tries in all, waiting a random time up to `backoff`, doubled after each try up to
/// `max_backoff`, in between. A call that changes state is never repeated by the client: it
/// may have been carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, at least 1 (1: no retry).
    pub attempts: u32,
    /// The wait before the second try (at most; the wait is random below it).
    pub backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
}

impl Retry {
    /// No retries: every call is tried once.
    pub const NONE: Self = Self {
        attempts: 1,
        backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    /// The most to wait before try `n + 1` (after `n` failed ones, `n` ≥ 1).
    pub(crate) fn ceiling(&self, n: u32) -> Duration {
        let doubled = self
            .backoff
            .saturating_mul(1 << n.saturating_sub(1).min(16));
        doubled.min(self.max_backoff)
    }
}

impl Default for Retry {
    /// 4 tries, waits below 200 ms, 400 ms, 800 ms: about a second and a half in all, enough
    /// for a restart that auto-unseals.
    fn default() -> Self {
        Self {
            attempts: 4,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Builds a [`Client`]: `Client::builder().socket(path).timeout(…).build()`.
#[derive(Debug, Default)]
#[must_use]
pub struct ClientBuilder {
    socket: Option<PathBuf>,
    nodes: Vec<String>,
    tls: Option<TlsOptions>,
    timeout: Option<Duration>,
    retry: Option<Retry>,
}

impl ClientBuilder {
    /// The daemon's Unix socket.
    pub fn socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.socket = Some(socket.into());
        self
    }

    /// vaultd's TCP listener on these nodes (`host:port`, in failover order), over mutual TLS
    /// with `tls`; instead of the socket.
    pub fn nodes<I, S>(mut self, nodes: I, tls: TlsOptions) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.nodes = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        self.tls = Some(tls);
        self
    }

    /// The per-call timeout (default 30 s): connect, request and answer together, per try.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How idempotent calls are retried (default [`Retry::default`]; [`Retry::NONE`] turns it
    /// off).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The client. Fails when both a socket and nodes are set, when nodes are set without TLS
    /// options, when a node address does not parse, or when `retry.attempts` is 0.
    pub fn build(self) -> Result<Client, Error> {
        let retry = self.retry.unwrap_or_default();
        if retry.attempts == 0 {
            return Err(Error::Config(
                "retry.attempts must be at least 1 (1: no retry)".into(),
            ));
        }
        let transport = match (self.socket, self.tls) {
            (Some(_), Some(_)) => {
                return Err(Error::Config("give a socket or TLS nodes, not both".into()));
            }
            (socket, None) => {
                Transport::Unix(socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)))
            }
            (None, Some(tls)) => Transport::Tls {
                nodes: crate::tls::nodes(&self.nodes, &tls)?,
                tls,
            },
        };
        Ok(Client::with_transport(
            transport,
            self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            retry,
        ))
    }
}

impl Client {
    /// A [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured as `vault-cli` is, from the same variables: `VAULT_ADDR` (nodes,
    /// comma-separated) with `VAULT_CERT`, `VAULT_KEY` and `VAULT_CA` for mutual TLS, else
    /// `VAULT_SOCKET` (default [`DEFAULT_SOCKET`]); `VAULT_TIMEOUT` in seconds (default 30).
    /// A variable that is set but unusable is an error, never ignored.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// [`Client::from_env`] over any source of variables (tests).
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut builder = Self::builder();
        if let Some(seconds) = var("VAULT_TIMEOUT") {
            let seconds: u64 = seconds.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "VAULT_TIMEOUT must be a whole number of seconds, not {seconds:?}"
                ))
            })?;
            builder = builder.timeout(Duration::from_secs(seconds));
        }
        match var("VAULT_ADDR").filter(|a| !a.trim().is_empty()) {
            Some(addr) => {
                let path = |name: &str| {
                    var(name).map(PathBuf::from).ok_or_else(|| {
                        Error::Config(format!("VAULT_ADDR is set: {name} is needed for TLS"))
                    })
                };
                let tls = TlsOptions::from_pem_files(
                    &path("VAULT_CERT")?,
                    &path("VAULT_KEY")?,
                    &path("VAULT_CA")?,
                )?;
                builder = builder.nodes(addr.split(',').map(str::trim), tls);
            }
            None => {
                if let Some(socket) = var("VAULT_SOCKET") {
                    builder = builder.socket(socket);
                }
            }
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn from_env_reads_the_cli_variables_and_refuses_unusable_ones() {
        let c = Client::from_vars(vars(&[])).unwrap();
        assert_eq!(c.socket(), Some(std::path::Path::new(DEFAULT_SOCKET)));
        let c = Client::from_vars(vars(&[
            ("VAULT_SOCKET", "/tmp/v.sock"),
            ("VAULT_TIMEOUT", "5"),
        ]))
        .unwrap();
        assert_eq!(c.socket(), Some(std::path::Path::new("/tmp/v.sock")));
        assert_eq!(c.timeout(), Duration::from_secs(5));
        let err = Client::from_vars(vars(&[("VAULT_TIMEOUT", "soon")])).unwrap_err();
        assert!(err.to_string().contains("VAULT_TIMEOUT"), "{err}");
        let err = Client::from_vars(vars(&[("VAULT_ADDR", "10.0.0.1:8200")])).unwrap_err();
        assert!(err.to_string().contains("VAULT_CERT"), "{err}");
    }

    #[test]
    fn the_builder_refuses_what_cannot_work() {
        let err = Client::builder()
            .retry(Retry {
                attempts: 0,
                ..Retry::default()
            })
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("attempts"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let r = Retry::default();
        let waits: Vec<u128> = (1..=6).map(|n| r.ceiling(n).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 2000, 2000]);
    }
}
