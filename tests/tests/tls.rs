//! TLS on real node processes: a cluster with mTLS works; a peer with a
//! certificate from another CA, or naming another member, is refused;
//! plaintext to a TLS port fails cleanly; client auth by token and by
//! certificate accepts the right credential and refuses others; tokens and
//! certificates are re-read on SIGHUP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tinykv_client::auth::tls::{self, ClientTls};
use tinykv_client::auth::{write_bundle, Bundle, Secrets, Signed, Signer};
use tinykv_client::{Client, ClientError, ClientOptions, Consistency};
use tinykv_proto::internal as peer;
use tinykv_proto::internal::peer_client::PeerClient;
use tinykv_tests::{wait_until, Cluster, ClusterOptions};
use tonic::transport::Channel;
use tonic::Code;

const SECRET: &str = "test-cluster-secret-0123456789abcdef";
const TOKEN: &str = "client-token-0123456789abcdefghijkl";
const NEW_TOKEN: &str = "client-token-rotated-0123456789abcd";

fn tls_cluster() -> ClusterOptions {
    ClusterOptions {
        secret: Some(SECRET.into()),
        tls: true,
        ..ClusterOptions::default()
    }
}

fn two_replicas(mut opts: ClusterOptions) -> ClusterOptions {
    opts.rf = 2;
    opts
}

fn with_args(mut opts: ClusterOptions, args: &[&str]) -> ClusterOptions {
    opts.args.extend(args.iter().map(|a| a.to_string()));
    opts
}

/// A client of node `i` with `change` applied to the cluster's defaults.
fn client(c: &Cluster, i: usize, change: impl FnOnce(&mut ClientOptions)) -> Client {
    let mut opts = ClientOptions {
        timeout: Duration::from_secs(5),
        tls: c.client_tls(),
        ..ClientOptions::default()
    };
    change(&mut opts);
    Client::connect_many([c.addr(i).as_str()], opts).unwrap_or_else(|e| panic!("client: {e}"))
}

fn code_of(e: &ClientError) -> Option<Code> {
    match e {
        ClientError::Rpc { code, .. } => Some(*code),
        _ => None,
    }
}

