//! The price of one seat category for one show. Every category of the screen has a row.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "show_prices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub show_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub category: String,
    pub price_cents: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
