//! One client connection: reading requests with deadlines, running them
//! in pipeline batches, writing the answers.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::error::RespError;
use super::frame::next_request;
use super::pipeline::Pipeline;
use super::reply::Reply;
use super::session::Session;
use super::Shared;
use crate::server::incoming::Conn;

/// Most requests taken off the buffer for one batch: a gRPC `Batch`'s
/// limit, so a batch's answers are bounded the same way.
const MAX_PIPELINE: usize = crate::service::client::MAX_BATCH_OPS;

/// How long a request that has started arriving may take to arrive whole.
const READ_DEADLINE: Duration = Duration::from_secs(30);

/// Serves one connection until the client leaves, breaks the protocol,
/// stays idle past the deadline, or the node shuts down.
pub async fn serve(
    mut stream: Conn,
    mut session: Session,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(), RespError> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let mut requests = Vec::new();
        let parsed = loop {
            if requests.len() >= MAX_PIPELINE {
                break Ok(());
            }
            match next_request(&mut buf, &shared.limits) {
                Ok(Some(args)) => requests.push(args),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let full = requests.len() >= MAX_PIPELINE;
        if !requests.is_empty() {
            let quit = Pipeline::new(&shared, &mut session)
                .run(requests, &mut out)
                .await;
            tokio::select! {
                biased;
                w = write(&mut stream, &mut out, shared.idle_timeout) => w?,
                // A client that does not take its answers does not hold up
                // the node's shutdown.
                () = shutdown.cancelled() => return Ok(()),
            }
            if quit {
                return Ok(());
            }
        }
        if let Err(e) = parsed {
            Reply::err(&e).encode(session.proto, &mut out);
            let _ = write(&mut stream, &mut out, READ_DEADLINE).await;
            return Err(e);
        }
        if full {
            continue;
        }
        let wait = if buf.is_empty() {
            shared.idle_timeout
        } else {
            READ_DEADLINE
        };
        buf.reserve(16 * 1024);
        let read = tokio::select! {
            r = tokio::time::timeout(wait, stream.read_buf(&mut buf)) => r,
            () = shutdown.cancelled() => return Ok(()),
        };
        match read {
            Err(_) => return Err(RespError::Idle),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
    }
}

/// Writes and clears `out`, within `deadline` (a client that never reads
/// its answers does not hold the connection forever).
async fn write(stream: &mut Conn, out: &mut BytesMut, deadline: Duration) -> Result<(), RespError> {
    if out.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(deadline, stream.write_all(out)).await {
        Ok(r) => r?,
        Err(_) => return Err(RespError::Idle),
    }
    out.clear();
    Ok(())
}
