//! The node's accepted connections: plaintext, or TLS with the
//! configuration in use when the connection arrived (so certificates
//! re-read on SIGHUP apply to new connections at once), each carrying what
//! the guard needs to know about it ([`ConnInfo`]).
//!
//! Handshakes run in their own tasks, bounded in number and time, so a
//! client that connects and says nothing holds up no one else's accept.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many handshakes may be in progress at once.
const MAX_HANDSHAKES: usize = 256;

/// What a connection proved when it was made.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    /// The address it came from.
    pub remote: Option<SocketAddr>,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// The names in the client certificate it presented, verified against
    /// the CA during the handshake (none: no certificate, or no TLS).
    pub cert_names: Option<Arc<[String]>>,
}

/// The TLS configuration new connections get, replaced on reload.
#[derive(Debug)]
pub struct TlsState(RwLock<Arc<ServerConfig>>);

impl TlsState {
    /// Serves `config` until replaced.
    pub fn new(config: Arc<ServerConfig>) -> Arc<TlsState> {
        Arc::new(TlsState(RwLock::new(config)))
    }

    /// Serves `config` to every connection made from now on.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        if let Ok(mut c) = self.0.write() {
            *c = config;
        }
    }

    /// The configuration in use. A poisoned lock still holds a complete
    /// configuration (replacing it is one assignment): use it, never fall
    /// back to plaintext.
    fn current(&self) -> Arc<ServerConfig> {
        match self.0.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// One accepted connection.
pub enum Conn {
    /// Plaintext TCP.
    Plain(TcpStream, ConnInfo),
    /// TLS over TCP (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>, ConnInfo),
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Conn::Plain(_, info) | Conn::Tls(_, info) => info.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s, _) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections accepted on `listener` until `shutdown`: TLS ones when
/// `tls` is given.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<TlsState>>,
    shutdown: CancellationToken,
) -> impl Stream<Item = io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls, tx, shutdown));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<TlsState>>,
    tx: mpsc::Sender<io::Result<Conn>>,
    shutdown: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            a = listener.accept() => a,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(error) => {
                // Out of file descriptors and the like: say so and go on
                // after a moment, rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Without TCP_NODELAY small responses wait for the peer's delayed
        // ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            remote: Some(remote),
            ..ConnInfo::default()
        };
        let Some(config) = tls.as_ref().map(|t| t.current()) else {
            if tx.send(Ok(Conn::Plain(stream, info))).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many TLS handshakes in progress: connection dropped");
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream))
                .await
            {
                Ok(Ok(tls)) => {
                    let info = ConnInfo {
                        tls: true,
                        cert_names: client_names(&tls),
                        ..info
                    };
                    let _ = tx.send(Ok(Conn::Tls(Box::new(tls), info))).await;
                }
                Ok(Err(error)) => tracing::debug!(%remote, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        });
    }
}

/// The names of the verified client certificate of `tls`, if one was shown.
fn client_names(tls: &TlsStream<TcpStream>) -> Option<Arc<[String]>> {
    let (_, session) = tls.get_ref();
    let leaf = session.peer_certificates()?.first()?;
    Some(tinykv_auth::tls::cert_names(leaf).into())
}
