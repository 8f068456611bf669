//! How this node dials other nodes: plaintext, or TLS presenting its own
//! certificate (`--tls-*`). Certificates re-read on SIGHUP replace the
//! configuration; a new generation tells the peer pool to reconnect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tinykv_auth::tls::{self, ClientTls};
use tinykv_auth::TlsError;
use tonic::transport::Endpoint;

/// The TLS settings for outgoing calls, shared by the peer pool and the
/// admin calls a node makes.
#[derive(Debug, Default)]
pub struct Dialer {
    tls: RwLock<Option<ClientTls>>,
    generation: AtomicU64,
    /// The `--peers-dns` host: an IP address (found by resolving it) is
    /// verified against this name, which node certificates carry (the
    /// operator's name the headless Service), since none names a pod IP.
    ip_name: Option<String>,
}

impl Dialer {
    /// Dials with `tls` (none: plaintext).
    pub fn new(tls: Option<ClientTls>) -> Arc<Dialer> {
        Dialer::with_ip_name(tls, None)
    }

    /// Dials with `tls`, verifying servers dialled by IP address for
    /// `ip_name` (the `--peers-dns` host, without its port).
    pub fn with_ip_name(tls: Option<ClientTls>, ip_name: Option<String>) -> Arc<Dialer> {
        Arc::new(Dialer {
            tls: RwLock::new(tls),
            generation: AtomicU64::new(0),
            ip_name,
        })
    }

    /// An endpoint for `addr` with the current settings.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, TlsError> {
        let tls = self.tls.read().ok().and_then(|t| t.clone());
        let by_ip = addr.parse::<std::net::SocketAddr>().is_ok();
        let name = self.ip_name.as_deref().filter(|_| by_ip);
        tls::endpoint_named(addr, tls.as_ref(), name)
    }

    /// Uses `tls` for connections made from now on.
    pub fn replace(&self, tls: ClientTls) {
        if let Ok(mut t) = self.tls.write() {
            *t = Some(tls);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes every time the settings are replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tinykv_auth::tls::{server_config, TlsFiles};
    use tinykv_auth::{write_bundle, Bundle};
    use tokio_util::sync::CancellationToken;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    use super::*;
    use crate::server::incoming::{incoming, TlsState};

    /// A TLS health server whose certificate names only `svc.test`.
    async fn server(dir: &Path, stop: &CancellationToken) -> (String, ClientTls) {
        let bundle = Bundle {
            nodes: vec![vec!["node1".into(), "svc.test".into()]],
            clients: Vec::new(),
        };
        write_bundle(dir, &bundle).unwrap();
        let files = TlsFiles {
            cert: dir.join("node1.pem"),
            key: dir.join("node1.key"),
            ca: dir.join("ca.pem"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (_, health) = tonic_health::server::health_reporter();
        let conns = incoming(
            listener,
            Some(TlsState::new(server_config(&files).unwrap())),
            stop.clone(),
        );
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(conns, stop.clone().cancelled_owned()),
        );
        (addr, ClientTls::for_node(&files).unwrap())
    }

    async fn check(dialer: &Dialer, addr: &str) -> bool {
        let Ok(ch) = dialer.endpoint(addr).unwrap().connect().await else {
            return false;
        };
        HealthClient::new(ch)
            .check(HealthCheckRequest::default())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_address_found_by_name_is_verified_for_that_name() {
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let (addr, tls) = server(dir.path(), &stop).await;
        // The certificate does not name 127.0.0.1: dialled as an address,
        // the server is refused; verified for the name it was found by, it
        // is reached.
        assert!(!check(&Dialer::new(Some(tls.clone())), &addr).await);
        let by_name = Dialer::with_ip_name(Some(tls.clone()), Some("svc.test".into()));
        assert!(check(&by_name, &addr).await);
        let other = Dialer::with_ip_name(Some(tls), Some("other.test".into()));
        assert!(!check(&other, &addr).await);
        stop.cancel();
    }
}
