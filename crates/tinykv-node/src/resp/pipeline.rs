//! Running a connection's pipelined commands: their reads and writes are
//! gathered into one batch for the client service's batch path (so the
//! coordinator makes one call per replica for all of them), and the
//! answers go out in the order the commands came.
//!
//! A batch's writes and reads run at the same time, so a command that
//! reads a key the batch writes (or writes a key it reads) first runs the
//! batch gathered so far: a pipeline sees its own writes, as with Redis.
//! Two writes of one key in a batch are stamped in order, so the later
//! one wins. `DEL` runs on its own (a read, then the tombstones).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use tinykv_proto::tinykv as pb;
use tracing::Instrument;

use super::cmd::{self, Command, ExpireArg, PutTtl, ReadShape};
use super::reply::Reply;
use super::session::Session;
use super::Shared;

use pb::operation_result::Result as Outcome;

/// Commands gathered for one batch.
pub(crate) struct Pipeline<'a> {
    shared: &'a Shared,
    session: &'a mut Session,
    /// Each command's answer, with the protocol it is written in.
    slots: Vec<(u8, Option<Reply>)>,
    ops: Vec<pb::Operation>,
    pending: Vec<Pending>,
    read_keys: HashSet<Bytes>,
    written_keys: HashSet<Bytes>,
}

/// A command waiting for its batch: where its operations are.
struct Pending {
    slot: usize,
    shape: Shape,
    first: usize,
    count: usize,
}

#[derive(Clone, Copy)]
enum Shape {
    Read(ReadShape),
    Write,
}

impl<'a> Pipeline<'a> {
    /// A pipeline for one connection's `session`.
    pub fn new(shared: &'a Shared, session: &'a mut Session) -> Pipeline<'a> {
        Pipeline {
            shared,
            session,
            slots: Vec::new(),
            ops: Vec::new(),
            pending: Vec::new(),
            read_keys: HashSet::new(),
            written_keys: HashSet::new(),
        }
    }

    /// Runs `requests` in order and appends their answers to `out`; true
    /// when the client asked to quit.
    pub async fn run(mut self, requests: Vec<Vec<Bytes>>, out: &mut BytesMut) -> bool {
        let span = if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!(
                "request",
                op = "resp",
                client = self.session.id,
                commands = requests.len(),
                consistency = tracing::field::Empty
            )
        } else {
            tracing::Span::none()
        };
        let quit = async {
            let mut quit = false;
            for args in requests {
                if self.step(args).await {
                    quit = true;
                    break;
                }
            }
            self.flush().await;
            quit
        }
        .instrument(span)
        .await;
        for (proto, reply) in self.slots {
            let reply = reply.unwrap_or_else(|| Reply::err("command got no answer"));
            reply.encode(proto, out);
        }
        quit
    }

    /// Takes one command: answered now, or queued for the batch.
    async fn step(&mut self, args: Vec<Bytes>) -> bool {
        self.shared.commands.fetch_add(1, Ordering::Relaxed);
        let command = cmd::parse(args, self.session, self.shared);
        let proto = self.session.proto;
        match command {
            Command::Reply(r) => self.slots.push((proto, Some(r))),
            Command::Quit => {
                self.slots.push((proto, Some(Reply::OK)));
                return true;
            }
            Command::Read(shape, keys) => self.queue_reads(shape, keys).await,
            Command::Write(pairs) => self.queue_writes(pairs, None).await,
            Command::WriteExpiring(key, val, ttl) => {
                self.queue_writes(vec![(key, val)], Some(ttl)).await
            }
            Command::WriteKeepTtl(key, val) => {
                self.flush().await;
                let reply = self.set_keep_ttl(key, val).await;
                self.slots.push((proto, Some(reply)));
            }
            Command::Expire(key, arg) => {
                self.flush().await;
                let reply = self.expire(key, arg).await;
                self.slots.push((proto, Some(reply)));
            }
            Command::Del(keys) => {
                self.flush().await;
                let reply = self.delete(keys).await;
                self.slots.push((proto, Some(reply)));
            }
        }
        false
    }

    async fn queue_reads(&mut self, shape: ReadShape, keys: Vec<Bytes>) {
        if keys.iter().any(|k| self.written_keys.contains(k)) {
            self.flush().await;
        }
        let first = self.ops.len();
        let count = keys.len();
        for key in keys {
            self.read_keys.insert(key.clone());
            self.ops.push(get_op(key, self.session.consistency));
        }
        self.queue(Shape::Read(shape), first, count);
    }

    async fn queue_writes(&mut self, pairs: Vec<(Bytes, Bytes)>, ttl: Option<PutTtl>) {
        if pairs.iter().any(|(k, _)| self.read_keys.contains(k)) {
            self.flush().await;
        }
        let first = self.ops.len();
        let count = pairs.len();
        for (key, val) in pairs {
            self.written_keys.insert(key.clone());
            self.ops
                .push(put_op(key, val, self.session.consistency, ttl));
        }
        self.queue(Shape::Write, first, count);
    }

    fn queue(&mut self, shape: Shape, first: usize, count: usize) {
        self.pending.push(Pending {
            slot: self.slots.len(),
            shape,
            first,
            count,
        });
        self.slots.push((self.session.proto, None));
    }

    /// Runs the gathered batch and fills in its commands' answers.
    async fn flush(&mut self) {
        self.read_keys.clear();
        self.written_keys.clear();
        if self.ops.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.ops);
        let results = self.shared.coalescer.run(ops).await;
        for p in self.pending.drain(..) {
            let outcomes = results.get(p.first..p.first + p.count).unwrap_or(&[]);
            let reply = match p.shape {
                Shape::Read(shape) => read_reply(shape, outcomes),
                Shape::Write => write_reply(outcomes),
            };
            self.slots[p.slot].1 = Some(reply);
        }
    }

    /// `DEL`: how many of `keys` exist (read at the connection's level),
    /// then a tombstone for each.
    async fn delete(&mut self, mut keys: Vec<Bytes>) -> Reply {
        let level = self.session.consistency;
        keys.sort();
        keys.dedup();
        let reads = keys.iter().map(|k| get_op(k.clone(), level)).collect();
        let found = match count_found(&self.shared.coalescer.run(reads).await) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let deletes = keys.into_iter().map(|k| delete_op(k, level)).collect();
        let written = self.shared.coalescer.run(deletes).await;
        match write_reply(&written) {
            Reply::Simple(_) => Reply::Int(found),
            error => error,
        }
    }
}

