//! The TLS side of the TCP listener (`docs/tls.md`): the rustls server configuration (TLS 1.3
//! only, a required client certificate verified against `client_ca`, no resumption), and the
//! caller's name in a verified client certificate.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use vault_client::pem;
use x509_parser::extensions::GeneralName;

use crate::config::TcpConfig;
use crate::policy::SubjectName;

/// Largest private key file read (a PEM RSA-8192 key is under 7 KiB).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The crypto provider of every TLS configuration: aws-lc-rs, the one already in the graph
/// through the AWS SDK. `main` installs the same one as the process default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads the files of `[tcp]` and builds the server configuration. Fails with the file's path
/// when a file is missing, malformed, or (the key) readable by anyone but its owner.
pub fn server_config(tcp: &TcpConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = pem::certificates(&tcp.cert).context("[tcp] cert")?;
    let key = private_key(&tcp.key).context("[tcp] key")?;
    let mut roots = RootCertStore::empty();
    for ca in pem::certificates(&tcp.client_ca).context("[tcp] client_ca")? {
        roots.add(ca).with_context(|| {
            format!(
                "[tcp] client_ca: {} holds a certificate that cannot be a trust anchor",
                tcp.client_ca.display()
            )
        })?;
    }
    // Without `allow_unauthenticated`: a client certificate is required.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .context("[tcp] client_ca: building the client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with aws-lc-rs")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("[tcp] cert and key do not make a usable server certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection is a full handshake that verifies the client's certificate now.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The caller's name in a verified leaf certificate: its Subject CN, or without a CN its first
/// DNS SAN (`docs/tls.md`). Refused: more than one CN, neither name, or a name that is not a
/// [`SubjectName`]. The error names what was wrong, never the certificate's bytes.
pub(crate) fn subject_name(leaf: &CertificateDer<'_>) -> Result<SubjectName, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|_| "the client certificate does not parse".to_owned())?;
    let mut cns = cert.subject().iter_common_name();
    let name = match (cns.next(), cns.next()) {
        (Some(_), Some(_)) => return Err("the client certificate has more than one CN".into()),
        (Some(cn), None) => cn
            .as_str()
            .map_err(|_| "the client certificate's CN is not a string".to_owned())?,
        (None, _) => {
            let san = cert
                .subject_alternative_name()
                .map_err(|_| "the client certificate's SAN extension is invalid".to_owned())?;
            san.and_then(|san| {
                san.value.general_names.iter().find_map(|n| match n {
                    GeneralName::DNSName(dns) => Some(*dns),
                    _ => None,
                })
            })
            .ok_or_else(|| "the client certificate has neither a CN nor a DNS SAN".to_owned())?
        }
    };
    name.parse()
        .map_err(|e| format!("the client certificate's name is refused: {e}"))
}

/// The private key in a PEM file that only its owner (this process's uid) can read.
fn private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = crate::os::read_private_file(path, MAX_KEY_FILE).map_err(anyhow::Error::msg)?;
    Ok(pem::private_key(&bytes, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &[&str], dns: &[&str]) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        for name in cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, *name);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn subject_is_the_cn_else_the_first_dns_san() {
        let name = |c: &CertificateDer<'_>| subject_name(c).map(|n| n.to_string());
        assert_eq!(
            name(&cert(&["payments-app"], &["other.example"])),
            Ok("payments-app".into())
        );
        assert_eq!(
            name(&cert(&[], &["svc.example", "second.example"])),
            Ok("svc.example".into())
        );
    }

    /// rcgen keeps one value per attribute type; openssl writes a subject with two CNs.
    fn two_cn_cert() -> CertificateDer<'static> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=payments-app/CN=admin"])
            .arg("-keyout")
            .arg(dir.path().join("k.pem"))
            .arg("-outform")
            .arg("DER")
            .arg("-out")
            .arg(dir.path().join("c.der"))
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        CertificateDer::from(std::fs::read(dir.path().join("c.der")).expect("cert"))
    }

    #[test]
    fn refuses_ambiguous_missing_or_unsafe_names() {
        assert!(subject_name(&two_cn_cert()).is_err(), "two CNs");
        assert!(subject_name(&cert(&[], &[])).is_err(), "no name");
        assert!(subject_name(&cert(&["pay app"], &[])).is_err(), "space");
        assert!(subject_name(&cert(&["uid=0"], &[])).is_err(), "=");
        assert!(subject_name(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
    }
}
