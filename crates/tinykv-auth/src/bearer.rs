//! Client tokens (`--client-auth token`): a client-plane call carries
//! `authorization: Bearer TOKEN`, and the node accepts it when the token is
//! one of the lines of its token file (a [`Keyring`], so the file is
//! re-read on SIGHUP and tokens rotate like cluster secrets).

use crate::error::AuthError;
use crate::token::Keyring;

/// The header a token travels in.
pub const AUTHORIZATION: &str = "authorization";

/// Whether `header` (the `authorization` value, if any) carries one of the
/// tokens of `keys`. Compared in time independent of where the bytes differ.
pub fn check_bearer(keys: &Keyring, header: Option<&[u8]>) -> Result<(), AuthError> {
    let header = header.ok_or(AuthError::NoToken)?;
    let token = header
        .strip_prefix(b"Bearer ")
        .or_else(|| header.strip_prefix(b"bearer "))
        .ok_or(AuthError::Malformed("authorization is not `Bearer TOKEN`"))?;
    let token = token.trim_ascii();
    let known = keys.with(|s| s.all().iter().any(|t| same(t, token)));
    if known {
        Ok(())
    } else {
        Err(AuthError::UnknownToken)
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a client sends: the first line of the token file at `path`
/// (the file format of `--client-token-file`).
pub fn load_token(path: &std::path::Path) -> Result<String, AuthError> {
    let tokens = crate::secrets::Secrets::load(path)?;
    Ok(String::from_utf8_lossy(tokens.signing()).into_owned())
}

/// The `authorization` value that presents `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {}", token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secrets;

    #[test]
    fn only_a_listed_token_in_a_bearer_header_passes() {
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        let keys = Keyring::new(Secrets::parse(&format!("{a}\n{b}\n")).unwrap());
        assert!(check_bearer(&keys, Some(bearer(&a).as_bytes())).is_ok());
        assert!(check_bearer(&keys, Some(bearer(&b).as_bytes())).is_ok());
        let c = "c".repeat(32);
        assert!(matches!(
            check_bearer(&keys, Some(bearer(&c).as_bytes())),
            Err(AuthError::UnknownToken)
        ));
        assert!(matches!(check_bearer(&keys, None), Err(AuthError::NoToken)));
        assert!(matches!(
            check_bearer(&keys, Some(a.as_bytes())),
            Err(AuthError::Malformed(_))
        ));
        let prefix = &a[..31];
        assert!(check_bearer(&keys, Some(bearer(prefix).as_bytes())).is_err());
        keys.replace(Secrets::parse(&format!("{c}\n")).unwrap());
        assert!(check_bearer(&keys, Some(bearer(&a).as_bytes())).is_err());
        assert!(check_bearer(&keys, Some(bearer(&c).as_bytes())).is_ok());
    }
}