/// One read of `key`, on its own: the value's answer, `None` when absent.
async fn read_one(
    shared: &Shared,
    key: Bytes,
    level: pb::Consistency,
) -> Result<Option<pb::GetResponse>, Reply> {
    let mut results = shared.coalescer.run(vec![get_op(key, level)]).await;
    match results.pop() {
        Some(Outcome::Get(g)) if g.status == pb::ReadStatus::Found as i32 => Ok(Some(g)),
        Some(Outcome::Get(_)) => Ok(None),
        Some(Outcome::Error(e)) => Err(error_reply(&e)),
        _ => Err(Reply::err("read got no answer")),
    }
}

impl Pipeline<'_> {
    /// `SET key value KEEPTTL`: the value with the key's current expiry.
    async fn set_keep_ttl(&mut self, key: Bytes, val: Bytes) -> Reply {
        let level = self.session.consistency;
        let ttl = match read_one(self.shared, key.clone(), level).await {
            Err(e) => return e,
            Ok(Some(g)) if g.expires_at_us != 0 => Some(PutTtl::AtUs(g.expires_at_us)),
            Ok(_) => None,
        };
        let put = put_op(key, val, level, ttl);
        write_reply(&self.shared.coalescer.run(vec![put]).await)
    }

    /// `EXPIRE`/`PEXPIRE`/`PERSIST`: 1 when the key's expiry changed, 0
    /// when there is no such key (or, for `PERSIST`, it had no expiry). A
    /// time to live of 0 or less deletes the key, as in Redis.
    async fn expire(&mut self, key: Bytes, arg: ExpireArg) -> Reply {
        let level = self.session.consistency;
        let (ttl_ms, persist) = match arg {
            ExpireArg::Ms(ms) if ms <= 0 => return self.delete(vec![key]).await,
            ExpireArg::Ms(ms) => (ms.unsigned_abs(), false),
            ExpireArg::Persist => (0, true),
        };
        if persist {
            match read_one(self.shared, key.clone(), level).await {
                Err(e) => return e,
                Ok(Some(g)) if g.expires_at_us != 0 => {}
                Ok(_) => return Reply::Int(0),
            }
        }
        let req = pb::ExpireRequest {
            key,
            ttl_ms,
            persist,
            consistency: level as i32,
            ..Default::default()
        };
        match self.shared.client.run_expire(req).await {
            Ok(r) if r.status == pb::ReadStatus::Found as i32 => Reply::Int(1),
            Ok(_) => Reply::Int(0),
            Err(status) => Reply::err(status.message()),
        }
    }
}

