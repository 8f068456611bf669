use super::*;
use crate::stats::{ErrorKind, Recorder};

fn parse(args: &[&str]) -> Result<Args, clap::Error> {
    Args::try_parse_from(std::iter::once("tinykv-bench").chain(args.iter().copied()))
}

fn settings(args: &[&str]) -> Settings {
    match parse(args) {
        Ok(a) => a.settings(),
        Err(e) => panic!("{args:?} rejected: {e}"),
    }
}

#[test]
fn defaults() {
    let s = settings(&[]);
    assert_eq!(s.endpoints.len(), 5);
    assert_eq!(s.endpoints[0], "127.0.0.1:50051");
    assert_eq!(s.endpoints[4], "127.0.0.1:50055");
    assert_eq!(s.run.workers, 50);
    assert_eq!(s.run.stop, StopAt::Ops(DEFAULT_OPS));
    assert_eq!(s.run.keyspace, 100_000);
    assert_eq!(s.run.value_size, 100);
    assert_eq!(s.run.read_ratio, 0.5);
    assert_eq!(s.run.distribution, Distribution::Uniform);
    assert_eq!(s.read_consistency, Consistency::Quorum);
    assert_eq!(s.write_consistency, Consistency::Quorum);
    assert!(!s.run.load);
    assert_eq!(s.run.warmup, Duration::ZERO);
    assert_eq!(s.client.timeout, Duration::from_secs(5));
    assert!(s.progress);
    assert!(s.json.is_none());
    assert_eq!(s.max_error_rate, 0.01);
    assert_eq!(s.run.rate, None);
    assert_eq!(s.run.interval, None);
    assert_eq!(s.run.non_read, OpKind::Write);
    assert!(!s.interval_lines && s.hdr_log.is_none() && s.plot.is_none());
}

#[test]
fn open_loop_series_and_new_workloads() {
    let s = settings(&["--rate", "2000", "--interval", "500ms"]);
    assert_eq!(s.run.rate, Some(2000.0));
    assert_eq!(s.run.interval, Some(Duration::from_millis(500)));
    assert!(s.interval_lines);
    let info = s.info();
    assert_eq!(info.target_rate_ops_per_sec, Some(2000.0));
    assert_eq!(info.interval_secs, Some(0.5));

    // A plot or an HDR log needs the series: 1 s intervals, not printed.
    let s = settings(&["--plot", "p.svg", "--hdr-log", "run.hlog"]);
    assert_eq!(s.run.interval, Some(DEFAULT_INTERVAL));
    assert!(!s.interval_lines);
    assert_eq!(s.plot, Some(PathBuf::from("p.svg")));
    assert_eq!(s.hdr_log, Some(PathBuf::from("run.hlog")));

    let d = settings(&["--workload", "d"]);
    assert_eq!(d.run.read_ratio, 0.95);
    assert_eq!(d.run.distribution, Distribution::Latest);
    assert_eq!(d.run.non_read, OpKind::Write);
    let d = settings(&["--workload", "d", "--distribution", "zipfian"]);
    assert_eq!(d.run.distribution, Distribution::Zipfian, "explicit wins");
    let f = settings(&["--workload", "f"]);
    assert_eq!(f.run.read_ratio, 0.5);
    assert_eq!(f.run.non_read, OpKind::ReadModifyWrite);
    assert_eq!(f.run.distribution, Distribution::Uniform);
}

