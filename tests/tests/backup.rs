//! Backup and restore across real nodes (#17): a backup taken under a
//! write load restores into a fresh cluster with every key acknowledged
//! before it started, deleted keys stay deleted even under an older
//! backup restored after it, a 5-node backup (and an incremental one)
//! restores into 3 nodes, and a corrupted file is refused by its checksum
//! before anything is written.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tinykv_client::{Consistency, Expiry};
use tinykv_tests::{binary, Cluster, ClusterOptions};

const SECRET: &str = "backup-test-secret-0123456789abcdef";

fn opts() -> ClusterOptions {
    ClusterOptions {
        secret: Some(SECRET.into()),
        ..ClusterOptions::default()
    }
}

/// Runs the CLI against node 0 of `c` with its secret: exit code, stdout,
/// stderr.
fn cli(c: &Cluster, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(binary("tinykv_client"))
        .arg(c.addr(0))
        .arg("--cluster-secret-file")
        .arg(c.secret_file().expect("secret"))
        .args(args)
        .output()
        .expect("run tinykv_client");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(c: &Cluster, args: &[&str]) -> String {
    let (code, out, err) = cli(c, args);
    assert_eq!(code, Some(0), "{args:?}: {out} {err}");
    out
}

async fn put(c: &Cluster, key: &str, val: &str) {
    c.client()
        .put(key.to_string(), val.to_string(), Consistency::Quorum)
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

async fn get(c: &Cluster, key: &str) -> Option<String> {
    c.client()
        .get(key.to_string(), Consistency::Quorum)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .map(|v| String::from_utf8_lossy(&v.val).into_owned())
}

/// Writes `load-N` keys one after another until `stop`; `acked` counts
/// those acknowledged.
fn start_load(
    c: &Cluster,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let client = c.client();
    tokio::spawn(async move {
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("load-{n}");
            if client
                .put(key.clone(), key, Consistency::Quorum)
                .await
                .is_ok()
            {
                n += 1;
                acked.store(n, Ordering::SeqCst);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_under_load_restores_into_a_fresh_cluster_and_deleted_keys_stay_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let c = Cluster::start_with(3, opts()).await;
    for i in 0..200 {
        put(&c, &format!("k{i}"), &format!("v{i}")).await;
    }
    // An older backup, taken while k0..k49 still had values.
    ok(&c, &["backup", "--out", old.to_str().unwrap()]);
    for i in 0..50 {
        c.client()
            .delete(format!("k{i}"), Consistency::Quorum)
            .await
            .expect("delete");
    }
    let ttl = c
        .client()
        .put_expiring(
            "ttl-key",
            "t",
            Expiry::After(Duration::from_secs(3600)),
            Consistency::Quorum,
        )
        .await
        .expect("ttl put");
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = start_load(&c, stop.clone(), acked.clone());
    tinykv_tests::wait_until("some load", Duration::from_secs(10), || async {
        acked.load(Ordering::SeqCst) >= 20
    })
    .await;
    let before = acked.load(Ordering::SeqCst);
    let out = ok(&c, &["backup", "--out", new.to_str().unwrap()]);
    assert!(out.contains("backed up"), "{out}");
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    drop(c);

    // A wiped cluster: fresh nodes and data directories.
    let fresh = Cluster::start_with(3, opts()).await;
    let out = ok(
        &fresh,
        &["-o", "json", "restore", "--in", new.to_str().unwrap()],
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(report["tombstones"].as_u64().unwrap() >= 50, "{out}");
    // The older backup restored on top cannot bring deleted keys back:
    // their tombstones are newer than its values.
    ok(&fresh, &["restore", "--in", old.to_str().unwrap()]);
    for i in 0..50 {
        assert_eq!(get(&fresh, &format!("k{i}")).await, None, "k{i} came back");
    }
    for i in 50..200 {
        assert_eq!(get(&fresh, &format!("k{i}")).await, Some(format!("v{i}")));
    }
    for n in 0..before {
        let key = format!("load-{n}");
        assert_eq!(
            get(&fresh, &key).await,
            Some(key.clone()),
            "{key} acked before the backup"
        );
    }
    let restored = fresh
        .client()
        .get("ttl-key", Consistency::Quorum)
        .await
        .expect("get")
        .expect("ttl-key restored");
    assert_eq!(restored.timestamp, ttl.timestamp, "original timestamp kept");
    assert!(restored.expires_at_us.is_some(), "expiry kept");

    // Data newer than the backup wins over a restore, unless --overwrite.
    put(&fresh, "k60", "newer").await;
    put(&fresh, "k0", "again").await;
    ok(&fresh, &["restore", "--in", new.to_str().unwrap()]);
    assert_eq!(get(&fresh, "k60").await, Some("newer".into()));
    assert_eq!(get(&fresh, "k0").await, Some("again".into()));
    ok(
        &fresh,
        &["restore", "--overwrite", "--in", new.to_str().unwrap()],
    );
    assert_eq!(get(&fresh, "k60").await, Some("v60".into()));
    assert_eq!(
        get(&fresh, "k0").await,
        None,
        "a restored delete overwrites too"
    );
}

/// Copies a backup directory (flat: a manifest and data files).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_five_node_backup_restores_into_three_nodes_and_a_corrupted_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    let c = Cluster::start_with(5, opts()).await;
    for i in 0..150 {
        put(&c, &format!("k{i}"), &format!("v{i}")).await;
    }
    let full: serde_json::Value = serde_json::from_str(&ok(
        &c,
        &["-o", "json", "backup", "--out", good.to_str().unwrap()],
    ))
    .expect("json");
    assert_eq!(full["versions"], 150, "{full}");
    // An incremental backup (one replica per range) holds only what came after.
    for i in 150..160 {
        put(&c, &format!("k{i}"), &format!("v{i}")).await;
    }
    let since = full["started_at_us"]
        .as_u64()
        .expect("started_at_us")
        .to_string();
    let inc = dir.path().join("inc");
    let args = [
        "-o",
        "json",
        "backup",
        "--fast",
        "--since",
        &since,
        "--out",
        inc.to_str().unwrap(),
    ];
    let inc_report: serde_json::Value = serde_json::from_str(&ok(&c, &args)).expect("json");
    assert_eq!(inc_report["versions"], 10, "{inc_report}");
    drop(c);

    copy_dir(&good, &bad);
    let data = std::fs::read_dir(&bad)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "tkvb"))
        .expect("a data file");
    let mut bytes = std::fs::read(&data).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&data, &bytes).expect("write");

    let small = Cluster::start_with(3, opts()).await;
    let (code, out, err) = cli(&small, &["restore", "--in", bad.to_str().unwrap()]);
    assert_eq!(code, Some(4), "stdout {out}, stderr {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    let name = data.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "names the file: {err}");
    for i in 0..150 {
        assert_eq!(get(&small, &format!("k{i}")).await, None, "nothing written");
    }

    let out = ok(&small, &["restore", "--in", good.to_str().unwrap()]);
    assert!(out.contains("restored 150 versions"), "{out}");
    ok(&small, &["restore", "--in", inc.to_str().unwrap()]);
    for i in 0..160 {
        assert_eq!(get(&small, &format!("k{i}")).await, Some(format!("v{i}")));
    }
}
