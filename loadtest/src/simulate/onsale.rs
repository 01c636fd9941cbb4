//! The on-sale scenario (`--queue-per-minute`): the show's sale opens through the waiting room;
//! users arrive spread over `--arrivals-seconds` (some before the opening, some after), join the
//! queue and poll their place (more rarely the further back they are, as the web page's
//! subscription does) until they are admitted; the admitted go on to shop as in any run. Sold
//! out ends the waiting. Reported: admissions per minute measured against the setting, the
//! fairness of the order (rank correlation of arrival and admission), and what a waiting user
//! costs Redis.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::users::SignUps;
use crate::client::{Http, Reply};
use crate::report::{Latency, Summary};
use crate::target::Target;

/// Clients that poll waiting users' places (each owns a share of the users).
const POLLERS: usize = 32;

#[derive(Debug, Clone, Copy)]
pub struct OnSaleArgs {
    pub per_minute: u32,
    pub session_seconds: u32,
    pub opens_after_seconds: u64,
    pub arrivals_seconds: u64,
}

#[derive(Debug, Serialize)]
pub struct QueueReport {
    pub admit_per_minute_configured: u32,
    /// Admissions per minute by the server's own count (`Show.onSale.admitted`, sampled every
    /// second) from the first admission to the last sample with people still waiting.
    pub admit_per_minute_measured: f64,
    /// The same from the admissions the users saw (each admission's time from its session end).
    pub admit_per_minute_seen_by_users: f64,
    /// Measured / configured.
    pub admission_rate_ratio: f64,
    pub joined: u64,
    pub joined_before_opening: u64,
    pub admitted: u64,
    /// Users still waiting when the show sold out.
    pub sold_out_while_waiting: u64,
    /// Spearman rank correlation of arrival order and admission order among who arrived after
    /// the opening (1.0: first come, first served).
    pub arrival_vs_admission_after_opening: Option<f64>,
    /// The same among who arrived before the opening (near 0: a shuffle).
    pub arrival_vs_admission_before_opening: Option<f64>,
    /// Share of the early arrivals' first half (by arrival) admitted in the early arrivals'
    /// first half (by admission): 0.5 for a uniform shuffle.
    pub early_first_half_kept: Option<f64>,
    /// The whole line's order (each waiting user's `number`, its place since the opening)
    /// against arrival order: among who arrived after the opening (1.0: first come, first
    /// served) and before it (near 0: shuffled), and how many numbers each is drawn from.
    pub arrival_vs_place_after_opening: Option<f64>,
    pub arrival_vs_place_before_opening: Option<f64>,
    pub places_after_opening: u64,
    pub places_before_opening: u64,
    pub ticket_polls: u64,
    pub join_latency: Summary,
    pub ticket_latency: Summary,
    /// Redis memory of the waiting line per waiting user (`MEMORY USAGE` of the line's key at
    /// its longest, divided by its length).
    pub redis_bytes_per_waiting_user: Option<f64>,
    pub errors: u64,
}

#[derive(Clone, Copy, Default)]
struct Seen {
    joined_at: Option<Instant>,
    before_opening: bool,
    admitted_ms: Option<i64>,
    /// The place's number in the line, once the sale is open.
    number: Option<u64>,
}

