//! The real `tinykv_client` binary against a real cluster: every exit code
//! the README documents (0 success, 1 not found, 2 bad usage or invalid
//! argument, 3 unavailable or deadline exceeded, 4 any other failure), and
//! every error as one line on stderr.

use tinykv_tests::{binary, Cluster, ClusterOptions};

const SECRET: &str = "test-cluster-secret-0123456789abcdef";

/// What one run of the CLI did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `tinykv_client ARGS` (without the cluster secret from the
/// environment) and waits for it off the runtime's threads.
async fn cli(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(binary("tinykv_client"))
        .args(args)
        .env_remove("TINYKV_CLUSTER_SECRET_FILE")
        .env_remove("TINYKV_ADDR")
        .env_remove("TINYKV_CONSISTENCY")
        .output()
        .await
        .unwrap_or_else(|e| panic!("running tinykv_client: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts that `run` exited with `code` and said why in one line.
fn failed(run: &Run, code: i32, what: &str) {
    assert_eq!(
        run.code, code,
        "{what}: exit code; stdout {:?} stderr {:?}",
        run.stdout, run.stderr
    );
    assert_eq!(
        run.stderr.trim_end().lines().count(),
        1,
        "{what}: one line on stderr: {:?}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_exit_code_through_the_real_binary() {
    let mut c = Cluster::start_with(
        3,
        ClusterOptions {
            secret: Some(SECRET.into()),
            args: vec![
                "--heartbeat-interval".into(),
                "200ms".into(),
                "--max-value-bytes".into(),
                "16".into(),
            ],
            ..ClusterOptions::default()
        },
    )
    .await;
    let addr = c.addr(0);
    let addr = addr.as_str();

    // 0: a put and the get of it.
    let put = cli(&[addr, "put", "k", "v", "--consistency", "all"]).await;
    assert_eq!(put.code, 0, "put: {:?}", put.stderr);
    assert!(put.stdout.starts_with("OK (timestamp "), "{:?}", put.stdout);
    assert!(put.stderr.is_empty(), "{:?}", put.stderr);
    let get = cli(&[addr, "get", "k"]).await;
    assert_eq!(
        (get.code, get.stdout.as_str()),
        (0, "v"),
        "{:?}",
        get.stderr
    );

    // 1: a key never written, and one deleted.
    failed(
        &cli(&[addr, "get", "never-written"]).await,
        1,
        "get of a missing key",
    );
    assert_eq!(
        cli(&[addr, "delete", "k", "--consistency", "all"])
            .await
            .code,
        0
    );
    failed(&cli(&[addr, "get", "k"]).await, 1, "get of a deleted key");

    // 2: bad usage (clap), and an argument the node refuses.
    failed(&cli(&[addr, "put", "k"]).await, 2, "put without a value");
    failed(&cli(&[addr, "frobnicate"]).await, 2, "an unknown command");
    let big = "x".repeat(64);
    let refused = cli(&[addr, "put", "k", &big]).await;
    failed(&refused, 2, "a value over --max-value-bytes");

    // 4: an admin call without the cluster secret.
    let denied = cli(&[addr, "owners", "k"]).await;
    failed(&denied, 4, "owners without the secret");
    assert!(
        denied.stderr.contains("cluster secret"),
        "{:?}",
        denied.stderr
    );

    // 3: a quorum that cannot be reached, and a node that cannot be.
    c.kill(1);
    c.kill(2);
    let timeout = ["--timeout", "2s"];
    let mut args = vec![addr, "put", "k2", "v", "--consistency", "quorum"];
    args.extend(timeout);
    failed(&cli(&args).await, 3, "a put without a quorum");
    let down = c.addr(1);
    let mut args = vec![down.as_str(), "get", "k"];
    args.extend(timeout);
    failed(&cli(&args).await, 3, "a get from a node that is down");
}
