//! `tinykv_client` as users run it, against live nodes: binary values
//! round-trip through stdin and stdout; an address list whose first node
//! is dead works; `-o json` parses for every command; completions; exit
//! codes with one line on stderr.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use tinykv_tests::{binary, Cluster, ClusterOptions};

const SECRET: &str = "cli-test-cluster-secret-0123456789abcdef";

fn cli(c: &Cluster, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(binary("tinykv_client"));
    cmd.args(args)
        .env(
            "TINYKV_CLUSTER_SECRET_FILE",
            c.secret_file().expect("secret"),
        )
        .env_remove("TINYKV_ADDR")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run tinykv_client");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("output")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A port nothing listens on.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    addr
}

async fn cluster() -> Cluster {
    Cluster::start_with(
        3,
        ClusterOptions {
            secret: Some(SECRET.into()),
            ..ClusterOptions::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_value_round_trips_through_stdin_and_stdout() {
    let c = cluster().await;
    let value: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(
        std::str::from_utf8(&value).is_err(),
        "the value is not text"
    );
    let put = cli(
        &c,
        &[&c.addr(0), "put", "bin", "-", "--consistency", "all"],
        Some(&value),
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let got = cli(
        &c,
        &[&c.addr(1), "get", "bin", "--consistency", "all"],
        None,
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        got.stdout, value,
        "the bytes come back unchanged, with nothing added"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_list_whose_first_node_is_dead_works() {
    let c = cluster().await;
    let list = format!("{},{}", dead_addr(), c.addr(1));
    let put = cli(&c, &[&list, "put", "k", "v", "--consistency", "all"], None);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let got = cli(&c, &[&list, "get", "k"], None);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "v");
    let owners = cli(&c, &[&list, "owners", "k"], None);
    assert_eq!(
        String::from_utf8_lossy(&owners.stdout).lines().count(),
        3,
        "admin calls too"
    );
    let none = format!("{},{}", dead_addr(), dead_addr());
    let out = cli(&c, &[&none, "--timeout", "2s", "get", "k"], None);
    assert_eq!(out.status.code(), Some(3), "no node reachable: unavailable");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_output_parses_for_every_command() {
    let c = cluster().await;
    let a = c.addr(0);
    let put = json(&cli(
        &c,
        &[&a, "-o", "json", "put", "k", "v", "--consistency", "all"],
        None,
    ));
    assert_eq!(put["acks"], 3);
    let get = json(&cli(&c, &[&a, "-o", "json", "get", "k"], None));
    assert_eq!(
        (get["value"].as_str(), get["found"].as_bool()),
        (Some("v"), Some(true))
    );
    assert_eq!(get["value_hex"], "76");
    let local = json(&cli(&c, &[&a, "-o", "json", "local-get", "k"], None));
    assert_eq!(local["present"], true);
    let owners = json(&cli(&c, &[&a, "-o", "json", "owners", "k"], None));
    assert_eq!(owners["owners"].as_array().map(Vec::len), Some(3));
    let status = json(&cli(&c, &[&a, "-o", "json", "status"], None));
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        json(&cli(&c, &[&a, "-o", "json", "health"], None))["serving"],
        true
    );
    assert_eq!(
        json(&cli(&c, &[&a, "-o", "json", "ping"], None))["ready"],
        true
    );
    let repair = json(&cli(&c, &[&a, "-o", "json", "repair"], None));
    assert!(repair["peers_compared"].is_u64());
    let del = json(&cli(&c, &[&a, "-o", "json", "delete", "k"], None));
    assert_eq!(del["deleted"], true);
    let missing = cli(&c, &[&a, "-o", "json", "get", "k"], None);
    assert_eq!(missing.status.code(), Some(1), "not found");
    let v: serde_json::Value = serde_json::from_slice(&missing.stdout).expect("json");
    assert_eq!(v["found"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_and_exit_codes() {
    let c = cluster().await;
    let bash = cli(&c, &["-", "completions", "bash"], None);
    assert!(bash.status.success());
    assert!(String::from_utf8_lossy(&bash.stdout).contains("tinykv_client"));
    let missing = cli(&c, &[&c.addr(0), "get", "never-written"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&missing.stderr).trim(), "not found");
    let bad = cli(&c, &[&c.addr(0), "get", "k", "--consistency", "most"], None);
    assert_eq!(bad.status.code(), Some(2), "bad usage");
    let unreachable = cli(&c, &[&dead_addr(), "--timeout", "2s", "get", "k"], None);
    assert_eq!(unreachable.status.code(), Some(3), "unreachable");
    assert_eq!(
        String::from_utf8_lossy(&unreachable.stderr).lines().count(),
        1
    );
    let big_key = "k".repeat(70_000);
    let invalid = cli(&c, &[&c.addr(0), "put", &big_key, "v"], None);
    assert_eq!(invalid.status.code(), Some(2), "invalid argument");
}
