//! Accounts and sessions: registration, login, refresh-token rotation,
//! logout, and turning an access token into an [`Actor`].

pub mod password;
pub mod token;

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{CoreError, Result};
use crate::events::{Bus, BusEvent};
use crate::model::{Actor, Role, User};
use crate::store::convert::{parse_id, user_from_row};
use crate::store::{NewUser, RefreshOutcome, Store};
use crate::users::{normalize_display_name, normalize_email, normalize_username};
use password::PasswordHasherPool;
use token::{hash_refresh_token, random_token, Claims, TokenKeys};

/// Settings of accounts and sessions.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Access token lifetime; at most [`token::MAX_ACCESS_TTL_SECS`].
    pub access_ttl: Duration,
    /// A session lapses after this long without a refresh.
    pub refresh_ttl: Duration,
    /// How long after its use a refresh token may be exchanged again, for a
    /// client whose refresh answer was lost; zero turns this off.
    pub refresh_reuse_grace: Duration,
    /// An account registering with this email becomes super_admin.
    pub super_admin_email: Option<String>,
    /// Whether `POST /v1/auth/register` is open to anyone.
    pub registration_open: bool,
    /// How many password hashes run at once.
    pub hash_concurrency: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_ttl: Duration::from_secs(token::MAX_ACCESS_TTL_SECS),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_reuse_grace: Duration::from_secs(30),
            super_admin_email: None,
            registration_open: true,
            hash_concurrency: 4,
        }
    }
}

/// Where a login comes from, kept with the session.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A fresh pair of tokens.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tokens {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange at `POST /v1/auth/refresh` for a new pair; usable once.
    pub refresh_token: String,
    /// Seconds until the session lapses unless refreshed.
    pub refresh_expires_in: u64,
}

/// The result of registering, logging in or refreshing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthSession {
    pub user: User,
    #[serde(flatten)]
    pub tokens: Tokens,
}

/// What registering needs.
#[derive(Debug, Clone)]
pub struct Registration {
    pub email: String,
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
}

/// The account and session service.
#[derive(Clone)]
pub struct Auth {
    store: Store,
    hasher: PasswordHasherPool,
    keys: TokenKeys,
    config: AuthConfig,
    bus: Bus,
}

