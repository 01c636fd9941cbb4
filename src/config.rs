//! Configuration: one struct, parsed once from flags and environment (same names as the public
//! contract), validated before anything starts. A bad value stops the process with one line that
//! names the setting.
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

use crate::holds::{HoldRules, StoreKind, StoreSettings};

/// `HOLD_STORE`: where holds live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HoldStoreSetting {
    /// Redis when `REDIS_URL` is set, in-process otherwise.
    Auto,
    Memory,
    Redis,
    /// PostgreSQL row locks: the benchmark's baseline, not for production.
    #[value(name = "pg-rowlock")]
    PgRowLock,
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting of the service. Defaults live here and only here.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// `sqlite://…` (embedded) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://boxoffice.db?mode=rwc", value_parser = parse_database_url, global = true)]
    pub database_url: String,

    /// `redis://…`: holds and fan-out in Redis. Unset: in-process holds and fan-out.
    #[arg(long, env = "REDIS_URL", value_parser = parse_redis_url, global = true)]
    pub redis_url: Option<String>,

    /// Address to serve on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000", value_parser = parse_listen_addr, global = true)]
    pub listen_addr: SocketAddr,

    /// HS256 signing key. Unset: generated once and kept in the database.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = parse_jwt_secret, global = true)]
    pub jwt_secret: Option<String>,

    /// Previous HS256 key, still accepted for verification during a rotation.
    #[arg(long, env = "JWT_PREVIOUS_SECRET", hide_env_values = true, value_parser = parse_jwt_secret, global = true)]
    pub jwt_previous_secret: Option<String>,

    /// Lifetime of issued tokens, in seconds.
    #[arg(long, env = "JWT_TTL_SECONDS", default_value_t = 86_400, value_parser = parse_jwt_ttl, global = true)]
    pub jwt_ttl_seconds: u64,

    /// How long a hold lasts if it is not paid.
    #[arg(long, env = "HOLD_TTL_SECONDS", default_value_t = 600, value_parser = parse_hold_ttl, global = true)]
    pub hold_ttl_seconds: u64,

    /// Most seats in one hold.
    #[arg(long, env = "MAX_SEATS_PER_HOLD", default_value_t = 10, value_parser = parse_max_seats, global = true)]
    pub max_seats_per_hold: u32,

    /// Most live holds of one user on one show.
    #[arg(long, env = "MAX_HOLDS_PER_USER", default_value_t = 2, value_parser = parse_max_holds, global = true)]
    pub max_holds_per_user: u32,

    /// Share of mock payments that are declined (0.0–1.0).
    #[arg(long, env = "PAYMENT_FAILURE_RATE", default_value_t = 0.01, value_parser = parse_failure_rate, global = true)]
    pub payment_failure_rate: f64,

    /// Mock gateway latency in milliseconds.
    #[arg(long, env = "PAYMENT_LATENCY_MS", default_value_t = 50, value_parser = parse_payment_latency, global = true)]
    pub payment_latency_ms: u64,

    /// Longest wait for the payment gateway in a request; older pending checkouts are settled by
    /// the reconciler.
    #[arg(long, env = "PAYMENT_TIMEOUT_MS", default_value_t = 10_000, value_parser = parse_payment_timeout, global = true)]
    pub payment_timeout_ms: u64,

    /// How often the reconciler looks for interrupted checkouts.
    #[arg(long, env = "RECONCILE_INTERVAL_SECONDS", default_value_t = 10, value_parser = parse_reconcile_interval, global = true)]
    pub reconcile_interval_seconds: u64,

    /// Seed of the mock gateway's decline decisions (unset: random).
    #[arg(long, env = "PAYMENT_SEED", value_parser = parse_payment_seed, global = true)]
    pub payment_seed: Option<u64>,

    /// With `ADMIN_PASSWORD`: that admin account exists after start-up.
    #[arg(long, env = "ADMIN_EMAIL", value_parser = parse_email, global = true)]
    pub admin_email: Option<String>,

    /// With `ADMIN_EMAIL`: that admin account exists after start-up.
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true, global = true)]
    pub admin_password: Option<String>,

    /// Load a demo catalogue into an empty database (default: true on SQLite, false on PostgreSQL).
    #[arg(long, env = "DEMO_DATA", value_parser = parse_bool_setting, global = true)]
    pub demo_data: Option<bool>,

    /// Namespace of every Redis key and channel.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "boxoffice", value_parser = parse_key_prefix, global = true)]
    pub redis_key_prefix: String,

    /// How long a show's Redis keys outlive the show's start, in seconds: then they expire (a
    /// late request rebuilds what it needs from the database), so Redis does not grow with every
    /// show ever sold.
    #[arg(long, env = "REDIS_KEY_GRACE_SECONDS", default_value_t = 86_400, value_parser = parse_key_grace, global = true)]
    pub redis_key_grace_seconds: u64,

    /// Serve holds even when Redis's `maxmemory-policy` may evict keys (anything but
    /// `noeviction`): an evicted booked-seat cache makes sold seats holdable until the database
    /// refuses the booking (and refunds the buyer). Only for operators who accept that.
    #[arg(long, env = "REDIS_ALLOW_EVICTION", default_value_t = false, value_parser = parse_bool_setting, global = true)]
    pub redis_allow_eviction: bool,

    /// Where holds live: `auto` (Redis when REDIS_URL is set, in-process otherwise), `memory`,
    /// `redis`, or `pg-rowlock` (PostgreSQL row locks: the benchmark's baseline, not for production).
    #[arg(long, env = "HOLD_STORE", value_enum, default_value_t = HoldStoreSetting::Auto, global = true)]
    pub hold_store: HoldStoreSetting,

    /// Timeout of every database and Redis call, in milliseconds.
    #[arg(long, env = "DEPENDENCY_TIMEOUT_MS", default_value_t = 5_000, value_parser = parse_dependency_timeout, global = true)]
    pub dependency_timeout_ms: u64,

    /// Connections in the service's database pool (default: 32 on PostgreSQL, 8 on SQLite).
    #[arg(long, env = "DATABASE_POOL_SIZE", value_parser = parse_pool_size, global = true)]
    pub database_pool_size: Option<u32>,

    /// Checkouts and cancellations that run at once; more wait in a fair queue. A checkout spends
    /// most of its time waiting for the gateway, not on the database, and this number caps
    /// throughput at concurrency ÷ checkout time (16 gave 270 checkouts/s where 740/s were
    /// possible; 176 held 400 buyers to ~2,200/s where 3,100/s were possible). Default: 16 per
    /// pooled connection on PostgreSQL, whose writes go through the group writers and hold no
    /// pooled connection while the gateway answers; 8 per connection on SQLite.
    #[arg(long, env = "CHECKOUT_CONCURRENCY", value_parser = parse_pool_size, global = true)]
    pub checkout_concurrency: Option<u32>,

    /// Checkouts and cancellations that may wait for their turn; past it, new ones are refused
    /// at once with SERVICE_UNAVAILABLE (before any money moves).
    #[arg(long, env = "CHECKOUT_QUEUE_LIMIT", default_value_t = 1000, value_parser = parse_queue_limit, global = true)]
    pub checkout_queue_limit: u32,

    /// Most checkouts whose PENDING intent (or confirmation) is written in one statement and one
    /// commit on PostgreSQL, when that many reach the step at once; 1 writes each alone.
    #[arg(long, env = "GROUP_COMMIT_MAX", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub group_commit_max: u32,

    /// Groups of one step written at once (each writer keeps one pooled connection between groups
    /// while the pool has more than a quarter of its connections free).
    #[arg(long, env = "GROUP_COMMIT_WRITERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64), global = true)]
    pub group_commit_writers: u32,

    /// Longest wait in that queue, in milliseconds; then SERVICE_UNAVAILABLE with a retry hint.
    #[arg(long, env = "CHECKOUT_QUEUE_TIMEOUT_MS", default_value_t = 3_000, value_parser = parse_queue_timeout, global = true)]
    pub checkout_queue_timeout_ms: u64,

    /// Mutations one signed-in user may run per minute (0: no limit).
    #[arg(long, env = "RATE_LIMIT_USER_PER_MINUTE", default_value_t = 120, value_parser = parse_rate, global = true)]
    pub rate_limit_user_per_minute: u64,

    /// Mutations one client address may run per minute (0: no limit).
    #[arg(long, env = "RATE_LIMIT_IP_PER_MINUTE", default_value_t = 1200, value_parser = parse_rate, global = true)]
    pub rate_limit_ip_per_minute: u64,

    /// Failed log-ins of one account per 15 minutes before further attempts are refused.
    #[arg(long, env = "LOGIN_FAILURES_PER_15_MINUTES", default_value_t = 10, value_parser = parse_rate, global = true)]
    pub login_failures_per_15_minutes: u64,

    /// Take the client address from the first `X-Forwarded-For` entry (only behind a proxy that
    /// sets it).
    #[arg(long, env = "TRUST_FORWARDED_FOR", default_value_t = false, value_parser = parse_bool_setting, action = clap::ArgAction::Set, global = true)]
    pub trust_forwarded_for: bool,

    /// Seconds between the server's WebSocket pings; a peer silent for 2.5 intervals is dropped.
    #[arg(long, env = "WS_PING_INTERVAL_SECONDS", default_value_t = 30, value_parser = parse_ws_ping, global = true)]
    pub ws_ping_interval_seconds: u64,

    /// Live subscriptions one WebSocket connection may hold at once; more are refused with
    /// `LIMIT_EXCEEDED` (a page needs one or two).
    #[arg(long, env = "WS_SUBSCRIPTIONS_PER_CONNECTION", default_value_t = 20, value_parser = parse_ws_cap, global = true)]
    pub ws_subscriptions_per_connection: u32,

    /// WebSocket connections one client address may hold at once; more are refused (HTTP 429).
    #[arg(long, env = "WS_CONNECTIONS_PER_ADDRESS", default_value_t = 200, value_parser = parse_ws_cap, global = true)]
    pub ws_connections_per_address: u32,

    /// Read budget per client (signed-in user, or address when anonymous), in cost units per
    /// second with five seconds of burst: a request costs 1, a full seat map 10 more, a page of
    /// shows 4, a layout 2, compact statuses 1. Over budget: `LIMIT_EXCEEDED`. 0: no budget.
    #[arg(long, env = "READ_BUDGET_PER_SECOND", default_value_t = 200, value_parser = parse_read_budget, global = true)]
    pub read_budget_per_second: u64,

    /// Queries one instance runs at once; more wait up to `READ_QUEUE_MS`, then are refused
    /// with `SERVICE_UNAVAILABLE` (mutations never wait for these slots).
    #[arg(long, env = "READ_CONCURRENCY", default_value_t = 128, value_parser = parse_ws_cap, global = true)]
    pub read_concurrency: u32,

    /// How long a query may wait for one of the `READ_CONCURRENCY` slots.
    #[arg(long, env = "READ_QUEUE_MS", default_value_t = 500, value_parser = parse_read_queue, global = true)]
    pub read_queue_ms: u64,

    /// First retry of a failed webhook delivery, in ms; each next one waits twice as long (at
    /// most an hour), for about three days.
    #[arg(long, env = "WEBHOOK_RETRY_BASE_MS", default_value_t = 1000, value_parser = parse_webhook_ms, global = true)]
    pub webhook_retry_base_ms: u64,

    /// How long one webhook POST may take, in ms. An attempt is leased for twice this plus a
    /// second: an instance that dies mid-send leaves it to another after the lease.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 10_000, value_parser = parse_webhook_ms, global = true)]
    pub webhook_timeout_ms: u64,

    /// How often each instance fans out new events and sends due webhook deliveries, in ms.
    #[arg(long, env = "WEBHOOK_DISPATCH_INTERVAL_MS", default_value_t = 1000, value_parser = parse_webhook_ms, global = true)]
    pub webhook_dispatch_interval_ms: u64,

    /// Accept `http://` webhook URLs on any host (otherwise only `https://`, and `http://` on
    /// loopback).
    #[arg(long, env = "WEBHOOK_ALLOW_HTTP", default_value_t = false, value_parser = parse_bool_setting, action = clap::ArgAction::Set, global = true)]
    pub webhook_allow_http: bool,

    /// Answer GraphQL introspection queries (the IDE needs it).
    #[arg(long, env = "GRAPHQL_INTROSPECTION", default_value_t = true, value_parser = parse_bool_setting, action = clap::ArgAction::Set, global = true)]
    pub graphql_introspection: bool,

    /// Log output: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// The settings alone, parsed from arguments and the environment (embedding, tests).
