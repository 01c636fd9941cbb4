//! Screen layouts and show prices: immutable once created, so they are cached for the life of
//! the process and shared by every request and subscription.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use entity::{screen, seat, show_price};

use super::plan::SeatPlan;
pub use super::seat_info::SeatInfo;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};

/// A screen's seats in drawing order (front row first, left to right).
#[derive(Debug)]
pub struct Layout {
    pub screen_id: i64,
    pub seats: Vec<SeatInfo>,
    index: HashMap<i64, usize>,
    /// What best-available reads (ranks, adjacency, windows); positions are indexes of `seats`.
    pub plan: SeatPlan,
}

impl Layout {
    fn new(screen_id: i64, seats: Vec<SeatInfo>, focal: Option<(f64, f64)>) -> Self {
        let index = seats.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        let plan = SeatPlan::new(&seats, focal);
        Layout {
            screen_id,
            seats,
            index,
            plan,
        }
    }
    /// A layout built by hand (unit tests of what is computed from layouts).
    #[cfg(test)]
    pub(crate) fn for_tests(screen_id: i64, seats: Vec<SeatInfo>) -> Self {
        Self::new(screen_id, seats, None)
    }
    /// A layout from seats in drawing order (front row first, left to right) and a best point:
    /// what the layout cache builds from the database, for tests that drive a store directly.
    pub fn from_seats(screen_id: i64, seats: Vec<SeatInfo>, focal: Option<(f64, f64)>) -> Self {
        Self::new(screen_id, seats, focal)
    }

    pub fn seat(&self, id: i64) -> Option<&SeatInfo> {
        self.index.get(&id).map(|&i| &self.seats[i])
    }
    /// A seat's position (index in drawing order, as the plan numbers them).
    pub fn position(&self, id: i64) -> Option<usize> {
        self.index.get(&id).copied()
    }
    /// True when these seats are side by side in one row (no aisle, no gap).
    pub fn side_by_side(&self, ids: &[i64]) -> bool {
        let positions: Option<Vec<usize>> = ids.iter().map(|id| self.position(*id)).collect();
        positions.is_some_and(|p| self.plan.side_by_side(&p))
    }
    pub fn len(&self) -> usize {
        self.seats.len()
    }
    pub fn is_empty(&self) -> bool {
        self.seats.is_empty()
    }
    pub fn categories(&self) -> Vec<String> {
        let mut cats: Vec<String> = Vec::new();
        for s in &self.seats {
            if !cats.contains(&s.category) {
                cats.push(s.category.clone());
            }
        }
        cats
    }
}

/// Price per category of one show, in cents.
pub type Prices = HashMap<String, i64>;

/// The price of a seat of `category`; a category without a price (impossible for shows created
/// through `createShow`, which requires them all) costs 0.
pub fn price_of(prices: &Prices, category: &str) -> i64 {
    prices.get(category).copied().unwrap_or(0)
}

#[derive(Default)]
pub struct LayoutCache {
    layouts: RwLock<HashMap<i64, Arc<Layout>>>,
    prices: RwLock<HashMap<i64, Arc<Prices>>>,
    /// One load of missing layouts at a time: the readers that miss together wait for it and
    /// then find their layouts kept (a 20,000-seat layout is 20,000 rows; 64 readers of a fresh
    /// page of big shows each loading them saturated the pool for seconds — the show list's
    /// "cliff" in docs/BENCHMARKS.md).
    loading: tokio::sync::Mutex<()>,
}

