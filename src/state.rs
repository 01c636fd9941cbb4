//! `AppState`: the services every request and subscription needs. Built by `app`, read by
//! `graphql` and `http`; this module depends on the services only, never on who builds it.
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::auth::accounts::Accounts;
use crate::auth::keys::ApiKeys;
use crate::booking::Bookings;
use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::db::DbStats;
use crate::holds::Holds;
use crate::limits::Limits;
use crate::live::Hub;
use crate::queue::WaitingRoom;

/// Everything a request needs; cheap to clone (handles and Arcs inside).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub db_stats: Arc<DbStats>,
    pub catalogue: Catalogue,
    pub accounts: Accounts,
    pub keys: Arc<ApiKeys>,
    pub webhooks: crate::webhooks::Webhooks,
    pub bookings: Bookings,
    pub holds: Holds,
    pub queue: WaitingRoom,
    pub live: Hub,
    pub limits: Arc<Limits>,
    pub shutdown: CancellationToken,
}
