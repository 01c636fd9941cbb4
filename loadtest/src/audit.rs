//! The simulator's audit: after a run, read the database and the hold store directly (not through
//! the server) and check the invariants the product promises. Any violation fails the command.
use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, bail, Context};
use entity::booking::BookingStatus;
use entity::{booking, booking_seat, mock_gateway_ledger as ledger};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use serde_json::json;

use crate::client::Http;
use crate::target::Target;
use boxoffice::booking::{charge_key, refund_key};

#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub show_id: i64,
    pub version: i64,
    pub total_seats: i64,
    pub available: i64,
    pub held: i64,
    pub booked: i64,
    pub bookings: HashMap<String, u64>,
    pub captured_unrefunded_charges: u64,
    pub hold_store: &'static str,
    pub checks: Vec<Check>,
    pub violations: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl AuditReport {
    fn check(&mut self, name: &'static str, ok: bool, detail: String) {
        if !ok {
            self.violations.push(format!("{name}: {detail}"));
        }
        self.checks.push(Check { name, ok, detail });
    }
}

/// What one open seat map showed at the end: its version and its seats (id → status).
pub struct View {
    pub version: i64,
    pub seats: HashMap<String, String>,
}

/// Where the audit reads: the server's database and, when it keeps holds in Redis, its Redis.
/// Opened before a run so that a wrong or missing setting fails at once, not after the rush.
pub struct Source {
    config: Target,
    db: sea_orm::DatabaseConnection,
}

impl Source {
    pub async fn open(config: &Target) -> anyhow::Result<Source> {
        let db = config.database().await?;
        if let Some(url) = &config.redis_url {
            let ping = async {
                let mut c = redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection()
                    .await?;
                redis::cmd("PING").query_async::<String>(&mut c).await
            };
            match tokio::time::timeout(config.dependency_timeout(), ping).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!(
                    "the audit reads the hold store: REDIS_URL ({}) does not answer: {e}",
                    boxoffice::db::redact(url)
                ),
                Err(_) => bail!(
                    "the audit reads the hold store: REDIS_URL ({}) did not answer in time",
                    boxoffice::db::redact(url)
                ),
            }
        }
        Ok(Source {
            config: config.clone(),
            db,
        })
    }

    /// The show the run drives must be in the database the audit reads: otherwise the server
    /// uses another database and every check would pass on nothing.
    pub async fn check_show(&self, show: &str) -> anyhow::Result<()> {
        let id: i64 = show
            .parse()
            .map_err(|_| anyhow!("show id {show} is not a number"))?;
        let found = entity::show::Entity::find_by_id(id).one(&self.db).await?;
        if found.is_none() {
            bail!(
                "show {id} is not in DATABASE_URL ({}): the server uses another database; set \
                 DATABASE_URL to the server's, or pass --no-audit",
                boxoffice::db::redact(self.config.database_url.as_deref().unwrap_or_default())
            );
        }
        Ok(())
    }
}

