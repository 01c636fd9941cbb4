//! `seatUpdates(showId)`: every change of a show's seat map, in version order.
use std::sync::Arc;

use async_graphql::{Context, Result, SimpleObject, Subscription, ID};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::types::{to_int, viewer, Seat};
use crate::app::AppState;
use crate::catalogue::layout::{price_of, Layout, Prices};
use crate::catalogue::seatmap::{SeatStatus, SeatView};
use crate::error::AppError;
use crate::holds::SeatEvent;
use crate::ids::parse_id;
use crate::live::Feed;

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

fn update(e: &SeatEvent, layout: &Layout, prices: &Prices, me: Option<i64>) -> SeatUpdate {
    let seats = e
        .changes
        .iter()
        .filter_map(|c| {
            let info = layout.seat(c.seat_id)?;
            Some(Seat(SeatView {
                info: info.clone(),
                price_cents: price_of(prices, &info.category),
                status: c.status,
                held_by_me: c.status == SeatStatus::Held && c.holder.is_some() && c.holder == me,
            }))
        })
        .collect();
    let total = layout.len() as i64;
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
        let show = state
            .catalogue
            .show(id)
            .await?
            .ok_or(AppError::NotFound("show"))?;
        let cat = &state.catalogue;
        let layout = cat
            .layouts()
            .layout(cat.db(), show.screen_id)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("show {id} has no layout")))?;
        let prices = Arc::new(
            cat.layouts()
                .prices(cat.db(), &[id])
                .await?
                .remove(&id)
                .map(|p| (*p).clone())
                .unwrap_or_default(),
        );
        let me = viewer(ctx).user_id();
        let sub = state.live.subscribe(id);
        let shutdown = state.shutdown.clone();
        let init = (sub, layout, prices, shutdown, false);
        Ok(futures_util::stream::unfold(
            init,
            move |(mut sub, layout, prices, shutdown, done)| async move {
                if done {
                    return None;
                }
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    e = sub.rx.recv() => e,
                };
                match next {
                    Ok(Feed::Event(e)) => {
                        let u = update(&e, &layout, &prices, me);
                        Some((Ok(u), (sub, layout, prices, shutdown, false)))
                    }
                    Ok(Feed::Interrupted) => {
                        metrics::counter!("live_subscribers_interrupted_total").increment(1);
                        let err: async_graphql::Error = AppError::Unavailable(
                            "the live seat feed (interrupted: re-read the seat map and subscribe again)",
                        )
                        .into();
                        Some((Err(err), (sub, layout, prices, shutdown, true)))
                    }
                    Err(RecvError::Lagged(missed)) => {
                        metrics::counter!("live_subscribers_dropped_total").increment(1);
                        let err: async_graphql::Error =
                            AppError::Unavailable("this live seat map (you fell behind)").into();
                        tracing::info!(show = id, missed, "slow subscriber dropped");
                        Some((Err(err), (sub, layout, prices, shutdown, true)))
                    }
                    Err(RecvError::Closed) => None,
                }
            },
        ))
    }
}
