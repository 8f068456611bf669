//! Command-line flags, their translation into a run, and running it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tinykv_client::auth::load_token;
use tinykv_client::auth::tls::ClientTls;
use tinykv_client::{Client, ClientError, ClientOptions, Consistency, RoutingPolicy};

use crate::hdrlog::{HdrLog, HdrLogError};
use crate::plot::{self, PlotData, PlotError};
use crate::progress::Progress;
use crate::runner::{self, ClientStore, RunConfig, RunError, RunResult, StopAt};
use crate::stats::{PhaseReport, Report, RunInfo};
use crate::timeline::{IntervalSink, TerminalLines};
use crate::workload::{Distribution, OpKind, Workload};

/// The operation budget when neither `--ops` nor `--duration` is given.
pub const DEFAULT_OPS: u64 = 10_000;

/// TinyKV benchmark: YCSB-style load through the real client, with HDR
/// latency percentiles per operation and errors by kind.
#[derive(Debug, Clone, Parser)]
#[command(name = "tinykv-bench", version, about)]
pub struct Args {
    /// Node endpoints (host:port), comma-separated; `--routing` picks which
    /// of them coordinates each operation (and the others are failed over to).
    #[arg(
        long,
        env = "TINYKV_BENCH_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053,127.0.0.1:50054,127.0.0.1:50055"
    )]
    pub endpoints: Vec<String>,

    /// Concurrent workers, each with one request in flight.
    #[arg(long, env = "TINYKV_BENCH_WORKERS", default_value_t = 50)]
    pub workers: usize,

    /// Operations to measure (default 10000 unless --duration is given).
    #[arg(long, env = "TINYKV_BENCH_OPS", conflicts_with = "duration")]
    pub ops: Option<u64>,

    /// Time to measure for, e.g. 30s, 500ms, 2m (a bare number is seconds).
    #[arg(long, env = "TINYKV_BENCH_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Number of distinct keys.
    #[arg(long, env = "TINYKV_BENCH_KEYSPACE", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keyspace: u64,

    /// Value size in bytes.
    #[arg(long, env = "TINYKV_BENCH_VALUE_SIZE", default_value_t = 100)]
    pub value_size: usize,

    /// YCSB workload: a (50% reads), b (95% reads), c (reads only), d (95%
    /// reads of the latest keys, 5% inserts), f (50% reads, 50%
    /// read-modify-writes), write (writes only). Default a.
    #[arg(
        long,
        env = "TINYKV_BENCH_WORKLOAD",
        value_enum,
        conflicts_with = "read_ratio"
    )]
    pub workload: Option<Workload>,

    /// Fraction of reads, 0.0 to 1.0, instead of a named workload.
    #[arg(long, env = "TINYKV_BENCH_READ_RATIO", value_parser = parse_ratio)]
    pub read_ratio: Option<f64>,

    /// Key distribution: uniform, zipfian, or latest (writes insert new
    /// keys, reads favour the newest). Default: latest for workload d,
    /// uniform otherwise.
    #[arg(long, env = "TINYKV_BENCH_DISTRIBUTION", value_enum)]
    pub distribution: Option<Distribution>,

    /// Open loop: send this many operations per second in all, on a fixed
    /// schedule, and time each from when it was due (coordinated-omission
    /// corrected percentiles, reported next to the usual ones). Needs
    /// enough --workers to keep up: each has one operation in flight.
    #[arg(long, env = "TINYKV_BENCH_RATE", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Print a time series line (ops/s, p50, p99) every interval, e.g. 1s,
    /// and put the series in the JSON.
    #[arg(long, env = "TINYKV_BENCH_INTERVAL", value_parser = parse_interval)]
    pub interval: Option<Duration>,

    /// Write every interval's latency histogram to this file in the
    /// HdrHistogram interval log format (intervals of --interval, 1s by
    /// default).
    #[arg(long, env = "TINYKV_BENCH_HDR_LOG")]
    pub hdr_log: Option<PathBuf>,

    /// Draw throughput over time and the latency percentile curve into this
    /// SVG file.
    #[arg(long, env = "TINYKV_BENCH_PLOT")]
    pub plot: Option<PathBuf>,

    /// Consistency of reads and writes: one, two, quorum, all, default or a count.
    #[arg(long, env = "TINYKV_BENCH_CONSISTENCY", default_value = "quorum")]
    pub consistency: Consistency,

    /// Consistency of reads (overrides --consistency).
    #[arg(long, env = "TINYKV_BENCH_READ_CONSISTENCY")]
    pub read_consistency: Option<Consistency>,

    /// Consistency of writes (overrides --consistency).
    #[arg(long, env = "TINYKV_BENCH_WRITE_CONSISTENCY")]
    pub write_consistency: Option<Consistency>,

    /// Write every key of the key space once before measuring, so reads hit.
    #[arg(long, env = "TINYKV_BENCH_LOAD")]
    pub load: bool,

    /// Run unrecorded for this long before measuring, e.g. 2s.
    #[arg(long, env = "TINYKV_BENCH_WARMUP", value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,

    /// Deadline of each call.
    #[arg(long, env = "TINYKV_BENCH_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,

    /// Also write the results as JSON to this file ("-" for stdout, the
    /// text report then going to stderr); its schema is
    /// docs/bench-report.schema.json.
    #[arg(long, env = "TINYKV_BENCH_JSON")]
    pub json: Option<PathBuf>,

    /// No progress display.
    #[arg(long, env = "TINYKV_BENCH_NO_PROGRESS")]
    pub no_progress: bool,

    /// Exit non-zero when failed operations exceed this fraction.
    #[arg(long, env = "TINYKV_BENCH_MAX_ERROR_RATE", value_parser = parse_ratio, default_value = "0.01")]
    pub max_error_rate: f64,

    /// Prefix of every key.
    #[arg(long, env = "TINYKV_BENCH_KEY_PREFIX", default_value = "bench:")]
    pub key_prefix: String,

    /// One RPC per operation (the original protocol's shape) instead of the
    /// client library's default of coalescing concurrent operations into
    /// batch RPCs.
    #[arg(long, env = "TINYKV_BENCH_NO_COALESCE")]
    pub no_coalesce: bool,

    /// Which node coordinates each operation: sticky (one node per client,
    /// the client library's default), token-aware (a replica of the key),
    /// or round-robin.
    #[arg(long, env = "TINYKV_BENCH_ROUTING", default_value = "sticky")]
    pub routing: RoutingPolicy,

    /// Seed for key and operation choice (random if not given).
    #[arg(long, env = "TINYKV_BENCH_SEED")]
    pub seed: Option<u64>,

    /// TLS: the CA of the nodes' certificates (the nodes are then dialled
    /// over TLS).
    #[arg(long, env = "TINYKV_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// TLS: this client's certificate (`--client-auth cert` nodes).
    #[arg(long, env = "TINYKV_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the key of --tls-cert.
    #[arg(long, env = "TINYKV_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A file whose first line is a client token (`--client-auth token`).
    #[arg(long, env = "TINYKV_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// Parses a duration the way every TinyKV command does (humantime: `30s`,
