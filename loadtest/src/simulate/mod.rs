//! `boxoffice simulate`: many users race for the best seats of one show through the public API
//! (HTTP and WebSocket), then an audit reads the database and the hold store directly.
mod onsale;
mod setup;
mod users;

pub use setup::{create_screen_as, create_show_on};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::audit::{self, AuditReport};
use crate::client::{self, Http, Reply, Watch};
use crate::report::{Latency, Summary};
use crate::target::Target;
use setup::{create_show, sign_up};
use users::{sign_up_all, signup_errors, tokens_latency, Role, SimUser, Watchers};

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The server to drive.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// How many users (each signs up, reads the map, holds, pays or abandons).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub users: u64,
    /// Users active at the same time.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,
    /// Seats each user wants, as `MIN-MAX` (or one number).
    #[arg(long, default_value = "1-4", value_parser = parse_range)]
    pub seats: (u32, u32),
    /// Share of users who hold and then never pay (their holds must expire).
    #[arg(long, default_value_t = 0.1, value_parser = parse_share)]
    pub abandon: f64,
    /// Share of buyers who cancel their confirmed booking afterwards.
    #[arg(long, default_value_t = 0.02, value_parser = parse_share)]
    pub cancel: f64,
    /// Share of users who ask the server for the best seats (`holdBestAvailable`) instead of
    /// picking them from the map.
    #[arg(long, default_value_t = 0.3, value_parser = parse_share)]
    pub best_available: f64,
    /// Share of users who also keep a live seat map open (a `seatUpdates` subscription).
    #[arg(long, default_value_t = 0.1, value_parser = parse_share)]
    pub watchers: f64,
    /// An existing show id; unset: create a fresh show (needs ADMIN_EMAIL and ADMIN_PASSWORD).
    #[arg(long)]
    pub show: Option<String>,
    /// Seats of the fresh show.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    pub show_seats: u64,
    /// Run for this many seconds instead of a fixed number of users (`--users` then bounds it).
    #[arg(long)]
    pub duration_seconds: Option<u64>,
    /// Attempts of one user to hold seats before giving up.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub attempts: u64,
    /// Random seed (seat choices, who abandons or watches).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip the audit (it needs DATABASE_URL, and REDIS_URL when the server uses Redis).
    #[arg(long)]
    pub no_audit: bool,
    /// Largest share of a kind of client operation (sign up, seat map, hold, checkout, cancel)
    /// that may end in an error before the run fails. Expected outcomes (seats taken, declined
    /// payments) are not errors.
    #[arg(long, default_value_t = 0.01, value_parser = parse_share)]
    pub max_error_share: f64,
    /// The on-sale scenario: the show's sale opens through the waiting room, admitting this many
    /// users a minute; users join the queue at their arrival and shop once admitted (needs
    /// ADMIN_EMAIL and ADMIN_PASSWORD).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub queue_per_minute: Option<u32>,
    /// On-sale: seconds an admitted user may shop.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub session_seconds: u32,
    /// On-sale: the sale opens this many seconds after the users start arriving.
    #[arg(long, default_value_t = 10)]
    pub opens_after_seconds: u64,
    /// On-sale: users arrive spread evenly over this many seconds (before and after the opening).
    #[arg(long, default_value_t = 30)]
    pub arrivals_seconds: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u32 = a
        .trim()
        .parse()
        .map_err(|_| format!("bad seat count {a:?}"))?;
    let b: u32 = b
        .trim()
        .parse()
        .map_err(|_| format!("bad seat count {b:?}"))?;
    if a == 0 || b < a || b > 100 {
        return Err("seats must be MIN-MAX with 1 <= MIN <= MAX <= 100".into());
    }
    Ok((a, b))
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

