//! `COMMAND`, `COMMAND COUNT`, `COMMAND LIST`, `COMMAND INFO name...` and
//! `COMMAND DOCS [name...]`, in Redis 7's shapes (enough for redis-cli's
//! hints and for client libraries that look commands up).

use bytes::Bytes;

use super::printable;
use super::table::{find, Spec, COMMANDS};
use crate::resp::reply::Reply;

/// `COMMAND [subcommand ...]`.
pub fn command(args: Vec<Bytes>) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::Array(COMMANDS.iter().map(info).collect());
    };
    let names = || {
        args[2..]
            .iter()
            .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
    };
    match String::from_utf8_lossy(sub).to_ascii_lowercase().as_str() {
        "count" => Reply::Int(COMMANDS.len() as i64),
        "list" => Reply::Array(COMMANDS.iter().map(|s| Reply::text(s.name)).collect()),
        "info" => Reply::Array(
            names()
                .map(|n| find(&n).map_or(Reply::Null, info))
                .collect(),
        ),
        "docs" if args.len() == 2 => Reply::Map(COMMANDS.iter().map(docs).collect()),
        "docs" => Reply::Map(names().filter_map(|n| find(&n)).map(docs).collect()),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try COMMAND COUNT, LIST, INFO or DOCS.",
            printable(sub)
        )),
    }
}

/// A command's `COMMAND INFO` entry.
fn info(s: &Spec) -> Reply {
    Reply::Array(vec![
        Reply::text(s.name),
        Reply::Int(s.arity),
        Reply::Array(s.flags.iter().map(|f| Reply::Simple(f)).collect()),
        Reply::Int(s.first_key),
        Reply::Int(s.last_key),
        Reply::Int(s.step),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// A command's `COMMAND DOCS` entry.
fn docs(s: &Spec) -> (Reply, Reply) {
    let t = Reply::text;
    (
        t(s.name),
        Reply::Map(vec![
            (t("summary"), t(s.summary)),
            (t("since"), t("1.0.0")),
            (t("group"), t(s.group)),
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &[&str]) -> Reply {
        command(
            args.iter()
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect(),
        )
    }

    #[test]
    fn every_command_is_described() {
        let Reply::Array(all) = call(&["command"]) else {
            panic!("not an array")
        };
        assert_eq!(all.len(), COMMANDS.len());
        assert_eq!(
            call(&["command", "count"]),
            Reply::Int(COMMANDS.len() as i64)
        );
        let Reply::Array(one) = call(&["command", "info", "GET", "nope"]) else {
            panic!()
        };
        assert_eq!(one[1], Reply::Null);
        let Reply::Map(docs) = call(&["command", "docs", "set"]) else {
            panic!()
        };
        assert_eq!(docs.len(), 1);
        assert!(call(&["command", "bogus"]).is_error());
    }
}
