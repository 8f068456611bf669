//! The replica seam: what the coordinator needs of one replica (write
//! versions, keep them as hints for an owner, read keys; each by a
//! deadline), behind one trait, so the coordinator neither knows nor cares
//! whether a replica is this node's store or a peer over gRPC, and can be
//! tested against a fake replica set in memory.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::directory::Directory;
use crate::hints::Hints;
use crate::quorum::CallResult;
use crate::storage::{Store, WriteOp};
use crate::version::Record;
pub use crate::version::Versions;

/// The replicas of the cluster as the coordinator sees them: every call
/// names the node it goes to, and fails with a typed
/// [`crate::error::ReplicaError`]. The futures own what they need, so the
/// coordinator can run them in a quorum or hand them to a task.
pub trait Replicas: Send + Sync + 'static {
    /// Applies `versions` on replica `node` (LWW), answered together.
    fn write(
        &self,
        node: &str,
        versions: Versions,
        deadline: Instant,
    ) -> BoxFuture<'static, CallResult<()>>;

    /// Keeps `versions` on `node` as hints for `owner`, answered together.
    fn write_hints(
        &self,
        node: &str,
        owner: &str,
        versions: Versions,
        deadline: Instant,
    ) -> BoxFuture<'static, CallResult<()>>;

    /// Replica `node`'s version of each of `keys`, in order.
    fn read(
        &self,
        node: &str,
        keys: Vec<Bytes>,
        deadline: Instant,
    ) -> BoxFuture<'static, CallResult<Vec<Option<Record>>>>;
}

/// The real replicas: this node's own store (and hint store) for calls
/// naming it, a peer's service over its coalescing queue for the others.
#[derive(Clone)]
pub struct NodeReplicas {
    id: Arc<str>,
    store: Store,
    hints: Arc<Hints>,
    directory: Directory,
    clock: Arc<Clock>,
}

impl NodeReplicas {
    /// Replicas as seen from node `id`.
    pub fn new(
        id: &str,
        store: Store,
        hints: Arc<Hints>,
        directory: Directory,
        clock: Arc<Clock>,
    ) -> Self {
        NodeReplicas {
            id: id.into(),
            store,
            hints,
            directory,
            clock,
        }
    }

    fn is_self(&self, node: &str) -> bool {
        *self.id == *node
    }
}

impl Replicas for NodeReplicas {
    fn write(
        &self,
        node: &str,
        versions: Versions,
        deadline: Instant,
    ) -> BoxFuture<'static, CallResult<()>> {
        if self.is_self(node) {
            let store = self.store.clone();
            return async move {
                let ops = versions
                    .into_iter()
                    .map(|(key, record)| WriteOp::Put { key, record })
                    .collect();
                store.write(ops).await?;
                Ok(())
            }
            .boxed();
        }
        let (directory, node) = (self.directory.clone(), node.to_string());
        async move {
            let addr = directory.address(&node)?;
            directory.peers().write_all(&addr, versions, deadline).await
        }
        .boxed()
    }

    fn write_hints(
        &self,
        node: &str,
        owner: &str,
        versions: Versions,
        deadline: Instant,
    ) -> BoxFuture<'static, CallResult<()>> {
        let owner = owner.to_string();
        if self.is_self(node) {
            let hints = self.hints.clone();
            return async move { hints.keep(&owner, versions).await }.boxed();
        }
        let (directory, node) = (self.directory.clone(), node.to_string());
        async move {
            let addr = directory.address(&node)?;
            directory
                .peers()
                .write_hints(&addr, &owner, versions, deadline)
                .await
        }
        .boxed()
    }

    fn read(
        &self,
        node: &str,
        keys: Vec<Bytes>,
        deadline: Instant,
    ) -> BoxFuture<'static, CallResult<Vec<Option<Record>>>> {
        if self.is_self(node) {
            let got = keys
                .iter()
                .map(|k| self.store.get(k).map_err(Into::into))
                .collect();
            return futures::future::ready(got).boxed();
        }
        let (directory, clock, node) =
            (self.directory.clone(), self.clock.clone(), node.to_string());
        async move {
            let addr = directory.address(&node)?;
            let recs = directory.peers().read_all(&addr, keys, deadline).await?;
            for r in recs.iter().flatten() {
                clock.observe(r.timestamp, &node);
            }
            Ok(recs)
        }
        .boxed()
    }
}
