//! `PING`, `SELECT` and `TINYKV.CONSISTENCY`.

use bytes::Bytes;
use tinykv_proto::tinykv::Consistency;

use super::integer;
use crate::resp::reply::Reply;
use crate::resp::session::Session;

/// `PING [message]`.
pub fn ping(args: Vec<Bytes>) -> Reply {
    match args.len() {
        1 => Reply::Simple("PONG"),
        2 => Reply::Bulk(args[1].clone()),
        _ => Reply::err("wrong number of arguments for 'ping' command"),
    }
}

/// `SELECT index`: TinyKV has one keyspace, database 0.
pub fn select(index: &[u8]) -> Reply {
    match integer(index) {
        Ok(0) => Reply::OK,
        Ok(_) => Reply::err("DB index is out of range (TinyKV has database 0 only)"),
        Err(e) => e,
    }
}

/// `TINYKV.CONSISTENCY [ONE|QUORUM|ALL|DEFAULT]`: without an argument,
/// the connection's level; with one, sets it for the connection's later
/// reads and writes (`DEFAULT`: the node's `--default-consistency`).
pub fn consistency(args: Vec<Bytes>, session: &mut Session) -> Reply {
    let Some(level) = args.get(1) else {
        return Reply::Status(name(session.consistency).into());
    };
    if args.len() > 2 {
        return Reply::err("wrong number of arguments for 'tinykv.consistency' command");
    }
    let level = match String::from_utf8_lossy(level).to_ascii_uppercase().as_str() {
        "ONE" => Consistency::One,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "DEFAULT" => Consistency::Default,
        _ => return Reply::err("consistency must be ONE, QUORUM, ALL or DEFAULT"),
    };
    session.consistency = level;
    Reply::OK
}

fn name(level: Consistency) -> &'static str {
    match level {
        Consistency::One => "ONE",
        Consistency::Two => "TWO",
        Consistency::Quorum => "QUORUM",
        Consistency::All => "ALL",
        Consistency::Default => "DEFAULT",
    }
}
