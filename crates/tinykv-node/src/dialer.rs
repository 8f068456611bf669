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
}

impl Dialer {
    /// Dials with `tls` (none: plaintext).
    pub fn new(tls: Option<ClientTls>) -> Arc<Dialer> {
        Arc::new(Dialer {
            tls: RwLock::new(tls),
            generation: AtomicU64::new(0),
        })
    }

    /// An endpoint for `addr` with the current settings.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, TlsError> {
        let tls = self.tls.read().ok().and_then(|t| t.clone());
        tls::endpoint(addr, tls.as_ref())
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
