//! A show's on-sale settings: when sales open and, when the waiting room is on, how many
//! visitors are admitted per minute and for how long. A show without a row has no waiting room.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "show_sales")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub show_id: i64,
    pub opens_at: DateTimeUtc,
    pub admit_per_minute: i32,
    /// How long an admitted visitor may shop, in seconds.
    pub session_seconds: i32,
    pub queue_enabled: bool,
    /// Most visitors shopping at once (`None`: no cap beyond the admission rate).
    pub max_shoppers: Option<i32>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
