//! `boxoffice bench`: one run, one machine, the same workloads side by side — `holdSeats` over
//! GraphQL/HTTP with the Redis store, the in-process store and the PostgreSQL row-lock baseline;
//! the ceilings (the store's hold called straight on Redis, a trivial query through the same
//! stack); checkout throughput; live-map fan-out to many subscribers. Servers run as child
//! processes of this binary (so their CPU and memory are measured apart from the load generator).
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::client::{self, Http, Reply};
use super::report::{Latency, Summary};
use crate::auth::token::Tokens;
use crate::auth::Role;
use crate::config::Config;
use crate::holds::HoldStore;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds each measurement runs (after one second of warm-up).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Concurrent clients of the low-contention, ceiling and checkout workloads.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub clients: u64,
    /// Clients fighting over the hot seats.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub hot_clients: u64,
    /// Seats they fight over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=20_000))]
    pub hot_seats: u64,
    /// Concurrent clients of the checkout workload (each waits for the gateway's latency).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub checkout_clients: u64,
    /// Subscriber counts of the fan-out benchmark, comma-separated.
    #[arg(long, default_value = "1000,5000", value_delimiter = ',')]
    pub subscribers: Vec<usize>,
    /// Seat changes per second during the fan-out benchmark.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub event_rate: u64,
    /// Which parts to run, comma-separated: hold, ceiling, checkout, subscribers.
    #[arg(
        long,
        default_value = "hold,ceiling,checkout,subscribers",
        value_delimiter = ','
    )]
    pub only: Vec<String>,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One measured workload.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub per_second: f64,
    pub latency: Summary,
    pub outcomes: BTreeMap<String, u64>,
    /// Server CPU per operation (user + system of the server process), microseconds.
    pub server_cpu_us_per_op: Option<f64>,
    /// Redis CPU per operation, microseconds.
    pub redis_cpu_us_per_op: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FanOut {
    pub subscribers: usize,
    pub events: u64,
    pub deliveries_expected: u64,
    pub deliveries: u64,
    pub latency: Summary,
    pub server_rss_mib_before: f64,
    pub server_rss_mib_after: f64,
    pub server_kib_per_subscriber: f64,
    pub server_cpu_us_per_delivery: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub figures: Vec<Figure>,
    pub ratios: BTreeMap<String, f64>,
    pub fan_out: Vec<FanOut>,
    pub skipped: Vec<String>,
}

/// Counts and latencies of one client; merged at the end. Only operations that start inside the
/// measurement window are recorded.
#[derive(Default)]
struct Meter {
    latency: Latency,
    outcomes: BTreeMap<String, u64>,
}

impl Meter {
    fn count(&mut self, outcome: &str) {
        *self.outcomes.entry(outcome.to_string()).or_default() += 1;
    }
    fn merge(&mut self, o: Meter) {
        self.latency.add(&o.latency);
        for (k, v) in o.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
    }
}

