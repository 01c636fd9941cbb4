//! The measured workloads: each runs its clients until the window closes and returns their meter.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{run_clients, Class, Meter, Window};
use crate::client::{Http, Reply};
use boxoffice::holds::HoldStore;

pub(super) const HOLD: &str =
    "mutation($s: ID!, $seats: [ID!]!) { holdSeats(showId: $s, seatIds: $seats) { id } }";
pub(super) const RELEASE: &str = "mutation($h: ID!) { releaseHold(holdId: $h) }";
pub(super) const CHECKOUT: &str =
    "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { status } }";

/// Hot contention: every client fights over the same few seats; a winner releases at once so the
/// fight goes on. Counts hold attempts (won or `SEATS_UNAVAILABLE`).
pub(super) async fn hold_hot(
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
                count_and_release(&mut http, token, &mut m, &w, t, r, "holdSeats").await;
            }
            m
        }
    })
    .await
}

pub(super) const BEST: &str =
    "mutation($s: ID!, $n: Int!) { holdBestAvailable(showId: $s, count: $n) { id } }";

/// How a group of 2–4 takes seats in the best-available comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pick {
    /// `holdBestAvailable`: the server chooses (and holds) the best seats.
    Best,
    /// `holdSeats` of a random run of seats in layout order (what a client picking from a map
    /// it already has would send, minus the map read).
    Manual,
}

/// 2–4 seats per attempt on one show; a winner releases at once, so the best seats stay in
/// demand and the house never fills. Counts attempts (won or `SEATS_UNAVAILABLE`).
pub(super) async fn group_holds(
    base: &str,
    users: &[String],
    show: &(String, Vec<String>),
    clients: u64,
    pick: Pick,
    w: Window,
) -> anyhow::Result<Meter> {
    let (users, show) = (Arc::new(users.to_vec()), Arc::new(show.clone()));
    let base = base.to_string();
    run_clients(clients, move |c| {
        let (users, show, base) = (users.clone(), show.clone(), base.clone());
        async move {
            let mut m = Meter::default();
            let Ok(mut http) = Http::new(&base) else {
                return m;
            };
            let mut rng = StdRng::seed_from_u64(c + 7000);
            let token = &users[c as usize % users.len()];
            let (id, seats) = (&show.0, &show.1);
            while w.running() {
                let n = rng.random_range(2..=4usize);
                let (query, vars, field) = match pick {
                    Pick::Best => (BEST, json!({ "s": id, "n": n }), "holdBestAvailable"),
                    Pick::Manual => {
                        let start = rng.random_range(0..seats.len().saturating_sub(n).max(1));
                        let run: Vec<&String> = seats.iter().skip(start).take(n).collect();
                        (HOLD, json!({ "s": id, "seats": run }), "holdSeats")
                    }
                };
                let t = Instant::now();
                let r = http.gql(Some(token), query, vars).await;
                count_and_release(&mut http, token, &mut m, &w, t, r, field).await;
            }
            m
        }
    })
    .await
}

/// Count a contended hold attempt (won, or `SEATS_UNAVAILABLE` as an expected outcome); a won
/// hold (`field` of the answer) is released at once so the contest goes on. A release that fails
/// leaves the seats held (the contest shrinks) and is counted.
async fn count_and_release(
    http: &mut Http,
    token: &str,
    m: &mut Meter,
    w: &Window,
    t: Instant,
    reply: anyhow::Result<Reply>,
    field: &str,
) {
    match reply {
        Ok(Reply::Data(d)) => {
            m.answer(w, t, "won (then released)", Class::Success);
            let hold = d[field]["id"].clone();
            let released = http.gql(Some(token), RELEASE, json!({ "h": hold })).await;
            if !matches!(released, Ok(Reply::Data(ref d)) if d["releaseHold"] == true) {
                m.follow_up_failed(w, t, "release failed");
            }
        }
        Ok(Reply::Error { code, .. }) => {
            let class = if code == "SEATS_UNAVAILABLE" {
                Class::Expected
            } else {
                Class::Error
            };
            m.answer(w, t, &code, class);
        }
        Err(e) => m.answer(w, t, &format!("transport error: {e}"), Class::Error),
    }
}

/// Holds made on one show of the low-contention workload before it moves to the next.
pub(super) const HOLDS_PER_LOW_SHOW: u64 = 5000;

