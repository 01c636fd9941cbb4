//! GraphQL object types. Thin wrappers over models and the seat-map snapshot; anything that
//! needs the database goes through the request's loaders.
use std::sync::Arc;

use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use entity::{movie, screen, show, user, venue};
use tokio::sync::OnceCell;

use super::loaders::{
    loaders, must, CountsOf, LayoutOf, MovieId, PricesOf, ScreenId, StateOf, VenueId,
};
pub use super::seat::{to_int, Seat, SeatStatus};
use crate::auth::Viewer;
use crate::catalogue::layout::{price_of, Layout, Prices};
use crate::catalogue::seatmap::{self, SharedState};

/// Who the viewer is, for the audit log.
pub fn actor(viewer: &Viewer) -> crate::audit::Actor {
    use crate::audit::Actor;
    match viewer {
        Viewer::User { id, .. } if viewer.is_admin() => Actor::Admin(*id),
        Viewer::User { id, .. } => Actor::User(*id),
        Viewer::ApiKey { id, .. } => Actor::ApiKey(*id),
        _ => Actor::System,
    }
}

pub fn viewer<'a>(ctx: &Context<'a>) -> &'a Viewer {
    ctx.data_opt::<Viewer>().unwrap_or(&Viewer::Anonymous)
}

pub struct Show {
    pub model: show::Model,
    /// The live state this object shows; loaded on first use so `version` and `seats` agree.
    state: OnceCell<SharedState>,
}

impl Show {
    pub fn new(model: show::Model) -> Self {
        Show {
            model,
            state: OnceCell::new(),
        }
    }
    async fn state(&self, ctx: &Context<'_>) -> Result<SharedState> {
        let l = loaders(ctx);
        let id = self.model.id;
        self.state
            .get_or_try_init(|| async move {
                let state: SharedState = must(&l, StateOf(id), "show state").await?;
                if let Some(r) = ctx.data_opt::<Arc<super::documents::MapRecorder>>() {
                    r.saw(id, state.stamp.clone());
                }
                Ok::<_, async_graphql::Error>(state)
            })
            .await
            .cloned()
    }
    async fn layout(&self, ctx: &Context<'_>) -> Result<Arc<Layout>> {
        must(
            &loaders(ctx),
            LayoutOf(self.model.screen_id),
            "screen layout",
        )
        .await
    }
    async fn prices_map(&self, ctx: &Context<'_>) -> Result<Arc<Prices>> {
        Ok(loaders(ctx)
            .load_one(PricesOf(self.model.id))
            .await
            .map_err(super::loaders::shared)?
            .unwrap_or_default())
    }
    /// From the map when this object has read it (so counts and seats agree); otherwise two
    /// numbers from the store (a list of shows never reads their maps).
    async fn counts(&self, ctx: &Context<'_>) -> Result<seatmap::Counts> {
        let layout = self.layout(ctx).await?;
        if let Some(state) = self.state.get() {
            return Ok(seatmap::counts(&layout, state));
        }
        let live = must(&loaders(ctx), CountsOf(self.model.id), "show counts").await?;
        if let Some(r) = ctx.data_opt::<Arc<super::documents::MapRecorder>>() {
            r.saw(self.model.id, live.stamp.clone());
        }
        let total = layout.len() as i32;
        let (held, booked) = (to_int(live.held), to_int(live.booked));
        Ok(seatmap::Counts {
            total,
            available: (total - held - booked).max(0),
            held,
            booked,
        })
    }
}

