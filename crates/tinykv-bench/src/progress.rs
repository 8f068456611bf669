//! Progress display: an indicatif bar when stderr is a terminal, one plain
//! line per phase otherwise, nothing at all with `--no-progress`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing.
    Hidden,
    /// One line on stderr when a phase starts and ends.
    Plain,
    /// An animated bar on stderr.
    Bar,
}

impl Progress {
    /// A bar if `enabled` and stderr is a terminal, plain lines if `enabled`
    /// otherwise, nothing if not `enabled`.
    pub fn detect(enabled: bool) -> Progress {
        match (enabled, std::io::stderr().is_terminal()) {
            (false, _) => Progress::Hidden,
            (true, true) => Progress::Bar,
            (true, false) => Progress::Plain,
        }
    }

    /// Starts showing a phase named `label` whose completed operations are
    /// counted in `done`; `bound` is what ends it.
    pub fn start(self, label: &str, bound: Bound, done: Arc<AtomicU64>) -> PhaseProgress {
        let label = label.to_string();
        match self {
            Progress::Hidden => PhaseProgress::none(label, false),
            Progress::Plain => {
                let what = match bound {
                    Bound::Ops(n) => format!("{n} ops"),
                    Bound::Time(d) => format!("{:.1}s", d.as_secs_f64()),
                };
                eprintln!("tinykv-bench: {label}: {what}");
                PhaseProgress::none(label, true)
            }
            Progress::Bar => PhaseProgress::bar(label, bound, done),
        }
    }
}

/// What ends a phase, for the bar's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// A number of operations.
    Ops(u64),
    /// A span of time.
    Time(Duration),
}

/// A phase being shown; call [`PhaseProgress::finish`] when it ends.
pub struct PhaseProgress {
    label: String,
    plain: bool,
    started: Instant,
    bar: Option<(ProgressBar, JoinHandle<()>)>,
}

impl PhaseProgress {
    fn none(label: String, plain: bool) -> PhaseProgress {
        PhaseProgress {
            label,
            plain,
            started: Instant::now(),
            bar: None,
        }
    }

    fn bar(label: String, bound: Bound, done: Arc<AtomicU64>) -> PhaseProgress {
        let (len, template) = match bound {
            Bound::Ops(n) => (
                n,
                "{prefix:>8} [{bar:40}] {pos}/{len} ops ({per_sec}) {eta}",
            ),
            Bound::Time(d) => (
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                "{prefix:>8} [{bar:40}] {elapsed}/{duration} {msg}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(label.clone());
        let ticker = {
            let bar = bar.clone();
            let started = Instant::now();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    let n = done.load(Ordering::Relaxed);
                    match bound {
                        Bound::Ops(_) => bar.set_position(n),
                        Bound::Time(_) => {
                            let ms = started.elapsed().as_millis();
                            bar.set_position(u64::try_from(ms).unwrap_or(u64::MAX));
                            bar.set_message(format!("{n} ops"));
                        }
                    }
                }
            })
        };
        PhaseProgress {
            label,
            plain: false,
            started: Instant::now(),
            bar: Some((bar, ticker)),
        }
    }

    /// Ends the display of this phase.
    pub fn finish(self) {
        if let Some((bar, ticker)) = self.bar {
            ticker.abort();
            bar.finish_and_clear();
        }
        if self.plain {
            eprintln!(
                "tinykv-bench: {} done in {:.2}s",
                self.label,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}