#[derive(Debug, Parser)]
#[command(name = "boxoffice")]
struct SettingsOnly {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// Parse `args` (the first is the program name) and the environment, then `check`.
    pub fn try_from_args<I, T>(args: I) -> Result<Config, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = SettingsOnly::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .config;
        config.check()?;
        Ok(config)
    }

    /// Checks that involve more than one setting.
    pub fn check(&self) -> Result<(), String> {
        if let Some(pwd) = &self.admin_password {
            if self.admin_email.is_some() {
                crate::auth::password::check_strength(pwd)
                    .map_err(|m| format!("invalid value for ADMIN_PASSWORD: {m}"))?;
            }
        }
        if self.hold_store == HoldStoreSetting::Redis && self.redis_url.is_none() {
            return Err("HOLD_STORE=redis needs REDIS_URL".into());
        }
        if self.hold_store == HoldStoreSetting::PgRowLock && !self.is_postgres() {
            return Err("HOLD_STORE=pg-rowlock needs a postgres:// DATABASE_URL".into());
        }
        Ok(())
    }

    /// The hold store `HOLD_STORE` resolves to, with what it needs to connect.
    pub fn hold_store(&self) -> StoreSettings {
        let kind = match (self.hold_store, &self.redis_url) {
            (HoldStoreSetting::Auto, Some(_)) | (HoldStoreSetting::Redis, _) => StoreKind::Redis,
            (HoldStoreSetting::Auto, None) | (HoldStoreSetting::Memory, _) => StoreKind::Memory,
            (HoldStoreSetting::PgRowLock, _) => StoreKind::PgRowLock,
        };
        StoreSettings {
            kind,
            redis_url: self.redis_url.clone(),
            key_prefix: self.redis_key_prefix.clone(),
            timeout: self.dependency_timeout(),
            key_grace: Duration::from_secs(self.redis_key_grace_seconds),
            allow_eviction: self.redis_allow_eviction,
        }
    }

    /// The rules every hold obeys.
    pub fn hold_rules(&self) -> HoldRules {
        HoldRules {
            ttl: self.hold_ttl(),
            max_seats: self.max_seats_per_hold,
            max_holds: self.max_holds_per_user,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }
    pub fn demo_data(&self) -> bool {
        self.demo_data.unwrap_or(!self.is_postgres())
    }
    pub fn hold_ttl(&self) -> Duration {
        Duration::from_secs(self.hold_ttl_seconds)
    }
    pub fn dependency_timeout(&self) -> Duration {
        Duration::from_millis(self.dependency_timeout_ms)
    }
    pub fn payment_timeout(&self) -> Duration {
        Duration::from_millis(self.payment_timeout_ms)
    }
    /// Connections of the service's database pool.
    pub fn pool_size(&self) -> u32 {
        self.database_pool_size
            .unwrap_or_else(|| crate::db::default_pool_size(&self.database_url))
    }

    /// How checkouts and cancellations are admitted to the database.
    pub fn checkout_admission(&self) -> crate::booking::AdmissionRules {
        crate::booking::AdmissionRules {
            concurrency: self.checkout_concurrency.unwrap_or_else(|| {
                let per_connection = if self.is_postgres() { 16 } else { 8 };
                self.pool_size().saturating_mul(per_connection)
            }),
            queue_limit: self.checkout_queue_limit,
            queue_timeout: Duration::from_millis(self.checkout_queue_timeout_ms),
        }
    }

    /// How checkout's durable steps are grouped on PostgreSQL.
    pub fn group_commit(&self) -> crate::booking::GroupRules {
        crate::booking::GroupRules {
            writers: self.group_commit_writers as usize,
            max: self.group_commit_max as usize,
        }
    }

    pub fn payment_latency(&self) -> Duration {
        Duration::from_millis(self.payment_latency_ms)
    }
}

