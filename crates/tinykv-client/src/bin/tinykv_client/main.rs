//! `tinykv_client`: the TinyKV command-line tool.
//!
//! Keeps the original tool's form (`tinykv_client <host:port> put <key> <val> [rf]`,
//! `get <key> [quorum]`) and adds named consistency levels and admin commands.
//! Exit codes: 0 success, 1 key not found, 2 bad usage or invalid argument,
//! 3 unavailable or deadline exceeded, 4 any other failure.

mod args;
mod backup;
mod print;
mod setup;
mod ttl;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use serde_json::json;
use tinykv_client::auth::generate_secret;
use tinykv_client::{Client, ClientError, Consistency, Expiry};

use args::{Cli, Command, Output};

/// A failure with its exit code.
pub struct Failure(pub u8, pub String);

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let plaintext = cli.tls_ca.is_none();
    let limit = deadline(&cli);
    let outcome = tokio::time::timeout(limit, run(cli))
        .await
        .unwrap_or_else(|_| {
            Err(Failure(
                3,
                format!("deadline exceeded: no answer within {limit:?} (is the node reachable?)"),
            ))
        });
    // Exit here rather than return: returning drops the runtime, which
    // waits for blocking tasks, and a name lookup that hangs is one.
    let code = match outcome {
        Ok(()) => 0,
        Err(Failure(code, msg)) => {
            // A plaintext client dialling a TLS port sees only a transport
            // error: say what is the likely cause.
            let hint = if plaintext && msg.contains("transport error") {
                " (if the node serves TLS, give its CA: --tls-ca or TINYKV_TLS_CA)"
            } else {
                ""
            };
            eprintln!("{msg}{hint}");
            code
        }
    };
    std::process::exit(i32::from(code))
}

/// How long the whole command may take: the request deadline once per
/// address tried (a name that does not resolve, or a connection that
/// hangs, is not covered by the per-call deadline), plus the wait of the
/// commands that follow a long operation.
fn deadline(cli: &Cli) -> std::time::Duration {
    let addrs = cli
        .addr
        .as_deref()
        .map_or(1, |a| a.split(',').count().max(1));
    let per_call = cli
        .timeout
        .saturating_mul(u32::try_from(addrs).unwrap_or(u32::MAX));
    let wait = match &cli.command {
        Command::Decommission { wait_timeout, .. }
        | Command::Cleanup { wait_timeout }
        | Command::Backup { wait_timeout, .. }
        | Command::Restore { wait_timeout, .. } => *wait_timeout,
        _ => std::time::Duration::ZERO,
    };
    per_call
        .saturating_add(wait)
        .saturating_add(std::time::Duration::from_secs(1))
}

/// Exit 2 with clap's message on one line of stderr (`--help` and
/// `--version` print as usual and exit 0).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("{} (see --help)", message.join(" "));
    ExitCode::from(2)
}

/// Commands that talk to no node.
fn offline(command: &Command) -> Result<bool, Failure> {
    match command {
        Command::Secret => println!("{}", generate_secret()),
        Command::Certs {
            out,
            nodes,
            clients,
        } => setup::certs(out, nodes, clients)?,
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "tinykv_client",
                &mut std::io::stdout(),
            );
        }
        _ => return Ok(false),
    }
    Ok(true)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if offline(&cli.command)? {
        return Ok(());
    }
    let opts = setup::options(&cli)?;
    let addr = setup::addr(&cli)?;
    let client = setup::connect(&addr, opts.clone()).await?;
    let json = cli.output == Output::Json;
    let levels = (cli.w, cli.r, cli.consistency);
    match cli.command {
        command @ (Command::Backup { .. } | Command::Restore { .. }) => {
            let writes = level(None, levels.0, levels.2);
            backup::run(&client, opts, command, writes, json).await?
        }
        Command::Put { key, val, rf, ttl } => {
            let expiry = ttl.map_or(Expiry::Never, Expiry::After);
            let out = client
                .put_expiring(
                    key,
                    setup::value(val)?,
                    expiry,
                    level(rf, levels.0, levels.2),
                )
                .await?;
            if json {
                print::json(json!({ "ok": true, "timestamp": out.timestamp, "acks": out.acks }));
            } else {
                println!("OK (timestamp {}, {} acks)", out.timestamp, out.acks);
            }
        }
        Command::Get { key, quorum } => {
            let Some(v) = client
                .get(key.clone(), level(quorum, levels.1, levels.2))
                .await?
            else {
                if json {
                    print::json(json!({ "key": key, "found": false }));
                }
                return Err(Failure(1, "not found".into()));
            };
            if json {
                let mut out = print::value_json(&v.val);
                out["key"] = json!(key);
                out["found"] = json!(true);
                out["timestamp"] = json!(v.timestamp);
                out["writer"] = json!(v.writer);
                if let (Some(at), Some(left)) = (v.expires_at_us, v.ttl_remaining) {
                    out["expires_at_us"] = json!(at);
                    out["ttl_remaining_ms"] = json!(left.as_millis() as u64);
                }
                print::json(out);
            } else {
                print::raw(&v.val)?;
            }
        }
        Command::Delete { key, w } => {
            let out = client.delete(key, level(w, levels.0, levels.2)).await?;
            if json {
                print::json(
                    json!({ "deleted": true, "timestamp": out.timestamp, "acks": out.acks }),
                );
            } else {
                println!("deleted (timestamp {}, {} acks)", out.timestamp, out.acks);
            }
        }
        Command::Expire { key, ttl } => {
            let level = level(None, levels.0.or(levels.1), levels.2);
            ttl::expire(&client, key, Expiry::After(ttl), level, json).await?
        }
        Command::Persist { key } => {
            let level = level(None, levels.0.or(levels.1), levels.2);
            ttl::expire(&client, key, Expiry::Never, level, json).await?
        }
        Command::Ttl { key } => {
            ttl::show(&client, key, level(None, levels.1, levels.2), json).await?
        }
        other => admin(&client, other, json).await?,
    }
    Ok(())
}

