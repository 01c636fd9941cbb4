//! Bearer tokens: JWT signed with HS256 only (the algorithm is pinned, so `none` and asymmetric
//! tricks are refused), with `exp` required, `iss`/`aud` checked and a small leeway. During a
//! secret rotation tokens signed with the previous secret are still accepted.
use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Role;

const ISSUER: &str = "boxoffice";
const AUDIENCE: &str = "boxoffice";
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
}

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(secret: &[u8], previous: Option<&[u8]>, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let mut decoding = vec![DecodingKey::from_secret(secret)];
        if let Some(prev) = previous {
            decoding.push(DecodingKey::from_secret(prev));
        }
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding,
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user_id: i64, role: Role) -> anyhow::Result<String> {
        let now = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.as_str().to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The user and role a token names, or `None` for anything forged, expired or malformed.
    pub fn verify(&self, token: &str) -> Option<(i64, Role)> {
        let data = self
            .decoding
            .iter()
            .find_map(|key| decode::<Claims>(token, key, &self.validation).ok())?;
        let id = data.claims.sub.parse().ok()?;
        let role = Role::parse(&data.claims.role)?;
        Some((id, role))
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
