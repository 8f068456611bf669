//! What a test cluster's nodes and clients prove themselves with: the
//! cluster secret, TLS certificates and client tokens.

use std::path::PathBuf;

use tinykv_client::auth::tls::ClientTls;
use tinykv_client::auth::{write_bundle, Bundle, Secrets, Signer};

use super::Cluster;

impl Cluster {
    /// The TLS and client-auth flags of node `id`, its certificate made on
    /// first use.
    pub(super) fn tls_args(&self, id: &str) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if self.opts.token.is_some() {
            args.extend([
                "--client-auth".into(),
                "token".into(),
                "--client-token-file".into(),
            ]);
            args.push(self.token_file().into_os_string());
        }
        if !self.opts.tls {
            return args;
        }
        let certs = self.certs_dir();
        let cert = certs.join(format!("{id}.pem"));
        if !cert.exists() {
            let names = [id, "localhost", "127.0.0.1"].map(String::from).to_vec();
            let bundle = Bundle {
                nodes: vec![names],
                clients: Vec::new(),
            };
            write_bundle(&certs, &bundle).unwrap_or_else(|e| panic!("certs of {id}: {e}"));
        }
        let key = certs.join(format!("{id}.key"));
        let ca = certs.join("ca.pem");
        args.extend(
            [("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)]
                .into_iter()
                .flat_map(|(flag, path)| [flag.into(), path.into_os_string()]),
        );
        args
    }

    /// Where the cluster's CA and certificates are (`ca.pem`, `ca.key`,
    /// `ID.pem`, `ID.key`, `tester.pem`, `tester.key`).
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The TLS settings of the test clients: the cluster's CA and the
    /// `tester` certificate (none without TLS).
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.opts.tls.then(|| {
            let certs = self.certs_dir();
            let identity = (certs.join("tester.pem"), certs.join("tester.key"));
            ClientTls::load(&certs.join("ca.pem"), Some((&identity.0, &identity.1)))
                .unwrap_or_else(|e| panic!("client TLS: {e}"))
        })
    }

    /// The file of client tokens (`--client-token-file`).
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("client.tokens")
    }

    /// The cluster's secret file, if it has a secret.
    pub fn secret_file(&self) -> Option<PathBuf> {
        self.opts
            .secret
            .as_ref()
            .map(|_| self.dir.path().join("cluster.secret"))
    }

    /// Signs admin calls with the cluster's secret, if it has one.
    pub(super) fn admin_signer(&self) -> Option<Signer> {
        let text = self.opts.secret.as_deref()?;
        let secrets = Secrets::parse(text).unwrap_or_else(|e| panic!("cluster secret: {e}"));
        Some(Signer::new("admin", secrets))
    }
}