/// Audit one show. `views`: each open seat map at the end; `client_confirmed`: the bookings
/// clients were told are confirmed (and did not cancel).
pub async fn run(
    source: &Source,
    base_url: &str,
    show: &str,
    views: &[View],
    client_confirmed: &[i64],
) -> anyhow::Result<AuditReport> {
    let show_id: i64 = show
        .parse()
        .map_err(|_| anyhow!("show id {show} is not a number"))?;
    let (config, db) = (&source.config, &source.db);

    // The database's view: bookings, their seats, the gateway's ledger.
    let bookings = booking::Entity::find()
        .filter(booking::Column::ShowId.eq(show_id))
        .all(db)
        .await?;
    let seats = booking_seat::Entity::find()
        .filter(booking_seat::Column::ShowId.eq(show_id))
        .all(db)
        .await?;
    let mut keys = Vec::new();
    for b in &bookings {
        keys.push(charge_key(b.id));
        keys.push(refund_key(b.id));
    }
    let mut entries = HashMap::new();
    for chunk in keys.chunks(500) {
        for e in ledger::Entity::find()
            .filter(ledger::Column::IdempotencyKey.is_in(chunk.to_vec()))
            .all(db)
            .await?
        {
            entries.insert(e.idempotency_key.clone(), e);
        }
    }

    // The server's view (what clients see), then the hold store's own when it is Redis.
    let mut http = Http::new(base_url)?;
    let api = http
        .gql(
            None,
            "query($id: ID!) { show(id: $id) { version totalSeats availableSeats heldSeats bookedSeats seats { id status } } }",
            json!({ "id": show }),
        )
        .await?
        .data()?;
    let api = &api["show"];
    let int = |k: &str| api[k].as_i64().unwrap_or(-1);

    let mut report = AuditReport {
        show_id,
        version: int("version"),
        total_seats: int("totalSeats"),
        available: int("availableSeats"),
        held: int("heldSeats"),
        booked: int("bookedSeats"),
        bookings: HashMap::new(),
        captured_unrefunded_charges: 0,
        hold_store: if config.redis_url.is_some() {
            "redis (read directly)"
        } else {
            "in-process (read through the API)"
        },
        checks: Vec::new(),
        violations: Vec::new(),
        notes: Vec::new(),
    };
    for b in &bookings {
        *report.bookings.entry(b.status.to_string()).or_default() += 1;
    }

    // 1. No seat in two live bookings, and `active` exactly on confirmed bookings' seats.
    let status: HashMap<i64, &str> = bookings.iter().map(|b| (b.id, b.status.as_str())).collect();
    let mut owners: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut wrong_active = Vec::new();
    for s in &seats {
        let confirmed = status.get(&s.booking_id) == Some(&"CONFIRMED");
        if confirmed {
            owners.entry(s.seat_id).or_default().push(s.booking_id);
        }
        if s.active != confirmed {
            wrong_active.push(s.booking_id);
        }
    }
    let doubles: Vec<_> = owners.iter().filter(|(_, b)| b.len() > 1).collect();
    report.check(
        "no seat in two live bookings",
        doubles.is_empty(),
        format!(
            "{} seats booked by more than one confirmed booking {:?}",
            doubles.len(),
            doubles.iter().take(5).collect::<Vec<_>>()
        ),
    );
    report.check(
        "seat rows active exactly while their booking is confirmed",
        wrong_active.is_empty(),
        format!(
            "{} seat rows disagree with their booking",
            wrong_active.len()
        ),
    );

    // 2. Money: each confirmed booking has one captured, unrefunded charge; each captured,
    // unrefunded charge belongs to a confirmed booking; nothing is left pending.
    let captured = |b: &booking::Model| {
        let charged = entries
            .get(&charge_key(b.id))
            .is_some_and(|e| e.kind == "CHARGE" && e.status == "SUCCEEDED");
        let refunded = entries
            .get(&refund_key(b.id))
            .is_some_and(|e| e.kind == "REFUND" && e.status == "SUCCEEDED");
        charged && !refunded
    };
    let unpaid: Vec<i64> = bookings
        .iter()
        .filter(|b| b.status == BookingStatus::Confirmed && !captured(b))
        .map(|b| b.id)
        .collect();
    let kept: Vec<(i64, String)> = bookings
        .iter()
        .filter(|b| b.status != BookingStatus::Confirmed && captured(b))
        .map(|b| (b.id, b.status.to_string()))
        .collect();
    report.captured_unrefunded_charges = bookings.iter().filter(|b| captured(b)).count() as u64;
    report.check(
        "every confirmed booking has one captured, unrefunded charge",
        unpaid.is_empty(),
        format!(
            "{} confirmed bookings without a kept charge {:?}",
            unpaid.len(),
            &unpaid[..unpaid.len().min(5)]
        ),
    );
    report.check(
        "every captured, unrefunded charge has a confirmed booking",
        kept.is_empty(),
        format!(
            "{} charges kept for bookings that are not confirmed {:?}",
            kept.len(),
            &kept[..kept.len().min(5)]
        ),
    );
    let pending = bookings
        .iter()
        .filter(|b| b.status == BookingStatus::Pending)
        .count();
    report.check(
        "no booking left pending",
        pending == 0,
        format!("{pending} bookings still PENDING"),
    );

    // Nothing a client was told is confirmed got lost.
    let lost: Vec<i64> = client_confirmed
        .iter()
        .copied()
        .filter(|id| status.get(id) != Some(&"CONFIRMED"))
        .collect();
    report.check(
        "every booking clients saw confirmed is confirmed",
        lost.is_empty(),
        format!(
            "{} of {} bookings lost {:?}",
            lost.len(),
            client_confirmed.len(),
            &lost[..lost.len().min(5)]
        ),
    );

    // 3. Counts add up, and booked seats agree between the database and the seat map.
    report.check(
        "total = available + held + booked",
        report.total_seats == report.available + report.held + report.booked,
        format!(
            "{} = {} + {} + {}",
            report.total_seats, report.available, report.held, report.booked
        ),
    );
    let db_booked: HashSet<i64> = seats
        .iter()
        .filter(|s| s.active)
        .map(|s| s.seat_id)
        .collect();
    let api_booked: HashSet<i64> = api["seats"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["status"] == "BOOKED")
                .filter_map(|s| s["id"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    report.check(
        "the seat map's booked seats are the database's",
        db_booked == api_booked,
        format!(
            "database {} booked, seat map {} booked, {} differ",
            db_booked.len(),
            api_booked.len(),
            db_booked.symmetric_difference(&api_booked).count()
        ),
    );

    // 4. After the TTL nothing is held (the simulator waits TTL + 2 s before auditing).
    let (held, version, which) = match &config.redis_url {
        Some(url) => {
            let store = boxoffice::holds::redis::RedisStore::connect(
                url,
                &config.redis_key_prefix,
                config.dependency_timeout(),
                db.clone(),
            )
            .await
            .context("the audit reads the hold store: cannot connect to REDIS_URL")?;
            use boxoffice::holds::HoldStore;
            let state = store
                .snapshot(&[show_id])
                .await
                .map_err(|e| anyhow!("hold store: {e}"))?
                .remove(&show_id)
                .unwrap_or_default();
            report.check(
                "the hold store's booked seats are the database's",
                state.booked == db_booked,
                format!(
                    "store {} booked, database {}",
                    state.booked.len(),
                    db_booked.len()
                ),
            );
            let mut which: Vec<String> = state
                .held
                .iter()
                .map(|(seat, h)| {
                    let of_hold = bookings
                        .iter()
                        .filter(|b| b.hold_id.as_deref() == Some(h.hold_id.as_str()))
                        .map(|b| format!("booking {} {}", b.id, b.status))
                        .collect::<Vec<_>>();
                    format!(
                        "seat {seat} by user {} ({}; {})",
                        h.user_id,
                        h.hold_id,
                        if of_hold.is_empty() {
                            "no booking".to_string()
                        } else {
                            of_hold.join(", ")
                        }
                    )
                })
                .collect();
            which.sort();
            (state.held.len() as i64, state.version, which)
        }
        None => (report.held, report.version, Vec::new()),
    };
    report.check(
        "no seat held after the TTL",
        held == 0,
        format!("{held} seats still held {which:?}"),
    );

    // 5. Every open seat map shows the truth, at the show's version. After the hold store lost
    // its data its versions restart lower; a map that heard no event since cannot know, so it
    // is then held to its content only.
    let truth: HashMap<String, String> = api["seats"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s["id"].as_str()?.to_string(),
                        s["status"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let wrong_content = views.iter().filter(|v| v.seats != truth).count();
    // A few of the differences of the first map that differs, to say what went wrong.
    let sample: Vec<String> = views
        .iter()
        .find(|v| v.seats != truth)
        .map(|v| {
            let mut d: Vec<String> = truth
                .iter()
                .filter(|(id, st)| v.seats.get(*id) != Some(*st))
                .map(|(id, st)| {
                    format!(
                        "seat {id}: map {} (v{}), truth {st}",
                        v.seats.get(id).map_or("missing", String::as_str),
                        v.version
                    )
                })
                .collect();
            d.sort();
            d.truncate(5);
            d
        })
        .unwrap_or_default();
    let behind = views
        .iter()
        .filter(|v| v.version != version && v.version < version)
        .count();
    let reset = views.iter().filter(|v| v.version > version).count();
    report.check(
        "every live seat map shows the final seat map",
        wrong_content == 0,
        format!(
            "{wrong_content} of {} maps differ from the show's seats {sample:?}",
            views.len()
        ),
    );
    report.check(
        "every live seat map reached the show's version",
        behind == 0,
        format!(
            "{behind} of {} maps behind version {version} (lowest {:?})",
            views.len(),
            views.iter().map(|v| v.version).min()
        ),
    );
    if reset > 0 {
        report.notes.push(format!(
            "{reset} maps are above the store's version {version}: the hold store restarted its versions after their last event (their content matches)"
        ));
    }
    Ok(report)
}

pub fn print(a: &AuditReport) {
    println!(
        "audit of show {} (version {}, hold store {}): {} seats = {} available + {} held + {} booked; bookings {:?}",
        a.show_id, a.version, a.hold_store, a.total_seats, a.available, a.held, a.booked, a.bookings
    );
    for c in &a.checks {
        println!(
            "  [{}] {}{}",
            if c.ok { "ok" } else { "VIOLATION" },
            c.name,
            if c.ok {
                String::new()
            } else {
                format!(": {}", c.detail)
            }
        );
    }
    for n in &a.notes {
        println!("  note: {n}");
    }
    println!(
        "audit: {}",
        if a.violations.is_empty() {
            "clean".to_string()
        } else {
            format!("{} violations", a.violations.len())
        }
    );
}
