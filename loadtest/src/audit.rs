//! The audit: after a run (or on its own, `loadtest audit`), check the invariants the product
//! promises from sources the server does not control — its database and its Redis, read
//! directly and read-only (raw keys and Redis `TIME`; no store script, no cache refill, nothing
//! expired on the way) — and compare what the API shows with them. Every count is derived from
//! those raw reads and from the layout in the database, never from the API's own arithmetic.
//!
//! It refuses to run, loudly, when it cannot prove it is looking at the server's own data: the
//! show must be in the database it reads, the server's hold store must be the one it reads
//! (`/readyz` names it), and a show whose map has changed must have keys under the prefix.
use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{anyhow, bail, Context};
use entity::booking::BookingStatus;
use entity::{booking, booking_seat, mock_gateway_ledger as ledger, outbox, seat, show};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::Http;
use crate::target::Target;

/// The checks, in the order they run. A report always lists every one of them.
pub const CHECKS: [&str; 16] = [
    "no seat is in two confirmed bookings",
    "seats are live exactly on confirmed bookings",
    "every confirmed booking has one kept charge",
    "every kept charge has a confirmed booking",
    "no booking is left pending",
    "every booking a client saw confirmed is confirmed",
    "the hold store's booked seats are the database's",
    "no hold outlived its TTL by more than 2 s",
    "the hold store's seat index matches its hold records",
    "the seat map's counts are the layout's and the hold store's",
    "every live seat map shows the final seat map",
    "every live seat map reached the show's version",
    "a live seat map was kept by events alone",
    "the hold store's occupancy string matches its holds and bookings",
    "every buyer of a show with a waiting room was admitted",
    "every confirmed, cancelled and failed booking has exactly one outbox event of each kind",
];

/// How long past its expiry a hold may still be in the store (the sweeper's announcement bound).
const EXPIRY_GRACE_MS: i64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Violation,
    /// The check cannot be made from what this audit can read (said so, never silently).
    NotApplicable,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

/// Counts derived independently: the layout from the database, booked and held seats from the
/// hold store's raw keys (or the database's bookings where the store cannot be read).
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub total: i64,
    pub booked: i64,
    pub held: i64,
}

#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub show_id: i64,
    /// `redis (raw keys)` or `in-process (not readable from outside the server)`.
    pub hold_store: String,
    /// The API's version and counts of the show.
    pub version: i64,
    pub total_seats: i64,
    pub available: i64,
    pub held: i64,
    pub booked: i64,
    /// The same counts, derived without the API.
    pub independent: Counts,
    pub bookings: BTreeMap<String, u64>,
    pub captured_unrefunded_charges: u64,
    pub checks: Vec<Check>,
    pub violations: Vec<String>,
    pub notes: Vec<String>,
}

impl AuditReport {
    fn record(&mut self, name: &'static str, outcome: Outcome, detail: String) {
        debug_assert!(CHECKS.contains(&name), "unlisted check {name}");
        if outcome == Outcome::Violation {
            self.violations.push(format!("{name}: {detail}"));
        }
        self.checks.push(Check {
            name,
            outcome,
            detail,
        });
    }
    fn check(&mut self, name: &'static str, ok: bool, detail: String) {
        let outcome = if ok { Outcome::Ok } else { Outcome::Violation };
        self.record(name, outcome, detail);
    }
    fn not_applicable(&mut self, name: &'static str, why: &str) {
        self.record(name, Outcome::NotApplicable, why.to_string());
    }
}

/// What one open seat map showed at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct View {
    pub version: i64,
    /// Seat id → status.
    pub seats: HashMap<String, String>,
    /// Events applied since the map was last read in full (0: it is only as right as a read).
    #[serde(default)]
    pub applied_since_read: u64,
}

/// Where the audit reads: the server's database and, when the server keeps its holds in Redis,
/// that Redis. Opened before a run, so that a wrong or missing setting fails at once.
pub struct Source {
    config: Target,
    db: sea_orm::DatabaseConnection,
    /// Checked at `open`; each read connects afresh (a Redis restarted during a run, as the
    /// soak does, leaves an old connection broken).
    redis: Option<boxoffice::redis_conn::RedisTarget>,
}

