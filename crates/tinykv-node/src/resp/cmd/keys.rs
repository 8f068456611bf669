//! `MGET`, `EXISTS`, `DEL` and `MSET` (`GET` is one line in `parse`, `SET`
//! has its own file).

use bytes::Bytes;

use super::{too_many_keys, Command, ReadShape, MAX_KEYS};
use crate::resp::reply::Reply;

/// `MGET key...` / `EXISTS key...`.
pub fn read(shape: ReadShape, mut args: Vec<Bytes>) -> Command {
    args.remove(0);
    if args.len() > MAX_KEYS {
        return too_many_keys(args.len()).into();
    }
    Command::Read(shape, args)
}

/// `DEL key...`.
pub fn del(mut args: Vec<Bytes>) -> Command {
    args.remove(0);
    if args.len() > MAX_KEYS {
        return too_many_keys(args.len()).into();
    }
    Command::Del(args)
}

/// `MSET key value [key value ...]`.
pub fn mset(args: Vec<Bytes>) -> Command {
    if args.len().is_multiple_of(2) {
        return Reply::err("wrong number of arguments for 'mset' command").into();
    }
    let pairs: Vec<(Bytes, Bytes)> = args[1..]
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect();
    if pairs.len() > MAX_KEYS {
        return too_many_keys(pairs.len()).into();
    }
    Command::Write(pairs)
}
