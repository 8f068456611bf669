//! The trust boundary on real node processes: with a cluster secret, every
//! peer and admin method refuses callers without it before acting; admin
//! commands work with it; a node with another secret stays out; a secret
//! is rotated with SIGHUP and no failed request.

use std::process::Command;
use std::time::Duration;

use tinykv_client::auth::{Secrets, Signed, Signer};
use tinykv_client::Consistency;
use tinykv_proto::internal as peer;
use tinykv_proto::internal::peer_client::PeerClient;
use tinykv_proto::tinykv as kv;
use tinykv_proto::tinykv::admin_client::AdminClient;
use tinykv_tests::{binary, wait_until, Cluster, ClusterOptions};
use tonic::transport::Channel;
use tonic::Code;

const SECRET: &str = "test-cluster-secret-0123456789abcdef";
const OTHER: &str = "another-cluster-secret-0123456789abc";

fn secured() -> ClusterOptions {
    ClusterOptions {
        secret: Some(SECRET.into()),
        ..ClusterOptions::default()
    }
}

async fn channel(c: &Cluster, i: usize) -> Channel {
    Channel::from_shared(format!("http://{}", c.addr(i)))
        .unwrap_or_else(|e| panic!("address: {e}"))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// The code of every Admin method called through `ch`.
async fn admin_codes(ch: Signed<Channel>) -> Vec<(&'static str, Code)> {
    let mut a = AdminClient::new(ch);
    let code =
        |r: Result<tonic::Response<_>, tonic::Status>| r.map_or_else(|s| s.code(), |_| Code::Ok);
    vec![
        (
            "LocalGet",
            code(
                a.local_get(kv::LocalGetRequest::default())
                    .await
                    .map(|_| tonic::Response::new(())),
            ),
        ),
        (
            "Repair",
            code(
                a.repair(kv::RepairRequest::default())
                    .await
                    .map(|_| tonic::Response::new(())),
            ),
        ),
        (
            "Decommission",
            code(
                a.decommission(kv::DecommissionRequest {
                    node_id: "node3".into(),
                })
                .await
                .map(|_| tonic::Response::new(())),
            ),
        ),
        (
            "RemoveNode",
            code(
                a.remove_node(kv::RemoveNodeRequest {
                    node_id: "node3".into(),
                })
                .await
                .map(|_| tonic::Response::new(())),
            ),
        ),
        (
            "KeyOwners",
            code(
                a.key_owners(kv::KeyOwnersRequest::default())
                    .await
                    .map(|_| tonic::Response::new(())),
            ),
        ),
        (
            "ScanRange",
            code(
                a.scan_range(kv::ScanRangeRequest {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .map(|_| tonic::Response::new(())),
            ),
        ),
        (
            "WriteVersions",
            code(
                a.write_versions(kv::WriteVersionsRequest {
                    versions: vec![kv::KeyVersion {
                        key: b"planted".to_vec().into(),
                        value: b"planted".to_vec().into(),
                        timestamp: 1,
                        writer: "intruder".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await
                .map(|_| tonic::Response::new(())),
            ),
        ),
    ]
}

/// The code of every Peer method called through `ch`, each with a request
/// that would change or reveal something if it were accepted.
async fn peer_codes(ch: Signed<Channel>) -> Vec<(&'static str, Code)> {
    let mut p = PeerClient::new(ch);
    let code = |r: Result<(), tonic::Status>| r.map_or_else(|s| s.code(), |()| Code::Ok);
    let value = peer::Record {
        value: b"planted".to_vec().into(),
        timestamp: 1,
        writer: "intruder".into(),
        tombstone: false,
        expires_at: 0,
    };
    let record = peer::KeyedRecord {
        key: b"planted".to_vec().into(),
        record: Some(value.clone()),
    };
    vec![
        (
            "Write",
            code(
                p.write(peer::ReplicaWrite {
                    key: b"planted".to_vec().into(),
                    record: Some(value),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            ),
        ),
        (
            "WriteBatch",
            code(
                p.write_batch(peer::ReplicaWriteBatch {
                    records: vec![record.clone()],
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            ),
        ),
        (
            "WriteHints",
            code(
                p.write_hints(peer::ReplicaHintBatch {
                    records: vec![record],
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            ),
        ),
        (
            "Read",
            code(p.read(peer::ReplicaRead::default()).await.map(|_| ())),
        ),
        (
            "ReadBatch",
            code(
                p.read_batch(peer::ReplicaReadBatch::default())
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "ExchangeStream",
            code(
                p.exchange_stream(tokio_stream::iter(vec![peer::ReplicaExchange::default()]))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "Heartbeat",
            code(
                p.heartbeat(peer::HeartbeatRequest {
                    from: "intruder".into(),
                    members: vec![peer::MemberInfo {
                        node_id: "intruder".into(),
                        address: "127.0.0.1:1".into(),
                        state: "normal".into(),
                        version: u64::MAX / 2,
                    }],
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            ),
        ),
        (
            "RangeDigest",
            code(
                p.range_digest(peer::RangeDigestRequest::default())
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "FetchRange",
            code(
                p.fetch_range(peer::FetchRangeRequest::default())
                    .await
                    .map(|_| ()),
            ),
        ),
    ]
}

fn signer(secret: &str) -> Signer {
    Signer::new(
        "admin",
        Secrets::parse(secret).unwrap_or_else(|e| panic!("{e}")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_secret_every_peer_and_admin_method_is_refused_and_nothing_changes() {
    let c = Cluster::start_with(3, secured()).await;
    let client = c.client();
    client
        .put("kept", "v1", Consistency::All)
        .await
        .expect("put");
    for signed_by in [None, Some(signer(OTHER))] {
        let ch = channel(&c, 0).await;
        let what = if signed_by.is_some() {
            "another secret"
        } else {
            "no secret"
        };
        let codes = admin_codes(Signed::new(ch.clone(), signed_by.clone())).await;
        let codes = codes
            .into_iter()
            .chain(peer_codes(Signed::new(ch, signed_by)).await);
        for (method, code) in codes {
            assert_eq!(code, Code::Unauthenticated, "{method} with {what}");
        }
    }
    // Nothing changed: the key, the members, nothing planted.
    let got = client.get("kept", Consistency::All).await.expect("get");
    assert_eq!(got.map(|v| v.val), Some("v1".as_bytes().to_vec().into()));
    assert_eq!(
        client.get("planted", Consistency::All).await.expect("get"),
        None
    );
    let status = c.client_for(0).status().await.expect("status");
    let mut members: Vec<(String, String)> = status
        .members
        .into_iter()
        .map(|m| (m.node_id, m.state))
        .collect();
    members.sort();
    assert_eq!(
        members,
        ["node1", "node2", "node3"].map(|n| (n.to_string(), "normal".to_string()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_secret_admin_calls_work_from_the_library_and_the_cli() {
    let c = Cluster::start_with(3, secured()).await;
    c.client()
        .put("k", "v", Consistency::All)
        .await
        .expect("put");
    let owners = c.owners(0, "k").await;
    assert_eq!(owners.len(), 3);
    let mut admin = AdminClient::new(Signed::new(channel(&c, 0).await, Some(signer(SECRET))));
    admin
        .repair(kv::RepairRequest::default())
        .await
        .expect("repair with the secret");
    let got = admin
        .key_owners(kv::KeyOwnersRequest {
            key: b"k".to_vec().into(),
        })
        .await
        .expect("owners with the secret");
    assert_eq!(got.into_inner().node_ids.len(), 3);

    let cli = binary("tinykv_client");
    let secret = c.secret_file().expect("secret file");
    let ok = Command::new(&cli)
        .args([c.addr(0).as_str(), "owners", "k", "--cluster-secret-file"])
        .arg(&secret)
        .output()
        .expect("run tinykv_client");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).lines().count(), 3);
    let refused = Command::new(&cli)
        .args([c.addr(0).as_str(), "owners", "k"])
        .env_remove("TINYKV_CLUSTER_SECRET_FILE")
        .output()
        .expect("run tinykv_client");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("cluster secret"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_another_secret_cannot_join_or_gossip() {
    let mut c = Cluster::start_with(3, secured()).await;
    let intruder = c.add_node_with_secret(OTHER);
    // Its heartbeats reach node1..3 and are refused there.
    wait_until(
        "the intruder's heartbeats to be refused",
        Duration::from_secs(30),
        || async {
            c.log(intruder).contains("Unauthenticated")
                || c.log(intruder).contains("cluster secret")
        },
    )
    .await;
    for i in 0..3 {
        let status = c.client_for(i).status().await.expect("status");
        assert!(
            status.members.iter().all(|m| m.node_id != "node4"),
            "node{} lists the intruder: {:?}",
            i + 1,
            status.members
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_is_rotated_with_sighup_and_no_failed_request() {
    let c = Cluster::start_with(3, secured()).await;
    let file = c.secret_file().expect("secret file");
    let new = "rotated-cluster-secret-0123456789abcdef";
    let client = c.client();
    let mut written = 0;
    let mut write = |step: &'static str| {
        let client = client.clone();
        written += 1;
        let n = written;
        async move {
            for i in 0..20 {
                client
                    .put(format!("rot-{n}-{i}"), "v", Consistency::All)
                    .await
                    .unwrap_or_else(|e| panic!("put at ALL during {step}: {e}"));
            }
        }
    };
    // 1. Accept the new secret everywhere, still signing with the old one;
    // 2. sign with the new one everywhere; 3. drop the old one.
    for (step, text) in [
        ("adding the new secret", format!("{SECRET}\n{new}\n")),
        ("signing with the new secret", format!("{new}\n{SECRET}\n")),
        ("dropping the old secret", format!("{new}\n")),
    ] {
        std::fs::write(&file, &text).expect("rewrite the secret file");
        for i in 0..3 {
            c.hangup(i);
            write(step).await;
        }
        for i in 0..3 {
            wait_until(
                &format!("node{} to re-read its secrets", i + 1),
                Duration::from_secs(10),
                || async {
                    c.log(i).matches("cluster secrets re-read").count() >= text_step(&text)
                },
            )
            .await;
        }
        write(step).await;
    }
    // The old secret no longer opens anything.
    let codes = admin_codes(Signed::new(channel(&c, 0).await, Some(signer(SECRET)))).await;
    assert!(
        codes.iter().all(|(_, code)| *code == Code::Unauthenticated),
        "{codes:?}"
    );
}

/// How many re-reads a node has done once the file holds `text`.
fn text_step(text: &str) -> usize {
    match text.lines().count() {
        2 if text.starts_with(SECRET) => 1,
        2 => 2,
        _ => 3,
    }
}

#[test]
fn a_node_listening_beyond_loopback_without_a_secret_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary("tinykv-node"))
        .args(["--node-id", "n1", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("TINYKV_METRICS_LISTEN", "off")
        .env_remove("TINYKV_CLUSTER_SECRET_FILE")
        .env_remove("TINYKV_INSECURE")
        .output()
        .expect("run tinykv-node");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cluster-secret-file") && err.contains("--insecure"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nodes_credentials_speak_for_that_node_only() {
    let c = Cluster::start_with(3, secured()).await;
    let as_node2 = Signer::new(
        "node2",
        Secrets::parse(SECRET).unwrap_or_else(|e| panic!("{e}")),
    );
    let mut p = PeerClient::new(Signed::new(channel(&c, 0).await, Some(as_node2)));
    let heartbeat = |from: &str| peer::HeartbeatRequest {
        from: from.into(),
        ..Default::default()
    };
    p.heartbeat(heartbeat("node2"))
        .await
        .expect("node2's own heartbeat");
    let err = p
        .heartbeat(heartbeat("node3"))
        .await
        .expect_err("node2 speaking for node3");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permissive_node_accepts_unproved_calls_for_a_rolling_upgrade() {
    let mut opts = secured();
    opts.args.push("--auth-permissive".into());
    let c = Cluster::start_with(1, opts).await;
    let mut p = PeerClient::new(Signed::new(channel(&c, 0).await, None));
    p.heartbeat(peer::HeartbeatRequest {
        from: "node7".into(),
        ..Default::default()
    })
    .await
    .expect("an unsigned heartbeat, accepted while permissive");
    assert!(
        c.log(0).contains("accepted (--auth-permissive)"),
        "the unproved call is logged"
    );
}
