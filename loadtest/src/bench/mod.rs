//! `boxoffice bench`: one run, one machine, the same workloads side by side — `holdSeats` over
//! GraphQL/HTTP with the Redis store, the in-process store and the PostgreSQL row-lock baseline;
//! the ceilings (the store's hold called straight on Redis, a trivial query through the same
//! stack); checkout throughput; live-map fan-out to many subscribers. Servers run as child
//! processes of this binary (so their CPU and memory are measured apart from the load generator).
mod fanout;
mod keys;
mod server;
mod workloads;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::report::{Latency, Summary};
use crate::target::Target;
use boxoffice::auth::token::Tokens;
use boxoffice::holds::HoldStore;
use fanout::fan_out;
use server::{people, shows, Server};
use workloads::{
    checkouts, commits, db_bookings, group_holds, hold_hot, hold_low, pgbench_n, raw_redis, reads,
    trivial, Pick, HOLDS_PER_LOW_SHOW,
};

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
    /// Concurrent buyers of the checkout workload (each waits for the gateway's latency),
    /// comma-separated: one measurement each.
    #[arg(long, default_value = "200,400", value_delimiter = ',')]
    pub checkout_clients: Vec<u64>,
    /// Buyers of the overload measurement (Redis store): far more than the checkout queue
    /// admits, where a fast `SERVICE_UNAVAILABLE` with a retry hint is a correct answer.
    #[arg(long, default_value_t = 2000)]
    pub overload_clients: u64,
    /// Clients of the one-commit transaction measurement on the same PostgreSQL (the database's
    /// own commit rate, the reference for checkout).
    #[arg(long, default_value_t = 64)]
    pub commit_clients: u64,
    /// Subscriber counts of the fan-out benchmark, comma-separated.
    #[arg(long, default_value = "1000,5000", value_delimiter = ',')]
    pub subscribers: Vec<usize>,
    /// Seat changes per second during the fan-out benchmark.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub event_rate: u64,
    /// Seats of the best-available show.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(10..=20_000))]
    pub best_seats: u64,
    /// A Redis Cluster (`redis+cluster://…`) to measure the store's raw hold rate on, beside the
    /// single node of REDIS_URL, in the same run (part `ceiling`).
    #[arg(long)]
    pub cluster_url: Option<String>,
    /// Past shows of the key-lifetime measurement (part `keys`).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub past_shows: u64,
    /// Which parts to run, comma-separated: hold, best, ceiling, checkout, subscribers, keys;
    /// `database` runs only checkout's database references and a booking's database work alone.
    #[arg(
        long,
        default_value = "hold,best,ceiling,checkout,subscribers,keys",
        value_delimiter = ','
    )]
    pub only: Vec<String>,
    /// Count every mutation against the servers' abuse limits (per account and per address), as
    /// a deployment does by default, with limits too high to refuse anything: the figures then
    /// include the limits' round trips to the store. Off: the limits are off (`0`).
    #[arg(long)]
    pub rate_limits: bool,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Fail (exit 1) when any figure has more than 1% errors.
    #[arg(long)]
    pub strict: bool,
}

/// What an answer counts as. Throughput counts correct answers: successes and expected domain
/// outcomes (a seat taken under contention, a declined payment). Errors are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Success,
    Expected,
    Error,
}

/// Past this share of errors a figure is flagged (and `--strict` fails).
const MAX_ERROR_SHARE: f64 = 0.01;

/// One measured workload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figure {
    pub name: String,
    /// Correct answers (successes + expected outcomes) per second of the window.
    pub per_second: f64,
    /// Every answer, errors included, per second: how this bench counted before 2026-12-01
    /// (kept to show the difference; not a throughput).
    pub all_answers_per_second: f64,
    pub successes: u64,
    pub expected: u64,
    pub errors: u64,
    /// errors / (successes + expected + errors).
    pub error_share: f64,
    /// More than 1% errors: the figure is not a measurement of the workload as intended.
    pub flagged: bool,
    pub latency: Summary,
    pub outcomes: BTreeMap<String, u64>,
    /// Server CPU per operation (user + system of the server process), microseconds.
    pub server_cpu_us_per_op: Option<f64>,
    /// Redis CPU per operation, microseconds.
    pub redis_cpu_us_per_op: Option<f64>,
    /// PostgreSQL's CPU per operation (every `postgres` process, and the backends that exited
    /// in the window), microseconds.
    pub postgres_cpu_us_per_op: Option<f64>,
    /// The load generator's CPU per operation (this process, and `pgbench` when it is the
    /// generator), microseconds.
    pub generator_cpu_us_per_op: Option<f64>,
    /// The whole machine's busy CPU per operation (`/proc/stat`), microseconds: what the
    /// operation costs with everything on the same cores.
    pub machine_cpu_us_per_op: Option<f64>,
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
    /// Whether the servers counted every mutation against their abuse limits (`--rate-limits`).
    pub rate_limits: bool,
    pub figures: Vec<Figure>,
    pub ratios: BTreeMap<String, f64>,
    pub fan_out: Vec<FanOut>,
    pub past_shows: Option<keys::PastShows>,
    pub skipped: Vec<String>,
}

