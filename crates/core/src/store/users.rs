//! Accounts.

use sqlx::FromRow;

use super::{contains_pattern, Store};
use crate::error::{is_unique_violation, CoreError, Result};

/// A `users` row as stored.
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: String,
    /// 0 or 1: the `Any` driver carries no booleans from SQLite.
    pub disabled: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What creating an account needs.
pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub now: i64,
}

/// Filters of the admin listing.
#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    /// Matched anywhere in email, username or display name, ignoring case.
    pub text: Option<String>,
    pub role: Option<String>,
}

const COLUMNS: &str =
    "id, email, username, display_name, password_hash, role, disabled, created_at, updated_at";

impl Store {
    /// Inserts an account; a taken email or username is a conflict naming which.
    pub async fn insert_user(&self, u: &NewUser<'_>) -> Result<UserRow> {
        let sql = format!(
            "INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(u.id)
            .bind(u.email)
            .bind(u.username)
            .bind(u.display_name)
            .bind(u.password_hash)
            .bind(u.role)
            .bind(u.now)
            .fetch_one(self.pool())
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    let text = e.to_string();
                    if text.contains("email") {
                        return CoreError::conflict(
                            "email_taken",
                            "an account with this email exists",
                        );
                    }
                    return CoreError::conflict("username_taken", "this username is taken");
                }
                e.into()
            })
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        self.user_where("id", id).await
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>> {
        self.user_where("username", username).await
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        self.user_where("email", email).await
    }

    /// The user whose `column` (one of the unique ones) holds `value`.
    async fn user_where(&self, column: &'static str, value: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE {column} = $1");
        Ok(sqlx::query_as(&sql)
            .bind(value)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn set_display_name(
        &self,
        id: &str,
        name: &str,
        now: i64,
    ) -> Result<Option<UserRow>> {
        let sql = format!(
            "UPDATE users SET display_name = $2, updated_at = $3 WHERE id = $1 RETURNING {COLUMNS}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .bind(name)
            .bind(now)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Sets a user's role, refusing to leave the server without an enabled super_admin.
    pub async fn set_role(&self, id: &str, role: &str, now: i64) -> Result<Option<UserRow>> {
        let mut tx = self.begin_write().await?;
        let Some(current) = user_in(&mut tx, id).await? else {
            return Ok(None);
        };
        if current.role == "super_admin" && role != "super_admin" {
            self.keep_a_super_admin(&mut tx, id, "the last super_admin cannot be demoted")
                .await?;
        }
        let sql = format!(
            "UPDATE users SET role = $2, updated_at = $3 WHERE id = $1 RETURNING {COLUMNS}"
        );
        let row = sqlx::query_as(&sql)
            .bind(id)
            .bind(role)
            .bind(now)
            .fetch_optional(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Disables or enables an account. Disabling revokes every session of the account
    /// in the same transaction, and refuses to disable the last enabled super_admin.
    pub async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        now: i64,
    ) -> Result<Option<UserRow>> {
        let mut tx = self.begin_write().await?;
        let Some(current) = user_in(&mut tx, id).await? else {
            return Ok(None);
        };
        if disabled && current.role == "super_admin" && current.disabled == 0 {
            self.keep_a_super_admin(
                &mut tx,
                id,
                "the last enabled super_admin cannot be disabled",
            )
            .await?;
        }
        let sql = format!(
            "UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1 RETURNING {COLUMNS}"
        );
        let row = sqlx::query_as(&sql)
            .bind(id)
            .bind(i64::from(disabled))
            .bind(now)
            .fetch_optional(&mut *tx.tx)
            .await?;
        if disabled {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Refuses (`last_super_admin`, with `refusal`) a change that would leave
    /// the server without an enabled super_admin once `id` is one no more.
    /// On PostgreSQL the set of super_admins is locked first, so two
    /// concurrent changes cannot both see "one other left"; SQLite's write
    /// lock already does this.
    async fn keep_a_super_admin(
        &self,
        tx: &mut super::WriteTx,
        id: &str,
        refusal: &'static str,
    ) -> Result<()> {
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT id FROM users WHERE role = 'super_admin' FOR UPDATE")
                .execute(&mut *tx.tx)
                .await?;
        }
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE role = 'super_admin' AND disabled = 0 AND id <> $1",
        )
        .bind(id)
        .fetch_one(&mut *tx.tx)
        .await?;
        if others == 0 {
            return Err(CoreError::conflict("last_super_admin", refusal));
        }
        Ok(())
    }

    /// Accounts in creation order, after the id `after`.
    pub async fn list_users(
        &self,
        filter: &UserFilter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UserRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users \
             WHERE ($1 IS NULL OR LOWER(email) LIKE $1 ESCAPE '\\' OR LOWER(username) LIKE $1 ESCAPE '\\' \
                    OR LOWER(display_name) LIKE $1 ESCAPE '\\') \
               AND ($2 IS NULL OR role = $2) \
               AND ($3 IS NULL OR id > $3) \
             ORDER BY id LIMIT $4"
        );
        let pattern = filter
            .text
            .as_deref()
            .map(|t| contains_pattern(&t.to_lowercase()));
        Ok(sqlx::query_as(&sql)
            .bind(pattern)
            .bind(filter.role.as_deref())
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }
}

/// A user as the write transaction `tx` sees it.
async fn user_in(tx: &mut super::WriteTx, id: &str) -> Result<Option<UserRow>> {
    Ok(
        sqlx::query_as::<_, UserRow>(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx.tx)
            .await?,
    )
}
