//! `Cluster`: start(n), kill(i), restart(i), pause(i), client().

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tinykv_client::auth::tls::ClientTls;
use tinykv_client::auth::{write_bundle, Bundle, Secrets, Signer};
use tinykv_client::{Client, ClientOptions};

use crate::ports::free_port;

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

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `tinykv-node` binary built next to the test executable.
fn node_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TINYKV_NODE_BIN") {
        return PathBuf::from(p);
    }
    binary("tinykv-node")
}

/// A binary of the workspace built next to the test executable (`make
/// test` builds them all first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test-binary>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --workspace --bins --features tinykv-node/fault-injection` first",
        bin.display()
    );
    bin
}

/// Replaces a node's block file whole: a temporary file renamed over it,
/// so the node never reads a half-written list and, keying its cache on
/// the file's inode, never misses a change made in the same timestamp tick
/// as the one before.
fn write_block_file(path: &std::path::Path, peers: &[&str]) {
    let tmp = path.with_extension("blocked.tmp");
    std::fs::write(&tmp, peers.join("\n")).unwrap_or_else(|e| panic!("block file: {e}"));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("block file: {e}"));
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
        c
    }

    /// Adds a node that is given every member in `--peers`, and starts it.
    pub async fn add_node(&mut self, extra: &[&str]) -> usize {
        let port = free_port();
        let mut peers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
            .collect();
        peers.push(format!("node{}=127.0.0.1:{port}", self.nodes.len() + 1));
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
        let mut peers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
            .collect();
        peers.push(format!("node{}=127.0.0.1:{port}", self.nodes.len() + 1));
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
            redis_port: self.opts.redis.then(free_port),
            peers: peers.join(","),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log_filter: "info".into(),
            secret_file: self.secret_file(),
            child: None,
        });
        self.spawn(i);
        i
    }

    /// The TLS and client-auth flags of node `id`, its certificate made on
    /// first use.
    fn tls_args(&self, id: &str) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if self.opts.token.is_some() {
            args.extend([
                "--client-auth".into(),
                "token".into(),
                "--client-token-file".into(),
            ]);
            args.push(self.token_file().into_os_string());
        }
        if !self.opts.tls {
            return args;
        }
        let certs = self.certs_dir();
        let cert = certs.join(format!("{id}.pem"));
        if !cert.exists() {
            let names = [id, "localhost", "127.0.0.1"].map(String::from).to_vec();
            let bundle = Bundle {
                nodes: vec![names],
                clients: Vec::new(),
            };
            write_bundle(&certs, &bundle).unwrap_or_else(|e| panic!("certs of {id}: {e}"));
        }
        let key = certs.join(format!("{id}.key"));
        let ca = certs.join("ca.pem");
        args.extend(
            [("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)]
                .into_iter()
                .flat_map(|(flag, path)| [flag.into(), path.into_os_string()]),
        );
        args
    }

    /// Where the cluster's CA and certificates are (`ca.pem`, `ca.key`,
    /// `ID.pem`, `ID.key`, `tester.pem`, `tester.key`).
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The TLS settings of the test clients: the cluster's CA and the
    /// `tester` certificate (none without TLS).
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.opts.tls.then(|| {
            let certs = self.certs_dir();
            let identity = (certs.join("tester.pem"), certs.join("tester.key"));
            ClientTls::load(&certs.join("ca.pem"), Some((&identity.0, &identity.1)))
                .unwrap_or_else(|e| panic!("client TLS: {e}"))
        })
    }

    /// The file of client tokens (`--client-token-file`).
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("client.tokens")
    }

    fn spawn(&mut self, i: usize) {
        let opts = self.opts.clone();
        let tls_args = self.tls_args(&self.nodes[i].id);
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", node.id))).ok();
        let mut cmd = Command::new(node_binary());
        cmd.arg("--node-id")
            .arg(&node.id)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", node.port))
            .arg("--peers")
            .arg(&node.peers)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--replication-factor")
            .arg(opts.rf.to_string())
            .arg("--sync")
            .arg(opts.sync)
            .arg("--cluster-name")
            .arg(&self.name)
            .args(&opts.args)
            .args(&node.extra)
            .args(
                node.secret_file
                    .iter()
                    .flat_map(|f| [std::ffi::OsStr::new("--cluster-secret-file"), f.as_os_str()]),
            )
            .args(&tls_args)
            .args(
                node.redis_port
                    .iter()
                    .flat_map(|p| ["--redis-listen".to_string(), format!("127.0.0.1:{p}")]),
            )
            // Metrics on the gRPC port only (the default).
            .env("TINYKV_METRICS_LISTEN", "")
            .env("TINYKV_FAULT_BLOCK_FILE", &node.block_file)
            .env("TINYKV_LOG", &node.log_filter)
            // Plain text in the log files, so tests can search them.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        // The node logs to stdout; both streams go to the node's log file.
        match log.and_then(|f| Some((f.try_clone().ok()?, f))) {
            Some((out, err)) => cmd.stdout(out).stderr(err),
            None => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        node.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", node.id)),
        );
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

    /// The cluster's secret file, if it has a secret.
    pub fn secret_file(&self) -> Option<PathBuf> {
        self.opts
            .secret
            .as_ref()
            .map(|_| self.dir.path().join("cluster.secret"))
    }

    /// Signs admin calls with the cluster's secret, if it has one.
    fn admin_signer(&self) -> Option<Signer> {
        let text = self.opts.secret.as_deref()?;
        let secrets = Secrets::parse(text).unwrap_or_else(|e| panic!("cluster secret: {e}"));
        Some(Signer::new("admin", secrets))
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
        let mut peers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
            .collect();
        peers.push(format!("{id}=127.0.0.1:{port}"));
        self.nodes.push(NodeProc {
            data_dir: self.dir.path().join(&id),
            block_file: self.dir.path().join(format!("{id}.blocked")),
            id,
            port,
            redis_port: self.opts.redis.then(free_port),
            peers: peers.join(","),
            extra: Vec::new(),
            log_filter: "info".into(),
            secret_file: Some(file),
            child: None,
        });
        self.spawn(i);
        i
    }

    /// Sends SIGHUP to node `i` (it re-reads its cluster secret file).
    pub fn hangup(&self, i: usize) {
        self.signal(i, libc::SIGHUP);
    }

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

    /// How node `i`'s process ended, if it has exited by itself (a crash);
    /// none while it runs (or after the test killed it).
    pub fn exit_status(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let child = self.nodes[i].child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// True while node `i`'s process runs (not killed or stopped).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.nodes[i].child {
            // SAFETY: kill(2) on a pid we spawned and still own.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERMs node `i` and waits for it to exit (graceful shutdown);
    /// panics (after SIGKILL) if it has not exited within 30 s. Polls
    /// without blocking the runtime's thread.
    pub async fn stop(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.signal(i, libc::SIGTERM);
        let mut child = self.nodes[i].child.take()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("node {i} did not exit within 30 s of SIGTERM");
                }
                Err(e) => panic!("waiting for node {i}: {e}"),
            }
        }
    }

    /// Restarts node `i` on the same port and data directory.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// Restarts node `i` with the same id and data on a new port, one
    /// `accept` takes (the others keep the old address in their `--peers`,
    /// as they would after a pod got a new IP).
    pub async fn restart_on_new_port(&mut self, i: usize, accept: impl Fn(u16) -> bool) {
        self.kill(i);
        let port = (0..1000)
            .map(|_| free_port())
            .find(|&p| accept(p))
            .unwrap_or_else(|| panic!("no free port accepted for node {i}"));
        let node = &mut self.nodes[i];
        let (old, new) = (
            format!("{}=127.0.0.1:{}", node.id, node.port),
            format!("{}=127.0.0.1:{port}", node.id),
        );
        node.peers = node.peers.replace(&old, &new);
        node.port = port;
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&i);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// SIGSTOPs node `i` (a paused process: connections stay open, nothing answers).
    pub fn pause(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// SIGCONTs node `i`.
    pub fn resume(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    /// Makes node `i` drop all traffic with the given node ids (both ways
    /// when set on both sides).
    pub fn block(&self, i: usize, peers: &[&str]) {
        write_block_file(&self.nodes[i].block_file, peers);
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
