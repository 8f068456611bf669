//! How results are shown: the classic lines, or JSON (`-o json`).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use tinykv_client::Client;

use crate::Failure;

/// Prints `value` as JSON, one line.
pub fn json(value: serde_json::Value) {
    println!("{value}");
}

/// Writes a value's bytes unchanged; a newline follows only on a terminal
/// (so `get` piped to a file round-trips any bytes).
pub fn raw(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let newline: &[u8] = if std::io::stdout().is_terminal() {
        b"\n"
    } else {
        b""
    };
    out.write_all(bytes)
        .and_then(|()| out.write_all(newline))
        .and_then(|()| out.flush())
        .map_err(|e| Failure(4, format!("writing the value: {e}")))
}

/// A value in JSON: as text when it is UTF-8, and always as hex.
pub fn value_json(bytes: &[u8]) -> serde_json::Value {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::json!({ "value": text, "value_hex": hex }),
        Err(_) => serde_json::json!({ "value": null, "value_hex": hex }),
    }
}

/// `cleanup`: asks for a round, follows it until it ends, and fails
/// (exit 3) when it could not remove every leftover, with the reason.
pub async fn cleanup(client: &Client, wait: Duration, as_json: bool) -> Result<(), Failure> {
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
    if as_json {
        json(serde_json::json!({ "keys_removed": r.keys_removed, "pending": r.pending }));
        return Ok(());
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

pub async fn decommission(
    client: &Client,
    node_id: &str,
    no_wait: bool,
    wait: Duration,
    as_json: bool,
) -> Result<(), Failure> {
    let deadline = Instant::now() + wait;
    let mut r = client.decommission(node_id).await?;
    let done = |r: &tinykv_client::proto::DecommissionResponse| {
        if as_json {
            json(serde_json::json!({
                "node_id": node_id, "state": r.state, "progress": r.progress,
                "keys_streamed": r.keys_streamed, "message": r.message,
            }));
        }
    };
    if no_wait {
        done(&r);
        if !as_json {
            println!("{node_id}: {} ({})", r.state, r.message);
        }
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
    done(&r);
    if !as_json {
        println!("{node_id}: left ({} keys streamed)", r.keys_streamed);
    }
    Ok(())
}

pub fn print_status(s: &tinykv_client::proto::StatusResponse, json: bool) {
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
            "operation_reason": s.operation_reason,
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
    if !s.operation_reason.is_empty() {
        println!("why: {}", s.operation_reason);
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
