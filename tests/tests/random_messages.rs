//! Random messages for every gRPC method, against a live 3-node cluster
//! with a cluster secret: structurally valid messages with random fields
//! and random bytes, with no credentials, a valid proof of the secret, or
//! a garbled one. Afterwards no node has panicked or exited, every node
//! serves, the ring is the three nodes, and the keys written before read
//! back unchanged. No call without a valid proof may succeed on the admin
//! or peer plane.
//!
//! `TINYKV_RANDOM_SEED` replays a run (its seed is printed first);
//! `TINYKV_RANDOM_REQUESTS` sets how many requests are sent (default below).

#[path = "random_messages/gen.rs"]
mod gen;
#[path = "random_messages/methods.rs"]
mod methods;
#[path = "random_messages/peer.rs"]
mod peer;
#[path = "random_messages/send.rs"]
mod send;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tinykv_client::{Consistency, Value};
use tinykv_tests::{Cluster, ClusterOptions};
use tonic::transport::Channel;

use methods::Plane;
use send::{Cred, Signers};

const SECRET: &str = "random-messages-secret-0123456789abcdef";
/// Requests in flight at once.
const CONCURRENCY: usize = 48;
/// Requests sent unless `TINYKV_RANDOM_REQUESTS` says otherwise: about a
/// minute in a debug build on a busy 2-core machine; the full 100,000-request
/// run is in docs/security.md.
const DEFAULT_REQUESTS: u64 = 20_000;
/// Keys written before the barrage and read back after it.
const RECORDED_KEYS: usize = 50;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
}

