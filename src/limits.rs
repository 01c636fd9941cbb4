//! Abuse limits: fixed-window counters per user, per client address and per account (log-in
//! failures). With Redis they are shared by every instance (`INCRBY` + `PEXPIRE`; the requests
//! waiting at the same moment share one round trip, see `SharedCounters`); without it,
//! in-process. Limits protect capacity, not correctness, so a Redis outage lets requests through
//! (and is counted) rather than refusing everyone; after a failed call the counters are not
//! consulted for `REDIS_BACKOFF`, so that an unresponsive Redis costs one timeout per back-off
//! period instead of one per request on top of the request's own work.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{AppError, AppResult};
use crate::group_commit::{gather, Gather};
use crate::redis_conn::RedisConn;

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
        counters: SharedCounters,
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

/// Batches of counter increments in flight at once (a second lets the next batch start before the
/// first returns).
const COUNTER_WRITERS: usize = 2;
/// Counters one batch adds to at most.
const MAX_COUNTERS_PER_BATCH: usize = 2_000;

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
                    counters: SharedCounters::start(conn, COUNTER_WRITERS),
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

    /// Add `cost` to each counter in its current window (with Redis: in the round trip this
    /// instance's waiting requests share); the counts after adding, in order (`None`: not
    /// checked — Redis unavailable).
    async fn add_all(&self, keys: &[(&str, Rule)], cost: u64) -> Option<Vec<u64>> {
        match &self.backend {
            Backend::Redis {
                counters,
                prefix,
                skip_until,
            } => {
                if now_ms() < skip_until.load(Ordering::Relaxed) {
                    metrics::counter!("rate_limit_unchecked_total").increment(1);
                    return None;
                }
                let keys = keys
                    .iter()
                    .map(|(key, rule)| {
                        let k = format!("{prefix}:{key}:{}", window_index(rule.window));
                        (k, rule.window.as_millis() as u64 * 2)
                    })
                    .collect();
                let r = counters.add(keys, cost).await;
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

/// One request's increments: (counter, expiry in ms) pairs, the cost added to each, and where the
/// counts after adding go.
type CounterJob = (
    Vec<(String, u64)>,
    u64,
    oneshot::Sender<Result<Vec<u64>, String>>,
);

/// The counters in Redis, added to together. Every mutation counts against two budgets (its
/// account and its address) before it runs; alone, that is a round trip and four commands per
/// mutation, beside the mutation's own round trip. Here the requests waiting at the same moment
/// share one round trip, and a counter that several of them add to (the address that a crowd shares
/// behind one gateway, a busy account) is added to once, by their sum.
///
/// Each request still gets its exact count: the counts a batch's requests see are those that
/// one `INCRBY` each, in the batch's order, would have returned. Nobody waits for a batch to fill:
/// under light load a batch is one request, sent at once (see `group_commit::Gather`).
struct SharedCounters {
    jobs: mpsc::UnboundedSender<CounterJob>,
}

impl SharedCounters {
    /// Start `writers` writers (each sends one batch at a time). Needs a Tokio runtime.
    fn start(conn: RedisConn, writers: usize) -> SharedCounters {
        let (jobs, queue) = gather();
        for _ in 0..writers.max(1) {
            tokio::spawn(count_batches(conn.clone(), queue.clone()));
        }
        SharedCounters { jobs }
    }

    /// Add `cost` to each counter (creating it with its expiry); the counts after adding, in
    /// order.
    async fn add(&self, counters: Vec<(String, u64)>, cost: u64) -> Result<Vec<u64>, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((counters, cost, reply))
            .map_err(|_| "the counter writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the counter writer dropped a request".to_string())?
    }
}

async fn count_batches(conn: RedisConn, queue: Gather<CounterJob>) {
    loop {
        let mut size = 0;
        let Some(jobs) = queue
            .next(|(keys, _, _)| {
                size += keys.len();
                size < MAX_COUNTERS_PER_BATCH
            })
            .await
        else {
            return;
        };
        // Each counter once, with everything the batch adds to it and its longest expiry.
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut sums: Vec<(&str, u64, u64)> = Vec::new();
        for (keys, cost, _) in &jobs {
            for (key, expiry) in keys {
                let i = *index.entry(key.as_str()).or_insert_with(|| {
                    sums.push((key.as_str(), 0, 0));
                    sums.len() - 1
                });
                sums[i].1 += cost;
                sums[i].2 = sums[i].2.max(*expiry);
            }
        }
        metrics::histogram!("rate_limit_batch_size").record(jobs.len() as f64);
        let totals = increment(&conn, &sums).await.map_err(|e| e.to_string());
        // Hand out the counts in the batch's order: the first to add saw the total before the
        // batch plus its own cost, and so on.
        let mut added = vec![0u64; sums.len()];
        let answers: Vec<Result<Vec<u64>, String>> = jobs
            .iter()
            .map(|(keys, cost, _)| match &totals {
                Ok(totals) => Ok(keys
                    .iter()
                    .map(|(key, _)| {
                        let i = index[key.as_str()];
                        added[i] += cost;
                        let total = totals.get(i).copied().unwrap_or(0);
                        total.saturating_sub(sums[i].1) + added[i]
                    })
                    .collect()),
                Err(e) => Err(e.clone()),
            })
            .collect();
        for ((_, _, reply), answer) in jobs.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// `INCRBY` + `PEXPIRE` for each (counter, sum, expiry ms): one pipeline on a single node; on a
/// cluster the counters hash freely across slots and a pipeline stays in one, so each counter is
/// its own pipeline, all at once. The totals after adding, in order.
async fn increment(conn: &RedisConn, sums: &[(&str, u64, u64)]) -> redis::RedisResult<Vec<u64>> {
    let pipe_of = |sums: &[(&str, u64, u64)]| {
        let mut pipe = redis::pipe();
        for (key, sum, expiry) in sums {
            pipe.cmd("INCRBY")
                .arg(*key)
                .arg(*sum)
                .cmd("PEXPIRE")
                .arg(*key)
                .arg(*expiry)
                .ignore();
        }
        pipe
    };
    if conn.is_cluster() {
        let runs = sums.iter().map(|s| {
            let pipe = pipe_of(std::slice::from_ref(s));
            let mut conn = conn.clone();
            async move { pipe.query_async::<Vec<u64>>(&mut conn).await }
        });
        futures_util::future::join_all(runs)
            .await
            .into_iter()
            .map(|r| r.map(|v| v.first().copied().unwrap_or(0)))
            .collect()
    } else {
        pipe_of(sums).query_async(&mut conn.clone()).await
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
