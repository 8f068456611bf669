//! The report: per-phase summaries, text for humans, JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::{ErrorCounts, Latency, OpStats, Recorder};
use crate::timeline::IntervalPoint;

/// The results for one operation kind.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    /// Successful operations.
    pub ok: u64,
    /// Failed operations.
    pub errors: u64,
    /// Successful operations per second of measured time.
    pub throughput_ops_per_sec: f64,
    /// Successful reads that found nothing (always 0 for writes).
    pub not_found: u64,
    /// Latency of successful operations from when they were sent,
    /// microseconds.
    pub latency_us: Latency,
    /// Open loop (`--rate`) only, else null: latency from each operation's
    /// intended start, so waiting behind slow operations counts
    /// (coordinated omission corrected). Never below `latency_us`.
    pub corrected_latency_us: Option<Latency>,
}

impl OpReport {
    fn new(stats: &OpStats, secs: f64) -> OpReport {
        OpReport {
            ok: stats.ok(),
            errors: stats.errors.total(),
            throughput_ops_per_sec: per_sec(stats.ok(), secs),
            not_found: stats.not_found,
            latency_us: stats.latency(),
            corrected_latency_us: stats.corrected_latency(),
        }
    }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// The results of one measured phase (the load phase or the run).
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    /// Measured wall-clock time, seconds.
    pub elapsed_secs: f64,
    /// Operations attempted (successful and failed).
    pub total_ops: u64,
    /// Successful operations.
    pub ok_ops: u64,
    /// Successful operations per second.
    pub throughput_ops_per_sec: f64,
    /// Operations sent (successful or not) per second, from the start of
    /// measuring to the last send: in open loop, the rate to compare with
    /// the target (the wait for the last replies left out).
    pub sent_ops_per_sec: f64,
    /// Failed operations over attempted ones (0 when nothing was attempted).
    pub error_rate: f64,
    /// Failed operations by kind, reads and writes together.
    pub errors: ErrorCounts,
    /// Reads.
    pub read: OpReport,
    /// Writes (updates, or inserts in workload D).
    pub write: OpReport,
    /// Read-modify-writes (workload F).
    pub rmw: OpReport,
}

impl PhaseReport {
    /// Summarises `rec` over `elapsed` of measured time.
    pub fn new(rec: &Recorder, elapsed: Duration) -> PhaseReport {
        PhaseReport::timed(rec, elapsed, elapsed)
    }

    /// [`PhaseReport::new`], the last operation sent `send_span` after the
    /// start.
    pub fn timed(rec: &Recorder, elapsed: Duration, send_span: Duration) -> PhaseReport {
        let secs = elapsed.as_secs_f64();
        let mut errors = ErrorCounts::default();
        let (mut total_ops, mut ok_ops) = (0, 0);
        for (_, s) in rec.kinds() {
            errors.merge(&s.errors);
            total_ops += s.attempted();
            ok_ops += s.ok();
        }
        PhaseReport {
            elapsed_secs: secs,
            total_ops,
            ok_ops,
            throughput_ops_per_sec: per_sec(ok_ops, secs),
            sent_ops_per_sec: per_sec(total_ops, send_span.as_secs_f64()),
            error_rate: if total_ops == 0 {
                0.0
            } else {
                errors.total() as f64 / total_ops as f64
            },
            errors,
            read: OpReport::new(&rec.read, secs),
            write: OpReport::new(&rec.write, secs),
            rmw: OpReport::new(&rec.rmw, secs),
        }
    }
}

/// The settings a run used, echoed in the report.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// Node endpoints.
    pub endpoints: Vec<String>,
    /// Concurrent workers.
    pub workers: usize,
    /// Operation budget, if the run was bounded by count.
    pub ops: Option<u64>,
    /// Measured duration asked for, seconds, if bounded by time.
    pub duration_secs: Option<f64>,
    /// Key-space size.
    pub keyspace: u64,
    /// Value size, bytes.
    pub value_size: usize,
    /// Fraction of reads.
    pub read_ratio: f64,
    /// Key distribution.
    pub distribution: String,
    /// Read consistency level.
    pub read_consistency: String,
    /// Write consistency level.
    pub write_consistency: String,
    /// Warm-up, seconds.
    pub warmup_secs: f64,
    /// Per-call deadline, seconds.
    pub timeout_secs: f64,
    /// Whether the client coalesced concurrent operations into batch RPCs
    /// (false: one RPC per operation).
    pub coalesce: bool,
    /// How the client chose each operation's coordinator: token-aware,
    /// round-robin or sticky.
    pub routing: String,
    /// Open loop: the target rate, operations per second across all
    /// workers (null: closed loop, each worker sends when its last
    /// operation is done).
    pub target_rate_ops_per_sec: Option<f64>,
    /// The length of each interval of the time series, seconds.
    pub interval_secs: Option<f64>,
}