/// One user's outcome counters and latencies; merged across workers at the end.
#[derive(Default)]
struct Tally {
    signup: Latency,
    map: Latency,
    hold: Latency,
    best: Latency,
    checkout: Latency,
    cancel: Latency,
    holds_won: u64,
    /// Best-available holds granted, of them side by side, and refusals (nothing that size).
    best_won: u64,
    best_together: u64,
    best_none: u64,
    holds_lost: u64,
    holds_limited: u64,
    latest_expiry: Option<chrono::DateTime<chrono::Utc>>,
    /// Bookings a client saw CONFIRMED and did not cancel: the audit finds each confirmed.
    kept: Vec<i64>,
    sold_out: u64,
    gave_up: u64,
    confirmed: u64,
    declined: u64,
    expired_before_payment: u64,
    cancelled: u64,
    seats_booked: u64,
    abandoned: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        for (a, b) in [
            (&mut self.signup, &o.signup),
            (&mut self.map, &o.map),
            (&mut self.hold, &o.hold),
            (&mut self.best, &o.best),
            (&mut self.checkout, &o.checkout),
            (&mut self.cancel, &o.cancel),
        ] {
            a.add(b);
        }
        self.holds_won += o.holds_won;
        self.best_won += o.best_won;
        self.best_together += o.best_together;
        self.best_none += o.best_none;
        self.holds_lost += o.holds_lost;
        self.holds_limited += o.holds_limited;
        self.latest_expiry = self.latest_expiry.max(o.latest_expiry);
        self.kept.extend(o.kept);
        self.sold_out += o.sold_out;
        self.gave_up += o.gave_up;
        self.confirmed += o.confirmed;
        self.declined += o.declined;
        self.expired_before_payment += o.expired_before_payment;
        self.cancelled += o.cancelled;
        self.seats_booked += o.seats_booked;
        self.abandoned.extend(o.abandoned);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
    fn error(&mut self, what: &str, e: impl std::fmt::Display) {
        tracing::debug!(%what, error = %e, "simulated user hit an error");
        let key = format!("{what}: {e}");
        let key: String = key.chars().take(160).collect();
        *self.errors.entry(key).or_default() += 1;
    }
}

#[derive(Debug, Serialize)]
pub struct SimReport {
    pub show_id: String,
    pub users: u64,
    pub users_signed_up: u64,
    /// Seconds of the sign-up phase (before the rush).
    pub sign_up_seconds: f64,
    /// Seconds of the rush (holds, checkouts, cancels).
    pub seconds: f64,
    pub ops_per_second: BTreeMap<&'static str, f64>,
    pub latency: BTreeMap<&'static str, Summary>,
    pub holds_won: u64,
    /// Holds granted by `holdBestAvailable` (included in `holds_won`), of them side by side.
    pub best_available_won: u64,
    pub best_available_side_by_side: u64,
    /// `holdBestAvailable` answers with nothing that size left (the user then asks for fewer).
    pub best_available_refused: u64,
    pub holds_lost_seats_unavailable: u64,
    /// Hold attempts refused because the user already had the most live holds.
    pub holds_limited: u64,
    pub users_sold_out: u64,
    pub users_gave_up: u64,
    pub bookings_confirmed: u64,
    pub payments_declined: u64,
    pub holds_expired_before_payment: u64,
    pub bookings_cancelled: u64,
    pub seats_booked: u64,
    pub abandoned_holds: u64,
    pub abandoned_holds_expired: u64,
    pub abandoned_holds_still_live: u64,
    pub watchers: u64,
    pub watcher_events: u64,
    pub watcher_gaps: u64,
    pub watcher_reopened: u64,
    /// Full reads of live maps (first reads and re-reads after gaps or reopenings).
    pub watcher_reads: u64,
    /// Watchers whose final map was reached by applying events after their last full read.
    pub watchers_kept_by_events: u64,
    pub errors: BTreeMap<String, u64>,
    /// The on-sale scenario's waiting room (`--queue-per-minute`).
    pub queue: Option<onsale::QueueReport>,
    pub audit: Option<AuditReport>,
    pub verdict: Verdict,
}

/// Whether the run passes: the audit is clean, nothing outlived its TTL, the run did real work,
/// and clients met no more errors than allowed.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub clean: bool,
    /// Why it failed (empty when clean).
    pub reasons: Vec<String>,
}

/// Kinds of client operation whose errors are allowed up to a share of their attempts; an error
/// of any other kind (the client itself, a watcher, the audit's own requests) always fails.
const COUNTED_KINDS: [&str; 6] = [
    "sign up",
    "seat map",
    "hold",
    "best available",
    "checkout",
    "cancel",
];

