//! Node configuration: every flag is also a `TINYKV_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::error::NodeError;
use crate::storage::EngineTuning;

/// Default virtual nodes per member: enough that 5 members each own within
/// ±10% of an equal share of the ring (see the ring tests).
pub const DEFAULT_VNODES: u32 = 256;

/// Longest key accepted, in bytes: what the storage engine can store.
pub const MAX_KEY_BYTES: usize = crate::storage::MAX_KEY_BYTES;

/// When writes reach stable storage.
/// What the client plane (`tinykv.TinyKV`) demands of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// Nothing (legacy clients work unchanged).
    None,
    /// A bearer token from --client-token-file.
    Token,
    /// A client certificate signed by --tls-ca.
    Cert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncMode {
    /// fsync before acknowledging (group-committed across concurrent writes).
    Always,
    /// fsync at most every `--sync-period` (Cassandra's periodic commitlog sync).
    Periodic,
}

/// Which storage engine holds the node's data (`--storage-engine`). fjall
/// is the only one since redb was removed (issue #15); both values are
/// still accepted so existing scripts and manifests keep working.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StorageEngine {
    /// The default: fjall.
    Auto,
    /// fjall, a log-structured merge tree.
    Fjall,
}

/// Parses `--storage-engine`. `redb` gets a sentence saying the engine was
/// removed (and where to read what to do) instead of a bare "invalid value".
fn parse_storage_engine(s: &str) -> Result<StorageEngine, String> {
    if s.trim().eq_ignore_ascii_case("redb") {
        return Err(
            "the redb engine was removed; use auto or fjall (docs/storage.md says how to move a redb node)"
                .into(),
        );
    }
    StorageEngine::from_str(s, false).map_err(|_| "want auto or fjall".into())
}

/// The consistency a request gets when it names none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DefaultConsistency {
    /// One replica.
    One,
    /// A majority of the replicas.
    Quorum,
    /// Every replica.
    All,
}

/// Which replicas a read asks at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadFanout {
    /// All N replicas (Dynamo's way: every read sees every replica).
    All,
    /// Only the R replicas needed, more on failure or delay.
    Needed,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `tinykv-node` flags.
