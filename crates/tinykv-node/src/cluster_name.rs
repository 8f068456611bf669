//! Cluster names: nodes of two clusters that can reach each other (an
//! address reused, two namespaces on one flat network, a seed list that
//! names the wrong host) must not merge their member tables through gossip.
//!
//! Every node-to-node call carries the caller's `--cluster-name` in the
//! `tinykv-cluster` header, and a node refuses a call whose header names a
//! different cluster before the call does anything (Cassandra's
//! `cluster_name` check). A side that has no name (nodes of earlier versions,
//! or started without the flag) is not checked, so a running cluster can be
//! given a name by a rolling restart: named and unnamed nodes keep talking
//! while the restart goes on.

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The request header that carries the caller's cluster name.
pub const HEADER: &str = "tinykv-cluster";

/// Longest cluster name accepted.
pub const MAX_LEN: usize = 128;

/// Checks a `--cluster-name`: 1 to 128 characters of letters, digits and
/// `-_.:/` (it travels as a header, and the operator uses `namespace/name`).
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_LEN {
        return Err(format!(
            "--cluster-name must be 1 to {MAX_LEN} characters, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:/".contains(*c)))
    {
        return Err(format!(
            "--cluster-name {name:?} has {c:?}; use letters, digits and -_.:/"
        ));
    }
    Ok(())
}

/// Adds this node's cluster name to every outgoing node-to-node call.
#[derive(Clone, Debug, Default)]
pub struct Stamp(Option<AsciiMetadataValue>);

impl Stamp {
    /// A stamp for `name` (none: calls go out without the header).
    pub fn new(name: Option<&str>) -> Self {
        Stamp(name.and_then(|n| n.parse().ok()))
    }
}

impl Interceptor for Stamp {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(HEADER, v.clone());
        }
        Ok(req)
    }
}

/// Refuses node-to-node calls from another cluster.
#[derive(Clone, Debug, Default)]
pub struct Check(Option<String>);

impl Check {
    /// A check for a node of cluster `name` (none: every call passes).
    pub fn new(name: Option<&str>) -> Self {
        Check(name.map(str::to_string))
    }

    /// Why a call with `metadata` must be refused, if it must.
    pub fn refusal(&self, metadata: &MetadataMap) -> Option<Status> {
        let ours = self.0.as_deref()?;
        let theirs = metadata.get(HEADER)?.to_str().unwrap_or("<not ASCII>");
        (theirs != ours).then(|| {
            Status::failed_precondition(format!(
                "{MISMATCH}: the caller belongs to {theirs:?}, this node to {ours:?}"
            ))
        })
    }
}

/// How a refusal's message starts, so a caller can tell it from other
/// failed preconditions.
pub const MISMATCH: &str = "cluster name mismatch";

impl Interceptor for Check {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match self.refusal(req.metadata()) {
            Some(status) => Err(status),
            None => Ok(req),
        }
    }
}

/// True when `status` is another node refusing this one's cluster name.
pub fn is_mismatch(status: &Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition && status.message().starts_with(MISMATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(name: Option<&str>) -> Request<()> {
        Stamp::new(name)
            .call(Request::new(()))
            .unwrap_or_else(|s| panic!("stamp refused: {s}"))
    }

    #[test]
    fn names_are_validated() {
        for good in ["tinykv", "prod/orders", "a", "ns.name:v1_x-y"] {
            assert!(validate(good).is_ok(), "{good}");
        }
        assert!(validate(&"x".repeat(MAX_LEN)).is_ok());
        for bad in ["", "has space", "é", "new\nline"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        assert!(validate(&"x".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn only_a_different_name_on_both_sides_is_refused() {
        let same = stamped(Some("prod/orders"));
        let other = stamped(Some("test/orders"));
        let unnamed = stamped(None);
        assert!(unnamed.metadata().get(HEADER).is_none());

        let named = Check::new(Some("prod/orders"));
        assert!(named.refusal(same.metadata()).is_none());
        assert!(named.refusal(unnamed.metadata()).is_none());
        let refused = named.refusal(other.metadata());
        let status = refused.unwrap_or_else(|| Status::ok(""));
        assert!(is_mismatch(&status), "{status:?}");
        assert!(status.message().contains("\"test/orders\""), "{status:?}");
        assert!(status.message().contains("\"prod/orders\""), "{status:?}");

        let open = Check::new(None);
        assert!(open.refusal(other.metadata()).is_none());
    }

    #[test]
    fn the_interceptor_refuses_before_the_handler() {
        let mut check = Check::new(Some("a"));
        assert!(check.call(stamped(Some("a"))).is_ok());
        assert!(check.call(stamped(Some("b"))).is_err());
        assert!(!is_mismatch(&Status::failed_precondition("other reason")));
    }
}
