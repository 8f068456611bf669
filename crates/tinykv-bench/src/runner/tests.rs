use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use super::*;

/// An in-memory store counting calls, optionally slow and failing.
#[derive(Clone, Default)]
struct MemStore {
    inner: Arc<MemInner>,
}

#[derive(Default)]
struct MemInner {
    data: Mutex<HashMap<Bytes, Bytes>>,
    puts_per_key: Mutex<HashMap<Bytes, u64>>,
    calls: AtomicU64,
    /// Every n-th call fails with the error from `fail_with` (0: never).
    fail_every: u64,
    fail_with: Option<fn() -> ClientError>,
    latency: Duration,
}

impl MemStore {
    fn new(latency: Duration, fail_every: u64, fail_with: Option<fn() -> ClientError>) -> Self {
        MemStore {
            inner: Arc::new(MemInner {
                fail_every,
                fail_with,
                latency,
                ..MemInner::default()
            }),
        }
    }

    async fn call(&self) -> Result<(), ClientError> {
        let n = self.inner.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.inner.latency.is_zero() {
            // Simulated service time, not synchronisation.
            tokio::time::sleep(self.inner.latency).await;
        }
        match self.inner.fail_with {
            Some(err) if self.inner.fail_every > 0 && n % self.inner.fail_every == 0 => Err(err()),
            _ => Ok(()),
        }
    }

    fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }
}

impl Store for MemStore {
    async fn get(&self, key: Bytes) -> Result<bool, ClientError> {
        self.call().await?;
        let data = self
            .inner
            .data
            .lock()
            .map_err(|_| ClientError::NoEndpoints)?;
        Ok(data.contains_key(&key))
    }

    async fn put(&self, key: Bytes, val: Bytes) -> Result<(), ClientError> {
        self.call().await?;
        *self
            .inner
            .puts_per_key
            .lock()
            .map_err(|_| ClientError::NoEndpoints)?
            .entry(key.clone())
            .or_default() += 1;
        self.inner
            .data
            .lock()
            .map_err(|_| ClientError::NoEndpoints)?
            .insert(key, val);
        Ok(())
    }
}

