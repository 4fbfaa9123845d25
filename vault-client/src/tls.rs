//! TLS to vaultd's TCP listener (`docs/tls.md`): [`TlsOptions`] (the client certificate and key,
//! the CA bundle that verifies the servers, the server name) and the node addresses.
//! TLS 1.3 only, on aws-lc-rs, ALPN `http/1.1`.

use std::fmt;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use rustls_pki_types::PrivateKeyDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroizing;

use crate::error::Error;

/// Largest private key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// How a [`Client`](crate::Client) speaks TLS to vaultd's nodes: its certificate and private
/// key, the CAs that verify the nodes' certificates, and optionally the name to verify them
/// for (default: the host part of each node's address).
///
/// ```no_run
/// use vault_client::{Client, TlsOptions};
///
/// # fn demo() -> Result<(), vault_client::Error> {
/// let tls = TlsOptions::from_pem_files(
///     "/etc/platform/tls/client.pem".as_ref(),
///     "/etc/platform/tls/client.key".as_ref(),
///     "/etc/platform/tls/vault-ca.pem".as_ref(),
/// )?
/// .with_server_name("vault.internal")?;
/// let client = Client::tls(["10.0.0.5:8443", "10.0.0.6:8443"], tls)?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TlsOptions {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl TlsOptions {
    /// Reads the client's certificate chain (`cert`, PEM, leaf first), its private key (`key`,
    /// PEM; refused if group or others may read it) and the CA bundle that verifies the
    /// servers (`ca`, PEM). Errors name the file, never its content.
    pub fn from_pem_files(cert: &Path, key: &Path, ca: &Path) -> Result<Self, Error> {
        let chain = crate::pem::certificates(cert)?;
        let key = private_key(key)?;
        let mut roots = RootCertStore::empty();
        for anchor in crate::pem::certificates(ca)? {
            roots.add(anchor).map_err(|e| {
                Error::Config(format!(
                    "{}: not a usable CA certificate: {e}",
                    ca.display()
                ))
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::Config(format!("TLS 1.3: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::Config(format!("client certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// Verifies every node's certificate for `name` (a DNS name or an IP address) instead of
    /// the host part of its address.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, Error> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| Error::Config(format!("{name:?} is not a DNS name or IP address")))?;
        self.server_name = Some(name);
        Ok(self)
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// One node: `host:port` as given, and the name its certificate is verified for.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// As given (`host:port`, `[v6]:port`): what is dialled and sent as `Host`.
    pub(crate) addr: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl Node {
    /// Parses `host:port` or `[v6]:port`; the server name is `name` or else the host.
    pub(crate) fn parse(addr: &str, name: Option<&ServerName<'static>>) -> Result<Self, Error> {
        let bad = || Error::Config(format!("{addr:?} is not HOST:PORT"));
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        let server_name = match name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned()).map_err(|_| {
                Error::Config(format!(
                    "{addr:?}: {host:?} is not a DNS name or IP address to verify"
                ))
            })?,
        };
        Ok(Self {
            addr: addr.to_owned(),
            host: host.to_owned(),
            port,
            server_name,
        })
    }

    /// TCP, then the TLS handshake that verifies the node's certificate.
    pub(crate) async fn connect(
        &self,
        tls: &TlsOptions,
    ) -> Result<TlsStream<TcpStream>, std::io::Error> {
        let context =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", self.addr));
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(context)?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(tls.config.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(context)
    }
}

/// The nodes of `addrs` (at least one), verified for the name in `tls` or their host.
pub(crate) fn nodes<I, S>(addrs: I, tls: &TlsOptions) -> Result<Vec<Node>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let nodes = addrs
        .into_iter()
        .map(|a| Node::parse(a.as_ref().trim(), tls.server_name.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        return Err(Error::Config("no node address given".into()));
    }
    Ok(nodes)
}

/// The key in a PEM file that neither group nor others may read (like ssh); read into
/// zeroizing memory; errors never quote it.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let io_err = |e: std::io::Error| Error::Config(format!("{}: {e}", path.display()));
    let file = fs::File::open(path).map_err(io_err)?;
    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{} has mode {mode:03o}; refusing a private key that group or others may access \
             (chmod 600)",
            path.display()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(Error::Config(format!(
            "{} is over {MAX_KEY_FILE} bytes",
            path.display()
        )));
    }
    crate::pem::private_key(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_addresses() {
        let n = Node::parse("127.0.0.1:8443", None).expect("v4");
        assert_eq!((n.host.as_str(), n.port), ("127.0.0.1", 8443));
        assert!(matches!(n.server_name, ServerName::IpAddress(_)));
        let n = Node::parse("[::1]:1", None).expect("v6");
        assert_eq!(n.host, "::1");
        let n = Node::parse("vault.internal:8443", None).expect("dns");
        assert!(matches!(n.server_name, ServerName::DnsName(_)));
        let name = ServerName::try_from("other.example").expect("name");
        let n = Node::parse("10.0.0.1:8443", Some(&name)).expect("override");
        assert_eq!(n.server_name, name);
        for bad in [
            "",
            "host",
            "host:",
            ":8443",
            "host:0",
            "host:99999",
            "::1:8443",
            "[::1:8443",
        ] {
            assert!(Node::parse(bad, None).is_err(), "{bad:?}");
        }
    }
}
