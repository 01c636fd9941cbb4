//! The waiting room: `setOnSale` (admin), `joinQueue`, `queueTicket`, `queueUpdates`.
use async_graphql::{Context, Enum, Object, Result, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt as _};

use super::types::{viewer, Show};
use crate::catalogue::sales::NewSale;
use crate::error::AppError;
use crate::holds::PlaceState;
use crate::ids::parse_id;
use crate::queue::Ticket;
use crate::state::AppState;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum QueueState {
    /// In line (before the opening, in a line whose order is drawn at the opening).
    Waiting,
    /// Free to hold seats and pay until `admittedUntil`.
    Admitted,
    /// The session lapsed or ended with a checkout: join again to shop again (at the back).
    Expired,
}

/// The signed-in user's place in a show's waiting room.
#[derive(SimpleObject)]
pub struct QueueTicket {
    pub show_id: ID,
    pub state: QueueState,
    /// 1-based; null before the opening (the order is drawn then) and once admitted.
    pub position: Option<i32>,
    /// People ahead; null when `position` is.
    pub ahead: Option<i32>,
    /// The place's number in the line since the opening (position + people admitted so far):
    /// it stays the same while the user waits. Null when `position` is.
    pub number: Option<i32>,
    /// From the admission rate (and the time left until the opening).
    pub estimated_wait_seconds: Option<i32>,
    /// End of the shopping session (admitted) or when it ended (expired).
    pub admitted_until: Option<DateTime<Utc>>,
}

fn int(v: u64) -> i32 {
    v.min(i32::MAX as u64) as i32
}

impl From<Ticket> for QueueTicket {
    fn from(t: Ticket) -> Self {
        QueueTicket {
            show_id: ID(t.show_id.to_string()),
            state: match t.state {
                PlaceState::Admitted => QueueState::Admitted,
                PlaceState::Expired => QueueState::Expired,
                PlaceState::Waiting | PlaceState::None => QueueState::Waiting,
            },
            position: t.position.map(int),
            ahead: t.ahead.map(int),
            number: t.number.map(int),
            estimated_wait_seconds: t.estimated_wait_seconds.map(int),
            admitted_until: t.admitted_until,
        }
    }
}

#[derive(Default)]
pub struct QueueQuery;

#[Object]
impl QueueQuery {
    /// The signed-in user's place in the show's waiting room; null when none.
    async fn queue_ticket(&self, ctx: &Context<'_>, show_id: ID) -> Result<Option<QueueTicket>> {
        let id = parse_id(&show_id, "show")?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state
            .queue
            .place(viewer(ctx), id)
            .await?
            .map(QueueTicket::from))
    }
}

#[derive(Default)]
pub struct QueueMutation;

#[Object]
impl QueueMutation {
    /// Admin only. Sales of the show open at `opensAt`; with `queueEnabled` everyone goes
    /// through the waiting room: `admitPerMinute` visitors are admitted per minute (one every
    /// 60/`admitPerMinute` s, across all instances), each for `sessionMinutes` (or
    /// `sessionSeconds`, which wins when given), and at most `maxShoppers` at once if set.
    #[allow(clippy::too_many_arguments)]
    async fn set_on_sale(
        &self,
        ctx: &Context<'_>,
        show_id: ID,
        opens_at: DateTime<Utc>,
        admit_per_minute: i32,
        session_minutes: i32,
        queue_enabled: bool,
        session_seconds: Option<i32>,
        max_shoppers: Option<i32>,
    ) -> Result<Show> {
        viewer(ctx).require_admin()?;
        let id = parse_id(&show_id, "show")?;
        let state = ctx.data_unchecked::<AppState>();
        let session_seconds = match session_seconds {
            Some(s) => s,
            None => session_minutes
                .checked_mul(60)
                .ok_or_else(|| AppError::bad_input("sessionMinutes is too large"))?,
        };
        let sale = NewSale {
            opens_at,
            admit_per_minute,
            session_seconds,
            queue_enabled,
            max_shoppers,
        };
        state.queue.set_on_sale(id, sale).await?;
        let show = state
            .catalogue
            .show(id)
            .await?
            .ok_or(AppError::NotFound("show"))?;
        Ok(Show::new(show))
    }

    /// Take a place in the show's waiting room: one per account; joining again returns it.
    async fn join_queue(&self, ctx: &Context<'_>, show_id: ID) -> Result<QueueTicket> {
        let id = parse_id(&show_id, "show")?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state.queue.join(viewer(ctx), id).await?.into())
    }
}

#[derive(Default)]
pub struct QueueSubscription;

#[Subscription]
impl QueueSubscription {
    /// The signed-in user's place as it moves (position, wait, admission). Ends with an error
    /// when the user has no place.
    async fn queue_updates(
        &self,
        ctx: &Context<'_>,
        show_id: ID,
    ) -> Result<impl Stream<Item = Result<QueueTicket>>> {
        let id = parse_id(&show_id, "show")?;
        let v = viewer(ctx).clone();
        v.require_user()?;
        let state = ctx.data_unchecked::<AppState>();
        let shutdown = state.shutdown.clone();
        let updates = state
            .queue
            .updates(v, id)
            .map(|r| r.map(QueueTicket::from).map_err(Into::into))
            .take_until(async move { shutdown.cancelled().await });
        Ok(updates)
    }
}
