//! TLS to PostgreSQL (`docs/ha.md`, "TLS to PostgreSQL"): `[postgres] ca_file` names the CAs
//! the server's certificate must chain to; with it every connection is TLS 1.3, the chain and
//! the host name are verified (libpq's `sslmode=verify-full`), and a server that offers no TLS
//! is refused. Without it, connections are plain (a Unix socket or a private network).
//!
//! The glue between tokio-postgres and rustls is the `tokio-postgres-rustls` crate; it also
//! gives the driver the `tls-server-end-point` channel binding, so SCRAM authentication is
//! bound to the verified session (SCRAM-SHA-256-PLUS).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rustls::RootCertStore;
use tokio_postgres::Config;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;
use vault_client::pem;

/// The ALPN protocol of PostgreSQL (libpq 17 sends it; servers from 17 on check it when sent).
const ALPN: &[u8] = b"postgresql";

/// A verified TLS client for PostgreSQL: the CAs of `ca_file`, TLS 1.3 only, no client
/// certificate.
#[derive(Clone)]
pub struct Tls {
    ca_file: PathBuf,
    connector: MakeRustlsConnect,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("verify", &"full (chain and host name)")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Tls {
    /// Reads the PEM CA bundle at `path` (every certificate in it is a trust anchor). Fails
    /// with the path when the file is missing, holds no certificate, or one that cannot be an
    /// anchor.
    pub(crate) fn from_ca_file(path: &Path) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        for ca in pem::certificates(path)? {
            roots.add(ca).with_context(|| {
                format!(
                    "{} holds a certificate that cannot be a trust anchor",
                    path.display()
                )
            })?;
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(crate::server::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .context("TLS 1.3 with aws-lc-rs")?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Self {
            ca_file: path.to_owned(),
            connector: MakeRustlsConnect::new(config),
        })
    }

    /// The driver's TLS connector.
    pub(super) fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }
}

/// Settles the connection string's `sslmode` against `tls` (`[postgres] ca_file`), and sets it:
///
/// - with `tls`: `require` (TLS or no connection; `prefer`, the driver's default, is raised to
///   it); `disable` is refused, and so is a Unix socket host (PostgreSQL has no TLS there);
/// - without: `disable` (plain, as before); `require` is refused, since vaultd has no TLS
///   without verification.
///
/// The errors name the setting, never the string (it may hold the password).
pub(crate) fn settle_ssl_mode(config: &mut Config, tls: Option<&Tls>) -> anyhow::Result<()> {
    match (tls, config.get_ssl_mode()) {
        (Some(_), SslMode::Disable) => {
            bail!("[postgres] ca_file is set, but the connection string says sslmode=disable")
        }
        (Some(_), _) => {
            if let Some(Host::Unix(path)) = config
                .get_hosts()
                .iter()
                .find(|h| matches!(h, Host::Unix(_)))
            {
                bail!(
                    "[postgres] ca_file is set, but host {} is a Unix socket, where PostgreSQL \
                     has no TLS: name TCP hosts only, or remove ca_file",
                    path.display()
                );
            }
            config.ssl_mode(SslMode::Require);
        }
        (None, SslMode::Require) => bail!(
            "[postgres]: sslmode=require needs ca_file (the CAs to verify the server's \
             certificate with); vaultd has no TLS without verification"
        ),
        (None, _) => {
            config.ssl_mode(SslMode::Disable);
        }
    }
    Ok(())
}

/// A clearer word than "does not parse" for the libpq TLS settings the driver does not know,
/// from the driver's parse error (whose messages for these name only the option, never a value).
pub(crate) fn unsupported_ssl_setting(e: &tokio_postgres::Error) -> Option<&'static str> {
    let cause = std::error::Error::source(e)?.to_string();
    if cause == "invalid value for option `sslmode`" {
        return Some(
            "sslmode must be disable, prefer or require: for verify-ca or verify-full, set \
             [postgres] ca_file (vaultd then verifies the chain and the host name)",
        );
    }
    const FILES: [&str; 6] = [
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "sslcrldir",
    ];
    FILES
        .iter()
        .any(|name| cause == format!("unknown option `{name}`"))
        .then_some(
            "the connection string's ssl* file settings are not read: name the CAs in \
             [postgres] ca_file (client certificates are not supported)",
        )
}