/// What the barrage got back.
#[derive(Default)]
struct Tally {
    by_code: BTreeMap<String, u64>,
    by_cred: BTreeMap<(&'static str, String), u64>,
    by_method: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// The first message of each method, code and payload kind.
    examples: BTreeMap<(&'static str, String, bool), String>,
    /// Time spent waiting for each method's answers.
    busy: BTreeMap<&'static str, Duration>,
    /// Admin or peer calls without a valid proof that succeeded.
    breaches: Vec<String>,
    /// Calls past their deadline (request numbers).
    timeouts: Vec<u64>,
}

impl Tally {
    fn add(
        &mut self,
        i: u64,
        plan: &send::Plan,
        node: usize,
        answer: (String, String),
        took: Duration,
    ) {
        let (code, message) = answer;
        let m = plan.method;
        self.examples
            .entry((m.label, code.clone(), plan.raw))
            .or_insert_with(|| message.chars().take(160).collect());
        *self.busy.entry(m.label).or_default() += took;
        let guarded = matches!(m.plane, Plane::Admin | Plane::Peer);
        if guarded && plan.cred != Cred::Valid && code == "Ok" {
            self.breaches.push(format!(
                "request {i}: {} on node{} with {:?} (raw: {}) answered Ok",
                m.label,
                node + 1,
                plan.cred,
                plan.raw
            ));
        }
        if code == "client timeout" {
            self.timeouts.push(i);
        }
        let cred = match plan.cred {
            Cred::None => "none",
            Cred::Valid => "valid",
            Cred::Garbled(_) => "garbled",
        };
        *self.by_code.entry(code.clone()).or_default() += 1;
        *self.by_cred.entry((cred, code.clone())).or_default() += 1;
        *self
            .by_method
            .entry(m.label)
            .or_default()
            .entry(code)
            .or_default() += 1;
    }

    fn print(&self, elapsed: Duration) {
        let total: u64 = self.by_code.values().sum();
        println!(
            "{total} requests in {:.1} s ({:.0}/s)",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        );
        println!("by code: {:?}", self.by_code);
        println!("by credentials: {:?}", self.by_cred);
        for (method, codes) in &self.by_method {
            let n: u64 = codes.values().sum();
            let mean = self.busy[method].as_secs_f64() * 1000.0 / n as f64;
            println!("  {method:<15} {mean:>7.1} ms {codes:?}");
        }
        if std::env::var_os("TINYKV_RANDOM_EXAMPLES").is_some() {
            for ((method, code, raw), message) in &self.examples {
                println!("  {method} {code} (raw {raw}): {message}");
            }
        }
    }
}

/// Sends `total` random requests, `CONCURRENCY` at a time, spread over the
/// nodes.
async fn barrage(c: &Cluster, seed: u64, total: u64) -> Tally {
    let members: Vec<String> = c.nodes.iter().map(|n| n.id.clone()).collect();
    let channels: Vec<Channel> = (0..c.nodes.len())
        .map(|i| {
            Channel::from_shared(format!("http://{}", c.addr(i)))
                .unwrap_or_else(|e| panic!("address: {e}"))
                .connect_timeout(Duration::from_secs(5))
                .timeout(send::REPAIR_DEADLINE + Duration::from_secs(5))
                .connect_lazy()
        })
        .collect();
    let signers = Signers::new(SECRET);
    let (members, channels, signers) = (&members, &channels, &signers);
    let started = Instant::now();
    let mut answers = futures::stream::iter(0..total)
        .map(|i| async move {
            let mut r = StdRng::seed_from_u64(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let plan = send::plan(&mut r, members);
            let node = r.random_range(0..channels.len());
            let sent = Instant::now();
            let code = send::send(&mut r, &plan, channels[node].clone(), signers, &c.name).await;
            (i, plan, node, code, sent.elapsed())
        })
        .buffer_unordered(CONCURRENCY);
    let mut tally = Tally::default();
    let mut done = 0u64;
    while let Some((i, plan, node, code, took)) = answers.next().await {
        tally.add(i, &plan, node, code, took);
        done += 1;
        if done.is_multiple_of(10_000) {
            println!("{done} sent, {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    tally.print(started.elapsed());
    tally
}

/// Writes the recorded keys at ALL and reads back what was stored.
async fn write_recorded(c: &Cluster) -> Vec<(Vec<u8>, Value)> {
    let client = c.client();
    let mut out = Vec::new();
    for i in 0..RECORDED_KEYS {
        let mut key = gen::RECORDED.to_vec();
        key.extend(format!("{i}").bytes());
        let val = format!("value {i} ").repeat(1 + i * 97 % 3000);
        client
            .put(key.clone(), val, Consistency::All)
            .await
            .unwrap_or_else(|e| panic!("recording key {i}: {e}"));
        let stored = client
            .get(key.clone(), Consistency::All)
            .await
            .unwrap_or_else(|e| panic!("reading recorded key {i}: {e}"))
            .unwrap_or_else(|| panic!("recorded key {i} missing"));
        out.push((key, stored));
    }
    out
}

/// Every node still runs, never panicked, serves, and its ring is the
/// three nodes.
async fn check_nodes(c: &mut Cluster) {
    let ids: Vec<String> = c.nodes.iter().map(|n| n.id.clone()).collect();
    for i in 0..c.nodes.len() {
        let log = c.log(i);
        assert!(
            c.exit_status(i).is_none(),
            "{} exited: {:?}\n{log}",
            ids[i],
            c.exit_status(i)
        );
        // Each panic with the lines after it (the backtrace's top).
        let lines: Vec<&str> = log.lines().collect();
        let panics: Vec<String> = (0..lines.len())
            .filter(|&n| lines[n].contains("panicked"))
            .take(3)
            .map(|n| lines[n..(n + 12).min(lines.len())].join("\n"))
            .collect();
        assert!(
            panics.is_empty(),
            "{} panicked:\n{}",
            ids[i],
            panics.join("\n--\n")
        );
        let health = c.client_for(i).health().await;
        assert!(matches!(health, Ok(true)), "{} health: {health:?}", ids[i]);
        let status = c
            .client_for(i)
            .status()
            .await
            .unwrap_or_else(|e| panic!("status of {}: {e}", ids[i]));
        let mut ring: Vec<&str> = status
            .members
            .iter()
            .filter(|m| m.state == "normal")
            .map(|m| m.node_id.as_str())
            .collect();
        ring.sort();
        assert_eq!(ring, ids, "the ring as {} sees it", ids[i]);
    }
}

/// The recorded keys read back at ALL, and from every replica, unchanged.
async fn check_recorded(c: &Cluster, recorded: &[(Vec<u8>, Value)]) {
    let client = c.client();
    for (key, want) in recorded {
        let name = String::from_utf8_lossy(key);
        let got = client
            .get(key.clone(), Consistency::All)
            .await
            .unwrap_or_else(|e| panic!("reading {name}: {e}"))
            .unwrap_or_else(|| panic!("{name} is gone"));
        assert_eq!(
            (&got.val, got.timestamp, &got.writer),
            (&want.val, want.timestamp, &want.writer),
            "{name} changed"
        );
        for i in 0..c.nodes.len() {
            let local = c.local(i, &name).await;
            assert_eq!(
                local.as_deref().map(str::as_bytes),
                Some(&want.val[..]),
                "{name} on node{}",
                i + 1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_messages_for_every_method_leave_nodes_serving_and_data_unchanged() {
    let seed = env_u64("TINYKV_RANDOM_SEED").unwrap_or_else(|| rand::rng().random());
    let total = env_u64("TINYKV_RANDOM_REQUESTS").unwrap_or(DEFAULT_REQUESTS);
    println!("seed {seed} (TINYKV_RANDOM_SEED={seed} replays it), {total} requests");
    let opts = ClusterOptions {
        secret: Some(SECRET.into()),
        client_timeout: Duration::from_secs(10),
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start_with(3, opts).await;
    let recorded = write_recorded(&c).await;
    let tally = barrage(&c, seed, total).await;
    assert!(
        tally.breaches.is_empty(),
        "calls without a valid proof succeeded (seed {seed}):\n{}",
        tally.breaches.join("\n")
    );
    check_nodes(&mut c).await;
    check_recorded(&c, &recorded).await;
    assert!(
        tally.timeouts.is_empty(),
        "{} calls passed their deadline ({:?}, Repair {:?}; seed {seed}), requests {:?}",
        tally.timeouts.len(),
        send::CALL_DEADLINE,
        send::REPAIR_DEADLINE,
        &tally.timeouts[..tally.timeouts.len().min(20)]
    );
}
