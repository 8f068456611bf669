//! Parsing commands: each is answered at once (connection and server
//! commands, errors) or becomes reads or writes for the pipeline's batch.
//! One file per group of commands; `table.rs` lists them all.

use bytes::Bytes;

use super::reply::Reply;
use super::session::Session;
use super::Shared;

mod auth;
mod client;
mod command;
mod conn;
mod info;
mod keys;
mod set;
pub(crate) mod table;
mod ttl;

pub use ttl::{ttl_answer, ExpireArg, PutTtl};

/// Most keys one command may name (`MGET`, `MSET` pairs, `DEL`,
/// `EXISTS`): a gRPC batch's limit.
pub const MAX_KEYS: usize = crate::service::client::MAX_BATCH_OPS;

/// How a read command's answer is made from its reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadShape {
    /// The value or nil.
    Get,
    /// An array of values or nils.
    MGet,
    /// How many were found.
    Exists,
    /// The time to live (`TTL`, or `PTTL` with `millis`).
    Ttl {
        /// Milliseconds instead of seconds.
        millis: bool,
    },
}

/// What a command asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Answered already.
    Reply(Reply),
    /// Reads of these keys.
    Read(ReadShape, Vec<Bytes>),
    /// Writes of these values (`OK` once all are acknowledged).
    Write(Vec<(Bytes, Bytes)>),
    /// `SET` of a value that expires.
    WriteExpiring(Bytes, Bytes, PutTtl),
    /// `SET ... KEEPTTL`: the value keeps the key's current expiry.
    WriteKeepTtl(Bytes, Bytes),
    /// `EXPIRE`, `PEXPIRE` or `PERSIST` of a key.
    Expire(Bytes, ExpireArg),
    /// `DEL` of these keys.
    Del(Vec<Bytes>),
    /// `QUIT`: answer `OK` and close.
    Quit,
}

impl From<Reply> for Command {
    fn from(r: Reply) -> Command {
        Command::Reply(r)
    }
}

/// `args` (the name first, never empty) as a command for `session`.
pub fn parse(args: Vec<Bytes>, session: &mut Session, shared: &Shared) -> Command {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let Some(spec) = table::find(&name) else {
        return unknown(&args).into();
    };
    if !spec.arity_ok(args.len()) {
        return Reply::err(format!("wrong number of arguments for '{name}' command")).into();
    }
    if !session.authed && !matches!(name.as_str(), "auth" | "hello" | "ping" | "quit") {
        if shared.check.as_ref().is_some_and(|c| c.wants_certificate()) {
            return Reply::Error(
                "NOAUTH this node requires a client certificate signed by its CA, shown in the TLS handshake (redis-cli --tls --cacert ca.pem --cert client.pem --key client.key)".into(),
            )
            .into();
        }
        return Reply::Error("NOAUTH Authentication required.".into()).into();
    }
    tracing::trace!(command = %name, args = args.len() - 1, "RESP command");
    match name.as_str() {
        "get" => Command::Read(ReadShape::Get, vec![args[1].clone()]),
        "mget" => keys::read(ReadShape::MGet, args),
        "exists" => keys::read(ReadShape::Exists, args),
        "del" => keys::del(args),
        "set" => set::set(args),
        "mset" => keys::mset(args),
        "expire" => ttl::expire(args, false),
        "pexpire" => ttl::expire(args, true),
        "persist" => ttl::persist(args),
        "ttl" => ttl::ttl(args, false),
        "pttl" => ttl::ttl(args, true),
        "ping" => conn::ping(args).into(),
        "echo" => Reply::Bulk(args[1].clone()).into(),
        "select" => conn::select(&args[1]).into(),
        "quit" => Command::Quit,
        "tinykv.consistency" => conn::consistency(args, session).into(),
        "auth" => auth::auth(args, session, shared).into(),
        "hello" => auth::hello(args, session, shared).into(),
        "client" => client::client(args, session).into(),
        "command" => command::command(args).into(),
        "info" => info::info(args, shared).into(),
        _ => unknown(&args).into(),
    }
}

/// Redis's answer to a command it does not know.
fn unknown(args: &[Bytes]) -> Reply {
    let mut text = format!(
        "unknown command '{}', with args beginning with:",
        printable(&args[0])
    );
    for a in args.iter().skip(1).take(8) {
        text.push_str(&format!(" '{}'", printable(a)));
    }
    Reply::err(text)
}

/// An argument quoted in an error: at most 128 characters of it.
pub(crate) fn printable(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(128)]).into_owned()
}

/// An argument as an integer, or Redis's error for one that is not.
pub(crate) fn integer(b: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Reply::err("value is not an integer or out of range"))
}

/// The error for a command naming more keys than a batch may hold.
pub(crate) fn too_many_keys(n: usize) -> Reply {
    Reply::err(format!(
        "command names {n} keys; the limit is {MAX_KEYS} (a batch's)"
    ))
}
