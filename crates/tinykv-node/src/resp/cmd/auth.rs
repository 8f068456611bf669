//! `AUTH [username] token` and `HELLO [protover [AUTH username token]
//! [SETNAME name]]`. With `--client-auth token` a connection must show
//! one of the node's client tokens (the same ones gRPC clients send as
//! `authorization: Bearer`) before any command but `AUTH`, `HELLO`,
//! `PING` and `QUIT`; the username is not checked.

use bytes::Bytes;

use super::{integer, printable};
use crate::resp::reply::Reply;
use crate::resp::session::Session;
use crate::resp::Shared;

/// Redis's text for a refused token.
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// `AUTH`.
pub fn auth(args: Vec<Bytes>, session: &mut Session, shared: &Shared) -> Reply {
    if args.len() > 3 {
        return Reply::err("syntax error");
    }
    let token = &args[args.len() - 1];
    match check(token, session, shared) {
        Ok(()) => Reply::OK,
        Err(e) => e,
    }
}

/// Checks `token` and marks the session authenticated if it is good.
fn check(token: &[u8], session: &mut Session, shared: &Shared) -> Result<(), Reply> {
    let Some(gate) = &shared.check else {
        return Err(Reply::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    };
    match gate.check_token("resp", token) {
        Ok(()) => {
            session.authed = true;
            Ok(())
        }
        // The gate's own words: no token can stand in for a certificate.
        Err(message) if gate.wants_certificate() => Err(Reply::err(&message)),
        Err(_) => Err(Reply::Error(WRONGPASS.into())),
    }
}

/// `HELLO`'s arguments.
#[derive(Default)]
struct Hello {
    proto: Option<u8>,
    token: Option<Bytes>,
    name: Option<Bytes>,
}

fn parse_hello(args: &[Bytes]) -> Result<Hello, Reply> {
    let mut hello = Hello::default();
    let Some(version) = args.get(1) else {
        return Ok(hello);
    };
    hello.proto = match integer(version) {
        Ok(2) => Some(2),
        Ok(3) => Some(3),
        Ok(_) => return Err(Reply::Error("NOPROTO unsupported protocol version".into())),
        Err(_) => {
            return Err(Reply::err(
                "Protocol version is not an integer or out of range",
            ))
        }
    };
    let mut i = 2;
    while i < args.len() {
        match String::from_utf8_lossy(&args[i])
            .to_ascii_uppercase()
            .as_str()
        {
            "AUTH" if i + 2 < args.len() => {
                hello.token = Some(args[i + 2].clone());
                i += 3;
            }
            "SETNAME" if i + 1 < args.len() => {
                hello.name = Some(args[i + 1].clone());
                i += 2;
            }
            _ => {
                return Err(Reply::err(format!(
                    "Syntax error in HELLO option '{}'",
                    printable(&args[i])
                )))
            }
        }
    }
    Ok(hello)
}

/// `HELLO`: answers what a Redis 7 server does (server, version, proto,
/// id, mode, role, modules), in the protocol just chosen.
pub fn hello(args: Vec<Bytes>, session: &mut Session, shared: &Shared) -> Reply {
    let hello = match parse_hello(&args) {
        Ok(h) => h,
        Err(e) => return e,
    };
    if let Some(token) = &hello.token {
        if let Err(e) = check(token, session, shared) {
            return e;
        }
    }
    if !session.authed {
        return Reply::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
    }
    if let Some(name) = hello.name {
        let set = vec![
            Bytes::from_static(b"client"),
            Bytes::from_static(b"setname"),
            name,
        ];
        let r = super::client::client(set, session);
        if r.is_error() {
            return r;
        }
    }
    if let Some(p) = hello.proto {
        session.proto = p;
    }
    let t = Reply::text;
    Reply::Map(vec![
        (t("server"), t("redis")),
        (t("version"), t(super::info::REDIS_VERSION)),
        (t("proto"), Reply::Int(i64::from(session.proto))),
        (t("id"), Reply::Int(session.id as i64)),
        (t("mode"), t("standalone")),
        (t("role"), t("master")),
        (t("modules"), Reply::Array(Vec::new())),
    ])
}