fn get_op(key: Bytes, level: pb::Consistency) -> pb::Operation {
    pb::Operation {
        op: Some(pb::operation::Op::Get(pb::GetRequest {
            key,
            consistency: level as i32,
            ..Default::default()
        })),
    }
}

fn put_op(key: Bytes, val: Bytes, level: pb::Consistency, ttl: Option<PutTtl>) -> pb::Operation {
    let (ttl_ms, expires_at_us) = match ttl {
        None => (0, 0),
        Some(PutTtl::AfterMs(ms)) => (ms, 0),
        Some(PutTtl::AtUs(us)) => (0, us),
    };
    pb::Operation {
        op: Some(pb::operation::Op::Put(pb::PutRequest {
            key,
            val,
            consistency: level as i32,
            ttl_ms,
            expires_at_us,
            ..Default::default()
        })),
    }
}

fn delete_op(key: Bytes, level: pb::Consistency) -> pb::Operation {
    pb::Operation {
        op: Some(pb::operation::Op::Delete(pb::DeleteRequest {
            key,
            consistency: level as i32,
            ..Default::default()
        })),
    }
}

/// An operation's failure as an answer: the same text as over gRPC.
fn error_reply(e: &pb::OperationError) -> Reply {
    Reply::err(&e.message)
}

/// The value a read found, `Ok(None)` when there is none.
fn found(outcome: &Outcome) -> Result<Option<Bytes>, Reply> {
    match outcome {
        Outcome::Get(g) if g.status == pb::ReadStatus::Found as i32 => Ok(Some(g.val.clone())),
        Outcome::Get(_) => Ok(None),
        Outcome::Error(e) => Err(error_reply(e)),
        _ => Err(Reply::err("a read got a write's answer")),
    }
}

fn count_found(outcomes: &[Outcome]) -> Result<i64, Reply> {
    let mut n = 0;
    for o in outcomes {
        if found(o)?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

fn read_reply(shape: ReadShape, outcomes: &[Outcome]) -> Reply {
    let answer = match shape {
        ReadShape::Get => outcomes
            .first()
            .ok_or_else(|| Reply::err("read got no answer"))
            .and_then(found)
            .map(|v| v.map_or(Reply::Null, Reply::Bulk)),
        ReadShape::MGet => outcomes
            .iter()
            .map(|o| found(o).map(|v| v.map_or(Reply::Null, Reply::Bulk)))
            .collect::<Result<Vec<_>, _>>()
            .map(Reply::Array),
        ReadShape::Exists => count_found(outcomes).map(Reply::Int),
        ReadShape::Ttl { millis } => match outcomes.first() {
            Some(Outcome::Get(g)) => Ok(cmd::ttl_answer(
                g.status == pb::ReadStatus::Found as i32,
                g.expires_at_us,
                g.ttl_remaining_us,
                millis,
            )),
            Some(Outcome::Error(e)) => Err(error_reply(e)),
            _ => Err(Reply::err("read got no answer")),
        },
    };
    answer.unwrap_or_else(|e| e)
}

/// `OK` when every write succeeded, else the first failure.
fn write_reply(outcomes: &[Outcome]) -> Reply {
    for o in outcomes {
        match o {
            Outcome::Put(_) | Outcome::Delete(_) => {}
            Outcome::Error(e) => return error_reply(e),
            Outcome::Get(_) => return Reply::err("a write got a read's answer"),
        }
    }
    Reply::OK
}
