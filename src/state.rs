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

/// Everything a request needs, behind one shared allocation: a clone is one reference count.
/// (The services are handles full of `Arc`s; cloning them all for every request — the handler's
/// state, the request's loaders — was 3% of the machine's samples under a hold load, most of
/// it contended reference counts, in a `perf` profile of 2026-12-03.)
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services of [`AppState`].
pub struct Services {
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
