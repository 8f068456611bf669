use super::*;
use crate::certs::{Authority, Role};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn node_files(dir: &Path, ca: &Authority, names: &[&str]) -> TlsFiles {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let issued = ca.issue(&names, Role::Node).unwrap();
    TlsFiles {
        cert: write(dir, &format!("{}.pem", names[0]), &issued.cert_pem),
        key: write(dir, &format!("{}.key", names[0]), &issued.key_pem),
        ca: write(dir, "ca.pem", ca.cert_pem()),
    }
}

#[test]
fn a_node_certificate_names_its_id_first_then_its_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::generate("test CA").unwrap();
    let files = node_files(dir.path(), &ca, &["node1", "tinykv-node1", "127.0.0.1"]);
    let certs = load_certs(&files.cert).unwrap();
    // IP addresses are not DNS names: only the two DNS names are proved.
    assert_eq!(cert_names(&certs[0]), vec!["node1", "tinykv-node1"]);
    server_config(&files).unwrap();
    ClientTls::for_node(&files).unwrap();
}

#[test]
fn a_ca_saved_and_loaded_signs_more_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::generate("test CA").unwrap();
    let cert = write(dir.path(), "ca.pem", ca.cert_pem());
    let key = write(dir.path(), "ca.key", &ca.key_pem());
    let again = Authority::load(&cert, &key).unwrap();
    let issued = again.issue(&["app".to_string()], Role::Client).unwrap();
    let der = load_certs(&write(dir.path(), "app.pem", &issued.cert_pem)).unwrap();
    assert_eq!(cert_names(&der[0]), vec!["app"]);
}

#[test]
fn unusable_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write(dir.path(), "junk.pem", "not a certificate\n");
    let err = load_certs(&junk).unwrap_err().to_string();
    assert!(
        err.contains("junk.pem") && err.contains("no certificate"),
        "{err}"
    );
    let missing = dir.path().join("missing.pem");
    let err = load_key(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let ca = Authority::generate("test CA").unwrap();
    let mut files = node_files(dir.path(), &ca, &["node1"]);
    let other = node_files(dir.path(), &ca, &["node2"]);
    files.key = other.key;
    let err = server_config(&files).unwrap_err().to_string();
    assert!(err.contains("does not match its key"), "{err}");
    assert!(ca.issue(&[], Role::Node).is_err());
}

#[test]
fn garbage_is_no_certificate_and_proves_no_name() {
    assert!(cert_names(b"\x30\x03\x02\x01\x00").is_empty());
    assert!(cert_names(&[]).is_empty());
}

#[test]
fn pem_held_in_memory_works_like_files() {
    let ca = Authority::generate("test CA").unwrap();
    let again = Authority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    let issued = again
        .issue(&["op".to_string(), "127.0.0.1".to_string()], Role::Client)
        .unwrap();
    let ders = pem_certs(&issued.cert_pem);
    assert_eq!(ders.len(), 1);
    assert_eq!(cert_names(&ders[0]), vec!["op"]);
    assert!(pem_certs("not pem").is_empty());
    ClientTls::from_pem(ca.cert_pem(), None).unwrap();
    ClientTls::from_pem(ca.cert_pem(), Some((&issued.cert_pem, &issued.key_pem))).unwrap();
    assert!(matches!(
        ClientTls::from_pem("garbage", None),
        Err(TlsError::Bad { .. })
    ));
    assert!(ClientTls::from_pem(ca.cert_pem(), Some((&issued.cert_pem, "no key"))).is_err());
    assert!(ClientTls::from_pem(ca.cert_pem(), Some(("no cert", &issued.key_pem))).is_err());
    assert!(Authority::from_pem(ca.cert_pem(), "no key").is_err());
}