impl LayoutCache {
    /// Layouts of these screens, loading the missing ones in one query (one load at a time).
    pub async fn layouts(
        &self,
        db: &DatabaseConnection,
        screen_ids: &[i64],
    ) -> Result<HashMap<i64, Arc<Layout>>, DbErr> {
        let (out, missing) = kept(&self.layouts, screen_ids);
        if missing.is_empty() {
            return Ok(out);
        }
        let _one_load = self.loading.lock().await;
        // Another reader may have loaded them while this one waited.
        let (mut out, missing) = kept(&self.layouts, screen_ids);
        if missing.is_empty() {
            return Ok(out);
        }
        let rows = seat::Entity::find()
            .filter(seat::Column::ScreenId.is_in(missing.clone()))
            .order_by_asc(seat::Column::ScreenId)
            .order_by_asc(seat::Column::RowIndex)
            .order_by_asc(seat::Column::ColIndex)
            .all(db)
            .await?;
        let mut grouped: HashMap<i64, Vec<SeatInfo>> =
            missing.iter().map(|id| (*id, Vec::new())).collect();
        for r in rows {
            grouped.entry(r.screen_id).or_default().push(SeatInfo {
                id: r.id,
                row: r.row_label,
                number: r.number,
                category: r.category,
                row_index: r.row_index,
                col_index: r.col_index,
                wheelchair: r.wheelchair,
                companion: r.companion,
                restricted_view: r.restricted_view,
            });
        }
        let focal: HashMap<i64, (f64, f64)> = screen::Entity::find()
            .filter(screen::Column::Id.is_in(missing.clone()))
            .all(db)
            .await?
            .into_iter()
            .filter_map(|s| Some((s.id, (s.focal_row?, s.focal_col?))))
            .collect();
        let mut cache = self.layouts.write().unwrap_or_else(|p| p.into_inner());
        for (id, seats) in grouped {
            // An empty result means "no such screen (yet)": do not cache it.
            if seats.is_empty() {
                continue;
            }
            let l = Arc::new(Layout::new(id, seats, focal.get(&id).copied()));
            cache.insert(id, l.clone());
            out.insert(id, l);
        }
        Ok(out)
    }

    pub async fn layout(
        &self,
        db: &DatabaseConnection,
        screen_id: i64,
    ) -> Result<Option<Arc<Layout>>, DbErr> {
        // Every hold asks for one kept layout: no map built for it.
        if let Some(l) = kept_one(&self.layouts, screen_id) {
            return Ok(Some(l));
        }
        Ok(self.layouts(db, &[screen_id]).await?.remove(&screen_id))
    }

    /// The prices of one show (empty when it has none), kept or loaded.
    pub async fn show_prices(
        &self,
        db: &DatabaseConnection,
        show_id: i64,
    ) -> Result<Arc<Prices>, DbErr> {
        if let Some(p) = kept_one(&self.prices, show_id) {
            return Ok(p);
        }
        Ok(self
            .prices(db, &[show_id])
            .await?
            .remove(&show_id)
            .unwrap_or_default())
    }

    /// Prices of these shows, loading the missing ones in one query.
    pub async fn prices(
        &self,
        db: &DatabaseConnection,
        show_ids: &[i64],
    ) -> Result<HashMap<i64, Arc<Prices>>, DbErr> {
        let (mut out, missing) = kept(&self.prices, show_ids);
        if missing.is_empty() {
            return Ok(out);
        }
        let rows = show_price::Entity::find()
            .filter(show_price::Column::ShowId.is_in(missing.clone()))
            .all(db)
            .await?;
        let mut grouped: HashMap<i64, Prices> = HashMap::new();
        for r in rows {
            grouped
                .entry(r.show_id)
                .or_default()
                .insert(r.category, r.price_cents);
        }
        let mut cache = self.prices.write().unwrap_or_else(|p| p.into_inner());
        for (id, p) in grouped {
            let p = Arc::new(p);
            cache.insert(id, p.clone());
            out.insert(id, p);
        }
        Ok(out)
    }
}

/// The kept value of one id.
fn kept_one<T>(cache: &RwLock<HashMap<i64, Arc<T>>>, id: i64) -> Option<Arc<T>> {
    cache
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned()
}

/// The kept values among these ids, and the ids of the missing ones.
fn kept<T>(cache: &RwLock<HashMap<i64, Arc<T>>>, ids: &[i64]) -> (HashMap<i64, Arc<T>>, Vec<i64>) {
    let mut out = HashMap::new();
    let mut missing = Vec::new();
    let cached = cache.read().unwrap_or_else(|p| p.into_inner());
    for id in ids {
        match cached.get(id) {
            Some(v) => {
                out.insert(*id, v.clone());
            }
            None => missing.push(*id),
        }
    }
    (out, missing)
}
