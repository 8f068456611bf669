//! Storage throughput of the disk engine (fjall) through `Store`:
//! write throughput with `--sync always` vs `--sync periodic` under
//! concurrent writers, and point reads. A plain harness (no criterion) so it
//! stays quick: `cargo bench -p tinykv-node --bench storage`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinykv_node::storage::{open_disk, EngineTuning, Store, SyncPolicy, WriteOp};
use tinykv_node::version::Record;

const WRITERS: usize = 32;
const WRITES_PER_WRITER: usize = 300;
const READS: usize = 100_000;

fn key(w: usize, i: usize) -> Bytes {
    Bytes::from(format!("bench-key-{w:03}-{i:06}"))
}

async fn write_load(store: &Store) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..WRITES_PER_WRITER {
                let record = Record::value(Bytes::from(vec![b'v'; 100]), 1, "bench");
                s.write(vec![WriteOp::Put {
                    key: key(w, i),
                    record,
                }])
                .await?;
            }
            Ok::<_, tinykv_node::storage::StorageError>(())
        }));
    }
    for t in tasks {
        t.await
            .expect("writer task panicked")
            .expect("write failed");
    }
    start.elapsed()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let total = WRITERS * WRITES_PER_WRITER;
    for policy in [SyncPolicy::Always, SyncPolicy::default()] {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = open_disk(dir.path(), &EngineTuning::default()).expect("open");
        let store = Store::start(Arc::clone(&engine), policy);
        let took = rt.block_on(write_load(&store));
        rt.block_on(store.close()).expect("close");
        println!(
            "Fjall\tstore write  sync={:<17} {WRITERS} writers x {WRITES_PER_WRITER} puts (100 B): {:>8.0} writes/s ({took:.2?})",
            policy.to_string(),
            total as f64 / took.as_secs_f64()
        );
        if policy == SyncPolicy::Always {
            continue;
        }
        let start = Instant::now();
        let mut found = 0usize;
        for n in 0..READS {
            let (w, i) = (n % WRITERS, (n / WRITERS) % WRITES_PER_WRITER);
            if engine.get(&key(w, i)).expect("get").is_some() {
                found += 1;
            }
        }
        let took = start.elapsed();
        assert_eq!(found, READS);
        println!(
            "Fjall\tengine get   {READS} point reads over {total} keys: {:>8.0} reads/s ({took:.2?})",
            READS as f64 / took.as_secs_f64()
        );
    }
}
