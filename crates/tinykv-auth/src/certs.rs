//! A small certificate authority for clusters without cert-manager:
//! `tinykv_client certs` makes a CA and the certificates of nodes and
//! clients with it, with the names the nodes check (tls.rs).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::error::TlsError;

/// How long a CA made here is valid.
const CA_DAYS: i64 = 3650;
/// How long a node's or client's certificate is valid (the most browsers
/// accept; rotate with SIGHUP before it ends).
const LEAF_DAYS: i64 = 825;

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A node: serves both planes and calls its peers (server and client
    /// authentication); its first name is its member id.
    Node,
    /// A client of the client plane (`--client-auth cert`) or an admin
    /// tool: client authentication only.
    Client,
}

/// A certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// A CA that can sign certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

fn gen_err(what: &str, e: rcgen::Error) -> TlsError {
    TlsError::Config(format!("{what}: {e}"))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // An hour back, so a node whose clock is a little behind the one that
    // made the certificate accepts it at once.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

impl Authority {
    /// A new CA named `name`.
    pub fn generate(name: &str) -> Result<Authority, TlsError> {
        let key = KeyPair::generate().map_err(|e| gen_err("generating the CA key", e))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| gen_err("CA parameters", e))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(|e| gen_err("signing the CA", e))?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA kept in `cert` and `key` (PEM), to sign more certificates.
    pub fn load(cert: &Path, key: &Path) -> Result<Authority, TlsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TlsError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        Authority::from_pems(&cert_pem, &key_pem, cert, key)
    }

    /// The CA whose certificate and key are `cert_pem` and `key_pem`, held
    /// in memory (the operator keeps its clusters' CAs in Kubernetes
    /// Secrets, not files).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, TlsError> {
        Authority::from_pems(
            cert_pem,
            key_pem,
            Path::new("<CA certificate PEM>"),
            Path::new("<CA key PEM>"),
        )
    }

    fn from_pems(
        cert_pem: &str,
        key_pem: &str,
        cert: &Path,
        key: &Path,
    ) -> Result<Authority, TlsError> {
        let bad = |p: &Path, e: rcgen::Error| TlsError::Bad {
            path: p.to_path_buf(),
            reason: e.to_string(),
        };
        let key_pair = KeyPair::from_pem(key_pem).map_err(|e| bad(key, e))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key_pair).map_err(|e| bad(cert, e))?;
        Ok(Authority {
            issuer,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// The CA's certificate, PEM: what every node and client trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM: keep it away from the nodes.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `names` (the first is the identity: a node's
    /// member id or a client's name; host names and IP addresses follow).
    pub fn issue(&self, names: &[String], role: Role) -> Result<Issued, TlsError> {
        let Some(first) = names.first() else {
            return Err(TlsError::Config(
                "a certificate needs at least one name".into(),
            ));
        };
        let key = KeyPair::generate().map_err(|e| gen_err("generating a key", e))?;
        let mut params = CertificateParams::new(names.to_vec())
            .map_err(|e| gen_err(&format!("names {names:?}"), e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match role {
            Role::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_DAYS);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| gen_err(&format!("signing the certificate of {first}"), e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What `tinykv_client certs` makes in a directory.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    /// Each node's names: its id first, then the hosts it is reached at.
    pub nodes: Vec<Vec<String>>,
    /// Each client's name.
    pub clients: Vec<String>,
}

fn write_file(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// Writes into `dir` a CA (`ca.pem`, `ca.key`; kept and reused when they
/// are there already, so nodes can be added later) and, for every node
/// and client of `bundle`, `NAME.pem` and `NAME.key`. Returns the files
/// written, CA first.
pub fn write_bundle(dir: &Path, bundle: &Bundle) -> Result<Vec<std::path::PathBuf>, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let (ca_cert, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let mut written = Vec::new();
    let ca = if ca_cert.exists() && ca_key.exists() {
        Authority::load(&ca_cert, &ca_key)?
    } else {
        let ca = Authority::generate("TinyKV cluster CA")?;
        write_file(&ca_cert, ca.cert_pem(), false)?;
        write_file(&ca_key, &ca.key_pem(), true)?;
        written.extend([ca_cert, ca_key]);
        ca
    };
    let leaves = bundle
        .nodes
        .iter()
        .map(|names| (names.clone(), Role::Node))
        .chain(
            bundle
                .clients
                .iter()
                .map(|c| (vec![c.clone()], Role::Client)),
        );
    for (names, role) in leaves {
        let issued = ca.issue(&names, role)?;
        let name = &names[0];
        if name.contains('/') || name.starts_with('.') {
            return Err(TlsError::Config(format!("{name:?} cannot name a file")));
        }
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        write_file(&cert, &issued.cert_pem, false)?;
        write_file(&key, &issued.key_pem, true)?;
        written.extend([cert, key]);
    }
    Ok(written)
}
