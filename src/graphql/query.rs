//! Root queries: catalogue, the viewer, bookings.
use async_graphql::{Context, Object, Result, ID};

use super::booking::Booking;
use super::loaders::{loaders, shared, CountsOf, LayoutOf, MovieId, ScreenId, StateOf, VenueId};
use super::types::{viewer, PageInfo, Show, ShowConnection, ShowEdge, User, Venue};
use crate::catalogue::shows_max_page;
use crate::error::AppError;
use crate::ids::{parse_id, ShowCursor};
use crate::state::AppState;

#[derive(Default)]
pub struct CatalogueQuery;

#[Object]
impl CatalogueQuery {
    /// Shows soonest first, as a Relay connection: by default those not started yet (still
    /// bookable); `includePast: true` lists every show.
    async fn shows(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        #[graphql(default = false)] include_past: bool,
        movie_id: Option<ID>,
    ) -> Result<ShowConnection> {
        let max = shows_max_page();
        let first = first.unwrap_or(20);
        if first < 0 || first as u64 > max {
            return Err(AppError::bad_input(format!("first must be from 0 to {max}")).into());
        }
        let after = after.as_deref().map(ShowCursor::decode).transpose()?;
        let movie_id = movie_id.map(|m| parse_id(&m, "movie")).transpose()?;
        let state = ctx.data_unchecked::<AppState>();
        let page = state
            .catalogue
            .list_shows(first as u64, after, include_past, movie_id)
            .await?;
        prefetch(ctx, &page.shows).await?;
        let edges: Vec<ShowEdge> = page
            .shows
            .into_iter()
            .map(|s| ShowEdge {
                cursor: ShowCursor {
                    starts_at: s.starts_at,
                    id: s.id,
                }
                .encode(),
                node: Show::new(s),
            })
            .collect();
        let page_info = PageInfo {
            has_next_page: page.has_next,
            has_previous_page: after.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Ok(ShowConnection { edges, page_info })
    }

    /// Show by id.
    async fn show(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Show>> {
        let id = parse_id(&id, "show")?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state.catalogue.show(id).await?.map(Show::new))
    }

    /// Every venue.
    async fn venues(&self, ctx: &Context<'_>) -> Result<Vec<Venue>> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(state
            .catalogue
            .all_venues()
            .await?
            .into_iter()
            .map(Venue)
            .collect())
    }

    /// The signed-in user; null when not signed in. A bad token is `UNAUTHENTICATED`.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let v = viewer(ctx);
        if matches!(v, crate::auth::Viewer::Anonymous) {
            return Ok(None);
        }
        let id = v.require_user()?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state.accounts.find(id).await?.map(User))
    }

    /// The signed-in user's bookings, newest first.
    async fn my_bookings(&self, ctx: &Context<'_>) -> Result<Vec<Booking>> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(state
            .bookings
            .mine(viewer(ctx))
            .await?
            .into_iter()
            .map(Booking)
            .collect())
    }

    /// One booking: your own (admins: any).
    async fn booking(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Booking>> {
        let v = viewer(ctx);
        v.require_user()?;
        let id = parse_id(&id, "booking")?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state.bookings.get(v, id).await?.map(Booking))
    }
}

/// Load what the selection needs for a page of shows in one batch per kind, up front, so the
/// cost of a page is a fixed number of statements however the resolvers interleave.
async fn prefetch(ctx: &Context<'_>, shows: &[entity::show::Model]) -> Result<()> {
    let look = ctx.look_ahead();
    let node = look.field("edges").field("node");
    let nodes = look.field("nodes");
    let wants = |f: &str| node.field(f).exists() || nodes.field(f).exists();
    let l = loaders(ctx);
    let counts = ["totalSeats", "availableSeats", "heldSeats", "bookedSeats"]
        .iter()
        .any(|f| wants(f));
    // The whole map only when the selection shows it; counts alone are two numbers per show.
    let live = ["seats", "version", "holdsKnown", "seatStatuses"]
        .iter()
        .any(|f| wants(f));
    let counts_only = counts && !live;
    let screens = wants("screen");
    let venues = node.field("screen").field("venue").exists()
        || nodes.field("screen").field("venue").exists();
    let movie_ids = shows.iter().map(|s| MovieId(s.movie_id));
    let screen_ids: Vec<i64> = shows.iter().map(|s| s.screen_id).collect();
    let (movies, screen_rows, layouts, states) = futures_util::join!(
        async {
            if wants("movie") {
                l.load_many(movie_ids).await.map(|_| ())
            } else {
                Ok(())
            }
        },
        async {
            if screens {
                l.load_many(screen_ids.iter().map(|i| ScreenId(*i)))
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if counts || live || wants("prices") {
                l.load_many(screen_ids.iter().map(|i| LayoutOf(*i)))
                    .await
                    .map(|_| ())
            } else {
                Ok(())
            }
        },
        async {
            if live {
                l.load_many(shows.iter().map(|s| StateOf(s.id)))
                    .await
                    .map(|_| ())
            } else if counts_only {
                l.load_many(shows.iter().map(|s| CountsOf(s.id)))
                    .await
                    .map(|_| ())
            } else {
                Ok(())
            }
        },
    );
    movies.map_err(shared)?;
    layouts.map_err(shared)?;
    states.map_err(shared)?;
    if let (Some(rows), true) = (screen_rows.map_err(shared)?, venues) {
        l.load_many(rows.values().map(|s| VenueId(s.venue_id)))
            .await
            .map_err(shared)?;
    }
    Ok(())
}
