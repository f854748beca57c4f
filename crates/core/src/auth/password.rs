//! Password policy and argon2id hashing.
//!
//! Hashing is slow and memory-hungry on purpose (OWASP: 19 MiB, two passes,
//! one lane), so it runs on the blocking pool, a bounded number at a time.

use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{CoreError, Result};

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Passwords that are refused however long they are: the most common ones in
/// public breach corpora that pass the length rule.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Checks a new password against the policy.
pub fn check_policy(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(CoreError::validation(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(CoreError::validation(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let lowered = password.to_lowercase();
    if COMMON_PASSWORDS.lines().any(|common| common == lowered) {
        return Err(CoreError::validation(
            "password",
            "is too common; choose another",
        ));
    }
    Ok(())
}

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes and verifies passwords off the async runtime.
#[derive(Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the account is
    /// unknown so that a login takes the same time whether or not it exists.
    dummy_hash: Arc<str>,
}

impl PasswordHasherPool {
    /// `concurrency` bounds how many hashes run at once (each holds 19 MiB).
    pub async fn new(concurrency: usize) -> Result<Self> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let dummy = uuid::Uuid::new_v4().to_string();
        let dummy_hash = run_blocking(move || hash_now(&dummy)).await??;
        Ok(PasswordHasherPool {
            permits,
            dummy_hash: dummy_hash.into(),
        })
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let password = password.to_owned();
        run_blocking(move || hash_now(&password)).await?
    }

    /// Verifies `password` against `hash`, or against the dummy hash when
    /// `hash` is `None`, in which case the answer is always false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let (target, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        let password = password.to_owned();
        let ok = run_blocking(move || {
            let parsed = PasswordHash::new(&target)
                .map_err(|e| CoreError::Internal(e.to_string().into()))?;
            Ok::<_, CoreError>(
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await??;
        Ok(ok && real)
    }
}

fn hash_now(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoreError::Internal(e.to_string().into()))
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoreError::Internal(e.to_string().into()))
}

fn closed() -> CoreError {
    CoreError::Internal("password hasher closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(
            check_policy("password1").is_err(),
            "common passwords are refused"
        );
        assert!(
            check_policy("PassWord1").is_err(),
            "case does not hide a common password"
        );
        assert!(check_policy(&"x".repeat(129)).is_err());
        assert!(
            check_policy(&"é".repeat(128)).is_ok(),
            "the limit counts characters, not bytes"
        );
        assert!(check_policy("correct horse battery staple").is_ok());
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let pool = PasswordHasherPool::new(2).await.unwrap();
        let h = pool.hash("a long enough secret").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(pool.verify("a long enough secret", Some(&h)).await.unwrap());
        assert!(!pool.verify("another secret", Some(&h)).await.unwrap());
        assert!(!pool.verify("a long enough secret", None).await.unwrap());
    }
}
