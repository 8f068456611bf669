//! Cleanup: removing this node's copies of ranges it no longer replicates.
//!
//! When a node joins, the old replicas of the ranges it takes over keep
//! their copies, and no delete or repair reaches those copies again. If the
//! ranges ever came back to them (the joiner is decommissioned or removed)
//! the old values would come back with them, deleted keys included. So a
//! node that lost ranges marks cleanup pending (durably), and a round, run
//! once membership is stable, pushes each page of its leftovers to every
//! current replica of its range (LWW, so nothing they have is overwritten
//! by an older version), waits for all of their acknowledgements, and only
//! then removes exactly those versions (a newer one written meanwhile is
//! kept). Leftovers older than the tombstone grace are removed without a
//! push: a delete of them may have been purged on the replicas already. Rounds run automatically after a ring change and on demand
//! (`tinykv.Admin/Cleanup`), paced to `--cleanup-pages-per-second`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::detector::{Detector, Health};
use crate::error::ReplicaError;
use crate::membership::{MemberState, Membership};
use crate::metrics::{Backlog, Metrics};
use crate::pages::{page_size, Pages};
use crate::ring::{Ring, TokenRange};
use crate::storage::{ScanLimit, StorageError, Store, WriteOp};
use crate::transfer::{Transfer, PAGE};
use crate::version::Record;

mod marker;
mod plan;
use marker::Marker;
pub use marker::CLEANUP_MARKER;
use plan::{summary, Pacer};

/// How long an automatic round waits after one that could not finish
/// (a replica down, membership changing) before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Why cleaning one range stopped.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// This node's storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A replica of the range is not answering heartbeats: its copy cannot
    /// be verified, so nothing of the range is removed.
    #[error("range ({start}, {end}]: replica {node} is {health}")]
    Unreachable {
        /// Range start (exclusive).
        start: u64,
        /// Range end (inclusive).
        end: u64,
        /// The replica.
        node: String,
        /// Its health as this node sees it.
        health: &'static str,
    },
    /// A replica did not acknowledge a page.
    #[error("range ({start}, {end}]: {node} did not take a page: {error}")]
    Peer {
        /// Range start (exclusive).
        start: u64,
        /// Range end (inclusive).
        end: u64,
        /// The replica.
        node: String,
        /// Why its call failed.
        error: ReplicaError,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Versions removed from this node.
    pub keys_removed: u64,
    /// Ranges from which versions were removed.
    pub ranges_cleaned: u64,
    /// Every leftover was verified on its replicas and removed.
    pub complete: bool,
    /// What happened, or why the round is incomplete.
    pub message: String,
}

/// Where cleanup stands on this node.
#[derive(Clone, Debug, Default)]
pub struct CleanupProgress {
    /// This node lost ranges and may still hold copies of them.
    pub pending: bool,
    /// A round is running.
    pub running: bool,
    /// The running round's share of ranges done, 0 to 1.
    pub fraction: f64,
    /// Rounds finished since the node started.
    pub rounds_finished: u64,
    /// The last finished round.
    pub last: Option<RoundReport>,
}

/// What cleanup is built from.
pub struct CleanupParts {
    /// The data directory (where the pending marker lives).
    pub data_dir: PathBuf,
    /// This node's storage.
    pub store: Store,
    /// The member table and rings.
    pub membership: Arc<Membership>,
    /// Peer health: a range is cleaned only while its replicas are up.
    pub detector: Arc<Detector>,
    /// Pushes pages to the replicas.
    pub transfer: Transfer,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
    /// `--tombstone-grace`: leftovers older than it are dropped, never
    /// pushed (see `plan::pushable`).
    pub tombstone_grace: Duration,
    /// Non-empty pages per second a round may clean (0: no limit).
    pub pages_per_second: u32,
    /// Whether rounds start by themselves (else only on demand).
    pub automatic: bool,
    /// How long the ring must stay unchanged before an automatic round,
    /// so every member has heard of the change.
    pub settle: Duration,
}

struct State {
    pending: bool,
    /// Bumped whenever the node loses ranges: a round clears `pending`
    /// only if no loss happened since it started.
    epoch: u64,
    ring: Arc<Ring>,
    ring_since: Instant,
    running: bool,
    ranges_total: u64,
    ranges_done: u64,
    rounds_started: u64,
    rounds_finished: u64,
    /// The highest round id asked for on demand.
    requested: u64,
    next_auto: Instant,
    last: Option<RoundReport>,
}

/// This node's cleanup of the ranges it no longer replicates.
pub struct Cleanup {
    id: String,
    parts: CleanupParts,
    marker: Marker,
    state: Mutex<State>,
}

