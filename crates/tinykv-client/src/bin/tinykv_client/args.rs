//! The command line: flags and subcommands.

use std::time::Duration;

use clap::{Parser, Subcommand};
use tinykv_client::Consistency;

#[derive(Parser, Debug)]
#[command(
    name = "tinykv_client",
    version,
    about = "TinyKV command-line client",
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// Node to talk to (host:port), or several, comma-separated: tried in
    /// order, the next one when a node cannot be reached. Any node
    /// coordinates any request. Not needed by `secret`, `certs`,
    /// `completions` (give `-`).
    #[arg(env = "TINYKV_ADDR", required = true)]
    pub addr: Option<String>,
    /// The cluster's secret file: admin commands (local-get, owners,
    /// repair, cleanup, decommission, removenode, backup, restore) prove it
    /// to nodes that have one.
    #[arg(long, global = true, env = "TINYKV_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<std::path::PathBuf>,
    /// TLS: the CA that signs the nodes' certificates (the nodes then are
    /// dialled over TLS).
    #[arg(long, global = true, env = "TINYKV_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// TLS: this client's certificate, for nodes that ask for one.
    #[arg(long, global = true, env = "TINYKV_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// TLS: the key of --tls-cert.
    #[arg(long, global = true, env = "TINYKV_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// A file whose first line is a client token (nodes with
    /// `--client-auth token`).
    #[arg(long, global = true, env = "TINYKV_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Consistency level: one, two, quorum, all (default: the cluster's default).
    #[arg(long, global = true, env = "TINYKV_CONSISTENCY")]
    pub consistency: Option<Consistency>,
    /// Write acknowledgements to wait for (overrides --consistency for writes).
    #[arg(short = 'w', global = true)]
    pub w: Option<u32>,
    /// Read answers to wait for (overrides --consistency for reads).
    #[arg(short = 'r', global = true)]
    pub r: Option<u32>,
    /// Output: `text` (the classic lines) or `json` (one object per command).
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Text, env = "TINYKV_OUTPUT")]
    pub output: Output,
    /// Request deadline, e.g. 500ms, 5s.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration, env = "TINYKV_TIMEOUT")]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a value: put <key> <val> [w]; `-` as the value reads it
    /// (any bytes) from stdin.
    Put {
        key: String,
        val: String,
        /// Legacy: replica acknowledgements to wait for.
        rf: Option<u32>,
        /// Time to live, e.g. 10s, 1h 30m: the value reads as not found
        /// once it has passed.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Read a value: get <key> [r]. Writes the value's bytes unchanged
    /// (a newline after it only on a terminal); exit 1 if not found.
    Get {
        key: String,
        /// Legacy: replica answers to wait for.
        quorum: Option<u32>,
    },
    /// Give a key's live value a time to live (e.g. 10s, 2h): a new
    /// version with the same value; exit 1 if the key has no live value.
    Expire {
        key: String,
        #[arg(value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Remove a key's time to live; exit 1 if the key has no live value.
    Persist { key: String },
    /// Print a key's remaining time to live (`none` when it never
    /// expires); exit 1 if the key has no live value.
    Ttl { key: String },
    /// Delete a key (writes a tombstone).
    Delete { key: String, w: Option<u32> },
    /// Show the members, their health and ring ownership.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the node's gRPC health service reports SERVING.
    Health,
    /// The legacy ping.
    Ping,
    /// Read this node's own replica of a key (no quorum).
    LocalGet { key: String },
    /// Print a key's replicas, primary first, one node id per line.
    Owners { key: String },
    /// Run an anti-entropy round now and report what moved.
    Repair,
    /// Remove the node's copies of ranges it no longer replicates (once
    /// every replica has them); waits until the round ends and prints the
    /// keys removed.
    Cleanup {
        /// Give up waiting after this long.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        wait_timeout: Duration,
    },
    /// Stream a node's ranges to their new owners and remove it from the ring.
    Decommission {
        node_id: String,
        /// Return at once instead of waiting until the node has left.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        wait_timeout: Duration,
    },
    /// Drop a dead node for good and re-replicate its ranges.
    Removenode { node_id: String },
    /// Back up the whole cluster into a directory: every token range read
    /// from a quorum of its replicas (one with --fast), tombstones and
    /// expiries included, in checksummed files and a manifest
    /// (docs/backup.md).
    Backup {
        /// The directory (created if missing; must not hold a backup).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Incremental: only versions with a timestamp above TS
        /// (microseconds since the epoch, e.g. a manifest's started_at_us).
        #[arg(long, value_name = "TS", default_value_t = 0)]
        since: u64,
        /// Read each range from one replica instead of a quorum.
        #[arg(long)]
        fast: bool,
        /// Give up after this long.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        wait_timeout: Duration,
    },
    /// Restore a backup by key through the normal write path (a cluster
    /// of any size), keeping the original timestamps so newer data wins;
    /// every file's checksum is checked first.
    Restore {
        /// The backup directory.
        #[arg(long = "in")]
        input: std::path::PathBuf,
        /// Write with new timestamps: the backup's versions win over
        /// anything the cluster holds.
        #[arg(long)]
        overwrite: bool,
        /// Give up after this long.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        wait_timeout: Duration,
    },
    /// Print a new random cluster secret (`tinykv_client secret >
    /// cluster.secret`); the address is ignored and may be `-`.
    Secret,
    /// Create a CA (or reuse the one in --out) and certificates for nodes
    /// and clients: `tinykv_client - certs --out certs --node
    /// node1=tinykv-node1,localhost,127.0.0.1 --client app`.
    Certs {
        /// Directory for ca.pem, ca.key, NAME.pem and NAME.key.
        #[arg(long, default_value = "certs")]
        out: std::path::PathBuf,
        /// A node: `ID[=HOST,HOST,...]` (its id first in the certificate,
        /// then the host names and addresses it is reached at).
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// A client certificate's name.
        #[arg(long = "client")]
        clients: Vec<String>,
    },
    /// Print a shell completion script: `tinykv_client - completions bash`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The classic lines.
    Text,
    /// One JSON object per command.
    Json,
}