/// Low contention: one random seat of a 20,000-seat show per attempt; 2,500 users hold two seats
/// each on a show, then the next show is used (so no show is ever more than a quarter full).
pub(super) async fn hold_low(
    base: &str,
    users: &[String],
    shows: &[(String, Vec<String>)],
    clients: u64,
    w: Window,
) -> anyhow::Result<Meter> {
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
                let Some((show, seats)) = shows.get((n / HOLDS_PER_LOW_SHOW) as usize) else {
                    m.count("ran out of fresh shows");
                    break;
                };
                let token = &users[((n % HOLDS_PER_LOW_SHOW) / 2) as usize % users.len()];
                let seat = &seats[rng.random_range(0..seats.len())];
                let t = Instant::now();
                let r = http
                    .gql(Some(token), HOLD, json!({ "s": show, "seats": [seat] }))
                    .await;
                match r {
                    Ok(Reply::Data(_)) => m.answer(&w, t, "won", Class::Success),
                    Ok(Reply::Error { code, .. }) if code == "SEATS_UNAVAILABLE" => {
                        m.answer(&w, t, &code, Class::Expected)
                    }
                    Ok(Reply::Error { code, .. }) => m.answer(&w, t, &code, Class::Error),
                    Err(e) => m.answer(&w, t, &format!("transport error: {e}"), Class::Error),
                }
            }
            m
        }
    })
    .await
}

/// Checkout: each client holds the next free seat and pays for it (the mock gateway's latency and
/// 1% declines included). Latency is hold + checkout.
pub(super) async fn checkouts(
    base: &str,
    users: &[String],
    show: &(String, Vec<String>),
    clients: u64,
    overload: bool,
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
                let (outcome, class) = match http
                    .gql(Some(token), HOLD, json!({ "s": show.0, "seats": [seat] }))
                    .await
                {
                    Ok(Reply::Data(d)) => {
                        // Keys are per user: one per show and seat, so that runs on other shows (the
                        // same users) never replay each other's bookings.
                        let key = format!("bench-{}-{n}", show.0);
                        let hold = d["holdSeats"]["id"].clone();
                        let paid = http
                            .gql(Some(token), CHECKOUT, json!({ "h": hold, "k": key }))
                            .await;
                        if !matches!(paid, Ok(Reply::Data(_))) {
                            // As a real client would: give the seat back rather than sit on it
                            // (and on this user's hold allowance) until the TTL.
                            let _ = http.gql(Some(token), RELEASE, json!({ "h": hold })).await;
                        }
                        match paid {
                            Ok(Reply::Data(d)) => match d["checkout"]["status"].as_str() {
                                Some("CONFIRMED") => ("CONFIRMED".to_string(), Class::Success),
                                // A declined payment is a correct answer (the mock declines 1%).
                                Some("FAILED") => ("FAILED".to_string(), Class::Expected),
                                other => (format!("checkout status {other:?}"), Class::Error),
                            },
                            // Under overload a fast refusal is the designed answer.
                            Ok(Reply::Error { code, .. })
                                if overload && code == "SERVICE_UNAVAILABLE" =>
                            {
                                (format!("checkout {code} (refused)"), Class::Expected)
                            }
                            Ok(Reply::Error { code, .. }) => {
                                (format!("checkout {code}"), Class::Error)
                            }
                            Err(e) => (format!("transport error: {e}"), Class::Error),
                        }
                    }
                    Ok(Reply::Error { code, .. }) => (format!("hold {code}"), Class::Error),
                    Err(e) => (format!("transport error: {e}"), Class::Error),
                };
                m.answer(&w, t, &outcome, class);
            }
            m
        }
    })
    .await
}

/// The trivial-query ceiling: `{ __typename }` through the same HTTP + GraphQL stack.
pub(super) async fn trivial(base: &str, clients: u64, w: Window) -> anyhow::Result<Meter> {
    reads(base, clients, w, "{ __typename }", json!({})).await
}

/// One read-only query in a loop, anonymous (the trivial query, a seat map).
pub(super) async fn reads(
    base: &str,
    clients: u64,
    w: Window,
    query: &'static str,
    variables: serde_json::Value,
) -> anyhow::Result<Meter> {
    let base = base.to_string();
    run_clients(clients, move |_| {
        let (base, variables) = (base.clone(), variables.clone());
        async move {
            let mut m = Meter::default();
            let Ok(mut http) = Http::new(&base) else {
                return m;
            };
            while w.running() {
                let t = Instant::now();
                match http.gql_unread(None, query, variables.clone()).await {
                    Ok(Reply::Data(_)) => m.answer(&w, t, "ok", Class::Success),
                    Ok(Reply::Error { code, .. }) => m.answer(&w, t, &code, Class::Error),
                    Err(e) => m.answer(&w, t, &format!("transport error: {e}"), Class::Error),
                }
            }
            m
        }
    })
    .await
}

