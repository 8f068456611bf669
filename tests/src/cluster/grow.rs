//! Growing a test cluster: nodes added after the start (with every member
//! in `--peers`, through DNS discovery, blocked from some peers, or with a
//! secret of their own).

use super::{write_block_file, Cluster, NodeProc};
use crate::ports::free_port;

impl Cluster {
    /// Every member's `--peers` entry and one for the new node `i` on `port`.
    fn peers_and(&self, i: usize, port: u16) -> Vec<String> {
        let mut peers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
            .collect();
        peers.push(format!("node{}=127.0.0.1:{port}", i + 1));
        peers
    }

    /// Adds a node that is given every member in `--peers`, and starts it.
    pub async fn add_node(&mut self, extra: &[&str]) -> usize {
        let port = free_port();
        let peers = self.peers_and(self.nodes.len(), port);
        self.add_node_with(port, peers, extra).await
    }

    /// Like [`Cluster::add_node`], but the new node drops all traffic with
    /// the node ids `blocked` from its first moment (set the other side
    /// with [`Cluster::block`]).
    pub async fn add_node_blocking(&mut self, extra: &[&str], blocked: &[&str]) -> usize {
        let file = self
            .dir
            .path()
            .join(format!("node{}.blocked", self.nodes.len() + 1));
        write_block_file(&file, blocked);
        self.add_node(extra).await
    }

    /// Adds a node that knows no member but itself and finds the others by
    /// resolving `localhost:<port of node seed>` (`--peers-dns`).
    pub async fn add_node_dns(&mut self, seed: usize, extra: &[&str]) -> usize {
        let port = free_port();
        let peers = vec![format!("node{}=127.0.0.1:{port}", self.nodes.len() + 1)];
        let dns = format!("localhost:{}", self.nodes[seed].port);
        let mut args = vec!["--peers-dns", dns.as_str()];
        args.extend_from_slice(extra);
        self.add_node_with(port, peers, &args).await
    }

    async fn add_node_with(&mut self, port: u16, peers: Vec<String>, extra: &[&str]) -> usize {
        let i = self.add_node_unwaited_with(port, peers, extra);
        self.wait_ready(i).await;
        i
    }

    /// Adds a node that is given every member in `--peers`, and starts it
    /// without waiting for it to serve.
    pub fn add_node_unwaited(&mut self, extra: &[&str]) -> usize {
        let port = free_port();
        let peers = self.peers_and(self.nodes.len(), port);
        self.add_node_unwaited_with(port, peers, extra)
    }

    fn add_node_unwaited_with(&mut self, port: u16, peers: Vec<String>, extra: &[&str]) -> usize {
        let i = self.nodes.len();
        let id = format!("node{}", i + 1);
        self.nodes.push(NodeProc {
            data_dir: self.dir.path().join(&id),
            block_file: self.dir.path().join(format!("{id}.blocked")),
            id,
            port,
            peers: peers.join(","),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            redis_port: self.opts.redis.then(free_port),
            log_filter: "info".into(),
            secret_file: self.secret_file(),
            child: None,
        });
        self.spawn(i);
        i
    }

    /// Adds a node (given every member in `--peers`) whose secret file holds
    /// `secret` instead of the cluster's, and starts it without waiting for
    /// it to serve.
    pub fn add_node_with_secret(&mut self, secret: &str) -> usize {
        let i = self.nodes.len();
        let id = format!("node{}", i + 1);
        let port = free_port();
        let file = self.dir.path().join(format!("{id}.secret"));
        std::fs::write(&file, secret).unwrap_or_else(|e| panic!("writing {id}'s secret: {e}"));
        let peers = self.peers_and(i, port);
        self.nodes.push(NodeProc {
            data_dir: self.dir.path().join(&id),
            block_file: self.dir.path().join(format!("{id}.blocked")),
            id,
            port,
            peers: peers.join(","),
            extra: Vec::new(),
            redis_port: self.opts.redis.then(free_port),
            log_filter: "info".into(),
            secret_file: Some(file),
            child: None,
        });
        self.spawn(i);
        i
    }
}
