//! Every metric the Helm chart's Grafana dashboard and alert rules query is
//! one a live node exports.
//!
//! The names are taken from `charts/tinykv-cluster/files/grafana-dashboard.json`
//! (every panel's `expr`; `docs/grafana-dashboard.json` links to it) and from
//! the PrometheusRule template `charts/tinykv-cluster/templates/prometheusrule.yaml`:
//! every `tinykv_[a-z_]+` and `process_[a-z_]+`, with a histogram's
//! `_bucket`, `_sum` and `_count` suffixes stripped. A real node
//! (`Cluster::start(1)`) serves one put and one get first, so that the
//! labelled families those create (`tinykv_requests_total`,
//! `tinykv_request_duration_seconds`) exist; each name must then appear in
//! its `/metrics`.
//!
//! Labelled families that appear only after an event a single healthy node
//! never sees (a failed request, a quorum failure, a refused call, a peer's
//! clock offset or health) are checked against `docs/metrics.md` instead:
//! the name must be listed there with labels, and the node crate's unit
//! test `docs_metrics_md_lists_exactly_the_exported_metrics` holds that
//! table equal to the node's registry. Anything else missing fails.

use tinykv_client::Consistency;
use tinykv_tests::Cluster;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `tinykv_*` and `process_*` names in `text`, histogram suffixes stripped.
fn metric_names(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    for prefix in ["tinykv_", "process_"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(prefix).map(|i| i + from) {
            let starts_word =
                at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
            let end = text[at..]
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .map_or(text.len(), |i| i + at);
            from = end.max(at + 1);
            if !starts_word || end == at + prefix.len() {
                continue;
            }
            let mut name = &text[at..end];
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    name = base;
                    break;
                }
            }
            names.push(name.to_string());
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The queries of every panel of a Grafana dashboard.
fn dashboard_exprs(json: &serde_json::Value, out: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// Whether the exposition `text` has a sample of family `name`.
fn exported(text: &str, name: &str) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name).is_some_and(|rest| {
            rest.starts_with(['{', ' '])
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| rest.starts_with(s) && rest[s.len()..].starts_with(['{', ' ']))
        })
    })
}

/// The labels column of `name`'s row in docs/metrics.md, if it is listed.
fn documented_labels(doc: &str, name: &str) -> Option<String> {
    let row = format!("| `{name}` |");
    let line = doc.lines().find(|l| l.starts_with(&row))?;
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    // "", name, type, labels, meaning, ""
    Some(cells.get(3).copied().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_and_the_alerts_query_is_exported_by_a_live_node() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("charts/tinykv-cluster/files/grafana-dashboard.json"))
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "only {} dashboard queries", exprs.len());
    let dash_names = metric_names(&exprs.join("\n"));
    let rule_names = metric_names(&read("charts/tinykv-cluster/templates/prometheusrule.yaml"));
    // What the alerts the issue asks for are built on.
    for name in [
        "tinykv_quorum_failures_total",
        "tinykv_member_health",
        "tinykv_hints_pending",
        "tinykv_hints_dropped_total",
        "tinykv_peer_clock_offset_seconds",
        "tinykv_auth_refused_total",
        "tinykv_storage_disk_bytes",
    ] {
        assert!(rule_names.iter().any(|n| n == name), "no alert on {name}");
    }
    for name in [
        "tinykv_requests_total",
        "tinykv_request_duration_seconds",
        "tinykv_hints_pending",
        "tinykv_member_health",
        "tinykv_peer_clock_offset_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "tinykv_storage_keys",
        "tinykv_storage_disk_bytes",
    ] {
        assert!(dash_names.iter().any(|n| n == name), "no panel on {name}");
    }

    let c = Cluster::start(1).await;
    let client = c.client();
    client
        .put("monitoring-key", "v", Consistency::One)
        .await
        .expect("put");
    client
        .get("monitoring-key", Consistency::One)
        .await
        .expect("get");
    let text = c.metrics(0).await;
    let doc = read("docs/metrics.md");

    let mut names = dash_names.clone();
    names.extend(rule_names.iter().cloned());
    names.sort();
    names.dedup();
    let mut by_doc = Vec::new();
    let mut missing = Vec::new();
    for name in &names {
        if exported(&text, name) {
            continue;
        }
        match documented_labels(&doc, name) {
            Some(labels) if labels.contains('`') => by_doc.push(name.clone()),
            _ => missing.push(name.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "queried by the dashboard or the alerts, not exported by a live node \
         (and not a labelled family of docs/metrics.md): {missing:?}\n/metrics:\n{text}"
    );
    // The families of the put and get, and the unlabelled ones, came from
    // the node itself.
    for name in [
        "tinykv_requests_total",
        "tinykv_request_duration_seconds",
        "tinykv_hints_pending",
        "tinykv_storage_disk_bytes",
        "process_resident_memory_bytes",
    ] {
        assert!(exported(&text, name), "{name} not on /metrics:\n{text}");
    }
    eprintln!(
        "{} metric names queried; {} exported by the live node; \
         checked against docs/metrics.md (labelled, event-only): {by_doc:?}",
        names.len(),
        names.len() - by_doc.len()
    );
}

#[test]
fn metric_names_strips_histogram_suffixes_and_skips_other_words() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, rate(tinykv_request_duration_seconds_bucket[5m])) \
             + process_cpu_seconds_total + my_tinykv_x + tinykv_ + tinykv-cluster"
        ),
        [
            "process_cpu_seconds_total",
            "tinykv_request_duration_seconds"
        ]
    );
    let text = "# TYPE tinykv_x histogram\ntinykv_x_bucket{le=\"1\"} 1\ntinykv_y 2\n";
    assert!(exported(text, "tinykv_x"));
    assert!(exported(text, "tinykv_y"));
    assert!(!exported(text, "tinykv_z"));
    assert!(!exported(text, "tinykv"));
}
