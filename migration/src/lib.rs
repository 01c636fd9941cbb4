//! Database migrations, one file per change, run at start-up and by `boxoffice migrate`.
//! The same code builds the schema on SQLite and PostgreSQL. Never edit a landed migration:
//! add a new one.
pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_schema;
mod m20261124_000002_checkout;
mod m20261201_000003_seat_attributes;
mod m20261201_000004_on_sale;
mod m20261201_000005_api_keys;
mod m20261201_000006_webhooks;
mod m20261201_000007_audit_log;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_schema::Migration),
            Box::new(m20261124_000002_checkout::Migration),
            Box::new(m20261201_000003_seat_attributes::Migration),
            Box::new(m20261201_000004_on_sale::Migration),
            Box::new(m20261201_000005_api_keys::Migration),
            Box::new(m20261201_000006_webhooks::Migration),
            Box::new(m20261201_000007_audit_log::Migration),
        ]
    }
}
