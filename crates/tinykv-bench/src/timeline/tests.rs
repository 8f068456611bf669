use std::sync::mpsc;

use super::*;

/// Forwards every closed interval to a channel.
struct Forward(mpsc::Sender<IntervalPoint>);

impl IntervalSink for Forward {
    fn interval(&mut self, point: &IntervalPoint, _: &IntervalHists) {
        let _ = self.0.send(point.clone());
    }
}

#[test]
fn a_point_summarises_its_interval() {
    let rec = IntervalRecorder::default();
    for ms in 1..=100u64 {
        rec.record(Some(Duration::from_millis(ms)), None);
    }
    rec.record(None, None);
    let p = rec
        .take()
        .point(Duration::from_secs(2), Duration::from_millis(500));
    assert_eq!((p.ops, p.errors), (100, 1));
    assert_eq!(p.start_secs, 2.0);
    assert!((p.ops_per_sec - 200.0).abs() < 1e-9);
    assert!((50_000..50_100).contains(&p.p50_us), "{p:?}");
    assert!((99_000..99_100).contains(&p.p99_us), "{p:?}");
    assert_eq!(p.corrected_p99_us, None);
    // Taking starts a new, empty interval.
    assert_eq!(rec.take().uncorrected.len(), 0);

    rec.record(
        Some(Duration::from_millis(1)),
        Some(Duration::from_millis(9)),
    );
    let p = rec.take().point(Duration::ZERO, Duration::from_secs(1));
    assert!(p.corrected_p50_us >= Some(9_000), "{p:?}");
    assert!(interval_line(&p).contains("corrected p50"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticker_closes_intervals_and_keeps_every_operation() {
    let rec = Arc::new(IntervalRecorder::default());
    let (tx, rx) = mpsc::channel();
    let ticker = Ticker::spawn(
        rec.clone(),
        Instant::now(),
        Duration::from_millis(20),
        vec![Box::new(Forward(tx))],
    );
    // Record, wait for an interval holding them to close, record again.
    let mut seen = 0;
    for _ in 0..5 {
        rec.record(Some(Duration::from_micros(300)), None);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen < 5 {
        assert!(Instant::now() < deadline, "no interval closed in 10 s");
        if let Ok(p) = rx.recv_timeout(Duration::from_millis(100)) {
            seen += p.ops;
        }
    }
    for _ in 0..3 {
        rec.record(Some(Duration::from_micros(300)), None);
    }
    rec.record(None, None);
    let points = ticker.finish().await;
    assert!(points.len() >= 2, "{points:?}");
    assert_eq!(points.iter().map(|p| p.ops).sum::<u64>(), 8);
    assert_eq!(points.iter().map(|p| p.errors).sum::<u64>(), 1);
    // In order and back to back.
    for w in points.windows(2) {
        let end = w[0].start_secs + w[0].secs;
        assert!((w[1].start_secs - end).abs() < 1e-6, "{points:?}");
    }
}
