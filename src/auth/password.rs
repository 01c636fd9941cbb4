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

/// Most password computations that may wait for a turn before new ones are refused with
/// `LIMIT_EXCEEDED` (the client retries later).
const MAX_WAITING: usize = 512;

/// A process-wide CPU budget for argon2: on a machine of N cores at most N − 1 hashes run at
/// once (at least 1), so that a rush of sign-ups and log-ins queues for hashing instead of
/// starving holds and checkouts of CPU (`boxoffice simulate` with 5,000 users showed sign-ups
/// taking both cores and checkout p50 at seconds). Process-wide like the CPU it guards.
struct Budget {
    running: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
}

fn budget() -> &'static Budget {
    static BUDGET: std::sync::OnceLock<Budget> = std::sync::OnceLock::new();
    BUDGET.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Budget {
            running: tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    })
}

/// Run one argon2 computation on the blocking pool within the budget.
async fn within_budget<T: Send + 'static>(
    work: impl FnOnce() -> AppResult<T> + Send + 'static,
) -> AppResult<T> {
    use std::sync::atomic::Ordering;
    let b = budget();
    if b.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
        b.waiting.fetch_sub(1, Ordering::AcqRel);
        metrics::counter!("password_hash_refused_total").increment(1);
        return Err(AppError::LimitExceeded(
            "too many sign-ins at this moment; retry in a few seconds".into(),
        ));
    }
    let permit = b.running.acquire().await;
    b.waiting.fetch_sub(1, Ordering::AcqRel);
    let _permit = permit.map_err(AppError::internal)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(AppError::internal)?
}

pub async fn hash(pwd: String) -> AppResult<String> {
    within_budget(move || {
        Argon2::default()
            .hash_password(pwd.as_bytes())
            .map(|h: PasswordHash| h.to_string())
            .map_err(|e| AppError::internal(anyhow::anyhow!("argon2 hash: {e}")))
    })
    .await
}

/// True when `pwd` matches the stored PHC string. A malformed stored hash is an internal error.
pub async fn verify(pwd: String, stored: String) -> AppResult<bool> {
    within_budget(move || {
        match Argon2::default().verify_password(pwd.as_bytes(), stored.as_str()) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(AppError::internal(anyhow::anyhow!("argon2 verify: {e}"))),
        }
    })
    .await
}
