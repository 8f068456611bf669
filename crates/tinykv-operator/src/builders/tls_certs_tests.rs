use super::*;
use crate::builders::test_support::cluster;
use crate::crd::TinyKVClusterSpec;
use tinykv_auth::tls::{cert_names, pem_certs};

fn tls_cluster() -> TinyKVCluster {
    let mut spec = TinyKVClusterSpec::default();
    spec.tls.enabled = true;
    cluster(spec)
}

fn text(s: &Secret, key: &str) -> String {
    secret_text(s, key).expect(key).to_string()
}

fn names_in(pem: &str) -> Vec<String> {
    let ders = pem_certs(pem);
    assert_eq!(ders.len(), 1, "one certificate");
    cert_names(&ders[0])
}

#[test]
fn the_ca_secret_is_owned_and_round_trips() {
    let c = tls_cluster();
    let ca = generate_ca(&c).expect("ca");
    let s = build_ca_secret(&c, &ca).expect("secret");
    assert_eq!(s.metadata.name.as_deref(), Some("demo-tls-ca"));
    let owner = &s.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("TinyKVCluster", Some(true))
    );
    let keys: Vec<&String> = s.data.as_ref().expect("data").keys().collect();
    assert_eq!(keys, ["ca.crt", "ca.key"]);
    let again = ca_from_secret(&s).expect("loads");
    assert_eq!(again.cert_pem(), ca.cert_pem());
    let mut broken = s.clone();
    broken.data.as_mut().expect("data").remove("ca.key");
    assert!(matches!(ca_from_secret(&broken), Err(Error::Tls(_))));
}

#[test]
fn every_pod_gets_a_certificate_naming_it_first_with_its_hosts() {
    let c = tls_cluster();
    let ca = generate_ca(&c).expect("ca");
    let (s, issued) = build_signed_nodes_secret(&c, &ca, 3, None).expect("nodes");
    assert_eq!(issued, ["demo-0", "demo-1", "demo-2"]);
    assert_eq!(s.metadata.name.as_deref(), Some("demo-tls-nodes"));
    let data = s.data.as_ref().expect("data");
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ca.crt",
            "demo-0.crt",
            "demo-0.key",
            "demo-1.crt",
            "demo-1.key",
            "demo-2.crt",
            "demo-2.key"
        ]
    );
    assert!(
        !data.contains_key("ca.key"),
        "the CA key never reaches a pod"
    );
    assert_eq!(text(&s, "ca.crt"), ca.cert_pem());
    assert_eq!(
        names_in(&text(&s, "demo-1.crt")),
        [
            "demo-1",
            "demo-1.demo-headless",
            "demo-1.demo-headless.db.svc",
            "demo-1.demo-headless.db.svc.cluster.local",
            "demo-headless.db.svc",
            "demo-headless.db.svc.cluster.local",
            "demo",
            "demo.db",
            "demo.db.svc",
            "demo.db.svc.cluster.local",
            "localhost",
        ]
    );
    // The certificate and key work as a client identity against the CA.
    tinykv_auth::tls::ClientTls::from_pem(
        &text(&s, "ca.crt"),
        Some((&text(&s, "demo-0.crt"), &text(&s, "demo-0.key"))),
    )
    .expect("usable");
}

#[test]
fn scaling_up_keeps_the_certificates_there_are_and_adds_the_new_ones() {
    let c = tls_cluster();
    let ca = generate_ca(&c).expect("ca");
    let (three, _) = build_signed_nodes_secret(&c, &ca, 3, None).expect("nodes");
    let (same, issued) = build_signed_nodes_secret(&c, &ca, 3, Some(&three)).expect("again");
    assert!(issued.is_empty(), "nothing new to write");
    assert_eq!(same.data, three.data);
    let (five, issued) = build_signed_nodes_secret(&c, &ca, 5, Some(&three)).expect("five");
    assert_eq!(issued, ["demo-3", "demo-4"]);
    for pod in ["demo-0", "demo-1", "demo-2"] {
        assert_eq!(
            text(&five, &format!("{pod}.crt")),
            text(&three, &format!("{pod}.crt"))
        );
        assert_eq!(
            text(&five, &format!("{pod}.key")),
            text(&three, &format!("{pod}.key"))
        );
    }
    assert_eq!(names_in(&text(&five, "demo-4.crt"))[0], "demo-4");
    // Scaling down keeps the certificates of the pods gone (for a scale-up).
    let (back, issued) = build_signed_nodes_secret(&c, &ca, 2, Some(&five)).expect("two");
    assert!(issued.is_empty());
    assert_eq!(back.data, five.data);
}

#[test]
fn certificates_of_another_ca_are_replaced() {
    let c = tls_cluster();
    let old = generate_ca(&c).expect("ca");
    let (s, _) = build_signed_nodes_secret(&c, &old, 2, None).expect("nodes");
    let new = generate_ca(&c).expect("ca");
    let (s2, issued) = build_signed_nodes_secret(&c, &new, 2, Some(&s)).expect("nodes");
    assert_eq!(issued, ["demo-0", "demo-1"]);
    assert_eq!(text(&s2, "ca.crt"), new.cert_pem());
    assert_ne!(text(&s2, "demo-0.crt"), text(&s, "demo-0.crt"));
}

fn cm_secret(cert: &str, key: &str, ca: &str) -> Secret {
    Secret {
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.into())),
            ("tls.key".to_string(), ByteString(key.into())),
            ("ca.crt".to_string(), ByteString(ca.into())),
        ])),
        ..Secret::default()
    }
}

#[test]
fn cert_manager_secrets_are_gathered_under_the_pod_names() {
    let c = tls_cluster();
    let issued = [
        Some(cm_secret("C0", "K0", "CA-A\n")),
        None,
        Some(cm_secret("", "", "CA-A\n")),
        Some(cm_secret("C3", "K3", "CA-B")),
    ];
    let (s, waiting) = build_gathered_nodes_secret(&c, &issued).expect("gathered");
    assert_eq!(waiting, ["demo-1", "demo-2"]);
    assert_eq!(s.metadata.name.as_deref(), Some("demo-tls-nodes"));
    let keys: Vec<&String> = s.data.as_ref().expect("data").keys().collect();
    assert_eq!(
        keys,
        [
            "ca.crt",
            "demo-0.crt",
            "demo-0.key",
            "demo-3.crt",
            "demo-3.key"
        ]
    );
    assert_eq!(text(&s, "demo-3.key"), "K3");
    assert_eq!(text(&s, "ca.crt"), "CA-A\nCA-B\n", "each CA once");
}