/// The full machine-readable report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The settings used.
    pub config: RunInfo,
    /// The load phase, if one ran.
    pub load: Option<PhaseReport>,
    /// The measured run.
    pub run: PhaseReport,
    /// The measured run's time series (with `--interval`, `--plot` or
    /// `--hdr-log`; empty otherwise).
    pub intervals: Vec<IntervalPoint>,
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Plain data with finite floats only (NaN/inf become null), so
        // serialisation cannot fail; fall back to an object naming the error.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// The report as text for a terminal or a log.
    pub fn to_text(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        let bound = match (c.ops, c.duration_secs) {
            (Some(n), _) => format!("{n} ops"),
            (None, Some(s)) => format!("{s:.1}s"),
            (None, None) => "unbounded".into(),
        };
        let _ = writeln!(
            out,
            "tinykv-bench: {} workers, {bound}, {} keys ({}), {}-byte values, {:.0}% reads, \
             read {} / write {}, {}, {} routing, {}, endpoints {}",
            c.workers,
            c.keyspace,
            c.distribution,
            c.value_size,
            c.read_ratio * 100.0,
            c.read_consistency,
            c.write_consistency,
            if c.coalesce {
                "coalesced batch RPCs"
            } else {
                "one RPC per operation"
            },
            c.routing,
            match c.target_rate_ops_per_sec {
                Some(r) => format!("open loop at {r:.0} ops/s"),
                None => "closed loop".into(),
            },
            c.endpoints.join(",")
        );
        if let Some(load) = &self.load {
            let _ = writeln!(out, "\nload phase:");
            phase_text(&mut out, load);
        }
        let _ = writeln!(out, "\nrun:");
        phase_text(&mut out, &self.run);
        if let Some(rate) = c.target_rate_ops_per_sec {
            rate_text(&mut out, &self.run, rate);
        }
        out
    }
}

fn phase_text(out: &mut String, p: &PhaseReport) {
    let _ = writeln!(
        out,
        "  {} ops in {:.2}s: {:.0} ops/s ({} ok, {} errors, {:.2}% error rate)",
        p.total_ops,
        p.elapsed_secs,
        p.throughput_ops_per_sec,
        p.ok_ops,
        p.errors.total(),
        p.error_rate * 100.0
    );
    let _ = writeln!(
        out,
        "  {:<6} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "op", "ok", "ops/s", "p50", "p90", "p99", "p99.9", "max", "errors"
    );
    for (name, r) in [("read", &p.read), ("write", &p.write), ("rmw", &p.rmw)] {
        if r.ok + r.errors == 0 {
            continue;
        }
        latency_row(out, name, r, &r.latency_us);
        if let Some(c) = &r.corrected_latency_us {
            latency_row(out, " corr.", r, c);
        }
    }
    if p.read.ok + p.rmw.ok > 0 {
        let _ = writeln!(
            out,
            "  reads that found nothing: {}",
            p.read.not_found + p.rmw.not_found
        );
    }
    let e = &p.errors;
    if e.total() > 0 {
        let _ = writeln!(
            out,
            "  errors: unavailable {}, deadline {}, invalid {}, other {}",
            e.unavailable, e.deadline, e.invalid, e.other
        );
    }
}

/// One row of the latency table: `r`'s counts with the percentiles of `l`.
fn latency_row(out: &mut String, name: &str, r: &OpReport, l: &Latency) {
    let _ = writeln!(
        out,
        "  {name:<6} {:>9} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        r.ok,
        r.throughput_ops_per_sec,
        micros(l.p50),
        micros(l.p90),
        micros(l.p99),
        micros(l.p999),
        micros(l.max),
        r.errors
    );
}

/// How to read the corrected rows, and whether the target rate was held.
fn rate_text(out: &mut String, p: &PhaseReport, target: f64) {
    let _ = writeln!(
        out,
        "  open loop: target {target:.0} ops/s, sent {:.0} ops/s; \"corr.\" rows time each \
         operation from when it was due (coordinated omission corrected), the rows above \
         from when it was sent",
        p.sent_ops_per_sec
    );
    if p.sent_ops_per_sec < target * 0.95 {
        let _ = writeln!(
            out,
            "  target rate NOT held: every worker was busy, so operations waited \
             (more --workers, or a lower --rate)"
        );
    }
}

