//! What can go wrong reading secrets or checking a call's proof.

use std::path::PathBuf;

/// Why a secret file could not be used, or why a call's proof was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The secret file could not be read.
    #[error("reading the cluster secret file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The secret file is not a usable list of secrets.
    #[error("cluster secret file {path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The call carries no proof.
    #[error("no cluster credentials: this call needs the cluster secret (--cluster-secret-file)")]
    Missing,
    /// A client-plane call carries no token (`--client-auth token`).
    #[error("this node requires a client token: send `authorization: Bearer TOKEN` (the CLI's --token-file)")]
    NoToken,
    /// The token is not one of the node's.
    #[error("the client token is not accepted by this node")]
    UnknownToken,
    /// The proof is not of the expected form.
    #[error("malformed cluster credentials: {0}")]
    Malformed(&'static str),
    /// The proof was made too long before or after this node's time.
    #[error("cluster credentials are {off_ms} ms off this node's clock (limit {limit_ms} ms): replayed, or a clock is wrong")]
    Stale {
        /// How far the proof's time is from the node's.
        off_ms: u64,
        /// The window.
        limit_ms: u64,
    },
    /// The signature does not verify under any of the node's secrets.
    #[error("cluster credentials of {caller:?} do not match this node's cluster secret")]
    BadSignature {
        /// Who the call claims to come from.
        caller: String,
    },
}

/// Why TLS could not be set up from the files or names given.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An address cannot be dialled.
    #[error("invalid address {addr:?}: {reason}")]
    Address {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The TLS library refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}
