//! Bookings: checkout (hold → payment → durable booking), cancellation, the reconciler that
//! settles checkouts a crash interrupted, and reads.
mod cancel;
mod checkout;
mod converge;
pub mod one_statement;
pub use checkout::{charge_key, refund_key};
pub use converge::Drift;
pub mod reconciler;
mod record;
pub mod report;
mod settle;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use entity::{booking, booking_seat};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::auth::Viewer;
use crate::catalogue::Catalogue;
use crate::error::{AppError, AppResult};
use crate::holds::Holds;
use crate::payment::PaymentGateway;

pub const MAX_LISTED: u64 = 200;

/// Run a step that moves money to its end even if the request stops waiting for it (the client
/// disconnects, or the request's deadline answers `SERVICE_UNAVAILABLE` first): a charge or
/// refund is never abandoned between the gateway and the database. The step is itself bounded
/// by the dependency and payment timeouts, and its effect is found again by the idempotency key
/// (checkout) or by cancelling again (cancel).
async fn detached<T: Send + 'static>(
    step: impl std::future::Future<Output = AppResult<T>> + Send + 'static,
) -> AppResult<T> {
    tokio::spawn(step)
        .await
        .map_err(|e| AppError::internal(anyhow::anyhow!("booking step panicked: {e}")))?
}

pub use entity::booking::BookingStatus;
pub use entity::payment::{PaymentKind, PaymentStatus};

#[derive(Clone)]
pub struct Bookings {
    db: DatabaseConnection,
    catalogue: Catalogue,
    holds: Holds,
    gateway: Arc<dyn PaymentGateway>,
    /// Longest we wait for the gateway in a request; a checkout older than this (plus a margin)
    /// and still pending was interrupted, and the reconciler settles it.
    payment_timeout: Duration,
    /// The fair queue in front of the database for checkouts and cancellations.
    admission: Arc<Admission>,
    /// Group commit of checkout's two durable steps (PostgreSQL; `None` on SQLite).
    writes: Option<Arc<Writes>>,
}

/// How checkout's durable steps are grouped (`GROUP_COMMIT_*` settings).
#[derive(Debug, Clone, Copy)]
pub struct GroupRules {
    /// Groups of one step in flight at once (each on one connection).
    pub writers: usize,
    /// Most checkouts in one group; 1 writes each alone.
    pub max: usize,
}

/// The group writers of the PENDING intent and the confirmation (PostgreSQL).
pub struct Writes {
    intents: crate::group_commit::Group<one_statement::Intent, i64>,
    confirms: crate::group_commit::Group<one_statement::Confirmation, bool>,
}

impl Writes {
    /// Write an intent with whatever others are waiting; the new booking's id.
    pub async fn intent(&self, i: one_statement::Intent) -> Result<i64, sea_orm::DbErr> {
        self.intents.write(i).await
    }

    /// Confirm with whatever others are waiting; whether this call moved the booking.
    pub async fn confirm(&self, c: one_statement::Confirmation) -> Result<bool, sea_orm::DbErr> {
        self.confirms.write(c).await
    }

    pub fn start(db: &DatabaseConnection, rules: GroupRules) -> Self {
        let intents = crate::group_commit::Step {
            name: "intent",
            many: |db, lane, g| Box::pin(one_statement::intents(db, Some(lane), g)),
            one: |db, i| Box::pin(one_statement::intent(db, i)),
            identity: |i: &one_statement::Intent| i.hold_id.clone(),
        };
        let confirms = crate::group_commit::Step {
            name: "confirm",
            many: |db, lane, g| Box::pin(one_statement::confirms(db, Some(lane), g)),
            one: |db, c| Box::pin(one_statement::confirm(db, c)),
            identity: |c: &one_statement::Confirmation| c.booking,
        };
        Writes {
            intents: crate::group_commit::Group::start(
                db.clone(),
                intents,
                rules.writers,
                rules.max,
            ),
            confirms: crate::group_commit::Group::start(
                db.clone(),
                confirms,
                rules.writers,
                rules.max,
            ),
        }
    }
}

/// How checkouts and cancellations are admitted (`CHECKOUT_*` settings).
#[derive(Debug, Clone, Copy)]
pub struct AdmissionRules {
    /// How many run at once.
    pub concurrency: u32,
    /// How many may wait for their turn.
    pub queue_limit: u32,
    /// How long one may wait.
    pub queue_timeout: Duration,
}