/// The status, health and admin commands.
async fn admin(client: &Client, command: Command, json: bool) -> Result<(), Failure> {
    match command {
        Command::Status { json: as_json } => {
            print::print_status(&client.status().await?, json || as_json)
        }
        Command::Health => {
            let serving = client.health().await?;
            if json {
                print::json(json!({ "serving": serving }));
            }
            if !serving {
                return Err(Failure(3, "not serving".into()));
            }
            if !json {
                println!("SERVING");
            }
        }
        Command::Ping => {
            let ready = client.ping().await?;
            if json {
                print::json(json!({ "ready": ready }));
            } else {
                println!("ready: {ready}");
            }
        }
        Command::LocalGet { key } => local_get(client, key, json).await?,
        Command::Owners { key } => {
            let r = client.key_owners(key).await?;
            if json {
                print::json(json!({ "owners": r.node_ids }));
            } else {
                for id in r.node_ids {
                    println!("{id}");
                }
            }
        }
        Command::Repair => {
            let r = client.repair().await?;
            if json {
                print::json(json!({
                    "peers_compared": r.peers_compared, "ranges_compared": r.ranges_compared,
                    "ranges_differing": r.ranges_differing, "keys_sent": r.keys_sent,
                    "keys_received": r.keys_received, "bytes_moved": r.bytes_moved,
                    "tombstones_purged": r.tombstones_purged,
                }));
            } else {
                println!(
                    "repair: {} peers, {} ranges compared, {} differing, {} keys sent, {} keys received, {} bytes, {} tombstones purged",
                    r.peers_compared, r.ranges_compared, r.ranges_differing, r.keys_sent, r.keys_received, r.bytes_moved, r.tombstones_purged
                );
            }
        }
        Command::Cleanup { wait_timeout } => print::cleanup(client, wait_timeout, json).await?,
        Command::Decommission {
            node_id,
            no_wait,
            wait_timeout,
        } => print::decommission(client, &node_id, no_wait, wait_timeout, json).await?,
        Command::Removenode { node_id } => {
            let r = client.remove_node(&node_id).await?;
            if json {
                print::json(
                    json!({ "message": r.message, "keys_rereplicated": r.keys_rereplicated }),
                );
            } else {
                println!("{} ({} keys re-replicated)", r.message, r.keys_rereplicated);
            }
        }
        // Handled before connecting to anything.
        Command::Secret | Command::Certs { .. } | Command::Completions { .. } => {}
        Command::Put { .. } | Command::Get { .. } | Command::Delete { .. } => {}
        Command::Expire { .. } | Command::Persist { .. } | Command::Ttl { .. } => {}
        Command::Backup { .. } | Command::Restore { .. } => {}
    }
    Ok(())
}

/// `local-get`: this node's own replica of a key.
async fn local_get(client: &Client, key: String, json: bool) -> Result<(), Failure> {
    let r = client.local_get(key.clone()).await?;
    if json {
        let mut out = print::value_json(&r.val);
        out["key"] = json!(key);
        out["present"] = json!(r.present);
        out["tombstone"] = json!(r.tombstone);
        out["timestamp"] = json!(r.timestamp);
        out["writer"] = json!(r.writer);
        if r.expires_at_us != 0 {
            out["expires_at_us"] = json!(r.expires_at_us);
        }
        print::json(out);
    }
    if !r.present {
        return Err(Failure(1, "not found".into()));
    }
    if r.tombstone {
        if !json {
            println!("(tombstone) timestamp {} writer {}", r.timestamp, r.writer);
        }
        return Err(Failure(1, "not found (deleted)".into()));
    }
    if !json {
        print::raw(&r.val)?;
    }
    Ok(())
}
