//! Leader election through a `coordination.k8s.io/v1` Lease.
//!
//! Several operator replicas may run; only the holder of the Lease
//! reconciles. A replica takes the Lease when it is free, expired, or already
//! its own, with an optimistic-concurrency replace (the `resourceVersion`
//! guards against two replicas taking it at once), renews it periodically,
//! and hands it back on shutdown. [`LeaderElector::wait_for_leadership`] and
//! [`LeaderElector::spawn_renewal`] are the loops the operator process runs.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tracing::{error, warn};

use crate::Result;

/// Who may take a Lease, and for how long.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// Whether `identity` may take (or keep) the lease described by `spec` at `now`.
pub fn may_take(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => {
            let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1));
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            match renewed {
                Some(t) => t + SignedDuration::from_secs(secs) < now,
                None => true,
            }
        }
    }
}

impl LeaderElector {
    /// Elector for Lease `namespace/name`, held as `identity` for `duration`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    /// How often to renew (a third of the lease duration).
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1)
    }

    /// Take or renew the Lease. `Ok(true)` when this replica holds it now.
    pub async fn try_acquire(&self) -> Result<bool> {
        let now = Timestamp::now();
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(self.duration_secs()),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Some(mut lease) => {
                if !may_take(lease.spec.as_ref(), &self.identity, now) {
                    return Ok(false);
                }
                let mut spec = lease.spec.take().unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration_secs());
                lease.spec = Some(spec);
                // metadata.resourceVersion is kept: a concurrent writer makes this 409.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Try to take the Lease every renew interval until this replica holds
    /// it. `false` when `stop` turns `true` (or its sender is gone) first.
    pub async fn wait_for_leadership(&self, stop: &watch::Receiver<bool>) -> bool {
        let mut ticker = tokio::time::interval(self.renew_interval());
        loop {
            let mut stop = stop.clone();
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
            match self.try_acquire().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "lease acquisition failed"),
            }
        }
    }

    /// Keep renewing the Lease in a background task until `stop` turns
    /// `true`. A replica that cannot renew within the lease duration has lost
    /// leadership and must stop reconciling: the task then sends `true` on
    /// `lost` (as it does when another replica took the Lease).
    pub fn spawn_renewal(&self, mut stop: watch::Receiver<bool>, lost: watch::Sender<bool>) {
        let renewer = self.clone();
        tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            let mut ticker = tokio::time::interval(renewer.renew_interval());
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                match renewer.try_acquire().await {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => {
                        error!("leadership lost to another replica");
                        let _ = lost.send(true);
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "lease renewal failed");
                        if last_ok.elapsed() >= renewer.duration {
                            error!("could not renew the lease in time; stopping");
                            let _ = lost.send(true);
                            return;
                        }
                    }
                }
            }
        });
    }

    /// Give the Lease up if this replica holds it, so a standby takes over at once.
    pub async fn release(&self) -> Result<()> {
        if let Some(mut lease) = self.api.get_opt(&self.name).await? {
            let mine = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.identity.as_str());
            if mine {
                if let Some(spec) = lease.spec.as_mut() {
                    spec.holder_identity = None;
                    spec.renew_time = None;
                }
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_s: i64, dur: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(dur),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_s).expect("ts"))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn lease_rules() {
        let now = Timestamp::from_second(100).expect("ts");
        assert!(may_take(None, "a", now), "no lease yet");
        assert!(may_take(Some(&spec(None, 99, 15)), "a", now), "released");
        assert!(
            may_take(Some(&spec(Some("a"), 99, 15)), "a", now),
            "renew own"
        );
        assert!(
            !may_take(Some(&spec(Some("b"), 99, 15)), "a", now),
            "held by b"
        );
        assert!(
            may_take(Some(&spec(Some("b"), 80, 15)), "a", now),
            "b expired"
        );
        assert!(
            !may_take(Some(&spec(Some("b"), 85, 15)), "a", now),
            "exactly at expiry still b's"
        );
    }
}
