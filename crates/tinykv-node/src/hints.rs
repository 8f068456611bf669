//! Hinted handoff: replaying stored hints to their owners once they answer
//! heartbeats again, and dropping hints that are too old.

use std::sync::Arc;

use crate::detector::Health;
use crate::hlc::wall_micros;
use crate::node::Node;
use crate::storage::{Hint, WriteOp};

/// Hints sent to one owner per batch.
const BATCH: usize = 256;

/// One replay round over every owner that has hints.
pub async fn replay_round(node: &Arc<Node>) {
    let stats = match node.store.engine().hint_stats() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "reading hint stats failed");
            return;
        }
    };
    node.metrics.hints_pending.set(stats.count as i64);
    for target in stats.targets {
        if let Err(e) = replay_to(node, &target).await {
            tracing::debug!(target, error = %e, "hint replay stopped");
        }
    }
}

async fn replay_to(node: &Arc<Node>, target: &str) -> Result<(), String> {
    let max_age_us = u64::try_from(node.config.max_hint_age.as_micros()).unwrap_or(u64::MAX);
    loop {
        let hints = node
            .store
            .engine()
            .hints(target, BATCH)
            .map_err(|e| e.to_string())?;
        if hints.is_empty() {
            return Ok(());
        }
        let now = wall_micros();
        let member = node.membership.get(target);
        let gone = member.as_ref().is_none_or(|m| !m.state.in_write_ring());
        let (expired, live): (Vec<_>, Vec<_>) = hints
            .into_iter()
            .partition(|h| gone || now.saturating_sub(h.stored_at_us) > max_age_us);
        if !expired.is_empty() {
            node.metrics.hints_dropped.inc_by(expired.len() as u64);
            tracing::warn!(
                target,
                dropped = expired.len(),
                "dropping expired hints (anti-entropy will repair)"
            );
            delete_hints(node, target, &expired).await?;
        }
        if live.is_empty() {
            continue;
        }
        if member.is_none() || node.detector.get(target).health != Health::Up {
            return Ok(());
        }
        // The same batched push anti-entropy and streaming use.
        let records = live
            .iter()
            .map(|h| (h.key.clone(), h.record.clone()))
            .collect();
        node.push_all(target, records).await?;
        node.metrics.hints_replayed.inc_by(live.len() as u64);
        tracing::info!(target, delivered = live.len(), "hints delivered");
        delete_hints(node, target, &live).await?;
    }
}

/// Deletes delivered or expired hints.
async fn delete_hints(node: &Node, target: &str, hints: &[Hint]) -> Result<(), String> {
    node.store
        .write(vec![WriteOp::DeleteHints {
            target: target.to_string(),
            ids: hints.iter().map(|h| h.id).collect(),
        }])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
