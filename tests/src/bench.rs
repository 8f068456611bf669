//! Running `tinykv-bench` (or any short command) from a test: stdin
//! closed, output captured, polled to its end under a deadline without
//! blocking the runtime's thread.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a benchmark run in a test may take.
pub const BENCH_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `program` with `args` to its end and returns its output; kills it
/// and fails the test if it runs past [`BENCH_DEADLINE`].
pub async fn run_bench<I, S>(program: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let name = program.display();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let deadline = Instant::now() + BENCH_DEADLINE;
    while child
        .try_wait()
        .unwrap_or_else(|e| panic!("poll {name}: {e}"))
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} did not finish within {BENCH_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("output of {name}: {e}"))
}
