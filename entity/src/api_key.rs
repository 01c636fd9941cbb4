//! An API key of a server-to-server client. `secret_hash` is the hex SHA-256 of the secret
//! (never stored); `scopes` a comma-separated list of scope names; a key with `revoked_at` set
//! no longer works.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    #[sea_orm(unique)]
    pub secret_hash: String,
    /// The secret's first characters, to tell keys apart in a list.
    pub prefix: String,
    pub scopes: String,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