impl Source {
    pub async fn open(config: &Target) -> anyhow::Result<Source> {
        let db = config.database().await?;
        let redis = match &config.redis_url {
            None => None,
            Some(url) => {
                Some(boxoffice::redis_conn::RedisTarget::parse(url).map_err(|e| anyhow!(e))?)
            }
        };
        let source = Source {
            config: config.clone(),
            db,
            redis,
        };
        source.redis().await?;
        Ok(source)
    }

    /// A fresh connection to the hold store's Redis (`None` without REDIS_URL), checked with a
    /// PING within the dependency timeout.
    async fn redis(&self) -> anyhow::Result<Option<boxoffice::redis_conn::RedisConn>> {
        let Some(target) = &self.redis else {
            return Ok(None);
        };
        let shown = boxoffice::db::redact(self.config.redis_url.as_deref().unwrap_or_default());
        let timeout = self.config.dependency_timeout();
        let connect = async {
            let mut c =
                boxoffice::redis_conn::RedisConn::connect(target, timeout, 1).map_err(|e| {
                    redis::RedisError::from((redis::ErrorKind::Io, "connect", e.to_string()))
                })?;
            redis::cmd("PING").query_async::<String>(&mut c).await?;
            Ok::<_, redis::RedisError>(c)
        };
        match tokio::time::timeout(self.config.dependency_timeout(), connect).await {
            Ok(Ok(c)) => Ok(Some(c)),
            Ok(Err(e)) => {
                bail!("the audit reads the hold store: REDIS_URL ({shown}) does not answer: {e}")
            }
            Err(_) => {
                bail!("the audit reads the hold store: REDIS_URL ({shown}) did not answer in time")
            }
        }
    }

