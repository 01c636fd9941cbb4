//! One seat of a screen's layout. `(screen_id, row_label, number)` is unique; `row_index` and
//! `col_index` place the seat on the drawn map (0-based, front row first).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "seats")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub screen_id: i64,
    pub row_label: String,
    pub number: i32,
    pub category: String,
    pub row_index: i32,
    pub col_index: i32,
    /// A wheelchair space (no fixed seat).
    pub wheelchair: bool,
    /// A companion seat beside a wheelchair space.
    pub companion: bool,
    /// The view of the screen is partly blocked.
    pub restricted_view: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
