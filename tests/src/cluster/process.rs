//! The node processes: spawning them, signals (stop, kill, pause, resume,
//! SIGHUP), restarts and fault injection (the block file).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Cluster;
use crate::ports::free_port;

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
pub(super) fn write_block_file(path: &std::path::Path, peers: &[&str]) {
    let tmp = path.with_extension("blocked.tmp");
    std::fs::write(&tmp, peers.join("\n")).unwrap_or_else(|e| panic!("block file: {e}"));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("block file: {e}"));
}

impl Cluster {
    pub(super) fn spawn(&mut self, i: usize) {
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

    /// Sends SIGHUP to node `i` (it re-reads its cluster secret file).
    pub fn hangup(&self, i: usize) {
        self.signal(i, libc::SIGHUP);
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

    /// Deletes node `i`'s data directory (a lost or replaced disk); the
    /// node must be stopped. Its next start sees an empty directory.
    pub fn wipe_data(&self, i: usize) {
        assert!(!self.is_running(i), "wipe_data: node {i} is running");
        let dir = &self.nodes[i].data_dir;
        std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
    }

    /// Restarts node `i` on the same port and data directory, and waits
    /// until it serves and its membership has converged.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i).await;
        self.wait_converged(i).await;
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
}
