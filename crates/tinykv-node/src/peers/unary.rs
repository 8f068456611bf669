//! The peer calls that are not the coalesced exchange: hints (one call per
//! batch of hints, or one `Write` each for an older peer), versions a peer
//! left out of a batch answer, and the unary batch calls of peers without
//! `ExchangeStream`.

use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::internal as pb;
use tokio::time::Instant;

use super::{PeerConn, Peers, ReadItem};
use crate::error::ReplicaError;
use crate::version::{keyed, Record};

impl Peers {
    /// Stores a version on the node at `addr` as a hint for `owner`.
    pub async fn write_hint(
        &self,
        addr: &str,
        owner: &str,
        key: Bytes,
        record: Record,
        deadline: Instant,
    ) -> Result<(), ReplicaError> {
        let mut client = self.client(addr)?;
        let mut req = tonic::Request::new(pb::ReplicaWrite {
            key,
            record: Some(record.into()),
            hint_for: owner.to_string(),
            from: self.self_id.clone(),
        });
        req.set_timeout(remaining(deadline));
        // Boxed: a unary call's future is kilobytes, and every replica
        // write future that might get here would carry it.
        Box::pin(async move { client.write(req).await })
            .await
            .map(|_| ())
            .map_err(|s| ReplicaError::from_status(&s))
    }

    /// Stores versions on the node at `addr` as hints for `owner`, in one
    /// `WriteHints` call; a node without it gets one `Write` per version,
    /// all at once.
    pub async fn write_hints(
        &self,
        addr: &str,
        owner: &str,
        versions: Vec<(Bytes, Record)>,
        deadline: Instant,
    ) -> Result<(), ReplicaError> {
        let mut client = self.client(addr)?;
        let mut req = tonic::Request::new(pb::ReplicaHintBatch {
            records: versions.iter().map(|(k, r)| keyed(k, r)).collect(),
            hint_for: owner.to_string(),
            from: self.self_id.clone(),
        });
        req.set_timeout(remaining(deadline));
        match client.write_hints(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                let each = versions
                    .into_iter()
                    .map(|(key, record)| self.write_hint(addr, owner, key, record, deadline));
                futures::future::join_all(each)
                    .await
                    .into_iter()
                    .collect::<Result<Vec<()>, ReplicaError>>()
                    .map(|_| ())
            }
            Err(s) => Err(ReplicaError::from_status(&s)),
        }
    }
}

/// Answers a read some of whose versions the peer left out of a batch
/// answer to keep it under the message limit: each of those is asked
/// alone (a lone version fits), all at once, under the read's deadline.
pub(super) async fn read_omitted(
    client: PeerConn,
    item: ReadItem,
    results: Vec<pb::ReplicaReadResult>,
) {
    let timeout = remaining(item.deadline);
    let asks = item.keys.iter().zip(results).map(|(key, res)| {
        let mut client = client.clone();
        let key = key.clone();
        async move {
            if !res.omitted {
                return Ok(res.record.map(Record::from));
            }
            let mut req = tonic::Request::new(pb::ReplicaRead { key });
            req.set_timeout(timeout);
            match client.read(req).await {
                Ok(r) if !r.get_ref().omitted => Ok(r.into_inner().record.map(Record::from)),
                Ok(_) => Err(ReplicaError::Malformed("version omitted again".into())),
                Err(s) => Err(ReplicaError::from_status(&s)),
            }
        }
    });
    let answer = futures::future::join_all(asks)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, ReplicaError>>();
    let _ = item.reply.send(answer);
}

/// One exchange as the unary `WriteBatch` and `ReadBatch` calls that every
/// version of the peer service has.
pub(super) async fn legacy_exchange(
    client: &PeerConn,
    msg: pb::ReplicaExchange,
    deadline: Instant,
) -> Result<Vec<pb::ReplicaReadResult>, ReplicaError> {
    let timeout = remaining(deadline);
    let (mut wc, mut rc) = (client.clone(), client.clone());
    let writes = async {
        if msg.writes.is_empty() {
            return Ok(());
        }
        let mut req = tonic::Request::new(pb::ReplicaWriteBatch {
            records: msg.writes,
            from: msg.from,
        });
        req.set_timeout(timeout);
        wc.write_batch(req)
            .await
            .map(|_| ())
            .map_err(|s| ReplicaError::from_status(&s))
    };
    let reads = async {
        if msg.reads.is_empty() {
            return Ok(Vec::new());
        }
        let n = msg.reads.len();
        let mut req = tonic::Request::new(pb::ReplicaReadBatch {
            keys: msg.reads,
            may_omit: msg.may_omit,
        });
        req.set_timeout(timeout);
        match rc.read_batch(req).await {
            Ok(r) if r.get_ref().results.len() == n => Ok(r.into_inner().results),
            Ok(_) => Err(ReplicaError::Malformed(
                "batch answer of the wrong length".into(),
            )),
            Err(s) => Err(ReplicaError::from_status(&s)),
        }
    };
    let (w, r) = tokio::join!(writes, reads);
    w?;
    r
}

/// What is left until `deadline`, as a call timeout (at least 1 ms).
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}
