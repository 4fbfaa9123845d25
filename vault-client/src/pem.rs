//! PEM files of certificates and private keys, read the same way by the client
//! ([`TlsOptions`](crate::TlsOptions)) and by the daemon's TCP listener. Errors name the file,
//! never its content.

use std::path::Path;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// Every certificate in a PEM file, in file order; a file without one is an error.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::Config(format!("{}: not a PEM certificate file", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key in `pem`, the bytes of the file at `path` (which only names it in the
/// error): the parse error is reported without any of the content.
pub fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| {
        Error::Config(format!(
            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) found",
            path.display()
        ))
    })
}
