//! On-sale settings per show (`show_sales`): when sales open and how the waiting room admits.
use chrono::{DateTime, Utc};
use entity::show_sale;
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};

use super::Catalogue;
use crate::error::{AppError, AppResult};

/// What an admin sets with `setOnSale`.
#[derive(Debug, Clone)]
pub struct NewSale {
    pub opens_at: DateTime<Utc>,
    pub admit_per_minute: i32,
    pub session_seconds: i32,
    pub queue_enabled: bool,
    pub max_shoppers: Option<i32>,
}

impl Catalogue {
    /// The show's on-sale settings, if any were set.
    pub async fn sale(&self, show_id: i64) -> AppResult<Option<show_sale::Model>> {
        Ok(show_sale::Entity::find_by_id(show_id).one(&self.db).await?)
    }

    /// Create or replace the show's on-sale settings.
    pub async fn set_sale(&self, show_id: i64, s: NewSale) -> AppResult<show_sale::Model> {
        if !(1..=60_000).contains(&s.admit_per_minute) {
            return Err(AppError::bad_input(
                "admitPerMinute must be from 1 to 60000",
            ));
        }
        if !(1..=86_400).contains(&s.session_seconds) {
            return Err(AppError::bad_input(
                "a shopping session lasts from 1 second to 24 hours",
            ));
        }
        if s.max_shoppers.is_some_and(|m| m < 1) {
            return Err(AppError::bad_input("maxShoppers must be at least 1"));
        }
        let show = self
            .show(show_id)
            .await?
            .ok_or(AppError::NotFound("show"))?;
        if show.starts_at <= Utc::now() {
            return Err(AppError::bad_input("this show has already started"));
        }
        if s.opens_at >= show.starts_at {
            return Err(AppError::bad_input(
                "sales must open before the show starts",
            ));
        }
        let row = show_sale::ActiveModel {
            show_id: Set(show_id),
            opens_at: Set(s.opens_at),
            admit_per_minute: Set(s.admit_per_minute),
            session_seconds: Set(s.session_seconds),
            queue_enabled: Set(s.queue_enabled),
            max_shoppers: Set(s.max_shoppers),
            updated_at: Set(Utc::now()),
        };
        show_sale::Entity::insert(row)
            .on_conflict(
                OnConflict::column(show_sale::Column::ShowId)
                    .update_columns([
                        show_sale::Column::OpensAt,
                        show_sale::Column::AdmitPerMinute,
                        show_sale::Column::SessionSeconds,
                        show_sale::Column::QueueEnabled,
                        show_sale::Column::MaxShoppers,
                        show_sale::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        self.sale(show_id)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("on-sale settings vanished")))
    }
}
