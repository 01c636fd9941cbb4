//! The benchmark's baseline: the same hold semantics implemented the common textbook way, with
//! PostgreSQL row locks (`SELECT … FOR UPDATE` on per-show seat rows) — selected with
//! `HOLD_STORE=pg-rowlock`. It exists so that `boxoffice bench` can compare the Redis design with
//! what most booking systems do; it publishes no live events and is not meant for production.
//!
//! One row per (show, seat) in `baseline_seat_locks`, created for a whole show the first time the
//! show is touched (the textbook creates them with the show). A hold locks its seat rows in seat
//! order (so two holds never wait on each other in a cycle), checks them, and writes the hold.
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};

use super::store::*;
use crate::catalogue::seatmap::{Holder, ShowState};

pub struct RowLockStore {
    db: DatabaseConnection,
    ready: Mutex<HashSet<i64>>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS baseline_seat_locks (
    show_id BIGINT NOT NULL,
    seat_id BIGINT NOT NULL,
    hold_id TEXT,
    user_id BIGINT,
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ,
    booked BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (show_id, seat_id))";

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Seat ids as a SQL list. They are integers we parsed, so inlining them is safe.
fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

impl RowLockStore {
    pub async fn connect(db: DatabaseConnection) -> anyhow::Result<Self> {
        if db.get_database_backend() != DbBackend::Postgres {
            anyhow::bail!("HOLD_STORE=pg-rowlock needs a postgres:// DATABASE_URL");
        }
        db.execute_unprepared(SCHEMA).await?;
        Ok(RowLockStore {
            db,
            ready: Mutex::new(HashSet::new()),
        })
    }

