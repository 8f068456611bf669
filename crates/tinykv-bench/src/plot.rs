//! `--plot FILE.svg`: throughput over time and the latency percentile
//! curve, because a curve shows a stall, a drift or a long tail at a
//! glance where a table of five percentiles hides them.
//!
//! Drawn with plotters' SVG backend and no font rasteriser (no fontconfig
//! or freetype at build or run time): labels are SVG `<text>` elements
//! the viewer lays out.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::timeline::IntervalPoint;

/// Size of the picture, pixels.
const SIZE: (u32, u32) = (900, 800);
/// The percentile curve ends at 99.999% (`1 / (1 - p)` = 10^5).
const CURVE_DECADES: u32 = 5;

/// Why the plot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing failed.
    #[error("plot: {0}")]
    Draw(String),
    /// The file could not be written.
    #[error("plot {path}: {source}")]
    Io {
        /// The SVG file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn draw_err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError::Draw(format!("{e:?}"))
}

/// What is plotted.
#[derive(Clone, Copy, Debug)]
pub struct PlotData<'a> {
    /// The time series.
    pub intervals: &'a [IntervalPoint],
    /// The open-loop target, drawn as a reference line.
    pub target_rate: Option<f64>,
    /// Latencies from sending, every operation kind, µs.
    pub uncorrected: &'a Histogram<u64>,
    /// Latencies from the intended start (open loop), µs.
    pub corrected: Option<&'a Histogram<u64>>,
}

/// Renders the plot as an SVG document.
pub fn render_svg(data: &PlotData<'_>) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);
        draw_throughput(&top, data)?;
        draw_percentiles(&bottom, data)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Renders the plot into `path`.
pub fn write_svg(path: &Path, data: &PlotData<'_>) -> Result<(), PlotError> {
    let svg = render_svg(data)?;
    std::fs::write(path, svg).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Operations per second over time, each interval at its end.
fn draw_throughput(area: &Area<'_>, data: &PlotData<'_>) -> Result<(), PlotError> {
    let points: Vec<(f64, f64)> = data
        .intervals
        .iter()
        .map(|p| (p.start_secs + p.secs, p.ops_per_sec))
        .collect();
    let end = points.last().map_or(1.0, |p| p.0).max(1.0);
    let top = points
        .iter()
        .map(|p| p.1)
        .chain(data.target_rate)
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput over time", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("successful ops/s")
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
        .map_err(draw_err)?
        .label("ops/s per interval")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if let Some(rate) = data.target_rate {
        chart
            .draw_series(LineSeries::new([(0.0, rate), (end, rate)], RED))
            .map_err(draw_err)?
            .label("target (--rate)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    legend(&mut chart)
}

/// The curve `(1 / (1 - p), latency at p)` for p from 0 to 99.999%, ten
/// points per decade of "nines".
pub fn percentile_curve(hist: &Histogram<u64>) -> Vec<(f64, f64)> {
    if hist.is_empty() {
        return Vec::new();
    }
    (0..=CURVE_DECADES * 10)
        .map(|k| {
            let x = 10f64.powf(f64::from(k) / 10.0);
            let ms = hist.value_at_quantile(1.0 - 1.0 / x) as f64 / 1e3;
            (x, ms)
        })
        .collect()
}

/// Latency by percentile, log scale of nines: uncorrected and corrected.
fn draw_percentiles(area: &Area<'_>, data: &PlotData<'_>) -> Result<(), PlotError> {
    let uncorrected = percentile_curve(data.uncorrected);
    let corrected = data.corrected.map(percentile_curve).unwrap_or_default();
    let top = uncorrected
        .iter()
        .chain(&corrected)
        .map(|p| p.1)
        .fold(0.001, f64::max)
        * 1.15;
    let x_max = 10f64.powi(CURVE_DECADES as i32);
    let mut chart = ChartBuilder::on(area)
        .caption("Latency by percentile", ("sans-serif", 20))
        .margin(15)
        // Room for the last tick label, 99.999%.
        .margin_right(45)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..x_max).log_scale(), 0.0..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency, ms")
        .x_label_formatter(&|x| format!("{}%", percentile_label(*x)))
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(LineSeries::new(uncorrected, BLUE.stroke_width(2)))
        .map_err(draw_err)?
        .label("from sending")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if !corrected.is_empty() {
        chart
            .draw_series(LineSeries::new(corrected, RED.stroke_width(2)))
            .map_err(draw_err)?
            .label("from intended start (corrected)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    legend(&mut chart)
}

/// `x = 1 / (1 - p)` as a percentile: 10 is 90, 1000 is 99.9.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let s = format!("{p:.5}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<(), PlotError>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)
}

#[cfg(test)]
mod tests;
