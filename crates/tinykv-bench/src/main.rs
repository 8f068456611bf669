//! `tinykv-bench`: see `tinykv-bench --help`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tinykv_bench::cli::{check_error_rate, Args};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let settings = Args::parse().load()?;
    let report = settings.execute().await?;

    let json_to_stdout = settings
        .json
        .as_deref()
        .is_some_and(|p| p.as_os_str() == "-");
    let text = report.to_text();
    if json_to_stdout {
        eprint!("{text}");
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", report.to_json()).context("writing JSON to stdout")?;
    } else {
        print!("{text}");
        if let Some(path) = &settings.json {
            std::fs::write(path, report.to_json() + "\n")
                .with_context(|| format!("writing JSON to {}", path.display()))?;
        }
    }

    match check_error_rate(&report, settings.max_error_rate) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(why) => {
            eprintln!("tinykv-bench: FAILED: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}