/// Counts and latencies of one client; merged at the end. Only operations that start inside the
/// measurement window are recorded; latencies are those of correct answers.
#[derive(Default)]
pub(super) struct Meter {
    latency: Latency,
    outcomes: BTreeMap<String, u64>,
    successes: u64,
    expected: u64,
    errors: u64,
}

impl Meter {
    /// An outcome that is not an answer to a timed request (e.g. the workload ran out of seats).
    pub(super) fn count(&mut self, outcome: &str) {
        *self.outcomes.entry(outcome.to_string()).or_default() += 1;
    }

    /// The answer to a request started at `t`: counted when `t` is inside the window, an error
    /// during warm-up is still listed (it explains what follows) but not counted.
    pub(super) fn answer(&mut self, w: &Window, t: Instant, outcome: &str, class: Class) {
        if !w.counts(t) {
            if class == Class::Error {
                self.count(&format!("warm-up {outcome}"));
            }
            return;
        }
        match class {
            Class::Success => self.successes += 1,
            Class::Expected => self.expected += 1,
            Class::Error => self.errors += 1,
        }
        if class != Class::Error {
            self.latency.record(t.elapsed());
        }
        self.count(outcome);
    }

    /// A follow-up request that failed (e.g. a release after a won hold): an error of the
    /// operation it follows, counted when that operation was.
    pub(super) fn follow_up_failed(&mut self, w: &Window, t: Instant, what: &str) {
        if w.counts(t) {
            self.errors += 1;
            self.count(what);
        }
    }

    fn merge(&mut self, o: Meter) {
        self.latency.add(&o.latency);
        for (k, v) in o.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        self.successes += o.successes;
        self.expected += o.expected;
        self.errors += o.errors;
    }
}

/// The measurement window shared by a workload's clients.
#[derive(Clone, Copy)]
pub(super) struct Window {
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
    pub(super) fn running(&self) -> bool {
        Instant::now() < self.end
    }
    pub(super) fn counts(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// Run `clients` copies of a client loop and merge their meters.
pub(super) async fn run_clients<F, Fut>(clients: u64, f: F) -> anyhow::Result<Meter>
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

/// Redis's `used_memory`, bytes.
/// The Redis hold store itself at `url` (no server in front), for the store's raw ceiling.
async fn raw_store(
    url: &str,
    prefix: &str,
    config: &Target,
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<Arc<dyn HoldStore>> {
    let settings = boxoffice::holds::StoreSettings::redis(url, prefix, config.dependency_timeout());
    Ok(Arc::new(
        boxoffice::holds::redis::RedisStore::connect(url, &settings, db.clone()).await?,
    ))
}

async fn redis_memory(conn: &mut Option<redis::aio::MultiplexedConnection>) -> Option<i64> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn.as_mut()?)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Remove every key under this run's `prefix` from the single node of REDIS_URL (the servers'
/// holds and maps, the raw store's); how many. A run left up to a gigabyte behind, and later runs
/// measured Redis carrying 1.3 GB of earlier runs' keys (2026-12-04).
async fn forget_keys(
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    prefix: &str,
) -> Option<u64> {
    let conn = conn.as_mut()?;
    let (mut cursor, mut removed) = (0u64, 0u64);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .ok()?;
        if !keys.is_empty() {
            removed += redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<u64>(conn)
                .await
                .ok()?;
        }
        if next == 0 {
            return Some(removed);
        }
        cursor = next;
    }
}

/// Live holds under a key prefix (the sum of every show's hold index).
async fn live_holds(
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    prefix: &str,
) -> Option<u64> {
    let conn = conn.as_mut()?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*:holds"))
        .query_async(conn)
        .await
        .ok()?;
    let mut total = 0;
    for k in keys {
        let n: u64 = redis::cmd("ZCARD").arg(&k).query_async(conn).await.ok()?;
        total += n;
    }
    Some(total)
}

#[derive(Clone, Copy)]
struct Probe {
    server_cpu: Option<f64>,
    redis_cpu: Option<f64>,
    postgres_cpu: Option<f64>,
    generator_cpu: Option<f64>,
    machine_cpu: Option<f64>,
}

async fn probe(pid: Option<u32>, redis: &mut Option<redis::aio::MultiplexedConnection>) -> Probe {
    let redis_cpu = redis_cpu(redis).await;
    let [postgres_cpu, pgbench_cpu] = server::cpu_of_named(&["postgres", "pgbench"]);
    Probe {
        server_cpu: pid.and_then(server::cpu_seconds),
        redis_cpu,
        postgres_cpu: Some(postgres_cpu),
        generator_cpu: server::cpu_seconds(std::process::id()).map(|own| own + pgbench_cpu),
        machine_cpu: server::machine_busy_seconds(),
    }
}

/// Sample the server's and Redis's CPU exactly at the window's edges (while the workload runs).
fn sample_window(
    pid: Option<u32>,
    redis: &Option<redis::aio::MultiplexedConnection>,
    w: Window,
) -> tokio::task::JoinHandle<(Probe, Probe)> {
    let mut redis = redis.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(w.start.into()).await;
        let before = probe(pid, &mut redis).await;
        tokio::time::sleep_until(w.end.into()).await;
        let after = probe(pid, &mut redis).await;
        (before, after)
    })
}