/// A movie on a screen at a time, with its live seat map.
#[Object]
impl Show {
    async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }
    async fn movie(&self, ctx: &Context<'_>) -> Result<Movie> {
        Ok(Movie(
            must(&loaders(ctx), MovieId(self.model.movie_id), "movie").await?,
        ))
    }
    async fn screen(&self, ctx: &Context<'_>) -> Result<Screen> {
        Ok(Screen(
            must(&loaders(ctx), ScreenId(self.model.screen_id), "screen").await?,
        ))
    }
    async fn starts_at(&self) -> DateTime<Utc> {
        self.model.starts_at
    }
    async fn ends_at(&self) -> DateTime<Utc> {
        self.model.ends_at
    }
    async fn total_seats(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(self.counts(ctx).await?.total)
    }
    async fn available_seats(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(self.counts(ctx).await?.available)
    }
    async fn held_seats(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(self.counts(ctx).await?.held)
    }
    async fn booked_seats(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(self.counts(ctx).await?.booked)
    }
    /// On-sale settings and the waiting room's state now; null when none were set.
    async fn on_sale(&self, ctx: &Context<'_>) -> Result<Option<OnSale>> {
        let state = ctx.data_unchecked::<crate::state::AppState>();
        Ok(state.queue.room(self.model.id).await?.map(OnSale))
    }
    /// Seat-map version: read from the same snapshot as `seats` and the counts. -1 while
    /// `holdsKnown` is false: no event follows from such a map, so a client re-reads on the next.
    async fn version(&self, ctx: &Context<'_>) -> Result<i32> {
        let state = self.state(ctx).await?;
        Ok(if state.holds_unknown {
            -1
        } else {
            to_int(state.version)
        })
    }
    /// False while the hold store is unreachable: the seat map then comes from the database
    /// alone — booked seats are exact, held seats show as `AVAILABLE`, `version` is -1 and
    /// holding answers `SERVICE_UNAVAILABLE` until the store is back (then re-read).
    async fn holds_known(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(!self.state(ctx).await?.holds_unknown)
    }
    /// The seat layout without live status, for frontends: rows front to back, seats left to
    /// right, with categories, prices and attributes. It never changes for a show (cache it for
    /// ever); `seatStatuses` gives the live status of each seat in the same order.
    async fn seat_layout(&self, ctx: &Context<'_>) -> Result<Vec<LayoutRow>> {
        let (layout, prices) = (self.layout(ctx).await?, self.prices_map(ctx).await?);
        let mut rows: Vec<LayoutRow> = Vec::new();
        for info in &layout.seats {
            if rows.last().is_none_or(|r| r.row_index != info.row_index) {
                rows.push(LayoutRow {
                    label: info.row.clone(),
                    row_index: info.row_index,
                    seats: Vec::new(),
                });
            }
            if let Some(row) = rows.last_mut() {
                row.seats.push(LayoutSeat {
                    id: ID(info.id.to_string()),
                    number: info.number,
                    column: info.col_index,
                    category: info.category.clone(),
                    price_cents: to_int(price_of(&prices, &info.category)),
                    wheelchair: info.wheelchair,
                    companion: info.companion,
                    restricted_view: info.restricted_view,
                });
            }
        }
        Ok(rows)
    }
    /// The live map in compact form (a 3,000-seat map is 3,000 characters): one character per
    /// seat of `seatLayout`, in its order — `A` available, `H` held by someone else, `M` held by
    /// you, `B` booked — at `version` (the same snapshot as `seats` and the counts).
    async fn seat_statuses(&self, ctx: &Context<'_>) -> Result<SeatStatuses> {
        let (layout, state) = (self.layout(ctx).await?, self.state(ctx).await?);
        Ok(SeatStatuses {
            version: if state.holds_unknown {
                -1
            } else {
                to_int(state.version)
            },
            holds_known: !state.holds_unknown,
            statuses: seatmap::status_string(&layout, &state, viewer(ctx).user_id()),
        })
    }
    /// The whole layout with live status, front row first.
    async fn seats(&self, ctx: &Context<'_>) -> Result<super::seat_list::SeatList> {
        let (layout, prices, state) = (
            self.layout(ctx).await?,
            self.prices_map(ctx).await?,
            self.state(ctx).await?,
        );
        Ok(super::seat_list::SeatList {
            show_id: self.model.id,
            layout,
            prices,
            state,
            viewer: viewer(ctx).user_id(),
        })
    }
    /// Price of each seat category.
    async fn prices(&self, ctx: &Context<'_>) -> Result<Vec<CategoryPrice>> {
        let (layout, prices) = (self.layout(ctx).await?, self.prices_map(ctx).await?);
        Ok(layout
            .categories()
            .into_iter()
            .map(|c| CategoryPrice {
                price_cents: to_int(price_of(&prices, &c)),
                category: c,
            })
            .collect())
    }
}

/// A show's on-sale settings and its waiting room now.
pub struct OnSale(pub crate::queue::RoomState);