    /// The server must keep its holds where the audit reads them: Redis iff REDIS_URL is given.
    pub async fn check_server(&self, http: &mut Http) -> anyhow::Result<()> {
        let kind = http
            .get_json("/readyz")
            .await
            .context("the audit asks the server's /readyz which hold store it uses")?;
        let kind = kind["holdStoreKind"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        match (kind.as_str(), self.redis.is_some()) {
            ("redis", true) | ("memory", false) => Ok(()),
            ("redis", false) => bail!(
                "the server keeps its holds in Redis but REDIS_URL is not set: the audit would \
                 not see them. Set REDIS_URL and REDIS_KEY_PREFIX as the server has them, or \
                 pass --no-audit"
            ),
            ("memory", true) => bail!(
                "the server keeps its holds in its own memory, but REDIS_URL is set: unset it \
                 (the audit cannot read an in-process store), or point at the right server"
            ),
            (other, _) => bail!(
                "the server's hold store is {other:?}: the audit reads Redis or nothing; pass \
                 --no-audit"
            ),
        }
    }

    /// Before a run on an existing show: when its map has changed, its keys must be under the
    /// prefix the audit reads (a fresh show has none yet: the audit checks again after the run).
    pub async fn check_prefix(&self, show: &str, version: i64) -> anyhow::Result<()> {
        let Some(mut conn) = self.redis().await? else {
            return Ok(());
        };
        let show_id: i64 = show
            .parse()
            .map_err(|_| anyhow!("show id {show} is not a number"))?;
        let raw = read_raw(&mut conn, &self.config.redis_key_prefix, show_id).await?;
        prefix_is_the_servers(&self.config, show_id, raw.keys_exist, version)
    }

    /// The show the run drives must be in the database the audit reads.
    pub async fn check_show(&self, show: &str) -> anyhow::Result<show::Model> {
        let id: i64 = show
            .parse()
            .map_err(|_| anyhow!("show id {show} is not a number"))?;
        match show::Entity::find_by_id(id).one(&self.db).await? {
            Some(s) => Ok(s),
            None => bail!(
                "show {id} is not in DATABASE_URL ({}): the server uses another database; set \
                 DATABASE_URL to the server's, or pass --no-audit",
                boxoffice::db::redact(self.config.database_url.as_deref().unwrap_or_default())
            ),
        }
    }
}

/// A show whose map has changed (version above 0, as the API says) has keys under the server's
/// prefix: none under ours means ours is not the server's.
fn prefix_is_the_servers(
    config: &Target,
    show_id: i64,
    keys_exist: bool,
    version: i64,
) -> anyhow::Result<()> {
    if !keys_exist && version > 0 {
        bail!(
            "show {show_id} has changed (version {version}) but Redis has no key of it under \
             REDIS_KEY_PREFIX={:?}: the prefix (or REDIS_URL) is not the server's. Set them as \
             the server has them, or pass --no-audit",
            config.redis_key_prefix
        );
    }
    Ok(())
}

/// One show's keys in Redis, read raw in one MULTI (a consistent snapshot), with Redis's clock.
#[derive(Default)]
struct RawStore {
    now_ms: i64,
    /// Seat → hold.
    seats: HashMap<i64, String>,
    /// Hold → expiry (ms).
    expiries: HashMap<String, i64>,
    /// Hold → (user, expiry, seats).
    records: HashMap<String, (i64, i64, Vec<i64>)>,
    booked: HashSet<i64>,
    version: i64,
    loaded: bool,
    keys_exist: bool,
    /// Best available's plan (seat → position) and occupancy string, when loaded.
    positions: HashMap<i64, usize>,
    plan_len: Option<usize>,
    occupancy: Option<Vec<u8>>,
    /// The waiting room is on, and who has (or had, within the hour) an admitted session.
    queue_on: bool,
    admitted: HashSet<i64>,
}

async fn read_raw(
    conn: &mut boxoffice::redis_conn::RedisConn,
    prefix: &str,
    show: i64,
) -> anyhow::Result<RawStore> {
    let key = |k: &str| boxoffice::holds::redis::keys::show_key(prefix, show, k);
    type Reply = (
        (String, String),
        HashMap<String, String>,
        Vec<(String, f64)>,
        HashMap<String, String>,
        Vec<String>,
        HashMap<String, String>,
        i64,
        HashMap<String, Vec<u8>>,
        Option<Vec<u8>>,
        Vec<String>,
    );
    let (time, seats, holds, recs, booked, meta, exist, plan, occupancy, admitted): Reply =
        redis::pipe()
            .atomic()
            .cmd("TIME")
            .hgetall(key("seats"))
            .zrange_withscores(key("holds"), 0, -1)
            .hgetall(key("holdrec"))
            .smembers(key("booked"))
            .hgetall(key("meta"))
            .exists(
                ["seats", "holds", "holdrec", "uholds", "booked", "meta"]
                    .iter()
                    .map(|k| key(k))
                    .collect::<Vec<_>>(),
            )
            .hgetall(key("plan"))
            .get(key("occ"))
            .zrange(key("qadm"), 0, -1)
            .query_async(conn)
            .await
            .context("reading the show's keys in Redis")?;
    let int = |s: &str, what: &str| -> anyhow::Result<i64> {
        s.parse()
            .map_err(|_| anyhow!("malformed {what} in Redis: {s:?}"))
    };
    let now_ms = int(&time.0, "TIME")? * 1000 + int(&time.1, "TIME")? / 1000;
    let mut raw = RawStore {
        now_ms,
        version: meta
            .get("ver")
            .map(|v| int(v, "ver"))
            .transpose()?
            .unwrap_or(0),
        loaded: meta.get("loaded").map(String::as_str) == Some("1"),
        keys_exist: exist > 0,
        occupancy,
        queue_on: meta.get("q_on").map(String::as_str) == Some("1"),
        ..RawStore::default()
    };
    for u in admitted {
        raw.admitted.insert(int(&u, "user id")?);
    }
    for (field, value) in &plan {
        let text = || String::from_utf8_lossy(value).to_string();
        if field == "n" {
            raw.plan_len = Some(int(&text(), "plan size")? as usize);
        } else if let Some(seat) = field.strip_prefix('s') {
            raw.positions
                .insert(int(seat, "seat id")?, int(&text(), "position")? as usize);
        }
    }
    for (s, h) in seats {
        raw.seats.insert(int(&s, "seat id")?, h);
    }
    for (h, exp) in holds {
        raw.expiries.insert(h, exp as i64);
    }
    for (h, rec) in recs {
        let mut parts = rec.splitn(4, '|');
        let (user, exp, _created, list) =
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(u), Some(e), Some(c), Some(l)) => (u, e, c, l),
                _ => bail!("malformed hold record in Redis: {rec:?}"),
            };
        let seats = list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| int(s, "seat id"))
            .collect::<anyhow::Result<Vec<i64>>>()?;
        raw.records
            .insert(h, (int(user, "user id")?, int(exp, "expiry")?, seats));
    }
    for s in booked {
        raw.booked.insert(int(&s, "seat id")?);
    }
    Ok(raw)
}