impl Cleanup {
    /// Cleanup of node `id`; pending when the data directory says so.
    pub fn new(id: &str, parts: CleanupParts) -> Self {
        let marker = Marker::new(&parts.data_dir);
        let pending = marker.is_set();
        parts.metrics.cleanup_pending.set(i64::from(pending));
        let now = Instant::now();
        let state = State {
            pending,
            epoch: 0,
            ring: parts.membership.read_ring(),
            ring_since: now,
            running: false,
            ranges_total: 0,
            ranges_done: 0,
            rounds_started: 0,
            rounds_finished: 0,
            requested: 0,
            next_auto: now,
            last: None,
        };
        Cleanup {
            id: id.to_string(),
            parts,
            marker,
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node may hold copies of ranges it lost, as of its
    /// current ring.
    pub fn pending(&self) -> bool {
        self.observe();
        self.state().pending
    }

    /// Where cleanup stands.
    pub fn progress(&self) -> CleanupProgress {
        self.observe();
        let st = self.state();
        let fraction = if st.ranges_total == 0 {
            0.0
        } else {
            st.ranges_done as f64 / st.ranges_total as f64
        };
        CleanupProgress {
            pending: st.pending,
            running: st.running,
            fraction,
            rounds_finished: st.rounds_finished,
            last: st.last.clone(),
        }
    }

    /// Asks for a round now (after the running one, if any); returns its
    /// id: it has finished once `rounds_finished` reaches it.
    pub fn request(&self) -> u64 {
        let mut st = self.state();
        let id = st.rounds_started + 1;
        st.requested = st.requested.max(id);
        id
    }

    /// Notes a ring change: when it took ranges from this node, cleanup
    /// becomes pending, durably, before anything else can happen.
    fn observe(&self) {
        let ring = self.parts.membership.read_ring();
        let mut st = self.state();
        if Arc::ptr_eq(&ring, &st.ring) {
            return;
        }
        let lost = plan::lost_ranges(&st.ring, &ring, &self.id);
        st.ring = ring;
        st.ring_since = Instant::now();
        if !lost {
            return;
        }
        st.epoch += 1;
        if !st.pending {
            if let Err(e) = self.marker.set() {
                tracing::warn!(error = %e, "cannot write the cleanup marker");
            }
            st.pending = true;
            self.parts.metrics.cleanup_pending.set(1);
            tracing::info!(id = %self.id, "ranges moved away from this node: cleanup pending");
        }
    }

    /// The loop's tick: notes ring changes and runs a round when one was
    /// asked for, or when cleanup is pending and the ring has settled.
    pub async fn tick(&self) {
        self.observe();
        let due = {
            let st = self.state();
            let now = Instant::now();
            st.requested > st.rounds_started
                || (self.parts.automatic
                    && st.pending
                    && now.duration_since(st.ring_since) >= self.parts.settle
                    && now >= st.next_auto)
        };
        if due {
            self.run().await;
        }
    }

    /// Runs one round and records its outcome.
    async fn run(&self) {
        let id = {
            let mut st = self.state();
            st.rounds_started += 1;
            st.running = true;
            st.ranges_total = 0;
            st.ranges_done = 0;
            st.rounds_started
        };
        let report = self.round().await;
        if report.keys_removed > 0 || !report.complete {
            tracing::info!(keys_removed = report.keys_removed, complete = report.complete, message = %report.message, "cleanup round finished");
        }
        let mut st = self.state();
        st.running = false;
        st.rounds_finished = id;
        if !report.complete {
            st.next_auto = Instant::now() + RETRY_AFTER;
        }
        st.last = Some(report);
    }

    /// Why a round cannot run now: this node is not a normal member, or a
    /// member is joining or leaving (ranges are moving).
    fn unsettled(&self) -> Option<String> {
        let members = self.parts.membership.members();
        if let Some(m) = members.iter().find(|m| m.id == self.id) {
            if m.state != MemberState::Normal {
                return Some(format!("{} is {}, not normal", self.id, m.state));
            }
        }
        members
            .iter()
            .find(|m| matches!(m.state, MemberState::Joining | MemberState::Leaving))
            .map(|m| format!("membership is changing: {} is {}", m.id, m.state))
    }

    /// One round over every range this node does not replicate.
    #[tracing::instrument(level = "debug", name = "cleanup_round", skip(self))]
    async fn round(&self) -> RoundReport {
        if let Some(why) = self.unsettled() {
            return RoundReport {
                message: why,
                ..Default::default()
            };
        }
        let ring = self.parts.membership.read_ring();
        let epoch = self.state().epoch;
        let ranges = plan::unowned(&ring, &self.id);
        self.state().ranges_total = ranges.len() as u64;
        let mut report = RoundReport::default();
        let mut reasons = Vec::new();
        let mut pacer = Pacer::new(self.parts.pages_per_second, Instant::now());
        let mut backlog = match self.measure(&ranges).await {
            Ok(total) => Backlog::start(&self.parts.metrics.cleanup_pending_bytes, total),
            Err(e) => {
                reasons.push(e.to_string());
                return self.finish(report, &reasons, epoch);
            }
        };
        for r in &ranges {
            if !Arc::ptr_eq(&ring, &self.parts.membership.read_ring()) {
                reasons.push("the ring changed during the round".to_string());
                break;
            }
            match self.clean_range(r, &mut pacer, &mut backlog).await {
                Ok((removed, kept)) => {
                    report.keys_removed += removed;
                    report.ranges_cleaned += u64::from(removed > 0);
                    if kept > 0 {
                        reasons.push(format!(
                            "range ({}, {}]: {kept} keys were written during the round",
                            r.start, r.end
                        ));
                    }
                }
                Err(CleanupError::ShuttingDown) => {
                    reasons.push(CleanupError::ShuttingDown.to_string());
                    break;
                }
                Err(e) => reasons.push(e.to_string()),
            }
            self.state().ranges_done += 1;
        }
        if reasons.is_empty() {
            backlog.finish();
        }
        self.finish(report, &reasons, epoch)
    }

    /// A round's report, complete when nothing stopped it.
    fn finish(&self, mut report: RoundReport, reasons: &[String], epoch: u64) -> RoundReport {
        report.complete = reasons.is_empty();
        report.message = summary(&report, reasons);
        if report.complete {
            self.clear_pending(epoch);
        }
        report
    }

    /// Bytes of this node's versions in `ranges`: what a round has to remove.
    async fn measure(&self, ranges: &[TokenRange]) -> Result<u64, CleanupError> {
        let mut total = 0;
        for r in ranges {
            total += Pages::bytes_in(&self.parts.store, r.start, r.end).await?;
        }
        Ok(total)
    }

    /// Cleans one range page by page: each page goes to every replica of
    /// the range, and once all have acknowledged it, exactly those versions
    /// are removed here. Returns the versions removed and those kept
    /// because a newer version arrived meanwhile.
    async fn clean_range(
        &self,
        r: &TokenRange,
        pacer: &mut Pacer,
        backlog: &mut Backlog,
    ) -> Result<(u64, u64), CleanupError> {
        let mut pages = Pages::new(r.start, r.end, ScanLimit::count(PAGE));
        let (mut removed, mut kept) = (0, 0);
        while let Some(page) = pages.next(&self.parts.store).await? {
            if page.is_empty() {
                continue;
            }
            self.check_replicas_up(r)?;
            let now = crate::hlc::wall_micros();
            let grace = self.parts.tombstone_grace;
            let fresh: Vec<(Bytes, Record)> = page
                .iter()
                .filter(|(_, rec)| plan::pushable(rec.timestamp, now, grace))
                .cloned()
                .collect();
            if !fresh.is_empty() {
                self.push_to_replicas(r, &fresh).await?;
            }
            let len = page.len() as u64;
            let bytes = page_size(&page);
            let ops = page
                .into_iter()
                .map(|(key, record)| WriteOp::Purge { key, record })
                .collect();
            let done = self.parts.store.write(ops).await?;
            let n = done.iter().filter(|d| **d).count() as u64;
            removed += n;
            kept += len - n;
            self.parts.metrics.cleanup_keys_removed.inc_by(n);
            backlog.done(bytes);
            self.pause(pacer.after_page(Instant::now())).await?;
        }
        Ok((removed, kept))
    }

    /// Fails unless every replica of `r` answers heartbeats.
    fn check_replicas_up(&self, r: &TokenRange) -> Result<(), CleanupError> {
        for node in &r.replicas {
            let health = self.parts.detector.get(node).health;
            if health != Health::Up {
                return Err(CleanupError::Unreachable {
                    start: r.start,
                    end: r.end,
                    node: node.clone(),
                    health: match health {
                        Health::Unknown => "not heard from yet",
                        other => other.as_str(),
                    },
                });
            }
        }
        Ok(())
    }

    /// Pushes `page` to every replica of `r` at once; fails unless every
    /// one acknowledged it (each call has the transfer deadline).
    async fn push_to_replicas(
        &self,
        r: &TokenRange,
        page: &[(Bytes, Record)],
    ) -> Result<(), CleanupError> {
        let calls = r.replicas.iter().map(|node| async move {
            let res = self.parts.transfer.push(node, page.to_vec()).await;
            (node, res)
        });
        for (node, res) in futures::future::join_all(calls).await {
            if let Err(error) = res {
                return Err(CleanupError::Peer {
                    start: r.start,
                    end: r.end,
                    node: node.clone(),
                    error,
                });
            }
        }
        Ok(())
    }

    /// Waits `d` (at least yields), unless the node shuts down first.
    async fn pause(&self, d: Duration) -> Result<(), CleanupError> {
        if d.is_zero() {
            tokio::task::yield_now().await;
            return Ok(());
        }
        tokio::select! {
            _ = self.parts.shutdown.cancelled() => Err(CleanupError::ShuttingDown),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Clears the pending marker after a complete round, unless the node
    /// lost ranges again since it started (`epoch`).
    fn clear_pending(&self, epoch: u64) {
        let mut st = self.state();
        if st.epoch != epoch || !st.pending {
            return;
        }
        if let Err(e) = self.marker.clear() {
            tracing::warn!(error = %e, "cannot remove the cleanup marker; cleanup stays pending");
            return;
        }
        st.pending = false;
        self.parts.metrics.cleanup_pending.set(0);
        tracing::info!(id = %self.id, "cleanup complete: no copies of lost ranges left");
    }
}
