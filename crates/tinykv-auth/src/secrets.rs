//! Secret files: one secret a line, the first used to sign.

use std::path::Path;

use crate::AuthError;

/// Shortest secret accepted, in bytes: shorter ones can be guessed.
pub const MIN_SECRET_LEN: usize = 16;
/// Most secrets one file may hold (rotation needs two).
pub const MAX_SECRETS: usize = 8;
/// Largest secret file read.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A node's secrets: the first signs, every one verifies.
#[derive(Clone)]
pub struct Secrets(Vec<Vec<u8>>);

impl std::fmt::Debug for Secrets {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    /// Reads the secrets of the file at `path`: one a line, blank lines and
    /// lines starting with `#` skipped, surrounding whitespace trimmed.
    pub fn load(path: &Path) -> Result<Secrets, AuthError> {
        let read = |source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_FILE_BYTES {
            return Err(AuthError::BadFile {
                path: path.to_path_buf(),
                reason: format!("{len} bytes; the limit is {MAX_FILE_BYTES}"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Secrets::parse(&text).map_err(|reason| AuthError::BadFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The secrets of a file's text (see [`Secrets::load`]).
    pub fn parse(text: &str) -> Result<Secrets, String> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let s = line.trim();
            if s.is_empty() || s.starts_with('#') {
                continue;
            }
            if s.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "the secret on line {} is {} bytes; at least {MIN_SECRET_LEN} are needed",
                    n + 1,
                    s.len()
                ));
            }
            out.push(s.as_bytes().to_vec());
        }
        if out.is_empty() {
            return Err(
                "no secret in it (one a line; create one with `tinykv_client secret`)".into(),
            );
        }
        if out.len() > MAX_SECRETS {
            return Err(format!(
                "{} secrets; at most {MAX_SECRETS} are accepted",
                out.len()
            ));
        }
        Ok(Secrets(out))
    }

    /// The secret calls are signed with.
    pub fn signing(&self) -> &[u8] {
        &self.0[0]
    }

    /// Every secret a proof may verify under.
    pub fn all(&self) -> &[Vec<u8>] {
        &self.0
    }
}

/// A new random secret: 32 random bytes as 64 hex digits.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_blanks() {
        let s = Secrets::parse(
            "# rotated 2026-12\n\n  first-secret-0123456789  \nsecond-secret-0123456789\n",
        )
        .expect("valid");
        assert_eq!(s.signing(), b"first-secret-0123456789");
        assert_eq!(s.all().len(), 2);
    }

    #[test]
    fn short_empty_and_too_many_are_refused() {
        assert!(Secrets::parse("short\n").unwrap_err().contains("line 1"));
        assert!(Secrets::parse("# only a comment\n\n").is_err());
        let many = (0..=MAX_SECRETS)
            .map(|i| format!("secret-number-{i:04}-xxxxxxxx\n"))
            .collect::<String>();
        assert!(Secrets::parse(&many).is_err());
    }

    #[test]
    fn generated_secrets_are_long_and_differ() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(Secrets::parse(&a).is_ok());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let s = Secrets::parse("a-very-secret-value-123").expect("valid");
        assert!(!format!("{s:?}").contains("secret-value"));
    }

    #[test]
    fn files_are_read_and_bounded() {
        let dir = std::env::temp_dir().join(format!("tinykv-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ok = dir.join("ok");
        std::fs::write(&ok, "0123456789abcdef0123\n").expect("write");
        assert!(Secrets::load(&ok).is_ok());
        let big = dir.join("big");
        std::fs::write(&big, vec![b'a'; 70 * 1024]).expect("write");
        assert!(matches!(
            Secrets::load(&big),
            Err(AuthError::BadFile { .. })
        ));
        assert!(matches!(
            Secrets::load(&dir.join("missing")),
            Err(AuthError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
