//! Leader election through a `coordination.k8s.io/v1` Lease, by the
//! maintained `kube-lease-manager` crate (server-side apply on the Lease,
//! renewal before expiry, a clock-skew grace).
//!
//! Several operator replicas may run; only the holder of the Lease
//! reconciles. [`Leadership::acquire`] waits until this replica holds the
//! Lease (or the process is told to stop); [`Leadership::stop_on_loss`]
//! stops the process when the Lease is lost, since a replica that is no
//! longer leader must not go on acting; [`Leadership::release`] hands the
//! Lease back on a clean shutdown so the next replica takes over at once
//! instead of after the lease duration.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Result;

/// How long a released Lease may take to be handed back before shutdown goes on.
const RELEASE_DEADLINE: Duration = Duration::from_secs(5);

/// This replica's stake in the Lease: a background task keeps trying to
/// take it and renews it while held; `held` says whether it is held.
pub struct Leadership {
    held: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    /// Tells the loss watcher to end (and drop its copy of `held`, whose
    /// last copy closing is what makes the manager release the Lease).
    quit: watch::Sender<bool>,
    watcher: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Starts competing for Lease `namespace/name` as `identity`, held for
    /// `duration` after each renewal (renewed a third of it before expiry).
    pub async fn start(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Result<Self> {
        let secs = duration.as_secs().max(3);
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(secs)
            .with_grace((secs / 3).max(1))
            .with_field_manager(format!("tinykv-operator-{identity}"))
            .build()
            .await?;
        let (held, task) = watch_lease(manager);
        Ok(Self {
            held,
            task,
            quit: watch::channel(false).0,
            watcher: None,
        })
    }

    /// Whether this replica holds the Lease now.
    pub fn is_leader(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits until this replica holds the Lease (`Ok(true)`) or `stop` is
    /// set (`Ok(false)`); an error when the election itself ended (its task
    /// failed), which must not pass for a clean stop.
    pub async fn acquire(&mut self, stop: &watch::Receiver<bool>) -> Result<bool> {
        let mut stop = stop.clone();
        tokio::select! {
            held = self.held.wait_for(|held| *held) => match held {
                Ok(_) => Ok(true),
                Err(_) => Err(crate::Error::LeaseEnded),
            },
            _ = stop.wait_for(|s| *s) => Ok(false),
        }
    }

    /// Sets `lost` when this replica stops holding the Lease (another took
    /// it, or a call on it failed), unless `stop` is set first.
    pub fn stop_on_loss(&mut self, mut stop: watch::Receiver<bool>, lost: watch::Sender<bool>) {
        let mut held = self.held.clone();
        let mut quit = self.quit.subscribe();
        self.watcher = Some(tokio::spawn(async move {
            tokio::select! {
                _ = held.wait_for(|held| !*held) => {
                    warn!("lost the leader lease: stopping");
                    let _ = lost.send(true);
                }
                _ = stop.wait_for(|s| *s) => {}
                _ = quit.wait_for(|q| *q) => {}
            }
        }));
    }

    /// Stops competing and hands the Lease back if held, within a deadline.
    pub async fn release(self) {
        let Self {
            held,
            task,
            quit,
            watcher,
        } = self;
        let _ = quit.send(true);
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
        // Dropping the last receiver tells the manager's task to release.
        drop(held);
        match tokio::time::timeout(RELEASE_DEADLINE, task).await {
            Ok(Ok(Ok(_))) => info!("released the leader lease"),
            Ok(Ok(Err(e))) => warn!(error = %e, "could not release the leader lease"),
            Ok(Err(e)) => warn!(error = %e, "lease task failed"),
            Err(_) => warn!("releasing the leader lease timed out"),
        }
    }
}

/// Competes for the Lease in the background, as kube-lease-manager's own
/// `watch()` does, with one difference: when renewing fails (the API server
/// unreachable, a partition), `watch()` only logs and retries while the
/// channel still says "leader", so a cut-off replica would go on acting
/// after its lease ran out and another took it. Here a failure while
/// holding the Lease reports it lost at once (the process stops and
/// competes again after a restart). Dropping every receiver releases it.
fn watch_lease(
    manager: LeaseManager,
) -> (
    watch::Receiver<bool>,
    JoinHandle<kube_lease_manager::Result<LeaseManager>>,
) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = tx.closed() => {
                    manager.release().await?;
                    return Ok(manager);
                }
                changed = manager.changed() => match changed {
                    Ok(held) => {
                        tx.send_replace(held);
                    }
                    Err(e) => {
                        warn!(error = %e, "leader lease: renewing or taking it failed");
                        tx.send_replace(false);
                        tokio::time::sleep(RETRY_AFTER_ERROR).await;
                    }
                },
            }
        }
    });
    (rx, task)
}

/// Pause before competing again after a failed call on the Lease.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