#[derive(Parser, Debug, Clone)]
#[command(name = "tinykv-node", version, about = "A TinyKV node")]
pub struct Config {
    /// Stable node identity (defaults to the host name).
    #[arg(long, env = "TINYKV_NODE_ID")]
    pub node_id: Option<String>,
    /// Address to listen on for gRPC.
    #[arg(long, env = "TINYKV_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: String,
    /// Address other nodes and clients should use for this node (defaults to --listen).
    #[arg(long, env = "TINYKV_ADVERTISE")]
    pub advertise: Option<String>,
    /// The cluster this node belongs to: calls from nodes of a cluster with
    /// another name are refused, so clusters that can reach each other never
    /// merge. Unnamed nodes are not checked (see `cluster_name.rs`).
    #[arg(long, env = "TINYKV_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// File of cluster secrets, one a line (the first signs, all are
    /// accepted, for rotation): every node-to-node and admin call must then
    /// prove one of them. Create one with `tinykv_client secret`.
    #[arg(long, env = "TINYKV_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Accept node-to-node and admin calls from anyone when no cluster
    /// secret is set. Without a secret and without this flag, such calls
    /// are accepted only from loopback, and listening on any other address
    /// is refused.
    #[arg(long, env = "TINYKV_INSECURE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure: bool,
    /// Accept node-to-node and admin calls that fail the cluster-secret or
    /// certificate check (counting and logging them) while this node signs
    /// its own: only for the rolling restart that turns a secret on in a
    /// cluster that ran without one. Never leave it on.
    #[arg(long, env = "TINYKV_AUTH_PERMISSIVE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub auth_permissive: bool,
    /// This node's TLS certificate (PEM chain): both planes then serve
    /// TLS, and calls to peers present it. Its first DNS name must be the
    /// node's id. Needs --tls-key and --tls-ca; re-read on SIGHUP.
    #[arg(long, env = "TINYKV_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TINYKV_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs every node's and client's certificate.
    #[arg(long, env = "TINYKV_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// What the client plane demands: `none`; `token` (an `authorization:
    /// Bearer` token from --client-token-file); `cert` (a client
    /// certificate signed by --tls-ca).
    #[arg(long, env = "TINYKV_CLIENT_AUTH", value_enum, default_value_t = ClientAuth::None)]
    pub client_auth: ClientAuth,
    /// Tokens accepted with `--client-auth token`, one a line; re-read on
    /// SIGHUP. Create one with `tinykv_client secret`.
    #[arg(long, env = "TINYKV_CLIENT_TOKEN_FILE")]
    pub client_token_file: Option<PathBuf>,
    /// Static members, `ID=HOST:PORT,...`; may include this node.
    #[arg(long, env = "TINYKV_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Discover members by resolving this DNS name (`NAME[:PORT]`) periodically,
    /// e.g. a Kubernetes headless Service or a compose service.
    #[arg(long, env = "TINYKV_PEERS_DNS")]
    pub peers_dns: Option<String>,
    /// Directory for the storage engine's files.
    #[arg(long, env = "TINYKV_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Join a running cluster: a node with a fresh data directory takes its
    /// ring positions as `joining`, streams its ranges from the current
    /// replicas, and only then serves reads. When the peers that answer are
    /// all new (a cluster forming), it bootstraps as `normal` with them;
    /// while no peer answers at all it waits for them (the log names them
    /// every 5 s), unless `--bootstrap` is given.
    #[arg(long, env = "TINYKV_JOIN", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub join: bool,
    /// With `--join`: when no peer has answered within
    /// `--membership-convergence-timeout`, start a new cluster of this one
    /// node instead of waiting for the peers. Without it a `--join` node
    /// that hears from nobody waits: it cannot tell whether the cluster
    /// exists, and bootstrapping would split it.
    #[arg(long, env = "TINYKV_BOOTSTRAP", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bootstrap: bool,
    /// Replicas per key (N).
    #[arg(long, env = "TINYKV_REPLICATION_FACTOR", default_value_t = 3)]
    pub replication_factor: u32,
    /// Virtual nodes per member on the ring.
    #[arg(long, env = "TINYKV_VNODES", default_value_t = DEFAULT_VNODES)]
    pub vnodes: u32,
    /// Storage engine: `auto` or `fjall`, both fjall, the only engine. A data
    /// directory written by the removed redb engine is refused at start.
    #[arg(
        long,
        env = "TINYKV_STORAGE_ENGINE",
        value_parser = parse_storage_engine,
        default_value = "auto"
    )]
    pub storage_engine: StorageEngine,
    /// Durability policy.
    #[arg(long, env = "TINYKV_SYNC", value_enum, default_value = "periodic")]
    pub sync: SyncMode,
    /// Group-commit window of `--sync periodic`.
    #[arg(long, env = "TINYKV_SYNC_PERIOD", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub sync_period: Duration,
    /// Consistency for requests that name none.
    #[arg(
        long,
        env = "TINYKV_DEFAULT_CONSISTENCY",
        value_enum,
        default_value = "quorum"
    )]
    pub default_consistency: DefaultConsistency,
    /// How far ahead of this node's clock a client's timestamp (the legacy
    /// `timestamp` field) may be; a peer's version or member row may be
    /// twice that. Further ahead is refused, so one bad clock or client
    /// cannot freeze a key in the future. A restarted node waits twice this
    /// before serving, so it never stamps below what it stamped before.
    #[arg(long, env = "TINYKV_MAX_CLOCK_OFFSET", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub max_clock_offset: Duration,
    /// Deadline for a request that carries none.
    #[arg(long, env = "TINYKV_REQUEST_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Which replicas a read asks at once: `all` N (every read checks, and
    /// read-repairs, every replica), or the R `needed` (cheaper: one peer
    /// RPC fewer per QUORUM read; the others are asked on failure or after
    /// `--read-speculative-retry`).
    #[arg(long, env = "TINYKV_READ_FANOUT", value_enum, default_value = "all")]
    pub read_fanout: ReadFanout,
    /// With `--read-fanout needed`: if no quorum has formed after this long,
    /// also ask the next replica (speculative retry).
    #[arg(long, env = "TINYKV_READ_SPECULATIVE_RETRY", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub read_speculative_retry: Duration,
    /// Storage cache in MiB: fjall's block cache (default 16). The OS page
    /// cache holds the tables too; raise it for read-heavy nodes with
    /// memory to spare.
    #[arg(long, env = "TINYKV_CACHE_MIB")]
    pub cache_mib: Option<u64>,
    /// Keys whose stored version's LWW stamp (timestamp, writer) fjall keeps
    /// in memory, so a write to a recently written key skips the read
    /// before it; about 70 bytes per key (the default is ~16 MiB). 0 turns
    /// the index off (every write reads its key first).
    #[arg(long, env = "TINYKV_STAMP_KEYS", default_value_t = crate::storage::fjall_engine::STAMP_KEYS)]
    pub stamp_keys: usize,
    /// Largest value accepted, in bytes.
    #[arg(long, env = "TINYKV_MAX_VALUE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_value_bytes: usize,
    /// Let hinted writes to fallback nodes count toward W (sloppy quorum).
    #[arg(long, env = "TINYKV_SLOPPY_QUORUM", default_value_t = true, action = clap::ArgAction::Set)]
    pub sloppy_quorum: bool,
    /// Store hints for unreachable replicas and replay them (hinted handoff).
    #[arg(long, env = "TINYKV_HINTED_HANDOFF", default_value_t = true, action = clap::ArgAction::Set)]
    pub hinted_handoff: bool,
    /// Most hints kept per node before new ones are dropped.
    #[arg(long, env = "TINYKV_MAX_HINTS", default_value_t = 1_000_000)]
    pub max_hints: u64,
    /// Hints older than this are dropped (anti-entropy repairs the rest).
    #[arg(long, env = "TINYKV_MAX_HINT_AGE", default_value = "3h", value_parser = humantime::parse_duration)]
    pub max_hint_age: Duration,
    /// Heartbeat interval.
    #[arg(long, env = "TINYKV_HEARTBEAT_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Longest a started node waits for the members it knows to answer a
    /// heartbeat before it takes its member table as the cluster's
    /// (default: 10 heartbeat intervals). Until then it purges no
    /// tombstone and refuses writes at ONE for keys it does not own.
    #[arg(long, env = "TINYKV_MEMBERSHIP_CONVERGENCE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub membership_convergence_timeout: Option<Duration>,
    /// Phi-accrual threshold above which a peer is considered down.
    #[arg(long, env = "TINYKV_PHI_THRESHOLD", default_value_t = 8.0)]
    pub phi_threshold: f64,
    /// Interval between anti-entropy rounds (0 disables the background loop).
    #[arg(long, env = "TINYKV_ANTI_ENTROPY_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub anti_entropy_interval: Duration,
    /// Pages (of up to 1024 versions) per second a cleanup round may
    /// verify on their replicas and remove, so cleanup after a ring change
    /// does not take foreground requests' disk and network (0: no limit).
    #[arg(long, env = "TINYKV_CLEANUP_PAGES_PER_SECOND", default_value_t = 20)]
    pub cleanup_pages_per_second: u32,
    /// Run cleanup by itself once the ring has settled after this node lost
    /// ranges. Off, it runs only on `tinykv_client <addr> cleanup` (say, at
    /// a quiet hour); decommissions and removals are refused until then.
    #[arg(long, env = "TINYKV_AUTO_CLEANUP", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_cleanup: bool,
    /// Tombstones younger than this are never purged.
    #[arg(long, env = "TINYKV_TOMBSTONE_GRACE", default_value = "1day", value_parser = humantime::parse_duration)]
    pub tombstone_grace: Duration,
    /// Prometheus `/metrics`: always served on the gRPC port (HTTP GET, as
    /// etcd does); an address here serves it there too (`0.0.0.0:9090`);
    /// `off` serves it nowhere.
    #[arg(long, env = "TINYKV_METRICS_LISTEN", default_value = "")]
    pub metrics_listen: String,
    /// Also serve the Redis protocol (RESP2, RESP3 after `HELLO 3`) on this
    /// address (`127.0.0.1:6380`): redis-cli, redis-benchmark and Redis
    /// client libraries read and write keys through the same coordinator
    /// as gRPC. Off when empty.
    #[arg(long, env = "TINYKV_REDIS_LISTEN", default_value = "")]
    pub redis_listen: String,
    /// Most RESP connections served at once; more are answered
    /// `-ERR max number of clients reached` and closed.
    #[arg(long, env = "TINYKV_REDIS_MAX_CONNECTIONS", default_value_t = 4096)]
    pub redis_max_connections: usize,
    /// A RESP connection that sends nothing for this long is closed.
    #[arg(long, env = "TINYKV_REDIS_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub redis_idle_timeout: Duration,
    /// Async runtime worker threads (default: one per CPU). Several nodes on
    /// one small machine (a local cluster) run best with 1 each.
    #[arg(long, env = "TINYKV_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Log format.
    #[arg(long, env = "TINYKV_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// A statically configured member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// Node id.
    pub id: String,
    /// `host:port`.
    pub addr: String,
}

