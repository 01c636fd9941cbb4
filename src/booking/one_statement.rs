//! The two durable steps of a checkout as one statement each on PostgreSQL (data-modifying CTEs):
//! the PENDING intent (booking, seats, charge attempt, audit entry) and the confirmation (booking,
//! seats live, charge succeeded, outbox event, audit entry). A single statement is its own
//! transaction: one round trip and one commit instead of a BEGIN, four or five statements and a
//! COMMIT — with the same all-or-nothing effect, the same unique indexes refusing the same
//! conflicts, and the same conditional move out of PENDING. One statement per step serves one
//! checkout and a group of them alike. SQLite keeps the multi-statement transaction (it is
//! in-process; a round trip costs nothing there).
use chrono::{DateTime, Utc};
use entity::booking;
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;

use super::BookingStatus;
use crate::db::json_rows;
use crate::group_commit::{query, Lane};

/// What the intent writes.
#[derive(Debug, Clone)]
pub struct Intent {
    pub user: i64,
    pub show: i64,
    pub hold_id: String,
    pub key: String,
    pub total: i64,
    /// (seat, price in cents).
    pub seats: Vec<(i64, i64)>,
    pub at: DateTime<Utc>,
    /// The audit entry's detail.
    pub detail: serde_json::Value,
}

impl Intent {
    /// The PENDING booking the intent writes, as stored (`at` in microseconds), once it has `id`.
    pub fn booking(&self, id: i64) -> booking::Model {
        booking::Model {
            id,
            user_id: self.user,
            show_id: self.show,
            hold_id: Some(self.hold_id.clone()),
            status: BookingStatus::Pending,
            total_cents: self.total,
            idempotency_key: self.key.clone(),
            failure_reason: None,
            created_at: self.at,
            updated_at: self.at,
        }
    }
}

/// Write the PENDING intent in one statement (a group of one); the new booking's id. A unique
/// violation (the same key, or the hold already being checked out) comes back as the error it is.
pub async fn intent(db: &DatabaseConnection, i: &Intent) -> Result<i64, DbErr> {
    only(intents(db, None, std::slice::from_ref(i)).await?)
}

/// What the confirmation writes beside the move itself.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub booking: i64,
    pub show: i64,
    pub user: i64,
    pub provider_ref: String,
    pub at: DateTime<Utc>,
    /// The outbox event's payload and the audit entry's detail.
    pub payload: serde_json::Value,
    pub detail: serde_json::Value,
}

/// PENDING → CONFIRMED with its seats live, in one statement (a group of one): whether this call
/// moved it (`false`: settled by someone else first). A seat another live booking holds makes the
/// whole statement fail on the unique index, and nothing of it stays.
pub async fn confirm(db: &DatabaseConnection, c: &Confirmation) -> Result<bool, DbErr> {
    only(confirms(db, None, std::slice::from_ref(c)).await?)
}

/// The answer of a group of one.
fn only<T>(answers: Vec<T>) -> Result<T, DbErr> {
    answers
        .into_iter()
        .next()
        .ok_or_else(|| DbErr::RecordNotFound("a statement answered nothing".into()))
}

// The statements, for one checkout or a group of them written together (`crate::group_commit`):
// the rows are passed as JSON arrays (`jsonb_to_recordset`), written straight from these structs
// (building `serde_json::Value` maps and printing them cost a booking ~60,000 server
// instructions, callgrind, 2026-12-04). The audit detail and the event payload travel as text.

/// A row of `INTENTS`' `x`.
#[derive(Serialize)]
struct IntentRow<'a> {
    i: usize,
    user_id: i64,
    show_id: i64,
    hold_id: &'a str,
    total: i64,
    key: &'a str,
    at: DateTime<Utc>,
    detail: String,
}

/// A row of `INTENTS`' seats (`y`).
#[derive(Serialize)]
struct SeatRow {
    i: usize,
    seat: i64,
    price: i64,
}

/// A row of `CONFIRMS`' `x`.
#[derive(Serialize)]
struct ConfirmRow<'a> {
    booking: i64,
    at: DateTime<Utc>,
    provider_ref: &'a str,
    event_id: String,
    show_id: i64,
    payload: String,
    user_id: i64,
    detail: String,
}

const INTENTS: &str = "\
WITH x AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS x(i int, user_id bigint, show_id bigint, hold_id text, total bigint, key text, at timestamptz, detail text)),
b AS (
  INSERT INTO bookings (user_id, show_id, hold_id, status, total_cents, idempotency_key, created_at, updated_at)
  SELECT user_id, show_id, hold_id, 'PENDING', total, key, at, at FROM x ORDER BY i
  RETURNING id, hold_id),
bx AS (SELECT b.id, x.* FROM b JOIN x ON x.hold_id = b.hold_id),
s AS (
  INSERT INTO booking_seats (booking_id, seat_id, show_id, price_cents, active)
  SELECT bx.id, y.seat, bx.show_id, y.price, false
  FROM bx JOIN jsonb_to_recordset($2::jsonb) AS y(i int, seat bigint, price bigint) ON y.i = bx.i),
p AS (
  INSERT INTO payments (booking_id, kind, amount_cents, idempotency_key, status, created_at, updated_at)
  SELECT id, 'CHARGE', total, 'charge-' || id, 'PENDING', at, at FROM bx),
a AS (
  INSERT INTO audit_log (at, actor_kind, actor_id, kind, show_id, booking_id, user_id, detail)
  SELECT at, 'USER', user_id, 'booking.created', show_id, id, user_id, detail FROM bx)