/// The store's hold called straight on Redis from this process (no HTTP, no GraphQL): hot
/// (`hot` seats, winners release) or low contention (random seats of fresh 20,000-seat shows).
pub(super) async fn raw_redis(
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
                let hold_id = boxoffice::holds::new_hold_id(show);
                let t = Instant::now();
                let r = store
                    .hold(&boxoffice::holds::HoldRequest {
                        show_id: show,
                        hold_id: &hold_id,
                        user_id: user,
                        seats: &seats,
                        ttl,
                        max_holds: 2,
                    })
                    .await;
                match r {
                    Ok(boxoffice::holds::HoldOutcome::Granted { .. }) => {
                        m.answer(&w, t, "won", Class::Success);
                        if hot.is_some() {
                            let released = store.release(show, &hold_id, user).await;
                            if !matches!(
                                released,
                                Ok(boxoffice::holds::ReleaseOutcome::Released { .. })
                            ) {
                                m.follow_up_failed(&w, t, "release failed");
                            }
                        }
                    }
                    Ok(boxoffice::holds::HoldOutcome::Unavailable(_)) => {
                        m.answer(&w, t, "SEATS_UNAVAILABLE", Class::Expected)
                    }
                    Ok(boxoffice::holds::HoldOutcome::TooManyHolds) => {
                        m.answer(&w, t, "LIMIT_EXCEEDED", Class::Error)
                    }
                    Ok(boxoffice::holds::HoldOutcome::NotAdmitted) => {
                        m.answer(&w, t, "NOT_ADMITTED", Class::Error)
                    }
                    // First use of a show: it has no waiting room (the server would mirror
                    // that from the database; these shows exist only in Redis). Not counted.
                    Ok(boxoffice::holds::HoldOutcome::NeedQueueConfig) => {
                        let off = boxoffice::holds::QueueConfig::OFF;
                        if let Err(e) = store.configure_queue(show, off, true).await {
                            m.answer(&w, t, &format!("store error: {e}"), Class::Error);
                        }
                    }
                    Err(e) => m.answer(&w, t, &format!("store error: {e}"), Class::Error),
                }
            }
            m
        }
    })
    .await
}

/// The database's own commit rate: each client commits one-statement transactions
/// (`UPDATE … SET n = n + 1` on its own row of a scratch table) as fast as it can — the
/// reference checkout is measured against (like `pgbench -N`, one commit per transaction).
pub(super) async fn commits(url: String, clients: u64, w: Window) -> anyhow::Result<Meter> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let (db, _) =
        boxoffice::db::connect_sized(&url, Duration::from_secs(10), clients as u32).await?;
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS bench_commits (id INT PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0)",
    )
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO bench_commits (id) SELECT g FROM generate_series(0, {}) g ON CONFLICT DO NOTHING",
        clients
    ))
    .await?;
    run_clients(clients, move |c| {
        let db = db.clone();
        async move {
            let mut m = Meter::default();
            let update = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE bench_commits SET n = n + 1 WHERE id = $1",
                [(c as i32).into()],
            );
            while w.running() {
                let t = Instant::now();
                match db.execute_raw(update.clone()).await {
                    Ok(_) => m.answer(&w, t, "committed", Class::Success),
                    Err(e) => m.answer(&w, t, &format!("database error: {e}"), Class::Error),
                }
            }
            m
        }
    })
    .await
}

