//! The RESP front door (`--redis-listen`) on real nodes, through the
//! `redis` client crate: every command, pipelining, RESP3, binary values,
//! limits, unknown commands, AUTH, and keys crossing between RESP, gRPC
//! and the legacy proto. `resp_tools.rs` drives redis-cli and redis-benchmark.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{cmd, RedisError, Value};
use tinykv_client::Consistency;
use tinykv_tests::legacy::tiny_kv_client::TinyKvClient;
use tinykv_tests::legacy::{GetRequest, PutRequest};
use tinykv_tests::{Cluster, ClusterOptions};

/// The largest key gRPC accepts (the storage engine's limit).
const MAX_KEY_BYTES: usize = u16::MAX as usize - 8;

fn with_redis(args: &[&str]) -> ClusterOptions {
    let mut opts = ClusterOptions {
        redis: true,
        ..Default::default()
    };
    opts.args.extend(args.iter().map(|a| a.to_string()));
    opts
}

async fn connect(c: &Cluster, i: usize, query: &str) -> MultiplexedConnection {
    let url = format!("redis://{}/{query}", c.redis_addr(i));
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("redis url: {e}"));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connecting to node{}'s RESP door: {e}", i + 1))
}

/// Runs `args` and expects an answer of type `T`.
async fn ok<T: redis::FromRedisValue>(con: &mut MultiplexedConnection, args: &[&[u8]]) -> T {
    let mut c = cmd(std::str::from_utf8(args[0]).unwrap_or("?"));
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(con)
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(args[0])))
}

/// Runs `args` and expects an error answer; its text.
async fn err(con: &mut MultiplexedConnection, args: &[&[u8]]) -> String {
    let mut c = cmd(std::str::from_utf8(args[0]).unwrap_or("?"));
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query_async::<Value>(con).await {
        Ok(v) => panic!(
            "{:?} answered {v:?}, not an error",
            String::from_utf8_lossy(args[0])
        ),
        Err(e) => describe(&e),
    }
}

