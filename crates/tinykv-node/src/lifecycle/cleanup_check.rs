//! Refusing a decommission or removal while a member may still hold
//! copies of ranges it lost: the ranges of the node that goes would come
//! back to it, and its old copies with them (deleted keys included).

use std::time::Duration;

use tinykv_proto::tinykv as pb;

use super::{Lifecycle, LifecycleError};

/// Deadline of one member's answer on its cleanup.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

impl Lifecycle {
    /// Fails unless every member in the ring except `removing` (a dead
    /// node being removed) answers that its cleanup is done; a member that
    /// cannot be asked blocks too, since it may hold leftovers.
    pub(super) async fn check_cleanup_done(
        &self,
        removing: Option<&str>,
    ) -> Result<(), LifecycleError> {
        let others: Vec<String> = self
            .parts
            .membership
            .members()
            .into_iter()
            .filter(|m| m.state.in_write_ring() && m.id != self.id)
            .filter(|m| Some(m.id.as_str()) != removing)
            .map(|m| m.id)
            .collect();
        let mut pending = Vec::new();
        let mut unasked = Vec::new();
        if self.parts.cleanup.pending() {
            pending.push(self.id.clone());
        }
        let asks = others
            .iter()
            .map(|id| async move { (id, self.ask(id).await) });
        for (id, answer) in futures::future::join_all(asks).await {
            match answer {
                Ok(true) => pending.push(id.clone()),
                Ok(false) => {}
                Err(e) => unasked.push(format!("{id} ({e})")),
            }
        }
        if pending.is_empty() && unasked.is_empty() {
            return Ok(());
        }
        Err(LifecycleError::CleanupPending(refusal(&pending, &unasked)))
    }

    /// Whether member `id` reports cleanup pending.
    async fn ask(&self, id: &str) -> Result<bool, String> {
        let mut client = self.admin_client(id).map_err(|e| e.to_string())?;
        let mut req = tonic::Request::new(pb::CleanupRequest { report_only: true });
        req.set_timeout(ASK_TIMEOUT);
        match tokio::time::timeout(ASK_TIMEOUT, client.cleanup(req)).await {
            Ok(Ok(r)) => Ok(r.into_inner().pending),
            Ok(Err(status)) => Err(status.message().to_string()),
            Err(_) => Err(format!("no answer within {ASK_TIMEOUT:?}")),
        }
    }
}

/// The refusal's message: who has cleanup pending, who could not be asked,
/// and what to do.
fn refusal(pending: &[String], unasked: &[String]) -> String {
    let mut parts = Vec::new();
    if !pending.is_empty() {
        parts.push(format!(
            "cleanup is pending on {}: they may still hold copies of ranges they lost to a joining node, which would come back (deleted keys included) when ranges move again; run `tinykv_client <node> cleanup` against {} (or wait for the automatic cleanup) and retry",
            pending.join(", "),
            if pending.len() == 1 { "it" } else { "each" }
        ));
    }
    if !unasked.is_empty() {
        parts.push(format!(
            "could not ask {} whether its cleanup is done; retry when every member answers",
            unasked.join(", ")
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn the_refusal_names_the_nodes_and_says_what_to_run() {
        let m = refusal(&["node1".into(), "node2".into()], &[]);
        assert!(m.contains("node1, node2"), "{m}");
        assert!(m.contains("tinykv_client <node> cleanup"), "{m}");
        let m = refusal(&[], &["node3 (connection refused)".into()]);
        assert!(
            m.contains("could not ask node3 (connection refused)"),
            "{m}"
        );
    }
}
