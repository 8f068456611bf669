//! The Prometheus endpoint and the status RPC report what happened.

use std::time::Duration;

use tinykv_client::Consistency;
use tinykv_tests::metrics::sample;
use tinykv_tests::{wait_until, Cluster, ClusterOptions};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_status_report_requests_hints_and_members() {
    let mut o = ClusterOptions::default();
    o.args
        .extend(["--phi-threshold".to_string(), "3".to_string()]);
    let mut c = Cluster::start_with(3, o).await;
    c.kill(2);
    // node1 serves metrics from now on, on a port it binds itself.
    c.nodes[0].extra = vec!["--metrics-listen".into(), "127.0.0.1:0".into()];
    c.restart(0).await;
    let client = c.client_for(0);
    for i in 0..20 {
        client
            .put(format!("obs-{i}"), "v", Consistency::Quorum)
            .await
            .expect("put");
        client
            .get(format!("obs-{i}"), Consistency::Quorum)
            .await
            .expect("get");
    }
    let _ = client.get("obs-0", Consistency::All).await;
    c.wait_health(0, "node3", "down").await;
    // Three nodes, RF 3: node3 replicates every key and no fallback exists,
    // so node1 keeps a hint for each of its 20 writes (a failed read repair
    // may add one), none delivered or dropped while node3 is dead.
    wait_until(
        "every hint stored to be pending",
        Duration::from_secs(10),
        || async {
            c.metric(0, "tinykv_hints_stored_total").await == c.pending_hints([0]).await as f64
        },
    )
    .await;
    let pending = c.pending_hints([0]).await;
    assert!(pending >= 20, "{pending} hints for 20 writes node3 missed");
    let m = c.metrics(0).await;
    for needle in [
        "tinykv_requests_total{consistency=\"quorum\",op=\"put\"} 20",
        "tinykv_requests_total{consistency=\"quorum\",op=\"get\"} 20",
        "tinykv_request_duration_seconds_bucket",
        "tinykv_quorum_failures_total{op=\"read\"} 1",
        "tinykv_member_health{health=\"down\",member=\"node3\"} 1",
        "tinykv_clock_skew_seconds",
    ] {
        assert!(m.contains(needle), "/metrics lacks {needle:?}:\n{m}");
    }
    let value =
        |name: &str| sample(&m, name).unwrap_or_else(|| panic!("/metrics lacks {name}:\n{m}"));
    assert_eq!(value("tinykv_hints_stored_total"), pending as f64);
    assert_eq!(value("tinykv_hints_replayed_total"), 0.0);
    assert_eq!(value("tinykv_hints_dropped_total"), 0.0);
    // Group commit: node1 committed its replica writes, each batch holding
    // at least one op, at least the 20 puts' worth.
    let commits = value("tinykv_storage_commits_total");
    let ops = value("tinykv_storage_committed_ops_total");
    assert!(commits > 0.0, "no storage commits counted");
    assert!(
        ops >= commits && ops >= 40.0,
        "{ops} ops in {commits} commits"
    );
    // Periodic sync: the window timer flushed those commits, at most once
    // per commit.
    wait_until("a periodic flush", Duration::from_secs(10), || async {
        c.metric(0, "tinykv_storage_flushes_total").await >= 1.0
    })
    .await;
    let flushes = c.metric(0, "tinykv_storage_flushes_total").await;
    let commits = c.metric(0, "tinykv_storage_commits_total").await;
    assert!(flushes <= commits, "{flushes} flushes of {commits} commits");
}

