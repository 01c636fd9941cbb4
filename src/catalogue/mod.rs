//! The catalogue: venues, screens and their seat layouts, movies, shows and their prices.
//! Service functions over SeaORM; resolvers call these and never build SQL themselves.
pub mod demo;
mod kept;
pub mod layout;
pub mod plan;
pub mod sales;
pub mod seat_info;
pub mod seatmap;
mod shows;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use entity::{movie, screen, seat, venue};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};

pub use kept::PAGE_FRESH;
pub use shows::{NewShow, PricedShow, ShowPage};

pub fn shows_max_page() -> u64 {
    shows::MAX_PAGE
}

use crate::error::{AppError, AppResult};
use layout::LayoutCache;

pub const DEFAULT_CATEGORY: &str = "STANDARD";
const MAX_ROWS: usize = 100;
const MAX_SEATS_PER_ROW: i32 = 200;
const MAX_SEATS_PER_SCREEN: usize = 20_000;

/// One row of a new screen, front row first.
#[derive(Debug, Clone, Default)]
pub struct NewRow {
    pub label: String,
    pub seats: i32,
    pub category: Option<String>,
    /// An aisle (one empty column) after each of these seat numbers.
    pub aisle_after: Vec<i32>,
    /// Seat numbers that are wheelchair spaces.
    pub wheelchair: Vec<i32>,
    /// Seat numbers that are companion seats (each beside a wheelchair space).
    pub companion: Vec<i32>,
    /// Seat numbers with a restricted view.
    pub restricted_view: Vec<i32>,
}

impl NewRow {
    /// Columns the row takes: its seats and its aisles.
    fn width(&self) -> i32 {
        self.seats + self.aisle_after.len() as i32
    }

    /// Column of seat `n` within the row (aisles before it push it right).
    fn column(&self, n: i32) -> i32 {
        n - 1 + self.aisle_after.iter().filter(|a| **a < n).count() as i32
    }

