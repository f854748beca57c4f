//! The access-token signing secret: configured, or generated into the data
//! directory on first start (mode 0600) and reused afterwards.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use roost_core::auth::token::{random_token, MIN_SECRET_BYTES};

const FILE: &str = "jwt_secret";

/// Words of the values that sample configurations and guides put where a
/// secret goes. A secret holding one was copied, not chosen, and anyone who
/// read the same guide knows it. These are long enough that a random secret
/// holds one by chance about never; they count with separators taken out
/// (`change-me`, `CHANGE_ME`).
const PLACEHOLDER_WORDS: &[&str] = &["changeme", "replaceme", "placeholder", "example"];

/// Short words of sample values (`your-turn-secret-here`): they count only
/// as whole words between separators, since a random URL-safe secret holds
/// `-here` or `your_` now and then (a few in a million).
const PLACEHOLDER_PARTS: &[&str] = &["your", "here"];

/// Why `secret` is a placeholder rather than a secret, or `None`: a known
/// sample value, one character repeated, or a pattern of at most four
/// characters repeated. Length is checked apart; these pass any length rule.
pub fn placeholder(secret: &str) -> Option<&'static str> {
    let lower = secret.to_ascii_lowercase();
    let squashed: String = lower.chars().filter(char::is_ascii_alphanumeric).collect();
    if PLACEHOLDER_WORDS.iter().any(|w| squashed.contains(w))
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|part| PLACEHOLDER_PARTS.contains(&part))
    {
        return Some("is a sample value from a guide or template");
    }
    let bytes = secret.as_bytes();
    let repeats = |period: usize| {
        bytes.len() >= 2 * period && bytes.iter().zip(&bytes[period..]).all(|(a, b)| a == b)
    };
    if repeats(1) {
        return Some("is one character repeated");
    }
    if (2..=4).any(repeats) {
        return Some("is a short pattern repeated");
    }
    None
}

/// The secret to sign with.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < MIN_SECRET_BYTES {
                bail!(
                    "{} holds fewer than {MIN_SECRET_BYTES} bytes; delete it to generate a new one",
                    path.display()
                );
            }
            if let Some(why) = placeholder(secret) {
                bail!(
                    "{} {why}, not a secret; delete it to generate a new one",
                    path.display()
                );
            }
            let mode = std::fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the signing secret is readable by others; chmod 600 it");
            }
            Ok(secret.as_bytes().to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_token(48);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new signing secret");
            Ok(secret.into_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_with_mode_0600_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(None, dir.path()).unwrap();
        assert!(first.len() >= MIN_SECRET_BYTES);
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(None, dir.path()).unwrap(), first);
    }

    #[test]
    fn placeholders_are_told_from_secrets() {
        for sample in [
            "changemechangeme",
            "CHANGEME-please-0123456789abcdef",
            "your-turn-secret-here",
            "put-your-jwt-secret-here-0123456",
            &"x".repeat(48),
            &"ab".repeat(16),
            &"0123".repeat(8),
        ] {
            assert!(placeholder(sample).is_some(), "{sample:?} is a placeholder");
        }
        for secret in [
            "0123456789abcdef0123456789abcdef",
            "a secret shared with coturn, 32+ bytes",
            "browser-test-secret-0123456789",
            // Random secrets may hold the short words inside a longer run.
            "k3J-hereT0aZ_your9PqLmN4b8sVw2Yx",
            &random_token(48),
        ] {
            assert_eq!(placeholder(secret), None, "{secret:?} is a secret");
        }
    }

    #[test]
    fn a_placeholder_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "z".repeat(40)).unwrap();
        let err = load_or_create(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("one character repeated"), "{err}");
    }

    #[test]
    fn a_short_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "short").unwrap();
        assert!(load_or_create(None, dir.path()).is_err());
    }
}
