//! `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts|KEEPTTL]`.
//!
//! A write is last-writer-wins: it cannot depend on what is stored, so
//! `NX`, `XX` and `GET` are answered with an error saying so.

use bytes::Bytes;

use super::{integer, ttl, Command};
use crate::resp::reply::Reply;

/// `SET`.
pub fn set(args: Vec<Bytes>) -> Command {
    // Every option this build knows ends the command with an error, so
    // the first one decides.
    if let Some(option) = args.get(3) {
        let i = 3;
        let option = String::from_utf8_lossy(option).to_ascii_uppercase();
        match option.as_str() {
            "NX" | "XX" | "GET" => {
                return Reply::err(format!(
                    "SET {option} is not supported: TinyKV writes are last-writer-wins and cannot depend on the stored value"
                ))
                .into()
            }
            "EX" | "PX" | "EXAT" | "PXAT" => {
                let Some(n) = args.get(i + 1) else {
                    return Reply::err("syntax error").into();
                };
                match integer(n) {
                    Ok(n) if n > 0 => {}
                    Ok(_) => return Reply::err("invalid expire time in 'set' command").into(),
                    Err(e) => return e.into(),
                }
                return ttl::unavailable(&format!("SET {option}")).into();
            }
            "KEEPTTL" => return ttl::unavailable("SET KEEPTTL").into(),
            _ => return Reply::err("syntax error").into(),
        }
    }
    Command::Write(vec![(args[1].clone(), args[2].clone())])
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
    }
}
