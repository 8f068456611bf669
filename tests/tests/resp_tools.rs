//! Redis's own tools against the RESP door of a local 5-node cluster:
//! redis-cli (one-shot commands) and redis-benchmark (pipelined, with
//! zero errors). They come with Debian's `redis-tools`; the test fails
//! with a hint when they are missing.

use std::process::Command;

use tinykv_tests::{Cluster, ClusterOptions};

fn tool(name: &str) -> Command {
    let found = Command::new(name).arg("--version").output().is_ok();
    assert!(
        found,
        "{name} not found: install Debian's redis-tools (apt-get install redis-tools)"
    );
    Command::new(name)
}

fn redis_cli(port: &str, args: &[&str]) -> String {
    let out = tool("redis-cli")
        .args(["-h", "127.0.0.1", "-p", port])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli: {e}"));
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn port(c: &Cluster, i: usize) -> String {
    c.redis_addr(i)
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_cli_and_redis_benchmark_against_five_nodes() {
    let c = Cluster::start_with(
        5,
        ClusterOptions {
            redis: true,
            ..Default::default()
        },
    )
    .await;
    let (p1, p3) = (port(&c, 0), port(&c, 2));
    assert_eq!(redis_cli(&p1, &["set", "k", "v"]), "OK");
    assert_eq!(redis_cli(&p3, &["get", "k"]), "v");
    assert_eq!(redis_cli(&p3, &["mset", "a", "1", "b", "2"]), "OK");
    assert_eq!(redis_cli(&p1, &["mget", "a", "b", "nope"]), "1\n2");
    assert_eq!(redis_cli(&p1, &["del", "a", "nope"]), "1");
    assert_eq!(redis_cli(&p1, &["exists", "a", "b"]), "1");
    assert_eq!(redis_cli(&p1, &["ping"]), "PONG");
    assert!(redis_cli(&p1, &["info", "replication"]).contains("tinykv_members:5"));
    assert!(redis_cli(&p1, &["bogus", "x"]).contains("unknown command 'bogus'"));
    // RESP3 through redis-cli -3.
    assert_eq!(redis_cli(&p3, &["-3", "get", "k"]), "v");
    // Commands from stdin, as a script would pipe them.
    let mut child = tool("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &p1])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(b"set piped yes\nget piped\nclient setname cli\nclient getname\n")
            .expect("stdin");
    }
    let out = child.wait_with_output().expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\nyes\nOK\ncli\n");

    let out = tool("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &p1])
        .args(["-t", "ping,set,get,mset", "-P", "16", "-n", "20000", "-q"])
        .output()
        .unwrap_or_else(|e| panic!("redis-benchmark: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "redis-benchmark failed: {stderr}");
    assert!(
        !stdout.contains("Error") && !stderr.contains("Error"),
        "errors: {stdout} {stderr}"
    );
    let finished: Vec<&str> = stdout
        .split(['\r', '\n'])
        .filter(|l| l.contains("requests per second"))
        .collect();
    println!("{}", finished.join("\n"));
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET", "MSET"] {
        assert!(
            finished.iter().any(|l| l.trim_start().starts_with(test)),
            "{test} did not finish: {stdout}"
        );
    }
    // The benchmark's keys are there, read over gRPC through another node.
    let v = c
        .client_for(4)
        .get("key:__rand_int__", tinykv_client::Consistency::Quorum)
        .await
        .expect("get");
    assert!(v.is_some(), "redis-benchmark's SET key not found over gRPC");
}

/// redis-cli over TLS to the RESP door of node `i`, with the cluster's CA
/// and, if given, the client certificate `identity` of its certs
/// directory: its output (stdout and stderr), and whether it exited 0.
fn redis_cli_tls(c: &Cluster, i: usize, identity: Option<&str>, args: &[&str]) -> (String, bool) {
    let certs = c.certs_dir();
    let mut cmd = tool("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port(c, i), "--tls", "--cacert"])
        .arg(certs.join("ca.pem"));
    if let Some(name) = identity {
        cmd.arg("--cert")
            .arg(certs.join(format!("{name}.pem")))
            .arg("--key")
            .arg(certs.join(format!("{name}.key")));
    }
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.trim_end().to_string(), out.status.success())
}

fn tls_resp_cluster(args: &[&str]) -> ClusterOptions {
    ClusterOptions {
        redis: true,
        tls: true,
        secret: Some("test-cluster-secret-0123456789abcdef".into()),
        rf: 2,
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tls_on_the_door_speaks_tls_only() {
    let c = Cluster::start_with(2, tls_resp_cluster(&[])).await;
    assert_eq!(
        redis_cli_tls(&c, 0, None, &["set", "k", "over tls"]),
        ("OK".to_string(), true)
    );
    assert_eq!(
        redis_cli_tls(&c, 1, None, &["get", "k"]),
        ("over tls".to_string(), true)
    );
    // Plaintext gets no answer: the door is not a plaintext hole beside
    // the TLS gRPC port.
    let out = tool("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port(&c, 0), "get", "k"])
        .output()
        .unwrap_or_else(|e| panic!("redis-cli: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("over tls"),
        "plaintext read the value: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_auth_cert_lets_in_a_certificate_from_the_ca_only() {
    let c = Cluster::start_with(2, tls_resp_cluster(&["--client-auth", "cert"])).await;
    assert_eq!(
        redis_cli_tls(&c, 0, Some("tester"), &["set", "k", "v"]),
        ("OK".to_string(), true)
    );
    assert_eq!(
        redis_cli_tls(&c, 1, Some("tester"), &["get", "k"]),
        ("v".to_string(), true)
    );
    let (out, _) = redis_cli_tls(&c, 0, None, &["get", "k"]);
    assert!(
        out.contains("NOAUTH") && out.contains("client certificate"),
        "TLS without a certificate: {out}"
    );
    let (out, _) = redis_cli_tls(&c, 0, None, &["auth", "some-token"]);
    assert!(out.contains("client certificate"), "AUTH: {out}");
}
