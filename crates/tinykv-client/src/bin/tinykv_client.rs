//! `tinykv_client`: the TinyKV command-line tool.
//!
//! Keeps the original tool's form (`tinykv_client <host:port> put <key> <val> [rf]`,
//! `get <key> [quorum]`) and adds named consistency levels and admin commands.
//! Exit codes: 0 success, 1 key not found, 2 bad usage or invalid argument,
//! 3 unavailable or deadline exceeded, 4 any other failure.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tinykv_client::auth::tls::ClientTls;
use tinykv_client::auth::{generate_secret, write_bundle, Bundle, Secrets, Signer};
use tinykv_client::{Client, ClientError, ClientOptions, Consistency, RoutingPolicy};

#[derive(Parser, Debug)]
#[command(
    name = "tinykv_client",
    version,
    about = "TinyKV command-line client",
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Node to talk to (host:port). Any node coordinates any request.
    /// Not needed by `secret`.
    #[arg(env = "TINYKV_ADDR", required = true)]
    addr: Option<String>,
    /// The cluster's secret file: admin commands (local-get, owners,
    /// repair, cleanup, decommission, removenode) prove it to nodes that have one.
    #[arg(long, global = true, env = "TINYKV_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<std::path::PathBuf>,
    /// TLS: the CA that signs the nodes' certificates (the nodes then are
    /// dialled over TLS).
    #[arg(long, global = true, env = "TINYKV_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// TLS: this client's certificate, for nodes that ask for one.
    #[arg(long, global = true, env = "TINYKV_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS: the key of --tls-cert.
    #[arg(long, global = true, env = "TINYKV_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// A file whose first line is a client token (nodes with
    /// `--client-auth token`).
    #[arg(long, global = true, env = "TINYKV_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Consistency level: one, two, quorum, all (default: the cluster's default).
    #[arg(long, global = true, env = "TINYKV_CONSISTENCY")]
    consistency: Option<Consistency>,
    /// Write acknowledgements to wait for (overrides --consistency for writes).
    #[arg(short = 'w', global = true)]
    w: Option<u32>,
    /// Read answers to wait for (overrides --consistency for reads).
    #[arg(short = 'r', global = true)]
    r: Option<u32>,
    /// Request deadline, e.g. 500ms, 5s.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration, env = "TINYKV_TIMEOUT")]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a value: put <key> <val> [w].
    Put {
        key: String,
        val: String,
        /// Legacy: replica acknowledgements to wait for.
        rf: Option<u32>,
    },
    /// Read a value: get <key> [r]. Prints the value; exit 1 if not found.
    Get {
        key: String,
        /// Legacy: replica answers to wait for.
        quorum: Option<u32>,
    },
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
}

/// A failure with its exit code.
struct Failure(u8, String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::InvalidAddress { .. }
            | ClientError::InvalidArgument(_)
            | ClientError::NoEndpoints => 2,
            ClientError::Unavailable(_) | ClientError::DeadlineExceeded(_) => 3,
            ClientError::Rpc { .. } => 4,
        };
        Failure(code, e.to_string())
    }
}

fn level(explicit: Option<u32>, flag: Option<u32>, named: Option<Consistency>) -> Consistency {
    explicit
        .or(flag)
        .map(Consistency::Count)
        .or(named)
        .unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let plaintext = cli.tls_ca.is_none();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            // A plaintext client dialling a TLS port sees only a transport
            // error: say what is the likely cause.
            let hint = if plaintext && msg.contains("transport error") {
                " (if the node serves TLS, give its CA: --tls-ca or TINYKV_TLS_CA)"
            } else {
                ""
            };
            eprintln!("{msg}{hint}");
            ExitCode::from(code)
        }
    }
}

/// The signer of admin calls, from `--cluster-secret-file`.
fn admin_signer(path: Option<&std::path::Path>) -> Result<Option<Signer>, Failure> {
    path.map(|p| {
        Secrets::load(p)
            .map(|s| Signer::new("admin", s))
            .map_err(|e| Failure(2, e.to_string()))
    })
    .transpose()
}

/// The TLS settings from `--tls-ca`, `--tls-cert` and `--tls-key`.
fn client_tls(cli: &Cli) -> Result<Option<ClientTls>, Failure> {
    let Some(ca) = &cli.tls_ca else {
        if cli.tls_cert.is_some() {
            return Err(Failure(
                2,
                "--tls-cert needs --tls-ca (the CA of the nodes' certificates)".into(),
            ));
        }
        return Ok(None);
    };
    let identity = cli.tls_cert.as_deref().zip(cli.tls_key.as_deref());
    ClientTls::load(ca, identity)
        .map(Some)
        .map_err(|e| Failure(2, e.to_string()))
}

