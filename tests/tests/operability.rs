//! The node as an operator first meets it: five nodes started with exactly
//! the README's command on one host all serve (no port of theirs collides:
//! metrics are on each node's gRPC port), and each answers a Prometheus
//! scrape there; a data directory of the removed redb engine is refused
//! with what to do.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tinykv_client::auth::generate_secret;
use tinykv_client::Client;
use tinykv_tests::metrics::scrape;
use tinykv_tests::{binary, wait_until};

/// Kills the nodes however the test ends.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread")]
async fn five_nodes_started_with_the_documented_command_on_one_host_all_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, generate_secret()).expect("secret");
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("node{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Nodes(Vec::new());
    for (i, port) in ports.iter().enumerate() {
        // README: tinykv-node --node-id ID --listen HOST:PORT --peers ID=HOST:PORT,...
        //         --data-dir DIR --cluster-secret-file FILE
        let child = Command::new(binary("tinykv-node"))
            .args(["--node-id", &format!("node{}", i + 1)])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--peers", &peers])
            .arg("--data-dir")
            .arg(dir.path().join(format!("node{}", i + 1)))
            .arg("--cluster-secret-file")
            .arg(&secret)
            .env_remove("TINYKV_METRICS_LISTEN")
            .env_remove("RUST_LOG")
            .env_remove("TINYKV_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tinykv-node");
        nodes.0.push(child);
    }
    for port in &ports {
        let addr = format!("127.0.0.1:{port}");
        let client = Client::connect(&addr).expect("client");
        wait_until(&format!("{addr} to serve"), Duration::from_secs(30), || {
            let client = client.clone();
            async move { client.health().await.unwrap_or(false) }
        })
        .await;
        let text = scrape(&addr)
            .await
            .expect("a scrape of /metrics on the gRPC port");
        for family in [
            "tinykv_build_info",
            "tinykv_storage_keys",
            "tinykv_storage_disk_bytes",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} missing:\n{text}"
            );
        }
    }
    for (i, node) in nodes.0.iter_mut().enumerate() {
        assert!(
            node.try_wait().expect("wait").is_none(),
            "node{} exited",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_log_warn_silences_info_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("node.log");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(binary("tinykv-node"))
        .args(["--node-id", "n1", "--listen", &addr, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .env_remove("TINYKV_LOG")
        .env("NO_COLOR", "1")
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("spawn tinykv-node");
    let _nodes = Nodes(vec![child]);
    let client = Client::connect(&addr).expect("client");
    wait_until("the node to serve", Duration::from_secs(30), || {
        let client = client.clone();
        async move { client.health().await.unwrap_or(false) }
    })
    .await;
    client
        .put("k", "v", tinykv_client::Consistency::One)
        .await
        .expect("put");
    let text = std::fs::read_to_string(&log).expect("read log");
    assert!(
        !text.contains(" INFO "),
        "RUST_LOG=warn still printed INFO lines:\n{text}"
    );
}

/// Runs `tinykv-node` with `args` on data directory `data`, which must exit
/// by itself within 30 s; its exit status and everything it printed.
async fn run_to_exit(data: &std::path::Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let log = data.with_extension("log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(binary("tinykv-node"))
        .args([
            "--node-id",
            "n1",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("spawn tinykv-node");
    // Killed (if still running) however the test ends.
    let mut nodes = Nodes(vec![child]);
    let mut status = None;
    wait_until("the node to exit", Duration::from_secs(30), || {
        status = nodes.0[0].try_wait().expect("wait");
        let done = status.is_some();
        async move { done }
    })
    .await;
    let status = status.expect("exited");
    (status, std::fs::read_to_string(&log).expect("read log"))
}

/// The redb engine was removed (issue #15): a node refuses to start on a
/// data directory redb wrote, saying what to do, and leaves it as it was;
/// `--storage-engine redb` is refused in one line, `fjall` still works.
#[tokio::test(flavor = "multi_thread")]
async fn a_redb_data_directory_and_the_redb_flag_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("data.redb"), b"redb database").expect("data.redb");
    let (status, text) = run_to_exit(&data, &[]).await;
    assert!(!status.success(), "{status:?}\n{text}");
    for part in ["data.redb", "tinykv_client backup", "--join"] {
        assert!(text.contains(part), "{part:?} missing:\n{text}");
    }
    assert!(
        !data.join("fjall").exists(),
        "a fjall database was made over it"
    );

    let (status, text) = run_to_exit(&dir.path().join("new"), &["--storage-engine", "redb"]).await;
    assert!(!status.success(), "{status:?}\n{text}");
    assert!(text.contains("the redb engine was removed"), "{text}");
}
