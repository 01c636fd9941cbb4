//! Batch loaders, one per request, so that list fields cost a bounded number of queries:
//! `shows(first: 50) { movie screen { venue } availableSeats }` is one query per kind of thing,
//! not one per show.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use async_graphql::Context;
use entity::{movie, screen, venue};

use crate::catalogue::layout::{Layout, Prices};
use crate::catalogue::seatmap::SharedState;
use crate::error::AppError;
use crate::state::AppState;

#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct MovieId(pub i64);
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct ScreenId(pub i64);
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct VenueId(pub i64);
/// The seat layout of a screen.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct LayoutOf(pub i64);
/// The prices of a show.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct PricesOf(pub i64);
/// The live state of a show, read once per request: every field of one response sees one snapshot.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct StateOf(pub i64);
/// The live counts of a show without its map (lists of shows).
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct CountsOf(pub i64);

pub struct AppLoader(pub AppState);
pub type Loaders = Arc<DataLoader<AppLoader, HashMapCache>>;
type LoadResult<K, V> = Result<HashMap<K, V>, Arc<AppError>>;

pub fn new_loaders(state: AppState) -> Loaders {
    Arc::new(DataLoader::with_cache(
        AppLoader(state),
        tokio::spawn,
        HashMapCache::default(),
    ))
}

/// The request's loaders; a fresh one where none was set up (e.g. inside a subscription).
pub fn loaders(ctx: &Context<'_>) -> Loaders {
    match ctx.data_opt::<Loaders>() {
        Some(l) => l.clone(),
        None => new_loaders(ctx.data_unchecked::<AppState>().clone()),
    }
}

impl Loader<MovieId> for AppLoader {
    type Value = movie::Model;
    type Error = Arc<AppError>;
    async fn load(&self, keys: &[MovieId]) -> LoadResult<MovieId, movie::Model> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.0.catalogue.movies(&ids).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|m| (MovieId(m.id), m)).collect())
    }
}

impl Loader<ScreenId> for AppLoader {
    type Value = screen::Model;
    type Error = Arc<AppError>;
    async fn load(&self, keys: &[ScreenId]) -> LoadResult<ScreenId, screen::Model> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.0.catalogue.screens(&ids).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|m| (ScreenId(m.id), m)).collect())
    }
}

impl Loader<VenueId> for AppLoader {
    type Value = venue::Model;
    type Error = Arc<AppError>;
    async fn load(&self, keys: &[VenueId]) -> LoadResult<VenueId, venue::Model> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.0.catalogue.venues(&ids).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|m| (VenueId(m.id), m)).collect())
    }
}

impl Loader<LayoutOf> for AppLoader {
    type Value = Arc<Layout>;
    type Error = Arc<AppError>;
    async fn load(&self, keys: &[LayoutOf]) -> LoadResult<LayoutOf, Arc<Layout>> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let cat = &self.0.catalogue;
        let map = cat
            .layouts()
            .layouts(cat.db(), &ids)
            .await
            .map_err(|e| Arc::new(e.into()))?;
        Ok(map.into_iter().map(|(k, v)| (LayoutOf(k), v)).collect())
    }
}

impl Loader<PricesOf> for AppLoader {
    type Value = Arc<Prices>;
    type Error = Arc<AppError>;
    async fn load(&self, keys: &[PricesOf]) -> LoadResult<PricesOf, Arc<Prices>> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let cat = &self.0.catalogue;
        let map = cat
            .layouts()
            .prices(cat.db(), &ids)
            .await
            .map_err(|e| Arc::new(e.into()))?;
        Ok(map.into_iter().map(|(k, v)| (PricesOf(k), v)).collect())
    }
}

impl Loader<StateOf> for AppLoader {
    type Value = SharedState;
    type Error = Arc<AppError>;
    async fn load(&self, keys: &[StateOf]) -> LoadResult<StateOf, SharedState> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let map = self.0.holds.states(&ids).await.map_err(Arc::new)?;
        Ok(map.into_iter().map(|(k, v)| (StateOf(k), v)).collect())
    }
}

impl Loader<CountsOf> for AppLoader {
    type Value = crate::holds::LiveCounts;
    type Error = Arc<AppError>;
    async fn load(&self, keys: &[CountsOf]) -> LoadResult<CountsOf, crate::holds::LiveCounts> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let map = self.0.holds.counts(&ids).await.map_err(Arc::new)?;
        Ok(map.into_iter().map(|(k, v)| (CountsOf(k), v)).collect())
    }
}

/// A show by id.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct ShowId(pub i64);
/// The seats of a booking with the price paid for each.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct SeatsOfBooking(pub i64);

impl Loader<ShowId> for AppLoader {
    type Value = entity::show::Model;
    type Error = Arc<AppError>;
    async fn load(&self, keys: &[ShowId]) -> LoadResult<ShowId, entity::show::Model> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self
            .0
            .catalogue
            .shows_by_ids(&ids)
            .await
            .map_err(Arc::new)?;
        Ok(rows.into_iter().map(|m| (ShowId(m.id), m)).collect())
    }
}

impl Loader<SeatsOfBooking> for AppLoader {
    type Value = Arc<Vec<(i64, i64)>>;
    type Error = Arc<AppError>;
    async fn load(
        &self,
        keys: &[SeatsOfBooking],
    ) -> LoadResult<SeatsOfBooking, Arc<Vec<(i64, i64)>>> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let map = self.0.bookings.seats_of(&ids).await.map_err(Arc::new)?;
        Ok(map
            .into_iter()
            .map(|(k, v)| (SeatsOfBooking(k), Arc::new(v)))
            .collect())
    }
}

/// Load one thing that must exist (a dangling reference is an internal error).
pub async fn must<K, V>(loaders: &Loaders, key: K, what: &str) -> async_graphql::Result<V>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + Copy + 'static,
    AppLoader: Loader<K, Value = V, Error = Arc<AppError>>,
    V: Send + Sync + Clone + 'static,
{
    match loaders.load_one(key).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => {
            Err(AppError::internal(anyhow::anyhow!("dangling reference to a {what}")).into())
        }
        Err(e) => Err(shared(e)),
    }
}

/// A loader's shared error as a GraphQL error that keeps its code.
pub fn shared(e: Arc<AppError>) -> async_graphql::Error {
    async_graphql::Error::from(SharedError(e))
}

/// Wrapper so the error extension can find the `AppError` behind an `Arc`.
#[derive(Debug)]
pub struct SharedError(pub Arc<AppError>);
impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What rendering seats of one show needs: its layout, prices and live state (one snapshot per
/// request).
pub struct ShowParts {
    pub show: entity::show::Model,
    pub layout: Arc<Layout>,
    pub prices: Arc<Prices>,
    pub state: SharedState,
}

pub async fn show_parts(loaders: &Loaders, show_id: i64) -> async_graphql::Result<ShowParts> {
    let show = must(loaders, ShowId(show_id), "show").await?;
    let layout = must(loaders, LayoutOf(show.screen_id), "screen layout").await?;
    let prices = loaders
        .load_one(PricesOf(show.id))
        .await
        .map_err(shared)?
        .unwrap_or_default();
    let state = must(loaders, StateOf(show.id), "show state").await?;
    Ok(ShowParts {
        show,
        layout,
        prices,
        state,
    })
}