/// With debug logging, one request's lines are tied together by its span:
/// the coordinator's line for each replica's ack and the request's end
/// carry the same request id.
#[tokio::test]
async fn a_requests_log_lines_share_its_span_at_debug() {
    let mut c = Cluster::start(3).await;
    c.nodes[0].log_filter = "info,tinykv_node=debug".into();
    c.restart(0).await;
    c.client_for(0)
        .put("span-key", "v", Consistency::All)
        .await
        .expect("put");
    let log = c.log(0);
    // The request's span as it opens each line: `request{op=.. request_id=..}`
    // (a client's put may travel in a batch stream).
    let span = log
        .lines()
        .find(|l| l.contains("request done op=\"put\""))
        .and_then(|l| {
            let start = l.find("request{")?;
            let end = start + l[start..].find('}')?;
            Some(l[start..=end].to_string())
        })
        .unwrap_or_else(|| panic!("no finished put in a request span:\n{log}"));
    let of_request: Vec<&str> = log.lines().filter(|l| l.contains(&span)).collect();
    for node in ["node1", "node2", "node3"] {
        assert!(
            of_request.iter().any(|l| l.contains("coordinate_writes")
                && l.contains(&format!("replica acked replica={node}"))),
            "no ack from {node} in {span}:\n{log}"
        );
    }
    // The span names the request id; the put's end line in it names its
    // consistency (a batch stream's operations may each have their own, so
    // the span of a stream cannot).
    assert!(span.contains("request_id="), "{span} has no request id");
    assert!(
        of_request
            .iter()
            .any(|l| l.contains("request done op=\"put\" level=\"all\"")),
        "the put's end line in {span} does not name its consistency:\n{log}"
    );
}

/// `tinykv_peer_call_duration_seconds_count` of member `member` and call
/// `call` in the metrics text `m` (0 when absent).
fn peer_calls(m: &str, member: &str, call: &str) -> f64 {
    let name =
        format!("tinykv_peer_call_duration_seconds_count{{call=\"{call}\",member=\"{member}\"}}");
    sample(m, &name).unwrap_or(0.0)
}

/// Every outgoing node-to-node call is timed by member and call: after
/// writes at ALL through node1, each other member has replica-stream and
/// heartbeat observations there. A leaving node's bytes still to stream
/// show while its link to a new owner is cut (its streaming retries), and
/// are 0 once it has left.
#[tokio::test(flavor = "multi_thread")]
async fn peer_calls_and_bytes_still_to_stream_are_measured() {
    let c = Cluster::start(4).await;
    let client = c.client_for(0);
    for i in 0..40 {
        client
            .put(format!("pc-{i}"), "v".repeat(100), Consistency::All)
            .await
            .expect("put at ALL");
    }
    let m = c.metrics(0).await;
    for member in ["node2", "node3", "node4"] {
        for call in ["ExchangeStream", "Heartbeat"] {
            let n = peer_calls(&m, member, call);
            assert!(n > 0.0, "no {call} calls to {member} timed:\n{m}");
        }
    }
    assert_eq!(peer_calls(&m, "node1", "Heartbeat"), 0.0, "none to itself");

    // With RF 3 on the 3 nodes left, node1 replicates every key node4
    // holds: cut from node1, node4 cannot finish streaming.
    assert_eq!(c.metric(3, "tinykv_stream_pending_bytes").await, 0.0);
    c.block(3, &["node1"]);
    c.client_for(3)
        .decommission("node4")
        .await
        .expect("decommission accepted");
    wait_until(
        "node4 to report bytes still to stream",
        Duration::from_secs(30),
        || async { c.metric(3, "tinykv_stream_pending_bytes").await > 0.0 },
    )
    .await;
    let pending = c.metric(3, "tinykv_stream_pending_bytes").await;
    // 30 of the 40 keys on average, each over 100 bytes of value.
    assert!(pending >= 1000.0, "{pending} bytes pending");
    c.block(3, &[]);
    wait_until(
        "node4 to finish streaming",
        Duration::from_secs(60),
        || async { c.metric(3, "tinykv_stream_pending_bytes").await == 0.0 },
    )
    .await;
    // Nothing was lost to a joiner: no cleanup to do anywhere.
    assert_eq!(c.metric(0, "tinykv_cleanup_pending_bytes").await, 0.0);
}