SELECT i, id FROM bx";

/// Write the PENDING intents of a group in one statement (on a group writer's own connection when
/// `lane` is given); each one's booking id, in order. Any member's conflict fails the whole
/// statement (the caller then writes each alone).
pub async fn intents(
    db: &DatabaseConnection,
    lane: Option<&mut Lane>,
    group: &[Intent],
) -> Result<Vec<i64>, DbErr> {
    let rows: Vec<IntentRow> = group
        .iter()
        .enumerate()
        .map(|(i, it)| IntentRow {
            i,
            user_id: it.user,
            show_id: it.show,
            hold_id: &it.hold_id,
            total: it.total,
            key: &it.key,
            at: it.at,
            detail: it.detail.to_string(),
        })
        .collect();
    let seats: Vec<SeatRow> = group
        .iter()
        .enumerate()
        .flat_map(|(i, it)| {
            it.seats
                .iter()
                .map(move |&(seat, price)| SeatRow { i, seat, price })
        })
        .collect();
    let params = vec![json_rows(&rows)?, json_rows(&seats)?];
    let answered = query(db, lane, INTENTS, params).await?;
    let mut ids = vec![None; group.len()];
    for row in answered {
        let (i, id) = (row.try_get::<i32>("", "i")?, row.try_get::<i64>("", "id")?);
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| ids.get_mut(i)) {
            *slot = Some(id);
        }
    }
    ids.into_iter()
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| DbErr::RecordNotFound("a group's intent wrote no booking".into()))
}

// The bookings to confirm are found by id, one primary-key lookup each, and only then checked to
// be PENDING: the check is written `(…) IS TRUE` so that it cannot be answered from the
// `(status, updated_at)` index. The planner takes `jsonb_to_recordset` for 100 rows and, with
// the plain `b.status = 'PENDING'`, preferred a bitmap scan of that index's PENDING range — which
// holds an entry for every booking confirmed since the table was last vacuumed (the status moved,
// so each confirmation leaves its PENDING entry behind). Under a checkout rush that range grew
// by the thousands of entries a minute: 47,625 entries and 1,206 heap pages read to confirm a
// group of two, 18.8 ms against 0.3 ms (`EXPLAIN ANALYZE`, docs/BENCHMARKS.md).
//
// The ids are also given as an array (`b.id = ANY (ARRAY(…))`), which the planner counts as a few
// key lookups whatever the table's size. Joined to `jsonb_to_recordset` alone — 100 rows to the
// planner, 4 in a real group — the bookings were found by a scan of the whole table into a hash
// join whenever that priced below 100 lookups: on a table without statistics (never analyzed:
// no autovacuum yet, or none at all) from a few thousand rows. A prepared statement keeps its
// plan, so the scan stayed as the table grew: 7.4 ms a confirmation at 40,000 bookings, a third
// of PostgreSQL's CPU per booking (`auto_explain`, docs/BENCHMARKS.md, 2026-12-04).
pub const CONFIRMS: &str = "\
WITH x AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS x(booking bigint, at timestamptz, provider_ref text, event_id text, show_id bigint, payload text, user_id bigint, detail text)),
m AS (
  UPDATE bookings b SET status = 'CONFIRMED', updated_at = x.at
  FROM x WHERE b.id = ANY (ARRAY(SELECT booking FROM x)) AND b.id = x.booking
    AND (b.status = 'PENDING') IS TRUE RETURNING b.id),
mx AS (SELECT x.* FROM m JOIN x ON x.booking = m.id),
s AS (
  UPDATE booking_seats SET active = true WHERE booking_id IN (SELECT id FROM m)),
p AS (
  UPDATE payments p SET status = 'SUCCEEDED', updated_at = mx.at, provider_ref = mx.provider_ref
  FROM mx WHERE p.idempotency_key = 'charge-' || mx.booking::text),
w AS (
  INSERT INTO outbox (event_id, kind, show_id, booking_id, payload, created_at, fanned_out)
  SELECT event_id, 'booking.confirmed', show_id, booking, payload, at, false FROM mx),
a AS (
  INSERT INTO audit_log (at, actor_kind, actor_id, kind, show_id, booking_id, user_id, detail)
  SELECT at, 'SYSTEM', NULL, 'booking.confirmed', show_id, booking, user_id, detail FROM mx)
SELECT booking FROM mx";

/// Confirm a group in one statement (its bookings distinct, in booking order so that groups
/// take row locks in one order; on a group writer's own connection when `lane` is given); for
/// each, whether this statement moved it.
pub async fn confirms(
    db: &DatabaseConnection,
    lane: Option<&mut Lane>,
    group: &[Confirmation],
) -> Result<Vec<bool>, DbErr> {
    let mut rows: Vec<ConfirmRow> = group
        .iter()
        .map(|c| ConfirmRow {
            booking: c.booking,
            at: c.at,
            provider_ref: &c.provider_ref,
            event_id: crate::webhooks::new_event_id(),
            show_id: c.show,
            payload: c.payload.to_string(),
            user_id: c.user,
            detail: c.detail.to_string(),
        })
        .collect();
    rows.sort_by_key(|r| r.booking);
    let answered = query(db, lane, CONFIRMS, vec![json_rows(&rows)?]).await?;
    let mut moved = std::collections::HashSet::with_capacity(answered.len());
    for row in answered {
        moved.insert(row.try_get::<i64>("", "booking")?);
    }
    Ok(group.iter().map(|c| moved.contains(&c.booking)).collect())
}