/// A latency in µs as a short human string (`850us`, `2.41ms`, `1.20s`).
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ErrorKind;
    use crate::workload::OpKind;

    fn sample_recorder() -> Recorder {
        let mut r = Recorder::default();
        for _ in 0..90 {
            r.op(OpKind::Read).record_ok(Duration::from_micros(500));
        }
        r.read.not_found = 7;
        for _ in 0..9 {
            r.op(OpKind::Write).record_ok(Duration::from_millis(2));
        }
        r.write.record_error(ErrorKind::Deadline);
        r
    }

    #[test]
    fn merge_and_phase_summary() {
        let mut total = Recorder::default();
        total.merge(&sample_recorder());
        total.merge(&sample_recorder());
        let p = PhaseReport::new(&total, Duration::from_secs(2));
        assert_eq!(p.total_ops, 200);
        assert_eq!(p.ok_ops, 198);
        assert_eq!(p.errors.deadline, 2);
        assert!((p.error_rate - 0.01).abs() < 1e-9);
        assert!((p.throughput_ops_per_sec - 99.0).abs() < 1e-9);
        assert_eq!(p.read.ok, 180);
        assert_eq!(p.read.not_found, 14);
        assert_eq!(p.write.errors, 2);
        assert!((p.read.throughput_ops_per_sec - 90.0).abs() < 1e-9);
        let empty = PhaseReport::new(&Recorder::default(), Duration::ZERO);
        assert_eq!(empty.error_rate, 0.0);
        assert_eq!(empty.throughput_ops_per_sec, 0.0);
    }

    fn sample_report() -> Report {
        let rec = sample_recorder();
        Report {
            config: RunInfo {
                endpoints: vec!["127.0.0.1:50051".into()],
                workers: 4,
                ops: Some(100),
                duration_secs: None,
                keyspace: 1000,
                value_size: 100,
                read_ratio: 0.9,
                distribution: "zipfian".into(),
                read_consistency: "quorum".into(),
                write_consistency: "all".into(),
                warmup_secs: 0.0,
                timeout_secs: 5.0,
                coalesce: true,
                routing: "token-aware".into(),
                target_rate_ops_per_sec: None,
                interval_secs: None,
            },
            load: Some(PhaseReport::new(
                &Recorder::default(),
                Duration::from_secs(1),
            )),
            run: PhaseReport::new(&rec, Duration::from_secs(1)),
            intervals: Vec::new(),
        }
    }

    #[test]
    fn json_shape() {
        let json: serde_json::Value = match serde_json::from_str(&sample_report().to_json()) {
            Ok(v) => v,
            Err(e) => panic!("report JSON does not parse: {e}"),
        };
        let run = &json["run"];
        assert_eq!(run["total_ops"], 100);
        assert_eq!(run["ok_ops"], 99);
        assert_eq!(run["errors"]["deadline"], 1);
        assert_eq!(run["errors"]["unavailable"], 0);
        assert!(run["errors"]["invalid"].is_u64() && run["errors"]["other"].is_u64());
        assert!(run["throughput_ops_per_sec"].is_f64());
        assert!(run["error_rate"].is_f64());
        for op in ["read", "write", "rmw"] {
            assert!(run[op]["corrected_latency_us"].is_null(), "closed loop");
            let lat = &run[op]["latency_us"];
            for field in ["mean", "min", "p50", "p90", "p99", "p999", "max"] {
                assert!(lat[field].is_number(), "{op}.latency_us.{field}");
            }
            assert!(run[op]["ok"].is_u64() && run[op]["errors"].is_u64());
        }
        assert_eq!(run["read"]["not_found"], 7);
        assert_eq!(run["read"]["latency_us"]["p50"], 500);
        assert_eq!(json["config"]["workers"], 4);
        assert_eq!(json["config"]["ops"], 100);
        assert!(json["config"]["duration_secs"].is_null());
        assert_eq!(json["config"]["read_consistency"], "quorum");
        assert_eq!(json["load"]["total_ops"], 0);
        assert!(json["config"]["target_rate_ops_per_sec"].is_null());
        assert_eq!(json["intervals"], serde_json::json!([]));
    }

    #[test]
    fn open_loop_reports_corrected_rows_next_to_uncorrected() {
        let mut rec = sample_recorder();
        for _ in 0..90 {
            rec.read.record_corrected(Duration::from_millis(7));
        }
        let mut report = sample_report();
        report.run = PhaseReport::new(&rec, Duration::from_secs(1));
        report.config.target_rate_ops_per_sec = Some(100.0);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap_or_default();
        assert_eq!(json["config"]["target_rate_ops_per_sec"], 100.0);
        let corrected = &json["run"]["read"]["corrected_latency_us"];
        let p50 = corrected["p50"].as_u64().unwrap_or(0);
        assert!((7_000..7_010).contains(&p50), "{corrected}");
        assert_eq!(json["run"]["read"]["latency_us"]["p50"], 500);
        let text = report.to_text();
        assert!(text.contains("open loop at 100 ops/s"), "{text}");
        assert!(text.contains(" corr."), "{text}");
        assert!(text.contains("7.00ms"), "{text}");
        assert!(!text.contains("NOT held"), "100 sent in 1 s: {text}");
        report.config.target_rate_ops_per_sec = Some(1000.0);
        assert!(report.to_text().contains("NOT held"));
    }

    #[test]
    fn text_report_mentions_the_numbers() {
        let text = sample_report().to_text();
        assert!(text.contains("100 ops in 1.00s"), "{text}");
        assert!(text.contains("read"), "{text}");
        assert!(text.contains("500us"), "{text}");
        assert!(text.contains("2.00ms"), "{text}");
        assert!(text.contains("found nothing: 7"), "{text}");
        assert!(text.contains("deadline 1"), "{text}");
        assert!(text.contains("load phase"), "{text}");
        assert_eq!(micros(1_500_000), "1.50s");
    }
}
