//! Client settings.

use std::time::Duration;

use tinykv_auth::tls::ClientTls;
use tinykv_auth::Signer;

use crate::RoutingPolicy;

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline for each call, also sent to the server as the request's
    /// own deadline for reaching its replicas.
    pub timeout: Duration,
    /// Deadline for establishing a connection.
    pub connect_timeout: Duration,
    /// Informational sender id put in requests.
    pub sender_id: String,
    /// Coalesce concurrent puts, gets and deletes to the same endpoint into
    /// batches (sent on its `BatchStream`). Each operation keeps its own
    /// deadline and result; an
    /// idle client still sends each operation at once. Off: one RPC per
    /// operation, as the original protocol does.
    pub coalesce: bool,
    /// Which node coordinates each put, get and delete.
    pub routing: RoutingPolicy,
    /// Signs admin calls with the cluster secret (a node with a secret
    /// refuses unsigned ones); none: admin calls go unsigned.
    pub admin_signer: Option<Signer>,
    /// TLS: the CA that signs the nodes' certificates and, for
    /// `--client-auth cert`, the client's own; none: plaintext.
    pub tls: Option<ClientTls>,
    /// A client token sent on every call (`--client-auth token`).
    pub token: Option<String>,
}

/// How often a token-aware client refetches the ring map.
pub const TOPOLOGY_REFRESH: Duration = Duration::from_secs(30);

/// How long an endpoint whose connection failed is passed over.
pub(crate) const DOWN_FOR: Duration = Duration::from_secs(2);

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            sender_id: "tinykv-client".into(),
            coalesce: true,
            routing: RoutingPolicy::Sticky,
            admin_signer: None,
            tls: None,
            token: None,
        }
    }
}
