//! Shows: creation (no overlap on a screen, a price for every seat category) and the upcoming
//! list with keyset pagination.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use entity::{movie, screen, show, show_price};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbBackend, EntityTrait, ExprTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};

use super::Catalogue;
use crate::error::{AppError, AppResult};
use crate::ids::ShowCursor;

pub const MAX_PAGE: u64 = 100;
/// Time between two shows on one screen for cleaning and the next audience to sit down.
pub const CHANGEOVER: Duration = Duration::minutes(15);

pub struct NewShow {
    pub movie_id: i64,
    pub screen_id: i64,
    pub starts_at: DateTime<Utc>,
    pub prices: Vec<(String, i64)>,
    /// Who creates it (for the audit log).
    pub created_by: crate::audit::Actor,
}

/// A show, its screen's layout and its prices (all immutable, all cached).
#[derive(Debug, Clone)]
pub struct PricedShow {
    pub show: show::Model,
    pub layout: std::sync::Arc<super::layout::Layout>,
    pub prices: std::sync::Arc<super::layout::Prices>,
}

impl PricedShow {
    /// The price of one seat of this show; `None` for a seat of another screen.
    pub fn price_of(&self, seat_id: i64) -> Option<i64> {
        let info = self.layout.seat(seat_id)?;
        Some(super::layout::price_of(&self.prices, &info.category))
    }
}

#[derive(Clone)]
pub struct ShowPage {
    pub shows: Vec<show::Model>,
    pub has_next: bool,
}

/// What names a page of the show list: `first`, `after` (start, id), `include_past`, movie.
pub(crate) type PageKey = (u64, Option<(i64, i64)>, bool, Option<i64>);

/// Attempts at writing a new show before a conflict with other writes is answered.
const CREATE_ATTEMPTS: u32 = 3;

impl Catalogue {
    pub async fn create_show(&self, mut new: NewShow) -> AppResult<show::Model> {
        if new.starts_at <= Utc::now() {
            return Err(AppError::bad_input("startsAt must be in the future"));
        }
        if new.starts_at > Utc::now() + Duration::days(730) {
            return Err(AppError::bad_input("startsAt must be within two years"));
        }
        let movie = movie::Entity::find_by_id(new.movie_id)
            .one(&self.db)
            .await?
            .ok_or(AppError::NotFound("movie"))?;
        let layout = self
            .layouts
            .layout(&self.db, new.screen_id)
            .await?
            .ok_or(AppError::NotFound("screen"))?;
        let prices = validate_prices(&layout.categories(), std::mem::take(&mut new.prices))?;
        let ends_at = new.starts_at + Duration::minutes(movie.duration_minutes as i64);

        // A conflict with another write (SQLite's snapshot gone stale under a concurrent commit,
        // PostgreSQL's deadlock) rolled the whole attempt back: it is safe to try again.
        let mut attempt = 1;
        let created = loop {
            match self.insert_show(&new, &prices, ends_at).await {
                Err(e) if e.is_db_conflict() && attempt < CREATE_ATTEMPTS => attempt += 1,
                done => break done?,
            }
        };
        // This instance's list shows it at once (others within `kept::PAGE_FRESH`).
        self.kept.pages.forget();
        Ok(created)
    }

