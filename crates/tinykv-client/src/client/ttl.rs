//! Per-key time to live: puts with an expiry, `expire`, `persist`, and
//! reading a key's remaining time.

use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::tinykv as pb;

use super::Client;
use crate::{ClientError, Consistency};

/// The expiry a write asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// Never expires.
    #[default]
    Never,
    /// Expires this long after the version's timestamp (sent in whole
    /// milliseconds, rounded up, at least 1 ms).
    After(Duration),
    /// Expires at this time, microseconds since the epoch (the cluster's
    /// hybrid logical clock, which follows the wall clock).
    AtMicros(u64),
}

impl Expiry {
    /// `(ttl_ms, expires_at_us)` as the request fields carry them.
    pub(crate) fn to_wire(self) -> (u64, u64) {
        match self {
            Expiry::Never => (0, 0),
            Expiry::After(d) => {
                let ms = d.as_nanos().div_ceil(1_000_000).max(1);
                (u64::try_from(ms).unwrap_or(u64::MAX), 0)
            }
            // 0 would mean "none": the epoch itself is long past anyway.
            Expiry::AtMicros(at) => (0, at.max(1)),
        }
    }
}

/// A key's time to live as a read saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTtl {
    /// No live value: missing, deleted or expired.
    Missing,
    /// A live value without an expiry.
    Persistent,
    /// A live value that expires after this long.
    Remaining(Duration),
}

impl Client {
    /// Gives the live value of `key` a new expiry (a new version with the
    /// same value): true if it did, false if the key had no live value.
    /// The key is read and written at `consistency`.
    pub async fn expire(
        &self,
        key: impl Into<Bytes>,
        expiry: Expiry,
        consistency: Consistency,
    ) -> Result<bool, ClientError> {
        if expiry == Expiry::Never {
            return self.persist(key, consistency).await;
        }
        let (ttl_ms, expires_at_us) = expiry.to_wire();
        self.expire_call(key.into(), ttl_ms, expires_at_us, false, consistency)
            .await
    }

    /// Removes the expiry of `key`'s live value: true if it did, false if
    /// the key had no live value.
    pub async fn persist(
        &self,
        key: impl Into<Bytes>,
        consistency: Consistency,
    ) -> Result<bool, ClientError> {
        self.expire_call(key.into(), 0, 0, true, consistency).await
    }

    /// The time to live of `key`, read at `consistency`.
    pub async fn ttl(
        &self,
        key: impl Into<Bytes>,
        consistency: Consistency,
    ) -> Result<KeyTtl, ClientError> {
        Ok(match self.get(key, consistency).await? {
            None => KeyTtl::Missing,
            Some(v) => v
                .ttl_remaining
                .map_or(KeyTtl::Persistent, KeyTtl::Remaining),
        })
    }

    async fn expire_call(
        &self,
        key: Bytes,
        ttl_ms: u64,
        expires_at_us: u64,
        persist: bool,
        consistency: Consistency,
    ) -> Result<bool, ClientError> {
        let (level, replicas) = consistency.to_wire();
        let channel = self.pick(&key).channel.clone();
        let req = pb::ExpireRequest {
            key,
            ttl_ms,
            expires_at_us,
            persist,
            consistency: level as i32,
            timeout_ms: self.timeout_ms(),
            strict_quorum: false,
            replicas,
        };
        let resp = self.kv(channel).expire(self.request(req)).await?;
        Ok(resp.into_inner().status == pb::ReadStatus::Found as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_go_on_the_wire_in_whole_milliseconds_never_as_none() {
        assert_eq!(Expiry::Never.to_wire(), (0, 0));
        assert_eq!(
            Expiry::After(Duration::from_secs(10)).to_wire(),
            (10_000, 0)
        );
        assert_eq!(
            Expiry::After(Duration::from_micros(1_500)).to_wire(),
            (2, 0)
        );
        assert_eq!(Expiry::After(Duration::ZERO).to_wire(), (1, 0));
        assert_eq!(Expiry::AtMicros(0).to_wire(), (0, 1));
        assert_eq!(Expiry::AtMicros(77).to_wire(), (0, 77));
    }
}
