//! `backup` and `restore`, with a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tinykv_client::backup::{self, BackupError, BackupOptions, Progress, RestoreOptions};
use tinykv_client::{Client, ClientOptions, Consistency};

use crate::args::Command;
use crate::{print, Failure};

impl From<BackupError> for Failure {
    fn from(e: BackupError) -> Self {
        let code = match &e {
            BackupError::Client(c) => return client_failure(c, e.to_string()),
            BackupError::Range { .. } | BackupError::Incomplete { .. } => 3,
            BackupError::Exists { .. } => 2,
            BackupError::Io { .. }
            | BackupError::Checksum { .. }
            | BackupError::Corrupt { .. }
            | BackupError::Topology(_) => 4,
        };
        Failure(code, e.to_string())
    }
}

/// The exit code of a client error, with `message`.
fn client_failure(e: &tinykv_client::ClientError, message: String) -> Failure {
    use tinykv_client::ClientError as E;
    let code = match e {
        E::InvalidAddress { .. } | E::InvalidArgument(_) | E::NoEndpoints => 2,
        E::Unavailable(_) | E::DeadlineExceeded(_) => 3,
        E::Rpc { .. } => 4,
    };
    Failure(code, message)
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
fn bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(&format!(
        "{what} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn track(bar: &ProgressBar) -> impl Fn(Progress) + '_ {
    move |p| {
        let (Progress::Ranges { done, total } | Progress::Versions { done, total }) = p;
        bar.set_length(total);
        bar.set_position(done);
    }
}

/// `backup` or `restore`; restored versions wait for `writes` acks.
pub async fn run(
    client: &Client,
    opts: ClientOptions,
    command: Command,
    writes: Consistency,
    json: bool,
) -> Result<(), Failure> {
    match command {
        Command::Backup {
            out, since, fast, ..
        } => backup(client, opts, out, since, fast, json).await,
        Command::Restore {
            input, overwrite, ..
        } => restore(client, input, overwrite, writes, json).await,
        _ => Ok(()),
    }
}

/// `backup --out DIR [--since TS] [--fast]`.
async fn backup(
    client: &Client,
    opts: ClientOptions,
    out: PathBuf,
    since: u64,
    fast: bool,
    json: bool,
) -> Result<(), Failure> {
    let opts = BackupOptions {
        out: out.clone(),
        since,
        fast,
        client: opts,
    };
    let bar = bar("ranges");
    let result = backup::take(client, &opts, &track(&bar)).await;
    bar.finish_and_clear();
    let m = result?;
    if json {
        print::json(json!({
            "dir": out.display().to_string(), "ranges": m.ranges.len(), "files": m.files.len(),
            "versions": m.versions, "tombstones": m.tombstones,
            "started_at_us": m.started_at_us, "since": m.since, "fast": m.fast,
        }));
    } else {
        println!(
            "backed up {} versions ({} tombstones) of {} ranges into {} files in {} (started_at_us {}; use it as --since for an incremental backup)",
            m.versions,
            m.tombstones,
            m.ranges.len(),
            m.files.len(),
            out.display(),
            m.started_at_us
        );
    }
    Ok(())
}

/// `restore --in DIR [--overwrite]`.
async fn restore(
    client: &Client,
    dir: PathBuf,
    overwrite: bool,
    consistency: Consistency,
    json: bool,
) -> Result<(), Failure> {
    let opts = RestoreOptions {
        dir,
        overwrite,
        consistency,
    };
    let bar = bar("versions");
    let result = backup::restore(client, &opts, &track(&bar)).await;
    bar.finish_and_clear();
    let r = result?;
    if json {
        print::json(json!({
            "files": r.files, "versions": r.versions, "tombstones": r.tombstones,
            "overwrite": overwrite,
        }));
    } else {
        println!(
            "restored {} versions ({} tombstones) from {} files{}",
            r.versions,
            r.tombstones,
            r.files,
            if overwrite {
                " with new timestamps"
            } else {
                ""
            }
        );
    }
    Ok(())
}
