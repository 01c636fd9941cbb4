//! Abuse limits: fixed-window counters per user, per client address and per account (log-in
//! failures). With Redis they are shared by every instance (`INCRBY` + `PEXPIRE` in one round
//! trip); without it, in-process. Limits protect capacity, not correctness, so a Redis outage
//! lets requests through (and is counted) rather than refusing everyone; after a failed call the
//! counters are not consulted for `REDIS_BACKOFF`, so that an unresponsive Redis costs one
//! timeout per back-off period instead of one per request on top of the request's own work.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::redis_conn::RedisConn;

use crate::error::{AppError, AppResult};

/// The client's address as the server sees it (or from `X-Forwarded-For` when trusted).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub limit: u64,
    pub window: Duration,
}

impl Rule {
    pub fn per_minute(limit: u64) -> Rule {
        Rule {
            limit,
            window: Duration::from_secs(60),
        }
    }
}

enum Backend {
    Redis {
        conn: RedisConn,
        prefix: String,
        /// Milliseconds since the epoch until which the counters are skipped (after a failure).
        skip_until: AtomicU64,
    },
    Memory(Mutex<HashMap<String, (u64, u64)>>),
}

pub struct Limits {
    backend: Backend,
    pub mutations_per_user: Rule,
    pub mutations_per_ip: Rule,
    pub login_failures_per_account: Rule,
    /// Read budgets and slots (`READ_*`), in this instance.
    pub reads: ReadLimits,
}

/// How long the Redis counters are skipped after a failed call.
const REDIS_BACKOFF: Duration = Duration::from_secs(2);

/// Counters kept in memory before stale windows are pruned.
const MEMORY_KEYS_MAX: usize = 100_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn window_index(window: Duration) -> u64 {
    now_ms() / (window.as_millis() as u64).max(1)
}

impl Limits {
    pub fn new(config: &crate::config::Config, redis: Option<RedisConn>) -> Limits {
        Limits {
            backend: match redis {
                Some(conn) => Backend::Redis {
                    conn,
                    prefix: format!("{}:rl", config.redis_key_prefix),
                    skip_until: AtomicU64::new(0),
                },
                None => Backend::Memory(Mutex::new(HashMap::new())),
            },
            mutations_per_user: Rule::per_minute(config.rate_limit_user_per_minute),
            mutations_per_ip: Rule::per_minute(config.rate_limit_ip_per_minute),
            login_failures_per_account: Rule {
                limit: config.login_failures_per_15_minutes,
                window: Duration::from_secs(15 * 60),
            },
            reads: ReadLimits::new(
                config.read_budget_per_second,
                config.read_concurrency,
                Duration::from_millis(config.read_queue_ms),
            ),
        }
    }

    /// Add `cost` to `key`'s counter in the current window; the count after adding.
    async fn add(&self, key: &str, rule: Rule, cost: u64) -> Option<u64> {
        self.add_all(&[(key, rule)], cost)
            .await
            .and_then(|v| v.first().copied())
    }

    /// Add `cost` to each counter in its current window, in one round trip to Redis; the counts
    /// after adding, in order (`None`: not checked — Redis unavailable).
    async fn add_all(&self, keys: &[(&str, Rule)], cost: u64) -> Option<Vec<u64>> {
        match &self.backend {
            Backend::Redis {
                conn,
                prefix,
                skip_until,
            } => {
                if now_ms() < skip_until.load(Ordering::Relaxed) {
                    metrics::counter!("rate_limit_unchecked_total").increment(1);
                    return None;
                }
                let pipe_of = |keys: &[(&str, Rule)]| {
                    let mut pipe = redis::pipe();
                    for (key, rule) in keys {
                        let k = format!("{prefix}:{key}:{}", window_index(rule.window));
                        pipe.cmd("INCRBY")
                            .arg(&k)
                            .arg(cost)
                            .cmd("PEXPIRE")
                            .arg(&k)
                            .arg(rule.window.as_millis() as u64 * 2)
                            .ignore();
                    }
                    pipe
                };
                let r: Result<Vec<u64>, _> = if conn.is_cluster() {
                    // Counters hash freely across slots; a cluster pipeline stays in one slot,
                    // so each counter is its own pipeline, all at once.
                    let runs = keys.iter().map(|k| {
                        let pipe = pipe_of(std::slice::from_ref(k));
                        let mut conn = conn.clone();
                        async move { pipe.query_async::<Vec<u64>>(&mut conn).await }
                    });
                    futures_util::future::join_all(runs)
                        .await
                        .into_iter()
                        .map(|r| r.map(|v| v.first().copied().unwrap_or(0)))
                        .collect()
                } else {
                    pipe_of(keys).query_async(&mut conn.clone()).await
                };
                match r {
                    Ok(n) => Some(n),
                    Err(e) => {
                        skip_until.store(
                            now_ms() + REDIS_BACKOFF.as_millis() as u64,
                            Ordering::Relaxed,
                        );
                        metrics::counter!("rate_limit_unchecked_total").increment(1);
                        tracing::debug!(error = %e, "rate limit not checked: Redis unavailable");
                        None
                    }
                }
            }
            Backend::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let mut out = Vec::with_capacity(keys.len());
                for (key, rule) in keys {
                    let idx = window_index(rule.window);
                    if m.len() >= MEMORY_KEYS_MAX {
                        // Windows are at most 15 minutes: drop every counter of an older window.
                        m.retain(|_, (w, _)| *w + 1 >= idx);
                    }
                    let e = m.entry(key.to_string()).or_insert((idx, 0));
                    if e.0 != idx {
                        *e = (idx, 0);
                    }
                    e.1 += cost;
                    out.push(e.1);
                }
                Some(out)
            }
        }
    }

    /// Count `cost` against `key`; `LIMIT_EXCEEDED` once the window's count passes the limit
    /// (limit 0: no limit).
    pub async fn charge(&self, key: &str, rule: Rule, cost: u64, what: &str) -> AppResult<()> {
        self.charge_all(&[(key, rule, what)], cost).await
    }

    /// `charge` for several budgets at once (a mutation counts against its account and its
    /// address), in one round trip: every counter is counted; the first one past its limit
    /// refuses.
    pub async fn charge_all(&self, budgets: &[(&str, Rule, &str)], cost: u64) -> AppResult<()> {
        let live: Vec<&(&str, Rule, &str)> = budgets.iter().filter(|b| b.1.limit > 0).collect();
        if live.is_empty() {
            return Ok(());
        }
        let keys: Vec<(&str, Rule)> = live.iter().map(|(k, r, _)| (*k, *r)).collect();
        let Some(counts) = self.add_all(&keys, cost).await else {
            return Ok(());
        };
        for ((_, rule, what), n) in live.iter().zip(counts) {
            if n > rule.limit {
                metrics::counter!("rate_limited_total", "rule" => what.to_string()).increment(1);
                return Err(AppError::LimitExceeded(format!(
                    "too many {what}: at most {} per {} s; retry later",
                    rule.limit,
                    rule.window.as_secs()
                )));
            }
        }
        Ok(())
    }

    /// Whether `key` is already over the limit (without counting).
    pub async fn exceeded(&self, key: &str, rule: Rule) -> bool {
        rule.limit > 0
            && self
                .add(key, rule, 0)
                .await
                .is_some_and(|n| n >= rule.limit)
    }

    /// Count one more (failed) event against `key`.
    pub async fn record(&self, key: &str, rule: Rule) {
        if rule.limit > 0 {
            let _ = self.add(key, rule, 1).await;
        }
    }
}