/// The measurement window shared by a workload's clients.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn new(seconds: u64) -> Window {
        let start = Instant::now() + Duration::from_secs(1);
        Window {
            start,
            end: start + Duration::from_secs(seconds),
        }
    }
    fn running(&self) -> bool {
        Instant::now() < self.end
    }
    fn counts(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// Run `clients` copies of a client loop and merge their meters.
async fn run_clients<F, Fut>(clients: u64, f: F) -> anyhow::Result<Meter>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Meter> + Send + 'static,
{
    let tasks: Vec<_> = (0..clients).map(|c| tokio::spawn(f(c))).collect();
    let mut total = Meter::default();
    for t in tasks {
        total.merge(t.await.context("a load client panicked")?);
    }
    Ok(total)
}

/// A server child process of this binary.
struct Server {
    child: tokio::process::Child,
    base: String,
    pid: u32,
}

impl Server {
    async fn start(
        config: &Config,
        store: &str,
        prefix: &str,
        secret: &str,
    ) -> anyhow::Result<Server> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let exe = std::env::current_exe()?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("serve")
            .env("DATABASE_URL", &config.database_url)
            .env("HOLD_STORE", store)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", secret)
            .env("REDIS_KEY_PREFIX", prefix)
            .env("DEMO_DATA", "false")
            .env("HOLD_TTL_SECONDS", "600")
            .env("RUST_LOG", "warn")
            .env_remove("ADMIN_EMAIL")
            .env_remove("ADMIN_PASSWORD")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        match (&config.redis_url, store) {
            (Some(url), "redis") => cmd.env("REDIS_URL", url),
            _ => cmd.env_remove("REDIS_URL"),
        };
        let child = cmd.spawn().context("cannot start a server process")?;
        let pid = child.id().ok_or_else(|| anyhow!("server exited at once"))?;
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            pid,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut http = Http::new(&server.base)?;
        http.timeout = Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Reply::Data(_)) = http.gql(None, "{ __typename }", json!({})).await {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the {store} server did not come up within 60 s")
    }

    /// User + system CPU seconds of the server so far.
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let after = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Accounts and tokens for the load: inserted straight into the database (no argon2 — the
/// benchmark measures holds, not log-ins), tokens signed with the servers' secret.
struct People {
    admin: String,
    users: Vec<String>,
}

async fn people(db: &DatabaseConnection, tokens: &Tokens, n: usize) -> anyhow::Result<People> {
    let tag = format!("bench-{:x}", rand::random::<u32>());
    let mut rows: Vec<entity::user::ActiveModel> = (0..n)
        .map(|i| entity::user::ActiveModel {
            email: Set(format!("{tag}-{i}@bench.test")),
            password_hash: Set("!".into()),
            name: Set(None),
            role: Set("customer".into()),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        })
        .collect();
    rows.push(entity::user::ActiveModel {
        email: Set(format!("{tag}-admin@bench.test")),
        password_hash: Set("!".into()),
        name: Set(None),
        role: Set("admin".into()),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    });
    for chunk in rows.chunks(500) {
        entity::user::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    let mut users = Vec::with_capacity(n);
    let mut admin = None;
    for u in entity::user::Entity::find()
        .filter(entity::user::Column::Email.like(format!("{tag}-%")))
        .all(db)
        .await?
    {
        if u.role == "admin" {
            admin = Some(tokens.issue(u.id, Role::Admin)?);
        } else {
            users.push(tokens.issue(u.id, Role::Customer)?);
        }
    }
    Ok(People {
        admin: admin.ok_or_else(|| anyhow!("admin account missing"))?,
        users,
    })
}

/// A screen of `seats` seats and `shows` shows on it (a day apart), created through the API.
async fn shows(
    base: &str,
    admin: &str,
    seats: u64,
    shows: usize,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut http = Http::new(base)?;
    let screen = super::simulate::create_screen_as(&mut http, admin, seats).await?;
    let mut out = Vec::new();
    for day in 0..shows {
        let id = super::simulate::create_show_on(&mut http, admin, &screen, day as i64 + 1).await?;
        let map = http
            .gql(
                None,
                "query($id: ID!) { show(id: $id) { seats { id } } }",
                json!({ "id": id }),
            )
            .await?
            .data()?;
        let seat_ids = map["show"]["seats"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push((id, seat_ids));
    }
    Ok(out)
}

const HOLD: &str =
    "mutation($s: ID!, $seats: [ID!]!) { holdSeats(showId: $s, seatIds: $seats) { id } }";
const RELEASE: &str = "mutation($h: ID!) { releaseHold(holdId: $h) }";
const CHECKOUT: &str =
    "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { status } }";

/// Hot contention: every client fights over the same few seats; a winner releases at once so the
/// fight goes on. Counts hold attempts (won or `SEATS_UNAVAILABLE`).
async fn hold_hot(
    base: &str,
    users: &[String],
    seats: &[String],
    clients: u64,
    w: Window,
) -> anyhow::Result<Meter> {
    let (users, seats) = (Arc::new(users.to_vec()), Arc::new(seats.to_vec()));
    let base = base.to_string();
    run_clients(clients, move |c| {
        let (users, seats, base) = (users.clone(), seats.clone(), base.clone());
        async move {
            let mut m = Meter::default();
            let Ok(mut http) = Http::new(&base) else {
                return m;
            };
            let mut rng = StdRng::seed_from_u64(c);
            let token = &users[c as usize % users.len()];
            let (show, list) = seats
                .split_first()
                .map(|(s, l)| (s.clone(), l.to_vec()))
                .unwrap_or_default();
            while w.running() {
                let n = rng.random_range(1..=2usize);
                let mut pick = Vec::with_capacity(n);
                while pick.len() < n {
                    let s = &list[rng.random_range(0..list.len())];
                    if !pick.contains(s) {
                        pick.push(s.clone());
                    }
                }
                let t = Instant::now();
                let r = http
                    .gql(Some(token), HOLD, json!({ "s": show, "seats": pick }))
                    .await;
                let counted = w.counts(t);
                if counted {
                    m.latency.record(t.elapsed());
                }
                let outcome = match r {
                    Ok(Reply::Data(d)) => {
                        let hold = d["holdSeats"]["id"].clone();
                        let _ = http.gql(Some(token), RELEASE, json!({ "h": hold })).await;
                        "won (then released)".to_string()
                    }
                    Ok(Reply::Error { code, .. }) => code,
                    Err(e) => format!("transport error: {e}"),
                };
                if counted {
                    m.count(&outcome);
                }
            }
            m
        }
    })
    .await
}

/// Low contention: one random seat of a 20,000-seat show per attempt; 2,500 users hold two seats
/// each on a show, then the next show is used (so no show is ever more than a quarter full).
async fn hold_low(
    base: &str,
    users: &[String],
    shows: &[(String, Vec<String>)],
    clients: u64,
    w: Window,
) -> anyhow::Result<Meter> {
    const PER_SHOW: u64 = 5000;
    let (users, shows) = (Arc::new(users.to_vec()), Arc::new(shows.to_vec()));
    let next = Arc::new(AtomicU64::new(0));
    let base = base.to_string();
    run_clients(clients, move |c| {
        let (users, shows, next, base) = (users.clone(), shows.clone(), next.clone(), base.clone());
        async move {
            let mut m = Meter::default();
            let Ok(mut http) = Http::new(&base) else {
                return m;
            };
            let mut rng = StdRng::seed_from_u64(c + 1000);
            while w.running() {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some((show, seats)) = shows.get((n / PER_SHOW) as usize) else {
                    m.count("ran out of fresh shows");
                    break;
                };
                let token = &users[((n % PER_SHOW) / 2) as usize % users.len()];
                let seat = &seats[rng.random_range(0..seats.len())];
                let t = Instant::now();
                let r = http
                    .gql(Some(token), HOLD, json!({ "s": show, "seats": [seat] }))
                    .await;
                if w.counts(t) {
                    m.latency.record(t.elapsed());
                    m.count(&match r {
                        Ok(Reply::Data(_)) => "won".to_string(),
                        Ok(Reply::Error { code, .. }) => code,
                        Err(e) => format!("transport error: {e}"),
                    });
                }
            }
            m
        }
    })
    .await
}

/// Checkout: each client holds the next free seat and pays for it (the mock gateway's latency and
/// 1% declines included). Latency is hold + checkout.
async fn checkouts(
    base: &str,
    users: &[String],
    show: &(String, Vec<String>),
    clients: u64,
    w: Window,
) -> anyhow::Result<Meter> {
    let (users, show) = (Arc::new(users.to_vec()), Arc::new(show.clone()));
    let next = Arc::new(AtomicU64::new(0));
    let base = base.to_string();
    run_clients(clients, move |c| {
        let (users, show, next, base) = (users.clone(), show.clone(), next.clone(), base.clone());
        async move {
            let mut m = Meter::default();
            let Ok(mut http) = Http::new(&base) else {
                return m;
            };
            let token = &users[c as usize % users.len()];
            while w.running() {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(seat) = show.1.get(n) else {
                    m.count("ran out of seats");
                    break;
                };
                let t = Instant::now();
                let outcome = match http
                    .gql(Some(token), HOLD, json!({ "s": show.0, "seats": [seat] }))
                    .await
                {
                    Ok(Reply::Data(d)) => {
                        let key = format!("bench-{n}");
                        match http
                            .gql(
                                Some(token),
                                CHECKOUT,
                                json!({ "h": d["holdSeats"]["id"], "k": key }),
                            )
                            .await
                        {
                            Ok(Reply::Data(d)) => {
                                d["checkout"]["status"].as_str().unwrap_or("?").to_string()
                            }
                            Ok(Reply::Error { code, .. }) => format!("checkout {code}"),
                            Err(e) => format!("transport error: {e}"),
                        }
                    }
                    Ok(Reply::Error { code, .. }) => format!("hold {code}"),
                    Err(e) => format!("transport error: {e}"),
                };
                if w.counts(t) {
                    m.latency.record(t.elapsed());
                    m.count(&outcome);
                }
            }
            m
        }
    })
    .await
}

/// The trivial-query ceiling: `{ __typename }` through the same HTTP + GraphQL stack.
async fn trivial(base: &str, clients: u64, w: Window) -> anyhow::Result<Meter> {
    let base = base.to_string();
    run_clients(clients, move |_| {
        let base = base.clone();
        async move {
            let mut m = Meter::default();
            let Ok(mut http) = Http::new(&base) else {
                return m;
            };
            while w.running() {
                let t = Instant::now();
                let r = http.gql(None, "{ __typename }", json!({})).await;
                if w.counts(t) {
                    m.latency.record(t.elapsed());
                    m.count(if r.is_ok() { "ok" } else { "error" });
                }
            }
            m
        }
    })
    .await
}

/// The store's hold called straight on Redis from this process (no HTTP, no GraphQL): hot
/// (`hot` seats, winners release) or low contention (random seats of fresh 20,000-seat shows).
async fn raw_redis(
    store: Arc<dyn HoldStore>,
    clients: u64,
    hot: Option<u64>,
    w: Window,
) -> anyhow::Result<Meter> {
    let base_show = 1_000_000_000 + (rand::random::<u32>() as i64) * 1000;
    let next = Arc::new(AtomicU64::new(0));
    run_clients(clients, move |c| {
        let (store, next) = (store.clone(), next.clone());
        async move {
            let mut m = Meter::default();
            let mut rng = StdRng::seed_from_u64(c + 7);
            let ttl = Duration::from_secs(600);
            while w.running() {
                let (show, user, seats) = match hot {
                    Some(n) => {
                        let a = rng.random_range(0..n as i64);
                        let seats = if rng.random_bool(0.5) {
                            vec![a]
                        } else {
                            vec![a, (a + 1) % n as i64]
                        };
                        (base_show, c as i64, seats)
                    }
                    None => {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        (
                            base_show + 1 + (n / 5000) as i64,
                            ((n % 5000) / 2) as i64,
                            vec![rng.random_range(0..20_000)],
                        )
                    }
                };
                let hold_id = crate::holds::new_hold_id(show);
                let t = Instant::now();
                let r = store.hold(show, &hold_id, user, &seats, ttl, 2).await;
                if w.counts(t) {
                    m.latency.record(t.elapsed());
                }
                let outcome = match r {
                    Ok(crate::holds::HoldOutcome::Granted { .. }) => {
                        if hot.is_some() {
                            let _ = store.release(show, &hold_id, user).await;
                        }
                        "won"
                    }
                    Ok(crate::holds::HoldOutcome::Unavailable(_)) => "SEATS_UNAVAILABLE",
                    Ok(crate::holds::HoldOutcome::TooManyHolds) => "LIMIT_EXCEEDED",
                    Err(_) => "store error",
                };
                if w.counts(t) {
                    m.count(outcome);
                }
            }
            m
        }
    })
    .await
}

/// Redis's own CPU seconds (user + system) so far.
async fn redis_cpu(conn: &mut Option<redis::aio::MultiplexedConnection>) -> Option<f64> {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn.as_mut()?)
        .await
        .ok()?;
    let get = |k: &str| {
        info.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_once(':'))
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
    };
    Some(get("used_cpu_sys:")? + get("used_cpu_user:")?)
}

struct Probe {
    server_cpu: Option<f64>,
    redis_cpu: Option<f64>,
}

async fn probe(
    server: Option<&Server>,
    redis: &mut Option<redis::aio::MultiplexedConnection>,
) -> Probe {
    Probe {
        server_cpu: server.and_then(Server::cpu_seconds),
        redis_cpu: redis_cpu(redis).await,
    }
}

/// A figure from a meter: operations per second over the window, CPU per operation from the
/// probes taken around it (they include the warm-up second, so CPU per op is scaled by it).
fn figure(name: &str, m: Meter, seconds: u64, before: Probe, after: Probe, warm: f64) -> Figure {
    let ops = m.latency.count() as f64;
    let total_ops = ops * (seconds as f64 + warm) / seconds as f64;
    let per = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if total_ops > 0.0 => Some((b - a) * 1e6 / total_ops),
        _ => None,
    };
    Figure {
        name: name.to_string(),
        per_second: ops / seconds as f64,
        latency: m.latency.summary(),
        outcomes: m.outcomes,
        server_cpu_us_per_op: per(before.server_cpu, after.server_cpu),
        redis_cpu_us_per_op: per(before.redis_cpu, after.redis_cpu),
    }
}

pub async fn run(config: &Config, args: BenchArgs) -> anyhow::Result<()> {
    let mut report = BenchReport {
        machine: machine(),
        ..Default::default()
    };
    let wants = |p: &str| args.only.iter().any(|o| o == p);
    let secret = format!("bench-secret-{:032x}", rand::random::<u128>());
    let tokens = Tokens::new(secret.as_bytes(), None, Duration::from_secs(86_400));
    let prefix = format!("bench{:x}", rand::random::<u32>());
    let mut redis_info = match &config.redis_url {
        Some(url) => redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .ok(),
        None => None,
    };
    let mut stores = vec!["memory"];
    if config.redis_url.is_some() {
        stores.insert(0, "redis");
    } else {
        report
            .skipped
            .push("Redis store: REDIS_URL is not set".into());
    }
    if config.is_postgres() {
        stores.push("pg-rowlock");
    } else {
        report
            .skipped
            .push("row-lock baseline: DATABASE_URL is not PostgreSQL".into());
    }
    let secs = args.seconds;
    let say = |s: &str| {
        if !args.json {
            eprintln!("{s}");
        }
    };

    // The first server migrates the database; then accounts can be inserted.
    let mut servers: HashMap<&str, Server> = HashMap::new();
    for s in &stores {
        servers.insert(
            s,
            Server::start(config, s, &format!("{prefix}{s}"), &secret).await?,
        );
    }
    let (db, _) = crate::db::connect(&config.database_url, config.dependency_timeout()).await?;
    let people = people(
        &db,
        &tokens,
        5000.max(args.hot_clients as usize)
            .max(args.checkout_clients as usize),
    )
    .await?;
    say(&format!(
        "bench: servers up ({}), {} users; {secs} s per measurement",
        stores.join(", "),
        people.users.len()
    ));

    if wants("hold") || wants("ceiling") {
        for s in &stores {
            let server = &servers[s];
            if wants("hold") {
                let hot = shows(&server.base, &people.admin, args.hot_seats, 1).await?;
                let mut seats = vec![hot[0].0.clone()];
                seats.extend(hot[0].1.iter().cloned());
                say(&format!("  holdSeats, hot contention, {s} store…"));
                let before = probe(Some(server), &mut redis_info).await;
                let m = hold_hot(
                    &server.base,
                    &people.users,
                    &seats,
                    args.hot_clients,
                    Window::new(secs),
                )
                .await?;
                let after = probe(Some(server), &mut redis_info).await;
                report.figures.push(figure(
                    &format!("holdSeats hot ({s})"),
                    m,
                    secs,
                    before,
                    after,
                    1.0,
                ));

                // Enough fresh 20,000-seat shows for the fastest store's rate.
                let n_shows = ((secs + 1) * 20_000 / 5000 + 2) as usize;
                let low = shows(&server.base, &people.admin, 20_000, n_shows).await?;
                say(&format!("  holdSeats, low contention, {s} store…"));
                let before = probe(Some(server), &mut redis_info).await;
                let m = hold_low(
                    &server.base,
                    &people.users,
                    &low,
                    args.clients,
                    Window::new(secs),
                )
                .await?;
                let after = probe(Some(server), &mut redis_info).await;
                report.figures.push(figure(
                    &format!("holdSeats low ({s})"),
                    m,
                    secs,
                    before,
                    after,
                    1.0,
                ));
            }
        }
    }
    if wants("ceiling") {
        let server = &servers[stores[0]];
        say("  ceiling: trivial query through the same stack…");
        let before = probe(Some(server), &mut redis_info).await;
        let m = trivial(&server.base, args.clients, Window::new(secs)).await?;
        let after = probe(Some(server), &mut redis_info).await;
        report.figures.push(figure(
            "trivial query { __typename }",
            m,
            secs,
            before,
            after,
            1.0,
        ));
        if let Some(url) = &config.redis_url {
            let store: Arc<dyn HoldStore> = Arc::new(
                crate::holds::redis::RedisStore::connect(
                    url,
                    &format!("{prefix}raw"),
                    config.dependency_timeout(),
                    db.clone(),
                )
                .await?,
            );
            for (label, hot) in [("hot", Some(args.hot_seats)), ("low", None)] {
                say(&format!("  ceiling: hold straight on Redis, {label}…"));
                let clients = if hot.is_some() {
                    args.hot_clients
                } else {
                    args.clients
                };
                let before = probe(None, &mut redis_info).await;
                let m = raw_redis(store.clone(), clients, hot, Window::new(secs)).await?;
                let after = probe(None, &mut redis_info).await;
                report.figures.push(figure(
                    &format!("store hold straight on Redis ({label})"),
                    m,
                    secs,
                    before,
                    after,
                    1.0,
                ));
            }
        }
    }
    if wants("checkout") {
        for s in stores.iter().filter(|s| **s != "pg-rowlock") {
            let server = &servers[s];
            let show = shows(&server.base, &people.admin, 20_000, 1).await?;
            say(&format!("  checkout, {s} store…"));
            let before = probe(Some(server), &mut redis_info).await;
            let m = checkouts(
                &server.base,
                &people.users,
                &show[0],
                args.checkout_clients,
                Window::new(secs),
            )
            .await?;
            let after = probe(Some(server), &mut redis_info).await;
            let mut f = figure(
                &format!("hold + checkout ({s})"),
                m,
                secs,
                before,
                after,
                1.0,
            );
            let confirmed = f.outcomes.get("CONFIRMED").copied().unwrap_or(0);
            f.outcomes
                .insert("confirmed per second".into(), confirmed / secs);
            report.figures.push(f);
        }
    }
    for (_, s) in servers.drain() {
        s.stop().await;
    }
    if wants("subscribers") {
        if config.redis_url.is_some() {
            for n in &args.subscribers {
                say(&format!("  fan-out to {n} subscribers…"));
                let f = fan_out(config, &secret, &prefix, &people, *n, args.event_rate).await?;
                report.fan_out.push(f);
            }
        } else {
            report
                .skipped
                .push("fan-out: needs REDIS_URL (the production configuration)".into());
        }
    }
    ratios(&mut report);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(())
}

fn ratios(r: &mut BenchReport) {
    let rate = |name: &str| {
        r.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.per_second)
    };
    let mut out = BTreeMap::new();
    let pairs = [
        (
            "hot: redis / pg-rowlock",
            "holdSeats hot (redis)",
            "holdSeats hot (pg-rowlock)",
        ),
        (
            "hot: memory / pg-rowlock",
            "holdSeats hot (memory)",
            "holdSeats hot (pg-rowlock)",
        ),
        (
            "low: redis / pg-rowlock",
            "holdSeats low (redis)",
            "holdSeats low (pg-rowlock)",
        ),
        (
            "low: redis / trivial-query ceiling",
            "holdSeats low (redis)",
            "trivial query { __typename }",
        ),
        (
            "low: memory / trivial-query ceiling",
            "holdSeats low (memory)",
            "trivial query { __typename }",
        ),
        (
            "hot: redis over HTTP / straight on Redis",
            "holdSeats hot (redis)",
            "store hold straight on Redis (hot)",
        ),
    ];
    for (label, a, b) in pairs {
        if let (Some(a), Some(b)) = (rate(a), rate(b)) {
            if b > 0.0 {
                out.insert(label.to_string(), a / b);
            }
        }
    }
    r.ratios = out;
}