    /// Checks the seat-number lists: in range, no repeats, an aisle strictly inside the row,
    /// no seat both a wheelchair space and a companion seat, every companion seat beside a
    /// wheelchair space with no aisle between.
    fn validate_attributes(&mut self) -> AppResult<()> {
        let label = self.label.clone();
        let seats = self.seats;
        let check = |list: &mut Vec<i32>, what: &str, hi: i32| -> AppResult<()> {
            list.sort_unstable();
            if let Some(bad) = list.iter().find(|n| !(1..=hi).contains(*n)) {
                return Err(AppError::bad_input(format!(
                    "row {label}: {what} {bad} is not a seat number from 1 to {hi}"
                )));
            }
            if list.windows(2).any(|w| w[0] == w[1]) {
                return Err(AppError::bad_input(format!(
                    "row {label}: a seat number appears twice in {what}"
                )));
            }
            Ok(())
        };
        check(&mut self.aisle_after, "aisleAfter", (seats - 1).max(0))?;
        check(&mut self.wheelchair, "wheelchair", seats)?;
        check(&mut self.companion, "companion", seats)?;
        check(&mut self.restricted_view, "restrictedView", seats)?;
        if let Some(n) = self.companion.iter().find(|n| self.wheelchair.contains(n)) {
            return Err(AppError::bad_input(format!(
                "row {label}: seat {n} cannot be both a wheelchair space and a companion seat"
            )));
        }
        for &n in &self.companion {
            let beside =
                |m: i32| self.wheelchair.contains(&m) && !self.aisle_after.contains(&n.min(m));
            if !beside(n - 1) && !beside(n + 1) {
                return Err(AppError::bad_input(format!(
                    "row {label}: companion seat {n} is not beside a wheelchair space"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Catalogue {
    pub(crate) db: DatabaseConnection,
    pub(crate) layouts: Arc<LayoutCache>,
    pub(crate) kept: Arc<KeptRows>,
}

/// Catalogue rows and show-list pages served from memory (`kept.rs`).
#[derive(Default)]
pub(crate) struct KeptRows {
    /// `holdSeats` reads its show on every call; this saves a database round trip.
    pub(crate) shows: kept::Kept<entity::show::Model>,
    pub(crate) movies: kept::Kept<movie::Model>,
    pub(crate) screens: kept::Kept<screen::Model>,
    pub(crate) venues: kept::Kept<venue::Model>,
    pub(crate) pages: kept::Recent<shows::PageKey, ShowPage>,
}

impl Catalogue {
    pub fn new(db: DatabaseConnection) -> Self {
        Catalogue {
            db,
            layouts: Arc::new(LayoutCache::default()),
            kept: Arc::default(),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
    pub fn layouts(&self) -> &LayoutCache {
        &self.layouts
    }
    /// Bumped by every show created on this instance: answers that list shows and were built
    /// before it are stale.
    pub fn list_generation(&self) -> u64 {
        self.kept.pages.generation()
    }

    pub async fn create_venue(&self, name: &str, city: &str) -> AppResult<venue::Model> {
        let name = clean_text(name, "venue name", 120)?;
        let city = clean_text(city, "city", 120)?;
        let row = venue::ActiveModel {
            name: Set(name),
            city: Set(city),
            created_at: Set(Utc::now()),
            ..Default::default()
        };
        row.insert(&self.db).await.map_err(|e| {
            unique_as_bad_input(e, "a venue with this name already exists in this city")
        })
    }

    /// A screen and all its seats, in one transaction. Rows are centred on the widest row so
    /// that the drawn map looks like the room.
    pub async fn create_screen(
        &self,
        venue_id: i64,
        name: &str,
        rows: Vec<NewRow>,
        best_point: Option<(f64, f64)>,
    ) -> AppResult<screen::Model> {
        let name = clean_text(name, "screen name", 120)?;
        let rows = validate_rows(rows)?;
        if venue::Entity::find_by_id(venue_id)
            .one(&self.db)
            .await?
            .is_none()
        {
            return Err(AppError::NotFound("venue"));
        }
        let widest = rows.iter().map(NewRow::width).max().unwrap_or(0);
        if let Some((row, col)) = best_point {
            let ok = row.is_finite()
                && col.is_finite()
                && (0.0..=rows.len() as f64).contains(&row)
                && (0.0..=widest as f64).contains(&col);
            if !ok {
                return Err(AppError::bad_input(format!(
                    "bestPoint must lie on the seat map: row 0 to {}, column 0 to {widest}",
                    rows.len()
                )));
            }
        }
        let txn = self.db.begin().await?;
        let screen = screen::ActiveModel {
            venue_id: Set(venue_id),
            name: Set(name),
            created_at: Set(Utc::now()),
            focal_row: Set(best_point.map(|p| p.0)),
            focal_col: Set(best_point.map(|p| p.1)),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(|e| unique_as_bad_input(e, "this venue already has a screen with this name"))?;
        let mut seats = Vec::new();
        for (ri, row) in rows.iter().enumerate() {
            let offset = (widest - row.width()) / 2;
            let category = row
                .category
                .clone()
                .unwrap_or_else(|| DEFAULT_CATEGORY.to_string());
            for n in 1..=row.seats {
                seats.push(seat::ActiveModel {
                    screen_id: Set(screen.id),
                    row_label: Set(row.label.clone()),
                    number: Set(n),
                    category: Set(category.clone()),
                    row_index: Set(ri as i32),
                    col_index: Set(offset + row.column(n)),
                    wheelchair: Set(row.wheelchair.contains(&n)),
                    companion: Set(row.companion.contains(&n)),
                    restricted_view: Set(row.restricted_view.contains(&n)),
                    ..Default::default()
                });
            }
        }
        // Bounded batches keep every statement under the backends' parameter limits.
        for chunk in seats.chunks(500) {
            seat::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(screen)
    }

    pub async fn create_movie(
        &self,
        title: &str,
        duration_minutes: i32,
    ) -> AppResult<movie::Model> {
        let title = clean_text(title, "title", 200)?;
        if !(1..=1000).contains(&duration_minutes) {
            return Err(AppError::bad_input(
                "durationMinutes must be from 1 to 1000",
            ));
        }
        let row = movie::ActiveModel {
            title: Set(title),
            duration_minutes: Set(duration_minutes),
            created_at: Set(Utc::now()),
            ..Default::default()
        };
        Ok(row.insert(&self.db).await?)
    }

    pub async fn venues(&self, ids: &[i64]) -> AppResult<Vec<venue::Model>> {
        self.kept
            .venues
            .many(
                ids,
                |v| v.id,
                |ids| async move {
                    Ok(venue::Entity::find()
                        .filter(venue::Column::Id.is_in(ids))
                        .all(&self.db)
                        .await?)
                },
            )
            .await
    }
    pub async fn all_venues(&self) -> AppResult<Vec<venue::Model>> {
        use sea_orm::QueryOrder;
        Ok(venue::Entity::find()
            .order_by_asc(venue::Column::Id)
            .all(&self.db)
            .await?)
    }
    pub async fn screens(&self, ids: &[i64]) -> AppResult<Vec<screen::Model>> {
        self.kept
            .screens
            .many(
                ids,
                |s| s.id,
                |ids| async move {
                    Ok(screen::Entity::find()
                        .filter(screen::Column::Id.is_in(ids))
                        .all(&self.db)
                        .await?)
                },
            )
            .await
    }
    pub async fn movies(&self, ids: &[i64]) -> AppResult<Vec<movie::Model>> {
        self.kept
            .movies
            .many(
                ids,
                |m| m.id,
                |ids| async move {
                    Ok(movie::Entity::find()
                        .filter(movie::Column::Id.is_in(ids))
                        .all(&self.db)
                        .await?)
                },
            )
            .await
    }
}

fn validate_rows(rows: Vec<NewRow>) -> AppResult<Vec<NewRow>> {
    if rows.is_empty() {
        return Err(AppError::bad_input("a screen needs at least one row"));
    }
    if rows.len() > MAX_ROWS {
        return Err(AppError::bad_input(format!(
            "a screen has at most {MAX_ROWS} rows"
        )));
    }
    let mut labels = HashSet::new();
    let mut total = 0usize;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let label = row.label.trim().to_uppercase();
        let label_ok = !label.is_empty()
            && label.len() <= 4
            && label.chars().all(|c| c.is_ascii_alphanumeric());
        if !label_ok {
            return Err(AppError::bad_input(format!(
                "row label {:?} must be 1–4 letters or digits",
                row.label
            )));
        }
        if !labels.insert(label.clone()) {
            return Err(AppError::bad_input(format!(
                "row label {label} appears twice"
            )));
        }
        if !(1..=MAX_SEATS_PER_ROW).contains(&row.seats) {
            return Err(AppError::bad_input(format!(
                "row {label} must have 1 to {MAX_SEATS_PER_ROW} seats"
            )));
        }
        let category = match row.category {
            None => None,
            Some(c) => {
                let c = c.trim().to_uppercase();
                let ok = !c.is_empty()
                    && c.len() <= 32
                    && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
                if !ok {
                    return Err(AppError::bad_input(format!(
                        "category {c:?} must be 1–32 letters, digits or underscores"
                    )));
                }
                Some(c)
            }
        };
        total += row.seats as usize;
        let mut row = NewRow {
            label,
            category,
            ..row
        };
        row.validate_attributes()?;
        out.push(row);
    }
    if total > MAX_SEATS_PER_SCREEN {
        return Err(AppError::bad_input(format!(
            "a screen has at most {MAX_SEATS_PER_SCREEN} seats"
        )));
    }
    Ok(out)
}

/// Trimmed, non-empty, bounded, no control characters.
pub(crate) fn clean_text(s: &str, what: &str, max: usize) -> AppResult<String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(AppError::bad_input(format!("the {what} must not be empty")));
    }
    if t.chars().count() > max {
        return Err(AppError::bad_input(format!(
            "the {what} must have at most {max} characters"
        )));
    }
    if t.chars().any(char::is_control) {
        return Err(AppError::bad_input(format!(
            "the {what} contains control characters"
        )));
    }
    Ok(t.to_string())
}

fn unique_as_bad_input(e: sea_orm::DbErr, msg: &str) -> AppError {
    if crate::db::unique_violation(&e).is_some() {
        AppError::bad_input(msg)
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, seats: i32, category: Option<&str>) -> NewRow {
        NewRow {
            label: label.into(),
            seats,
            category: category.map(str::to_string),
            ..Default::default()
        }
    }

    fn refused(rows: Vec<NewRow>) -> String {
        match validate_rows(rows) {
            Err(AppError::BadInput(m)) => m,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn rows_are_normalised() {
        let rows = validate_rows(vec![row(" a ", 10, Some("premium")), row("b2", 1, None)])
            .expect("valid");
        assert_eq!(rows[0].label, "A");
        assert_eq!(rows[0].category.as_deref(), Some("PREMIUM"));
        assert_eq!(
            (rows[1].label.as_str(), rows[1].category.as_deref()),
            ("B2", None)
        );
    }

    #[test]
    fn bad_layouts_are_refused_with_what_is_wrong() {
        assert!(refused(vec![]).contains("at least one row"));
        assert!(refused(vec![row("A", 1, None), row("a", 1, None)]).contains("twice"));
        assert!(refused(vec![row("", 1, None)]).contains("row label"));
        assert!(refused(vec![row("ABCDE", 1, None)]).contains("row label"));
        assert!(refused(vec![row("A-1", 1, None)]).contains("row label"));
        assert!(refused(vec![row("A", 0, None)]).contains("1 to 200"));
        assert!(refused(vec![row("A", 201, None)]).contains("1 to 200"));
        assert!(refused(vec![row("A", 5, Some("vip lounge"))]).contains("category"));
        let many: Vec<NewRow> = (0..=MAX_ROWS)
            .map(|i| row(&format!("R{i}"), 1, None))
            .collect();
        assert!(refused(many).contains("at most 100 rows"));
        // The largest layout the row limits allow is exactly the seat limit, and is accepted.
        let largest: Vec<NewRow> = (0..MAX_ROWS)
            .map(|i| row(&format!("R{i}"), MAX_SEATS_PER_ROW, None))
            .collect();
        assert_eq!(
            validate_rows(largest).expect("valid").len() * MAX_SEATS_PER_ROW as usize,
            MAX_SEATS_PER_SCREEN
        );
    }

    #[test]
    fn aisles_and_seat_attributes_are_checked() {
        let with = |f: fn(&mut NewRow)| {
            let mut r = row("A", 6, None);
            f(&mut r);
            vec![r]
        };
        // Aisles push the seats after them one column right; lists come back sorted.
        let ok = validate_rows(with(|r| {
            r.aisle_after = vec![4, 2];
            r.wheelchair = vec![1];
            r.companion = vec![2];
        }))
        .expect("valid");
        assert_eq!(ok[0].aisle_after, vec![2, 4]);
        assert_eq!(ok[0].width(), 8);
        let cols: Vec<i32> = (1..=6).map(|n| ok[0].column(n)).collect();
        assert_eq!(cols, vec![0, 1, 3, 4, 6, 7]);
        assert!(refused(with(|r| r.aisle_after = vec![6])).contains("aisleAfter 6"));
        assert!(refused(with(|r| r.aisle_after = vec![0])).contains("aisleAfter 0"));
        assert!(refused(with(|r| r.wheelchair = vec![7])).contains("wheelchair 7"));
        assert!(refused(with(|r| r.restricted_view = vec![2, 2])).contains("twice"));
        assert!(refused(with(|r| {
            r.wheelchair = vec![3];
            r.companion = vec![3];
        }))
        .contains("both"));
        // A companion seat must be beside a wheelchair space, with no aisle between.
        assert!(refused(with(|r| {
            r.wheelchair = vec![1];
            r.companion = vec![3];
        }))
        .contains("companion seat 3"));
        assert!(refused(with(|r| {
            r.wheelchair = vec![2];
            r.companion = vec![3];
            r.aisle_after = vec![2];
        }))
        .contains("companion seat 3"));
    }

    #[test]
    fn text_is_trimmed_bounded_and_printable() {
        assert_eq!(clean_text("  Odeon ", "name", 10).expect("ok"), "Odeon");
        assert!(clean_text("   ", "name", 10).is_err());
        assert!(clean_text("abcdefghijk", "name", 10).is_err());
        assert!(clean_text("a\u{7}b", "name", 10).is_err());
    }
}
