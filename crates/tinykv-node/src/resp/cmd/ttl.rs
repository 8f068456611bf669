//! `EXPIRE`, `PEXPIRE`, `PERSIST`, `TTL`, `PTTL` and `SET`'s expiry
//! options, on TinyKV's per-key TTL: the expiry is part of a version (an
//! absolute HLC time), so an `EXPIRE` is a new version of the key carrying
//! its value (read, then written, at the connection's consistency).

use bytes::Bytes;

use super::{integer, Command, ReadShape};
use crate::resp::reply::Reply;
use crate::version::MAX_TTL_MS;

/// The expiry a `SET` gives its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutTtl {
    /// Lives this many milliseconds from the write (`EX`, `PX`).
    AfterMs(u64),
    /// Ends at this time, microseconds since the epoch (`EXAT`, `PXAT`).
    AtUs(u64),
}

/// What an `EXPIRE`-like command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireArg {
    /// A new time to live in milliseconds; 0 or less deletes the key, as
    /// in Redis.
    Ms(i64),
    /// Remove the expiry (`PERSIST`).
    Persist,
}

/// `SET`'s `EX s`, `PX ms`, `EXAT s`, `PXAT ms` with its number.
pub fn set_option(option: &str, n: &[u8]) -> Result<PutTtl, Reply> {
    let n = integer(n)?;
    let invalid = || Reply::err("invalid expire time in 'set' command");
    let n = u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(invalid)?;
    let ms = match option {
        "EX" | "EXAT" => n.checked_mul(1_000),
        _ => Some(n),
    }
    .filter(|ms| *ms <= MAX_TTL_MS)
    .ok_or_else(invalid)?;
    Ok(match option {
        "EX" | "PX" => PutTtl::AfterMs(ms),
        _ => PutTtl::AtUs(ms * 1_000),
    })
}

/// `EXPIRE key seconds` / `PEXPIRE key ms` (`millis`); the Redis 7
/// conditions (`NX`, `XX`, `GT`, `LT`) would need a conditional write.
pub fn expire(args: Vec<Bytes>, millis: bool) -> Command {
    if let Some(option) = args.get(3) {
        let option = String::from_utf8_lossy(option).to_ascii_uppercase();
        return Reply::err(format!(
            "EXPIRE {option} is not supported: TinyKV writes are last-writer-wins and cannot depend on the stored expiry"
        ))
        .into();
    }
    let n = match integer(&args[2]) {
        Ok(n) => n,
        Err(e) => return e.into(),
    };
    let ms = if millis {
        Some(n)
    } else {
        n.checked_mul(1_000)
    };
    let ms = ms.filter(|ms| ms.unsigned_abs() <= MAX_TTL_MS);
    match ms {
        Some(ms) => Command::Expire(args[1].clone(), ExpireArg::Ms(ms)),
        None => Reply::err("invalid expire time in 'expire' command").into(),
    }
}

/// `PERSIST key`.
pub fn persist(args: Vec<Bytes>) -> Command {
    Command::Expire(args[1].clone(), ExpireArg::Persist)
}

/// `TTL key` / `PTTL key` (`millis`): a read.
pub fn ttl(args: Vec<Bytes>, millis: bool) -> Command {
    Command::Read(ReadShape::Ttl { millis }, vec![args[1].clone()])
}

/// Redis's answer to `TTL`/`PTTL` for a read that found (`found`) a value
/// with `expires_at_us` (0: none) and `remaining_us` left: -2 when there
/// is no key, -1 when it never expires, else the time left, rounded.
pub fn ttl_answer(found: bool, expires_at_us: u64, remaining_us: u64, millis: bool) -> Reply {
    if !found {
        return Reply::Int(-2);
    }
    if expires_at_us == 0 {
        return Reply::Int(-1);
    }
    let ms = remaining_us.saturating_add(500) / 1_000;
    let left = if millis {
        ms
    } else {
        ms.saturating_add(500) / 1_000
    };
    Reply::Int(i64::try_from(left).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Bytes> {
        a.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    #[test]
    fn set_options_become_expiries() {
        assert_eq!(set_option("EX", b"10"), Ok(PutTtl::AfterMs(10_000)));
        assert_eq!(set_option("PX", b"1500"), Ok(PutTtl::AfterMs(1_500)));
        assert_eq!(set_option("EXAT", b"2"), Ok(PutTtl::AtUs(2_000_000)));
        assert_eq!(set_option("PXAT", b"2"), Ok(PutTtl::AtUs(2_000)));
        for bad in [&b"0"[..], b"-5"] {
            assert_eq!(
                set_option("EX", bad),
                Err(Reply::err("invalid expire time in 'set' command"))
            );
        }
        assert!(set_option("EX", b"99999999999999999").is_err(), "overflow");
        assert!(
            set_option("PX", b"99999999999999999").is_err(),
            "past the bound"
        );
        assert!(matches!(
            expire(args(&["pexpire", "k", "99999999999999999"]), true),
            Command::Reply(Reply::Error(e)) if e.contains("invalid expire time")
        ));
        assert!(set_option("EX", b"ten").is_err());
    }

    #[test]
    fn expire_commands_parse() {
        assert_eq!(
            expire(args(&["expire", "k", "7"]), false),
            Command::Expire(Bytes::from("k"), ExpireArg::Ms(7_000))
        );
        assert_eq!(
            expire(args(&["pexpire", "k", "-1"]), true),
            Command::Expire(Bytes::from("k"), ExpireArg::Ms(-1))
        );
        assert!(matches!(
            expire(args(&["expire", "k", "7", "nx"]), false),
            Command::Reply(Reply::Error(e)) if e.contains("EXPIRE NX is not supported")
        ));
        assert_eq!(
            persist(args(&["persist", "k"])),
            Command::Expire(Bytes::from("k"), ExpireArg::Persist)
        );
    }

    #[test]
    fn ttl_answers_follow_redis() {
        assert_eq!(ttl_answer(false, 0, 0, false), Reply::Int(-2));
        assert_eq!(ttl_answer(true, 0, 0, true), Reply::Int(-1));
        assert_eq!(ttl_answer(true, 9, 9_700_000, false), Reply::Int(10));
        assert_eq!(ttl_answer(true, 9, 9_700_000, true), Reply::Int(9_700));
        assert_eq!(ttl_answer(true, 9, 200_000, false), Reply::Int(0));
    }
}
