//! TinyKV benchmark: YCSB-style workloads driven through the real
//! `tinykv-client`, with HDR latency histograms and machine-readable output.
//!
//! - [`workload`]: the operation mix, key choice (uniform or zipfian), values.
//! - [`stats`]: histograms, error counting, the report as text and JSON.
//! - [`runner`]: workers on tokio, the load phase, warm-up, stop conditions.
//! - [`progress`]: the progress bar on a terminal, plain lines otherwise.
//! - [`timeline`]: the time series (`--interval`), interval by interval.
//! - [`hdrlog`]: the HdrHistogram interval log (`--hdr-log`).
//! - [`plot`]: the SVG plot (`--plot`).
//! - [`cli`]: command-line flags and their translation into a run.

#![warn(missing_docs)]

pub mod cli;
pub mod hdrlog;
pub mod plot;
pub mod progress;
pub mod runner;
pub mod stats;
pub mod timeline;
pub mod workload;