/// Open the show's sale through the waiting room, then run the line: every signed-up user joins
/// at their arrival time and is handed to the shoppers (`admitted`) once admitted. Returns when
/// the show sells out or every user was admitted.
pub async fn run(
    config: &Target,
    url: &str,
    show: &str,
    args: OnSaleArgs,
    tokens: Arc<SignUps>,
    seed: u64,
    admitted_tx: mpsc::UnboundedSender<usize>,
) -> anyhow::Result<QueueReport> {
    let stop = CancellationToken::new();
    let mut http = Http::new(url)?;
    let admin = super::setup::admin_token(&mut http, config, "for an on-sale run").await?;
    let start = Instant::now();
    let opens_at: DateTime<Utc> =
        Utc::now() + chrono::Duration::seconds(args.opens_after_seconds as i64);
    let opens_instant = start + Duration::from_secs(args.opens_after_seconds);
    http.gql(
        Some(&admin),
        "mutation($s: ID!, $at: DateTime!, $rate: Int!, $secs: Int!) { setOnSale(showId: $s, opensAt: $at, admitPerMinute: $rate, sessionMinutes: 1, sessionSeconds: $secs, queueEnabled: true) { id } }",
        json!({ "s": show, "at": opens_at.to_rfc3339(), "rate": args.per_minute, "secs": args.session_seconds }),
    )
    .await?
    .data()
    .map_err(|e| anyhow::anyhow!("setOnSale: {e}"))?;

    let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(vec![Seen::default(); tokens.len()]));
    let sold_out = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0051_e0e0);
    let arrivals: Vec<Duration> = (0..tokens.len())
        .map(|_| Duration::from_secs_f64(rng.random_range(0.0..=args.arrivals_seconds as f64)))
        .collect();

    // Sold out (nothing available, nothing held) ends the waiting; the line's size is sampled.
    let monitor = tokio::spawn(monitor(
        config.clone(),
        url.to_string(),
        show.to_string(),
        sold_out.clone(),
        stop.clone(),
    ));

    let mut pollers = Vec::new();
    for p in 0..POLLERS {
        let mine: Vec<usize> = (p..tokens.len()).step_by(POLLERS).collect();
        let (tokens, seen, sold_out, polls, errors, tx, stop) = (
            tokens.clone(),
            seen.clone(),
            sold_out.clone(),
            polls.clone(),
            errors.clone(),
            admitted_tx.clone(),
            stop.clone(),
        );
        let (url, show, arrivals) = (url.to_string(), show.to_string(), arrivals.clone());
        pollers.push(tokio::spawn(async move {
            let mut http = match Http::new(&url) {
                Ok(h) => h,
                Err(_) => return (Latency::default(), Latency::default()),
            };
            let (mut join_l, mut ticket_l) = (Latency::default(), Latency::default());
            // (when, user, joined yet)
            let mut due: BinaryHeap<Reverse<(Instant, usize, bool)>> = mine
                .iter()
                .filter(|u| tokens[**u].is_ok())
                .map(|u| Reverse((start + arrivals[*u], *u, false)))
                .collect();
            while let Some(Reverse((at, u, joined))) = due.pop() {
                if sold_out.load(Ordering::Relaxed) || stop.is_cancelled() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = stop.cancelled() => break,
                }
                let Ok((token, _)) = &tokens[u] else { continue };
                let t = Instant::now();
                let reply = if joined {
                    polls.fetch_add(1, Ordering::Relaxed);
                    http.gql(
                        Some(token),
                        "query($s: ID!) { queueTicket(showId: $s) { state number estimatedWaitSeconds admittedUntil } }",
                        json!({ "s": show }),
                    )
                    .await
                } else {
                    http.gql(
                        Some(token),
                        "mutation($s: ID!) { joinQueue(showId: $s) { state number estimatedWaitSeconds admittedUntil } }",
                        json!({ "s": show }),
                    )
                    .await
                };
                let field = if joined { "queueTicket" } else { "joinQueue" };
                let ticket = match reply {
                    Ok(Reply::Data(d)) => d[field].clone(),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        due.push(Reverse((Instant::now() + Duration::from_secs(1), u, joined)));
                        continue;
                    }
                };
                if joined {
                    ticket_l.record(t.elapsed());
                } else {
                    join_l.record(t.elapsed());
                    if let Ok(mut s) = seen.lock() {
                        s[u].joined_at = Some(t);
                        s[u].before_opening = t < opens_instant;
                    }
                }
                match ticket["state"].as_str() {
                    Some("ADMITTED") | Some("EXPIRED") => {
                        // The session started `session` before its end (no hold has lengthened
                        // it yet: this user has not shopped).
                        let end = ticket["admittedUntil"]
                            .as_str()
                            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                            .map(|d| d.timestamp_millis());
                        if let (Some(end), Ok(mut s)) = (end, seen.lock()) {
                            s[u].admitted_ms = Some(end - args.session_seconds as i64 * 1000);
                        }
                        if ticket["state"] == "ADMITTED" {
                            let _ = tx.send(u);
                        }
                    }
                    _ => {
                        if let (Some(n), Ok(mut s)) = (ticket["number"].as_u64(), seen.lock()) {
                            s[u].number = Some(n);
                        }
                        let wait = ticket["estimatedWaitSeconds"].as_u64().unwrap_or(1);
                        let pause = Duration::from_secs_f64((wait as f64 / 10.0).clamp(0.5, 20.0));
                        due.push(Reverse((Instant::now() + pause, u, true)));
                    }
                }
            }
            (join_l, ticket_l)
        }));
    }
    drop(admitted_tx);
    let (mut join_l, mut ticket_l) = (Latency::default(), Latency::default());
    for p in pollers {
        if let Ok((j, t)) = p.await {
            join_l.add(&j);
            ticket_l.add(&t);
        }
    }
    stop.cancel();
    let (bytes, samples) = monitor.await.unwrap_or_default();

    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut r = report(
        args,
        &seen,
        polls.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        join_l,
        ticket_l,
        bytes,
    );
    // The server's count: from the first sample with an admission to the last with a line.
    let first = samples.iter().find(|s| s.1 >= 1);
    let last = samples.iter().rev().find(|s| s.2 > 0);
    if let (Some(a), Some(b)) = (first, last) {
        let secs = (b.0 - a.0).as_secs_f64();
        if secs > 0.0 && b.1 > a.1 {
            r.admit_per_minute_measured = (b.1 - a.1) as f64 * 60.0 / secs;
            r.admission_rate_ratio = r.admit_per_minute_measured / args.per_minute.max(1) as f64;
        }
    }
    Ok(r)
}