/// Audit one show. `views`: each open seat map at the end (`None`: no live maps were kept);
/// `client_confirmed`: the bookings clients were told are confirmed (and did not cancel).
pub async fn run(
    source: &Source,
    base_url: &str,
    show: &str,
    views: Option<&[View]>,
    client_confirmed: &[i64],
) -> anyhow::Result<AuditReport> {
    let (config, db) = (&source.config, &source.db);
    let mut http = Http::new(base_url)?;
    source.check_server(&mut http).await?;
    let show_row = source.check_show(show).await?;
    let show_id = show_row.id;

    // 1. The hold store's raw keys, first: the API read below may expire due holds.
    let raw = match source.redis().await? {
        Some(mut conn) => Some(read_raw(&mut conn, &config.redis_key_prefix, show_id).await?),
        None => None,
    };

    // 2. The database: bookings, their seats, the gateway's ledger, the layout.
    let bookings = booking::Entity::find()
        .filter(booking::Column::ShowId.eq(show_id))
        .all(db)
        .await?;
    let seat_rows = booking_seat::Entity::find()
        .filter(booking_seat::Column::ShowId.eq(show_id))
        .all(db)
        .await?;
    let events = outbox::Entity::find()
        .filter(outbox::Column::ShowId.eq(show_id))
        .all(db)
        .await?;
    let layout_seats = seat::Entity::find()
        .filter(seat::Column::ScreenId.eq(show_row.screen_id))
        .count(db)
        .await? as i64;
    let mut keys = Vec::new();
    for b in &bookings {
        keys.push(boxoffice::booking::charge_key(b.id));
        keys.push(boxoffice::booking::refund_key(b.id));
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

    // 3. What clients see.
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
    let api_seats: HashMap<String, String> = api["seats"]
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

    // The audit must be looking at the server's keys: a show whose map has changed has keys.
    if let Some(raw) = &raw {
        prefix_is_the_servers(config, show_id, raw.keys_exist, int("version"))?;
    }

    let mut report = AuditReport {
        show_id,
        hold_store: if raw.is_some() {
            "redis (raw keys)".into()
        } else {
            "in-process (not readable from outside the server)".into()
        },
        version: int("version"),
        total_seats: int("totalSeats"),
        available: int("availableSeats"),
        held: int("heldSeats"),
        booked: int("bookedSeats"),
        independent: Counts::default(),
        bookings: BTreeMap::new(),
        captured_unrefunded_charges: 0,
        checks: Vec::new(),
        violations: Vec::new(),
        notes: Vec::new(),
    };
    for b in &bookings {
        *report.bookings.entry(b.status.to_string()).or_default() += 1;
    }
    let status: HashMap<i64, BookingStatus> = bookings.iter().map(|b| (b.id, b.status)).collect();
    let confirmed = |id: &i64| status.get(id) == Some(&BookingStatus::Confirmed);

    // Seats of confirmed bookings: the database's booked seats, by the bookings' own status.
    let mut owners: HashMap<i64, Vec<i64>> = HashMap::new();
    for s in seat_rows.iter().filter(|s| confirmed(&s.booking_id)) {
        owners.entry(s.seat_id).or_default().push(s.booking_id);
    }
    let db_booked: HashSet<i64> = owners.keys().copied().collect();
    let doubles: Vec<(i64, Vec<i64>)> = owners
        .iter()
        .filter(|(_, b)| b.len() > 1)
        .map(|(s, b)| (*s, b.clone()))
        .collect();
    report.check(
        CHECKS[0],
        doubles.is_empty(),
        format!(
            "{} seats in more than one confirmed booking {:?}",
            doubles.len(),
            first(&doubles)
        ),
    );
    let wrong_live: Vec<(i64, i64, bool)> = seat_rows
        .iter()
        .filter(|s| s.active != confirmed(&s.booking_id))
        .map(|s| (s.booking_id, s.seat_id, s.active))
        .collect();
    report.check(
        CHECKS[1],
        wrong_live.is_empty(),
        format!(
            "{} seat rows whose `active` disagrees with their booking's status (booking, seat, active) {:?}",
            wrong_live.len(),
            first(&wrong_live)
        ),
    );

    // Money: each confirmed booking has exactly one captured, unrefunded charge at the gateway,
    // and every such charge belongs to a confirmed booking.
    let kept = |b: &booking::Model| {
        let charged = entries
            .get(&boxoffice::booking::charge_key(b.id))
            .is_some_and(|e| e.kind == "CHARGE" && e.status == "SUCCEEDED");
        let refunded = entries
            .get(&boxoffice::booking::refund_key(b.id))
            .is_some_and(|e| e.kind == "REFUND" && e.status == "SUCCEEDED");
        charged && !refunded
    };
    let unpaid: Vec<i64> = bookings
        .iter()
        .filter(|b| b.status == BookingStatus::Confirmed && !kept(b))
        .map(|b| b.id)
        .collect();
    let stray: Vec<(i64, String)> = bookings
        .iter()
        .filter(|b| b.status != BookingStatus::Confirmed && kept(b))
        .map(|b| (b.id, b.status.to_string()))
        .collect();
    report.captured_unrefunded_charges = bookings.iter().filter(|b| kept(b)).count() as u64;
    report.check(
        CHECKS[2],
        unpaid.is_empty(),
        format!(
            "{} confirmed bookings without a kept charge {:?}",
            unpaid.len(),
            first(&unpaid)
        ),
    );
    report.check(
        CHECKS[3],
        stray.is_empty(),
        format!(
            "{} kept charges of bookings that are not confirmed {:?}",
            stray.len(),
            first(&stray)
        ),
    );
    let pending: Vec<i64> = bookings
        .iter()
        .filter(|b| b.status == BookingStatus::Pending)
        .map(|b| b.id)
        .collect();
    report.check(
        CHECKS[4],
        pending.is_empty(),
        format!(
            "{} bookings still pending {:?}",
            pending.len(),
            first(&pending)
        ),
    );
    let lost: Vec<i64> = client_confirmed
        .iter()
        .copied()
        .filter(|id| !confirmed(id))
        .collect();
    report.check(
        CHECKS[5],
        lost.is_empty(),
        format!(
            "{} of {} bookings clients saw confirmed are not confirmed now {:?}",
            lost.len(),
            client_confirmed.len(),
            first(&lost)
        ),
    );

    // The hold store, from its raw keys.
    let held_api = api_seats.values().filter(|s| *s == "HELD").count() as i64;
    let truth_version;
    // Checked from the same raw snapshot, reported last.
    let mut occupancy: Option<Option<(bool, String)>> = None;
    let mut admissions: Option<(bool, HashSet<i64>)> = None;
    match &raw {
        Some(raw) => {
            if raw.loaded {
                let diff: Vec<i64> = raw
                    .booked
                    .symmetric_difference(&db_booked)
                    .copied()
                    .collect();
                report.check(
                    CHECKS[6],
                    diff.is_empty(),
                    format!(
                        "store {} booked, database {}; differ on {:?}",
                        raw.booked.len(),
                        db_booked.len(),
                        first(&diff)
                    ),
                );
            } else {
                report.check(
                    CHECKS[6],
                    raw.booked.is_empty() && raw.seats.is_empty(),
                    format!(
                        "the store has not loaded this show (it reloads from the database on next use) yet holds {} booked and {} held seats",
                        raw.booked.len(),
                        raw.seats.len()
                    ),
                );
            }
            let overdue: Vec<(String, i64)> = raw
                .expiries
                .iter()
                .filter(|(_, exp)| **exp + EXPIRY_GRACE_MS < raw.now_ms)
                .map(|(h, exp)| {
                    let owner = bookings
                        .iter()
                        .filter(|b| b.hold_id.as_deref() == Some(h.as_str()))
                        .map(|b| format!("booking {} {}", b.id, b.status))
                        .collect::<Vec<_>>();
                    (format!("{h} ({owner:?})"), raw.now_ms - exp)
                })
                .collect();
            report.check(
                CHECKS[7],
                overdue.is_empty(),
                format!(
                    "{} holds still in the store past their expiry + 2 s (hold, ms overdue) {:?}",
                    overdue.len(),
                    first(&overdue)
                ),
            );
            let mut broken = Vec::new();
            for (seat, hold) in &raw.seats {
                match raw.records.get(hold) {
                    None => broken.push(format!("seat {seat} → hold {hold} without a record")),
                    Some((_, _, seats)) if !seats.contains(seat) => {
                        broken.push(format!("seat {seat} → hold {hold} whose record omits it"))
                    }
                    Some(_) => {}
                }
                if !raw.expiries.contains_key(hold) {
                    broken.push(format!("seat {seat} → hold {hold} with no expiry entry"));
                }
                if raw.booked.contains(seat) {
                    broken.push(format!("seat {seat} both held ({hold}) and booked"));
                }
            }
            for hold in raw.records.keys() {
                if !raw.expiries.contains_key(hold) {
                    broken.push(format!("hold {hold} has a record but no expiry entry"));
                }
            }
            for hold in raw.expiries.keys() {
                if !raw.records.contains_key(hold) {
                    broken.push(format!("hold {hold} has an expiry entry but no record"));
                }
            }
            occupancy = Some(occupancy_check(raw));
            admissions = Some((raw.queue_on, raw.admitted.clone()));
            broken.sort();
            report.check(
                CHECKS[8],
                broken.is_empty(),
                format!("{} inconsistencies {:?}", broken.len(), first(&broken)),
            );
            // Held seats as the store has them: live holds (by Redis's clock) of seats not booked.
            // A hold due within the next seconds may be expired by the API's own read.
            let live = |margin: i64| {
                raw.seats
                    .iter()
                    .filter(|(s, h)| {
                        !raw.booked.contains(s)
                            && raw
                                .expiries
                                .get(*h)
                                .is_some_and(|e| *e > raw.now_ms + margin)
                    })
                    .count() as i64
            };
            let (sure, all) = (live(5_000), live(0));
            // A store that has not loaded the show loads it from the database on the API's read.
            let store_booked = if raw.loaded {
                raw.booked.len() as i64
            } else {
                db_booked.len() as i64
            };
            report.independent = Counts {
                total: layout_seats,
                booked: store_booked,
                held: all,
            };
            let api_held = report.held;
            let available_ok = (report.total_seats - report.booked - api_held) == report.available;
            report.check(
                CHECKS[9],
                report.total_seats == layout_seats
                    && report.booked == store_booked
                    && (sure..=all).contains(&api_held)
                    && available_ok
                    && held_api == api_held,
                format!(
                    "API total {} / booked {} / held {} (seats marked held: {held_api}) / available {}; layout {layout_seats} seats, store {store_booked} booked and {sure}–{all} held",
                    report.total_seats,
                    report.booked,
                    api_held,
                    report.available,
                ),
            );
            truth_version = raw.version;
        }
        None => {
            let why = "the server keeps its holds in its own memory: only the server can read them";
            for name in &CHECKS[6..9] {
                report.not_applicable(name, why);
            }
            report.independent = Counts {
                total: layout_seats,
                booked: db_booked.len() as i64,
                held: held_api,
            };
            report.check(
                CHECKS[9],
                report.total_seats == layout_seats
                    && report.booked == db_booked.len() as i64
                    && report.held == held_api
                    && report.total_seats - report.booked - report.held == report.available,
                format!(
                    "API total {} / booked {} / held {} (seats marked held: {held_api}) / available {}; layout {layout_seats} seats, database {} booked (held seats: the API's own, the store being in-process)",
                    report.total_seats,
                    report.booked,
                    report.held,
                    report.available,
                    db_booked.len()
                ),
            );
            truth_version = report.version;
        }
    }

    // Live maps: each must show the final map, at the store's version; and at least one must
    // have got there by events (a map right only because it was re-read proves nothing of them).
    match views {
        None | Some([]) => {
            for name in &CHECKS[10..13] {
                report.not_applicable(name, "no live seat map was kept");
            }
        }
        Some(views) => {
            let wrong: Vec<&View> = views.iter().filter(|v| v.seats != api_seats).collect();
            let sample: Vec<String> = wrong
                .first()
                .map(|v| {
                    let mut d: Vec<String> = api_seats
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
            report.check(
                CHECKS[10],
                wrong.is_empty(),
                format!(
                    "{} of {} maps differ from the final map {sample:?}",
                    wrong.len(),
                    views.len()
                ),
            );
            let behind = views.iter().filter(|v| v.version < truth_version).count();
            let above = views.iter().filter(|v| v.version > truth_version).count();
            report.check(
                CHECKS[11],
                behind == 0,
                format!(
                    "{behind} of {} maps behind version {truth_version} (lowest {:?})",
                    views.len(),
                    views.iter().map(|v| v.version).min()
                ),
            );
            if above > 0 {
                report.notes.push(format!(
                    "{above} maps are above the store's version {truth_version}: the store restarted its versions after their last event (their content is checked all the same)"
                ));
            }
            let by_events = views
                .iter()
                .filter(|v| v.applied_since_read > 0 && v.seats == api_seats)
                .count();
            report.check(
                CHECKS[12],
                by_events > 0,
                format!(
                    "{by_events} of {} maps equal the final map having applied events since their last full read",
                    views.len()
                ),
            );
        }
    }
    match occupancy {
        Some(Some((ok, detail))) => report.check(CHECKS[13], ok, detail),
        Some(None) => report.not_applicable(
            CHECKS[13],
            "no best-available hold has loaded this show's seat plan into the store",
        ),
        None => report.not_applicable(
            CHECKS[13],
            "the server keeps its holds in its own memory: only the server can read them",
        ),
    }
    match admissions {
        Some((true, admitted)) => {
            let mut outsiders: Vec<String> = bookings
                .iter()
                .filter(|b| !admitted.contains(&b.user_id))
                .map(|b| format!("booking {} by user {}", b.id, b.user_id))
                .collect();
            outsiders.sort();
            report.check(
                CHECKS[14],
                outsiders.is_empty(),
                format!(
                    "{} of {} bookings by users the waiting room never admitted {:?}",
                    outsiders.len(),
                    bookings.len(),
                    first(&outsiders)
                ),
            );
        }
        Some((false, _)) => report.not_applicable(CHECKS[14], "the show has no waiting room"),
        None => report.not_applicable(
            CHECKS[14],
            "the server keeps its waiting room in its own memory: only the server can read it",
        ),
    }
    // Webhooks: the outbox holds one event per booking state change, written with the change —
    // a confirmed booking one `booking.confirmed`, a cancelled one that and a
    // `booking.cancelled`, a failed one `booking.failed`; none twice, none for a change that
    // did not happen.
    let mut seen: HashMap<(i64, &str), usize> = HashMap::new();
    for e in &events {
        if let Some(b) = e.booking_id {
            *seen.entry((b, e.kind.as_str())).or_default() += 1;
        }
    }
    let mut wrong: Vec<i64> = bookings
        .iter()
        .filter(|b| {
            let want = |kind: &str| -> usize {
                match (b.status, kind) {
                    (BookingStatus::Confirmed | BookingStatus::Cancelled, "booking.confirmed") => 1,
                    (BookingStatus::Cancelled, "booking.cancelled") => 1,
                    (BookingStatus::Failed, "booking.failed") => 1,
                    _ => 0,
                }
            };
            ["booking.confirmed", "booking.cancelled", "booking.failed"]
                .iter()
                .any(|k| seen.get(&(b.id, *k)).copied().unwrap_or(0) != want(k))
        })
        .map(|b| b.id)
        .collect();
    wrong.sort();
    report.check(
        CHECKS[15],
        wrong.is_empty(),
        format!(
            "{} of {} bookings without exactly their events {:?}",
            wrong.len(),
            bookings.len(),
            first(&wrong)
        ),
    );
    Ok(report)
}

/// Best available's occupancy string says taken ('1') exactly for the seats held or booked;
/// `None` when the show's plan is not loaded (no best-available hold yet).
fn occupancy_check(raw: &RawStore) -> Option<(bool, String)> {
    if raw.plan_len.is_none() && raw.occupancy.is_none() {
        return None;
    }
    let (Some(n), Some(occ)) = (raw.plan_len, &raw.occupancy) else {
        return Some((
            false,
            "the seat plan and the occupancy string must exist together".into(),
        ));
    };
    let mut wrong = Vec::new();
    if occ.len() != n || raw.positions.len() != n {
        wrong.push(format!(
            "{} bytes and {} seat positions for a plan of {n}",
            occ.len(),
            raw.positions.len()
        ));
    }
    let mut seats: Vec<(&i64, &usize)> = raw.positions.iter().collect();
    seats.sort();
    for (seat, pos) in seats {
        let taken = raw.seats.contains_key(seat) || raw.booked.contains(seat);
        let marked = occ.get(*pos) == Some(&b'1');
        if taken != marked {
            wrong.push(format!(
                "seat {seat} is {} but marked {}",
                if taken { "taken" } else { "free" },
                if marked { "taken" } else { "free" }
            ));
        }
    }
    Some((
        wrong.is_empty(),
        format!(
            "{} of {n} positions disagree {:?}",
            wrong.len(),
            first(&wrong)
        ),
    ))
}

/// The first few items, for a detail line.
fn first<T>(items: &[T]) -> &[T] {
    &items[..items.len().min(5)]
}

pub fn print(a: &AuditReport) {
    println!(
        "audit of show {} (hold store {}): API {} seats = {} available + {} held + {} booked at version {}; independently {} seats, {} booked, {} held; bookings {:?}",
        a.show_id,
        a.hold_store,
        a.total_seats,
        a.available,
        a.held,
        a.booked,
        a.version,
        a.independent.total,
        a.independent.booked,
        a.independent.held,
        a.bookings
    );
    for c in &a.checks {
        let (tag, detail) = match c.outcome {
            Outcome::Ok => ("ok", String::new()),
            Outcome::Violation => ("VIOLATION", format!(": {}", c.detail)),
            Outcome::NotApplicable => ("n/a", format!(": {}", c.detail)),
        };
        println!("  [{tag}] {}{detail}", c.name);
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

/// `loadtest audit`: audit a show without a run (live maps and confirmed bookings from files).
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// The server whose show is audited.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    #[arg(long)]
    pub show: String,
    /// JSON file: the live maps clients kept, `[{"version": N, "seats": {"id": "STATUS"}, "applied_since_read": N}]`.
    #[arg(long)]
    pub views: Option<std::path::PathBuf>,
    /// JSON file: ids of the bookings clients were told are confirmed, `[1, 2, …]`.
    #[arg(long)]
    pub confirmed: Option<std::path::PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Run `loadtest audit`; `Ok(false)` when it found violations.
pub async fn command(config: &Target, args: AuditArgs) -> anyhow::Result<bool> {
    let read = |p: &std::path::Path| -> anyhow::Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
    };
    let views: Option<Vec<View>> = match &args.views {
        Some(p) => Some(serde_json::from_value(read(p)?).context("--views: a list of maps")?),
        None => None,
    };
    let confirmed: Vec<i64> = match &args.confirmed {
        Some(p) => serde_json::from_value(read(p)?).context("--confirmed: a list of ids")?,
        None => Vec::new(),
    };
    let source = Source::open(config).await?;
    let report = run(&source, &args.url, &args.show, views.as_deref(), &confirmed).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(report.violations.is_empty())
}