fn verdict(
    r: &SimReport,
    ops: &BTreeMap<&'static str, u64>,
    available_at_start: i64,
    max_error_share: f64,
) -> Verdict {
    let mut reasons = Vec::new();
    if let Some(a) = &r.audit {
        for v in &a.violations {
            reasons.push(format!("audit: {v}"));
        }
    }
    if r.abandoned_holds_still_live > 0 {
        reasons.push(format!(
            "{} abandoned holds were still live after TTL + 2 s",
            r.abandoned_holds_still_live
        ));
    }
    if r.bookings_confirmed == 0 && available_at_start > 0 {
        reasons.push(format!(
            "no booking was confirmed although {available_at_start} seats were available"
        ));
    }
    if let Some(q) = &r.queue {
        // Enough admissions to measure a rate: it must be the configured one within 5%.
        if q.admitted >= 100 && (q.admission_rate_ratio - 1.0).abs() > 0.05 {
            reasons.push(format!(
                "the waiting room admitted {:.1} a minute, configured {} (more than 5% off)",
                q.admit_per_minute_measured, q.admit_per_minute_configured
            ));
        }
    }
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for (key, n) in &r.errors {
        let kind = key.split(':').next().unwrap_or(key).trim().to_string();
        *by_kind.entry(kind).or_default() += n;
    }
    for (kind, n) in by_kind {
        match COUNTED_KINDS.iter().find(|k| **k == kind) {
            Some(k) => {
                let attempts = ops.get(k).copied().unwrap_or(0) + n;
                let share = n as f64 / attempts.max(1) as f64;
                if share > max_error_share {
                    reasons.push(format!(
                        "{n} {kind} errors in {attempts} attempts ({:.1}% > {:.1}%)",
                        share * 100.0,
                        max_error_share * 100.0
                    ));
                }
            }
            None => reasons.push(format!("{n} {kind} errors (none are allowed)")),
        }
    }
    Verdict {
        clean: reasons.is_empty(),
        reasons,
    }
}

const MAP: &str =
    "query($id: ID!) { show(id: $id) { version seats { id rowIndex column status } } }";
const HOLD: &str =
    "mutation($show: ID!, $seats: [ID!]!) { holdSeats(showId: $show, seatIds: $seats) { id expiresAt } }";
const BEST: &str = "mutation($show: ID!, $count: Int!) { holdBestAvailable(showId: $show, count: $count) { id expiresAt nextToEachOther } }";
/// The server's cap on one best-available request (`BEST_AVAILABLE_MAX`).
const BEST_AVAILABLE_MAX: usize = 10;
const CHECKOUT: &str = "mutation($hold: ID!, $key: String!) { checkout(holdId: $hold, idempotencyKey: $key) { id status failureReason seats { id } } }";
const CANCEL: &str = "mutation($id: ID!) { cancelBooking(bookingId: $id) { status } }";

