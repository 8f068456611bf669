//! TLS for both planes of a node, with rustls.
//!
//! A node given `--tls-cert`, `--tls-key` and `--tls-ca` serves TLS on its
//! port and asks every connection for a client certificate signed by the
//! CA, without requiring one (clients of the client plane may have none;
//! what each plane demands is decided per call, by the node's guard, from
//! the names the connection proved at its handshake: [`cert_names`]). Node-
//! to-node calls present the node's own certificate, so a peer's identity
//! is proved once per connection, not per message.
//!
//! A node's certificate names its member id first (a DNS name), then the
//! host names and addresses it is reached at: callers verify the server's
//! certificate against the host they dial, and a node checks that a caller
//! claiming to be member `X` holds a certificate naming `X`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::TlsError;

/// The files a node (or a client with a certificate) is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, own certificate first.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA that signs every node's (and client's) certificate, PEM.
    pub ca: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Bad {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every certificate in the PEM file at `path` (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, "holds no certificate"));
    }
    Ok(certs)
}

/// The private key in the PEM file at `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad(path, format!("no usable private key: {e}")))
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| bad(ca, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A node's server configuration: its certificate, and client certificates
/// verified against the CA when offered (not required: see the module
/// docs). Speaks HTTP/2 only (ALPN `h2`), as gRPC does.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&files.ca)?), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad(&files.ca, format!("cannot verify clients with it: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad(&files.cert, format!("does not match its key: {e}")))?;
    // gRPC is HTTP/2; HTTP/1.1 is for scrapes of /metrics on this port.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How a client (a node calling its peers, the CLI, the bench, the
/// operator) speaks TLS: the CA it trusts and, for mTLS, its own
/// certificate.
#[derive(Clone, Debug)]
pub struct ClientTls {
    ca: Certificate,
    identity: Option<Identity>,
}

impl ClientTls {
    /// Trusts the CA at `ca`; presents `cert`/`key` when both are given.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        roots(ca)?;
        let identity = match identity {
            Some((cert, key)) => {
                load_certs(cert)?;
                load_key(key)?;
                Some(Identity::from_pem(read(cert)?, read(key)?))
            }
            None => None,
        };
        Ok(ClientTls {
            ca: Certificate::from_pem(read(ca)?),
            identity,
        })
    }

    /// Trusts the CA certificates in `ca` (PEM); presents the PEM
    /// certificate and key of `identity` when given. For callers that hold
    /// the PEM in memory rather than in files (the operator reads it from
    /// Kubernetes Secrets), checked like [`ClientTls::load`] checks files.
    pub fn from_pem(ca: &str, identity: Option<(&str, &str)>) -> Result<ClientTls, TlsError> {
        let where_ = |what: &str| PathBuf::from(format!("<{what} PEM>"));
        let certs = CertificateDer::pem_slice_iter(ca.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&where_("CA"), format!("not a PEM certificate: {e}")))?;
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(&where_("CA"), format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad(&where_("CA"), "holds no certificate"));
        }
        let identity = match identity {
            Some((cert, key)) => {
                let n = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(&where_("certificate"), e.to_string()))?
                    .len();
                if n == 0 {
                    return Err(bad(&where_("certificate"), "holds no certificate"));
                }
                PrivateKeyDer::from_pem_slice(key.as_bytes())
                    .map_err(|e| bad(&where_("key"), format!("no usable private key: {e}")))?;
                Some(Identity::from_pem(cert, key))
            }
            None => None,
        };
        Ok(ClientTls {
            ca: Certificate::from_pem(ca),
            identity,
        })
    }

    /// The TLS settings of a client's `--tls-ca`, `--tls-cert` and
    /// `--tls-key`: none without a CA; a certificate without a CA is an
    /// error (the CLI and the bench share this).
    pub fn from_flags(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<ClientTls>, TlsError> {
        match ca {
            Some(ca) => ClientTls::load(ca, cert.zip(key)).map(Some),
            None if cert.is_some() => Err(TlsError::Config(
                "--tls-cert needs --tls-ca (the CA of the nodes' certificates)".into(),
            )),
            None => Ok(None),
        }
    }

    /// A node's client side: its own files, certificate presented.
    pub fn for_node(files: &TlsFiles) -> Result<ClientTls, TlsError> {
        ClientTls::load(&files.ca, Some((&files.cert, &files.key)))
    }

    fn config(&self, server_name: Option<&str>) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .timeout(Duration::from_secs(5));
        let config = match server_name {
            Some(name) => config.domain_name(name),
            None => config,
        };
        match &self.identity {
            Some(id) => config.identity(id.clone()),
            None => config,
        }
    }
}

/// An endpoint for `addr` (`host:port`, or a full URI): plaintext without
/// `tls`; with it, `https` verified against the CA for the host dialled.
pub fn endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint, TlsError> {
    endpoint_named(addr, tls, None)
}

/// As [`endpoint`], the server's certificate verified for `server_name`
/// instead of the host dialled (an address found by resolving a name, such
/// as a pod IP behind a headless Service, is checked against that name).
pub fn endpoint_named(
    addr: &str,
    tls: Option<&ClientTls>,
    server_name: Option<&str>,
) -> Result<Endpoint, TlsError> {
    let invalid = |e: &dyn std::fmt::Display| TlsError::Address {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    let uri = match (addr.split_once("://"), tls) {
        (Some(_), _) => addr.to_string(),
        (None, Some(_)) => format!("https://{addr}"),
        (None, None) => format!("http://{addr}"),
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| invalid(&e))?;
    match tls {
        Some(tls) => endpoint
            .tls_config(tls.config(server_name))
            .map_err(|e| invalid(&e)),
        None => Ok(endpoint),
    }
}

/// The DER of every certificate in `pem`, in order (empty for text that
/// holds none or is not PEM), to look at certificates held in memory with
/// [`cert_names`].
pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}

/// The names a certificate proves, in its order: its DNS subject
/// alternative names, then its common name if it has no DNS name. Empty
/// for a certificate that cannot be parsed (never trusted then).
pub fn cert_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests;
