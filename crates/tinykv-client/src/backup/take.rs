//! Taking a backup: every range from a quorum of its replicas, merged.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tinykv_proto::tinykv as pb;

use super::format::{DataWriter, Manifest, RangeEntry, FORMAT_VERSION, MANIFEST};
use super::{lww_cmp, now_us, BackupError, Progress};
use crate::{Client, ClientError, ClientOptions};

/// Versions asked for per page.
const PAGE: u32 = 1024;
/// A data file is closed after the range that takes it past this size.
const FILE_TARGET_BYTES: u64 = 64 << 20;
/// Most pages read from one replica of one range before giving up (a
/// node that never says it is done).
const MAX_PAGES: usize = 1 << 20;

/// How to take a backup.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// Where the files go (created if missing; must hold no backup).
    pub out: PathBuf,
    /// Only versions with a timestamp above this (0: all).
    pub since: u64,
    /// Read each range from one replica instead of a quorum.
    pub fast: bool,
    /// How to reach the nodes (credentials, TLS, deadline per call).
    pub client: ClientOptions,
}

/// One range to read and where to read it.
struct Span {
    start: u64,
    end: u64,
    replicas: Vec<String>,
}

/// The ring's ranges in order, each `(previous end, end]`.
fn spans(topo: &pb::TopologyResponse) -> Result<Vec<Span>, BackupError> {
    let last = topo
        .ranges
        .last()
        .ok_or_else(|| BackupError::Topology("the ring has no ranges".into()))?;
    let mut start = last.end;
    let mut out = Vec::with_capacity(topo.ranges.len());
    for r in &topo.ranges {
        let replicas = r
            .replicas
            .iter()
            .map(|&i| topo.node_ids.get(i as usize).cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| BackupError::Topology("a replica index out of range".into()))?;
        out.push(Span {
            start,
            end: r.end,
            replicas,
        });
        start = r.end;
    }
    Ok(out)
}

/// Every version of `span` on one node, pages followed to the end.
async fn scan_all(
    node: &Client,
    span: (u64, u64),
    since: u64,
) -> Result<Vec<pb::KeyVersion>, ClientError> {
    let mut out = Vec::new();
    let mut after = Bytes::new();
    for _ in 0..MAX_PAGES {
        let page = node.scan_range(span, after.clone(), PAGE, since).await?;
        out.extend(page.versions);
        if !page.more {
            return Ok(out);
        }
        if page.last_key.is_empty() || page.last_key == after {
            break;
        }
        after = page.last_key;
    }
    Err(ClientError::Unavailable(
        "the node's range scan made no progress".into(),
    ))
}

/// Clients of every member, by node id.
fn node_clients(
    status: &pb::StatusResponse,
    opts: &ClientOptions,
) -> HashMap<String, Result<Client, ClientError>> {
    status
        .members
        .iter()
        .map(|m| {
            let client = if m.address.is_empty() {
                Err(ClientError::Unavailable(format!(
                    "{} has no address",
                    m.node_id
                )))
            } else {
                Client::connect_many([m.address.as_str()], opts.clone())
            };
            (m.node_id.clone(), client)
        })
        .collect()
}

/// `span` read from `need` of its replicas, merged by LWW, in key order;
/// and the replicas read.
async fn read_span(
    span: &Span,
    need: usize,
    nodes: &HashMap<String, Result<Client, ClientError>>,
    since: u64,
) -> Result<(Vec<pb::KeyVersion>, Vec<String>), BackupError> {
    let mut merged: BTreeMap<Bytes, pb::KeyVersion> = BTreeMap::new();
    let mut read_from = Vec::new();
    let mut last = String::from("none");
    for id in &span.replicas {
        if read_from.len() == need {
            break;
        }
        let versions = match nodes.get(id) {
            Some(Ok(node)) => scan_all(node, (span.start, span.end), since).await,
            Some(Err(e)) => Err(ClientError::Unavailable(e.to_string())),
            None => Err(ClientError::Unavailable(format!("{id} is not a member"))),
        };
        match versions {
            Ok(vs) => {
                for v in vs {
                    match merged.get(&v.key) {
                        Some(old) if lww_cmp(old, &v).is_ge() => {}
                        _ => {
                            merged.insert(v.key.clone(), v);
                        }
                    }
                }
                read_from.push(id.clone());
            }
            Err(e) => last = format!("{id}: {e}"),
        }
    }
    if read_from.len() < need {
        return Err(BackupError::Range {
            start: span.start,
            end: span.end,
            got: read_from.len(),
            need,
            last,
        });
    }
    Ok((merged.into_values().collect(), read_from))
}

/// The data file name of the `n`th file.
fn file_name(n: usize) -> String {
    format!("data-{n:05}.tkvb")
}

/// Takes a backup of the cluster `client` reaches into `opts.out`.
pub async fn take(
    client: &Client,
    opts: &BackupOptions,
    progress: &dyn Fn(Progress),
) -> Result<Manifest, BackupError> {
    let started_at_us = now_us();
    let dir: &Path = &opts.out;
    std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
    if dir.join(MANIFEST).exists() {
        return Err(BackupError::Exists {
            dir: dir.to_path_buf(),
        });
    }
    let status = client.status().await?;
    let topo = client.topology().await?;
    let spans = spans(&topo)?;
    let nodes = node_clients(&status, &opts.client);
    let mut manifest = Manifest {
        format: super::format::FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        cluster_name: status.cluster_name.clone(),
        started_at_us,
        finished_at_us: 0,
        since: opts.since,
        fast: opts.fast,
        replication_factor: status.replication_factor,
        nodes: topo.node_ids.clone(),
        ranges: Vec::with_capacity(spans.len()),
        files: Vec::new(),
        versions: 0,
        tombstones: 0,
    };
    let total = spans.len() as u64;
    let mut file: Option<DataWriter> = None;
    for (i, span) in spans.iter().enumerate() {
        let need = if opts.fast {
            1
        } else {
            span.replicas.len() / 2 + 1
        };
        let (versions, read_from) = read_span(span, need, &nodes, opts.since).await?;
        let out = match &mut file {
            Some(f) => f,
            None => file.insert(DataWriter::create(dir, file_name(manifest.files.len()))?),
        };
        for v in &versions {
            out.append(v)?;
            manifest.tombstones += u64::from(v.tombstone);
        }
        manifest.versions += versions.len() as u64;
        manifest.ranges.push(RangeEntry {
            start: span.start,
            end: span.end,
            read_from,
            versions: versions.len() as u64,
            file: file_name(manifest.files.len()),
        });
        if out.bytes_written() >= FILE_TARGET_BYTES {
            if let Some(done) = file.take() {
                manifest.files.push(done.finish()?);
            }
        }
        progress(Progress::Ranges {
            done: i as u64 + 1,
            total,
        });
    }
    if let Some(done) = file.take() {
        manifest.files.push(done.finish()?);
    }
    manifest.finished_at_us = now_us();
    manifest.save(dir)?;
    Ok(manifest)
}
