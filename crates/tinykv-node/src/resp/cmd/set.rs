//! `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts|KEEPTTL]`.
//!
//! A write is last-writer-wins: it cannot depend on what is stored, so
//! `NX`, `XX` and `GET` are answered with an error saying so. `KEEPTTL`
//! reads the key's expiry first and writes the value with it (not atomic:
//! an `EXPIRE` between the two is overwritten, as any concurrent write is).

use bytes::Bytes;

use super::{ttl, Command, PutTtl};
use crate::resp::reply::Reply;

/// `SET`.
pub fn set(args: Vec<Bytes>) -> Command {
    let mut expiry: Option<PutTtl> = None;
    let mut keep = false;
    let mut i = 3;
    while let Some(option) = args.get(i) {
        let option = String::from_utf8_lossy(option).to_ascii_uppercase();
        match option.as_str() {
            "NX" | "XX" | "GET" => {
                return Reply::err(format!(
                    "SET {option} is not supported: TinyKV writes are last-writer-wins and cannot depend on the stored value"
                ))
                .into()
            }
            "EX" | "PX" | "EXAT" | "PXAT" if expiry.is_none() && !keep => {
                let Some(n) = args.get(i + 1) else {
                    return Reply::err("syntax error").into();
                };
                match ttl::set_option(&option, n) {
                    Ok(t) => expiry = Some(t),
                    Err(e) => return e.into(),
                }
                i += 2;
            }
            "KEEPTTL" if expiry.is_none() && !keep => {
                keep = true;
                i += 1;
            }
            _ => return Reply::err("syntax error").into(),
        }
    }
    let (key, val) = (args[1].clone(), args[2].clone());
    match (expiry, keep) {
        (Some(t), _) => Command::WriteExpiring(key, val, t),
        (None, true) => Command::WriteKeepTtl(key, val),
        (None, false) => Command::Write(vec![(key, val)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(args: &[&str]) -> Command {
        set(args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect())
    }

    fn error_of(c: Command) -> String {
        match c {
            Command::Reply(Reply::Error(e)) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn plain_set_is_one_write() {
        assert_eq!(
            set_of(&["set", "k", "v"]),
            Command::Write(vec![(Bytes::from("k"), Bytes::from("v"))])
        );
    }

    #[test]
    fn conditional_options_are_refused_with_the_reason() {
        for opt in ["nx", "XX", "get"] {
            let e = error_of(set_of(&["set", "k", "v", opt]));
            assert!(e.contains("last-writer-wins"), "{e}");
        }
        assert_eq!(
            error_of(set_of(&["set", "k", "v", "bogus"])),
            "ERR syntax error"
        );
        assert_eq!(
            error_of(set_of(&["set", "k", "v", "EX"])),
            "ERR syntax error"
        );
        assert!(error_of(set_of(&["set", "k", "v", "EX", "x"])).contains("not an integer"));
        assert!(error_of(set_of(&["set", "k", "v", "PX", "0"])).contains("invalid expire"));
        assert_eq!(
            error_of(set_of(&["set", "k", "v", "EX", "1", "PX", "5"])),
            "ERR syntax error"
        );
        assert_eq!(
            error_of(set_of(&["set", "k", "v", "KEEPTTL", "EX", "5"])),
            "ERR syntax error"
        );
    }

    #[test]
    fn expiry_options_make_expiring_writes() {
        let (k, v) = (Bytes::from("k"), Bytes::from("v"));
        assert_eq!(
            set_of(&["set", "k", "v", "ex", "10"]),
            Command::WriteExpiring(k.clone(), v.clone(), PutTtl::AfterMs(10_000))
        );
        assert_eq!(
            set_of(&["set", "k", "v", "PXAT", "1700000000000"]),
            Command::WriteExpiring(k.clone(), v.clone(), PutTtl::AtUs(1_700_000_000_000_000))
        );
        assert_eq!(
            set_of(&["set", "k", "v", "keepttl"]),
            Command::WriteKeepTtl(k, v)
        );
    }
}