#[Object]
impl OnSale {
    async fn opens_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.0.config.opens_ms)
    }
    async fn queue_enabled(&self) -> bool {
        self.0.config.on
    }
    async fn admit_per_minute(&self) -> i32 {
        count((60_000 / self.0.config.interval_ms.max(1)) as u64)
    }
    async fn session_seconds(&self) -> i32 {
        count((self.0.config.session_ms / 1000) as u64)
    }
    /// Most visitors shopping at once (null: no cap beyond the rate).
    async fn max_shoppers(&self) -> Option<i32> {
        (self.0.config.max_shoppers > 0).then_some(self.0.config.max_shoppers as i32)
    }
    /// People in line now.
    async fn waiting(&self) -> i32 {
        count(self.0.waiting)
    }
    /// Admitted visitors whose session is live.
    async fn shopping(&self) -> i32 {
        count(self.0.shopping)
    }
    /// Admitted so far.
    async fn admitted(&self) -> i32 {
        count(self.0.admitted)
    }
}

/// A count as a GraphQL `Int`, saturating.
fn count(v: u64) -> i32 {
    v.min(i32::MAX as u64) as i32
}

/// One row of `Show.seatLayout`.
#[derive(SimpleObject)]
pub struct LayoutRow {
    pub label: String,
    /// Drawing position from the front (0-based).
    pub row_index: i32,
    pub seats: Vec<LayoutSeat>,
}

/// One seat of `Show.seatLayout` (no live status: see `Show.seatStatuses`).
#[derive(SimpleObject)]
pub struct LayoutSeat {
    pub id: ID,
    pub number: i32,
    /// Drawing position from the left (0-based; aisles are missing columns).
    pub column: i32,
    pub category: String,
    pub price_cents: i32,
    pub wheelchair: bool,
    pub companion: bool,
    pub restricted_view: bool,
}

/// `Show.seatStatuses`: the compact live map.
#[derive(SimpleObject)]
pub struct SeatStatuses {
    pub version: i32,
    pub holds_known: bool,
    /// One character per seat of `seatLayout`, in its order: A, H, M (yours), B.
    pub statuses: String,
}

#[derive(SimpleObject)]
pub struct CategoryPrice {
    pub category: String,
    pub price_cents: i32,
}

pub struct Movie(pub movie::Model);

#[Object]
impl Movie {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn duration_minutes(&self) -> i32 {
        self.0.duration_minutes
    }
}

pub struct Screen(pub screen::Model);

#[Object]
impl Screen {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn venue(&self, ctx: &Context<'_>) -> Result<Venue> {
        Ok(Venue(
            must(&loaders(ctx), VenueId(self.0.venue_id), "venue").await?,
        ))
    }
    async fn total_seats(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(must(&loaders(ctx), LayoutOf(self.0.id), "screen layout")
            .await?
            .len() as i32)
    }
    /// Seat categories, front to back.
    async fn categories(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Ok(must(&loaders(ctx), LayoutOf(self.0.id), "screen layout")
            .await?
            .categories())
    }
    /// The point seats are ranked from (best available), in drawing units: the one given at
    /// creation, or the default (centre of the row about two thirds back).
    async fn best_point(&self, ctx: &Context<'_>) -> Result<BestPoint> {
        let layout = must(&loaders(ctx), LayoutOf(self.0.id), "screen layout").await?;
        let (row, column) = layout.plan.focal;
        Ok(BestPoint { row, column })
    }
}

/// A point of the drawn seat map: `row` from the front, `column` from the left (0-based,
/// fractions allowed).
#[derive(SimpleObject)]
pub struct BestPoint {
    pub row: f64,
    pub column: f64,
}

pub struct Venue(pub venue::Model);

#[Object]
impl Venue {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn city(&self) -> &str {
        &self.0.city
    }
}

pub struct User(pub user::Model);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// `customer` or `admin`.
    async fn role(&self) -> &str {
        self.0.role.as_str()
    }
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Bearer token for the `Authorization` header (or the WebSocket `connection_init` payload).
    pub token: String,
    pub user: User,
    pub expires_at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct ShowEdge {
    pub cursor: String,
    pub node: Show,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ShowConnection {
    pub edges: Vec<ShowEdge>,
    pub page_info: PageInfo,
}

#[ComplexObject]
impl ShowConnection {
    /// The shows of this page, without cursors.
    async fn nodes(&self) -> Vec<&Show> {
        self.edges.iter().map(|e| &e.node).collect()
    }
}
