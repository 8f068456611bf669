//! Connections to other nodes: one lazily connected HTTP/2 channel per
//! address, reused by every request (no connection per call).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use tinykv_proto::internal::peer_client::PeerClient;
use tonic::transport::{Channel, Endpoint};

/// The pool of peer channels.
pub struct Peers {
    channels: RwLock<HashMap<String, PeerClient<Channel>>>,
    max_message: usize,
}

impl Peers {
    /// A pool whose clients accept messages up to `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Peers {
            channels: RwLock::new(HashMap::new()),
            max_message,
        }
    }

    /// The client for `addr` (`host:port`), created on first use.
    pub fn client(&self, addr: &str) -> Result<PeerClient<Channel>, String> {
        if let Ok(map) = self.channels.read() {
            if let Some(c) = map.get(addr) {
                return Ok(c.clone());
            }
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("invalid peer address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let client = PeerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message);
        if let Ok(mut map) = self.channels.write() {
            map.insert(addr.to_string(), client.clone());
        }
        Ok(client)
    }
}

/// A short reason for a failed peer call, for quorum error messages.
pub fn describe(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => "deadline exceeded".into(),
        tonic::Code::Unavailable => {
            let m = status.message();
            if m.is_empty() || m.contains("transport") || m.contains("connect") {
                "unreachable".into()
            } else {
                format!("unavailable ({m})")
            }
        }
        code => format!("{code:?}: {}", status.message()),
    }
}
