//! Background loops, all of one shape: run a round every interval until the
//! node shuts down. Rounds never overlap within a loop.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs `round` every `interval` until `shutdown` (a round in progress is
/// dropped at shutdown).
pub fn every<F, Fut>(
    shutdown: &CancellationToken,
    name: &'static str,
    interval: Duration,
    round: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = round() => {}
            }
        }
        tracing::debug!(loop_name = name, "background loop stopped");
    })
}