/// (when, admitted so far, waiting) as the server counts them.
type Sample = (Instant, u64, u64);

/// Watches for the sell-out and samples the room's counts (1 s period), and the line's memory in
/// Redis at its longest.
async fn monitor(
    config: Target,
    url: String,
    show: String,
    sold_out: Arc<AtomicBool>,
    stop: CancellationToken,
) -> (Option<f64>, Vec<Sample>) {
    let mut samples = Vec::new();
    let Ok(mut http) = Http::new(&url) else {
        return (None, samples);
    };
    let mut redis = match config.redis_url.as_deref().map(redis::Client::open) {
        Some(Ok(c)) => c.get_multiplexed_async_connection().await.ok(),
        _ => None,
    };
    let key = boxoffice::holds::redis::keys::show_key(
        &config.redis_key_prefix,
        show.parse().unwrap_or_default(),
        "qwait",
    );
    let (mut longest, mut bytes) = (0u64, None);
    while !stop.is_cancelled() {
        if let Ok(Reply::Data(d)) = http
            .gql(
                None,
                "query($s: ID!) { show(id: $s) { availableSeats heldSeats onSale { admitted waiting } } }",
                json!({ "s": show }),
            )
            .await
        {
            let room = &d["show"]["onSale"];
            samples.push((
                Instant::now(),
                room["admitted"].as_u64().unwrap_or(0),
                room["waiting"].as_u64().unwrap_or(0),
            ));
            if d["show"]["availableSeats"] == 0 && d["show"]["heldSeats"] == 0 {
                sold_out.store(true, Ordering::Relaxed);
                stop.cancel();
                break;
            }
        }
        if let Some(conn) = redis.as_mut() {
            let len: u64 = redis::cmd("ZCARD")
                .arg(&key)
                .query_async(conn)
                .await
                .unwrap_or(0);
            if len > longest {
                let used: Option<u64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async(conn)
                    .await
                    .ok();
                if let Some(used) = used {
                    longest = len;
                    bytes = Some(used as f64 / len as f64);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => break,
        }
    }
    (bytes, samples)
}

/// Spearman's rank correlation of two orders of the same items (ranks 0..n, no ties).
fn spearman(a: &[usize], b: &[usize]) -> Option<f64> {
    let n = a.len() as f64;
    if a.len() < 3 {
        return None;
    }
    let d2: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    Some(1.0 - 6.0 * d2 / (n * (n * n - 1.0)))
}

/// Ranks (0-based) of the items by a key.
fn ranks<K: PartialOrd + Copy>(keys: &[K]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|x, y| {
        keys[*x]
            .partial_cmp(&keys[*y])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut r = vec![0; keys.len()];
    for (rank, i) in order.into_iter().enumerate() {
        r[i] = rank;
    }
    r
}

fn report(
    args: OnSaleArgs,
    seen: &[Seen],
    polls: u64,
    errors: u64,
    join_l: Latency,
    ticket_l: Latency,
    bytes: Option<f64>,
) -> QueueReport {
    let joined: Vec<&Seen> = seen.iter().filter(|s| s.joined_at.is_some()).collect();
    let admitted: Vec<&Seen> = joined
        .iter()
        .copied()
        .filter(|s| s.admitted_ms.is_some())
        .collect();
    let mut times: Vec<i64> = admitted.iter().filter_map(|s| s.admitted_ms).collect();
    times.sort_unstable();
    let measured = match (times.first(), times.last()) {
        (Some(a), Some(b)) if b > a => (times.len() - 1) as f64 * 60_000.0 / (b - a) as f64,
        _ => 0.0,
    };
    let correlation = |early: bool| {
        let group: Vec<&&Seen> = admitted
            .iter()
            .filter(|s| s.before_opening == early)
            .collect();
        let arrival: Vec<Instant> = group.iter().filter_map(|s| s.joined_at).collect();
        let admission: Vec<i64> = group.iter().filter_map(|s| s.admitted_ms).collect();
        spearman(&ranks(&arrival), &ranks(&admission))
    };
    let early_kept = {
        let group: Vec<&&Seen> = admitted.iter().filter(|s| s.before_opening).collect();
        let arrival = ranks(&group.iter().filter_map(|s| s.joined_at).collect::<Vec<_>>());
        let admission = ranks(
            &group
                .iter()
                .filter_map(|s| s.admitted_ms)
                .collect::<Vec<_>>(),
        );
        let half = group.len() / 2;
        (half > 0).then(|| {
            let kept = arrival
                .iter()
                .zip(&admission)
                .filter(|(a, b)| **a < half && **b < half)
                .count();
            kept as f64 / half as f64
        })
    };
    let by_place = |early: bool| {
        let group: Vec<&&Seen> = joined
            .iter()
            .filter(|s| s.before_opening == early && s.number.is_some())
            .collect();
        let arrival: Vec<Instant> = group.iter().filter_map(|s| s.joined_at).collect();
        let number: Vec<u64> = group.iter().filter_map(|s| s.number).collect();
        (
            spearman(&ranks(&arrival), &ranks(&number)),
            group.len() as u64,
        )
    };
    let (place_after, n_after) = by_place(false);
    let (place_before, n_before) = by_place(true);
    QueueReport {
        arrival_vs_place_after_opening: place_after,
        arrival_vs_place_before_opening: place_before,
        places_after_opening: n_after,
        places_before_opening: n_before,
        admit_per_minute_configured: args.per_minute,
        admit_per_minute_measured: 0.0,
        admit_per_minute_seen_by_users: measured,
        admission_rate_ratio: 0.0,
        joined: joined.len() as u64,
        joined_before_opening: joined.iter().filter(|s| s.before_opening).count() as u64,
        admitted: admitted.len() as u64,
        sold_out_while_waiting: (joined.len() - admitted.len()) as u64,
        arrival_vs_admission_after_opening: correlation(false),
        arrival_vs_admission_before_opening: correlation(true),
        early_first_half_kept: early_kept,
        ticket_polls: polls,
        join_latency: join_l.summary(),
        ticket_latency: ticket_l.summary(),
        redis_bytes_per_waiting_user: bytes,
        errors,
    }
}
