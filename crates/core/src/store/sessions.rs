//! Login sessions and their rotating refresh tokens.
//!
//! A session is one refresh-token family. Each refresh marks the presented
//! token used and issues the next; presenting a used token again means it was
//! stolen or replayed, so the whole session is revoked. The one exception is
//! a client that never received the answer to its refresh (a reload or a
//! dropped connection cut it off): for a short grace period after its use, and
//! only while no token issued after it has been used, a token may be
//! exchanged again.

use sqlx::FromRow;

use super::Store;
use crate::error::Result;

/// A `sessions` row joined with what authorising a request needs of its user.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub role: String,
    pub disabled: i64,
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The token was current: it is now used, and `new_hash` is the next one.
    Rotated { session_id: String, user_id: String },
    /// The token had been used before: the session is now revoked.
    Reused { session_id: String, user_id: String },
    /// Unknown token, or its session is revoked, expired or its user disabled.
    Invalid,
}

impl Store {
    /// Creates a session and its first refresh token.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_session(
        &self,
        session_id: &str,
        user_id: &str,
        token_hash: &str,
        now: i64,
        expires_at: i64,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip) \
             VALUES ($1, $2, $3, $3, $4, $5, $6)",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .bind(user_agent)
        .bind(ip)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Exchanges the refresh token hashed as `token_hash` for `new_hash`. A
    /// token used at most `grace_ms` ago, none of whose successors has been
    /// used, is exchanged again rather than treated as replayed.
    pub async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
        grace_ms: i64,
    ) -> Result<RefreshOutcome> {
        let mut tx = self.begin_write().await?;
        let found: Option<(String, Option<i64>, String)> = sqlx::query_as(
            "SELECT t.session_id, t.used_at, s.user_id FROM refresh_tokens t \
             JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some((session_id, used_at, owner)) = found else {
            return Ok(RefreshOutcome::Invalid);
        };
        // Marking the token used is the claim on it: of two racing refreshes only one updates a row.
        let claimed = used_at.is_none()
            && sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
            )
            .bind(token_hash)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected()
                == 1;
        // Read unused but claimed by a concurrent refresh meanwhile: when?
        let used_at = match used_at {
            None if !claimed => {
                sqlx::query_scalar("SELECT used_at FROM refresh_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_one(&mut *tx.tx)
                    .await?
            }
            known => known,
        };
        let retried = match used_at {
            Some(used_at) if !claimed && grace_ms > 0 && now - used_at <= grace_ms => {
                // A successor in use means the client did get its answer.
                let successors_used: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM refresh_tokens WHERE session_id = $1 \
                     AND created_at >= $2 AND used_at IS NOT NULL AND token_hash <> $3",
                )
                .bind(&session_id)
                .bind(used_at)
                .bind(token_hash)
                .fetch_one(&mut *tx.tx)
                .await?;
                successors_used == 0
            }
            _ => false,
        };
        if !claimed && !retried {
            sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(&session_id)
                .bind(now)
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Reused {
                session_id,
                user_id: owner,
            });
        }
        let session = self.session_in(&mut tx, &session_id).await?;
        let usable = session
            .as_ref()
            .is_some_and(|s| s.revoked_at.is_none() && s.expires_at > now && s.disabled == 0);
        let Some(session) = session.filter(|_| usable) else {
            // Leave the token unused: the session is dead anyway.
            return Ok(RefreshOutcome::Invalid);
        };
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(new_hash)
        .bind(&session_id)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("UPDATE sessions SET last_used_at = $2, expires_at = $3 WHERE id = $1")
            .bind(&session_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated {
            session_id,
            user_id: session.user_id,
        })
    }

    async fn session_in(&self, tx: &mut super::WriteTx, id: &str) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(SESSION_SQL)
            .bind(id)
            .fetch_optional(&mut *tx.tx)
            .await?)
    }

    /// The session with its user's role and state, for authorising a request.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(SESSION_SQL)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Revokes one session; true if it was live.
    pub async fn revoke_session(&self, id: &str, now: i64) -> Result<bool> {
        let r =
            sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(self.pool())
                .await?;
        Ok(r.rows_affected() == 1)
    }
}

const SESSION_SQL: &str = "SELECT s.id, s.user_id, s.expires_at, s.revoked_at, u.role, u.disabled \
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1";
