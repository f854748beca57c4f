//! Access tokens (HS256 JWTs) and refresh tokens (random, stored hashed).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};

/// The shortest signing secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest an access token may live.
pub const MAX_ACCESS_TTL_SECS: u64 = 15 * 60;
/// The `iss` and `aud` of every access token.
pub const ISSUER: &str = "roost";
pub const AUDIENCE: &str = "roost-api";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session id: revoking the session invalidates the token at once.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(CoreError::validation(
                "jwt_secret",
                format!("must be at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
        // Only HS256: a token naming any other algorithm (or `none`) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| CoreError::Internal(format!("signing a token: {e}").into()))
    }

    /// Checks signature, algorithm, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        use jsonwebtoken::errors::ErrorKind;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(
                CoreError::unauthorized("token_expired", "the access token has expired"),
            ),
            Err(_) => Err(CoreError::unauthorized(
                "unauthorized",
                "the access token is not valid",
            )),
        }
    }
}

/// A new random secret (for refresh tokens, invite codes, signing keys).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// How a refresh token is stored: its SHA-256, hex. The token has 256 bits
/// of entropy, so a fast hash is enough.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "u".into(),
            sid: "s".into(),
            iat: 0,
            exp,
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenKeys::new(&[7u8; 31]).is_err());
        assert!(TokenKeys::new(&[7u8; 32]).is_ok());
    }

    #[test]
    fn verifies_what_it_signs_and_nothing_else() {
        let keys = TokenKeys::new(&[1u8; 32]).unwrap();
        let other = TokenKeys::new(&[2u8; 32]).unwrap();
        let exp = chrono::Utc::now().timestamp() + 60;
        let token = keys.sign(&claims(exp)).unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, "u");
        assert!(other.verify(&token).is_err(), "another key's signature");
        let expired = keys
            .sign(&claims(chrono::Utc::now().timestamp() - 60))
            .unwrap();
        assert_eq!(keys.verify(&expired).unwrap_err().code(), "token_expired");
        let mut wrong_aud = claims(exp);
        wrong_aud.aud = "elsewhere".into();
        assert!(keys.verify(&keys.sign(&wrong_aud).unwrap()).is_err());
        let mut wrong_iss = claims(exp);
        wrong_iss.iss = "elsewhere".into();
        assert!(keys.verify(&keys.sign(&wrong_iss).unwrap()).is_err());
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        let keys = TokenKeys::new(&[1u8; 32]).unwrap();
        let exp = chrono::Utc::now().timestamp() + 60;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(exp)).unwrap());
        assert!(keys.verify(&format!("{header}.{body}.")).is_err());
    }

    #[test]
    fn other_algorithms_are_refused_even_with_the_right_secret() {
        let secret = [1u8; 32];
        let keys = TokenKeys::new(&secret).unwrap();
        let exp = chrono::Utc::now().timestamp() + 60;
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = jsonwebtoken::encode(
                &Header::new(alg),
                &claims(exp),
                &EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert!(keys.verify(&token).is_err(), "{alg:?} must be refused");
        }
    }

    #[test]
    fn refresh_hash_is_stable_hex() {
        let h = hash_refresh_token("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
