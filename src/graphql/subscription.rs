//! `seatUpdates(showId)`: every change of a show's seat map, in version order.
use std::sync::Arc;

use async_graphql::{Context, Result, SimpleObject, Subscription, ID};
use futures_util::Stream;
use futures_util::StreamExt as _;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::types::{to_int, viewer, Seat};
use crate::catalogue::{seatmap, PricedShow};
use crate::error::AppError;
use crate::holds::SeatEvent;
use crate::ids::parse_id;
use crate::live::Feed;
use crate::state::AppState;

/// One change of a show's seat map. `version` is the previous one + 1: a client that sees a gap
/// missed an event and re-reads `show { version seats }`.
#[derive(SimpleObject)]
pub struct SeatUpdate {
    pub show_id: ID,
    pub version: i32,
    /// The seats that changed, with their new status.
    pub seats: Vec<Seat>,
    pub available_seats: i32,
    pub held_seats: i32,
    pub booked_seats: i32,
}

fn update(e: &SeatEvent, show: &PricedShow, me: Option<i64>) -> SeatUpdate {
    let seats = e
        .changes
        .iter()
        .filter_map(|c| {
            seatmap::changed_seat(
                &show.layout,
                &show.prices,
                c.seat_id,
                c.status,
                c.holder,
                me,
            )
        })
        .map(Seat)
        .collect();
    let total = show.layout.len() as i64;
    SeatUpdate {
        show_id: ID(e.show_id.to_string()),
        version: to_int(e.version),
        seats,
        available_seats: to_int(total - e.held - e.booked),
        held_seats: to_int(e.held),
        booked_seats: to_int(e.booked),
    }
}

#[derive(Default)]
pub struct LiveSubscription;

#[Subscription]
impl LiveSubscription {
    /// Seat status changes of one show. A subscriber too slow to keep up gets a
    /// `SERVICE_UNAVAILABLE` error and its stream ends: re-read the map and subscribe again.
    async fn seat_updates(
        &self,
        ctx: &Context<'_>,
        show_id: ID,
    ) -> Result<impl Stream<Item = Result<SeatUpdate>>> {
        let id = parse_id(&show_id, "show")?;
        let state = ctx.data_unchecked::<AppState>();
        let show = Arc::new(state.catalogue.priced_show(id).await?);
        let me = viewer(ctx).user_id();
        let sub = state.live.subscribe(id);
        let shutdown = state.shutdown.clone();
        // Items until the first error, which ends the stream at once (the client re-reads and
        // subscribes again), or until the server shuts down.
        let init = (sub, Some(show), shutdown);
        Ok(futures_util::stream::unfold(
            init,
            move |(mut sub, show, shutdown)| async move {
                let show = show?;
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    next = sub.next() => next?,
                };
                let item = match next {
                    Ok(Feed::Event(e)) => Ok(update(&e, &show, me)),
                    Ok(Feed::Interrupted) => {
                        metrics::counter!("live_subscribers_interrupted_total").increment(1);
                        Err(AppError::Unavailable(
                            "the live seat feed (interrupted: re-read the seat map and subscribe again)",
                        ))
                    }
                    Err(BroadcastStreamRecvError::Lagged(missed)) => {
                        metrics::counter!("live_subscribers_dropped_total").increment(1);
                        tracing::info!(show = id, missed, "slow subscriber dropped");
                        Err(AppError::Unavailable(
                            "this live seat map (you fell behind)",
                        ))
                    }
                };
                let show = item.is_ok().then_some(show);
                Some((item.map_err(Into::into), (sub, show, shutdown)))
            },
        ))
    }
}
