//! `EXPIRE`, `PEXPIRE`, `TTL`, `PTTL`, `PERSIST` and `SET`'s expiry
//! options: they need per-key TTL, which this build does not have yet,
//! so they answer an error naming the missing feature.

use crate::resp::reply::Reply;

/// The answer of a command (or `SET` option) that needs per-key TTL.
pub fn unavailable(what: &str) -> Reply {
    Reply::err(format!(
        "{} needs per-key TTL, which this TinyKV build does not have yet",
        what.to_ascii_uppercase()
    ))
}
