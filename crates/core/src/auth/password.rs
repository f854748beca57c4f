//! Password policy and argon2id hashing.
//!
//! Hashing is slow and memory-hungry on purpose (OWASP: 19 MiB, two passes,
//! one lane), so it runs on the blocking pool, a bounded number at a time.
//!
//! The 19 MiB each hash works in is allocated once per permit, when the pool
//! is made, and lent to the hash that holds the permit. Were each hash to
//! allocate its own, the allocator would serve it from the arena of whichever
//! blocking thread ran it and keep it there after the free: bursts of logins
//! spread over many threads then leave many such blocks resident, and memory
//! grows far past `concurrency × 19 MiB` and is never given back.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{
    rand_core::{OsRng, RngCore},
    Output, PasswordHash, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid")
}

/// The salt of a new hash, in bytes.
const SALT_BYTES: usize = 16;

/// One hash's working memory, lent to one hash at a time.
type Blocks = Vec<Block>;

/// Hashes and verifies passwords off the async runtime.
#[derive(Clone)]
pub struct PasswordHasherPool {
    /// One permit per buffer in `buffers`: whoever holds a permit finds a buffer.
    permits: Arc<Semaphore>,
    buffers: Arc<Mutex<Vec<Blocks>>>,
    /// A hash of a random password, verified against when the account is
    /// unknown so that a login takes the same time whether or not it exists.
    dummy_hash: Arc<str>,
}

impl PasswordHasherPool {
    /// `concurrency` bounds how many hashes run at once; each holds 19 MiB,
    /// allocated here, and no hash allocates more than its small inputs.
    pub async fn new(concurrency: usize) -> Result<Self> {
        let concurrency = concurrency.max(1);
        let blocks = params().block_count();
        // Filling the buffers makes them resident now: the whole budget is
        // taken at start, where an operator sees it, not under a burst of logins.
        let buffers = (0..concurrency)
            .map(|_| vec![Block::default(); blocks])
            .collect();
        let mut pool = PasswordHasherPool {
            permits: Arc::new(Semaphore::new(concurrency)),
            buffers: Arc::new(Mutex::new(buffers)),
            dummy_hash: Arc::from(""),
        };
        let dummy = uuid::Uuid::new_v4().to_string();
        pool.dummy_hash = pool.hash(&dummy).await?.into();
        Ok(pool)
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        self.with_buffer(move |blocks| hash_with(&password, blocks))
            .await?
    }

    /// Verifies `password` against `hash`, or against the dummy hash when
    /// `hash` is `None`, in which case the answer is always false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        let (target, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        let password = password.to_owned();
        let ok = self
            .with_buffer(move |blocks| verify_with(&password, &target, blocks))
            .await??;
        Ok(ok && real)
    }

    /// Runs `f` on the blocking pool with a buffer of its own, waiting for a
    /// permit first; the buffer goes back to the pool however `f` ends.
    async fn with_buffer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Blocks) -> T + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            // The permit lives as long as the hash, not the request: a client
            // that hangs up mid-login frees its request at once, but its hash
            // still runs, and its buffer is not free until it ends. (Dropped
            // after `blocks`, so the buffer is back before the permit.)
            let _permit = permit;
            let mut blocks = Loan::take(&buffers)?;
            Ok::<T, CoreError>(f(&mut blocks.0))
        })
        .await
        .map_err(|e| CoreError::Internal(e.to_string().into()))?
    }
}

/// A buffer taken from the pool, put back when dropped (a panicking hash included).
struct Loan<'a>(Blocks, &'a Mutex<Vec<Blocks>>);

