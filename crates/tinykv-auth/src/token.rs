//! The proof a call carries: `v1.<caller id>.<unix ms>.<hex HMAC-SHA256>`,
//! the HMAC keyed by the cluster secret over the method, the caller id and
//! the time.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{AuthError, Secrets};

/// The request header that carries the proof.
pub const HEADER: &str = "tinykv-auth";
/// How far a proof's time may be from the checking node's, either way.
pub const WINDOW_MS: u64 = 60_000;
/// Longest caller id a proof may name.
const MAX_ID_LEN: usize = 253;
/// Longest header accepted (the id, the time, the MAC and separators).
const MAX_HEADER_LEN: usize = 3 + MAX_ID_LEN + 1 + 20 + 1 + 64;

type HmacSha256 = Hmac<Sha256>;

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn mac(secret: &[u8], method: &str, caller: &str, at_ms: u64) -> HmacSha256 {
    // An HMAC takes a key of any length: this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    m.update(b"tinykv-auth-v1\n");
    m.update(method.as_bytes());
    m.update(b"\n");
    m.update(caller.as_bytes());
    m.update(b"\n");
    m.update(at_ms.to_string().as_bytes());
    m
}

/// A node's current secrets, shared by its signer and verifier and
/// replaced as a whole when the secret file is re-read (rotation without a
/// restart).
#[derive(Clone, Debug)]
pub struct Keyring(Arc<RwLock<Secrets>>);

impl Keyring {
    /// A keyring holding `secrets`.
    pub fn new(secrets: Secrets) -> Keyring {
        Keyring(Arc::new(RwLock::new(secrets)))
    }

