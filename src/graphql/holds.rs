//! Seat holds: `holdSeats`, `releaseHold` and the `Hold` type.
use async_graphql::{Context, Object, Result, ID};
use chrono::{DateTime, Utc};

use super::loaders::{loaders, must, show_parts, ShowId};
use super::types::{to_int, viewer, Seat, Show};
use crate::catalogue::layout::price_of;
use crate::catalogue::seatmap;
use crate::holds::{BestWish, GrantedHold};
use crate::ids::parse_id;
use crate::state::AppState;

pub struct Hold(pub GrantedHold);

/// Seats held for you while you pay; they return to everyone else at `expiresAt`.
#[Object]
impl Hold {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn show(&self, ctx: &Context<'_>) -> Result<Show> {
        Ok(Show::new(
            must(&loaders(ctx), ShowId(self.0.show_id), "show").await?,
        ))
    }
    /// The held seats with their live status.
    async fn seats(&self, ctx: &Context<'_>) -> Result<Vec<Seat>> {
        let p = show_parts(&loaders(ctx), self.0.show_id).await?;
        let me = viewer(ctx).user_id();
        Ok(self
            .0
            .seat_ids
            .iter()
            .filter_map(|id| {
                let info = p.layout.seat(*id)?;
                Some(Seat(seatmap::seat_view(info, &p.prices, &p.state, me)))
            })
            .collect())
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    async fn total_cents(&self, ctx: &Context<'_>) -> Result<i32> {
        let p = show_parts(&loaders(ctx), self.0.show_id).await?;
        let (layout, prices) = (p.layout, p.prices);
        let total: i64 = self
            .0
            .seat_ids
            .iter()
            .filter_map(|id| layout.seat(*id))
            .map(|s| price_of(&prices, &s.category))
            .sum();
        Ok(to_int(total))
    }
    /// True when every held seat is side by side in one row (no aisle between).
    async fn next_to_each_other(&self) -> bool {
        self.0.next_to_each_other
    }
    /// The show's seat-map version right after the hold was taken.
    async fn version(&self) -> i32 {
        to_int(self.0.version)
    }
}

#[derive(Default)]
pub struct HoldMutation;

#[Object]
impl HoldMutation {
    /// Hold every requested seat or none. Fails with `SEATS_UNAVAILABLE` (and
    /// `extensions.seatIds`) when any is held or booked.
    async fn hold_seats(&self, ctx: &Context<'_>, show_id: ID, seat_ids: Vec<ID>) -> Result<Hold> {
        let v = viewer(ctx);
        v.require_user()?;
        let show_id = parse_id(&show_id, "show")?;
        let seats: Vec<String> = seat_ids.into_iter().map(|s| s.0).collect();
        let state = ctx.data_unchecked::<AppState>();
        Ok(Hold(state.holds.hold(v, show_id, &seats).await?))
    }

    /// Hold the best `count` free seats in one atomic step, all or nothing: side by side in one
    /// row without leaving a single seat stranded beside them if possible, then side by side
    /// anyway, then (unless `requireTogether`) split across two adjacent rows. Seats are ranked
    /// by distance to the screen's best point, restricted-view seats last. Wheelchair spaces and
    /// companion seats are only chosen when `wheelchairSpaces` > 0 (the hold then has exactly
    /// that many wheelchair spaces). `categories`: the seat categories to choose from (default
    /// all). Fails with `SEATS_UNAVAILABLE` (empty `extensions.seatIds`) when nothing
    /// acceptable is free; same limits, TTL and events as `holdSeats`.
    async fn hold_best_available(
        &self,
        ctx: &Context<'_>,
        show_id: ID,
        count: i32,
        categories: Option<Vec<String>>,
        #[graphql(default = false)] require_together: bool,
        #[graphql(default = 0)] wheelchair_spaces: i32,
    ) -> Result<Hold> {
        let v = viewer(ctx);
        v.require_user()?;
        let show_id = parse_id(&show_id, "show")?;
        let wish = BestWish {
            count,
            categories,
            together: require_together,
            wheelchair_spaces,
        };
        let state = ctx.data_unchecked::<AppState>();
        Ok(Hold(state.holds.hold_best(v, show_id, &wish).await?))
    }

    /// `true`: released now; `false`: it was no longer live.
    async fn release_hold(&self, ctx: &Context<'_>, hold_id: ID) -> Result<bool> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(state.holds.release(viewer(ctx), &hold_id).await?)
    }
}