/// Run one workload over a fresh window with the CPU sampled at its edges; its figure.
async fn measure<F, Fut>(
    name: &str,
    seconds: u64,
    pid: Option<u32>,
    redis: &Option<redis::aio::MultiplexedConnection>,
    workload: F,
) -> anyhow::Result<Figure>
where
    F: FnOnce(Window) -> Fut,
    Fut: Future<Output = anyhow::Result<Meter>>,
{
    let w = Window::new(seconds);
    let sampler = sample_window(pid, redis, w);
    let m = workload(w).await?;
    let (before, after) = sampler.await.context("the CPU sampler failed")?;
    Ok(figure(name, m, seconds, before, after))
}

/// A figure from a meter: correct answers per second over the window, CPU per correct answer
/// from the samples taken at the window's edges.
fn figure(name: &str, m: Meter, seconds: u64, before: Probe, after: Probe) -> Figure {
    let answered = (m.successes + m.expected) as f64;
    let all = m.successes + m.expected + m.errors;
    let error_share = m.errors as f64 / all.max(1) as f64;
    let per = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if answered > 0.0 => Some((b - a) * 1e6 / answered),
        _ => None,
    };
    Figure {
        name: name.to_string(),
        per_second: answered / seconds as f64,
        all_answers_per_second: all as f64 / seconds as f64,
        successes: m.successes,
        expected: m.expected,
        errors: m.errors,
        error_share,
        flagged: error_share > MAX_ERROR_SHARE,
        latency: m.latency.summary(),
        outcomes: m.outcomes,
        server_cpu_us_per_op: per(before.server_cpu, after.server_cpu),
        redis_cpu_us_per_op: per(before.redis_cpu, after.redis_cpu),
        postgres_cpu_us_per_op: per(before.postgres_cpu, after.postgres_cpu),
        generator_cpu_us_per_op: per(before.generator_cpu, after.generator_cpu),
        machine_cpu_us_per_op: per(before.machine_cpu, after.machine_cpu),
    }
}

