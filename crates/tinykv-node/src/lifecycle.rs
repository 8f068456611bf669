//! Joining and leaving the ring: a joining node streams its future ranges
//! from their current replicas; decommission (a live node streams its data
//! to the nodes that take its ranges over, then leaves); removenode (a dead
//! node is dropped and its ranges re-replicated from the survivors).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinykv_auth::{Signed, Signer};
use tinykv_proto::tinykv as pb;
use tinykv_proto::tinykv::admin_client::AdminClient;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::antientropy::{AntiEntropy, RepairError, RepairReport};
use crate::cleanup::Cleanup;
use crate::clock::Clock;
use crate::detector::{Detector, Health};
use crate::dialer::Dialer;
use crate::gossip::Gossip;
use crate::membership::{MemberState, Membership};
use crate::metrics::Metrics;
use crate::storage::{StorageError, Store};
use crate::transfer::Transfer;

mod cleanup_check;
mod error;
mod identify;
mod join;
mod leave;
pub use error::LifecycleError;

/// Versions per page when a leaving node streams its data out.
const STREAM_PAGE: usize = 1024;

/// File in the data directory recording that this node has been a full
/// member, so a restart never re-joins (and never re-streams).
pub const MEMBER_MARKER: &str = "member-state";

/// The state the member marker in `data_dir` records: none for a node that
/// never was a full member (or an unreadable marker, said in the log).
pub fn read_member_marker(data_dir: &std::path::Path) -> Option<MemberState> {
    let path = data_dir.join(MEMBER_MARKER);
    let text = std::fs::read_to_string(&path).ok()?;
    match text.trim().parse() {
        Ok(state) => Some(state),
        // Markers of older versions could be torn by a crash: a member.
        Err(_) => {
            tracing::warn!(path = %path.display(), "member marker unreadable; taken as a full member");
            Some(MemberState::Normal)
        }
    }
}

/// Progress of this node's own join or decommission.
#[derive(Clone, Debug, Default)]
pub struct StreamProgress {
    /// "joining", "leaving" or empty.
    pub operation: String,
    /// Keys (or, joining, ranges) streamed so far.
    pub keys_streamed: u64,
    /// Keys (or ranges) to stream in all.
    pub keys_total: u64,
    /// Last error, if streaming is retrying.
    pub last_error: Option<String>,
    /// Why the node is joining or waiting, when it was not simply started
    /// with `--join` and found its peers: it lost its data, or no peer
    /// has answered yet.
    pub reason: Option<String>,
}

impl StreamProgress {
    /// The share streamed, 0 to 1.
    pub fn fraction(&self) -> f64 {
        if self.keys_total == 0 {
            0.0
        } else {
            self.keys_streamed as f64 / self.keys_total as f64
        }
    }
}

/// Where a decommission stands.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaveProgress {
    /// The leaving node's state ("leaving", "left", ...).
    pub state: String,
    /// Keys streamed so far.
    pub keys_streamed: u64,
    /// The share streamed, 0 to 1.
    pub progress: f64,
    /// What is happening, or the last streaming error.
    pub message: String,
}

/// How a removal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// What happened, naming any node whose re-replication failed.
    pub message: String,
    /// Versions moved by the re-replication rounds.
    pub keys_rereplicated: u64,
}

/// What the lifecycle needs besides the other subsystems.
pub struct LifecycleParts {
    /// The data directory (where the member marker lives).
    pub data_dir: PathBuf,
    /// This node's storage.
    pub store: Store,
    /// The clock stamping membership changes.
    pub clock: Arc<Clock>,
    /// The member table.
    pub membership: Arc<Membership>,
    /// Peer health.
    pub detector: Arc<Detector>,
    /// Heartbeats, used to spread a state change at once.
    pub gossip: Arc<Gossip>,
    /// Bulk transfers to and from peers.
    pub transfer: Transfer,
    /// Repair rounds (re-replication after a removal).
    pub antientropy: Arc<AntiEntropy>,
    /// This node's cleanup, asked before a decommission or removal.
    pub cleanup: Arc<Cleanup>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
    /// Signs this node's admin calls to other nodes (a forwarded
    /// decommission, removenode's repair requests) with the cluster secret.
    pub signer: Option<Signer>,
    /// Plaintext or TLS, for those admin calls.
    pub dialer: Arc<Dialer>,
    /// `--bootstrap`: a `--join` node that hears from no peer within
    /// `wait_bound` starts a new cluster instead of waiting.
    pub bootstrap: bool,
    /// How long a `--join --bootstrap` node waits for a peer's answer
    /// before it starts a new cluster (`--membership-convergence-timeout`).
    pub wait_bound: Duration,
    /// How long a node on an empty data directory without `--join` waits,
    /// before serving, for a peer to say whether it knew the node.
    pub identify_wait: Duration,
}