pub async fn run(config: &Target, args: SimulateArgs) -> anyhow::Result<bool> {
    // The audit must be able to read what the server writes: find out now, not after the rush.
    let audit_db = if args.no_audit {
        None
    } else {
        Some(audit::Source::open(config).await?)
    };
    let mut http = Http::new(&args.url)?;
    if let Some(source) = &audit_db {
        source.check_server(&mut http).await?;
    }
    let show = match &args.show {
        Some(id) => id.clone(),
        None => create_show(&mut http, config, args.show_seats).await?,
    };
    let available_at_start = http
        .gql(
            None,
            "query($id: ID!) { show(id: $id) { availableSeats } }",
            json!({ "id": show }),
        )
        .await
        .and_then(|r| r.data())
        .with_context(|| format!("cannot read show {show} from {}", args.url))?["show"]
        ["availableSeats"]
        .as_i64()
        .unwrap_or(0);
    if let Some(source) = &audit_db {
        source.check_show(&show).await?;
        let version = client::show_version(&mut http, &show).await?;
        source.check_prefix(&show, version).await?;
    }
    let run_tag: String = format!("{:x}", rand::random::<u32>());
    let mut rng = StdRng::seed_from_u64(args.seed);
    let roles: Vec<Role> = (0..args.users)
        .map(|_| Role {
            abandons: rng.random_bool(args.abandon),
            watches: rng.random_bool(args.watchers),
            cancels: rng.random_bool(args.cancel),
            best: rng.random_bool(args.best_available),
        })
        .collect();
    let roles = Arc::new(roles);
    let deadline = args
        .duration_seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let progress = indicatif::ProgressBar::new(args.users);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} users {pos}/{len} [{bar:40}] {per_sec} {elapsed_precise} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let stop_watchers = CancellationToken::new();
    let watchers: Watchers = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    // Doors open: everyone signs up (and the watchers open their maps) before the on-sale, as
    // audiences log in and wait for the release; then all rush at once. Sign-ups cost argon2
    // (tens of ms of CPU each) and are measured apart from the rush.
    if !args.json {
        eprintln!("signing up {} users…", args.users);
    }
    let signup_started = Instant::now();
    let tokens = sign_up_all(&args, &run_tag, &roles, &show, &watchers, &stop_watchers).await?;
    let signup_seconds = signup_started.elapsed().as_secs_f64();
    let signed_up = tokens.0 as u64;
    let tokens = Arc::new(tokens.1);
    let mut tally = Tally {
        signup: tokens_latency(&tokens),
        ..Tally::default()
    };
    tally.merge(Tally {
        errors: signup_errors(&tokens),
        ..Tally::default()
    });
    let started = Instant::now();
    // On-sale: users reach the shoppers through the waiting room, in the order it admits them.
    let (admitted_tx, admitted_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let admitted_rx = Arc::new(tokio::sync::Mutex::new(admitted_rx));
    let line = match args.queue_per_minute {
        Some(per_minute) => {
            let on_sale = onsale::OnSaleArgs {
                per_minute,
                session_seconds: args.session_seconds,
                opens_after_seconds: args.opens_after_seconds,
                arrivals_seconds: args.arrivals_seconds,
            };
            let (config, url, show, tokens) = (
                config.clone(),
                args.url.clone(),
                show.clone(),
                tokens.clone(),
            );
            let seed = args.seed;
            Some(tokio::spawn(async move {
                onsale::run(&config, &url, &show, on_sale, tokens, seed, admitted_tx).await
            }))
        }
        None => {
            drop(admitted_tx);
            None
        }
    };
    let queued = line.is_some();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (args, show, run_tag) = (args.clone(), show.clone(), run_tag.clone());
        let (roles, next, progress) = (roles.clone(), next.clone(), progress.clone());
        let tokens = tokens.clone();
        let admitted_rx = admitted_rx.clone();
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut rng = StdRng::seed_from_u64(args.seed ^ (w + 1).wrapping_mul(0x9e37_79b9));
            let mut http = match Http::new(&args.url) {
                Ok(h) => h,
                Err(e) => {
                    tally.error("client", e);
                    return tally;
                }
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                // With a duration, users come back for more until the time is up; on-sale, the
                // next user the waiting room admitted.
                let u = if queued {
                    match admitted_rx.lock().await.recv().await {
                        Some(u) => u,
                        None => break,
                    }
                } else {
                    match deadline {
                        Some(d) if Instant::now() >= d => break,
                        Some(_) => i % roles.len(),
                        None if i >= roles.len() => break,
                        None => i,
                    }
                };
                if let Ok((token, _)) = &tokens[u] {
                    let user = SimUser {
                        key: format!("sim-{run_tag}-{i}-pay"),
                        role: roles[u],
                    };
                    user.run(&args, &show, token, &mut http, &mut rng, &mut tally)
                        .await;
                }
                progress.inc(1);
            }
            tally
        }));
    }
    for w in workers {
        tally.merge(w.await.context("a simulated user panicked")?);
    }
    let queue = match line {
        Some(l) => Some(l.await.context("the waiting line panicked")??),
        None => None,
    };
    let seconds = started.elapsed().as_secs_f64();
    let users_done = progress.position();
    progress.finish_with_message("all users done");

    // Every hold must be gone within TTL + 2 s: wait for the last one, then check the abandoned.
    let latest = tally.latest_expiry;
    if let Some(latest) = latest {
        let wait =
            (latest - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2);
        if !args.json {
            eprintln!(
                "waiting {:.1} s for the last holds to expire",
                wait.as_secs_f64()
            );
        }
        tokio::time::sleep(wait).await;
    }
    let (mut expired, mut still_live, mut abandoned) = (0, 0, 0u64);
    if !tally.abandoned.is_empty() {
        let token = sign_up(&mut http, &format!("sim-{run_tag}-auditor@sim.test")).await?;
        for (hold, _) in std::mem::take(&mut tally.abandoned) {
            // `releaseHold` answers false for a hold that is no longer live; true would mean it
            // outlived its TTL (and releasing it is harmless).
            let r = http
                .gql(
                    Some(&token),
                    "mutation($h: ID!) { releaseHold(holdId: $h) }",
                    json!({ "h": hold }),
                )
                .await?;
            abandoned += 1;
            match r {
                Reply::Data(d) if d["releaseHold"] == json!(false) => expired += 1,
                Reply::Data(_) => still_live += 1,
                // Someone else's hold: FORBIDDEN means it is still live.
                Reply::Error { code, .. } if code == "FORBIDDEN" => still_live += 1,
                Reply::Error { code, message, .. } => {
                    tally.error("audit release", format!("{code}: {message}"))
                }
            }
        }
    }

    // Let every open map catch up, then close them.
    let final_version = client::show_version(&mut http, &show).await?;
    let watch_list: Vec<(Arc<Watch>, tokio::task::JoinHandle<()>)> = watchers
        .lock()
        .map(|mut w| std::mem::take(&mut *w))
        .unwrap_or_default();
    let catch_up = Instant::now() + Duration::from_secs(5);
    while Instant::now() < catch_up
        && watch_list
            .iter()
            .any(|(w, _)| w.version.load(Ordering::SeqCst) != final_version)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let watch_views: Vec<audit::View> = watch_list
        .iter()
        .map(|(w, _)| audit::View {
            version: w.version.load(Ordering::SeqCst),
            seats: w.map.lock().map(|m| m.clone()).unwrap_or_default(),
            applied_since_read: w.applied_since_read.load(Ordering::Relaxed),
        })
        .collect();
    let sum = |f: fn(&Watch) -> u64| watch_list.iter().map(|(w, _)| f(w)).sum::<u64>();
    let (events, gaps, reopened, reads) = (
        sum(|w| w.events.load(Ordering::Relaxed)),
        sum(|w| w.gaps.load(Ordering::Relaxed)),
        sum(|w| w.reopened.load(Ordering::Relaxed)),
        sum(|w| w.reads.load(Ordering::Relaxed)),
    );
    let kept_by_events = watch_list
        .iter()
        .filter(|(w, _)| w.applied_since_read.load(Ordering::Relaxed) > 0)
        .count() as u64;
    let watcher_count = watch_list.len() as u64;
    stop_watchers.cancel();
    for (_, h) in watch_list {
        if tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .is_err()
        {
            tally.error("watcher", "did not close within 5 s");
        }
    }

    let audit = match &audit_db {
        None => None,
        Some(source) => {
            let views = (!watch_views.is_empty()).then_some(&watch_views[..]);
            Some(audit::run(source, &args.url, &show, views, &tally.kept).await?)
        }
    };
    let per_sec = |n: u64| n as f64 / seconds.max(1e-9);
    let tally_ops: BTreeMap<&'static str, u64> = BTreeMap::from([
        ("sign up", tally.signup.count()),
        ("seat map", tally.map.count()),
        ("hold", tally.hold.count()),
        ("best available", tally.best.count()),
        ("checkout", tally.checkout.count()),
        ("cancel", tally.cancel.count()),
    ]);
    let report = SimReport {
        show_id: show,
        users: users_done,
        users_signed_up: signed_up,
        sign_up_seconds: signup_seconds,
        seconds,
        ops_per_second: BTreeMap::from([
            (
                "sign_up",
                tally.signup.count() as f64 / signup_seconds.max(1e-9),
            ),
            ("seat_map_read", per_sec(tally.map.count())),
            ("hold", per_sec(tally.hold.count())),
            ("best_available", per_sec(tally.best.count())),
            ("checkout", per_sec(tally.checkout.count())),
            ("cancel", per_sec(tally.cancel.count())),
        ]),
        latency: BTreeMap::from([
            ("sign_up", tally.signup.summary()),
            ("seat_map_read", tally.map.summary()),
            ("hold", tally.hold.summary()),
            ("best_available", tally.best.summary()),
            ("checkout", tally.checkout.summary()),
            ("cancel", tally.cancel.summary()),
        ]),
        holds_won: tally.holds_won,
        best_available_won: tally.best_won,
        best_available_side_by_side: tally.best_together,
        best_available_refused: tally.best_none,
        holds_lost_seats_unavailable: tally.holds_lost,
        holds_limited: tally.holds_limited,
        users_sold_out: tally.sold_out,
        users_gave_up: tally.gave_up,
        bookings_confirmed: tally.confirmed,
        payments_declined: tally.declined,
        holds_expired_before_payment: tally.expired_before_payment,
        bookings_cancelled: tally.cancelled,
        seats_booked: tally.seats_booked,
        abandoned_holds: abandoned,
        abandoned_holds_expired: expired,
        abandoned_holds_still_live: still_live,
        watchers: watcher_count,
        watcher_events: events,
        watcher_gaps: gaps,
        watcher_reopened: reopened,
        watcher_reads: reads,
        watchers_kept_by_events: kept_by_events,
        errors: tally.errors,
        queue,
        audit,
        verdict: Verdict::default(),
    };
    let mut report = report;
    report.verdict = verdict(
        &report,
        &tally_ops,
        available_at_start,
        args.max_error_share,
    );
    let clean = report.verdict.clean;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(clean)
}