/// Seconds of budget a bucket holds (the burst a page load may spend at once).
pub const BURST_SECONDS: u64 = 5;
/// Buckets kept before idle ones are dropped.
const KEPT_BUCKETS: usize = 100_000;

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Reader {
    Key(i64),
    User(i64),
    Address(IpAddr),
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Read budgets and read slots, shared by every request of an instance (see
/// `graphql::reads`).
pub struct ReadLimits {
    per_second: u64,
    buckets: Mutex<HashMap<Reader, Bucket>>,
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl ReadLimits {
    pub fn new(per_second: u64, concurrency: u32, wait: Duration) -> ReadLimits {
        ReadLimits {
            per_second,
            buckets: Mutex::default(),
            slots: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            wait,
        }
    }

    /// Take `cost` from the client's bucket; the seconds until it would fit when it does not.
    fn spend(&self, client: Reader, cost: u64) -> Result<(), u64> {
        if self.per_second == 0 {
            return Ok(());
        }
        let rate = self.per_second as f64;
        let capacity = rate * BURST_SECONDS as f64;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= KEPT_BUCKETS {
            // A full bucket is the same as none.
            let full = Duration::from_secs(BURST_SECONDS);
            buckets.retain(|_, b| now.duration_since(b.at) < full);
        }
        let b = buckets.entry(client).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(capacity);
        b.at = now;
        let cost = cost as f64;
        if b.tokens >= cost {
            b.tokens -= cost;
            Ok(())
        } else {
            Err((((cost - b.tokens) / rate).ceil() as u64).max(1))
        }
    }

    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl Reader {
    /// Who a read is charged to: the signed-in user, else the client address.
    pub fn of(viewer: Option<&crate::auth::Viewer>, ip: Option<&ClientIp>) -> Option<Reader> {
        match (viewer, ip) {
            (Some(crate::auth::Viewer::User { id, .. }), _) => Some(Reader::User(*id)),
            (Some(crate::auth::Viewer::ApiKey { id, .. }), _) => Some(Reader::Key(*id)),
            (_, Some(ClientIp(ip))) => Some(Reader::Address(*ip)),
            _ => None,
        }
    }
}

impl ReadLimits {
    /// Charge a read of `cost` units to `reader`: `LIMIT_EXCEEDED` with a retry hint when its
    /// budget is spent (counted in `read_budget_refusals_total`).
    pub fn charge(&self, reader: Option<Reader>, cost: u64) -> AppResult<()> {
        let Some(reader) = reader else { return Ok(()) };
        self.spend(reader, cost).map_err(|retry| {
            metrics::counter!("read_budget_refusals_total").increment(1);
            AppError::ReadBudget {
                message: format!(
                    "too many reads from this client: at most {} units per second (this one costs {cost}); retry in {retry} s",
                    self.per_second
                ),
                retry_after: Duration::from_secs(retry),
            }
        })
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_the_budget() {
        let l = ReadLimits::new(10, 4, Duration::from_millis(10));
        let me = Reader::User(1);
        // Five seconds of budget at once, then nothing.
        assert!(l.spend(me.clone(), 50).is_ok());
        assert_eq!(l.spend(me.clone(), 10), Err(1));
        // Another client has its own.
        assert!(l.spend(Reader::User(2), 11).is_ok());
        // Off: never refused.
        assert!(ReadLimits::new(0, 4, Duration::ZERO)
            .spend(me, 1_000_000)
            .is_ok());
    }
}