/// A booking's database work alone: the service's own statements (the intent, the mock gateway's
/// ledger insert, the confirmation), written as the service writes them — through its group
/// writers, so that bookings arriving together share statements and commits — straight to
/// PostgreSQL by `clients` clients, one fresh seat each time; no HTTP, GraphQL, Redis or gateway
/// latency. Its rate against pgbench -N says what the schema costs; checkout against it, what the
/// service around it costs.
pub(super) async fn db_bookings(
    url: String,
    seats: Vec<(i64, i64)>,
    clients: u64,
    w: Window,
) -> anyhow::Result<Meter> {
    use boxoffice::booking::one_statement::{Confirmation, Intent};
    use boxoffice::payment::PaymentGateway;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let (db, _) =
        boxoffice::db::connect_sized(&url, Duration::from_secs(10), clients as u32).await?;
    let user: i64 = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT min(id) AS id FROM users",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no users"))?
        .try_get("", "id")?;
    let gateway = Arc::new(boxoffice::payment::mock::MockGateway::new(
        db.clone(),
        0.0,
        Duration::ZERO,
        Some(1),
    ));
    let writes = Arc::new(boxoffice::booking::Writes::start(
        &db,
        boxoffice::booking::GroupRules {
            writers: 4,
            max: 64,
        },
    ));
    let seats = Arc::new(seats);
    let next = Arc::new(AtomicU64::new(0));
    let run = rand::random::<u32>();
    run_clients(clients, move |_| {
        let (writes, gateway, seats, next) =
            (writes.clone(), gateway.clone(), seats.clone(), next.clone());
        async move {
            let mut m = Meter::default();
            while w.running() {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(show_id, seat)) = seats.get(n) else {
                    m.count("ran out of seats");
                    break;
                };
                let t = Instant::now();
                let (hold, key) = (
                    format!("{show_id}-db{run:x}{n:x}"),
                    format!("db-{run:x}-{n}"),
                );
                let at = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
                let pending = Intent {
                    user,
                    show: show_id,
                    hold_id: hold,
                    key,
                    total: 1000,
                    seats: vec![(seat, 1000)],
                    at,
                    detail: json!({}),
                };
                let booked = async {
                    let id = writes.intent(pending).await?;
                    let charge_key = boxoffice::booking::charge_key(id);
                    let paid = gateway.charge(&charge_key, 1000).await?;
                    let provider_ref = match paid {
                        boxoffice::payment::Outcome::Succeeded { provider_ref } => provider_ref,
                        other => anyhow::bail!("charge {other:?}"),
                    };
                    let c = Confirmation {
                        booking: id,
                        show: show_id,
                        user,
                        provider_ref,
                        at,
                        payload: json!({}),
                        detail: json!({}),
                    };
                    Ok::<bool, anyhow::Error>(writes.confirm(c).await?)
                }
                .await;
                match booked {
                    Ok(true) => m.answer(&w, t, "CONFIRMED", Class::Success),
                    Ok(false) => m.answer(&w, t, "not moved", Class::Error),
                    Err(e) => m.answer(&w, t, &format!("database error: {e}"), Class::Error),
                }
            }
            m
        }
    })
    .await
}

/// `pgbench -N` itself — PostgreSQL's own benchmark client, its built-in "simple update"
/// transaction (BEGIN; UPDATE pgbench_accounts; SELECT; INSERT INTO pgbench_history; END) from
/// `clients` connections — on the same database server: the reference the write-path issue
/// names for checkout. Its tables (`pgbench_*`, scale 1) live beside the service's in the bench
/// database. pgbench logs every transaction; those that start inside the window are counted, as
/// the bench's own clients' are. `None` when no `pgbench` is installed.
pub(super) async fn pgbench_n(url: &str, clients: u64, w: Window) -> anyhow::Result<Option<Meter>> {
    use std::time::{SystemTime, UNIX_EPOCH};
    let Some(pgbench) = pgbench_binary() else {
        return Ok(None);
    };
    let init = tokio::process::Command::new(&pgbench)
        .args(["-i", "-q", "-s", "1", url])
        .output()
        .await?;
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&init.stderr).trim()
    );
    let dir = std::env::temp_dir().join(format!("boxoffice-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // The window in wall-clock time (pgbench logs epoch times).
    let now = (Instant::now(), SystemTime::now());
    let wall = |t: Instant| now.1 + t.saturating_duration_since(now.0);
    let (start, end) = (wall(w.start), wall(w.end));
    let run_for = w.end.saturating_duration_since(Instant::now()).as_secs() + 2;
    let jobs = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(clients as usize);
    let out = tokio::process::Command::new(&pgbench)
        .args(["-n", "-N"])
        .args(["-c", &clients.to_string(), "-j", &jobs.to_string()])
        .args(["-T", &run_for.to_string(), "--log"])
        .arg(format!("--log-prefix={}", dir.join("tx").display()))
        .arg(url)
        .output()
        .await?;
    let logs: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let mut m = Meter::default();
    for log in &logs {
        let text = std::fs::read_to_string(log)?;
        for line in text.lines() {
            // client_id transaction_no time script_no time_epoch time_us [schedule_lag]
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(latency), Some(s), Some(us)) = (f.get(2), f.get(4), f.get(5)) else {
                continue;
            };
            let (Ok(s), Ok(us)) = (s.parse::<u64>(), us.parse::<u64>()) else {
                continue;
            };
            let done = UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us);
            match latency.parse::<u64>() {
                Ok(l) => {
                    let began = done - Duration::from_micros(l);
                    if began >= start && began < end {
                        m.successes += 1;
                        m.latency.record(Duration::from_micros(l));
                        m.count("committed");
                    }
                }
                // "failed" or "skipped": an error when it ended inside the window.
                Err(_) if done >= start && done < end => {
                    m.errors += 1;
                    m.count(&format!("pgbench: {latency}"));
                }
                Err(_) => {}
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        out.status.success(),
        "pgbench -N failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(Some(m))
}

/// `pgbench` on the PATH, or in a Debian PostgreSQL server package's directory.
fn pgbench_binary() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("pgbench"))
            .find(|f| f.is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin/pgbench")))
            .filter(|f| f.is_file())
            .collect();
        found.sort();
        found.pop()
    })
}
