//! Bearer tokens: JWT signed with HS256 only (the algorithm is pinned, so `none` and asymmetric
//! tricks are refused), with `exp` required, `iss`/`aud` checked and a small leeway. During a
//! secret rotation tokens signed with the previous secret are still accepted.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
    /// Tokens verified before: their user, role and expiry. A client sends the same token with
    /// every request, and decoding it afresh (base64, JSON, HMAC) was ~5% of a hold's server
    /// time in a profile. Only tokens that verified are kept, keyed by their whole text, so
    /// nothing forged or altered is ever answered from here; a kept token past its expiry is
    /// refused exactly as a decoded one would be.
    verified: Arc<Mutex<HashMap<String, Verified>>>,
}

#[derive(Clone, Copy)]
struct Verified {
    user_id: i64,
    role: Role,
    exp: u64,
}

/// Verified tokens kept before the map starts over (a few MB at most).
const KEPT_TOKENS: usize = 16_384;

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
            verified: Arc::default(),
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
        self.verify_at(token, now_secs())
    }

    fn verify_at(&self, token: &str, now: u64) -> Option<(i64, Role)> {
        let live = |v: &Verified| v.exp.saturating_add(LEEWAY_SECONDS) >= now;
        {
            let kept = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = kept.get(token) {
                return live(v).then_some((v.user_id, v.role));
            }
        }
        let data = self
            .decoding
            .iter()
            .find_map(|key| decode::<Claims>(token, key, &self.validation).ok())?;
        let v = Verified {
            user_id: data.claims.sub.parse().ok()?,
            role: Role::parse(&data.claims.role)?,
            exp: data.claims.exp,
        };
        let mut kept = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT_TOKENS {
            kept.clear();
        }
        kept.insert(token.to_string(), v);
        live(&v).then_some((v.user_id, v.role))
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(
            b"unit-test-secret-0123456789abcdef",
            None,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn a_kept_token_is_refused_once_it_expires() {
        let t = tokens();
        let token = t.issue(7, Role::Customer).expect("issue");
        let now = now_secs();
        assert_eq!(t.verify_at(&token, now), Some((7, Role::Customer)));
        assert_eq!(
            t.verified.lock().expect("lock").len(),
            1,
            "kept after verifying"
        );
        // Within the leeway it still verifies; past it, the kept entry refuses it.
        assert_eq!(
            t.verify_at(&token, now + 60 + LEEWAY_SECONDS - 1),
            Some((7, Role::Customer))
        );
        assert_eq!(t.verify_at(&token, now + 60 + LEEWAY_SECONDS + 2), None);
    }

    #[test]
    fn only_tokens_that_verified_are_kept() {
        let t = tokens();
        let token = t.issue(9, Role::Admin).expect("issue");
        let other = Tokens::new(
            b"another-secret-entirely-987654321",
            None,
            Duration::from_secs(60),
        )
        .issue(9, Role::Admin)
        .expect("issue");
        let mut altered = token.clone();
        altered.insert(token.len() / 2, 'x');
        for bad in [other.as_str(), altered.as_str(), "not a token", ""] {
            assert_eq!(t.verify(bad), None, "{bad:?}");
        }
        assert!(t.verified.lock().expect("lock").is_empty());
        assert_eq!(t.verify(&token), Some((9, Role::Admin)));
        assert_eq!(
            t.verify(&token),
            Some((9, Role::Admin)),
            "again, from what was kept"
        );
    }

    #[test]
    fn the_kept_tokens_are_bounded() {
        let t = tokens();
        for user in 0..(KEPT_TOKENS as i64 + 10) {
            let token = t.issue(user, Role::Customer).expect("issue");
            assert_eq!(t.verify(&token), Some((user, Role::Customer)));
        }
        assert!(t.verified.lock().expect("lock").len() <= KEPT_TOKENS);
    }
}
