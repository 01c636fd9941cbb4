//! Seat holds and the live state of each show's seat map.
//!
//! Until holds land, a show's live state is its booked seats from the database at version 0.
use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::catalogue::seatmap::{self, SharedState, ShowState};
use crate::error::AppResult;

#[derive(Clone)]
pub struct Holds {
    db: DatabaseConnection,
}

impl Holds {
    pub fn new(db: DatabaseConnection) -> Self {
        Holds { db }
    }

    /// A consistent snapshot of each show's live state, for many shows at once.
    pub async fn states(&self, show_ids: &[i64]) -> AppResult<HashMap<i64, SharedState>> {
        let booked = seatmap::booked_from_db(&self.db, show_ids).await?;
        Ok(booked
            .into_iter()
            .map(|(id, booked)| {
                (
                    id,
                    Arc::new(ShowState {
                        version: 0,
                        held: HashMap::new(),
                        booked,
                    }),
                )
            })
            .collect())
    }

    pub async fn ping(&self) -> bool {
        true
    }
}