fn print_report(r: &SimReport) {
    println!(
        "simulation of show {}: {} users signed up in {:.1} s, then rushed for {:.1} s",
        r.show_id, r.users_signed_up, r.sign_up_seconds, r.seconds
    );
    println!("operations per second:");
    for (k, v) in &r.ops_per_second {
        println!("  {k:<14} {v:>9.1}");
    }
    println!("latency:");
    for (k, v) in &r.latency {
        println!("  {k:<14} {v}");
    }
    println!(
        "holds: {} won, {} lost to SEATS_UNAVAILABLE; users: {} found it sold out, {} gave up after retries",
        r.holds_won, r.holds_lost_seats_unavailable, r.users_sold_out, r.users_gave_up
    );
    println!(
        "best available: {} holds ({} side by side), {} refused for want of that many seats",
        r.best_available_won, r.best_available_side_by_side, r.best_available_refused
    );
    println!(
        "payments: {} confirmed ({} seats now booked), {} declined, {} holds expired before payment, {} cancelled",
        r.bookings_confirmed, r.seats_booked, r.payments_declined, r.holds_expired_before_payment, r.bookings_cancelled
    );
    println!(
        "abandoned holds: {} ({} expired, {} still live after TTL + 2 s)",
        r.abandoned_holds, r.abandoned_holds_expired, r.abandoned_holds_still_live
    );
    println!(
        "live maps: {} watchers, {} events, {} gaps re-read, {} streams reopened, {} full reads; {} kept by events since their last read",
        r.watchers, r.watcher_events, r.watcher_gaps, r.watcher_reopened, r.watcher_reads, r.watchers_kept_by_events
    );
    if let Some(q) = &r.queue {
        let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
        println!(
            "waiting room: {} joined ({} before the opening), {} admitted, {} still waiting at the sell-out; {} place polls",
            q.joined, q.joined_before_opening, q.admitted, q.sold_out_while_waiting, q.ticket_polls
        );
        println!(
            "  admissions per minute: {:.1} measured by the server's count ({:.1} from what users saw) vs {} configured: ratio {:.3}",
            q.admit_per_minute_measured, q.admit_per_minute_seen_by_users, q.admit_per_minute_configured, q.admission_rate_ratio
        );
        println!(
            "  fairness: arrival vs admission rank correlation {} after the opening (1 = first come, first served), {} before it (0 = shuffled); early first half kept {}",
            f(q.arrival_vs_admission_after_opening), f(q.arrival_vs_admission_before_opening), f(q.early_first_half_kept)
        );
        println!(
            "  the line's order (place numbers) vs arrival: rank correlation {} after the opening ({} users), {} before it ({} users)",
            f(q.arrival_vs_place_after_opening), q.places_after_opening, f(q.arrival_vs_place_before_opening), q.places_before_opening
        );
        println!(
            "  joinQueue {}; queueTicket {}; Redis bytes per waiting user {}",
            q.join_latency,
            q.ticket_latency,
            f(q.redis_bytes_per_waiting_user)
        );
    }
    if r.errors.is_empty() {
        println!("errors: none");
    } else {
        println!("errors:");
        for (k, v) in &r.errors {
            println!("  {v:>6} × {k}");
        }
    }
    if let Some(a) = &r.audit {
        audit::print(a);
    }
    if r.verdict.clean {
        println!("verdict: pass");
    } else {
        println!("verdict: FAIL");
        for reason in &r.verdict.reasons {
            println!("  {reason}");
        }
    }
}
