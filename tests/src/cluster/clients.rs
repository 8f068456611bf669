//! Clients of a test cluster and the checks made through them: readiness,
//! member health, key owners and a node's own replica of a key.

use std::time::{Duration, Instant};

use tinykv_client::{Client, ClientOptions};

use super::Cluster;
use crate::wait::wait_until;

impl Cluster {
    /// A client talking only to node `i`.
    pub fn client_for(&self, i: usize) -> Client {
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(i)
            .or_insert_with(|| {
                let opts = ClientOptions {
                    timeout: self.opts.client_timeout,
                    admin_signer: self.admin_signer(),
                    tls: self.client_tls(),
                    token: self.opts.token.clone(),
                    ..ClientOptions::default()
                };
                Client::connect_many([self.addr(i).as_str()], opts)
                    .unwrap_or_else(|e| panic!("client: {e}"))
            })
            .clone()
    }

    /// A client of every running node, with the default options (sticky:
    /// one node, chosen at random, the next one when it cannot be reached).
    pub fn client(&self) -> Client {
        self.client_with(|_| {})
    }

    /// A client of every running node with the default options changed by
    /// `change` (e.g. another routing policy).
    pub fn client_with(&self, change: impl FnOnce(&mut ClientOptions)) -> Client {
        let addrs: Vec<String> = (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .map(|i| self.addr(i))
            .collect();
        let mut opts = ClientOptions {
            timeout: self.opts.client_timeout,
            admin_signer: self.admin_signer(),
            tls: self.client_tls(),
            token: self.opts.token.clone(),
            ..ClientOptions::default()
        };
        change(&mut opts);
        Client::connect_many(addrs.iter().map(String::as_str), opts)
            .unwrap_or_else(|e| panic!("client: {e}"))
    }

    /// Waits until node `i` answers health checks with SERVING.
    pub async fn wait_ready(&self, i: usize) {
        let c = self.client_for(i);
        wait_until(
            &format!("{} to serve", self.nodes[i].id),
            Duration::from_secs(30),
            || {
                let c = c.clone();
                async move { c.health().await.unwrap_or(false) }
            },
        )
        .await;
    }

    /// Waits until node `i` says in this run's log that its membership has
    /// converged: before, it refuses writes at ONE for keys it does not own.
    pub async fn wait_converged(&self, i: usize) {
        wait_until(
            &format!("{} to converge on its membership", self.nodes[i].id),
            Duration::from_secs(30),
            || async { self.log(i).contains("membership converged") },
        )
        .await;
    }

    /// Waits until node `via` reports member `node` with `health` ("up",
    /// "suspect" or "down").
    pub async fn wait_health(&self, via: usize, node: &str, health: &str) {
        let client = self.client_for(via);
        wait_until(
            &format!("node{} to see {node} {health}", via + 1),
            Duration::from_secs(30),
            || {
                let client = client.clone();
                async move {
                    client
                        .status()
                        .await
                        .map(|s| {
                            s.members
                                .iter()
                                .any(|m| m.node_id == node && m.health == health)
                        })
                        .unwrap_or(false)
                }
            },
        )
        .await;
    }

    /// The replicas of `key`, primary first, per node `via`'s ring.
    pub async fn owners(&self, via: usize, key: &str) -> Vec<String> {
        self.client_for(via)
            .key_owners(key.to_string())
            .await
            .unwrap_or_else(|e| panic!("owners: {e}"))
            .node_ids
    }

    /// Node `i`'s own replica of `key`: Some(value), or None if absent or
    /// deleted. Transient RPC errors (a node still starting) are retried for
    /// up to 10 s; after that the error fails the test rather than reading
    /// as "absent".
    pub async fn local(&self, i: usize, key: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.client_for(i).local_get(key.to_string()).await {
                Ok(r) => {
                    return (r.present && !r.tombstone)
                        .then(|| String::from_utf8_lossy(&r.val).into_owned())
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("local-get {key} on {}: {e}", self.nodes[i].id),
            }
        }
    }

    /// Waits (polling, up to `timeout`) for `what`: node `i`'s own replica
    /// of `key` holding `want`.
    pub async fn wait_local(&self, i: usize, key: &str, want: &str, what: &str, timeout: Duration) {
        wait_until(what, timeout, || async {
            self.local(i, key).await.as_deref() == Some(want)
        })
        .await;
    }

    /// Waits (up to 60 s) until node `via`'s member table shows `node` in
    /// ring state `state` (`joining`, `normal`, `left`, ...).
    pub async fn wait_state(&self, via: usize, node: &str, state: &str) {
        wait_until(
            &format!("{node} to be {state} as seen by node{}", via + 1),
            Duration::from_secs(60),
            || async {
                self.client_for(via).status().await.is_ok_and(|s| {
                    s.members
                        .iter()
                        .any(|m| m.node_id == node && m.state == state)
                })
            },
        )
        .await;
    }
}