/// This node's joins and leaves, and removals of dead nodes.
pub struct Lifecycle {
    id: String,
    parts: LifecycleParts,
    progress: Mutex<StreamProgress>,
    /// What the member marker records, kept here so that checking it on
    /// every heartbeat reads no file.
    marker: Mutex<Option<MemberState>>,
    /// Whether this node knows what it is: false only for a node started
    /// without `--join` on an empty data directory until a peer answered
    /// (see `lifecycle/identify.rs`).
    identified: AtomicBool,
}

impl Lifecycle {
    /// The lifecycle of node `id`.
    pub fn new(id: &str, parts: LifecycleParts) -> Self {
        let marker = read_member_marker(&parts.data_dir);
        Lifecycle {
            id: id.to_string(),
            identified: AtomicBool::new(
                marker.is_some() || parts.gossip.own_state() != Some(MemberState::Normal),
            ),
            marker: Mutex::new(marker),
            parts,
            progress: Mutex::new(StreamProgress::default()),
        }
    }

    /// Progress of this node's own join or decommission.
    pub fn progress(&self) -> StreamProgress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut StreamProgress)) {
        if let Ok(mut p) = self.progress.lock() {
            f(&mut p);
        }
    }

    /// Starts this node, before it serves: joins the cluster in the
    /// background if it is a new joining member; a node on an empty data
    /// directory without `--join` first finds out whether the cluster knew
    /// it (see `identify`); else records that it is a full member.
    pub async fn start(self: &Arc<Self>) {
        if self.parts.gossip.own_state() == Some(MemberState::Joining) {
            self.spawn_join();
        } else if !self.identified.load(Ordering::Acquire) {
            self.identify().await;
        } else if self.parts.gossip.own_state() == Some(MemberState::Normal) {
            self.write_member_marker(MemberState::Normal);
            self.stamp_own_row();
        }
    }

    /// Streams this node's ranges in, in the background.
    fn spawn_join(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.join().await }.instrument(tracing::info_span!("join")));
    }

    /// Records that this node left or was removed once its own row says so,
    /// so that a restart with this data directory never serves as a member
    /// again (a removed node refuses to start; a node that left stays left).
    pub fn note_own_state(self: &Arc<Self>) {
        self.settle_identity();
        let own = self.parts.gossip.own_state();
        let Some(state @ (MemberState::Left | MemberState::Removed)) = own else {
            return;
        };
        if self.marker.lock().is_ok_and(|m| *m == Some(state)) {
            return;
        }
        if state == MemberState::Removed {
            tracing::error!(id = %self.id, "this node was removed from the cluster (removenode): its data is stale; wipe its data directory and start it with --join to add it again");
        }
        self.write_member_marker(state);
    }

    /// Records in the data directory that this node is a full member
    /// (atomically and durably: a crash never leaves a torn marker).
    fn write_member_marker(&self, state: MemberState) {
        let path = self.parts.data_dir.join(MEMBER_MARKER);
        match crate::durable_file::write_atomic(&path, state.to_string().as_bytes()) {
            // Recorded only once on disk, so a failed write is tried again.
            Ok(()) => {
                if let Ok(mut m) = self.marker.lock() {
                    *m = Some(state);
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write member marker")
            }
        }
    }

    fn admin_client(
        &self,
        id: &str,
    ) -> Result<AdminClient<Signed<tonic::transport::Channel>>, LifecycleError> {
        let addr = self
            .parts
            .membership
            .address_of(id)
            .ok_or_else(|| LifecycleError::UnknownNode(id.to_string()))?;
        let ch = self
            .parts
            .dialer
            .endpoint(&addr)
            .map_err(|e| LifecycleError::BadAddress(format!("{addr}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(AdminClient::new(Signed::new(ch, self.parts.signer.clone())))
    }

    fn leave_progress(&self) -> LeaveProgress {
        let state = self.parts.gossip.own_state().unwrap_or(MemberState::Normal);
        let p = self.progress();
        let progress = match state {
            MemberState::Left => 1.0,
            _ => p.fraction(),
        };
        LeaveProgress {
            state: state.to_string(),
            keys_streamed: p.keys_streamed,
            progress,
            message: p
                .last_error
                .unwrap_or_else(|| format!("{} is {state}", self.id)),
        }
    }

    /// Starts or reports on the decommission of `id` (forwarded to that node
    /// when it is not this one; empty is this one). Idempotent: calling
    /// again reports progress.
    #[tracing::instrument(skip(self))]
    pub async fn decommission(self: &Arc<Self>, id: &str) -> Result<LeaveProgress, LifecycleError> {
        if !id.is_empty() && id != self.id {
            return self.forward_decommission(id).await;
        }
        match self.parts.gossip.own_state() {
            Some(MemberState::Normal) => {
                let remaining = self
                    .parts
                    .membership
                    .members()
                    .iter()
                    .filter(|m| m.id != self.id && m.state == MemberState::Normal)
                    .count();
                if remaining == 0 {
                    return Err(LifecycleError::LastNode);
                }
                // This node's own leftovers count too: it streams every
                // version it holds to the new owners.
                self.check_cleanup_done(None).await?;
                self.parts.gossip.announce(MemberState::Leaving);
                tracing::info!(id = %self.id, "decommission started: streaming ranges to new owners");
                let me = self.clone();
                tokio::spawn(
                    async move { me.stream_out().await }
                        .instrument(tracing::info_span!("decommission_stream")),
                );
            }
            Some(MemberState::Leaving) | Some(MemberState::Left) => {}
            other => {
                return Err(LifecycleError::WrongState(format!(
                    "{} cannot be decommissioned in state {:?}",
                    self.id, other
                )))
            }
        }
        Ok(self.leave_progress())
    }

    /// Asks node `id` to decommission itself.
    async fn forward_decommission(&self, id: &str) -> Result<LeaveProgress, LifecycleError> {
        let member = self
            .parts
            .membership
            .get(id)
            .ok_or_else(|| LifecycleError::UnknownNode(id.to_string()))?;
        if member.state == MemberState::Left {
            return Ok(LeaveProgress {
                state: "left".into(),
                keys_streamed: 0,
                progress: 1.0,
                message: format!("{id} has left"),
            });
        }
        let mut client = self.admin_client(id)?;
        let r = client
            .decommission(pb::DecommissionRequest {
                node_id: id.to_string(),
            })
            .await
            .map_err(|s| LifecycleError::Forward {
                node: id.to_string(),
                code: s.code(),
                message: s.message().to_string(),
            })?
            .into_inner();
        Ok(LeaveProgress {
            state: r.state,
            keys_streamed: r.keys_streamed,
            progress: r.progress,
            message: r.message,
        })
    }

    /// Runs `attempt` until it succeeds, recording each failure and
    /// pausing a second before the next try; None when the node shuts down
    /// first.
    async fn retry<T, E, F>(&self, what: &str, mut attempt: impl FnMut() -> F) -> Option<T>
    where
        E: std::fmt::Display,
        F: std::future::Future<Output = Result<T, E>>,
    {
        loop {
            match attempt().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    if !self.pause_before_retry(what, e.to_string()).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Records a streaming failure and waits a second before the retry;
    /// false when the node is shutting down instead.
    async fn pause_before_retry(&self, what: &str, error: String) -> bool {
        tracing::warn!(error = %error, "{what} failed; retrying");
        self.update(|p| p.last_error = Some(error));
        tokio::select! {
            _ = self.parts.shutdown.cancelled() => false,
            _ = tokio::time::sleep(Duration::from_secs(1)) => true,
        }
    }

    /// Drops a dead node for good and re-replicates its ranges: every
    /// remaining normal member runs an anti-entropy round on the new ring.
    #[tracing::instrument(skip(self))]
    pub async fn remove_node(&self, id: &str) -> Result<Removal, LifecycleError> {
        if id == self.id {
            return Err(LifecycleError::RemoveSelf);
        }
        let member = self
            .parts
            .membership
            .get(id)
            .ok_or_else(|| LifecycleError::UnknownNode(id.to_string()))?;
        if member.state != MemberState::Removed {
            let detector = &self.parts.detector;
            if !detector.is_down(id) && detector.get(id).health != Health::Unknown {
                return Err(LifecycleError::StillAlive(id.to_string()));
            }
            self.check_cleanup_done(Some(id)).await?;
            self.parts.membership.set(
                id,
                &member.addr,
                MemberState::Removed,
                self.parts.clock.now(),
            );
            detector.forget(id);
            self.parts.gossip.round().await;
        }
        let mut moved = self.parts.antientropy.round().await?;
        let failures = self.repair_others(&mut moved).await;
        let message = if failures.is_empty() {
            format!("{id} removed; its ranges were re-replicated")
        } else {
            format!(
                "{id} removed; re-replication incomplete on {}",
                failures.join(", ")
            )
        };
        Ok(Removal {
            message,
            keys_rereplicated: moved.keys_sent + moved.keys_received,
        })
    }

    /// Asks every other normal member for a repair round, adding what
    /// they moved to `moved`; returns the members whose round failed.
    async fn repair_others(&self, moved: &mut RepairReport) -> Vec<String> {
        let others: Vec<String> = self
            .parts
            .membership
            .members()
            .into_iter()
            .filter(|m| m.id != self.id && m.state == MemberState::Normal)
            .map(|m| m.id)
            .collect();
        let mut failures = Vec::new();
        for other in others {
            let res = match self.admin_client(&other) {
                Ok(mut c) => c
                    .repair(pb::RepairRequest {})
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| s.message().to_string()),
                Err(e) => Err(e.to_string()),
            };
            match res {
                Ok(r) => {
                    moved.keys_sent += r.keys_sent;
                    moved.keys_received += r.keys_received;
                }
                Err(e) => failures.push(format!("{other}: {e}")),
            }
        }
        failures
    }
}

impl From<StorageError> for LifecycleError {
    fn from(e: StorageError) -> Self {
        LifecycleError::Storage(e)
    }
}

impl From<RepairError> for LifecycleError {
    fn from(e: RepairError) -> Self {
        LifecycleError::Repair(e)
    }
}
