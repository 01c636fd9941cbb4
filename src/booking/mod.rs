//! Bookings: checkout (hold → payment → durable booking), cancellation, the reconciler that
//! settles checkouts a crash interrupted, and reads.
mod cancel;
mod checkout;
mod converge;
pub use checkout::{charge_key, refund_key};
pub use converge::Drift;
pub mod reconciler;
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
}

impl Bookings {
    pub fn new(
        db: DatabaseConnection,
        catalogue: Catalogue,
        holds: Holds,
        gateway: Arc<dyn PaymentGateway>,
        payment_timeout: Duration,
    ) -> Self {
        Bookings {
            db,
            catalogue,
            holds,
            gateway,
            payment_timeout,
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
