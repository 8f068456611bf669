//! Background loops, all of one shape: run a round every interval until the
//! node shuts down. Rounds never overlap within a loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::node::Node;

/// Runs `round` every `interval` until shutdown.
pub fn every<F, Fut>(
    node: &Arc<Node>,
    name: &'static str,
    interval: Duration,
    round: F,
) -> JoinHandle<()>
where
    F: Fn(Arc<Node>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let node = node.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = node.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = node.shutdown.cancelled() => break,
                _ = round(node.clone()) => {}
            }
        }
        tracing::debug!(loop_name = name, "background loop stopped");
    })
}

/// Starts every background loop of a node.
pub fn spawn_all(node: &Arc<Node>) -> Vec<JoinHandle<()>> {
    let hb = node.config.heartbeat_interval;
    let mut loops = vec![
        every(node, "heartbeat", hb, |n| async move {
            crate::gossip::heartbeat_round(&n).await
        }),
        every(
            node,
            "hints",
            Duration::from_millis(500).max(hb),
            |n| async move { crate::hints::replay_round(&n).await },
        ),
    ];
    let ae = node.config.anti_entropy_interval;
    if !ae.is_zero() {
        loops.push(every(node, "anti-entropy", ae, |n| async move {
            if let Err(e) = n.anti_entropy_round().await {
                tracing::warn!(error = %e, "anti-entropy round failed");
            }
        }));
    }
    loops
}