fn parse_database_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|p| s.starts_with(p));
    if !ok {
        return Err("DATABASE_URL must start with sqlite: or postgres://".into());
    }
    if s.starts_with("postgres") {
        url::Url::parse(s).map_err(|e| format!("DATABASE_URL is not a valid URL: {e}"))?;
    }
    Ok(s.to_string())
}

fn parse_redis_url(s: &str) -> Result<String, String> {
    crate::redis_conn::RedisTarget::parse(s)?;
    Ok(s.trim().to_string())
}

fn parse_key_grace(s: &str) -> Result<u64, String> {
    ranged_u64(s, "REDIS_KEY_GRACE_SECONDS", 1, 365 * 86_400)
}

fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "LISTEN_ADDR must be an IP address and port, e.g. 127.0.0.1:8000".to_string())
}

fn parse_jwt_secret(s: &str) -> Result<String, String> {
    if s.len() < 16 {
        return Err("JWT_SECRET must be at least 16 bytes (32 or more recommended)".into());
    }
    Ok(s.to_string())
}

fn ranged_u64(s: &str, name: &str, min: u64, max: u64) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("{name} must be a whole number from {min} to {max}")),
    }
}

fn parse_jwt_ttl(s: &str) -> Result<u64, String> {
    ranged_u64(s, "JWT_TTL_SECONDS", 60, 30 * 86_400)
}
fn parse_hold_ttl(s: &str) -> Result<u64, String> {
    ranged_u64(s, "HOLD_TTL_SECONDS", 1, 86_400)
}
fn parse_max_seats(s: &str) -> Result<u32, String> {
    ranged_u64(s, "MAX_SEATS_PER_HOLD", 1, 100).map(|v| v as u32)
}
fn parse_max_holds(s: &str) -> Result<u32, String> {
    ranged_u64(s, "MAX_HOLDS_PER_USER", 1, 100).map(|v| v as u32)
}
fn parse_payment_latency(s: &str) -> Result<u64, String> {
    ranged_u64(s, "PAYMENT_LATENCY_MS", 0, 60_000)
}
fn parse_payment_timeout(s: &str) -> Result<u64, String> {
    ranged_u64(s, "PAYMENT_TIMEOUT_MS", 100, 300_000)
}
fn parse_reconcile_interval(s: &str) -> Result<u64, String> {
    ranged_u64(s, "RECONCILE_INTERVAL_SECONDS", 1, 3_600)
}
fn parse_rate(s: &str) -> Result<u64, String> {
    ranged_u64(s, "rate limit", 0, 1_000_000_000)
}
fn parse_ws_ping(s: &str) -> Result<u64, String> {
    ranged_u64(s, "WS_PING_INTERVAL_SECONDS", 1, 3_600)
}
fn parse_payment_seed(s: &str) -> Result<u64, String> {
    ranged_u64(s, "PAYMENT_SEED", 0, u64::MAX)
}
fn parse_webhook_ms(s: &str) -> Result<u64, String> {
    ranged_u64(s, "webhook interval", 10, 3_600_000)
}
fn parse_read_budget(s: &str) -> Result<u64, String> {
    ranged_u64(s, "READ_BUDGET_PER_SECOND", 0, 10_000_000)
}
fn parse_read_queue(s: &str) -> Result<u64, String> {
    ranged_u64(s, "READ_QUEUE_MS", 0, 60_000)
}
fn parse_ws_cap(s: &str) -> Result<u32, String> {
    ranged_u64(s, "WebSocket limit", 1, 1_000_000).map(|v| v as u32)
}
fn parse_pool_size(s: &str) -> Result<u32, String> {
    ranged_u64(s, "pool size", 1, 1_000).map(|v| v as u32)
}
fn parse_queue_limit(s: &str) -> Result<u32, String> {
    ranged_u64(s, "CHECKOUT_QUEUE_LIMIT", 0, 1_000_000).map(|v| v as u32)
}
fn parse_queue_timeout(s: &str) -> Result<u64, String> {
    ranged_u64(s, "CHECKOUT_QUEUE_TIMEOUT_MS", 1, 600_000)
}
fn parse_dependency_timeout(s: &str) -> Result<u64, String> {
    ranged_u64(s, "DEPENDENCY_TIMEOUT_MS", 10, 600_000)
}

