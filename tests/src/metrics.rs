//! Reading a node's Prometheus metrics: [`Cluster::metrics`] scrapes
//! `/metrics` on the node's gRPC port (HTTP GET next to gRPC). With
//! [`ClusterOptions::with_metrics`] a node also binds `--metrics-listen
//! 127.0.0.1:0` (a port of the kernel's choosing) and logs the address it
//! got ([`Cluster::metrics_addr`]).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Cluster, ClusterOptions};

/// The line a node logs once its metrics endpoint is bound.
const LISTENING: &str = "metrics endpoint listening addr=";

impl ClusterOptions {
    /// Every node serves metrics on a port it picks itself; read them with
    /// [`Cluster::metrics`] or [`Cluster::metric`].
    pub fn with_metrics(mut self) -> Self {
        self.args
            .extend(["--metrics-listen".to_string(), "127.0.0.1:0".to_string()]);
        self
    }
}

impl Cluster {
    /// The metrics address node `i` logged in its current run, if any.
    pub fn metrics_addr(&self, i: usize) -> Option<String> {
        let log = self.log(i);
        let line = log.lines().rev().find(|l| l.contains(LISTENING))?;
        let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
        Some(rest.split_whitespace().next()?.to_string())
    }

    /// Node `i`'s `/metrics` text, scraped from its gRPC port. Polls up to
    /// 10 s; panics after that.
    pub async fn metrics(&self, i: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = scrape(&self.addr(i)).await {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no metrics from {} on its gRPC port:\n{}",
                self.nodes[i].id,
                self.log(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of the sample `name` (with its labels, exactly as
    /// rendered, e.g. `tinykv_hints_replayed_total`) on node `i`; panics if
    /// the node does not report it.
    pub async fn metric(&self, i: usize, name: &str) -> f64 {
        let text = self.metrics(i).await;
        sample(&text, name)
            .unwrap_or_else(|| panic!("{} reports no {name}:\n{text}", self.nodes[i].id))
    }

    /// The hints stored on the nodes `nodes` now (their status'
    /// `pending_hints`, read from the engine), summed.
    pub async fn pending_hints(&self, nodes: impl IntoIterator<Item = usize>) -> u64 {
        let mut total = 0;
        for i in nodes {
            total += self
                .client_for(i)
                .status()
                .await
                .unwrap_or_else(|e| panic!("status of {}: {e}", self.nodes[i].id))
                .pending_hints;
        }
        total
    }

    /// The sum of the sample `name` over the nodes `nodes`.
    pub async fn metric_sum(&self, nodes: impl IntoIterator<Item = usize>, name: &str) -> f64 {
        let mut sum = 0.0;
        for i in nodes {
            sum += self.metric(i, name).await;
        }
        sum
    }
}

/// The value of the sample named exactly `name` in Prometheus text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

/// `GET /metrics` from `addr` over HTTP/1.0: the body of a 200 answer.
pub async fn scrape(addr: &str) -> std::io::Result<String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| std::io::Error::other("metrics scrape timed out"))??;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_string())
        }
        _ => Err(std::io::Error::other(format!("bad metrics answer: {out}"))),
    }
}