fn config(stop: StopAt, read_ratio: f64) -> RunConfig {
    RunConfig {
        workers: 8,
        stop,
        keyspace: 500,
        value_size: 16,
        read_ratio,
        non_read: OpKind::Write,
        distribution: Distribution::Uniform,
        key_prefix: "k".into(),
        load: false,
        warmup: Duration::ZERO,
        seed: 7,
        rate: None,
        interval: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_budget_is_exact_and_mix_is_respected() {
    let store = MemStore::default();
    let cfg = config(StopAt::Ops(10_000), 0.5);
    let res = match run(store.clone(), &cfg, Progress::Hidden).await {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    };
    let s = &res.run.stats;
    assert_eq!(s.read.attempted() + s.write.attempted(), 10_000);
    assert_eq!(store.calls(), 10_000);
    let reads = s.read.ok() as f64 / 10_000.0;
    assert!((reads - 0.5).abs() < 0.03, "read share {reads}");
    assert!(res.load.is_none());
    assert_eq!(res.warmup_ops, 0);
    // Nothing was loaded: some reads find nothing, and that is no error.
    assert!(s.read.not_found > 0);
    assert_eq!(s.read.errors.total() + s.write.errors.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_phase_writes_every_key_once_so_reads_hit() {
    let store = MemStore::default();
    let mut cfg = config(StopAt::Ops(2_000), 1.0);
    cfg.load = true;
    let res = match run(store.clone(), &cfg, Progress::Hidden).await {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    };
    let load = match &res.load {
        Some(l) => l,
        None => panic!("load phase missing"),
    };
    assert_eq!(load.stats.write.ok(), 500);
    assert_eq!(load.stats.read.attempted(), 0);
    let puts = store
        .inner
        .puts_per_key
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    assert_eq!(puts.len(), 500);
    assert!(puts.values().all(|&n| n == 1));
    assert!(puts.contains_key(&key_for("k", 0)) && puts.contains_key(&key_for("k", 499)));
    // Read-only after loading: every read hits.
    assert_eq!(res.run.stats.read.ok(), 2_000);
    assert_eq!(res.run.stats.read.not_found, 0);
    assert_eq!(res.run.stats.write.attempted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_bounds_the_run() {
    let store = MemStore::new(Duration::from_millis(1), 0, None);
    let cfg = config(StopAt::Duration(Duration::from_millis(300)), 0.0);
    let started = Instant::now();
    let res = match run(store, &cfg, Progress::Hidden).await {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    };
    let wall = started.elapsed();
    assert!(
        res.run.elapsed >= Duration::from_millis(300),
        "{:?}",
        res.run.elapsed
    );
    assert!(wall < Duration::from_secs(3), "took {wall:?}");
    assert!(res.run.stats.write.ok() > 0);
    assert_eq!(res.run.stats.read.attempted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_operations_are_not_recorded() {
    let store = MemStore::new(Duration::from_millis(1), 0, None);
    let mut cfg = config(StopAt::Ops(1_000), 0.5);
    cfg.warmup = Duration::from_millis(200);
    let res = match run(store.clone(), &cfg, Progress::Hidden).await {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    };
    let s = &res.run.stats;
    assert_eq!(s.read.attempted() + s.write.attempted(), 1_000);
    assert!(res.warmup_ops > 0, "no warm-up ops");
    assert_eq!(store.calls(), 1_000 + res.warmup_ops);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_kind_and_not_as_latency() {
    let unavailable: fn() -> ClientError = || ClientError::Unavailable("1 of 2 replicas".into());
    let store = MemStore::new(Duration::ZERO, 10, Some(unavailable));
    let res = match run(store, &config(StopAt::Ops(1_000), 0.5), Progress::Hidden).await {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    };
    let s = &res.run.stats;
    let mut errors = s.read.errors;
    errors.merge(&s.write.errors);
    assert_eq!(errors.unavailable, 100);
    assert_eq!(errors.total(), 100);
    assert_eq!(s.read.ok() + s.write.ok(), 900);

    let deadline: fn() -> ClientError = || ClientError::DeadlineExceeded("slow".into());
    let store = MemStore::new(Duration::ZERO, 4, Some(deadline));
    let res = match run(store, &config(StopAt::Ops(400), 0.0), Progress::Hidden).await {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    };
    assert_eq!(res.run.stats.write.errors.deadline, 100);
    assert_eq!(res.run.stats.write.ok(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_workers_still_runs_one() {
    let mut cfg = config(StopAt::Ops(10), 0.5);
    cfg.workers = 0;
    let res = match run(MemStore::default(), &cfg, Progress::Hidden).await {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    };
    assert_eq!(
        res.run.stats.read.attempted() + res.run.stats.write.attempted(),
        10
    );
}

fn run_ok(store: MemStore, cfg: &RunConfig) -> impl Future<Output = RunResult> {
    let cfg = cfg.clone();
    async move {
        match run(store, &cfg, Progress::Hidden).await {
            Ok(r) => r,
            Err(e) => panic!("run failed: {e}"),
        }
    }
}

fn all_attempted(s: &Recorder) -> u64 {
    s.kinds().iter().map(|(_, o)| o.attempted()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_the_scheduled_count_and_corrects_for_waiting() {
    // 2 workers, 20 ms per call: at most 100 ops/s against a target of
    // 200, so operations queue behind busy workers.
    let store = MemStore::new(Duration::from_millis(20), 0, None);
    let mut cfg = config(StopAt::Duration(Duration::from_millis(500)), 0.0);
    cfg.workers = 2;
    cfg.rate = Some(200.0);
    let res = run_ok(store.clone(), &cfg).await;
    let w = &res.run.stats.write;
    // Every slot due within the 500 ms is sent, late or not: 100.
    assert!((99..=101).contains(&w.attempted()), "{}", w.attempted());
    assert_eq!(store.calls(), w.attempted());
    let (plain, corrected) = (w.latency(), w.corrected_latency().unwrap_or_default());
    assert!(corrected.p50 >= plain.p50 && corrected.p99 >= plain.p99);
    // The last slots waited about half a second behind busy workers; the
    // uncorrected numbers show only the 20 ms calls.
    assert!(corrected.max > 4 * plain.max, "{corrected:?} vs {plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_budget_and_warmup_count_slots() {
    let mut cfg = config(StopAt::Ops(50), 0.5);
    cfg.rate = Some(1_000.0);
    cfg.warmup = Duration::from_millis(20);
    let store = MemStore::default();
    let res = run_ok(store.clone(), &cfg).await;
    assert_eq!(all_attempted(&res.run.stats), 50);
    assert_eq!(res.warmup_ops, 20, "20 ms at 1000/s");
    assert_eq!(store.calls(), 70);
    for (kind, s) in res.run.stats.kinds() {
        let (Some(c), l) = (s.corrected_latency(), s.latency()) else {
            assert_eq!(s.ok(), 0, "{kind:?} has no corrected latencies");
            continue;
        };
        assert!(
            c.p50 >= l.p50 && c.p999 >= l.p999 && c.max >= l.max,
            "{kind:?}"
        );
    }
    // Closed loop keeps no corrected histogram.
    let res = run_ok(MemStore::default(), &config(StopAt::Ops(50), 0.5)).await;
    assert!(res.run.stats.read.corrected_latency().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_modify_write_reads_then_writes_one_key() {
    let mut cfg = config(StopAt::Ops(1_000), 0.5);
    cfg.non_read = OpKind::ReadModifyWrite;
    let store = MemStore::default();
    let res = run_ok(store.clone(), &cfg).await;
    let s = &res.run.stats;
    assert_eq!(s.write.attempted(), 0);
    assert_eq!(s.read.ok() + s.rmw.ok(), 1_000);
    assert!(s.rmw.ok() > 400 && s.read.ok() > 400, "{s:?}");
    assert_eq!(store.calls(), s.read.ok() + 2 * s.rmw.ok());
    let puts: u64 = store
        .inner
        .puts_per_key
        .lock()
        .map(|m| m.values().sum())
        .unwrap_or_default();
    assert_eq!(puts, s.rmw.ok(), "one put per read-modify-write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_inserts_new_keys_and_reads_them() {
    let mut cfg = config(StopAt::Ops(4_000), 0.95);
    cfg.distribution = Distribution::Latest;
    cfg.keyspace = 100;
    cfg.load = true;
    let store = MemStore::default();
    let res = run_ok(store.clone(), &cfg).await;
    let s = &res.run.stats;
    let inserts = s.write.ok();
    assert!(inserts > 100 && inserts < 320, "{inserts} inserts of 4000");
    let puts = store
        .inner
        .puts_per_key
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    // The load wrote keys 0..100, the run inserted the next ones once each.
    assert_eq!(puts.len() as u64, 100 + inserts);
    assert!(puts.values().all(|&n| n == 1));
    assert!(puts.contains_key(&key_for("k", 100 + inserts - 1)));
    // Reads stay on acknowledged keys, so (almost) all find a value.
    assert!(s.read.not_found * 100 < s.read.ok(), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_series_holds_every_recorded_operation() {
    let store = MemStore::new(Duration::from_millis(1), 0, None);
    let mut cfg = config(StopAt::Duration(Duration::from_millis(300)), 0.5);
    cfg.rate = Some(500.0);
    cfg.interval = Some(Duration::from_millis(100));
    let res = run_ok(store, &cfg).await;
    let ok: u64 = res.run.stats.kinds().iter().map(|(_, s)| s.ok()).sum();
    assert!(res.intervals.len() >= 2, "{:?}", res.intervals);
    assert_eq!(res.intervals.iter().map(|p| p.ops).sum::<u64>(), ok);
    assert!(res
        .intervals
        .iter()
        .all(|p| p.corrected_p99_us >= Some(p.p99_us)));
}
