//! `Expire`: set or remove a key's expiry (read, then write the value
//! again with the new expiry; see `coordinator/ttl.rs`).

use std::time::{Duration, Instant as StdInstant};

use tinykv_proto::tinykv as pb;
use tokio::time::Instant;
use tonic::Status;

use super::ClientService;
use crate::coordinator::{ExpireOutcome, ExpireRequest};
use crate::service::check_key;
use crate::version::{Expiry, MAX_TTL_MS};

/// The expiry a request asks for: `ttl_ms` from the version's timestamp,
/// or `expires_at_us` absolute, or (`persist`) none; at most one of them
/// (with `persist` allowed, exactly one).
pub(super) fn expiry(ttl_ms: u64, expires_at_us: u64, persist: bool) -> Result<Expiry, Status> {
    match (ttl_ms, expires_at_us, persist) {
        (0, 0, _) => Ok(Expiry::Never),
        (ttl, 0, false) if ttl > MAX_TTL_MS => Err(Status::invalid_argument(format!(
            "ttl_ms is {ttl}; the longest time to live is {MAX_TTL_MS} ms (about 317,000 years)"
        ))),
        (ttl, 0, false) => Ok(Expiry::After(Duration::from_millis(ttl))),
        (0, at, false) => Ok(Expiry::At(at)),
        _ => Err(Status::invalid_argument(
            "give at most one of ttl_ms, expires_at_us and persist",
        )),
    }
}

impl ClientService {
    /// `Expire` for the other front door (RESP), with the request's own
    /// deadline (`timeout_ms`, else the node's request timeout).
    pub(crate) async fn run_expire(
        &self,
        r: pb::ExpireRequest,
    ) -> Result<pb::ExpireResponse, Status> {
        let deadline =
            crate::service::deadline_at(&self.parts.rules, None, r.timeout_ms, Instant::now());
        self.expire_op(r, deadline).await
    }

    /// An expiry change, as `Expire` runs it.
    pub(super) async fn expire_op(
        &self,
        r: pb::ExpireRequest,
        deadline: Instant,
    ) -> Result<pb::ExpireResponse, Status> {
        let started = StdInstant::now();
        let (k, level) = self.needed(r.replicas, "replicas", r.consistency)?;
        let checked = check_key(&r.key).and_then(|()| {
            let e = expiry(r.ttl_ms, r.expires_at_us, r.persist)?;
            if e == Expiry::Never && !r.persist {
                return Err(Status::invalid_argument(
                    "give one of ttl_ms, expires_at_us and persist",
                ));
            }
            Ok(e)
        });
        let expiry = checked
            .inspect_err(|s| self.record::<()>("expire", level, started, &Err(s.clone())))?;
        let req = ExpireRequest {
            key: r.key,
            expiry,
            r: k,
            w: k,
            strict: r.strict_quorum,
            deadline,
            writer: self.parts.id.clone(),
            stamp: self.parts.clock.now(),
        };
        let result = self
            .parts
            .coordinator
            .expire(req)
            .await
            .map_err(Status::from)
            .map(|out| match out {
                ExpireOutcome::NotFound => pb::ExpireResponse {
                    status: pb::ReadStatus::NotFound as i32,
                    ..Default::default()
                },
                ExpireOutcome::Written { record, acks } => pb::ExpireResponse {
                    status: pb::ReadStatus::Found as i32,
                    timestamp: record.timestamp as i64,
                    acks: acks as u32,
                    expires_at_us: record.expires_at,
                },
            });
        self.record("expire", level, started, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_expiry_is_accepted() {
        assert_eq!(expiry(0, 0, false).ok(), Some(Expiry::Never));
        assert_eq!(expiry(0, 0, true).ok(), Some(Expiry::Never));
        assert_eq!(
            expiry(1500, 0, false).ok(),
            Some(Expiry::After(Duration::from_millis(1500)))
        );
        assert_eq!(expiry(0, 77, false).ok(), Some(Expiry::At(77)));
        assert!(expiry(1, 77, false).is_err());
        assert!(expiry(1, 0, true).is_err());
        assert!(expiry(0, 77, true).is_err());
    }

    #[test]
    fn a_time_to_live_past_the_microsecond_range_is_refused_not_made_endless() {
        assert_eq!(
            expiry(MAX_TTL_MS, 0, false).ok(),
            Some(Expiry::After(Duration::from_millis(MAX_TTL_MS)))
        );
        let err = expiry(MAX_TTL_MS + 1, 0, false).expect_err("too long");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("longest time to live"), "{err}");
        assert!(expiry(u64::MAX, 0, false).is_err());
    }
}
