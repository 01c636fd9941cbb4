//! The two durable steps of a checkout as one statement each on PostgreSQL (data-modifying CTEs):
//! the PENDING intent (booking, seats, charge attempt, audit entry) and the confirmation (booking,
//! seats live, charge succeeded, outbox event, audit entry). A single statement is its own
//! transaction: one round trip and one commit instead of a BEGIN, four or five statements and a
//! COMMIT — with the same all-or-nothing effect, the same unique indexes refusing the same
//! conflicts, and the same conditional move out of PENDING. SQLite keeps the multi-statement
//! transaction (it is in-process; a round trip costs nothing there).
use chrono::{DateTime, Utc};
use entity::booking;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, Value,
};

use super::BookingStatus;

/// What the intent writes.
pub struct Intent<'a> {
    pub user: i64,
    pub show: i64,
    pub hold_id: &'a str,
    pub key: &'a str,
    pub total: i64,
    pub seats: &'a [(i64, i64)],
    pub at: DateTime<Utc>,
    /// The audit entry's detail.
    pub detail: serde_json::Value,
}

impl Intent<'_> {
    /// The PENDING booking the intent writes, as stored (`at` in microseconds), once it has `id`.
    pub fn booking(&self, id: i64) -> booking::Model {
        booking::Model {
            id,
            user_id: self.user,
            show_id: self.show,
            hold_id: Some(self.hold_id.to_string()),
            status: BookingStatus::Pending,
            total_cents: self.total,
            idempotency_key: self.key.to_string(),
            failure_reason: None,
            created_at: self.at,
            updated_at: self.at,
        }
    }
}

/// Run one statement (`what`, for the error) that answers one row.
async fn one_row(
    db: &DatabaseConnection,
    what: &str,
    sql: &str,
    values: Vec<Value>,
) -> Result<QueryResult, DbErr> {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?
    .ok_or_else(|| DbErr::RecordNotFound(format!("no answer from the {what}")))
}

/// Seat ids and prices as PostgreSQL array literals (`{1,2,3}`): integers only, so no quoting.
fn array_literals(seats: &[(i64, i64)]) -> (String, String) {
    let join = |f: fn(&(i64, i64)) -> i64| {
        let items: Vec<String> = seats.iter().map(|s| f(s).to_string()).collect();
        format!("{{{}}}", items.join(","))
    };
    (join(|s| s.0), join(|s| s.1))
}

const INTENT: &str = "\
WITH b AS (
  INSERT INTO bookings (user_id, show_id, hold_id, status, total_cents, idempotency_key, created_at, updated_at)
  VALUES ($1, $2, $3, 'PENDING', $4, $5, $6, $6) RETURNING id),
s AS (
  INSERT INTO booking_seats (booking_id, seat_id, show_id, price_cents, active)
  SELECT b.id, x.seat, $2, x.price, false
  FROM b, unnest($7::bigint[], $8::bigint[]) AS x(seat, price)),
p AS (
  INSERT INTO payments (booking_id, kind, amount_cents, idempotency_key, status, created_at, updated_at)
  SELECT id, 'CHARGE', $4, 'charge-' || id, 'PENDING', $6, $6 FROM b),
a AS (
  INSERT INTO audit_log (at, actor_kind, actor_id, kind, show_id, booking_id, user_id, detail)
  SELECT $6, 'USER', $1, 'booking.created', $2, id, $1, $9 FROM b)
SELECT id FROM b";

/// Write the PENDING intent in one statement; the new booking's id. A unique violation (the
/// same key, or the hold already being checked out) comes back as the error it is.
pub async fn intent(db: &DatabaseConnection, i: &Intent<'_>) -> Result<i64, DbErr> {
    let (seats, prices) = array_literals(i.seats);
    let values: Vec<Value> = vec![
        i.user.into(),
        i.show.into(),
        i.hold_id.into(),
        i.total.into(),
        i.key.into(),
        i.at.into(),
        seats.into(),
        prices.into(),
        i.detail.to_string().into(),
    ];
    one_row(db, "intent", INTENT, values)
        .await?
        .try_get::<i64>("", "id")
}

/// What the confirmation writes beside the move itself.
pub struct Confirmation<'a> {
    pub booking: i64,
    pub show: i64,
    pub user: i64,
    pub provider_ref: &'a str,
    pub at: DateTime<Utc>,
    /// The outbox event's payload and the audit entry's detail.
    pub payload: serde_json::Value,
    pub detail: serde_json::Value,
}

const CONFIRM: &str = "\
WITH m AS (
  UPDATE bookings SET status = 'CONFIRMED', updated_at = $2
  WHERE id = $1 AND status = 'PENDING' RETURNING id),
s AS (
  UPDATE booking_seats SET active = true WHERE booking_id IN (SELECT id FROM m)),
p AS (
  UPDATE payments SET status = 'SUCCEEDED', updated_at = $2, provider_ref = $3
  WHERE idempotency_key = 'charge-' || $1::text AND EXISTS (SELECT 1 FROM m)),
w AS (
  INSERT INTO outbox (event_id, kind, show_id, booking_id, payload, created_at, fanned_out)
  SELECT $4, 'booking.confirmed', $5, id, $6, $2, false FROM m),
a AS (
  INSERT INTO audit_log (at, actor_kind, actor_id, kind, show_id, booking_id, user_id, detail)
  SELECT $2, 'SYSTEM', NULL, 'booking.confirmed', $5, id, $7, $8 FROM m)
SELECT count(*) AS moved FROM m";

/// PENDING → CONFIRMED with its seats live, in one statement: whether this call moved it
/// (`false`: settled by someone else first). A seat another live booking holds makes the whole
/// statement fail on the unique index, and nothing of it stays.
pub async fn confirm(db: &DatabaseConnection, c: &Confirmation<'_>) -> Result<bool, DbErr> {
    let values: Vec<Value> = vec![
        c.booking.into(),
        c.at.into(),
        c.provider_ref.into(),
        crate::webhooks::new_event_id().into(),
        c.show.into(),
        c.payload.to_string().into(),
        c.user.into(),
        c.detail.to_string().into(),
    ];
    Ok(one_row(db, "confirmation", CONFIRM, values)
        .await?
        .try_get::<i64>("", "moved")?
        > 0)
}

#[cfg(test)]
mod tests {
    use super::array_literals;

    #[test]
    fn seats_and_prices_become_array_literals() {
        assert_eq!(
            array_literals(&[(7, 1200), (8, 900)]),
            ("{7,8}".to_string(), "{1200,900}".to_string())
        );
        assert_eq!(array_literals(&[]), ("{}".to_string(), "{}".to_string()));
    }
}
