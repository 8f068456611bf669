//! `INFO [section ...]`: server, clients, keyspace and replication, as
//! this node sees them.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::resp::reply::Reply;
use crate::resp::Shared;

/// The Redis version TinyKV answers as (the commands it serves behave as
/// in this version).
pub const REDIS_VERSION: &str = "7.0.0";

const SECTIONS: [&str; 5] = ["server", "clients", "stats", "replication", "keyspace"];

/// `INFO`.
pub fn info(args: Vec<Bytes>, shared: &Shared) -> Reply {
    let asked: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = asked.is_empty()
        || asked
            .iter()
            .any(|a| matches!(a.as_str(), "all" | "everything" | "default"));
    let mut text = String::new();
    for section in SECTIONS {
        if all || asked.iter().any(|a| a == section) {
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            section_text(section, shared, &mut text);
        }
    }
    Reply::text(text)
}

fn section_text(section: &str, shared: &Shared, out: &mut String) {
    let _ = writeln!(out, "# {}\r", capitalised(section));
    let lines = match section {
        "server" => server(shared),
        "clients" => vec![
            format!(
                "connected_clients:{}",
                shared.connected.load(Ordering::Relaxed)
            ),
            format!("maxclients:{}", shared.max_connections),
        ],
        "stats" => vec![
            format!(
                "total_connections_received:{}",
                shared.accepted.load(Ordering::Relaxed)
            ),
            format!(
                "total_commands_processed:{}",
                shared.commands.load(Ordering::Relaxed)
            ),
        ],
        "replication" => replication(shared),
        _ => keyspace(shared),
    };
    for line in lines {
        let _ = writeln!(out, "{line}\r");
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn server(shared: &Shared) -> Vec<String> {
    let status = shared.client.status_report();
    vec![
        format!("redis_version:{REDIS_VERSION}"),
        format!("tinykv_version:{}", status.version),
        "redis_mode:standalone".into(),
        format!("os:{} {}", std::env::consts::OS, std::env::consts::ARCH),
        format!("process_id:{}", std::process::id()),
        format!("tcp_port:{}", shared.port),
        format!("uptime_in_seconds:{}", shared.started.elapsed().as_secs()),
        format!("tinykv_node_id:{}", status.node_id),
        format!("tinykv_cluster_name:{}", status.cluster_name),
        format!("tinykv_sync:{}", status.sync),
    ]
}

/// Every node takes writes (there is no primary): `role:master`, and the
/// members with their health and ring state instead of replicas.
fn replication(shared: &Shared) -> Vec<String> {
    let status = shared.client.status_report();
    let up = status.members.iter().filter(|m| m.health == "up").count();
    let mut lines = vec![
        "role:master".to_string(),
        "connected_slaves:0".to_string(),
        format!("tinykv_replication_factor:{}", status.replication_factor),
        format!(
            "tinykv_default_consistency:{:?}",
            shared.client.rules().default_consistency
        )
        .to_lowercase(),
        format!("tinykv_members:{}", status.members.len()),
        format!("tinykv_members_up:{up}"),
        format!("tinykv_state:{}", status.state),
        format!("tinykv_pending_hints:{}", status.pending_hints),
    ];
    for (i, m) in status.members.iter().enumerate() {
        lines.push(format!(
            "tinykv_member{i}:id={},address={},health={},state={},replica_ownership={:.4}",
            m.node_id, m.address, m.health, m.state, m.replica_ownership
        ));
    }
    lines
}

/// The keys this node holds (its replicas, tombstones included): the
/// cluster's key count is not known to any one node.
fn keyspace(shared: &Shared) -> Vec<String> {
    let keys = shared.client.status_report().local_keys;
    vec![format!("db0:keys={keys},expires=0,avg_ttl=0")]
}