    /// One attempt at writing a new show: its row, its prices and the audit entry, in one
    /// transaction that refuses a clash with another show of the screen.
    async fn insert_show(
        &self,
        new: &NewShow,
        prices: &HashMap<String, i64>,
        ends_at: DateTime<Utc>,
    ) -> AppResult<show::Model> {
        let txn = self.db.begin().await?;
        // Serialise show creation per screen so two admins cannot book the same slot at once.
        // PostgreSQL: the screen's row lock. SQLite has one writer at a time, and the transaction
        // takes that writer's lock with its first statement (a no-op write of the screen): read
        // first, it would hold a snapshot that any other commit makes stale, and its first write
        // would then fail at once instead of waiting its turn.
        if self.db.get_database_backend() == DbBackend::Postgres {
            screen::Entity::find_by_id(new.screen_id)
                .lock_exclusive()
                .one(&txn)
                .await?
                .ok_or(AppError::NotFound("screen"))?;
        } else {
            let touched = screen::Entity::update_many()
                .col_expr(screen::Column::Id, Expr::col(screen::Column::Id))
                .filter(screen::Column::Id.eq(new.screen_id))
                .exec(&txn)
                .await?;
            if touched.rows_affected == 0 {
                return Err(AppError::NotFound("screen"));
            }
        }
        let clash = show::Entity::find()
            .filter(show::Column::ScreenId.eq(new.screen_id))
            .filter(show::Column::StartsAt.lt(ends_at + CHANGEOVER))
            .filter(show::Column::EndsAt.gt(new.starts_at - CHANGEOVER))
            .one(&txn)
            .await?;
        if let Some(other) = clash {
            return Err(AppError::bad_input(format!(
                "the screen is busy then: show {} runs from {} to {} (with {} minutes to change over)",
                other.id,
                other.starts_at.to_rfc3339(),
                other.ends_at.to_rfc3339(),
                CHANGEOVER.num_minutes()
            )));
        }
        let created = show::ActiveModel {
            movie_id: Set(new.movie_id),
            screen_id: Set(new.screen_id),
            starts_at: Set(new.starts_at),
            ends_at: Set(ends_at),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let rows: Vec<_> = prices
            .iter()
            .map(|(category, cents)| show_price::ActiveModel {
                show_id: Set(created.id),
                category: Set(category.clone()),
                price_cents: Set(*cents),
            })
            .collect();
        show_price::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        crate::audit::record(
            &txn,
            new.created_by,
            "show.created",
            crate::audit::About {
                show_id: Some(created.id),
                ..Default::default()
            },
            serde_json::json!({ "movieId": created.movie_id, "screenId": created.screen_id, "startsAt": created.starts_at }),
        )
        .await?;
        txn.commit().await?;
        Ok(created)
    }

    /// One show, from the cache when it was read before (shows are immutable).
    pub async fn show(&self, id: i64) -> AppResult<Option<show::Model>> {
        if let Some(s) = self.kept.shows.get(id) {
            return Ok(Some(s));
        }
        let found = show::Entity::find_by_id(id).one(&self.db).await?;
        if let Some(s) = &found {
            self.kept.shows.keep([(id, s.clone())]);
        }
        Ok(found)
    }

    /// A show with its layout and prices — what holds, checkout and the live map need to name
    /// and price seats. `NOT_FOUND` for an unknown show.
    pub async fn priced_show(&self, id: i64) -> AppResult<PricedShow> {
        let show = self.show(id).await?.ok_or(AppError::NotFound("show"))?;
        let layout = self
            .layouts()
            .layout(&self.db, show.screen_id)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("show {id} has no layout")))?;
        let prices = self.layouts().show_prices(&self.db, id).await?;
        Ok(PricedShow {
            show,
            layout,
            prices,
        })
    }

    pub async fn shows_by_ids(&self, ids: &[i64]) -> AppResult<Vec<show::Model>> {
        Ok(show::Entity::find()
            .filter(show::Column::Id.is_in(ids.to_vec()))
            .all(&self.db)
            .await?)
    }

    /// Shows soonest first. By default only those still bookable (not started); `after`
    /// continues a page. Served from memory for up to `kept::PAGE_FRESH` (a show that started
    /// meanwhile is left out).
    pub async fn list_shows(
        &self,
        first: u64,
        after: Option<ShowCursor>,
        include_past: bool,
        movie_id: Option<i64>,
    ) -> AppResult<ShowPage> {
        let key: PageKey = (
            first,
            after.map(|c| (c.starts_at.timestamp_micros(), c.id)),
            include_past,
            movie_id,
        );
        if let Some(mut page) = self.kept.pages.get(&key) {
            if !include_past {
                let now = Utc::now();
                page.shows.retain(|s| s.starts_at > now);
            }
            return Ok(page);
        }
        let page = self
            .query_shows(first, after, include_past, movie_id)
            .await?;
        self.kept.pages.keep(key, page.clone());
        Ok(page)
    }

    async fn query_shows(
        &self,
        first: u64,
        after: Option<ShowCursor>,
        include_past: bool,
        movie_id: Option<i64>,
    ) -> AppResult<ShowPage> {
        let mut q = show::Entity::find();
        if !include_past {
            q = q.filter(show::Column::StartsAt.gt(Utc::now()));
        }
        if let Some(m) = movie_id {
            q = q.filter(show::Column::MovieId.eq(m));
        }
        if let Some(c) = after {
            q = q.filter(
                Condition::any()
                    .add(show::Column::StartsAt.gt(c.starts_at))
                    .add(
                        Condition::all()
                            .add(Expr::col(show::Column::StartsAt).eq(c.starts_at))
                            .add(show::Column::Id.gt(c.id)),
                    ),
            );
        }
        let mut shows = q
            .order_by_asc(show::Column::StartsAt)
            .order_by_asc(show::Column::Id)
            .limit(first + 1)
            .all(&self.db)
            .await?;
        let has_next = shows.len() as u64 > first;
        shows.truncate(first as usize);
        Ok(ShowPage { shows, has_next })
    }
}

/// Exactly one non-negative price for every category of the screen; nothing else.
fn validate_prices(
    categories: &[String],
    prices: Vec<(String, i64)>,
) -> AppResult<HashMap<String, i64>> {
    let wanted: HashSet<&str> = categories.iter().map(String::as_str).collect();
    let mut out = HashMap::new();
    for (cat, cents) in prices {
        let cat = cat.trim().to_uppercase();
        if !wanted.contains(cat.as_str()) {
            return Err(AppError::bad_input(format!(
                "the screen has no seat category {cat}; its categories are {}",
                categories.join(", ")
            )));
        }
        if !(0..=10_000_000).contains(&cents) {
            return Err(AppError::bad_input(format!(
                "the price of {cat} must be from 0 to 10000000 cents"
            )));
        }
        if out.insert(cat.clone(), cents).is_some() {
            return Err(AppError::bad_input(format!(
                "category {cat} is priced twice"
            )));
        }
    }
    let missing: Vec<&str> = categories
        .iter()
        .map(String::as_str)
        .filter(|c| !out.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(AppError::bad_input(format!(
            "missing a price for: {}",
            missing.join(", ")
        )));
    }
    Ok(out)
}
