//! Password hashing with argon2id at the OWASP parameters (m = 19 MiB, t = 2, p = 1, the crate's
//! defaults). Hashing takes tens of milliseconds of CPU, so it always runs on the blocking pool.
use argon2::password_hash::{phc::PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::Argon2;

use crate::error::{AppError, AppResult};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

/// A password we accept: long enough, not absurdly long (hashing cost is bounded), not blank.
pub fn check_strength(pwd: &str) -> Result<(), String> {
    let n = pwd.chars().count();
    if n < MIN_LEN {
        return Err(format!(
            "the password must have at least {MIN_LEN} characters"
        ));
    }
    if pwd.len() > MAX_LEN {
        return Err(format!("the password must have at most {MAX_LEN} bytes"));
    }
    if pwd.trim().is_empty() {
        return Err("the password must not be blank".into());
    }
    let distinct: std::collections::HashSet<char> = pwd.chars().collect();
    if distinct.len() < 4 {
        return Err("the password is too easy to guess".into());
    }
    Ok(())
}

pub async fn hash(pwd: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(pwd.as_bytes())
            .map(|h: PasswordHash| h.to_string())
            .map_err(|e| AppError::internal(anyhow::anyhow!("argon2 hash: {e}")))
    })
    .await
    .map_err(AppError::internal)?
}

/// True when `pwd` matches the stored PHC string. A malformed stored hash is an internal error.
pub async fn verify(pwd: String, stored: String) -> AppResult<bool> {
    tokio::task::spawn_blocking(move || {
        match Argon2::default().verify_password(pwd.as_bytes(), stored.as_str()) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(AppError::internal(anyhow::anyhow!("argon2 verify: {e}"))),
        }
    })
    .await
    .map_err(AppError::internal)?
}