fn parse_failure_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("PAYMENT_FAILURE_RATE must be a number from 0.0 to 1.0".into()),
    }
}

fn parse_bool_setting(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_email(s: &str) -> Result<String, String> {
    crate::auth::accounts::normalise_email(s).map_err(|m| format!("ADMIN_EMAIL: {m}"))
}

fn parse_key_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err("REDIS_KEY_PREFIX must be 1–64 characters of letters, digits, - _ . :".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        let mut all = vec!["boxoffice", "--database-url", "sqlite://t.db?mode=rwc"];
        all.extend_from_slice(args);
        Config::try_from_args(all)
    }

    #[test]
    fn hold_store_resolves_from_the_setting_and_redis_url() {
        let kind = |args: &[&str]| config(args).expect("valid").hold_store().kind;
        assert_eq!(kind(&[]), StoreKind::Memory);
        assert_eq!(
            kind(&["--redis-url", "redis://127.0.0.1:6379"]),
            StoreKind::Redis
        );
        assert_eq!(
            kind(&[
                "--redis-url",
                "redis://127.0.0.1:6379",
                "--hold-store",
                "memory"
            ]),
            StoreKind::Memory
        );
        assert!(config(&["--hold-store", "redis"])
            .expect_err("needs REDIS_URL")
            .contains("REDIS_URL"));
        assert!(config(&["--hold-store", "pg-rowlock"])
            .expect_err("needs PostgreSQL")
            .contains("postgres"));
        assert!(config(&["--hold-store", "mongo"]).is_err());
    }

    #[test]
    fn log_format_is_an_enum() {
        assert_eq!(config(&[]).expect("valid").log_format, LogFormat::Text);
        assert_eq!(
            config(&["--log-format", "json"]).expect("valid").log_format,
            LogFormat::Json
        );
        assert!(config(&["--log-format", "xml"]).is_err());
    }

    #[test]
    fn checkout_concurrency_defaults_to_the_pool_times_the_backends_share() {
        let concurrency = |args: &[&str]| {
            let mut all = vec!["boxoffice"];
            all.extend_from_slice(args);
            Config::try_from_args(all)
                .expect("valid")
                .checkout_admission()
                .concurrency
        };
        let pg = "postgres://postgres@127.0.0.1:5432/x";
        assert_eq!(concurrency(&["--database-url", pg]), 32 * 16);
        assert_eq!(
            concurrency(&["--database-url", pg, "--database-pool-size", "22"]),
            22 * 16
        );
        assert_eq!(
            concurrency(&["--database-url", "sqlite://t.db?mode=rwc"]),
            8 * 8
        );
        assert_eq!(
            concurrency(&["--database-url", pg, "--checkout-concurrency", "3"]),
            3
        );
    }

    #[test]
    fn hold_rules_come_from_their_settings() {
        let r = config(&["--hold-ttl-seconds", "30", "--max-seats-per-hold", "4"])
            .expect("valid")
            .hold_rules();
        assert_eq!(
            (r.ttl, r.max_seats, r.max_holds),
            (Duration::from_secs(30), 4, 2)
        );
    }
}