impl<'a> Loan<'a> {
    fn take(pool: &'a Mutex<Vec<Blocks>>) -> Result<Self> {
        let mut free = pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The caller holds one of as many permits as there are buffers.
        let blocks = free
            .pop()
            .ok_or_else(|| CoreError::Internal("no free hashing buffer".into()))?;
        Ok(Loan(blocks, pool))
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        let blocks = std::mem::take(&mut self.0);
        let mut free = self
            .1
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        free.push(blocks);
    }
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `password`
/// under a new random salt, computed in `blocks`.
fn hash_with(password: &str, blocks: &mut Blocks) -> Result<String> {
    let mut salt = [0u8; SALT_BYTES];
    OsRng.fill_bytes(&mut salt);
    let params = params();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut blocks[..])
        .map_err(internal)?;
    let salt = SaltString::encode_b64(&salt).map_err(internal)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(internal)?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `stored`, computed in `blocks`
/// with the stored hash's own algorithm, version, parameters and salt, and
/// compared in constant time. A stored hash asking for more memory than a
/// buffer holds (only an older, costlier setting could) gets its own for once.
fn verify_with(password: &str, stored: &str, blocks: &mut Blocks) -> Result<bool> {
    let parsed = PasswordHash::new(stored).map_err(internal)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(internal)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(internal)?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(internal)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(CoreError::Internal(
            "stored password hash lacks salt or hash".into(),
        ));
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(internal)?;
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let needed = params.block_count();
    let computed = if needed <= blocks.len() {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..])
    } else {
        tracing::warn!(
            m_cost = params.m_cost(),
            "verifying a password hash costlier than the configured one"
        );
        argon2.hash_password_into(password.as_bytes(), salt, &mut out)
    };
    computed.map_err(internal)?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(internal)? == expected)
}

fn internal(e: impl std::fmt::Display) -> CoreError {
    CoreError::Internal(e.to_string().into())
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

    #[tokio::test]
    async fn hashes_stored_before_and_after_read_the_same() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let pool = PasswordHasherPool::new(1).await.unwrap();
        let standard = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        // A hash written by the crate's own hasher, as accounts created
        // before the pooled buffers hold, still verifies...
        let salt = SaltString::generate(&mut OsRng);
        let old = standard
            .hash_password(b"a long enough secret", &salt)
            .unwrap()
            .to_string();
        assert!(pool
            .verify("a long enough secret", Some(&old))
            .await
            .unwrap());
        assert!(!pool
            .verify("a long enough secreT", Some(&old))
            .await
            .unwrap());
        // ...and one written now is one the crate's verifier accepts.
        let new = pool.hash("a long enough secret").await.unwrap();
        let parsed = PasswordHash::new(&new).unwrap();
        assert!(standard
            .verify_password(b"a long enough secret", &parsed)
            .is_ok());
        // A cheaper stored hash is verified with its own parameters.
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"a long enough secret", &salt)
        .unwrap()
        .to_string();
        assert!(pool
            .verify("a long enough secret", Some(&cheap))
            .await
            .unwrap());
        assert!(pool.verify("x", Some("not a hash")).await.is_err());
    }

    #[tokio::test]
    async fn a_login_abandoned_mid_hash_keeps_its_permit_until_the_hash_ends() {
        let pool = PasswordHasherPool::new(1).await.unwrap();
        // One poll starts the hash on the blocking pool; dropping the future
        // then is what a client hanging up does.
        {
            let abandoned = std::pin::pin!(pool.verify("guess", None));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(std::future::Future::poll(abandoned, &mut cx).is_pending());
        }
        // The next login waits for that hash's buffer instead of finding none.
        assert!(!pool.verify("another guess", None).await.unwrap());
        assert_eq!(pool.buffers.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn buffers_are_lent_not_allocated() {
        let pool = PasswordHasherPool::new(2).await.unwrap();
        let logins = (0..6).map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.verify(&format!("guess {i}"), None).await })
        });
        for login in logins {
            assert!(!login.await.unwrap().unwrap());
        }
        let free = pool.buffers.lock().unwrap();
        assert_eq!(free.len(), 2, "every buffer came back");
        assert!(free.iter().all(|b| b.len() == params().block_count()));
    }
}
