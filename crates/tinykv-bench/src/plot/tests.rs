use std::time::Duration;

use super::*;
use crate::stats::{new_histogram, record_latency};

fn series(n: usize) -> Vec<IntervalPoint> {
    (0..n)
        .map(|i| IntervalPoint {
            start_secs: i as f64,
            secs: 1.0,
            ops: 1_000 + i as u64,
            errors: 0,
            ops_per_sec: 1_000.0 + i as f64,
            p50_us: 800,
            p99_us: 2_000,
            corrected_p50_us: Some(900),
            corrected_p99_us: Some(5_000),
        })
        .collect()
}

fn hist(ms: impl Iterator<Item = u64>) -> Histogram<u64> {
    let mut h = new_histogram();
    for v in ms {
        record_latency(&mut h, Duration::from_micros(v * 10));
    }
    h
}

/// The SVG parses as XML and has the parts a reader looks for.
fn assert_valid_svg(svg: &str, want_texts: &[&str]) {
    let doc = match roxmltree::Document::parse(svg) {
        Ok(d) => d,
        Err(e) => panic!("invalid SVG: {e}\n{svg}"),
    };
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") || n.has_tag_name("path"))
        .count();
    assert!(lines >= 2, "no curves drawn");
    let text: String = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("|");
    for want in want_texts {
        assert!(text.contains(want), "{want:?} not in the labels: {text}");
    }
}

#[test]
fn open_loop_plot_is_valid_svg_with_both_curves() {
    let uncorrected = hist(1..=1_000);
    let corrected = hist((1..=1_000).map(|v| v * 3));
    let intervals = series(10);
    let data = PlotData {
        intervals: &intervals,
        target_rate: Some(1_000.0),
        uncorrected: &uncorrected,
        corrected: Some(&corrected),
    };
    let svg = render_svg(&data).unwrap_or_else(|e| panic!("{e}"));
    assert_valid_svg(
        &svg,
        &[
            "Throughput over time",
            "Latency by percentile",
            "target (--rate)",
            "from intended start (corrected)",
            "99.9%",
        ],
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("plot.svg");
    write_svg(&path, &data).unwrap_or_else(|e| panic!("{e}"));
    let written = std::fs::read_to_string(&path).expect("plot written");
    assert_eq!(written, svg);
}

#[test]
fn closed_loop_and_empty_runs_still_plot() {
    let h = hist(1..=10);
    let svg = render_svg(&PlotData {
        intervals: &series(1),
        target_rate: None,
        uncorrected: &h,
        corrected: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_valid_svg(&svg, &["from sending"]);
    assert!(!svg.contains("corrected"));

    let empty = new_histogram();
    let svg = render_svg(&PlotData {
        intervals: &[],
        target_rate: None,
        uncorrected: &empty,
        corrected: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(roxmltree::Document::parse(&svg).is_ok());
}

#[test]
fn curve_and_labels() {
    let c = percentile_curve(&hist(1..=100_000));
    assert_eq!(c.len(), 51);
    assert_eq!(c[0].0, 1.0);
    assert!((c[10].1 - 900.0).abs() < 2.0, "p90 {:?}", c[10]);
    assert!(c.windows(2).all(|w| w[0].1 <= w[1].1), "not monotonic");
    assert_eq!(percentile_label(1.0), "0");
    assert_eq!(percentile_label(10.0), "90");
    assert_eq!(percentile_label(1000.0), "99.9");
    assert!(percentile_curve(&new_histogram()).is_empty());
}
