//! The node's security settings, made once at start from the flags, and
//! re-read on SIGHUP: the cluster secrets, the client tokens and the TLS
//! certificates (both the server's and the one it dials peers with). A
//! file that cannot be used on reload is logged and what is in use is
//! kept, so a bad edit never takes a running node down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tinykv_auth::tls::{self, ClientTls, TlsFiles};
use tinykv_auth::{Keyring, Secrets};
use tokio_util::sync::CancellationToken;

use super::build;
use super::incoming::TlsState;
use crate::config::{ClientAuth, Config};
use crate::dialer::Dialer;
use crate::error::NodeError;
use crate::guard::{ClientCheck, ClientGate, Guard};
use crate::metrics::Metrics;

/// What guards a node's planes.
pub struct Security {
    /// The check on peer and admin calls.
    pub guard: Arc<Guard>,
    /// The check on client calls, when `--client-auth` asks for one.
    pub client: Option<Arc<ClientCheck>>,
    /// The server's TLS settings, when TLS is on.
    pub tls: Option<Arc<TlsState>>,
    reload: Reload,
}

/// What SIGHUP re-reads.
#[derive(Clone)]
struct Reload {
    secrets: Option<(Keyring, PathBuf)>,
    tokens: Option<(Keyring, PathBuf)>,
    tls: Option<(Arc<TlsState>, TlsFiles)>,
}

fn config_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Config(e.to_string())
}

impl Security {
    /// The settings of `config` for a node listening on `local` that signs
    /// with `keys`.
    pub fn new(
        config: &Config,
        local: SocketAddr,
        keys: Option<&Keyring>,
        metrics: &Metrics,
    ) -> Result<Security, NodeError> {
        let mode = build::guard_mode(config, local, keys)?;
        let files = config.tls_files();
        let guard = Guard::new(
            mode,
            metrics.auth_refused.clone(),
            files.is_some(),
            config.auth_permissive,
        );
        let tls = match &files {
            Some(f) => Some(TlsState::new(tls::server_config(f).map_err(config_err)?)),
            None => None,
        };
        let tokens = match &config.client_token_file {
            Some(path) => Some((
                Secrets::load(path).map(Keyring::new).map_err(config_err)?,
                path.clone(),
            )),
            None => None,
        };
        let gate = match config.client_auth {
            ClientAuth::None => None,
            ClientAuth::Token => tokens.as_ref().map(|(k, _)| ClientGate::Token(k.clone())),
            ClientAuth::Cert => Some(ClientGate::Cert),
        };
        Ok(Security {
            guard,
            client: gate.map(|g| ClientCheck::new(g, metrics.auth_refused.clone())),
            reload: Reload {
                secrets: keys.cloned().zip(config.cluster_secret_file.clone()),
                tokens,
                tls: tls.clone().zip(files),
            },
            tls,
        })
    }

    /// A short description for the start-up log line.
    pub fn describe(&self, config: &Config) -> String {
        format!(
            "{}{}, client-auth {:?}",
            self.guard.mode_name(),
            if self.tls.is_some() { " + TLS" } else { "" },
            config.client_auth
        )
        .to_lowercase()
    }

    /// Re-reads every file on SIGHUP until `shutdown`; `dialer` gets the
    /// new certificate for calls to peers.
    pub fn spawn_reload(
        &self,
        dialer: Arc<Dialer>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(reload_on_sighup(self.reload.clone(), dialer, shutdown))
    }
}

impl Reload {
    fn run(&self, dialer: &Dialer) {
        if let Some((keys, path)) = &self.secrets {
            reread(keys, path, "cluster secrets");
        }
        if let Some((keys, path)) = &self.tokens {
            reread(keys, path, "client tokens");
        }
        if let Some((state, files)) = &self.tls {
            match tls::server_config(files).and_then(|s| Ok((s, ClientTls::for_node(files)?))) {
                Ok((server, client)) => {
                    state.replace(server);
                    dialer.replace(client);
                    tracing::info!(cert = %files.cert.display(), "TLS certificates re-read; new connections use them");
                }
                Err(error) => {
                    tracing::error!(%error, "TLS files not re-read; the certificates in use are kept")
                }
            }
        }
    }
}

/// Replaces `keys` with the file at `path` (`what` names it in the log);
/// a file that cannot be used leaves the keys in use.
fn reread(keys: &Keyring, path: &std::path::Path, what: &str) {
    match Secrets::load(path) {
        Ok(s) => {
            let count = s.all().len();
            keys.replace(s);
            tracing::info!(path = %path.display(), count, "{what} re-read");
        }
        Err(error) => tracing::error!(%error, "{what} not re-read; the ones in use are kept"),
    }
}

async fn reload_on_sighup(reload: Reload, dialer: Arc<Dialer>, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "no SIGHUP handler: secrets and certificates are read only at start");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                reload.run(&dialer);
            }
        }
    }
}