pub async fn run(config: &Target, args: BenchArgs) -> anyhow::Result<()> {
    let mut report = BenchReport {
        machine: machine(),
        rate_limits: args.rate_limits,
        ..Default::default()
    };
    let wants = |p: &str| args.only.iter().any(|o| o == p);
    // The database's references and a booking's database work alone: part of `checkout`, or
    // on their own (`database`).
    let database = wants("checkout") || wants("database");
    let secret = format!("bench-secret-{:032x}", rand::random::<u128>());
    let tokens = Tokens::new(secret.as_bytes(), None, Duration::from_secs(86_400));
    // Fixed width: no run's prefix begins another's (its keys are removed by prefix at the end).
    let prefix = format!("bench{:08x}", rand::random::<u32>());
    // Redis's own CPU and memory, read on a single node (not on a cluster URL).
    let mut redis_info = match config
        .redis_url
        .as_deref()
        .and_then(|u| redis::Client::open(u).ok())
    {
        Some(c) => c.get_multiplexed_async_connection().await.ok(),
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

    // The database's own commit rate first, while nothing else is connected (the servers' idle
    // pools would otherwise hold connections it needs); then servers whose pools fit together in
    // the rest of `max_connections`, so that no part runs out of connections.
    let mut pool_size = None;
    if config.is_postgres() {
        let url = config.database_url()?;
        if database {
            say(&format!("  pgbench -N, {} clients…", args.commit_clients));
            let w = Window::new(secs);
            let sampler = sample_window(None, &None, w);
            match pgbench_n(&url, args.commit_clients, w).await {
                Ok(Some(m)) => {
                    let (before, after) = sampler.await.context("the CPU sampler failed")?;
                    report.figures.push(figure(PGBENCH, m, secs, before, after))
                }
                Ok(None) => report
                    .skipped
                    .push("pgbench -N: no pgbench installed (package postgresql)".into()),
                Err(e) => report.skipped.push(format!("pgbench -N: {e:#}")),
            }
            say(&format!(
                "  PostgreSQL one-commit transactions, {} clients…",
                args.commit_clients
            ));
            let f = measure(
                "PostgreSQL one-commit transactions",
                secs,
                None,
                &redis_info,
                |w| commits(url.clone(), args.commit_clients, w),
            )
            .await?;
            report.figures.push(f);
        }
        let size = server_pool(&url, stores.len()).await?;
        say(&format!(
            "  database pool of each server: {size} connections"
        ));
        pool_size = Some(size);
    } else if database {
        report
            .skipped
            .push("one-commit transactions: DATABASE_URL is not PostgreSQL".into());
    }

    // The first server migrates the database; then accounts can be inserted.
    let mut servers: HashMap<&str, Server> = HashMap::new();
    for s in &stores {
        servers.insert(
            s,
            Server::start(
                config,
                s,
                &format!("{prefix}{s}"),
                &secret,
                pool_size,
                args.rate_limits,
            )
            .await?,
        );
    }
    // The bench's own connections (accounts, and loading shows into the raw stores of the
    // `ceiling` part) come out of the 10 that `server_pool` leaves beside the servers' pools: a
    // default-sized pool here (32) kept connections the servers needed, and once every server's
    // pool was full PostgreSQL refused connections ("too many clients").
    let db = if config.is_postgres() {
        let url = config.database_url()?;
        boxoffice::db::connect_sized(&url, config.dependency_timeout(), BENCH_CONNECTIONS)
            .await?
            .0
    } else {
        config.database().await?
    };
    let people = people(
        &db,
        &tokens,
        5000.max(args.hot_clients as usize)
            .max(args.checkout_clients.iter().copied().max().unwrap_or(0) as usize)
            .max(args.overload_clients as usize),
    )
    .await?;
    say(&format!(
        "bench: servers up ({}), {} users; {secs} s per measurement",
        stores.join(", "),
        people.users.len()
    ));

    // Before any part has filled the servers' pools: as many clients as the one-commit
    // reference.
    if database && config.is_postgres() {
        let server = &servers[stores[0]];
        // Enough seats for the window at several thousand bookings a second: shows of 20,000.
        let n = ((secs + 1) * 8_000).div_ceil(20_000).max(1) as usize;
        let mut seats: Vec<(i64, i64)> = Vec::new();
        for (show, ids) in shows(&server.base, &people.admin, 20_000, n).await? {
            let show: i64 = show.parse()?;
            seats.extend(ids.iter().filter_map(|s| s.parse().ok()).map(|s| (show, s)));
        }
        say(&format!(
            "  a booking's database work alone, {} clients…",
            args.commit_clients
        ));
        let url = config.database_url()?;
        let f = measure(DB_BOOKINGS, secs, None, &redis_info, |w| {
            db_bookings(url.clone(), seats, args.commit_clients, w)
        })
        .await?;
        report.figures.push(f);
    }
    if wants("hold") || wants("ceiling") {
        for s in &stores {
            let server = &servers[s];
            if wants("hold") {
                let hot = shows(&server.base, &people.admin, args.hot_seats, 1).await?;
                let mut seats = vec![hot[0].0.clone()];
                seats.extend(hot[0].1.iter().cloned());
                say(&format!("  holdSeats, hot contention, {s} store…"));
                let f = measure(
                    &format!("holdSeats hot ({s})"),
                    secs,
                    Some(server.pid()),
                    &redis_info,
                    |w| hold_hot(&server.base, &people.users, &seats, args.hot_clients, w),
                )
                .await?;
                // Enough fresh 20,000-seat shows for this store's rate: twice its hot rate (low
                // contention has run faster than hot), and never fewer than 5,000 holds a
                // second allow. A client that runs out stops, which would understate the rate.
                let rate = f.per_second.max(5000.0) * 2.0;
                report.figures.push(f);
                let n_shows =
                    (rate * (secs + 1) as f64 / HOLDS_PER_LOW_SHOW as f64).ceil() as usize + 2;
                let low = shows(&server.base, &people.admin, 20_000, n_shows).await?;
                say(&format!("  holdSeats, low contention, {s} store…"));
                let f = measure(
                    &format!("holdSeats low ({s})"),
                    secs,
                    Some(server.pid()),
                    &redis_info,
                    |w| hold_low(&server.base, &people.users, &low, args.clients, w),
                )
                .await?;
                report.figures.push(f);
            }
        }
    }
    if wants("best") {
        for s in &stores {
            let server = &servers[s];
            let show = shows(&server.base, &people.admin, args.best_seats, 1).await?;
            let seats = args.best_seats;
            for (pick, name) in [
                (Pick::Best, "holdBestAvailable"),
                (Pick::Manual, "holdSeats"),
            ] {
                say(&format!(
                    "  {name} of 2–4 seats, {seats}-seat show, {s} store…"
                ));
                let f = measure(
                    &format!("{name} 2–4 of {seats} seats ({s})"),
                    secs,
                    Some(server.pid()),
                    &redis_info,
                    |w| {
                        group_holds(
                            &server.base,
                            &people.users,
                            &show[0],
                            args.hot_clients,
                            pick,
                            w,
                        )
                    },
                )
                .await?;
                report.figures.push(f);
            }
        }
    }
    if wants("ceiling") {
        let server = &servers[stores[0]];
        say("  ceiling: trivial query through the same stack…");
        let f = measure(
            "trivial query { __typename }",
            secs,
            Some(server.pid()),
            &redis_info,
            |w| trivial(&server.base, args.clients, w),
        )
        .await?;
        report.figures.push(f);
        let map = shows(&server.base, &people.admin, 500, 1).await?;
        // The full map (a `Seat` object per seat) and the compact live statuses (a letter per
        // seat), on 500 and 3,000 seats.
        let big = shows(&server.base, &people.admin, 3000, 1).await?;
        for (seats, show) in [(500, &map[0].0), (3000, &big[0].0)] {
            for (form, query) in [
                (
                    "seat map read",
                    "query($id: ID!) { show(id: $id) { version availableSeats seats { id label status category priceCents } } }",
                ),
                (
                    "compact seat statuses read",
                    "query($id: ID!) { show(id: $id) { seatStatuses { version statuses } } }",
                ),
            ] {
                say(&format!("  {form} ({seats} seats)…"));
                let f = measure(
                    &format!("{form}, {seats} seats"),
                    secs,
                    Some(server.pid()),
                    &redis_info,
                    |w| reads(&server.base, args.clients, w, query, serde_json::json!({ "id": show })),
                )
                .await?;
                report.figures.push(f);
            }
        }
        say("  shows(first: 20) with live counts…");
        let f = measure(
            "shows(first: 20) with live counts",
            secs,
            Some(server.pid()),
            &redis_info,
            |w| {
                reads(
                    &server.base,
                    args.clients,
                    w,
                    "{ shows(first: 20) { edges { node { id startsAt movie { title } totalSeats availableSeats heldSeats bookedSeats } } } }",
                    serde_json::json!({}),
                )
            },
        )
        .await?;
        report.figures.push(f);
        if let Some(url) = &config.redis_url {
            let store = raw_store(url, &format!("{prefix}raw"), config, &db).await?;
            for (label, hot) in [("hot", Some(args.hot_seats)), ("low", None)] {
                say(&format!("  ceiling: hold straight on Redis, {label}…"));
                let clients = if hot.is_some() {
                    args.hot_clients
                } else {
                    args.clients
                };
                let memory_before = redis_memory(&mut redis_info).await;
                let mut f = measure(
                    &format!("store hold straight on Redis ({label})"),
                    secs,
                    None,
                    &redis_info,
                    |w| raw_redis(store.clone(), clients, hot, w),
                )
                .await?;
                if hot.is_none() {
                    // Every hold won here is still live (10-minute TTL): Redis memory per hold.
                    let live = live_holds(&mut redis_info, &format!("{prefix}raw")).await;
                    let memory_after = redis_memory(&mut redis_info).await;
                    if let (Some(a), Some(b), Some(n)) = (memory_before, memory_after, live) {
                        if n > 0 {
                            f.outcomes.insert("live holds".into(), n);
                            f.outcomes.insert(
                                "Redis bytes per live hold".into(),
                                (b - a).max(0) as u64 / n,
                            );
                        }
                    }
                }
                report.figures.push(f);
            }
        }
        if let Some(url) = &args.cluster_url {
            let store = raw_store(url, &format!("{prefix}cl"), config, &db).await?;
            say("  ceiling: hold straight on the Redis Cluster, low…");
            let clients = args.clients;
            let f = measure(
                "store hold straight on Redis Cluster (low)",
                secs,
                None,
                &None,
                |w| raw_redis(store.clone(), clients, None, w),
            )
            .await?;
            report.figures.push(f);
        }
    }
    if wants("keys") {
        match &config.redis_url {
            Some(url) if !url.starts_with("redis+cluster") => {
                say(&format!("  key lifetimes: {} past shows…", args.past_shows));
                report.past_shows = Some(
                    keys::past_shows(
                        url,
                        &format!("{prefix}keys"),
                        args.past_shows,
                        config.dependency_timeout(),
                    )
                    .await?,
                );
            }
            _ => report
                .skipped
                .push("key lifetimes: needs a single-node REDIS_URL".into()),
        }
    }
    if wants("checkout") {
        let mut runs: Vec<(&str, u64, bool)> = Vec::new();
        for s in stores.iter().filter(|s| **s != "pg-rowlock") {
            for n in &args.checkout_clients {
                runs.push((s, *n, false));
            }
        }
        runs.push((stores[0], args.overload_clients, true));
        for (s, buyers, overload) in runs {
            let server = &servers[s];
            let show = shows(&server.base, &people.admin, 20_000, 1).await?;
            say(&format!("  checkout, {s} store, {buyers} buyers…"));
            let name = if overload {
                format!("hold + checkout ({s}, {buyers} buyers, overload)")
            } else {
                format!("hold + checkout ({s}, {buyers} buyers)")
            };
            let mut f = measure(&name, secs, Some(server.pid()), &redis_info, |w| {
                checkouts(&server.base, &people.users, &show[0], buyers, overload, w)
            })
            .await?;
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
    // Stopped first, so that no sweeper writes behind the removal.
    drop(servers);
    if let Some(n) = forget_keys(&mut redis_info, &prefix).await {
        eprintln!("bench: removed this run's {n} Redis keys");
    }
    let flagged: Vec<&str> = report
        .figures
        .iter()
        .filter(|f| f.flagged)
        .map(|f| f.name.as_str())
        .collect();
    if args.strict && !flagged.is_empty() {
        anyhow::bail!("--strict: more than 1% errors in {}", flagged.join(", "));
    }
    Ok(())
}

fn ratios(r: &mut BenchReport) {
    let figure = |name: &str| r.figures.iter().find(|f| f.name == name);
    let rate = |name: &str| figure(name).map(|f| f.per_second);
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
            "seat map read, 500 seats / trivial-query ceiling",
            "seat map read, 500 seats",
            "trivial query { __typename }",
        ),
        (
            "compact seat statuses, 500 seats / trivial-query ceiling",
            "compact seat statuses read, 500 seats",
            "trivial query { __typename }",
        ),
        (
            "seat map read, 3000 seats / trivial-query ceiling",
            "seat map read, 3000 seats",
            "trivial query { __typename }",
        ),
        (
            "compact seat statuses, 3000 seats / trivial-query ceiling",
            "compact seat statuses read, 3000 seats",
            "trivial query { __typename }",
        ),
        (
            "shows(first: 20) with live counts / trivial-query ceiling",
            "shows(first: 20) with live counts",
            "trivial query { __typename }",
        ),
        (
            "hot: redis over HTTP / straight on Redis",
            "holdSeats hot (redis)",
            "store hold straight on Redis (hot)",
        ),
    ];
    // Best available next to holdSeats of as many seats on the same show, per store.
    let best: Vec<(String, String, String)> = r
        .figures
        .iter()
        .filter_map(|f| {
            let rest = f.name.strip_prefix("holdBestAvailable ")?;
            Some((
                format!("best available / holdSeats, {rest}"),
                f.name.clone(),
                format!("holdSeats {rest}"),
            ))
        })
        .collect();
    let best_ceiling: Vec<(String, String, String)> = r
        .figures
        .iter()
        .filter(|f| f.name.starts_with("holdBestAvailable "))
        .map(|f| {
            (
                format!("{} / trivial-query ceiling", f.name),
                f.name.clone(),
                "trivial query { __typename }".to_string(),
            )
        })
        .collect();
    let flagged = |name: &str| r.figures.iter().any(|f| f.name == name && f.flagged);
    // A ratio built on a figure with more than 1% errors says so in its name.
    let mut put = |label: String, value: f64, flagged: bool| {
        let label = if flagged {
            format!("{label} (FLAGGED: errors > 1%)")
        } else {
            label
        };
        out.insert(label, value);
    };
    let pairs = pairs
        .iter()
        .map(|(l, a, b)| (l.to_string(), a.to_string(), b.to_string()))
        .chain(best)
        .chain(best_ceiling);
    for (label, a, b) in pairs {
        if let (Some(ra), Some(rb)) = (rate(&a), rate(&b)) {
            if rb > 0.0 {
                put(label, ra / rb, flagged(&a) || flagged(&b));
            }
        }
    }
    // The most the Redis store's hold could reach against the trivial query on these cores: a
    // hold costs the machine at least what the trivial query costs it (the same HTTP and GraphQL
    // work, and more) plus what Redis spends on the hold. Both figures CPU-bound, so throughput
    // goes as the inverse of the machine's CPU per answer; a target above this line cannot be
    // met by making the server cheaper.
    let trivial = figure("trivial query { __typename }").and_then(|f| f.machine_cpu_us_per_op);
    let redis = figure("holdSeats low (redis)").and_then(|f| f.redis_cpu_us_per_op);
    if let (Some(t), Some(redis)) = (trivial, redis) {
        if t > 0.0 {
            put(
                "low: redis / trivial-query ceiling, at most here (the trivial query's machine CPU + Redis's per hold)".into(),
                t / (t + redis),
                flagged("holdSeats low (redis)") || flagged("trivial query { __typename }"),
            );
        }
    }
    // A tighter line, from the same run: the in-process store's hold does all of the hold's HTTP,
    // token and GraphQL work and keeps the seats in the server's memory. The Redis store's hold
    // does the same work, hands the seats to Redis and reads its answer, and Redis does the
    // hold's bookkeeping. Even if that hand-off cost the server and the load generator nothing,
    // the hold would cost the machine the in-process hold plus Redis's share. Between the
    // measured ratio and this line lies what the Redis client path costs; above it, only less
    // work per request (HTTP, token, GraphQL) or a Redis on other cores would help.
    let memory = figure("holdSeats low (memory)").and_then(|f| f.machine_cpu_us_per_op);
    if let (Some(t), Some(m), Some(redis)) = (trivial, memory, redis) {
        if m + redis > 0.0 {
            put(
                "low: redis / trivial-query ceiling, at most with a free Redis client (the in-process store's hold's machine CPU + Redis's per hold)".into(),
                t / (m + redis),
                flagged("holdSeats low (redis)")
                    || flagged("holdSeats low (memory)")
                    || flagged("trivial query { __typename }"),
            );
        }
    }
    // Checkout against the database's own commit rate: confirmed bookings per second; and, to
    // say where the rest goes, a booking's database work alone against both.
    let commits = rate("PostgreSQL one-commit transactions").filter(|c| *c > 0.0);
    let alone = rate(DB_BOOKINGS).filter(|c| *c > 0.0);
    if let (Some(commits), Some(alone)) = (commits, alone) {
        put(
            format!("{DB_BOOKINGS} / one-commit transactions"),
            alone / commits,
            flagged(DB_BOOKINGS),
        );
    }
    let pgbench = rate(PGBENCH).filter(|c| *c > 0.0);
    if let (Some(pgbench), Some(alone)) = (pgbench, alone) {
        put(
            format!("{DB_BOOKINGS} / pgbench -N"),
            alone / pgbench,
            flagged(DB_BOOKINGS) || flagged(PGBENCH),
        );
    }
    if let Some(commits) = commits {
        for f in &r.figures {
            let answered = f.successes + f.expected;
            if !f.name.starts_with("hold + checkout")
                || f.name.contains("overload")
                || answered == 0
            {
                continue;
            }
            // The answers' rate times the share of them that were confirmed.
            let confirmed = f.outcomes.get("CONFIRMED").copied().unwrap_or(0) as f64;
            let per_second = f.per_second * confirmed / answered as f64;
            put(
                format!("confirmed checkouts / one-commit transactions: {}", f.name),
                per_second / commits,
                f.flagged,
            );
            if let Some(pgbench) = pgbench {
                put(
                    format!("confirmed checkouts / pgbench -N: {}", f.name),
                    per_second / pgbench,
                    f.flagged || flagged(PGBENCH),
                );
            }
            if let Some(alone) = alone {
                put(
                    format!("confirmed checkouts / the database work alone: {}", f.name),
                    per_second / alone,
                    f.flagged,
                );
            }
        }
    }
    r.ratios = out;
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
        "abuse limits: {}",
        if r.rate_limits {
            "every mutation counted per account and per address (limits too high to refuse)"
        } else {
            "off (--rate-limits counts them)"
        }
    );
    println!(
        "{:<44} {:>10}  {:>8} {:>8} {:>8}  {:>9} {:>9}",
        "workload", "answers/s", "p50 ms", "p99 ms", "max ms", "srv µs/op", "redis µs"
    );
    for f in &r.figures {
        let us = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<44} {:>10.0}  {:>8.2} {:>8.2} {:>8.2}  {:>9} {:>9}{}",
            f.name,
            f.per_second,
            f.latency.p50_ms,
            f.latency.p99_ms,
            f.latency.max_ms,
            us(f.server_cpu_us_per_op),
            us(f.redis_cpu_us_per_op),
            if f.flagged {
                format!("  FLAGGED: {:.1}% errors", f.error_share * 100.0)
            } else {
                String::new()
            }
        );
        println!(
            "    {} successes, {} expected outcomes, {} errors ({:.2}%); {:.0} answers/s counting errors",
            f.successes,
            f.expected,
            f.errors,
            f.error_share * 100.0,
            f.all_answers_per_second
        );
        if let Some(machine) = f.machine_cpu_us_per_op {
            let part = |name: &str, v: Option<f64>| v.map(|v| format!("{name} {v:.0}"));
            let parts: Vec<String> = [
                part("server", f.server_cpu_us_per_op),
                part("Redis", f.redis_cpu_us_per_op),
                part("PostgreSQL", f.postgres_cpu_us_per_op),
                part("load generator", f.generator_cpu_us_per_op),
            ]
            .into_iter()
            .flatten()
            .collect();
            println!(
                "    CPU µs per answer: {}; the machine {machine:.0}",
                parts.join(", ")
            );
        }
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
            println!("  {k:<44} {v:>8.3}");
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
    if let Some(p) = &r.past_shows {
        println!(
            "key lifetimes: {} past shows (4 seats booked, 1 hold each): Redis used_memory {:.1} → {:.1} MiB filled → {:.1} MiB after their lifetime ({} → {} → {} keys, {:.0} bytes per show while live; {:.1} s)",
            p.shows,
            p.bytes_before as f64 / 1048576.0,
            p.bytes_filled as f64 / 1048576.0,
            p.bytes_after as f64 / 1048576.0,
            p.keys_before,
            p.keys_filled,
            p.keys_after,
            (p.bytes_filled - p.bytes_before) as f64 / p.shows as f64,
            p.seconds_to_expire
        );
    }
    for s in &r.skipped {
        println!("skipped: {s}");
    }
}