/// `500ms`, `2m`, `1h 30m`, `250us`); a bare number is seconds, as the
/// bench always accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|e| format!("invalid duration {s:?}: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}; e.g. 30s, 500ms, 2m)"))
}

/// A positive duration (an interval of zero would never advance).
fn parse_interval(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("the interval must be longer than zero".into()),
        d => Ok(d),
    }
}

/// A positive, finite rate in operations per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a positive number of operations per second"
        )),
    }
}

/// Parses a fraction in `0.0..=1.0`.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1")),
    }
}

/// Everything a run needs, resolved from the flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The benchmark itself.
    pub run: RunConfig,
    /// Node endpoints.
    pub endpoints: Vec<String>,
    /// Client settings (the per-call deadline).
    pub client: ClientOptions,
    /// Consistency of reads.
    pub read_consistency: Consistency,
    /// Consistency of writes.
    pub write_consistency: Consistency,
    /// Show progress.
    pub progress: bool,
    /// Where to write JSON.
    pub json: Option<PathBuf>,
    /// The error rate above which the run fails.
    pub max_error_rate: f64,
    /// Print each interval of the time series on the terminal.
    pub interval_lines: bool,
    /// Where to write the HdrHistogram interval log.
    pub hdr_log: Option<PathBuf>,
    /// Where to write the SVG plot.
    pub plot: Option<PathBuf>,
}

/// The interval of the series behind `--plot` and `--hdr-log` when
/// `--interval` is not given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

impl Args {
    /// The settings, with the TLS files and token read.
    pub fn load(&self) -> Result<Settings, BenchError> {
        let mut settings = self.settings();
        let creds = |e: &dyn std::fmt::Display| BenchError::Credentials(e.to_string());
        settings.client.tls = ClientTls::from_flags(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )
        .map_err(|e| creds(&e))?;
        if let Some(path) = &self.token_file {
            settings.client.token = Some(load_token(path).map_err(|e| creds(&e))?);
        }
        Ok(settings)
    }