/// Backpressure: at most `concurrency` money steps use the database at once; the others wait in
/// a fair (first come, first served) queue of bounded length for a bounded time; past either
/// bound they are refused at once with `SERVICE_UNAVAILABLE` and a retry hint — before any money
/// moves, instead of timing out deep inside a payment on an exhausted connection pool.
pub struct Admission {
    permits: Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicU32,
    rules: AdmissionRules,
}

impl Admission {
    pub fn new(rules: AdmissionRules) -> Self {
        Admission {
            permits: Arc::new(tokio::sync::Semaphore::new(rules.concurrency as usize)),
            waiting: std::sync::atomic::AtomicU32::new(0),
            rules,
        }
    }

    /// A turn, or a refusal. The permit is held until the step ends (it moves into the step).
    pub async fn admit(&self) -> AppResult<tokio::sync::OwnedSemaphorePermit> {
        use std::sync::atomic::Ordering;
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _leave = Leave(&self.waiting);
        if waiting >= self.rules.queue_limit {
            metrics::counter!("checkout_admission_total", "outcome" => "queue_full").increment(1);
            return Err(self.busy());
        }
        metrics::gauge!("checkout_queue_length").set(f64::from(waiting + 1));
        let started = std::time::Instant::now();
        let turn = tokio::time::timeout(
            self.rules.queue_timeout,
            self.permits.clone().acquire_owned(),
        )
        .await;
        metrics::histogram!("checkout_queue_wait_seconds").record(started.elapsed().as_secs_f64());
        match turn {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(AppError::internal(anyhow::anyhow!("checkout queue closed"))),
            Err(_) => {
                metrics::counter!("checkout_admission_total", "outcome" => "timed_out")
                    .increment(1);
                Err(self.busy())
            }
        }
    }

    fn busy(&self) -> AppError {
        AppError::Busy {
            retry_after: self.rules.queue_timeout,
        }
    }
}

/// Leaves the queue's count when the wait ends, however it ends (a client gone mid-wait too).
struct Leave<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Bookings {
    pub fn new(
        db: DatabaseConnection,
        catalogue: Catalogue,
        holds: Holds,
        gateway: Arc<dyn PaymentGateway>,
        payment_timeout: Duration,
        admission: AdmissionRules,
        group: GroupRules,
    ) -> Self {
        let writes = (db.get_database_backend() == sea_orm::DbBackend::Postgres)
            .then(|| Arc::new(Writes::start(&db, group)));
        Bookings {
            writes,
            db,
            catalogue,
            holds,
            gateway,
            payment_timeout,
            admission: Arc::new(Admission::new(admission)),
        }
    }

    /// The viewer's bookings, newest first (bounded).
    pub async fn mine(&self, viewer: &Viewer) -> AppResult<Vec<booking::Model>> {
        let user = viewer.require_user()?;
        Ok(booking::Entity::find()
            .filter(booking::Column::UserId.eq(user))
            .order_by_desc(booking::Column::CreatedAt)
            .order_by_desc(booking::Column::Id)
            .limit(MAX_LISTED)
            .all(&self.db)
            .await?)
    }

    /// One booking, if the viewer may see it: its owner, or an admin. Someone else's booking is
    /// `FORBIDDEN`; an unknown one is `None`.
    pub async fn get(&self, viewer: &Viewer, id: i64) -> AppResult<Option<booking::Model>> {
        let user = viewer.require_user()?;
        match booking::Entity::find_by_id(id).one(&self.db).await? {
            Some(b) if b.user_id == user || viewer.is_admin() => Ok(Some(b)),
            Some(_) => Err(AppError::Forbidden(
                "this booking belongs to someone else".into(),
            )),
            None => Ok(None),
        }
    }

    /// Seats (and the price paid for each) of these bookings, in one query.
    pub async fn seats_of(&self, booking_ids: &[i64]) -> AppResult<HashMap<i64, Vec<(i64, i64)>>> {
        let rows = booking_seat::Entity::find()
            .filter(booking_seat::Column::BookingId.is_in(booking_ids.to_vec()))
            .order_by_asc(booking_seat::Column::SeatId)
            .all(&self.db)
            .await?;
        let mut out: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for r in rows {
            out.entry(r.booking_id)
                .or_default()
                .push((r.seat_id, r.price_cents));
        }
        Ok(out)
    }
}
