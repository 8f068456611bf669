//! A short benchmark against a real local 3-node cluster (the shared
//! test-cluster helper's real `tinykv-node` processes): the `tinykv-bench`
//! binary must report non-zero throughput and no errors, in JSON that
//! matches the checked-in schema (`docs/bench-report.schema.json`).

mod schema;

use std::path::Path;

use tinykv_tests::bench::run_bench;
use tinykv_tests::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn short_benchmark_against_a_local_cluster() {
    let cluster = Cluster::start(3).await;
    let addrs: Vec<String> = (0..3).map(|i| cluster.addr(i)).collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("bench.json");
    let endpoints = addrs.join(",");
    let mut args = vec!["--endpoints", endpoints.as_str()];
    args.extend(["--workers", "4", "--ops", "400", "--keyspace", "100"]);
    args.extend(["--workload", "a", "--consistency", "quorum", "--load"]);
    args.extend(["--warmup", "200ms", "--timeout", "5s", "--no-progress"]);
    args.extend(["--max-error-rate", "0", "--json"]);
    let mut args: Vec<&std::ffi::OsStr> = args.into_iter().map(std::ffi::OsStr::new).collect();
    args.push(json.as_os_str());
    let out = run_bench(Path::new(env!("CARGO_BIN_EXE_tinykv-bench")), args).await;
    let status = out.status;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.success(),
        "tinykv-bench failed ({status}):\n{stdout}\n{stderr}\n{}",
        cluster.log(0)
    );
    assert!(stdout.contains("ops/s"), "{stdout}");

    let text = std::fs::read_to_string(&json).expect("JSON report written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON report parses");
    let problems = schema::violations(&schema::bench_report_schema(), &report);
    assert!(
        problems.is_empty(),
        "the report breaks the schema: {problems:#?}\n{text}"
    );
    // The check has teeth: a field missing, one too many, a wrong type.
    let mut broken = report.clone();
    if let Some(latency) = broken["run"]["read"]["latency_us"].as_object_mut() {
        latency.remove("p99");
        latency.insert("p95".into(), 1.into());
    }
    broken["config"]["workers"] = "4".into();
    let found = schema::violations(&schema::bench_report_schema(), &broken);
    assert_eq!(found.len(), 3, "{found:#?}");
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

/// Runs `tinykv-bench` with `args` against `addrs` and returns its JSON
/// report, failing the test if it exits non-zero.
async fn bench_json(addrs: &[String], args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("bench.json");
    let endpoints = addrs.join(",");
    let flags = ["--no-progress", "--max-error-rate", "0", "--json"];
    let mut all: Vec<&std::ffi::OsStr> = ["--endpoints", endpoints.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .chain(flags)
        .map(std::ffi::OsStr::new)
        .collect();
    all.push(json.as_os_str());
    let out = run_bench(Path::new(env!("CARGO_BIN_EXE_tinykv-bench")), all).await;
    assert!(
        out.status.success(),
        "tinykv-bench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("JSON report written");
    serde_json::from_str(&text).expect("JSON report parses")
}

#[tokio::test(flavor = "multi_thread")]
async fn workloads_d_and_f_against_a_local_cluster() {
    let cluster = Cluster::start(3).await;
    let addrs: Vec<String> = (0..3).map(|i| cluster.addr(i)).collect();
    let common = [
        "--workers",
        "4",
        "--ops",
        "400",
        "--keyspace",
        "100",
        "--load",
    ];

    let d = bench_json(&addrs, &[&common[..], &["--workload", "d"]].concat()).await;
    let run = &d["run"];
    assert_eq!(d["config"]["distribution"], "latest", "{d}");
    assert_eq!(run["ok_ops"], 400, "{d}");
    assert!(
        run["write"]["ok"].as_u64().unwrap_or(0) > 0,
        "no inserts: {d}"
    );
    // Reads go to loaded keys or acknowledged inserts: they find values
    // (an insert still in flight may be missed, rarely).
    let misses = run["read"]["not_found"].as_u64().unwrap_or(u64::MAX);
    assert!(misses <= 4, "{d}");

    // F open loop with a time series: its report has every field the
    // schema allows (corrected latencies, intervals), D's the nulls.
    let open_loop = ["--workload", "f", "--rate", "1000", "--interval", "100ms"];
    let f = bench_json(&addrs, &[&common[..], &open_loop[..]].concat()).await;
    for report in [&d, &f] {
        let problems = schema::violations(&schema::bench_report_schema(), report);
        assert!(problems.is_empty(), "{problems:#?}\n{report}");
    }
    assert!(
        f["run"]["rmw"]["corrected_latency_us"]["p50"].is_u64(),
        "{f}"
    );
    assert!(!f["intervals"].as_array().is_some_and(Vec::is_empty), "{f}");
    let run = &f["run"];
    assert_eq!(run["ok_ops"], 400, "{f}");
    assert_eq!(run["write"]["ok"], 0, "{f}");
    assert!(run["rmw"]["ok"].as_u64().unwrap_or(0) > 100, "{f}");
    assert_eq!(run["rmw"]["not_found"], 0, "{f}");
    assert!(
        run["rmw"]["latency_us"]["p50"].as_u64().unwrap_or(0) > 0,
        "{f}"
    );
}