fn describe(e: &RedisError) -> String {
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_through_the_redis_crate() {
    let c = Cluster::start_with(3, with_redis(&[])).await;
    let mut a = connect(&c, 0, "").await;
    let mut b = connect(&c, 1, "").await;

    assert_eq!(ok::<String>(&mut a, &[b"PING"]).await, "PONG");
    assert_eq!(ok::<String>(&mut a, &[b"PING", b"hi"]).await, "hi");
    assert_eq!(
        ok::<Vec<u8>>(&mut a, &[b"ECHO", b"a\r\nb"]).await,
        b"a\r\nb"
    );

    assert_eq!(ok::<String>(&mut a, &[b"SET", b"k1", b"v1"]).await, "OK");
    assert_eq!(
        ok::<Option<String>>(&mut b, &[b"GET", b"k1"])
            .await
            .as_deref(),
        Some("v1")
    );
    assert_eq!(ok::<Option<String>>(&mut b, &[b"GET", b"nope"]).await, None);
    assert_eq!(
        ok::<String>(&mut b, &[b"MSET", b"k2", b"v2", b"k3", b"v3"]).await,
        "OK"
    );
    let got: Vec<Option<String>> = ok(&mut a, &[b"MGET", b"k1", b"nope", b"k3"]).await;
    assert_eq!(got, vec![Some("v1".into()), None, Some("v3".into())]);
    assert_eq!(
        ok::<i64>(&mut a, &[b"EXISTS", b"k1", b"k2", b"nope", b"k1"]).await,
        3
    );
    assert_eq!(ok::<i64>(&mut a, &[b"DEL", b"k1", b"k2", b"nope"]).await, 2);
    assert_eq!(
        ok::<i64>(&mut b, &[b"EXISTS", b"k1", b"k2", b"k3"]).await,
        1
    );
    assert_eq!(ok::<Option<String>>(&mut b, &[b"GET", b"k1"]).await, None);

    for opt in [&b"NX"[..], b"XX", b"GET"] {
        let e = err(&mut a, &[b"SET", b"k", b"v", opt]).await;
        assert!(e.contains("last-writer-wins"), "SET {opt:?}: {e}");
    }
    assert!(err(&mut a, &[b"SET", b"k", b"v", b"BOGUS"])
        .await
        .contains("syntax error"));
    ttl_commands(&c, &mut a, &mut b).await;

    let info: String = ok(&mut a, &[b"INFO"]).await;
    for want in [
        "# Server",
        "redis_version:",
        "# Clients",
        "connected_clients:",
        "# Replication",
        "role:master",
        "tinykv_replication_factor:3",
        "tinykv_members:3",
        "# Keyspace",
        "db0:keys=",
    ] {
        assert!(info.contains(want), "INFO lacks {want:?}:\n{info}");
    }
    let only: String = ok(&mut a, &[b"INFO", b"keyspace"]).await;
    assert!(
        only.contains("db0:keys=") && !only.contains("# Server"),
        "{only}"
    );

    let count: i64 = ok(&mut a, &[b"COMMAND", b"COUNT"]).await;
    assert_eq!(count, 21);
    let all: Vec<Value> = ok(&mut a, &[b"COMMAND"]).await;
    assert_eq!(all.len(), 21);
    let docs: Value = ok(&mut a, &[b"COMMAND", b"DOCS", b"get"]).await;
    assert!(format!("{docs:?}").contains("summary"), "{docs:?}");

    let id: i64 = ok(&mut a, &[b"CLIENT", b"ID"]).await;
    assert!(id > 0);
    assert_eq!(
        ok::<Option<String>>(&mut a, &[b"CLIENT", b"GETNAME"]).await,
        None
    );
    assert_eq!(
        ok::<String>(&mut a, &[b"CLIENT", b"SETNAME", b"tester"]).await,
        "OK"
    );
    assert_eq!(
        ok::<Option<String>>(&mut a, &[b"CLIENT", b"GETNAME"])
            .await
            .as_deref(),
        Some("tester")
    );
    assert!(err(&mut a, &[b"CLIENT", b"SETNAME", b"a b"])
        .await
        .contains("cannot contain spaces"));

    assert_eq!(ok::<String>(&mut a, &[b"SELECT", b"0"]).await, "OK");
    assert!(err(&mut a, &[b"SELECT", b"1"])
        .await
        .contains("out of range"));

    assert_eq!(
        ok::<String>(&mut a, &[b"TINYKV.CONSISTENCY"]).await,
        "DEFAULT"
    );
    assert_eq!(
        ok::<String>(&mut a, &[b"TINYKV.CONSISTENCY", b"all"]).await,
        "OK"
    );
    assert_eq!(ok::<String>(&mut a, &[b"TINYKV.CONSISTENCY"]).await, "ALL");
    assert_eq!(ok::<String>(&mut a, &[b"SET", b"strong", b"1"]).await, "OK");
    assert!(err(&mut a, &[b"TINYKV.CONSISTENCY", b"two-ish"])
        .await
        .contains("ONE, QUORUM, ALL"));
    // Every replica has a write made at ALL once it is acknowledged.
    for i in 0..3 {
        assert_eq!(
            c.local(i, "strong").await.as_deref(),
            Some("1"),
            "node{}",
            i + 1
        );
    }

    // Unknown commands and wrong arity are answered; the connection stays.
    let e = err(&mut a, &[b"FLUSHALL"]).await;
    assert!(e.contains("unknown command 'FLUSHALL'"), "{e}");
    let e = err(&mut a, &[b"GET"]).await;
    assert!(e.contains("wrong number of arguments for 'get'"), "{e}");
    assert_eq!(ok::<String>(&mut a, &[b"PING"]).await, "PONG");

    let _: String = ok(&mut b, &[b"QUIT"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resp3_after_hello_3() {
    let c = Cluster::start_with(3, with_redis(&[])).await;
    // The crate sends HELLO 3 itself when asked for RESP3.
    let mut con = connect(&c, 2, "?protocol=resp3").await;
    let hello: Value = ok(&mut con, &[b"HELLO", b"3"]).await;
    let Value::Map(pairs) = hello else {
        panic!("HELLO 3 answered {hello:?}, not a map")
    };
    let proto = pairs
        .iter()
        .find(|(k, _)| matches!(k, Value::BulkString(b) if b == b"proto"))
        .map(|(_, v)| v.clone());
    assert_eq!(proto, Some(Value::Int(3)));
    assert_eq!(ok::<String>(&mut con, &[b"SET", b"r3", b"x"]).await, "OK");
    let missing: Value = ok(&mut con, &[b"GET", b"none"]).await;
    assert_eq!(missing, Value::Nil);
    assert!(err(&mut con, &[b"HELLO", b"4"]).await.contains("NOPROTO"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelines_keep_order_and_see_their_own_writes() {
    let c = Cluster::start_with(3, with_redis(&[])).await;
    let mut con = connect(&c, 0, "").await;
    let mut pipe = redis::pipe();
    for i in 0..300 {
        let key = format!("p{}", i % 50);
        pipe.cmd("SET").arg(&key).arg(format!("v{i}"));
        pipe.cmd("GET").arg(&key);
    }
    pipe.cmd("PING");
    let answers: Vec<Value> = pipe
        .query_async(&mut con)
        .await
        .unwrap_or_else(|e| panic!("pipeline: {e}"));
    assert_eq!(answers.len(), 601);
    for i in 0..300 {
        assert_eq!(answers[2 * i], Value::Okay, "SET #{i}");
        let want = Value::BulkString(format!("v{i}").into_bytes());
        assert_eq!(
            answers[2 * i + 1],
            want,
            "GET #{i} did not see the SET before it"
        );
    }
    // The last write of each key won, as seen over gRPC from another node.
    let grpc = c.client_for(2);
    for k in 0..50 {
        let last = 250 + k;
        let v = grpc
            .get(format!("p{k}"), Consistency::Quorum)
            .await
            .expect("get");
        assert_eq!(v.map(|v| v.val), Some(format!("v{last}").into()), "p{k}");
    }
}

/// `SET EX/PX/EXAT/PXAT/KEEPTTL`, `EXPIRE`, `PEXPIRE`, `TTL`, `PTTL` and
/// `PERSIST`, seen from two nodes' RESP doors and over gRPC.
async fn ttl_commands(c: &Cluster, a: &mut MultiplexedConnection, b: &mut MultiplexedConnection) {
    let secs = |v: i64, hi: i64| assert!((hi - 5..=hi).contains(&v), "TTL {v}, wanted about {hi}");
    assert_eq!(
        ok::<String>(a, &[b"SET", b"t", b"v1", b"EX", b"100"]).await,
        "OK"
    );
    secs(ok::<i64>(b, &[b"TTL", b"t"]).await, 100);
    let ms: i64 = ok(b, &[b"PTTL", b"t"]).await;
    assert!((95_000..=100_000).contains(&ms), "PTTL {ms}");
    assert_eq!(ok::<i64>(b, &[b"TTL", b"nope"]).await, -2);
    assert_eq!(ok::<i64>(b, &[b"TTL", b"k3"]).await, -1, "no expiry");
    // PERSIST removes the expiry once; EXPIRE sets a new one.
    assert_eq!(ok::<i64>(a, &[b"PERSIST", b"t"]).await, 1);
    assert_eq!(ok::<i64>(b, &[b"TTL", b"t"]).await, -1);
    assert_eq!(ok::<i64>(a, &[b"PERSIST", b"t"]).await, 0);
    assert_eq!(ok::<i64>(a, &[b"PERSIST", b"nope"]).await, 0);
    assert_eq!(ok::<i64>(a, &[b"EXPIRE", b"t", b"50"]).await, 1);
    secs(ok::<i64>(b, &[b"TTL", b"t"]).await, 50);
    assert_eq!(ok::<i64>(a, &[b"EXPIRE", b"nope", b"50"]).await, 0);
    // KEEPTTL keeps it; a plain SET replaces the version and its expiry.
    assert_eq!(
        ok::<String>(a, &[b"SET", b"t", b"v2", b"KEEPTTL"]).await,
        "OK"
    );
    secs(ok::<i64>(b, &[b"TTL", b"t"]).await, 50);
    assert_eq!(
        ok::<Option<String>>(b, &[b"GET", b"t"]).await.as_deref(),
        Some("v2")
    );
    assert_eq!(ok::<String>(a, &[b"SET", b"t", b"v3"]).await, "OK");
    assert_eq!(ok::<i64>(b, &[b"TTL", b"t"]).await, -1);
    // A time to live of 0 deletes, as in Redis; so does a past EXAT.
    assert_eq!(ok::<i64>(a, &[b"EXPIRE", b"t", b"0"]).await, 1);
    assert_eq!(ok::<Option<String>>(b, &[b"GET", b"t"]).await, None);
    assert_eq!(
        ok::<String>(a, &[b"SET", b"old", b"v", b"EXAT", b"1"]).await,
        "OK"
    );
    assert_eq!(ok::<Option<String>>(b, &[b"GET", b"old"]).await, None);
    assert!(err(a, &[b"EXPIRE", b"k3", b"10", b"NX"])
        .await
        .contains("not supported"));
    assert!(err(a, &[b"SET", b"k", b"v", b"EX", b"0"])
        .await
        .contains("invalid expire"));
    // A value set with PX is gone after it, through RESP and over gRPC.
    assert_eq!(
        ok::<String>(a, &[b"SET", b"short", b"v", b"PX", b"400"]).await,
        "OK"
    );
    assert_eq!(ok::<i64>(b, &[b"PEXPIRE", b"k3", b"400"]).await, 1);
    let grpc = c.client_for(2);
    tinykv_tests::wait_until(
        "PX and PEXPIRE keys expire",
        Duration::from_secs(10),
        || {
            let (mut b, grpc) = (b.clone(), grpc.clone());
            async move {
                let gone: Vec<Option<String>> = ok(&mut b, &[b"MGET", b"short", b"k3"]).await;
                let over_grpc = grpc.get("short", Consistency::Quorum).await.expect("get");
                gone == vec![None, None] && over_grpc.is_none()
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_values_and_keys_cross_resp_grpc_and_the_legacy_proto() {
    let c = Cluster::start_with(3, with_redis(&[])).await;
    let mut con = connect(&c, 0, "").await;
    let value: Vec<u8> = (0..=255u8).chain(*b"\r\n$-1\r\n*0\r\n").collect();
    let key = b"bin\0\r\n\xffkey".to_vec();
    assert_eq!(ok::<String>(&mut con, &[b"SET", &key, &value]).await, "OK");
    assert_eq!(ok::<Vec<u8>>(&mut con, &[b"GET", &key]).await, value);

    // RESP -> gRPC and the legacy proto.
    let grpc = c.client_for(1);
    let got = grpc
        .get(key.clone(), Consistency::Quorum)
        .await
        .expect("grpc get");
    assert_eq!(got.map(|v| v.val.to_vec()), Some(value.clone()));
    let mut legacy = TinyKvClient::connect(format!("http://{}", c.addr(2)))
        .await
        .expect("legacy connect");
    assert_eq!(
        ok::<String>(&mut con, &[b"SET", b"plain", b"from-resp"]).await,
        "OK"
    );
    let old = legacy
        .get(GetRequest {
            key: "plain".into(),
            sender_id: "t".into(),
            quorum_size: 2,
        })
        .await
        .expect("legacy get")
        .into_inner();
    assert!(old.operation_success);
    assert_eq!(old.val, "from-resp");

    // gRPC and the legacy proto -> RESP.
    grpc.put("from-grpc", value.clone(), Consistency::Quorum)
        .await
        .expect("grpc put");
    legacy
        .put(PutRequest {
            key: "from-legacy".into(),
            val: "old-client".into(),
            sender_id: "t".into(),
            replication_factor: 2,
            timestamp: 0,
        })
        .await
        .expect("legacy put");
    let mut other = connect(&c, 2, "").await;
    assert_eq!(
        ok::<Vec<u8>>(&mut other, &[b"GET", b"from-grpc"]).await,
        value
    );
    assert_eq!(
        ok::<Option<String>>(&mut other, &[b"GET", b"from-legacy"])
            .await
            .as_deref(),
        Some("old-client")
    );
    // A delete over gRPC is seen over RESP.
    grpc.delete("from-grpc", Consistency::Quorum)
        .await
        .expect("grpc delete");
    assert_eq!(ok::<i64>(&mut other, &[b"EXISTS", b"from-grpc"]).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_give_the_same_errors_as_grpc() {
    let c = Cluster::start_with(3, with_redis(&["--max-value-bytes", "1024"])).await;
    let mut con = connect(&c, 0, "").await;
    let grpc = c.client_for(0);
    let grpc_error = |e: tinykv_client::ClientError| e.to_string();

    let long_key = vec![b'k'; MAX_KEY_BYTES + 1];
    let resp = err(&mut con, &[b"SET", &long_key, b"v"]).await;
    let over_grpc = grpc_error(
        grpc.put(long_key.clone(), "v", Consistency::Quorum)
            .await
            .expect_err("long key"),
    );
    let text = format!(
        "key is {} bytes; the limit is {MAX_KEY_BYTES} bytes",
        MAX_KEY_BYTES + 1
    );
    assert!(resp.contains(&text), "RESP: {resp}");
    assert!(over_grpc.contains(&text), "gRPC: {over_grpc}");
    assert!(err(&mut con, &[b"GET", &long_key]).await.contains(&text));

    let big = vec![b'v'; 1025];
    let resp = err(&mut con, &[b"SET", b"big", &big]).await;
    let over_grpc = grpc_error(
        grpc.put("big", big.clone(), Consistency::Quorum)
            .await
            .expect_err("big value"),
    );
    let text = "value is 1025 bytes; the limit is 1024 bytes";
    assert!(resp.contains(text), "RESP: {resp}");
    assert!(over_grpc.contains(text), "gRPC: {over_grpc}");
    let resp = err(&mut con, &[b"MSET", b"a", b"1", b"big", &big]).await;
    assert!(resp.contains(text), "MSET: {resp}");
    assert!(err(&mut con, &[b"SET", b"", b"v"])
        .await
        .contains("key must not be empty"));
    // A value at the limit is fine.
    assert_eq!(
        ok::<String>(&mut con, &[b"SET", b"edge", &big[..1024]]).await,
        "OK"
    );

    let keys: Vec<Vec<u8>> = (0..1025).map(|i| format!("m{i}").into_bytes()).collect();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(|k| k.as_slice()));
    assert!(err(&mut con, &mget).await.contains("the limit is 1024"));
    assert_eq!(ok::<String>(&mut con, &[b"PING"]).await, "PONG");
}

/// Sends `bytes` on a fresh connection and reads until the node closes it.
async fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_end(&mut answer),
    )
    .await
    .expect("the node did not close the connection")
    .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_errors_are_answered_then_the_connection_closes() {
    let c = Cluster::start_with(
        1,
        ClusterOptions {
            rf: 1,
            ..with_redis(&["--max-value-bytes", "1024"])
        },
    )
    .await;
    let addr = c.redis_addr(0);
    // An inline PING, then an array too long to accept.
    let got = raw_exchange(&addr, b"PING\r\n*999999999\r\n").await;
    assert!(
        got.starts_with("+PONG\r\n-ERR Protocol error: invalid multibulk length"),
        "{got:?}"
    );
    // A bulk string longer than any request may be.
    let got = raw_exchange(&addr, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999\r\n").await;
    assert!(
        got.starts_with("-ERR Protocol error: invalid bulk length"),
        "{got:?}"
    );
    // Nesting is refused before any parser recursion.
    let got = raw_exchange(&addr, b"*1\r\n*1\r\n*1\r\n$1\r\nx\r\n").await;
    assert!(
        got.starts_with("-ERR Protocol error: expected '$'"),
        "{got:?}"
    );
    // QUIT answers and closes; pipelined commands before it are answered.
    let got = raw_exchange(&addr, b"*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\nq\r\n*1\r\n$4\r\nQUIT\r\n").await;
    assert_eq!(got, "+OK\r\n$1\r\n1\r\n+OK\r\n");
    // The node still serves.
    let mut con = connect(&c, 0, "").await;
    assert_eq!(ok::<String>(&mut con, &[b"PING"]).await, "PONG");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_checks_the_client_tokens() {
    let token = "resp-test-token-0123456789abcdef";
    let opts = ClusterOptions {
        token: Some(token.into()),
        ..with_redis(&[])
    };
    let c = Cluster::start_with(3, opts).await;
    let mut con = connect(&c, 0, "").await;
    assert_eq!(ok::<String>(&mut con, &[b"PING"]).await, "PONG");
    for refused in [
        &[&b"GET"[..], b"k"][..],
        &[b"SET", b"k", b"v"],
        &[b"INFO"],
        &[b"CLIENT", b"ID"],
    ] {
        let e = err(&mut con, refused).await;
        assert!(e.starts_with("NOAUTH"), "{refused:?}: {e}");
    }
    assert!(err(&mut con, &[b"HELLO", b"3"]).await.starts_with("NOAUTH"));
    assert!(err(&mut con, &[b"AUTH", b"wrong-token"])
        .await
        .starts_with("WRONGPASS"));
    assert!(err(&mut con, &[b"GET", b"k"]).await.starts_with("NOAUTH"));
    assert_eq!(
        ok::<String>(&mut con, &[b"AUTH", token.as_bytes()]).await,
        "OK"
    );
    assert_eq!(ok::<String>(&mut con, &[b"SET", b"k", b"v"]).await, "OK");
    assert_eq!(
        ok::<Option<String>>(&mut con, &[b"GET", b"k"])
            .await
            .as_deref(),
        Some("v")
    );

    // The username form, and the crate's own AUTH from the URL.
    let mut two = connect(&c, 1, "").await;
    assert_eq!(
        ok::<String>(&mut two, &[b"AUTH", b"default", token.as_bytes()]).await,
        "OK"
    );
    let url = format!("redis://default:{token}@{}/", c.redis_addr(2));
    let mut three = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("AUTH through the URL");
    assert_eq!(
        ok::<Option<String>>(&mut three, &[b"GET", b"k"])
            .await
            .as_deref(),
        Some("v")
    );
    // HELLO 3 AUTH on a fresh connection.
    let hello = raw_exchange(
        &c.redis_addr(1),
        format!("HELLO 3 AUTH default {token}\r\nGET k\r\nQUIT\r\n").as_bytes(),
    )
    .await;
    assert!(
        hello.starts_with('%') && hello.ends_with("$1\r\nv\r\n+OK\r\n"),
        "{hello:?}"
    );
}
