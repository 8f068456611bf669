//! A short benchmark against a real local 3-node cluster: the `tinykv-bench`
//! binary must report non-zero throughput and no errors.
//!
//! The test starts three `tinykv-node` processes itself (building the binary
//! with cargo if needed, or taking `TINYKV_NODE_BIN`), waits for the cluster
//! by polling with a deadline, runs the benchmark and stops the nodes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tinykv_client::{Client, ClientOptions, Consistency};

/// How long the cluster gets to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long the benchmark may take.
const BENCH_DEADLINE: Duration = Duration::from_secs(120);

/// Node processes, killed when dropped (also when the test fails).
struct Cluster {
    nodes: Vec<Child>,
    addrs: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    /// The last lines of every node's log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.nodes.len() {
            let path = self.dir.path().join(format!("n{i}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- n{i} ---\n"));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// Free local ports (bound, read and released; the node binds them next).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// The `tinykv-node` binary: `TINYKV_NODE_BIN`, or built by cargo into the
/// target directory this test binary came from.
fn node_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TINYKV_NODE_BIN") {
        return PathBuf::from(p);
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_tinykv-bench"));
    let profile_dir = bench.parent().expect("binary has a directory");
    let target_dir = profile_dir
        .parent()
        .expect("profile has a target directory");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "tinykv-node",
        "--bin",
        "tinykv-node",
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build for tinykv-node");
    assert!(status.success(), "building tinykv-node failed");
    profile_dir.join(format!("tinykv-node{}", std::env::consts::EXE_SUFFIX))
}

fn start_cluster(n: usize) -> Cluster {
    let node = node_binary();
    let dir = tempfile::tempdir().expect("temporary directory");
    let ports = free_ports(n);
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("n{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut cluster = Cluster {
        nodes: Vec::new(),
        addrs: addrs.clone(),
        dir,
    };
    for (i, addr) in addrs.iter().enumerate() {
        let id = format!("n{}", i + 1);
        let log = std::fs::File::create(cluster.dir.path().join(format!("{id}.log")))
            .expect("create node log");
        let err = log.try_clone().expect("clone log handle");
        let child = Command::new(&node)
            .args(["--node-id", &id, "--listen", addr, "--peers", &peers])
            .arg("--data-dir")
            .arg(cluster.dir.path().join(&id))
            .args(["--replication-factor", "3", "--metrics-listen", "off"])
            .env("TINYKV_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", node.display()));
        cluster.nodes.push(child);
    }
    cluster
}

/// Polls until a QUORUM write and read succeed through every node.
fn wait_ready(cluster: &mut Cluster) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The client's lazy channels need a runtime context.
    let _enter = rt.enter();
    let deadline = Instant::now() + READY_DEADLINE;
    let opts = ClientOptions {
        timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    for addr in cluster.addrs.clone() {
        let client = Client::connect_many([addr.as_str()], opts.clone()).expect("client");
        loop {
            for (i, child) in cluster.nodes.iter_mut().enumerate() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("node n{} exited with {status}\n{}", i + 1, cluster.logs());
                }
            }
            let probe = rt.block_on(async {
                client.put("bench-probe", "ok", Consistency::Quorum).await?;
                client.get("bench-probe", Consistency::Quorum).await
            });
            match probe {
                Ok(Some(_)) => break,
                Ok(None) | Err(_) if Instant::now() < deadline => {
                    rt.block_on(tokio::time::sleep(Duration::from_millis(100)));
                }
                other => panic!(
                    "cluster not ready through {addr} within {READY_DEADLINE:?}: {other:?}\n{}",
                    cluster.logs()
                ),
            }
        }
    }
}

#[test]
fn short_benchmark_against_a_local_cluster() {
    let t0 = Instant::now();
    let mut cluster = start_cluster(3);
    eprintln!("cluster started in {:?}", t0.elapsed());
    wait_ready(&mut cluster);
    eprintln!("cluster ready in {:?}", t0.elapsed());

    let json = cluster.dir.path().join("bench.json");
    let mut bench = Command::new(env!("CARGO_BIN_EXE_tinykv-bench"))
        .arg("--endpoints")
        .arg(cluster.addrs.join(","))
        .args(["--workers", "4", "--ops", "400", "--keyspace", "100"])
        .args(["--workload", "a", "--consistency", "quorum", "--load"])
        .args(["--warmup", "200ms", "--timeout", "5s", "--no-progress"])
        .args(["--max-error-rate", "0"])
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tinykv-bench");
    let deadline = Instant::now() + BENCH_DEADLINE;
    let status = loop {
        if let Some(status) = bench.try_wait().expect("poll tinykv-bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = bench.kill();
            panic!("tinykv-bench did not finish within {BENCH_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = bench.wait_with_output().expect("tinykv-bench output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.success(),
        "tinykv-bench failed ({status}):\n{stdout}\n{stderr}\n{}",
        cluster.logs()
    );
    assert!(stdout.contains("ops/s"), "{stdout}");

    let text = std::fs::read_to_string(&json).expect("JSON report written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON report parses");
    let run = &report["run"];
    assert_eq!(run["total_ops"], 400, "{text}");
    assert_eq!(run["ok_ops"], 400, "{text}");
    assert_eq!(run["errors"]["unavailable"], 0, "{text}");
    assert_eq!(run["errors"]["deadline"], 0, "{text}");
    assert_eq!(run["errors"]["invalid"], 0, "{text}");
    assert_eq!(run["errors"]["other"], 0, "{text}");
    let throughput = run["throughput_ops_per_sec"].as_f64().unwrap_or(0.0);
    assert!(throughput > 0.0, "{text}");
    assert!(run["read"]["ok"].as_u64().unwrap_or(0) > 0, "{text}");
    assert!(run["write"]["ok"].as_u64().unwrap_or(0) > 0, "{text}");
    // Every key was loaded first, so every read finds a value.
    assert_eq!(run["read"]["not_found"], 0, "{text}");
    assert!(
        run["read"]["latency_us"]["p99"].as_u64().unwrap_or(0) > 0,
        "{text}"
    );
    let load = &report["load"];
    assert_eq!(load["ok_ops"], 100, "{text}");
    assert_eq!(load["error_rate"], 0.0, "{text}");
}