/// Fan-out: `n` subscribers on one show, seat changes at `rate` per second; latency from the
/// moment the hold request is sent to each subscriber's receipt; server memory per subscriber.
async fn fan_out(
    config: &Config,
    secret: &str,
    prefix: &str,
    people: &People,
    n: usize,
    rate: u64,
) -> anyhow::Result<FanOut> {
    let server = Server::start(config, "redis", &format!("{prefix}fan{n}"), secret).await?;
    let show = shows(&server.base, &people.admin, 2000, 1).await?.remove(0);
    let seat_index: Arc<HashMap<String, usize>> = Arc::new(
        show.1
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect(),
    );
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..show.1.len()).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let latency = Arc::new(Mutex::new(Latency::default()));
    let deliveries = Arc::new(AtomicU64::new(0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.rss_mib().unwrap_or(0.0);
    let stop = CancellationToken::new();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (base, show_id, stop) = (server.base.clone(), show.0.clone(), stop.clone());
        let (seat_index, sent, latency, deliveries) = (
            seat_index.clone(),
            sent.clone(),
            latency.clone(),
            deliveries.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let watch = Arc::new(client::Watch::default());
            client::watch(
                base,
                None,
                show_id,
                watch,
                stop,
                move |update: &Value, at: Instant| {
                    let Some(seats) = update["seats"].as_array() else {
                        return;
                    };
                    for s in seats {
                        let Some(i) = s["id"].as_str().and_then(|id| seat_index.get(id)) else {
                            continue;
                        };
                        let t = sent[*i].load(Ordering::Relaxed);
                        if t > 0 && s["status"] == "HELD" {
                            let elapsed =
                                at.saturating_duration_since(origin + Duration::from_nanos(t));
                            if let Ok(mut l) = latency.lock() {
                                l.record(elapsed);
                            }
                            deliveries.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                },
            )
            .await
        }));
        // Open connections in waves, as a crowd arriving, not all in one instant.
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The protocol acknowledges connections, not subscriptions: give every subscriber time to
    // be registered (each also reads the show's version once, as the web page does).
    tokio::time::sleep(Duration::from_millis(1000 + n as u64 / 2)).await;
    let rss_after = server.rss_mib().unwrap_or(0.0);
    let cpu_before = server.cpu_seconds();
    let mut http = Http::new(&server.base)?;
    let events = (rate * 10).min(show.1.len() as u64);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    for (i, seat) in show.1.iter().take(events as usize).enumerate() {
        tick.tick().await;
        let token = &people.users[i / 2 % people.users.len()];
        sent[i].store(origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
        http.gql(Some(token), HOLD, json!({ "s": show.0, "seats": [seat] }))
            .await?
            .data()?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_after = server.cpu_seconds();
    stop.cancel();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    server.stop().await;
    let delivered = deliveries.load(Ordering::Relaxed);
    let lat = latency
        .lock()
        .map(|l| l.summary())
        .map_err(|_| anyhow!("latency lock"))?;
    Ok(FanOut {
        subscribers: n,
        events,
        deliveries_expected: events * n as u64,
        deliveries: delivered,
        latency: lat,
        server_rss_mib_before: rss_before,
        server_rss_mib_after: rss_after,
        server_kib_per_subscriber: (rss_after - rss_before) * 1024.0 / n as f64,
        server_cpu_us_per_delivery: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) if delivered > 0 => Some((b - a) * 1e6 / delivered as f64),
            _ => None,
        },
    })
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpus} cores ({model}); server, Redis, PostgreSQL and load generator on the same machine"
    )
}