/// Connections of the bench's own pool while servers run.
const BENCH_CONNECTIONS: u32 = 8;

/// PostgreSQL's own benchmark, `pgbench -N`, on the same server: the write-path issue's reference.
const PGBENCH: &str = "pgbench -N (BEGIN; UPDATE; SELECT; INSERT; END)";
/// The name of the measurement of a booking's database work alone.
const DB_BOOKINGS: &str = "a booking's database work alone (intent, ledger, confirm)";

/// Connections of the mock gateway's own pool in each server (`payment::GATEWAY_POOL_SIZE`).
const GATEWAY_CONNECTIONS: u32 = boxoffice::payment::GATEWAY_POOL_SIZE;

/// Each bench server's database pool: the servers (and their gateways' pools) share the
/// database's `max_connections`, less a few for the bench itself and administration; at most the
/// service's default of 32.
async fn server_pool(url: &str, servers: usize) -> anyhow::Result<u32> {
    use sea_orm::ConnectionTrait;
    let (db, _) = boxoffice::db::connect_sized(url, Duration::from_secs(10), 1).await?;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_setting('max_connections')::int AS n",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no max_connections"))?;
    let max: i32 = row.try_get("", "n")?;
    let share = (max.max(0) as u32).saturating_sub(BENCH_CONNECTIONS + 2) / servers.max(1) as u32;
    Ok(share.saturating_sub(GATEWAY_CONNECTIONS).clamp(4, 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: &str, per_second: f64, machine: f64, redis: f64) -> Figure {
        Figure {
            name: name.into(),
            per_second,
            successes: 1000,
            machine_cpu_us_per_op: Some(machine),
            redis_cpu_us_per_op: Some(redis),
            ..Default::default()
        }
    }

    /// The hold's bound is the trivial query's machine CPU over that plus Redis's CPU per hold
    /// (2026-12-04's run: 67 µs and 55 µs, at most 0.549), printed beside the measured ratio.
    #[test]
    fn the_hold_bound_adds_redis_to_the_trivial_query() {
        // The printed ratio whose label contains `part`, if printed.
        let line = |r: &BenchReport, part: &str| {
            r.ratios
                .iter()
                .find(|(k, _)| k.contains(part))
                .map(|(_, v)| *v)
        };
        let mut r = BenchReport {
            figures: vec![
                figure("trivial query { __typename }", 28_320.0, 67.0, 0.0),
                figure("holdSeats low (redis)", 9_307.0, 199.0, 55.0),
            ],
            ..Default::default()
        };
        ratios(&mut r);
        let bound = line(&r, "at most here").expect("the bound is printed");
        assert!((bound - 67.0 / 122.0).abs() < 1e-9, "{bound}");
        let measured = r.ratios["low: redis / trivial-query ceiling"];
        assert!((measured - 9_307.0 / 28_320.0).abs() < 1e-9);
        assert!(measured < bound);
        // Without the in-process store's figure there is no tighter line.
        assert_eq!(line(&r, "free Redis client"), None);
        // With it (2026-12-05's run: the in-process hold cost the machine 44 µs, the trivial
        // query 29, Redis 15 per hold), the tighter line is 29 / (44 + 15).
        let mut both = BenchReport {
            figures: vec![
                figure("trivial query { __typename }", 62_033.0, 29.0, 0.0),
                figure("holdSeats low (memory)", 42_215.0, 44.0, 0.0),
                figure("holdSeats low (redis)", 25_618.0, 69.0, 15.0),
            ],
            ..Default::default()
        };
        ratios(&mut both);
        let tighter = line(&both, "free Redis client").expect("the tighter line is printed");
        let bound = line(&both, "at most here").expect("the bound is printed");
        assert!((tighter - 29.0 / 59.0).abs() < 1e-9);
        assert!((bound - 29.0 / 44.0).abs() < 1e-9);
        assert!(tighter < bound);
        // Without the Redis store's figure there is no bound to print.
        let mut only_trivial = BenchReport {
            figures: vec![figure("trivial query { __typename }", 28_320.0, 67.0, 0.0)],
            ..Default::default()
        };
        ratios(&mut only_trivial);
        assert_eq!(line(&only_trivial, "at most here"), None);
    }
}
