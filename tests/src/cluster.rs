//! `Cluster`: start(n), kill(i), restart(i), pause(i), client().
//!
//! The cluster's parts are one subject a module: [`grow`] adds nodes,
//! [`process`] runs and signals the node processes, [`credentials`] holds
//! the secret, certificates and tokens, [`clients`] talks to the nodes.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use tinykv_client::auth::{write_bundle, Bundle};
use tinykv_client::Client;

use crate::ports::free_port;

mod clients;
mod credentials;
mod grow;
mod process;

pub use crate::wait::wait_until;
pub use process::binary;
use process::write_block_file;

/// How to start a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Replication factor.
    pub rf: u32,
    /// `always` or `periodic`.
    pub sync: &'static str,
    /// Extra flags for every node.
    pub args: Vec<String>,
    /// Client deadline.
    pub client_timeout: Duration,
    /// `--cluster-name` of every node; none: a name of its own per cluster,
    /// so two test clusters never merge even if one reaches the other.
    pub cluster_name: Option<String>,
    /// The cluster secret's file content; none: no secret (the nodes
    /// accept peer and admin calls from loopback only).
    pub secret: Option<String>,
    /// Serve TLS: a CA and each node's certificate (named by its id,
    /// `localhost` and `127.0.0.1`) are made in the cluster's directory,
    /// and clients dial over TLS with a client certificate (`tester`).
    pub tls: bool,
    /// A client token every test client sends (nodes started with
    /// `--client-auth token` read it from `client.tokens`).
    pub token: Option<String>,
    /// Serve the Redis protocol too: every node gets `--redis-listen` on a
    /// port of its own ([`Cluster::redis_addr`]).
    pub redis: bool,
}

/// Node flags of a quiet cluster: no hinted handoff, no periodic repair
/// (only the rounds a test asks for), fast heartbeats.
pub const QUIET_ARGS: [&str; 6] = [
    "--hinted-handoff",
    "false",
    "--anti-entropy-interval",
    "0s",
    "--heartbeat-interval",
    "200ms",
];

impl ClusterOptions {
    /// The default options with these node flags.
    pub fn with_args(args: &[&str]) -> Self {
        ClusterOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..ClusterOptions::default()
        }
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            rf: 3,
            sync: "periodic",
            args: vec!["--heartbeat-interval".into(), "200ms".into()],
            client_timeout: Duration::from_secs(5),
            cluster_name: None,
            secret: None,
            tls: false,
            token: None,
            redis: false,
        }
    }
}

/// One node process.
pub struct NodeProc {
    /// Node id (`node1`, ...).
    pub id: String,
    /// gRPC port on 127.0.0.1.
    pub port: u16,
    /// RESP port on 127.0.0.1, when the cluster serves the Redis protocol.
    pub redis_port: Option<u16>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// File of peer ids this node must not talk to (fault injection).
    pub block_file: PathBuf,
    /// The `--peers` list this node is started with.
    pub peers: String,
    /// Flags for this node only (kept across restarts).
    pub extra: Vec<String>,
    /// The node's log filter (`TINYKV_LOG`), `info` unless a test wants
    /// more (kept across restarts).
    pub log_filter: String,
    /// The node's `--cluster-secret-file` (the cluster's, unless a test
    /// gives it another).
    pub secret_file: Option<PathBuf>,
    child: Option<Child>,
}

/// A running test cluster. Dropping it kills every node.
pub struct Cluster {
    /// The nodes, index 0-based; ids are `node{index+1}`.
    pub nodes: Vec<NodeProc>,
    /// The nodes' `--cluster-name`.
    pub name: String,
    opts: ClusterOptions,
    dir: tempfile::TempDir,
    /// One client per node, made on first use (lazily connected channels
    /// reconnect after a restart), so checks do not open a connection each.
    clients: std::sync::Mutex<std::collections::HashMap<usize, Client>>,
}

impl Cluster {
    /// Starts `n` nodes with default options and waits until all serve.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, ClusterOptions::default()).await
    }

    /// Starts `n` nodes with `opts` and waits until all serve.
    pub async fn start_with(n: usize, opts: ClusterOptions) -> Cluster {
        static CLUSTERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = opts.cluster_name.clone().unwrap_or_else(|| {
            let seq = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("test-{}-{seq}", std::process::id())
        });
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        if opts.tls {
            let clients = vec!["tester".to_string()];
            let bundle = Bundle {
                nodes: Vec::new(),
                clients,
            };
            write_bundle(&dir.path().join("certs"), &bundle)
                .unwrap_or_else(|e| panic!("certs: {e}"));
        }
        if let Some(token) = &opts.token {
            std::fs::write(dir.path().join("client.tokens"), format!("{token}\n"))
                .unwrap_or_else(|e| panic!("writing the token file: {e}"));
        }
        let secret_file = opts.secret.as_ref().map(|text| {
            let path = dir.path().join("cluster.secret");
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing the secret: {e}"));
            path
        });
        let nodes: Vec<NodeProc> = (0..n)
            .map(|i| NodeProc {
                id: format!("node{}", i + 1),
                port: free_port(),
                redis_port: opts.redis.then(free_port),
                data_dir: dir.path().join(format!("node{}", i + 1)),
                block_file: dir.path().join(format!("node{}.blocked", i + 1)),
                peers: String::new(),
                extra: Vec::new(),
                log_filter: "info".into(),
                secret_file: secret_file.clone(),
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            nodes,
            name,
            opts,
            dir,
            clients: Default::default(),
        };
        for node in &mut c.nodes {
            node.peers = peers.clone();
        }
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_ready(i).await;
        }
        for i in 0..n {
            c.wait_converged(i).await;
        }
        c
    }

    /// `127.0.0.1:port` of node `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].port)
    }

    /// `127.0.0.1:port` of node `i`'s RESP door (the cluster must be
    /// started with `redis`).
    pub fn redis_addr(&self, i: usize) -> String {
        let port = self.nodes[i]
            .redis_port
            .unwrap_or_else(|| panic!("the cluster was started without `redis`"));
        format!("127.0.0.1:{port}")
    }

    /// Index of the node with id `id`.
    pub fn index_of(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The log of node `i` so far (for failure messages).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.nodes[i].id)))
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}
