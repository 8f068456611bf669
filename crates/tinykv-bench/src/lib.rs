//! TinyKV benchmark: YCSB-style workloads driven through the real
//! `tinykv-client`, with HDR latency histograms and machine-readable output.
//!
//! - [`workload`]: the operation mix, key choice (uniform or zipfian), values.
//! - [`stats`]: histograms, error counting, the report as text and JSON.
//! - [`runner`]: workers on tokio, the load phase, warm-up, stop conditions.
//! - [`progress`]: the progress bar on a terminal, plain lines otherwise.
//! - [`cli`]: command-line flags and their translation into a run.

#![warn(missing_docs)]

pub mod cli;
pub mod progress;
pub mod runner;
pub mod stats;
pub mod workload;
