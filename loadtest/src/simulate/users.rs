//! One simulated user: sign up, read the map, choose the best free seats, hold, pay or abandon,
//! maybe cancel.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::setup::sign_up;
use super::{SimulateArgs, Tally, BEST, BEST_AVAILABLE_MAX, CANCEL, CHECKOUT, HOLD, MAP};
use crate::client::{self, Http, Reply, Watch};
use crate::report::Latency;

/// One seat as the simulator sees the map.
pub(super) struct MapSeat {
    id: String,
    row: i64,
    column: i64,
    available: bool,
}

/// What a simulated user does, drawn once per user from the run's shares.
#[derive(Debug, Clone, Copy)]
pub(super) struct Role {
    pub abandons: bool,
    pub watches: bool,
    pub cancels: bool,
    /// Asks the server for the best seats (`holdBestAvailable`) instead of picking from the map.
    pub best: bool,
}

pub(super) struct SimUser {
    pub key: String,
    pub role: Role,
}

/// Each user's token and how long the sign-up took, or why it failed.
pub(super) type SignUps = Vec<Result<(String, Duration), String>>;

/// Sign every user up (`--concurrency` at a time); watchers open their seat maps as soon as
/// they have a token. Returns how many signed up, and each user's result.
pub(super) async fn sign_up_all(
    args: &SimulateArgs,
    run_tag: &str,
    roles: &Arc<Vec<Role>>,
    show: &str,
    watchers: &Watchers,
    stop: &CancellationToken,
) -> anyhow::Result<(usize, SignUps)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (next, roles, watchers, stop) =
            (next.clone(), roles.clone(), watchers.clone(), stop.clone());
        let (url, show, run_tag) = (args.url.clone(), show.to_string(), run_tag.to_string());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let Ok(mut http) = Http::new(&url) else {
                return out;
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= roles.len() {
                    return out;
                }
                let t = Instant::now();
                let r = sign_up(&mut http, &format!("sim-{run_tag}-{i}@sim.test")).await;
                let r = r
                    .map(|token| (token, t.elapsed()))
                    .map_err(|e| e.to_string());
                if let (Ok((token, _)), true) = (&r, roles[i].watches) {
                    let w = Arc::new(Watch {
                        tracking: true,
                        ..Watch::default()
                    });
                    let task = tokio::spawn({
                        let (w, url, show, token, stop) = (
                            w.clone(),
                            url.clone(),
                            show.clone(),
                            token.clone(),
                            stop.clone(),
                        );
                        async move {
                            if let Err(e) =
                                client::watch(url, Some(token), show, w, stop, |_, _| {}).await
                            {
                                tracing::warn!(error = %e, "a seat-map watcher failed");
                            }
                        }
                    });
                    if let Ok(mut list) = watchers.lock() {
                        list.push((w, task));
                    }
                }
                out.push((i, r));
            }
        }));
    }
    let mut all: SignUps = (0..roles.len())
        .map(|_| Err("not signed up".to_string()))
        .collect();
    let mut ok = 0;
    for w in workers {
        for (i, r) in w.await.context("a sign-up worker panicked")? {
            ok += usize::from(r.is_ok());
            all[i] = r;
        }
    }
    Ok((ok, all))
}

pub(super) fn tokens_latency(tokens: &SignUps) -> Latency {
    let mut l = Latency::default();
    for (_, d) in tokens.iter().flatten() {
        l.record(*d);
    }
    l
}

pub(super) fn signup_errors(tokens: &SignUps) -> BTreeMap<String, u64> {
    let mut errors = BTreeMap::new();
    for e in tokens.iter().filter_map(|r| r.as_ref().err()) {
        *errors.entry(format!("sign up: {e}")).or_default() += 1;
    }
    errors
}

pub(super) type Watchers = Arc<std::sync::Mutex<Vec<(Arc<Watch>, tokio::task::JoinHandle<()>)>>>;