/// A TLS channel to node `i` presenting the certificate `name` of `dir`.
async fn channel_as(c: &Cluster, i: usize, dir: &Path, name: Option<&str>) -> Channel {
    let cert = name.map(|n| (dir.join(format!("{n}.pem")), dir.join(format!("{n}.key"))));
    let tls = ClientTls::load(
        &c.certs_dir().join("ca.pem"),
        cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .unwrap_or_else(|e| panic!("client TLS: {e}"));
    tls::endpoint(&c.addr(i), Some(&tls))
        .unwrap_or_else(|e| panic!("endpoint: {e}"))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn as_node(id: &str) -> Option<Signer> {
    Some(Signer::new(
        id,
        Secrets::parse(SECRET).unwrap_or_else(|e| panic!("{e}")),
    ))
}

async fn heartbeat(ch: Channel, signer: Option<Signer>, from: &str) -> Result<(), tonic::Status> {
    let mut p = PeerClient::new(Signed::new(ch, signer));
    p.heartbeat(peer::HeartbeatRequest {
        from: from.into(),
        ..Default::default()
    })
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mtls_cluster_replicates_and_answers_admin_calls() {
    let c = Cluster::start_with(3, tls_cluster()).await;
    c.client()
        .put("k", "v", Consistency::All)
        .await
        .expect("a put at ALL: every replica reached over mTLS");
    for i in 0..3 {
        assert_eq!(c.local(i, "k").await.as_deref(), Some("v"), "node{}", i + 1);
    }
    let got = c
        .client_for(2)
        .get("k", Consistency::All)
        .await
        .expect("get");
    assert_eq!(got.map(|v| v.val.to_vec()), Some(b"v".to_vec()));
    assert_eq!(c.owners(0, "k").await.len(), 3, "admin calls work over TLS");
    for i in 0..3 {
        assert!(
            c.log(i).contains("+ tls"),
            "node{} says it serves TLS",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_to_a_tls_port_fails_cleanly() {
    let c = Cluster::start_with(1, tls_cluster()).await;
    let plain = client(&c, 0, |o| {
        o.tls = None;
        o.timeout = Duration::from_secs(2);
    });
    let err = plain
        .put("k", "v", Consistency::One)
        .await
        .expect_err("plaintext to a TLS port");
    // A plaintext HTTP/2 preface is no TLS ClientHello: the node closes
    // the connection, and the client gets an error at once, not a hang.
    assert!(
        matches!(err, ClientError::Unavailable(_) | ClientError::Rpc { .. }),
        "{err:?}"
    );
    c.client()
        .put("k", "v", Consistency::One)
        .await
        .expect("TLS clients still served");
    assert!(!c.log(0).contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_call_must_show_a_certificate_naming_its_caller() {
    let c = Cluster::start_with(2, tls_cluster()).await;
    let certs = c.certs_dir();
    let ch = channel_as(&c, 0, &certs, Some("node2")).await;
    heartbeat(ch.clone(), as_node("node2"), "node2")
        .await
        .expect("node2's certificate and node2's proof");
    let err = heartbeat(ch, as_node("node3"), "node3")
        .await
        .expect_err("node2's certificate, node3's proof");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("not the calling node"), "{err:?}");
    let ch = channel_as(&c, 0, &certs, Some("tester")).await;
    let err = heartbeat(ch, as_node("node2"), "node2")
        .await
        .expect_err("a client's certificate, node2's proof");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let ch = channel_as(&c, 0, &certs, None).await;
    let err = heartbeat(ch, as_node("node2"), "node2")
        .await
        .expect_err("no certificate, node2's proof");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("none shown"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_a_certificate_from_another_ca_stays_out() {
    let mut c = Cluster::start_with(2, two_replicas(tls_cluster())).await;
    c.nodes[0].log_filter = "info,tinykv_node::server::incoming=debug".into();
    c.restart(0).await;
    // node3's certificate comes from a CA of its own; its secret is right.
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let names = ["node3", "localhost", "127.0.0.1"]
        .map(String::from)
        .to_vec();
    let bundle = Bundle {
        nodes: vec![names],
        clients: Vec::new(),
    };
    write_bundle(other.path(), &bundle).unwrap_or_else(|e| panic!("{e}"));
    for f in ["node3.pem", "node3.key"] {
        std::fs::copy(other.path().join(f), c.certs_dir().join(f))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    c.add_node_unwaited(&[]);
    wait_until(
        "node1 to refuse node3's handshake",
        Duration::from_secs(20),
        || {
            let log = c.log(0);
            async move { log.contains("TLS handshake failed") }
        },
    )
    .await;
    assert!(
        c.log(0).contains("UnknownIssuer") || c.log(0).contains("certificate"),
        "the refusal names the certificate"
    );
    let status = c.client_for(0).status().await.expect("status");
    assert!(
        status.members.iter().all(|m| m.node_id != "node3"),
        "node1 never learned of node3: {:?}",
        status.members
    );
    c.client_for(0)
        .put("k", "v", Consistency::All)
        .await
        .expect("the cluster goes on without node3");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_auth_token_accepts_listed_tokens_and_rereads_them_on_sighup() {
    let opts = ClusterOptions {
        token: Some(TOKEN.into()),
        ..ClusterOptions::default()
    };
    let c = Cluster::start_with(1, opts).await;
    c.client()
        .put("k", "v", Consistency::One)
        .await
        .expect("the listed token");
    for token in [None, Some(NEW_TOKEN)] {
        let other = client(&c, 0, |o| o.token = token.map(String::from));
        let err = other
            .put("k", "w", Consistency::One)
            .await
            .expect_err("no token, or one not listed");
        assert_eq!(code_of(&err), Some(Code::Unauthenticated), "{err:?}");
    }
    std::fs::write(c.token_file(), format!("{NEW_TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
    c.hangup(0);
    let rotated = client(&c, 0, |o| o.token = Some(NEW_TOKEN.into()));
    wait_until(
        "the new token to be accepted",
        Duration::from_secs(10),
        || {
            let rotated = rotated.clone();
            async move { rotated.put("k", "x", Consistency::One).await.is_ok() }
        },
    )
    .await;
    let err = c
        .client()
        .put("k", "y", Consistency::One)
        .await
        .expect_err("the removed token");
    assert_eq!(code_of(&err), Some(Code::Unauthenticated), "{err:?}");
    let got = rotated.get("k", Consistency::One).await.expect("get");
    assert_eq!(
        got.map(|v| v.val.to_vec()),
        Some(b"x".to_vec()),
        "refused puts changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_auth_cert_accepts_a_certificate_from_the_ca_only() {
    let c = Cluster::start_with(
        2,
        with_args(two_replicas(tls_cluster()), &["--client-auth", "cert"]),
    )
    .await;
    c.client()
        .put("k", "v", Consistency::All)
        .await
        .expect("the tester certificate");
    let anonymous = client(&c, 0, |o| {
        o.tls = Some(
            ClientTls::load(&c.certs_dir().join("ca.pem"), None).unwrap_or_else(|e| panic!("{e}")),
        );
    });
    let err = anonymous
        .put("k", "w", Consistency::One)
        .await
        .expect_err("TLS without a certificate");
    assert_eq!(code_of(&err), Some(Code::Unauthenticated), "{err:?}");
    // A certificate from another CA fails the handshake itself.
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bundle = Bundle {
        nodes: Vec::new(),
        clients: vec!["intruder".into()],
    };
    write_bundle(other.path(), &bundle).unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = (
        other.path().join("intruder.pem"),
        other.path().join("intruder.key"),
    );
    let intruder = client(&c, 0, |o| {
        o.tls = Some(
            ClientTls::load(&c.certs_dir().join("ca.pem"), Some((&cert, &key)))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        o.timeout = Duration::from_secs(2);
    });
    intruder
        .put("k", "w", Consistency::One)
        .await
        .expect_err("a certificate from another CA");
    let got = c.client().get("k", Consistency::All).await.expect("get");
    assert_eq!(got.map(|v| v.val.to_vec()), Some(b"v".to_vec()));
}

/// The certificate node `i` shows to a new connection.
async fn served_certificate(c: &Cluster, i: usize) -> Vec<u8> {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    for cert in tls::load_certs(&c.certs_dir().join("ca.pem")).unwrap_or_else(|e| panic!("{e}")) {
        roots.add(cert).unwrap_or_else(|e| panic!("{e}"));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(c.addr(i))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name = "localhost".try_into().unwrap_or_else(|e| panic!("{e}"));
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
    certs.first().map(|c| c.to_vec()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reissued_certificate_is_served_after_sighup_without_a_restart() {
    let c = Cluster::start_with(2, two_replicas(tls_cluster())).await;
    let file = |name: &str| c.certs_dir().join(name);
    let first = tls::load_certs(&file("node1.pem")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(served_certificate(&c, 0).await, first[0].to_vec());
    // Reissue node1's certificate from the same CA and tell node1.
    std::fs::remove_file(file("node1.pem")).unwrap_or_else(|e| panic!("{e}"));
    let names = ["node1", "localhost", "127.0.0.1"]
        .map(String::from)
        .to_vec();
    let bundle = Bundle {
        nodes: vec![names],
        clients: Vec::new(),
    };
    write_bundle(&c.certs_dir(), &bundle).unwrap_or_else(|e| panic!("{e}"));
    let second = tls::load_certs(&file("node1.pem")).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(first, second);
    c.hangup(0);
    wait_until(
        "node1 to serve its new certificate",
        Duration::from_secs(10),
        || async { served_certificate(&c, 0).await == second[0].to_vec() },
    )
    .await;
    c.client()
        .put("k", "v", Consistency::All)
        .await
        .expect("node1 reaches node2 with its new certificate, and node2 it");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_secret_certificates_alone_guard_the_peer_and_admin_planes() {
    let opts = ClusterOptions {
        tls: true,
        ..ClusterOptions::default()
    };
    let c = Cluster::start_with(3, opts).await;
    assert!(
        c.log(0).contains("certificate + tls"),
        "the certificate mode is named"
    );
    c.client()
        .put("k", "v", Consistency::All)
        .await
        .expect("peers authenticated by certificate");
    assert_eq!(
        c.owners(0, "k").await.len(),
        3,
        "admin with the tester certificate"
    );
    let certs = c.certs_dir();
    heartbeat(
        channel_as(&c, 0, &certs, Some("node2")).await,
        None,
        "node2",
    )
    .await
    .expect("node2's certificate speaks for node2");
    let err = heartbeat(
        channel_as(&c, 0, &certs, Some("node2")).await,
        None,
        "node3",
    )
    .await
    .expect_err("node2's certificate cannot speak for node3");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = heartbeat(channel_as(&c, 0, &certs, None).await, None, "node2")
        .await
        .expect_err("no certificate");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}