#[test]
fn flags_are_resolved() {
    let s = settings(&[
        "--endpoints",
        "a:1, b:2",
        "--workers=4",
        "--duration",
        "1s 500ms",
        "--workload",
        "b",
        "--distribution",
        "zipfian",
        "--consistency",
        "one",
        "--write-consistency",
        "all",
        "--load",
        "--warmup",
        "250ms",
        "--timeout",
        "2s",
        "--json",
        "out.json",
        "--no-progress",
        "--seed",
        "9",
    ]);
    assert_eq!(s.endpoints, ["a:1", "b:2"]);
    assert_eq!(s.run.workers, 4);
    assert_eq!(s.run.stop, StopAt::Duration(Duration::from_millis(1500)));
    assert_eq!(s.run.read_ratio, 0.95);
    assert_eq!(s.run.distribution, Distribution::Zipfian);
    assert_eq!(s.read_consistency, Consistency::One);
    assert_eq!(s.write_consistency, Consistency::All);
    assert!(s.run.load);
    assert_eq!(s.run.warmup, Duration::from_millis(250));
    assert_eq!(s.client.timeout, Duration::from_secs(2));
    assert_eq!(s.json, Some(PathBuf::from("out.json")));
    assert!(!s.progress);
    assert_eq!(s.run.seed, 9);
    let info = s.info();
    assert_eq!(info.ops, None);
    assert_eq!(info.duration_secs, Some(1.5));
    assert_eq!(info.write_consistency, "all");

    assert_eq!(settings(&["--workload", "write"]).run.read_ratio, 0.0);
    assert_eq!(settings(&["--workload", "c"]).run.read_ratio, 1.0);
    assert_eq!(settings(&["--read-ratio", "0.8"]).run.read_ratio, 0.8);
    assert_eq!(settings(&["--ops", "7"]).run.stop, StopAt::Ops(7));
    let s = settings(&["--read-consistency", "2"]);
    assert_eq!(
        (s.read_consistency, s.write_consistency),
        (Consistency::Count(2), Consistency::Quorum)
    );
}

#[test]
fn conflicting_and_invalid_flags_are_rejected() {
    for bad in [
        &["--ops", "10", "--duration", "5s"][..],
        &["--workload", "a", "--read-ratio", "0.5"],
        &["--read-ratio", "1.5"],
        &["--workload", "e"],
        &["--rate", "0"],
        &["--rate", "-5"],
        &["--rate", "fast"],
        &["--interval", "0s"],
        &["--interval", "soon"],
        &["--distribution", "normal"],
        &["--consistency", "most"],
        &["--duration", "5 parsecs"],
        &["--keyspace", "0"],
        &["--max-error-rate", "-1"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn durations() {
    let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(ok("30s"), Duration::from_secs(30));
    assert_eq!(ok("500ms"), Duration::from_millis(500));
    assert_eq!(ok("2m"), Duration::from_secs(120));
    assert_eq!(ok("1h"), Duration::from_secs(3600));
    assert_eq!(ok("1s 500ms"), Duration::from_millis(1500));
    // Fractions with a unit, as the bench's own parser took them.
    assert_eq!(ok("1.5s"), Duration::from_millis(1500));
    assert_eq!(ok("250us"), Duration::from_micros(250));
    assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
    assert_eq!(ok("10"), Duration::from_secs(10));
    assert_eq!(ok("2.5"), Duration::from_millis(2500));
    assert_eq!(ok("0s"), Duration::ZERO);
    for bad in ["", "s", "-1s", "-3", "3 parsecs", "1.2.3s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
}

fn report_with(ok: u64, errors: u64) -> Report {
    let mut rec = Recorder::default();
    for _ in 0..ok {
        rec.write.record_ok(Duration::from_micros(100));
    }
    for _ in 0..errors {
        rec.write.record_error(ErrorKind::Unavailable);
    }
    let s = settings(&[]);
    s.report(&RunResult {
        load: None,
        run: runner::PhaseResult {
            stats: rec,
            elapsed: Duration::from_secs(1),
            send_span: Duration::from_secs(1),
        },
        warmup_ops: 0,
        intervals: Vec::new(),
    })
}

#[test]
fn error_rate_threshold() {
    assert!(check_error_rate(&report_with(1000, 0), 0.01).is_ok());
    assert!(check_error_rate(&report_with(990, 10), 0.01).is_ok());
    let err = check_error_rate(&report_with(989, 11), 0.01);
    assert!(
        err.as_ref().is_err_and(|e| e.contains("11 of 1000")),
        "{err:?}"
    );
    assert!(check_error_rate(&report_with(0, 0), 0.0).is_ok());
    assert!(check_error_rate(&report_with(999, 1), 0.0).is_err());

    let mut with_bad_load = report_with(100, 0);
    with_bad_load.load = Some(report_with(0, 5).run);
    let err = check_error_rate(&with_bad_load, 0.01);
    assert!(
        err.as_ref().is_err_and(|e| e.starts_with("load phase")),
        "{err:?}"
    );
}
