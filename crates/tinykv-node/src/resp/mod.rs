//! The RESP front door (`--redis-listen`): Redis clients and tools
//! (`redis-cli`, `redis-benchmark`, client libraries) read and write
//! TinyKV keys over the Redis protocol, RESP2 or (after `HELLO 3`) RESP3.
//!
//! Every read and write goes through the client service's batch path,
//! so through the same checks, limits, error texts, metrics and
//! coordinator as gRPC: a connection's pipelined commands are coordinated
//! as one batch (see `pipeline.rs`). Layout, as in mini-redis: `run`
//! accepts connections, `connection.rs` reads requests (`frame.rs`) and
//! writes answers (`reply.rs`), `cmd/` parses each command.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::guard::ClientCheck;
use crate::server::incoming::{incoming, Conn, ConnInfo, TlsState};
use crate::service::client::ClientService;

mod cmd;
mod coalesce;
mod connection;
mod error;
mod frame;
mod pipeline;
mod reply;
mod session;

pub use error::RespError;

/// What the RESP door uses of the node.
pub struct RespParts {
    /// The client service: every read and write goes through it.
    pub client: ClientService,
    /// The token check of `--client-auth token` (`AUTH`), if on.
    pub check: Option<Arc<ClientCheck>>,
    /// Most connections served at once; more are answered with an error
    /// and closed.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The node's TLS settings, when TLS is on: the door then serves TLS
    /// only, with the gRPC port's certificate (re-read on SIGHUP).
    pub tls: Option<Arc<TlsState>>,
}

/// What every connection shares.
pub(crate) struct Shared {
    pub client: ClientService,
    /// Every read and write of a connection goes through it.
    pub coalescer: coalesce::Coalescer,
    pub check: Option<Arc<ClientCheck>>,
    pub limits: frame::Limits,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub started: Instant,
    pub port: u16,
    /// Connections open now.
    pub connected: AtomicUsize,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Commands run since start.
    pub commands: AtomicU64,
}

/// Serves the RESP door on `listener` until `shutdown`: then stops
/// accepting, lets every connection finish the batch it is running, and
/// returns once all are closed. With TLS on, connections are accepted as
/// the gRPC port accepts them (handshakes bounded in number and time).
pub async fn run(listener: TcpListener, parts: RespParts, shutdown: CancellationToken) {
    let rules = parts.client.rules();
    let shared = Arc::new(Shared {
        limits: frame::Limits {
            // A value a little over the limit still parses, and gets the
            // value limit's error, as over gRPC.
            max_bulk: rules.message_limit,
            max_frame: rules.message_limit,
        },
        // Half the message limit: a replica call of a merged batch stays
        // well inside what a peer accepts (twice the limit), with room for
        // each version's timestamp and writer.
        coalescer: coalesce::Coalescer::start(parts.client.clone(), rules.message_limit / 2),
        client: parts.client,
        check: parts.check,
        idle_timeout: parts.idle_timeout,
        max_connections: parts.max_connections,
        started: Instant::now(),
        port: listener.local_addr().map(|a| a.port()).unwrap_or(0),
        connected: AtomicUsize::new(0),
        accepted: AtomicU64::new(0),
        commands: AtomicU64::new(0),
    });
    let permits = Arc::new(Semaphore::new(parts.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    let conns = incoming(listener, parts.tls, shutdown.clone());
    tokio::pin!(conns);
    loop {
        let accepted = tokio::select! {
            a = conns.next() => a,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Some(Ok(conn)) => conn,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "RESP accept failed");
                continue;
            }
            None => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tasks.spawn(refuse(stream));
            continue;
        };
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        tasks.spawn(async move {
            connection_task(stream, shared, shutdown).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Serves one accepted connection, counted in `INFO clients`.
async fn connection_task(stream: Conn, shared: Arc<Shared>, shutdown: CancellationToken) {
    let id = shared.accepted.fetch_add(1, Ordering::Relaxed) + 1;
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let info = conn_info(&stream);
    let addr = display_addr(info.remote);
    let session = session::Session::new(id, shared.check.as_deref(), &info);
    let span = tracing::debug_span!("resp_connection", id, peer = %addr, tls = info.tls);
    let result = connection::serve(stream, session, shared.clone(), shutdown)
        .instrument(span)
        .await;
    shared.connected.fetch_sub(1, Ordering::Relaxed);
    if let Err(e) = result {
        tracing::debug!(id, peer = %addr, error = %e, "RESP connection closed");
    }
}

/// Answers a connection over the limit and closes it, as Redis does.
async fn refuse(mut stream: Conn) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(b"-ERR max number of clients reached\r\n"),
    )
    .await;
}

/// What `conn` proved when it was made.
fn conn_info(conn: &Conn) -> ConnInfo {
    match conn {
        Conn::Plain(_, info) | Conn::Tls(_, info) => info.clone(),
    }
}

/// The address a connection came from, for logs.
fn display_addr(remote: Option<SocketAddr>) -> String {
    remote.map_or_else(|| "unknown".into(), |a| a.to_string())
}