/// Headroom over the largest value for a key and framing in a gRPC message.
const MESSAGE_OVERHEAD: usize = 1 << 20;

impl Config {
    /// The largest gRPC message a client may send this node or get from
    /// it: one value of the limit with its key and framing. Batches that
    /// would pass it are cut (by the client library, and in this node's
    /// batch answers), so values valid alone stay valid together.
    pub fn message_limit(&self) -> usize {
        self.max_value_bytes.saturating_add(MESSAGE_OVERHEAD)
    }

    /// The largest node-to-node message: twice [`Config::message_limit`],
    /// because a client batch just under that limit becomes a peer message
    /// with more per entry (a timestamp and the writer's id per version).
    /// Peers cut their own batches at half of it.
    pub fn peer_message_limit(&self) -> usize {
        self.message_limit().saturating_mul(2)
    }

    /// `--membership-convergence-timeout`, or 10 heartbeat intervals.
    pub fn convergence_bound(&self) -> Duration {
        self.membership_convergence_timeout
            .unwrap_or_else(|| self.heartbeat_interval.saturating_mul(10))
    }

    /// Parses `--peers`: `ID=HOST:PORT` entries.
    pub fn peer_specs(&self) -> Result<Vec<PeerSpec>, NodeError> {
        self.peers
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((id, addr))
                    if crate::membership::valid_id(id)
                        && addr.rsplit_once(':').is_some_and(|(h, port)| {
                            !h.is_empty() && port.parse::<u16>().is_ok()
                        }) =>
                {
                    Ok(PeerSpec {
                        id: id.to_string(),
                        addr: addr.to_string(),
                    })
                }
                _ => Err(NodeError::Config(format!(
                    "invalid --peers entry {p:?}: expected ID=HOST:PORT, the id 1 to 253 letters, digits and -_.:"
                ))),
            })
            .collect()
    }

    /// This node's id: `--node-id`, else the host name.
    pub fn resolved_node_id(&self) -> Result<String, NodeError> {
        if let Some(id) = self.node_id.as_deref().filter(|s| !s.is_empty()) {
            return Ok(id.to_string());
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|h| !h.is_empty());
        host.ok_or_else(|| NodeError::Config("no --node-id given and no host name found".into()))
    }

    /// Checks values that clap cannot.
    pub fn validate(&self) -> Result<(), NodeError> {
        if self.replication_factor == 0 {
            return Err(NodeError::Config(
                "--replication-factor must be at least 1".into(),
            ));
        }
        if self.vnodes == 0 {
            return Err(NodeError::Config("--vnodes must be at least 1".into()));
        }
        if self.max_clock_offset < std::time::Duration::from_millis(1) {
            return Err(NodeError::Config(
                "--max-clock-offset must be at least 1ms (nodes' clocks always differ a little)"
                    .into(),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(NodeError::Config(
                "--request-timeout must be positive".into(),
            ));
        }
        if self.cache_mib == Some(0) {
            return Err(NodeError::Config("--cache-mib must be at least 1".into()));
        }
        if let Some(name) = &self.cluster_name {
            crate::cluster_name::validate(name).map_err(NodeError::Config)?;
        }
        self.validate_security()?;
        self.validate_grace()?;
        self.peer_specs()?;
        let id = self.resolved_node_id()?;
        if !crate::membership::valid_id(&id) {
            return Err(NodeError::Config(format!(
                "node id {id:?}: use 1 to 253 letters, digits and -_.: (--node-id, or the host name)"
            )));
        }
        Ok(())
    }

    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<tinykv_auth::tls::TlsFiles> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(tinykv_auth::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            _ => None,
        }
    }

    /// A hint may be replayed up to --max-hint-age after its write; a
    /// tombstone purged sooner than that could be overwritten by the older
    /// value a hint still carries, and the delete would be undone.
    fn validate_grace(&self) -> Result<(), NodeError> {
        let hints_kept = self.hinted_handoff && self.max_hints > 0;
        if hints_kept && self.tombstone_grace < self.max_hint_age {
            return Err(NodeError::Config(format!(
                "--tombstone-grace ({}) must be at least --max-hint-age ({}): a hint replayed after a delete's tombstone was purged would bring the deleted value back (raise the grace, lower the hint age, or turn hints off with --max-hints 0)",
                humantime::format_duration(self.tombstone_grace),
                humantime::format_duration(self.max_hint_age)
            )));
        }
        Ok(())
    }

    fn validate_security(&self) -> Result<(), NodeError> {
        let given = [&self.tls_cert, &self.tls_key, &self.tls_ca]
            .iter()
            .filter(|f| f.is_some())
            .count();
        if given != 0 && given != 3 {
            return Err(NodeError::Config(
                "TLS needs all of --tls-cert, --tls-key and --tls-ca (create them with `tinykv_client certs`)".into(),
            ));
        }
        match self.client_auth {
            ClientAuth::Token if self.client_token_file.is_none() => Err(NodeError::Config(
                "--client-auth token needs --client-token-file (create a token with `tinykv_client secret`)".into(),
            )),
            ClientAuth::Cert if given == 0 => Err(NodeError::Config(
                "--client-auth cert needs TLS (--tls-cert, --tls-key, --tls-ca)".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The storage engines' memory settings from the flags.
    pub fn engine_tuning(&self) -> EngineTuning {
        EngineTuning {
            cache_bytes: self.cache_mib.map(|m| m.saturating_mul(1 << 20)),
            stamp_keys: self.stamp_keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["tinykv-node"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_grace_shorter_than_the_hint_age_is_refused_while_hints_are_kept() {
        let base = ["--node-id", "n1", "--data-dir", "/tmp/x"];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args).validate()
        };
        let err = with(&["--tombstone-grace", "1h", "--max-hint-age", "3h"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("--tombstone-grace (1h) must be at least --max-hint-age (3h)"),
            "{err}"
        );
        assert!(with(&["--tombstone-grace", "3h", "--max-hint-age", "3h"]).is_ok());
        assert!(with(&["--tombstone-grace", "1ms", "--max-hints", "0"]).is_ok());
        assert!(with(&["--tombstone-grace", "1ms", "--hinted-handoff", "false"]).is_ok());
        assert!(with(&[]).is_ok(), "the defaults (1 day, 3 h) agree");
    }

    #[test]
    fn documented_command_line_parses() {
        let c = parse(&[
            "--node-id",
            "n1",
            "--listen",
            "127.0.0.1:50051",
            "--peers",
            "n1=127.0.0.1:50051,n2=127.0.0.1:50052",
            "--data-dir",
            "/tmp/x",
            "--replication-factor",
            "3",
            "--vnodes",
            "64",
            "--sync",
            "always",
        ]);
        assert_eq!(c.sync, SyncMode::Always);
        assert_eq!(c.peer_specs().ok().map(|p| p.len()), Some(2));
        assert_eq!(c.resolved_node_id().ok().as_deref(), Some("n1"));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_convergence_bound_is_ten_heartbeats_unless_given() {
        let c = parse(&["--heartbeat-interval", "200ms"]);
        assert_eq!(c.convergence_bound(), Duration::from_secs(2));
        let c = parse(&["--membership-convergence-timeout", "30s"]);
        assert_eq!(c.convergence_bound(), Duration::from_secs(30));
    }

    #[test]
    fn bad_peers_are_rejected_clearly() {
        for bad in ["n1", "=1.2.3.4:5", "n1=host", "n1=host:notaport"] {
            let c = parse(&["--peers", bad]);
            let err = c
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("invalid --peers entry"), "{bad}: {err}");
        }
        assert!(parse(&["--replication-factor", "0"]).validate().is_err());
    }

    #[test]
    fn cluster_names_are_checked() {
        assert!(parse(&["--cluster-name", "prod/orders"]).validate().is_ok());
        let err = parse(&["--cluster-name", "two words"])
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--cluster-name"), "{err}");
    }

    #[test]
    fn storage_memory_flags_reach_the_engine_tuning() {
        let defaults = parse(&[]).engine_tuning();
        assert_eq!(defaults, EngineTuning::default());
        let c = parse(&["--cache-mib", "64", "--stamp-keys", "0"]);
        assert!(c.validate().is_ok());
        assert_eq!(
            c.engine_tuning(),
            EngineTuning {
                cache_bytes: Some(64 << 20),
                stamp_keys: 0,
            }
        );
        let err = parse(&["--cache-mib", "0"])
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--cache-mib must be at least 1"), "{err}");
    }

    #[test]
    fn storage_engine_takes_auto_or_fjall_and_says_redb_was_removed() {
        assert_eq!(parse(&[]).storage_engine, StorageEngine::Auto);
        let fjall = parse(&["--storage-engine", "fjall"]);
        assert_eq!(fjall.storage_engine, StorageEngine::Fjall);
        let err = Config::try_parse_from(["tinykv-node", "--storage-engine", "redb"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        // One line says it all (clap adds only its "--help" hint after it).
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains("the redb engine was removed"), "{err}");
    }
}
