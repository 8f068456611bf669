//! `tinykv-bench --rate` (open loop) against a live 3-node cluster: it
//! holds its target rate within 5%, reports coordinated-omission-corrected
//! percentiles that are never below the uncorrected ones, and writes the
//! time series, the HDR interval log and a valid SVG plot.
//!
//! The one test of the suite that asserts a rate: the issue asks that open
//! loop hold its target. The rate is modest (a debug build, 2 shared
//! cores) and no latency is asserted.

use std::ffi::OsString;
use std::path::Path;
use std::process::Output;

use tinykv_tests::bench::run_bench;
use tinykv_tests::{binary, Cluster};

/// Target operations per second: low enough that 512 workers keep up
/// with debug-build nodes on a loaded 2-core machine (up to 512 ms per
/// operation), so the schedule, not the machine, is what is tested.
const RATE: f64 = 1_000.0;
/// Measured seconds.
const SECS: f64 = 4.0;

#[tokio::test(flavor = "multi_thread")]
async fn open_loop_holds_its_rate_and_reports_corrected_percentiles() {
    let cluster = Cluster::start(3).await;
    let addrs: Vec<String> = (0..3).map(|i| cluster.addr(i)).collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (json, plot, hlog) = (
        dir.path().join("bench.json"),
        dir.path().join("bench.svg"),
        dir.path().join("bench.hlog"),
    );
    let out = open_loop(&addrs, &json, &plot, &hlog).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tinykv-bench failed:\n{stdout}\n{stderr}"
    );
    // The report, for the log of a passing run too (`--nocapture`).
    eprintln!("{stdout}\n{stderr}");
    assert!(stdout.contains("open loop at 1000 ops/s"), "{stdout}");
    assert!(stdout.contains(" corr."), "{stdout}");
    assert!(
        stderr.contains("ops/s  p50"),
        "no interval lines:\n{stderr}"
    );

    let text = std::fs::read_to_string(&json).expect("JSON report written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON report parses");
    let run = &report["run"];
    // Every operation due in the measured time was sent...
    let sent = run["total_ops"].as_f64().unwrap_or(0.0);
    assert!(
        (sent - RATE * SECS).abs() <= 2.0,
        "{sent} ops sent:\n{stdout}"
    );
    // ...on schedule: the rate from the start to the last send. (The
    // completion rate also waits for the last replies: it depends on
    // their latency, not on the schedule.)
    let achieved = run["sent_ops_per_sec"].as_f64().unwrap_or(0.0);
    assert!(
        (achieved - RATE).abs() <= RATE * 0.05,
        "sent {achieved:.0} ops/s, target {RATE}:\n{stdout}\n{stderr}"
    );
    assert_eq!(report["config"]["target_rate_ops_per_sec"], RATE);
    for op in ["read", "write"] {
        let (plain, corrected) = (&run[op]["latency_us"], &run[op]["corrected_latency_us"]);
        for p in ["p50", "p90", "p99", "p999", "max"] {
            let (u, c) = (plain[p].as_u64(), corrected[p].as_u64());
            assert!(u.is_some_and(|u| u > 0), "{op}.{p}: {text}");
            assert!(c >= u, "{op}: corrected {p} {c:?} < uncorrected {u:?}");
        }
    }
    check_series(&report, sent);
    check_plot(&plot);
    let log = std::fs::read_to_string(&hlog).expect("HDR log written");
    assert!(log.starts_with('#'), "{log}");
    assert!(log.contains("\"StartTimestamp\""), "{log}");
    assert!(
        log.lines()
            .filter(|l| l.starts_with("Tag=uncorrected,"))
            .count()
            >= 3
    );
}

/// Runs `tinykv-bench` open loop against `addrs`, polling it to the end.
async fn open_loop(addrs: &[String], json: &Path, plot: &Path, hlog: &Path) -> Output {
    let mut args: Vec<OsString> = ["--endpoints".into(), addrs.join(",").into()].into();
    // Enough workers that the schedule never waits for a free one unless
    // the cluster stalls (each has one operation in flight): 64 were too
    // few once, when debug nodes on a busy machine answered in 40 ms.
    let flags = ["--workers", "512", "--keyspace", "1000", "--workload", "a"];
    args.extend(flags.map(OsString::from));
    let (rate, secs) = (RATE.to_string(), format!("{SECS}s"));
    args.extend(["--rate", &rate, "--duration", &secs].map(OsString::from));
    let flags = ["--warmup", "500ms", "--interval", "1s", "--no-progress"];
    args.extend(flags.map(OsString::from));
    args.extend(["--max-error-rate", "0.01"].map(OsString::from));
    for (flag, path) in [("--json", json), ("--plot", plot), ("--hdr-log", hlog)] {
        args.extend([flag.into(), path.as_os_str().to_owned()]);
    }
    run_bench(&binary("tinykv-bench"), args).await
}

/// The intervals cover the run and add up to its successful operations.
fn check_series(report: &serde_json::Value, sent: f64) {
    let intervals = report["intervals"].as_array().cloned().unwrap_or_default();
    assert!(intervals.len() >= 4, "{intervals:?}");
    let ops: u64 = intervals.iter().filter_map(|p| p["ops"].as_u64()).sum();
    assert_eq!(Some(ops), report["run"]["ok_ops"].as_u64());
    assert!(ops as f64 <= sent);
    for p in &intervals {
        assert!(
            p["corrected_p99_us"].as_u64() >= p["p99_us"].as_u64(),
            "{p}"
        );
    }
}

/// The plot is an SVG document with both charts.
fn check_plot(path: &Path) {
    let svg = std::fs::read_to_string(path).expect("plot written");
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("invalid SVG: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for want in ["Throughput over time", "Latency by percentile"] {
        assert!(texts.iter().any(|t| t.contains(want)), "{want} missing");
    }
    assert!(doc.descendants().any(|n| n.has_tag_name("polyline")));
}
