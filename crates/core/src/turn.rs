//! TURN credentials for coturn's `use-auth-secret` mode (the "TURN REST API").
//!
//! coturn and Roost share one secret. Roost hands a client a username of the
//! form `<expiry>:<user_id>` (expiry in Unix seconds) and the password
//! `base64(HMAC-SHA1(secret, username))`; coturn recomputes the password from
//! the username and refuses it once the expiry has passed. Nothing is stored.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

use uuid::Uuid;

/// How long a credential lasts unless configured otherwise. coturn checks the
/// expiry on every refresh of an allocation, so a credential must outlive the
/// longest call that relays through it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where the TURN servers are and the secret they share with Roost.
#[derive(Clone)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs handed to clients, in order of preference.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`. Without it no TURN server is offered.
    pub secret: Option<Vec<u8>>,
    /// How long an issued credential stays valid.
    pub ttl: Duration,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            urls: Vec::new(),
            secret: None,
            ttl: DEFAULT_TTL,
        }
    }
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// One ICE server as a WebRTC client configures it (`RTCIceServer`).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Credentials for the configured TURN servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
    /// Seconds the credential stays valid from now.
    pub ttl_secs: u64,
    pub expires_at: DateTime<Utc>,
}

impl TurnCredentials {
    pub fn ice_server(&self) -> IceServer {
        IceServer {
            urls: self.urls.clone(),
            username: Some(self.username.clone()),
            credential: Some(self.credential.clone()),
        }
    }
}

/// What a client needs to configure its peer connection: the ICE servers and,
/// when they carry credentials, when those lapse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IceConfig {
    /// Empty when no TURN server is configured: clients then reach the media
    /// server or each other only by their host and server-reflexive addresses.
    pub ice_servers: Vec<IceServer>,
    /// When the credentials stop working; ask again before then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Issues TURN credentials. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Turn {
    config: TurnConfig,
}

impl Turn {
    pub fn new(config: TurnConfig) -> Turn {
        Turn { config }
    }

    /// Whether TURN servers are offered at all (URLs and a secret are configured).
    pub fn enabled(&self) -> bool {
        self.config.secret.is_some() && !self.config.urls.is_empty()
    }

    /// Credentials for `user`, valid for the configured TTL from `now`.
    /// `None` when no TURN server is configured.
    pub fn credentials(&self, user: Uuid, now: DateTime<Utc>) -> Option<TurnCredentials> {
        let secret = self.config.secret.as_deref()?;
        if self.config.urls.is_empty() {
            return None;
        }
        let ttl = self.config.ttl.as_secs().max(1);
        let expiry = now.timestamp().max(0) as u64 + ttl;
        let username = format!("{expiry}:{user}");
        Some(TurnCredentials {
            urls: self.config.urls.clone(),
            credential: password(secret, &username),
            username,
            ttl_secs: ttl,
            expires_at: DateTime::from_timestamp(expiry as i64, 0).unwrap_or(now),
        })
    }

    /// The ICE servers a client should use: the TURN servers with fresh
    /// credentials, or none.
    pub fn ice_config(&self, user: Uuid, now: DateTime<Utc>) -> IceConfig {
        match self.credentials(user, now) {
            Some(c) => IceConfig {
                ice_servers: vec![c.ice_server()],
                expires_at: Some(c.expires_at),
            },
            None => IceConfig {
                ice_servers: Vec::new(),
                expires_at: None,
            },
        }
    }
}

/// coturn's password for `username`: base64(HMAC-SHA1(secret, username)).
pub fn password(secret: &[u8], username: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(secret: Option<&str>) -> Turn {
        Turn::new(TurnConfig {
            urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
            secret: secret.map(|s| s.as_bytes().to_vec()),
            ttl: Duration::from_secs(3600),
        })
    }

    #[test]
    fn the_password_is_coturns_hmac_sha1() {
        // Computed independently: base64.b64encode(hmac.new(b"north",
        // b"1433895918:alice", hashlib.sha1).digest()) in Python.
        assert_eq!(
            password(b"north", "1433895918:alice"),
            "RqMvcGPYTJMGThVLSi4amT4zFtI="
        );
    }

    #[test]
    fn credentials_carry_the_expiry_and_the_user() {
        let user = Uuid::new_v4();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let c = turn(Some("s3cret")).credentials(user, now).unwrap();
        assert_eq!(c.username, format!("1800003600:{user}"));
        assert_eq!(c.credential, password(b"s3cret", &c.username));
        assert_eq!(c.expires_at.timestamp(), 1_800_003_600);
        assert_eq!(c.ttl_secs, 3600);
    }

    #[test]
    fn no_secret_means_no_turn_servers() {
        let t = turn(None);
        assert!(!t.enabled());
        let ice = t.ice_config(Uuid::new_v4(), Utc::now());
        assert!(ice.ice_servers.is_empty());
        assert_eq!(ice.expires_at, None);
    }
}
