//! `--hdr-log FILE`: every interval of the run in the HdrHistogram
//! interval log format (the hdrhistogram crate's writer, V2 deflated
//! histograms), so the whole run can be re-read at any percentile with
//! HdrHistogram's tools (`HistogramLogProcessor`, HdrHistogram plotters)
//! rather than only through the few percentiles the report prints.
//!
//! Values are microseconds. Each interval is one untagged histogram (what
//! clients saw: from the intended start in open loop, from sending
//! otherwise, the one HdrHistogram's tools read by default); in open loop
//! it is followed by a `Tag=uncorrected` one timed from sending.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::timeline::{IntervalHists, IntervalPoint, IntervalSink};

/// The tag of the from-sending histograms in open loop.
pub const UNCORRECTED_TAG: &str = "uncorrected";

/// Why the log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HdrLogError {
    /// Creating or writing the file failed.
    #[error("HDR log {path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A histogram could not be encoded.
    #[error("HDR log {path}: encoding a histogram: {message}")]
    Encode {
        /// The log file.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
}

/// An interval log being written; one [`IntervalSink`] of the ticker.
pub struct HdrLog {
    path: PathBuf,
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    /// The first comment line, until the header is written.
    comment: Option<String>,
    /// The first write error, after which nothing more is written.
    failed: bool,
}

impl HdrLog {
    /// Creates `path` now, so a bad path fails before the run; the header
    /// follows with the first interval, once the measuring start is known.
    pub fn create(path: &Path, comment: &str) -> Result<HdrLog, HdrLogError> {
        let out = File::create(path).map_err(|source| HdrLogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(HdrLog {
            path: path.to_path_buf(),
            out: BufWriter::new(out),
            serializer: V2DeflateSerializer::new(),
            comment: Some(comment.to_string()),
            failed: false,
        })
    }

    fn io_err(&self, source: std::io::Error) -> HdrLogError {
        HdrLogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes the header: measuring started at `start` (`StartTime` and
    /// `BaseTime`; interval timestamps count from it).
    pub fn write_header(&mut self, start: SystemTime) -> Result<(), HdrLogError> {
        let comment = self.comment.take().unwrap_or_default();
        IntervalLogWriterBuilder::new()
            .add_comment(&comment)
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[values in microseconds; Interval_Max in milliseconds]")
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map(drop)
            .map_err(|e| self.io_err(e))?;
        self.out
            .write_all(
                b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
            )
            .map_err(|e| self.io_err(e))
    }

    /// Appends one histogram covering `start..start + len` (after the
    /// measuring start).
    pub fn write(
        &mut self,
        hist: &Histogram<u64>,
        start: Duration,
        len: Duration,
        tag: Option<&str>,
    ) -> Result<(), HdrLogError> {
        {
            // No header this time: the builder writes only what it is given.
            let mut writer = IntervalLogWriterBuilder::new()
                .with_max_value_divisor(1000.0)
                .begin_log_with(&mut self.out, &mut self.serializer)
                .map_err(|source| HdrLogError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            writer
                .write_histogram(hist, start, len, tag.and_then(Tag::new))
                .map_err(|e| HdrLogError::Encode {
                    path: self.path.clone(),
                    message: format!("{e:?}"),
                })?;
        }
        self.out.flush().map_err(|e| self.io_err(e))
    }

    fn write_interval(&mut self, p: &IntervalPoint, h: &IntervalHists) -> Result<(), HdrLogError> {
        let start = Duration::from_secs_f64(p.start_secs);
        let len = Duration::from_secs_f64(p.secs);
        if self.comment.is_some() {
            // This interval just closed: measuring began start + len ago.
            let began = SystemTime::now()
                .checked_sub(start + len)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            self.write_header(began)?;
        }
        match &h.corrected {
            Some(corrected) => {
                self.write(corrected, start, len, None)?;
                self.write(&h.uncorrected, start, len, Some(UNCORRECTED_TAG))
            }
            None => self.write(&h.uncorrected, start, len, None),
        }
    }
}

impl IntervalSink for HdrLog {
    fn interval(&mut self, point: &IntervalPoint, hists: &IntervalHists) {
        if self.failed {
            return;
        }
        if let Err(e) = self.write_interval(point, hists) {
            // The run goes on: its report matters more than the log.
            eprintln!("tinykv-bench: {e}; no more intervals are logged");
            self.failed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    use super::*;
    use crate::stats::{new_histogram, record_latency};

    fn hists(n: u64, corrected: bool) -> IntervalHists {
        let mut h = new_histogram();
        for _ in 0..n {
            record_latency(&mut h, Duration::from_micros(250));
        }
        let mut c = new_histogram();
        for _ in 0..n {
            record_latency(&mut c, Duration::from_millis(3));
        }
        IntervalHists {
            uncorrected: h,
            corrected: corrected.then_some(c),
            errors: 0,
        }
    }

    #[test]
    fn the_log_reads_back_with_the_crate_parser() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("run.hlog");
        let mut log = HdrLog::create(&path, "test").expect("create");
        for (i, n) in [10u64, 20].into_iter().enumerate() {
            let h = hists(n, true);
            log.interval(
                &h.point(Duration::from_secs(i as u64), Duration::from_secs(1)),
                &h,
            );
        }
        drop(log);
        let text = std::fs::read(&path).expect("log written");
        let head = String::from_utf8_lossy(&text[..200.min(text.len())]).to_string();
        assert!(head.starts_with("#test\n"), "{head}");
        assert!(
            head.contains("#[StartTime: ") && head.contains("#[BaseTime: "),
            "{head}"
        );
        let mut de = Deserializer::new();
        let mut seen = Vec::new();
        for entry in IntervalLogIterator::new(&text) {
            let Ok(LogEntry::Interval(iv)) = entry else {
                continue;
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(iv.encoded_histogram())
                .expect("base64");
            let h: Histogram<u64> = de.deserialize(&mut &bytes[..]).expect("histogram decodes");
            seen.push((
                iv.tag().map(|t| t.as_str().to_string()),
                iv.start_timestamp(),
                h.len(),
                h.max(),
            ));
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(seen[0].0, None);
        assert_eq!(seen[1].0.as_deref(), Some(UNCORRECTED_TAG));
        assert_eq!((seen[2].1, seen[2].2), (Duration::from_secs(1), 20));
        assert!(seen[0].3 >= 3_000 && seen[1].3 < 300, "{seen:?}");
    }
}
