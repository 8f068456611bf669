//! Bad data on disk is contained (issue #15): a record whose stored bytes
//! no longer decode, on one replica, reads as missing there, does not stop
//! a backup scan or a repair round, and is healed from the other replicas by it. Hints and
//! periodic anti-entropy are off, so only the round the test asks for can
//! move a version.

use tinykv_client::Consistency;
use tinykv_node::storage::{quarantine, FjallEngine};
use tinykv_tests::{Cluster, ClusterOptions, LocalCopy, QUIET_ARGS};

/// Bytes that are not a stored record (field 1 with wire type 7, which
/// does not exist).
const GARBAGE: &[u8] = &[0x0f, 0xff, 0xff, 0x01];

#[tokio::test(flavor = "multi_thread")]
async fn a_repair_round_heals_a_corrupt_record_on_one_replica() {
    let mut c = Cluster::start_with(3, ClusterOptions::with_args(&QUIET_ARGS)).await;
    // Neighbours, so the scans of the bad record's range have more to do.
    for k in 0..20 {
        c.client_for(0)
            .put(format!("key-{k}"), format!("val-{k}"), Consistency::All)
            .await
            .expect("put");
    }
    let key = "key-7";
    let want = c.local_copy(2, key).await;
    assert!(matches!(want, LocalCopy::Value { ref val, .. } if val == "val-7"));

    // Rot the key's stored bytes on node3 while it is down.
    c.stop(2).await;
    let dir = c.nodes[2].data_dir.clone();
    FjallEngine::open(&dir)
        .expect("open node3's data")
        .write_raw(key.as_bytes(), GARBAGE)
        .expect("corrupt the record");
    c.restart(2).await;

    assert_eq!(
        c.local_copy(2, key).await,
        LocalCopy::Absent,
        "a record that does not decode reads as missing"
    );
    assert!(c.metric(2, "tinykv_corrupt_records_total").await >= 1.0);
    let kept = std::fs::read_dir(dir.join(quarantine::DIR))
        .expect("quarantine folder")
        .map(|f| f.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "bytes"))
        .expect("the bad bytes are quarantined");
    assert_eq!(std::fs::read(kept).expect("read"), GARBAGE);

    // A backup scan of node3's whole ring goes past it.
    let page = c
        .client_for(2)
        .scan_range((0, 0), Default::default(), 1000, 0)
        .await
        .expect("the backup scan survives");
    let mut scanned: Vec<String> = page
        .versions
        .iter()
        .map(|v| String::from_utf8_lossy(&v.key).into_owned())
        .collect();
    scanned.sort();
    let mut others: Vec<String> = (0..20)
        .filter(|&k| k != 7)
        .map(|k| format!("key-{k}"))
        .collect();
    others.sort();
    assert_eq!(
        scanned, others,
        "every key but the bad one, more: {}",
        page.more
    );

    let report = c.client_for(2).repair().await.expect("the round survives");
    assert!(report.keys_received >= 1, "{report:?}");
    assert_eq!(
        c.local_copy(2, key).await,
        want,
        "node3's own copy is the other replicas' version again"
    );
    for k in (0..20).filter(|&k| k != 7) {
        let k = format!("key-{k}");
        let copy = c.local_copy(2, &k).await;
        assert!(matches!(copy, LocalCopy::Value { .. }), "{k}: {copy:?}");
    }
}
