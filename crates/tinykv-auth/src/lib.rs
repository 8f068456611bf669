//! The cluster secret: how a node, the CLI and the operator prove to a node
//! that a node-to-node (`tinykv.internal.Peer`) or admin (`tinykv.Admin`)
//! call comes from someone who holds the cluster's secret.
//!
//! Every such call carries a [`HEADER`] with the caller's id, the time and
//! an HMAC-SHA256 over both and the call's method, keyed by the secret
//! ([`Signer`]). The node checks it ([`Verifier`]) before the call does
//! anything: the signature must verify under one of its secrets and the
//! time must be within [`WINDOW_MS`] of its own, so a captured header is
//! good for that method only, and only for a short while. Binding the
//! method means a header seen on a heartbeat cannot be replayed as a
//! decommission. (Without TLS the traffic itself is readable: see
//! docs/security.md.)
//!
//! A secret file holds one secret a line: the first signs, all verify, so a
//! secret is rotated by adding the new one second everywhere, then moving
//! it first everywhere, then removing the old one, with no failed call.

mod bearer;
mod certs;
mod error;
mod secrets;
mod signed;
pub mod tls;
mod token;

pub use bearer::{bearer, check_bearer, load_token, AUTHORIZATION};
pub use certs::{write_bundle, Authority, Bundle, Issued, Role};
pub use error::{AuthError, TlsError};
pub use secrets::{generate_secret, Secrets, MAX_SECRETS, MIN_SECRET_LEN};
pub use signed::Signed;
pub use token::{now_ms, Keyring, Signer, Verifier, HEADER, WINDOW_MS};