    /// Resolves defaults and overrides into [`Settings`].
    pub fn settings(&self) -> Settings {
        let stop = match (self.ops, self.duration) {
            (Some(n), _) => StopAt::Ops(n),
            (None, Some(d)) => StopAt::Duration(d),
            (None, None) => StopAt::Ops(DEFAULT_OPS),
        };
        let read_ratio = self
            .read_ratio
            .unwrap_or_else(|| self.workload.unwrap_or(Workload::A).read_ratio());
        let distribution = self
            .distribution
            .or_else(|| self.workload.and_then(Workload::distribution))
            .unwrap_or(Distribution::Uniform);
        let series = self.hdr_log.is_some() || self.plot.is_some();
        let interval = self.interval.or_else(|| series.then_some(DEFAULT_INTERVAL));
        let seed = self.seed.unwrap_or_else(rand::random);
        Settings {
            run: RunConfig {
                workers: self.workers.max(1),
                stop,
                keyspace: self.keyspace,
                value_size: self.value_size,
                read_ratio,
                non_read: self.workload.map_or(OpKind::Write, Workload::non_read),
                distribution,
                key_prefix: self.key_prefix.clone(),
                load: self.load,
                warmup: self.warmup,
                seed,
                rate: self.rate,
                interval,
            },
            endpoints: self
                .endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            client: ClientOptions {
                timeout: self.timeout,
                sender_id: "tinykv-bench".into(),
                coalesce: !self.no_coalesce,
                routing: self.routing,
                ..ClientOptions::default()
            },
            read_consistency: self.read_consistency.unwrap_or(self.consistency),
            write_consistency: self.write_consistency.unwrap_or(self.consistency),
            progress: !self.no_progress,
            json: self.json.clone(),
            max_error_rate: self.max_error_rate,
            interval_lines: self.interval.is_some(),
            hdr_log: self.hdr_log.clone(),
            plot: self.plot.clone(),
        }
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The client could not be set up (bad endpoint, none given).
    #[error("client: {0}")]
    Client(#[from] ClientError),
    /// The TLS files or the token file could not be used.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The run itself failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The HDR log could not be created.
    #[error(transparent)]
    HdrLog(#[from] HdrLogError),
    /// The plot could not be written.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

impl Settings {
    /// The settings as echoed in the report.
    pub fn info(&self) -> RunInfo {
        let (ops, duration_secs) = match self.run.stop {
            StopAt::Ops(n) => (Some(n), None),
            StopAt::Duration(d) => (None, Some(d.as_secs_f64())),
        };
        RunInfo {
            endpoints: self.endpoints.clone(),
            workers: self.run.workers,
            ops,
            duration_secs,
            keyspace: self.run.keyspace,
            value_size: self.run.value_size,
            read_ratio: self.run.read_ratio,
            distribution: self.run.distribution.to_string(),
            read_consistency: self.read_consistency.to_string(),
            write_consistency: self.write_consistency.to_string(),
            warmup_secs: self.run.warmup.as_secs_f64(),
            timeout_secs: self.client.timeout.as_secs_f64(),
            coalesce: self.client.coalesce,
            routing: self.client.routing.to_string(),
            target_rate_ops_per_sec: self.run.rate,
            interval_secs: self.run.interval.map(|d| d.as_secs_f64()),
        }
    }

    /// The report for a finished run.
    pub fn report(&self, result: &RunResult) -> Report {
        Report {
            config: self.info(),
            load: result
                .load
                .as_ref()
                .map(|l| PhaseReport::timed(&l.stats, l.elapsed, l.send_span)),
            run: PhaseReport::timed(&result.run.stats, result.run.elapsed, result.run.send_span),
            intervals: result.intervals.clone(),
        }
    }

    /// Where each closed interval goes: the terminal with `--interval`,
    /// the HDR log (created here, so a bad path fails before the run).
    fn sinks(&self) -> Result<Vec<Box<dyn IntervalSink>>, BenchError> {
        let mut sinks: Vec<Box<dyn IntervalSink>> = Vec::new();
        if self.interval_lines {
            sinks.push(Box::new(TerminalLines));
        }
        if let Some(path) = &self.hdr_log {
            let comment = format!(
                "tinykv-bench {}: {}",
                env!("CARGO_PKG_VERSION"),
                match self.run.rate {
                    Some(r) => format!("open loop at {r} ops/s"),
                    None => "closed loop".into(),
                }
            );
            sinks.push(Box::new(HdrLog::create(path, &comment)?));
        }
        Ok(sinks)
    }

    /// Draws the plot of a finished run, if one was asked for.
    pub fn write_plot(&self, result: &RunResult) -> Result<(), BenchError> {
        let Some(path) = &self.plot else {
            return Ok(());
        };
        let all = result.run.stats.all();
        plot::write_svg(
            path,
            &PlotData {
                intervals: &result.intervals,
                target_rate: self.run.rate,
                uncorrected: all.histogram(),
                corrected: all.corrected_histogram(),
            },
        )?;
        Ok(())
    }

    /// Connects to the endpoints and runs the benchmark through the client.
    pub async fn execute(&self) -> Result<Report, BenchError> {
        let client = Client::connect_many(
            self.endpoints.iter().map(String::as_str),
            self.client.clone(),
        )?;
        let store = ClientStore {
            client,
            read: self.read_consistency,
            write: self.write_consistency,
        };
        let progress = match Progress::detect(self.progress) {
            // Interval lines and an animated bar would overwrite each other.
            Progress::Bar if self.interval_lines => Progress::Plain,
            p => p,
        };
        let result = runner::run_with(store, &self.run, progress, self.sinks()?).await?;
        self.write_plot(&result)?;
        Ok(self.report(&result))
    }
}

/// Fails when a phase's error rate exceeds `max`.
pub fn check_error_rate(report: &Report, max: f64) -> Result<(), String> {
    let phases = report
        .load
        .iter()
        .map(|p| ("load phase", p))
        .chain([("run", &report.run)]);
    for (name, p) in phases {
        if p.error_rate > max {
            return Err(format!(
                "{name}: {} of {} operations failed ({:.2}%), above --max-error-rate {:.2}%",
                p.errors.total(),
                p.total_ops,
                p.error_rate * 100.0,
                max * 100.0
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