/// The first token of `--token-file`.
fn token(path: Option<&std::path::Path>) -> Result<Option<String>, Failure> {
    path.map(|p| {
        Secrets::load(p)
            .map(|s| String::from_utf8_lossy(s.signing()).into_owned())
            .map_err(|e| Failure(2, e.to_string().replace("cluster secret", "token")))
    })
    .transpose()
}

/// `certs`: writes a CA and the certificates asked for.
fn certs(out: &std::path::Path, nodes: &[String], clients: &[String]) -> Result<(), Failure> {
    if nodes.is_empty() && clients.is_empty() {
        return Err(Failure(
            2,
            "certs: name at least one --node ID[=HOST,...] or --client NAME".into(),
        ));
    }
    let nodes = nodes
        .iter()
        .map(|spec| {
            let (id, hosts) = spec.split_once('=').unwrap_or((spec, ""));
            std::iter::once(id)
                .chain(hosts.split(',').filter(|h| !h.is_empty()))
                .map(str::to_string)
                .collect()
        })
        .collect();
    let bundle = Bundle {
        nodes,
        clients: clients.to_vec(),
    };
    let written = write_bundle(out, &bundle).map_err(|e| Failure(4, e.to_string()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Secret => {
            println!("{}", generate_secret());
            return Ok(());
        }
        Command::Certs {
            out,
            nodes,
            clients,
        } => return certs(out, nodes, clients),
        _ => {}
    }
    // One operation per process: plain RPCs, as the original client sent.
    let opts = ClientOptions {
        timeout: cli.timeout,
        coalesce: false,
        routing: RoutingPolicy::RoundRobin,
        admin_signer: admin_signer(cli.cluster_secret_file.as_deref())?,
        tls: client_tls(&cli)?,
        token: token(cli.token_file.as_deref())?,
        ..ClientOptions::default()
    };
    let addr = cli
        .addr
        .ok_or_else(|| Failure(2, "the node address <ADDR> is missing".into()))?;
    let client = Client::connect_many([addr.as_str()], opts)?;
    match cli.command {
        Command::Put { key, val, rf } => {
            let out = client
                .put(key, val, level(rf, cli.w, cli.consistency))
                .await?;
            println!("OK (timestamp {}, {} acks)", out.timestamp, out.acks);
        }
        Command::Get { key, quorum } => match client
            .get(key, level(quorum, cli.r, cli.consistency))
            .await?
        {
            Some(v) => println!("{}", String::from_utf8_lossy(&v.val)),
            None => return Err(Failure(1, "not found".into())),
        },
        Command::Delete { key, w } => {
            let out = client.delete(key, level(w, cli.w, cli.consistency)).await?;
            println!("deleted (timestamp {}, {} acks)", out.timestamp, out.acks);
        }
        Command::Status { json } => print_status(&client.status().await?, json),
        Command::Health => {
            if !client.health().await? {
                return Err(Failure(3, "not serving".into()));
            }
            println!("SERVING");
        }
        Command::Ping => println!("ready: {}", client.ping().await?),
        Command::LocalGet { key } => {
            let r = client.local_get(key).await?;
            if !r.present {
                return Err(Failure(1, "not found".into()));
            }
            if r.tombstone {
                println!("(tombstone) timestamp {} writer {}", r.timestamp, r.writer);
                return Err(Failure(1, "not found (deleted)".into()));
            }
            println!("{}", String::from_utf8_lossy(&r.val));
        }
        Command::Owners { key } => {
            let r = client.key_owners(key).await?;
            for id in r.node_ids {
                println!("{id}");
            }
        }
        Command::Repair => {
            let r = client.repair().await?;
            println!(
                "repair: {} peers, {} ranges compared, {} differing, {} keys sent, {} keys received, {} bytes, {} tombstones purged",
                r.peers_compared, r.ranges_compared, r.ranges_differing, r.keys_sent, r.keys_received, r.bytes_moved, r.tombstones_purged
            );
        }
        Command::Cleanup { wait_timeout } => cleanup(&client, wait_timeout).await?,
        Command::Decommission {
            node_id,
            no_wait,
            wait_timeout,
        } => decommission(&client, &node_id, no_wait, wait_timeout).await?,
        Command::Removenode { node_id } => {
            let r = client.remove_node(&node_id).await?;
            println!("{} ({} keys re-replicated)", r.message, r.keys_rereplicated);
        }
        // Printed above, before connecting to anything.
        Command::Secret | Command::Certs { .. } => {}
    }
    Ok(())
}

/// `cleanup`: asks for a round, follows it until it ends, and fails
/// (exit 3) when it could not remove every leftover, with the reason.
async fn cleanup(client: &Client, wait: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + wait;
    let mut r = client.cleanup().await?;
    let round = r.round;
    while r.rounds_finished < round {
        if r.running {
            eprintln!("cleanup: {:.0}% of the running round", r.progress * 100.0);
        }
        if Instant::now() >= deadline {
            return Err(Failure(
                3,
                format!("the cleanup round has not finished after {wait:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        r = client.cleanup_status().await?;
    }
    if !r.complete {
        return Err(Failure(3, format!("cleanup {}", r.message)));
    }
    println!(
        "cleanup: {} keys removed ({})",
        r.keys_removed,
        if r.pending {
            "still pending: ranges moved again"
        } else {
            "nothing left to clean"
        }
    );
    Ok(())
}

async fn decommission(
    client: &Client,
    node_id: &str,
    no_wait: bool,
    wait: Duration,
) -> Result<(), Failure> {
    let deadline = Instant::now() + wait;
    let mut r = client.decommission(node_id).await?;
    if no_wait {
        println!("{node_id}: {} ({})", r.state, r.message);
        return Ok(());
    }
    while r.state != "left" {
        eprintln!(
            "{node_id}: {} {:.0}% ({} keys streamed)",
            r.state,
            r.progress * 100.0,
            r.keys_streamed
        );
        if Instant::now() >= deadline {
            return Err(Failure(
                3,
                format!("{node_id} has not left after {wait:?} (state {})", r.state),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        r = client.decommission(node_id).await?;
    }
    println!("{node_id}: left ({} keys streamed)", r.keys_streamed);
    Ok(())
}

fn print_status(s: &tinykv_client::proto::StatusResponse, json: bool) {
    if json {
        let members: Vec<_> = s
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "node_id": m.node_id, "address": m.address, "health": m.health, "state": m.state,
                    "primary_ownership": m.primary_ownership, "replica_ownership": m.replica_ownership,
                    "last_seen_ms_ago": m.last_seen_ms_ago, "phi": m.phi,
                    "clock_offset_ms": m.clock_offset_ms, "clock_skewed": m.clock_skewed,
                })
            })
            .collect();
        let v = serde_json::json!({
            "node_id": s.node_id, "replication_factor": s.replication_factor, "vnodes": s.vnodes,
            "sync": s.sync, "version": s.version, "local_keys": s.local_keys,
            "pending_hints": s.pending_hints, "members": members, "state": s.state,
            "operation": s.operation, "operation_progress": s.operation_progress,
            "cluster_name": s.cluster_name, "cleanup_pending": s.cleanup_pending,
        });
        println!("{v}");
        return;
    }
    let cluster = if s.cluster_name.is_empty() {
        String::new()
    } else {
        format!(" of cluster {}", s.cluster_name)
    };
    println!(
        "node {}{cluster} (version {}), replication factor {}, {} vnodes, sync {}, {} local keys, {} pending hints",
        s.node_id, s.version, s.replication_factor, s.vnodes, s.sync, s.local_keys, s.pending_hints
    );
    if !s.operation.is_empty() {
        println!("{}: {:.0}% done", s.operation, s.operation_progress * 100.0);
    }
    if s.cleanup_pending {
        println!(
            "cleanup pending: this node may hold copies of ranges it lost (`cleanup` removes them)"
        );
    }
    println!(
        "{:<20} {:<24} {:<8} {:<8} {:>8} {:>8} {:>10} {:>12}",
        "NODE", "ADDRESS", "HEALTH", "STATE", "PRIMARY", "REPLICA", "LAST SEEN", "CLOCK"
    );
    for m in &s.members {
        let skew = if m.clock_skewed { " SKEWED" } else { "" };
        println!(
            "{:<20} {:<24} {:<8} {:<8} {:>7.1}% {:>7.1}% {:>8}ms {:>+10}ms{skew}",
            m.node_id,
            m.address,
            m.health,
            m.state,
            m.primary_ownership * 100.0,
            m.replica_ownership * 100.0,
            m.last_seen_ms_ago,
            m.clock_offset_ms
        );
    }
}