    /// Create the show's seat rows (once), marking the seats the database has booked.
    async fn ensure_rows(&self, show_id: i64) -> Result<(), StoreError> {
        if self
            .ready
            .lock()
            .map(|r| r.contains(&show_id))
            .unwrap_or(false)
        {
            return Ok(());
        }
        self.db
            .execute_raw(stmt(
                "INSERT INTO baseline_seat_locks (show_id, seat_id, booked)
                 SELECT sh.id, se.id, EXISTS (SELECT 1 FROM booking_seats bs
                        WHERE bs.show_id = sh.id AND bs.seat_id = se.id AND bs.active)
                 FROM shows sh JOIN seats se ON se.screen_id = sh.screen_id
                 WHERE sh.id = $1 ON CONFLICT DO NOTHING",
                vec![show_id.into()],
            ))
            .await?;
        if let Ok(mut r) = self.ready.lock() {
            r.insert(show_id);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl HoldStore for RowLockStore {
    async fn hold(&self, r: &HoldRequest<'_>) -> Result<HoldOutcome, StoreError> {
        let HoldRequest {
            show_id,
            hold_id,
            user_id,
            seats,
            ttl,
            max_holds,
        } = *r;
        self.ensure_rows(show_id).await?;
        let mut sorted = seats.to_vec();
        sorted.sort_unstable();
        let txn = self.db.begin().await?;
        let rows = txn
            .query_all_raw(stmt(
                &format!(
                    "SELECT seat_id, booked, (hold_id IS NOT NULL AND expires_at > now()) AS held
                     FROM baseline_seat_locks WHERE show_id = $1 AND seat_id IN ({})
                     ORDER BY seat_id FOR UPDATE",
                    id_list(&sorted)
                ),
                vec![show_id.into()],
            ))
            .await?;
        let mut taken = Vec::new();
        for r in &rows {
            if r.try_get::<bool>("", "booked")? || r.try_get::<bool>("", "held")? {
                taken.push(r.try_get::<i64>("", "seat_id")?);
            }
        }
        if !taken.is_empty() {
            txn.rollback().await?;
            return Ok(HoldOutcome::Unavailable(taken));
        }
        let live = txn
            .query_one_raw(stmt(
                "SELECT COUNT(DISTINCT hold_id) AS n FROM baseline_seat_locks
                 WHERE show_id = $1 AND user_id = $2 AND expires_at > now()",
                vec![show_id.into(), user_id.into()],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if live >= max_holds as i64 {
            txn.rollback().await?;
            return Ok(HoldOutcome::TooManyHolds);
        }
        let expires = txn
            .query_one_raw(stmt(
                &format!(
                    "UPDATE baseline_seat_locks SET hold_id = $2, user_id = $3,
                       expires_at = now() + make_interval(secs => $4), created_at = now()
                     WHERE show_id = $1 AND seat_id IN ({})
                     RETURNING (extract(epoch FROM expires_at) * 1000)::BIGINT AS exp",
                    id_list(&sorted)
                ),
                vec![
                    show_id.into(),
                    hold_id.into(),
                    user_id.into(),
                    ttl.as_secs_f64().into(),
                ],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "exp"))
            .transpose()?
            .unwrap_or(0);
        txn.commit().await?;
        // No version counter or events: the textbook design has none (and the benchmark
        // measures holds, not fan-out).
        Ok(HoldOutcome::Granted {
            version: 0,
            expires_ms: expires,
        })
    }

    async fn release(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
    ) -> Result<ReleaseOutcome, StoreError> {
        let owner = self.get(show_id, hold_id).await?.map(|h| h.user_id);
        match owner {
            None => Ok(ReleaseOutcome::NotLive),
            Some(u) if u != user_id => Ok(ReleaseOutcome::NotOwner),
            Some(_) => {
                let r = self
                    .db
                    .execute_raw(stmt(
                        "UPDATE baseline_seat_locks SET hold_id = NULL, user_id = NULL, expires_at = NULL
                         WHERE show_id = $1 AND hold_id = $2 AND expires_at > now()",
                        vec![show_id.into(), hold_id.into()],
                    ))
                    .await?;
                Ok(if r.rows_affected() > 0 {
                    ReleaseOutcome::Released { version: 0 }
                } else {
                    ReleaseOutcome::NotLive
                })
            }
        }
    }

    async fn get(&self, show_id: i64, hold_id: &str) -> Result<Option<HoldRecord>, StoreError> {
        let rows = self
            .db
            .query_all_raw(stmt(
                "SELECT seat_id, user_id, (extract(epoch FROM expires_at) * 1000)::BIGINT AS exp,
                        (extract(epoch FROM created_at) * 1000)::BIGINT AS created
                 FROM baseline_seat_locks
                 WHERE show_id = $1 AND hold_id = $2 AND expires_at > now() ORDER BY seat_id",
                vec![show_id.into(), hold_id.into()],
            ))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(HoldRecord {
            user_id: first.try_get("", "user_id")?,
            expires_ms: first.try_get("", "exp")?,
            created_ms: first.try_get("", "created")?,
            seat_ids: rows
                .iter()
                .map(|r| r.try_get::<i64>("", "seat_id"))
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn extend(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
        window: Duration,
        cap: Duration,
    ) -> Result<ExtendOutcome, StoreError> {
        let hold = match self.get(show_id, hold_id).await? {
            None => return Ok(ExtendOutcome::NotLive),
            Some(h) if h.user_id != user_id => return Ok(ExtendOutcome::NotOwner),
            Some(h) => h,
        };
        let exp = self
            .db
            .query_one_raw(stmt(
                "UPDATE baseline_seat_locks SET expires_at = GREATEST(expires_at,
                   LEAST(now() + make_interval(secs => $3), created_at + make_interval(secs => $4)))
                 WHERE show_id = $1 AND hold_id = $2 AND expires_at > now()
                 RETURNING (extract(epoch FROM expires_at) * 1000)::BIGINT AS exp",
                vec![
                    show_id.into(),
                    hold_id.into(),
                    window.as_secs_f64().into(),
                    cap.as_secs_f64().into(),
                ],
            ))
            .await?;
        Ok(match exp {
            Some(r) => ExtendOutcome::Extended {
                hold: HoldRecord {
                    expires_ms: r.try_get("", "exp")?,
                    ..hold
                },
            },
            None => ExtendOutcome::NotLive,
        })
    }

    async fn book(
        &self,
        show_id: i64,
        hold_id: Option<&str>,
        seats: &[i64],
    ) -> Result<i64, StoreError> {
        self.ensure_rows(show_id).await?;
        if !seats.is_empty() {
            self.db
                .execute_raw(stmt(
                    &format!(
                        "UPDATE baseline_seat_locks SET booked = TRUE, hold_id = NULL, user_id = NULL, expires_at = NULL
                         WHERE show_id = $1 AND seat_id IN ({})",
                        id_list(seats)
                    ),
                    vec![show_id.into()],
                ))
                .await?;
        }
        if let Some(h) = hold_id {
            self.db
                .execute_raw(stmt(
                    "UPDATE baseline_seat_locks SET hold_id = NULL, user_id = NULL, expires_at = NULL
                     WHERE show_id = $1 AND hold_id = $2",
                    vec![show_id.into(), h.into()],
                ))
                .await?;
        }
        Ok(0)
    }

    async fn unbook(&self, show_id: i64, seats: &[i64]) -> Result<i64, StoreError> {
        if !seats.is_empty() {
            self.db
                .execute_raw(stmt(
                    &format!(
                        "UPDATE baseline_seat_locks SET booked = FALSE WHERE show_id = $1 AND seat_id IN ({})",
                        id_list(seats)
                    ),
                    vec![show_id.into()],
                ))
                .await?;
        }
        Ok(0)
    }

    async fn snapshot(&self, show_ids: &[i64]) -> Result<HashMap<i64, ShowState>, StoreError> {
        let mut out: HashMap<i64, ShowState> = HashMap::new();
        for id in show_ids {
            self.ensure_rows(*id).await?;
            out.insert(*id, ShowState::default());
        }
        if show_ids.is_empty() {
            return Ok(out);
        }
        let rows = self
            .db
            .query_all_raw(stmt(
                &format!(
                    "SELECT show_id, seat_id, booked, hold_id, user_id FROM baseline_seat_locks
                     WHERE show_id IN ({}) AND (booked OR expires_at > now())",
                    id_list(show_ids)
                ),
                vec![],
            ))
            .await?;
        for r in rows {
            let show: i64 = r.try_get("", "show_id")?;
            let seat: i64 = r.try_get("", "seat_id")?;
            let state = out.entry(show).or_default();
            if r.try_get::<bool>("", "booked")? {
                state.booked.insert(seat);
            } else {
                state.held.insert(
                    seat,
                    Holder {
                        hold_id: r.try_get("", "hold_id")?,
                        user_id: r.try_get("", "user_id")?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Expiry is a comparison with `now()` in every query; nothing to announce without events.
    async fn sweep(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn ping(&self) -> bool {
        self.db.execute_unprepared("SELECT 1").await.is_ok()
    }

    fn kind(&self) -> &'static str {
        "pg-rowlock"
    }
}
