//! The Prometheus endpoint and the status RPC report what happened.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tinykv_client::Consistency;
use tinykv_tests::{Cluster, ClusterOptions};

fn scrape(port: u16) -> String {
    let mut s = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(_) => return String::new(),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_status_report_requests_hints_and_members() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut o = ClusterOptions::default();
    o.args
        .extend(["--phi-threshold".to_string(), "3".to_string()]);
    let mut c = Cluster::start_with(3, o).await;
    c.kill(2);
    // node1 serves metrics on `port` from now on.
    c.nodes[0].extra = vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")];
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
    let status = client.status().await.expect("status");
    assert!(
        status.pending_hints > 0,
        "hints for the dead node: {status:?}"
    );
    let m = scrape(port);
    for needle in [
        "tinykv_requests_total{consistency=\"quorum\",op=\"put\"} 20",
        "tinykv_requests_total{consistency=\"quorum\",op=\"get\"} 20",
        "tinykv_request_duration_seconds_bucket",
        "tinykv_quorum_failures_total{op=\"read\"} 1",
        "tinykv_hints_stored_total",
        "tinykv_member_health{health=\"down\",member=\"node3\"} 1",
        "tinykv_clock_skew_seconds",
    ] {
        assert!(m.contains(needle), "/metrics lacks {needle:?}:\n{m}");
    }
    // Group commit: node1 committed its replica writes, each batch holding
    // at least one op.
    let value = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("/metrics lacks {name}:\n{m}"))
    };
    let commits = value("tinykv_storage_commits_total ");
    let ops = value("tinykv_storage_committed_ops_total ");
    assert!(commits > 0, "no storage commits counted");
    assert!(ops >= commits, "{ops} ops in {commits} commits");
    value("tinykv_storage_flushes_total ");
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