fn print(r: &BenchReport) {
    println!("machine: {}", r.machine);
    println!(
        "{:<44} {:>10}  {:>8} {:>8} {:>8}  {:>9} {:>9}",
        "workload", "ops/s", "p50 ms", "p99 ms", "max ms", "srv µs/op", "redis µs"
    );
    for f in &r.figures {
        let us = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<44} {:>10.0}  {:>8.2} {:>8.2} {:>8.2}  {:>9} {:>9}",
            f.name,
            f.per_second,
            f.latency.p50_ms,
            f.latency.p99_ms,
            f.latency.max_ms,
            us(f.server_cpu_us_per_op),
            us(f.redis_cpu_us_per_op)
        );
        let outcomes: Vec<String> = f
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        println!("    {}", outcomes.join(", "));
    }
    if !r.ratios.is_empty() {
        println!("ratios:");
        for (k, v) in &r.ratios {
            println!("  {k:<44} {v:>8.1}×");
        }
    }
    for f in &r.fan_out {
        println!(
            "fan-out to {} subscribers: {} of {} deliveries, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms; server RSS {:.1} → {:.1} MiB ({:.1} KiB per subscriber); {} server µs per delivery",
            f.subscribers, f.deliveries, f.deliveries_expected, f.latency.p50_ms, f.latency.p99_ms, f.latency.max_ms,
            f.server_rss_mib_before, f.server_rss_mib_after, f.server_kib_per_subscriber,
            f.server_cpu_us_per_delivery.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
        );
    }
    for s in &r.skipped {
        println!("skipped: {s}");
    }
}