impl SimUser {
    pub(super) async fn run(
        &self,
        args: &SimulateArgs,
        show: &str,
        token: &str,
        http: &mut Http,
        rng: &mut StdRng,
        tally: &mut Tally,
    ) {
        let token = token.to_string();
        let want = rng.random_range(args.seats.0..=args.seats.1) as usize;
        let hold = if self.role.best {
            best_hold(args, show, &token, http, tally, want).await
        } else {
            picked_hold(args, show, &token, http, rng, tally, want).await
        };
        let Some(hold) = hold else {
            return;
        };
        let hold_id = hold["id"].as_str().unwrap_or_default().to_string();
        let expires = hold["expiresAt"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
            .unwrap_or_else(chrono::Utc::now);
        // Any hold (even one orphaned by a retry on another instance) is gone by then.
        tally.latest_expiry = tally.latest_expiry.max(Some(expires));
        if self.role.abandons {
            tally.abandoned.push((hold_id, expires));
            return;
        }
        let t = Instant::now();
        let key = self.key.clone();
        let reply = http
            .gql(
                Some(&token),
                CHECKOUT,
                json!({ "hold": hold_id, "key": key }),
            )
            .await;
        tally.checkout.record(t.elapsed());
        let booking = match reply {
            Ok(Reply::Data(d)) if d["checkout"]["status"] == "PENDING" => {
                // The instance that took the payment died mid-way and this retry (same key)
                // found the booking still pending: wait for the reconciler, as a client would.
                match settled(http, &token, &d["checkout"]["id"]).await {
                    Some(b) => b,
                    None => return tally.error("checkout", "booking still PENDING after 60 s"),
                }
            }
            Ok(Reply::Data(d)) => d["checkout"].clone(),
            Ok(Reply::Error { code, .. }) if code == "HOLD_EXPIRED" => {
                tally.expired_before_payment += 1;
                return;
            }
            Ok(Reply::Error { code, message, .. }) => {
                return tally.error("checkout", format!("{code}: {message}"))
            }
            Err(e) => return tally.error("checkout", e),
        };
        match booking["status"].as_str() {
            Some("CONFIRMED") => {
                tally.confirmed += 1;
                if let Some(id) = booking["id"].as_str().and_then(|i| i.parse().ok()) {
                    tally.kept.push(id);
                }
                tally.seats_booked += booking["seats"].as_array().map_or(0, |s| s.len()) as u64;
            }
            Some("FAILED") => tally.declined += 1,
            other => return tally.error("checkout", format!("unexpected status {other:?}")),
        }
        if self.role.cancels && booking["status"] == "CONFIRMED" {
            let t = Instant::now();
            match http
                .gql(Some(&token), CANCEL, json!({ "id": booking["id"] }))
                .await
            {
                Ok(Reply::Data(d)) if d["cancelBooking"]["status"] == "CANCELLED" => {
                    tally.cancel.record(t.elapsed());
                    tally.cancelled += 1;
                    tally.kept.pop();
                    tally.seats_booked -= booking["seats"].as_array().map_or(0, |s| s.len()) as u64;
                }
                Ok(r) => tally.error("cancel", format!("{r:?}")),
                Err(e) => tally.error("cancel", e),
            }
        }
    }
}

/// Read the map, pick seats, hold them; again (a fresh map) when someone was quicker.
async fn picked_hold(
    args: &SimulateArgs,
    show: &str,
    token: &str,
    http: &mut Http,
    rng: &mut StdRng,
    tally: &mut Tally,
    want: usize,
) -> Option<Value> {
    for _ in 0..args.attempts {
        let t = Instant::now();
        let map = match http.gql(Some(token), MAP, json!({ "id": show })).await {
            Ok(Reply::Data(d)) => d,
            Ok(r) => {
                tally.error("seat map", format!("{:?}", r.code()));
                return None;
            }
            Err(e) => {
                tally.error("seat map", e);
                return None;
            }
        };
        tally.map.record(t.elapsed());
        let seats = parse_map(&map);
        let Some(choice) = choose(&seats, want, rng) else {
            tally.sold_out += 1;
            return None;
        };
        let t = Instant::now();
        let reply = http
            .gql(Some(token), HOLD, json!({ "show": show, "seats": choice }))
            .await;
        tally.hold.record(t.elapsed());
        match reply {
            Ok(Reply::Data(d)) => {
                tally.holds_won += 1;
                return Some(d["holdSeats"].clone());
            }
            Ok(Reply::Error { code, .. }) if code == "SEATS_UNAVAILABLE" => tally.holds_lost += 1,
            other => {
                hold_refused(tally, "hold", other);
                return None;
            }
        }
    }
    tally.gave_up += 1;
    None
}

/// Ask the server for the best `want` seats (no map read); when nothing that size is left
/// together or in adjacent rows, ask for one fewer, as a group that splits up would.
async fn best_hold(
    args: &SimulateArgs,
    show: &str,
    token: &str,
    http: &mut Http,
    tally: &mut Tally,
    want: usize,
) -> Option<Value> {
    let mut count = want.min(BEST_AVAILABLE_MAX);
    for _ in 0..args.attempts {
        let t = Instant::now();
        let reply = http
            .gql(Some(token), BEST, json!({ "show": show, "count": count }))
            .await;
        tally.best.record(t.elapsed());
        match reply {
            Ok(Reply::Data(d)) => {
                tally.holds_won += 1;
                tally.best_won += 1;
                if d["holdBestAvailable"]["nextToEachOther"] == json!(true) {
                    tally.best_together += 1;
                }
                return Some(d["holdBestAvailable"].clone());
            }
            Ok(Reply::Error { code, .. }) if code == "SEATS_UNAVAILABLE" => {
                tally.best_none += 1;
                if count == 1 {
                    tally.sold_out += 1;
                    return None;
                }
                count -= 1;
            }
            other => {
                hold_refused(tally, "best available", other);
                return None;
            }
        }
    }
    tally.gave_up += 1;
    None
}

/// A hold refused for another reason than seats: the user's own hold limit, or an error.
fn hold_refused(tally: &mut Tally, what: &str, reply: anyhow::Result<Reply>) {
    match reply {
        // This user still has live holds (abandoned ones, in a long run).
        Ok(Reply::Error { code, .. }) if code == "LIMIT_EXCEEDED" => tally.holds_limited += 1,
        Ok(Reply::Error { code, message, .. }) => tally.error(what, format!("{code}: {message}")),
        Ok(Reply::Data(_)) => tally.error(what, "unexpected answer"),
        Err(e) => tally.error(what, e),
    }
}

pub(super) fn parse_map(map: &Value) -> Vec<MapSeat> {
    map["show"]["seats"]
        .as_array()
        .map(|seats| {
            seats
                .iter()
                .map(|s| MapSeat {
                    id: s["id"].as_str().unwrap_or_default().to_string(),
                    row: s["rowIndex"].as_i64().unwrap_or(0),
                    column: s["column"].as_i64().unwrap_or(0),
                    available: s["status"] == "AVAILABLE",
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Users want the best seats: front-centre weighted (a row a third of the way back, the middle
/// column), and seats side by side. Returns `want` seat ids (fewer when fewer are left), or
/// `None` when the show is sold out.
pub(super) fn choose(seats: &[MapSeat], want: usize, rng: &mut StdRng) -> Option<Vec<String>> {
    let free: Vec<&MapSeat> = seats.iter().filter(|s| s.available).collect();
    if free.is_empty() {
        return None;
    }
    let rows = seats.iter().map(|s| s.row).max().unwrap_or(0) as f64 + 1.0;
    let cols = seats.iter().map(|s| s.column).max().unwrap_or(0) as f64 + 1.0;
    let weight = |s: &MapSeat| {
        let dr = (s.row as f64 - rows / 3.0).abs() / rows;
        let dc = (s.column as f64 - cols / 2.0).abs() / cols;
        (-(dr * 4.0 + dc * 6.0)).exp()
    };
    let total: f64 = free.iter().map(|s| weight(s)).sum();
    let mut pick = rng.random_range(0.0..total.max(f64::MIN_POSITIVE));
    let mut first = free[free.len() - 1];
    for s in &free {
        pick -= weight(s);
        if pick <= 0.0 {
            first = s;
            break;
        }
    }
    // Then the nearest free seats in the same row, then anywhere nearest.
    let mut rest: Vec<&MapSeat> = free.iter().copied().filter(|s| s.id != first.id).collect();
    rest.sort_by_key(|s| {
        (
            (s.row - first.row).abs() * 1000 + (s.column - first.column).abs(),
            s.column,
        )
    });
    let mut out = vec![first.id.clone()];
    out.extend(
        rest.into_iter()
            .take(want.saturating_sub(1))
            .map(|s| s.id.clone()),
    );
    Some(out)
}

/// Poll a booking until it leaves PENDING (at most 60 s).
async fn settled(http: &mut Http, token: &str, id: &Value) -> Option<Value> {
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(Reply::Data(d)) = http
            .gql(
                Some(token),
                "query($id: ID!) { booking(id: $id) { id status seats { id } } }",
                json!({ "id": id }),
            )
            .await
        {
            if d["booking"]["status"] != "PENDING" {
                return Some(d["booking"].clone());
            }
        }
    }
    None
}