    /// Replaces the secrets: calls signed and checked from now on use these.
    pub fn replace(&self, secrets: Secrets) {
        match self.0.write() {
            Ok(mut s) => *s = secrets,
            Err(poisoned) => *poisoned.into_inner() = secrets,
        }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&Secrets) -> T) -> T {
        match self.0.read() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

/// Makes the proofs of one caller (a node by its id, or `admin` for the CLI
/// and the operator).
#[derive(Clone, Debug)]
pub struct Signer {
    caller: Arc<str>,
    keys: Keyring,
}

impl Signer {
    /// A signer for `caller` with `secrets` (the first one signs).
    pub fn new(caller: &str, secrets: Secrets) -> Signer {
        Signer::with_keyring(caller, Keyring::new(secrets))
    }

    /// A signer for `caller` with the secrets of `keys`, as they are when
    /// each call is made.
    pub fn with_keyring(caller: &str, keys: Keyring) -> Signer {
        Signer {
            caller: caller.into(),
            keys,
        }
    }

    /// The header value proving a call of `method` (the gRPC path, e.g.
    /// `/tinykv.Admin/Repair`) made at `at_ms`.
    pub fn proof(&self, method: &str, at_ms: u64) -> String {
        let tag = self
            .keys
            .with(|s| mac(s.signing(), method, &self.caller, at_ms))
            .finalize()
            .into_bytes();
        let mut out = format!("v1.{}.{at_ms}.", self.caller);
        for b in tag {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// Checks proofs against a node's secrets and clock.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Keyring,
}

impl Verifier {
    /// A verifier accepting proofs made with any of `secrets`.
    pub fn new(secrets: Secrets) -> Verifier {
        Verifier::with_keyring(Keyring::new(secrets))
    }

    /// A verifier accepting proofs made with any secret `keys` holds when
    /// the call is checked.
    pub fn with_keyring(keys: Keyring) -> Verifier {
        Verifier { keys }
    }

    /// Checks the proof `header` (absent: none was sent) of a call of
    /// `method` received at `now_ms`; on success, the caller it names.
    pub fn verify(
        &self,
        header: Option<&[u8]>,
        method: &str,
        now_ms: u64,
    ) -> Result<String, AuthError> {
        let raw = header.ok_or(AuthError::Missing)?;
        if raw.len() > MAX_HEADER_LEN {
            return Err(AuthError::Malformed("too long"));
        }
        let text = std::str::from_utf8(raw).map_err(|_| AuthError::Malformed("not text"))?;
        let rest = text
            .strip_prefix("v1.")
            .ok_or(AuthError::Malformed("unknown version"))?;
        // The id may hold dots: the time and the MAC are the last two parts.
        let mut parts = rest.rsplitn(3, '.');
        let (tag_hex, at, caller) = match (parts.next(), parts.next(), parts.next()) {
            (Some(t), Some(a), Some(c)) if !c.is_empty() => (t, a, c),
            _ => return Err(AuthError::Malformed("expected v1.<id>.<ms>.<mac>")),
        };
        // The header's length bounds the id only loosely (a short time
        // leaves room for a longer one): the id's own limit is checked.
        if caller.len() > MAX_ID_LEN {
            return Err(AuthError::Malformed("caller id too long"));
        }
        let at_ms: u64 = at.parse().map_err(|_| AuthError::Malformed("bad time"))?;
        let tag = decode_hex(tag_hex).ok_or(AuthError::Malformed("bad MAC"))?;
        let off_ms = now_ms.abs_diff(at_ms);
        if off_ms > WINDOW_MS {
            return Err(AuthError::Stale {
                off_ms,
                limit_ms: WINDOW_MS,
            });
        }
        let verified = self.keys.with(|secrets| {
            secrets
                .all()
                .iter()
                .any(|s| mac(s, method, caller, at_ms).verify_slice(&tag).is_ok())
        });
        if verified {
            Ok(caller.to_string())
        } else {
            Err(AuthError::BadSignature {
                caller: caller.chars().take(64).collect(),
            })
        }
    }
}

/// 32 bytes from 64 hex digits.
fn decode_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "/tinykv.Admin/Repair";

    fn secrets(text: &str) -> Secrets {
        Secrets::parse(text).expect("valid secrets")
    }

    fn pair() -> (Signer, Verifier) {
        let s = secrets("cluster-secret-one-0123456789");
        (Signer::new("node-1.zone.a", s.clone()), Verifier::new(s))
    }

    #[test]
    fn a_proof_verifies_for_its_method_and_names_its_caller() {
        let (signer, verifier) = pair();
        let now = 1_800_000_000_000;
        let p = signer.proof(M, now);
        assert_eq!(
            verifier
                .verify(Some(p.as_bytes()), M, now + 10)
                .expect("valid"),
            "node-1.zone.a"
        );
    }

    #[test]
    fn another_method_caller_time_or_secret_is_refused() {
        let (signer, verifier) = pair();
        let now = 1_800_000_000_000;
        let p = signer.proof(M, now);
        let other = verifier.verify(Some(p.as_bytes()), "/tinykv.Admin/Decommission", now);
        assert!(
            matches!(other, Err(AuthError::BadSignature { .. })),
            "{other:?}"
        );
        let renamed = p.replace("node-1.zone.a", "node-2");
        assert!(matches!(
            verifier.verify(Some(renamed.as_bytes()), M, now),
            Err(AuthError::BadSignature { .. })
        ));
        let retimed = p.replace(&now.to_string(), &(now + 1).to_string());
        assert!(verifier.verify(Some(retimed.as_bytes()), M, now).is_err());
        let foreign =
            Signer::new("node-1.zone.a", secrets("another-cluster-secret-xyz")).proof(M, now);
        assert!(verifier.verify(Some(foreign.as_bytes()), M, now).is_err());
    }

    #[test]
    fn stale_and_future_proofs_are_refused() {
        let (signer, verifier) = pair();
        let now = 1_800_000_000_000;
        let old = signer.proof(M, now - WINDOW_MS - 1);
        assert!(matches!(
            verifier.verify(Some(old.as_bytes()), M, now),
            Err(AuthError::Stale { .. })
        ));
        let ahead = signer.proof(M, now + WINDOW_MS + 1);
        assert!(verifier.verify(Some(ahead.as_bytes()), M, now).is_err());
        let edge = signer.proof(M, now - WINDOW_MS);
        assert!(verifier.verify(Some(edge.as_bytes()), M, now).is_ok());
    }

    #[test]
    fn every_secret_of_the_file_verifies_and_the_first_signs() {
        let old = secrets("old-secret-0123456789abcdef");
        let both = secrets("new-secret-0123456789abcdef\nold-secret-0123456789abcdef");
        let now = 1_800_000_000_000;
        let by_old = Signer::new("n1", old.clone()).proof(M, now);
        let by_new = Signer::new("n2", both.clone()).proof(M, now);
        let rotating = Verifier::new(both);
        assert!(rotating.verify(Some(by_old.as_bytes()), M, now).is_ok());
        assert!(rotating.verify(Some(by_new.as_bytes()), M, now).is_ok());
        assert!(Verifier::new(old)
            .verify(Some(by_new.as_bytes()), M, now)
            .is_err());
    }

    #[test]
    fn a_replaced_keyring_signs_and_verifies_with_its_new_secrets() {
        let keys = Keyring::new(secrets("old-secret-0123456789abcdef"));
        let (signer, verifier) = (
            Signer::with_keyring("n1", keys.clone()),
            Verifier::with_keyring(keys.clone()),
        );
        let now = 1_800_000_000_000;
        let before = signer.proof(M, now);
        keys.replace(secrets("new-secret-0123456789abcdef"));
        let after = signer.proof(M, now);
        assert_ne!(before, after);
        assert!(verifier.verify(Some(after.as_bytes()), M, now).is_ok());
        assert!(verifier.verify(Some(before.as_bytes()), M, now).is_err());
    }

    #[test]
    fn a_caller_id_over_the_limit_is_refused_even_when_signed() {
        // Found by the auth_proof fuzz target: with a 13-digit time the
        // header has room for a 254..=260-byte id, which was accepted.
        let s = secrets("cluster-secret-one-0123456789");
        let verifier = Verifier::new(s.clone());
        let now = 1_800_000_000_000;
        let at_limit = "n".repeat(MAX_ID_LEN);
        let p = Signer::new(&at_limit, s.clone()).proof(M, now);
        assert_eq!(
            verifier.verify(Some(p.as_bytes()), M, now).ok(),
            Some(at_limit)
        );
        let over = "n".repeat(MAX_ID_LEN + 1);
        let p = Signer::new(&over, s).proof(M, now);
        assert!(p.len() <= MAX_HEADER_LEN, "within the header limit");
        assert!(matches!(
            verifier.verify(Some(p.as_bytes()), M, now),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let (_, verifier) = pair();
        let long = "v1.".to_string() + &"x".repeat(4000);
        for bad in [
            &b""[..],
            b"v2.a.1.00",
            b"v1.",
            b"v1..1.00",
            b"v1.a.notatime.00",
            b"v1.a.1.zz",
            b"v1.a.18446744073709551616.00",
            &[0xff, 0xfe, 0x00][..],
            long.as_bytes(),
        ] {
            assert!(verifier.verify(Some(bad), M, 1).is_err(), "{bad:?}");
        }
        assert!(matches!(
            verifier.verify(None, M, 1),
            Err(AuthError::Missing)
        ));
        let odd = format!("v1.a.1.{}", "é".repeat(32));
        assert!(verifier.verify(Some(odd.as_bytes()), M, 1).is_err());
    }
}
