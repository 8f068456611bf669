//! The cluster-secret proof: `Verifier::verify` on arbitrary header bytes
//! and methods, a signed proof verifying exactly when it should, and
//! `Secrets::parse` on arbitrary text.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tinykv_auth::{AuthError, Secrets, Signer, Verifier, MAX_SECRETS, MIN_SECRET_LEN, WINDOW_MS};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    header: &'a [u8],
    method: &'a str,
    caller: &'a str,
    now_ms: u64,
    skew_ms: i32,
    secrets: &'a str,
}

const SECRET: &str = "fuzzing-cluster-secret-0123456789";
/// Longest caller id a proof may name (`token::MAX_ID_LEN`).
const MAX_ID_LEN: usize = 253;

fn keys() -> &'static Secrets {
    static S: OnceLock<Secrets> = OnceLock::new();
    S.get_or_init(|| Secrets::parse(SECRET).expect("valid secret"))
}

fuzz_target!(|input: Input<'_>| {
    let verifier = Verifier::new(keys().clone());

    // Arbitrary headers: refused (a MAC cannot be guessed), never a panic.
    match verifier.verify(Some(input.header), input.method, input.now_ms) {
        Ok(caller) => assert!(!caller.is_empty()),
        Err(AuthError::Missing) => panic!("a header was given"),
        Err(_) => {}
    }
    assert!(matches!(
        verifier.verify(None, input.method, input.now_ms),
        Err(AuthError::Missing)
    ));

    // A proof signed with the secret verifies, for its method, within the
    // window, and names its caller; another method never verifies.
    let at = input.now_ms.saturating_add_signed(i64::from(input.skew_ms));
    let proof = Signer::new(input.caller, keys().clone()).proof(input.method, at);
    let got = verifier.verify(Some(proof.as_bytes()), input.method, input.now_ms);
    let expect = !input.caller.is_empty()
        && input.caller.len() <= MAX_ID_LEN
        && at.abs_diff(input.now_ms) <= WINDOW_MS;
    match &got {
        Ok(caller) => {
            assert!(expect, "accepted {proof:?} at {}", input.now_ms);
            assert_eq!(caller, input.caller);
        }
        Err(e) => assert!(!expect, "refused {proof:?} at {}: {e}", input.now_ms),
    }
    let other = format!("{}/", input.method);
    assert!(verifier
        .verify(Some(proof.as_bytes()), &other, input.now_ms)
        .is_err());

    // Secret files: what parses is 1..=MAX_SECRETS trimmed secrets of at
    // least MIN_SECRET_LEN bytes, and they sign and verify.
    if let Ok(s) = Secrets::parse(input.secrets) {
        assert!((1..=MAX_SECRETS).contains(&s.all().len()));
        for secret in s.all() {
            assert!(secret.len() >= MIN_SECRET_LEN);
            assert_eq!(secret.trim_ascii(), &secret[..]);
        }
        let p = Signer::new("node-1", s.clone()).proof("/m", input.now_ms);
        assert_eq!(
            Verifier::new(s)
                .verify(Some(p.as_bytes()), "/m", input.now_ms)
                .ok()
                .as_deref(),
            Some("node-1")
        );
    }
});