impl Auth {
    pub async fn new(store: Store, secret: &[u8], config: AuthConfig, bus: Bus) -> Result<Self> {
        if config.access_ttl.as_secs() > token::MAX_ACCESS_TTL_SECS
            || config.access_ttl.as_secs() == 0
        {
            return Err(CoreError::validation(
                "auth.access_token_ttl_secs",
                format!("must be between 1 and {}", token::MAX_ACCESS_TTL_SECS),
            ));
        }
        let keys = TokenKeys::new(secret)?;
        let hasher = PasswordHasherPool::new(config.hash_concurrency).await?;
        Ok(Auth {
            store,
            hasher,
            keys,
            config,
            bus,
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Creates an account and logs it in.
    pub async fn register(&self, reg: Registration, client: &ClientInfo) -> Result<AuthSession> {
        if !self.config.registration_open {
            return Err(CoreError::forbidden(
                "registration is closed on this server",
            ));
        }
        let role = match &self.config.super_admin_email {
            Some(e)
                if normalize_email(e).ok().as_deref()
                    == Some(normalize_email(&reg.email)?.as_str()) =>
            {
                Role::SuperAdmin
            }
            _ => Role::User,
        };
        let user = self.create_user(reg, role).await?;
        self.start_session(user, client).await
    }

    /// Creates an account without a session (the CLI's `user create`).
    pub async fn create_user(&self, reg: Registration, role: Role) -> Result<User> {
        let email = normalize_email(&reg.email)?;
        let username = normalize_username(&reg.username)?;
        let display_name = match reg.display_name.as_deref() {
            Some(d) => normalize_display_name(d)?,
            None => username.clone(),
        };
        password::check_policy(&reg.password)?;
        let hash = self.hasher.hash(&reg.password).await?;
        let id = Uuid::now_v7().to_string();
        let row = self
            .store
            .insert_user(&NewUser {
                id: &id,
                email: &email,
                username: &username,
                display_name: &display_name,
                password_hash: &hash,
                role: role.as_str(),
                now: Utc::now().timestamp_millis(),
            })
            .await?;
        tracing::info!(user_id = %id, %role, "account created");
        user_from_row(row)
    }

    /// Checks email and password. A wrong password, an unknown email and a
    /// disabled account fail alike, after the same amount of hashing.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<AuthSession> {
        let row = match normalize_email(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let ok = self
            .hasher
            .verify(password, row.as_ref().map(|r| r.password_hash.as_str()))
            .await?;
        match row {
            Some(row) if ok && row.disabled == 0 => {
                self.start_session(user_from_row(row)?, client).await
            }
            _ => Err(invalid_credentials()),
        }
    }

    async fn start_session(&self, user: User, client: &ClientInfo) -> Result<AuthSession> {
        let session_id = Uuid::now_v7();
        let refresh = random_token(32);
        let now = Utc::now().timestamp_millis();
        self.store
            .create_session(
                &session_id.to_string(),
                &user.id.to_string(),
                &hash_refresh_token(&refresh),
                now,
                now + self.config.refresh_ttl.as_millis() as i64,
                client.user_agent.as_deref(),
                client.ip.as_deref(),
            )
            .await?;
        let tokens = self.tokens(user.id, session_id, refresh)?;
        Ok(AuthSession { user, tokens })
    }

    fn tokens(&self, user_id: Uuid, session_id: Uuid, refresh_token: String) -> Result<Tokens> {
        let now = Utc::now().timestamp();
        let ttl = self.config.access_ttl.as_secs();
        let access_token = self.keys.sign(&Claims {
            iss: token::ISSUER.into(),
            aud: token::AUDIENCE.into(),
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            iat: now,
            exp: now + ttl as i64,
        })?;
        Ok(Tokens {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            refresh_token,
            refresh_expires_in: self.config.refresh_ttl.as_secs(),
        })
    }

    /// Exchanges a refresh token for a new pair. A token used twice revokes
    /// its session, unless the second use comes within the reuse grace and
    /// nothing issued after the first has been used.
    pub async fn refresh(&self, refresh_token: &str) -> Result<AuthSession> {
        let next = random_token(32);
        let now = Utc::now().timestamp_millis();
        let outcome = self
            .store
            .rotate_refresh_token(
                &hash_refresh_token(refresh_token),
                &hash_refresh_token(&next),
                now,
                now + self.config.refresh_ttl.as_millis() as i64,
                self.config.refresh_reuse_grace.as_millis() as i64,
            )
            .await?;
        match outcome {
            RefreshOutcome::Rotated {
                session_id,
                user_id,
            } => {
                let row = self
                    .store
                    .user_by_id(&user_id)
                    .await?
                    .ok_or(CoreError::NotFound("user"))?;
                let user = user_from_row(row)?;
                let tokens = self.tokens(user.id, parse_id(&session_id)?, next)?;
                Ok(AuthSession { user, tokens })
            }
            RefreshOutcome::Reused {
                session_id,
                user_id,
            } => {
                if let (Ok(user_id), Ok(session_id)) = (parse_id(&user_id), parse_id(&session_id)) {
                    self.bus.publish(BusEvent::SessionsRevoked {
                        user_id,
                        session_id: Some(session_id),
                    });
                }
                tracing::warn!(
                    "a rotated refresh token was presented again; its session is revoked"
                );
                Err(CoreError::unauthorized(
                    "refresh_token_reused",
                    "this refresh token was already used; the session has been ended",
                ))
            }
            RefreshOutcome::Invalid => Err(CoreError::unauthorized(
                "unauthorized",
                "the refresh token is not valid",
            )),
        }
    }

    /// A new access token for a live session (what a refresh gives, without
    /// rotating the refresh token), for tests of token renewal.
    #[cfg(feature = "test-support")]
    pub fn issue_access_token(&self, actor: &Actor) -> Result<String> {
        Ok(self
            .tokens(actor.user_id, actor.session_id, String::new())?
            .access_token)
    }

    /// Ends a session: its refresh tokens and access tokens stop working.
    pub async fn logout(&self, actor: &Actor) -> Result<()> {
        self.store
            .revoke_session(&actor.session_id.to_string(), Utc::now().timestamp_millis())
            .await?;
        self.bus.publish(BusEvent::SessionsRevoked {
            user_id: actor.user_id,
            session_id: Some(actor.session_id),
        });
        Ok(())
    }

    /// Checks an access token and that its session and account are still live.
    pub async fn authenticate(&self, access_token: &str) -> Result<Actor> {
        let claims = self.keys.verify(access_token)?;
        let invalid = || CoreError::unauthorized("unauthorized", "the access token is not valid");
        let session = self.store.session(&claims.sid).await?.ok_or_else(invalid)?;
        if session.user_id != claims.sub {
            return Err(invalid());
        }
        if session.revoked_at.is_some() || session.disabled != 0 {
            return Err(CoreError::unauthorized(
                "session_revoked",
                "this session has ended",
            ));
        }
        Ok(Actor {
            user_id: parse_id(&session.user_id)?,
            session_id: parse_id(&session.id)?,
            role: session.role.parse()?,
            expires_at: claims.exp,
        })
    }
}

impl Auth {
    /// Whether the actor's session is still live: not ended, and its account
    /// not disabled. Long-lived connections ask this every so often.
    pub async fn session_alive(&self, actor: &Actor) -> Result<bool> {
        let session = self.store.session(&actor.session_id.to_string()).await?;
        Ok(session.is_some_and(|s| s.revoked_at.is_none() && s.disabled == 0))
    }
}

fn invalid_credentials() -> CoreError {
    CoreError::unauthorized("invalid_credentials", "the email or password is incorrect")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[tokio::test]
    async fn refresh_tokens_are_stored_only_as_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let opts = StoreOptions {
            url,
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&opts).await.unwrap();
        store.migrate().await.unwrap();
        let auth = Auth::new(
            store.clone(),
            &[9u8; 32],
            AuthConfig::default(),
            Bus::in_process(16),
        )
        .await
        .unwrap();
        let reg = Registration {
            email: "ada@example.org".into(),
            username: "ada".into(),
            password: "a long enough secret".into(),
            display_name: None,
        };
        let session = auth.register(reg, &ClientInfo::default()).await.unwrap();
        let refreshed = auth.refresh(&session.tokens.refresh_token).await.unwrap();
        let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM refresh_tokens")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(stored.len(), 2);
        for token in [
            &session.tokens.refresh_token,
            &refreshed.tokens.refresh_token,
        ] {
            assert!(
                !stored.contains(token),
                "a refresh token is stored in the clear"
            );
            assert!(stored.contains(&hash_refresh_token(token)));
        }
        let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
    }

    async fn auth_on_test_database(dir: &std::path::Path) -> (Auth, Store) {
        let store = Store::connect(&StoreOptions {
            url: crate::store::testing::fresh_database_url(dir).await,
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let config = AuthConfig {
            hash_concurrency: 1,
            ..AuthConfig::default()
        };
        let auth = Auth::new(store.clone(), &[9u8; 32], config, Bus::in_process(16))
            .await
            .unwrap();
        (auth, store)
    }

    async fn registered(auth: &Auth) -> AuthSession {
        let reg = Registration {
            email: "ada@example.org".into(),
            username: "ada".into(),
            password: "a long enough secret".into(),
            display_name: None,
        };
        auth.register(reg, &ClientInfo::default()).await.unwrap()
    }

    fn code(err: CoreError) -> &'static str {
        match err {
            CoreError::Unauthorized { code, .. } => code,
            other => panic!("expected an authorization error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_lost_refresh_answer_may_be_retried_only_within_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, store) = auth_on_test_database(dir.path()).await;
        let session = registered(&auth).await;
        let first = session.tokens.refresh_token;

        // The answer to this refresh never reached the client.
        let lost = auth.refresh(&first).await.unwrap().tokens.refresh_token;
        let retried = auth
            .refresh(&first)
            .await
            .expect("a retry within the grace");
        let retried = retried.tokens.refresh_token;
        assert_ne!(retried, lost, "the retry gets a token of its own");
        let next = auth
            .refresh(&retried)
            .await
            .expect("the retried token works");

        // Now a successor is in use: the first token again is a replay.
        assert_eq!(
            code(auth.refresh(&first).await.unwrap_err()),
            "refresh_token_reused"
        );
        assert_eq!(
            code(auth.refresh(&next.tokens.refresh_token).await.unwrap_err()),
            "unauthorized",
            "the replay ended the session"
        );

        // Past the grace, a used token is a replay even with no successor used.
        let other = auth
            .login(
                "ada@example.org",
                "a long enough secret",
                &ClientInfo::default(),
            )
            .await
            .unwrap();
        let token = other.tokens.refresh_token;
        auth.refresh(&token).await.unwrap();
        let grace = auth.config().refresh_reuse_grace.as_millis() as i64;
        sqlx::query("UPDATE refresh_tokens SET used_at = used_at - $1 WHERE token_hash = $2")
            .bind(grace + 1)
            .bind(hash_refresh_token(&token))
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(
            code(auth.refresh(&token).await.unwrap_err()),
            "refresh_token_reused"
        );
    }
}
