//! Seat holds: a seat is held by at most one live hold, never while booked, all or nothing, and
//! never for ever. Two stores with the same semantics: Redis (Lua scripts, several instances) and
//! in-process (one instance). The `Holds` service validates requests and applies limits; the
//! stores only do the atomic part.
pub mod best;
pub mod memory;
pub mod redis;
pub mod rowlock;
mod shared_counts;
mod store;
pub mod sweeper;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

pub use store::{
    Admitted, BestOutcome, BestRequest, ExtendOutcome, FeedItem, FeedSink, HoldOutcome, HoldRecord,
    HoldRequest, HoldStore, Interest, LiveCounts, NeedsQueueConfig, Place, PlaceState, QueueConfig,
    QueueReply, ReleaseOutcome, SeatChange, SeatEvent, StoreError,
};

/// Which store keeps the holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In this process (one instance).
    Memory,
    /// Redis: Lua scripts, shared by every instance.
    Redis,
    /// PostgreSQL row locks: the benchmark's baseline.
    PgRowLock,
}

/// What the hold store needs to connect.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub kind: StoreKind,
    pub redis_url: Option<String>,
    pub key_prefix: String,
    /// Timeout of every call to the store.
    pub timeout: Duration,
    /// How long a show's Redis keys outlive its start.
    pub key_grace: Duration,
    /// Serve holds under a Redis eviction policy that may drop our keys.
    pub allow_eviction: bool,
}

impl StoreSettings {
    /// A Redis store at `url` under `prefix`, with the default lifetime and eviction rules.
    pub fn redis(url: &str, prefix: &str, timeout: Duration) -> StoreSettings {
        StoreSettings {
            kind: StoreKind::Redis,
            redis_url: Some(url.to_string()),
            key_prefix: prefix.to_string(),
            timeout,
            key_grace: Duration::from_secs(86_400),
            allow_eviction: false,
        }
    }
}

/// The rules every hold obeys.
#[derive(Debug, Clone, Copy)]
pub struct HoldRules {
    pub ttl: Duration,
    pub max_seats: u32,
    pub max_holds: u32,
}

use crate::auth::Viewer;
use crate::catalogue::layout::Layout;
use crate::catalogue::plan::BEST_AVAILABLE_MAX;
use crate::catalogue::seatmap::{SharedState, ShowState};
use crate::catalogue::Catalogue;
use crate::error::{AppError, AppResult};
use best::BestAsk;

/// A hold as the API returns it.
#[derive(Debug, Clone)]
pub struct GrantedHold {
    pub id: String,
    pub show_id: i64,
    pub seat_ids: Vec<i64>,
    pub expires_at: DateTime<Utc>,
    pub version: i64,
    /// Every seat side by side in one row.
    pub next_to_each_other: bool,
}

/// What `holdBestAvailable` asks for, as the client sent it.
#[derive(Debug, Clone, Default)]
pub struct BestWish {
    pub count: i32,
    pub categories: Option<Vec<String>>,
    pub together: bool,
    pub wheelchair_spaces: i32,
}

/// Hold ids carry their show (so that every key of a hold is found in one slot without a global
/// index) and 128 random bits (so that they cannot be guessed): `<show>-<32 hex digits>`.
pub fn new_hold_id(show_id: i64) -> String {
    use std::fmt::Write as _;
    let mut id = String::with_capacity(20 + 1 + 32);
    let _ = write!(id, "{show_id}-");
    crate::ids::push_random_hex::<16>(&mut id);
    id
}

/// The show of a well-formed hold id; `None` for anything else.
pub fn parse_hold_id(id: &str) -> Option<i64> {
    let (show, random) = id.split_once('-')?;
    // Exactly what `new_hold_id` writes: no sign, no spaces (found by tests/parsers.rs).
    if show.is_empty() || !show.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if random.len() != 32
        || !random
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    crate::ids::parse_id(show, "show").ok()
}

/// The only door to the hold store: requests from users are validated here, and what bookings
/// need of the store has a method named for its intent.
#[derive(Clone)]
pub struct Holds {
    store: Arc<dyn HoldStore>,
    catalogue: Catalogue,
    rules: HoldRules,
    /// The last state read of each show, shared by every reader until the store says it
    /// changed (`HoldStore::snapshot_since`).
    states: Arc<std::sync::Mutex<HashMap<i64, SharedState>>>,
    /// Live counts for the show list, read once for every request waiting at the same moment.
    counts: Arc<shared_counts::SharedCounts>,
}

/// Counts reads in flight at once (each serves every request that was waiting when it began).
const COUNTS_READERS: usize = 2;

/// Shows whose last state `Holds` keeps before it starts over (a few MB at most).
const KEPT_STATES: usize = 4096;

/// `holds_total` by outcome, its handles looked up once rather than on every hold.
struct HoldCounts {
    granted: metrics::Counter,
    unavailable: metrics::Counter,
    limit: metrics::Counter,
    not_admitted: metrics::Counter,
}

static HOLDS: std::sync::LazyLock<HoldCounts> = std::sync::LazyLock::new(|| HoldCounts {
    granted: metrics::counter!("holds_total", "outcome" => "granted"),
    unavailable: metrics::counter!("holds_total", "outcome" => "unavailable"),
    limit: metrics::counter!("holds_total", "outcome" => "limit"),
    not_admitted: metrics::counter!("holds_total", "outcome" => "not_admitted"),
});

impl Holds {
    /// Called from within the runtime: it starts the counts readers.
    pub fn new(store: Arc<dyn HoldStore>, catalogue: Catalogue, rules: HoldRules) -> Self {
        let reads = store.clone();
        let read: shared_counts::Read = Arc::new(move |ids: Vec<i64>| {
            let store = reads.clone();
            Box::pin(async move { store.counts(&ids).await })
        });
        Holds {
            store,
            catalogue,
            rules,
            states: Arc::default(),
            counts: Arc::new(shared_counts::SharedCounts::start(read, COUNTS_READERS)),
        }
    }

    pub fn rules(&self) -> HoldRules {
        self.rules
    }

    /// `redis`, `memory` or `pg-rowlock`, for logs and metrics.
    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Start the store's event feed for a live hub (see `HoldStore::start_feed`).
    pub fn start_feed(
        &self,
        interest: tokio::sync::mpsc::UnboundedReceiver<Interest>,
        sink: FeedSink,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        self.store.start_feed(interest, sink, shutdown)
    }

    /// Expire and announce every hold that is due (the sweeper's pass).
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        self.store.sweep().await
    }

    /// Seats were committed as booked in the database: mirror it, consuming the hold if given.
    pub async fn mirror_booked(
        &self,
        show_id: i64,
        hold_id: Option<&str>,
        seats: &[i64],
    ) -> Result<i64, StoreError> {
        self.store.book(show_id, hold_id, seats).await
    }

    /// A booking's seats were freed in the database: mirror it.
    pub async fn mirror_freed(&self, show_id: i64, seats: &[i64]) -> Result<i64, StoreError> {
        self.store.unbook(show_id, seats).await
    }

    /// End a hold on its owner's behalf (its checkout failed, or it outlived its booking).
    pub async fn give_back(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
    ) -> Result<ReleaseOutcome, StoreError> {
        self.store.release(show_id, hold_id, user_id).await
    }

    /// The store's own state of these shows, with no fallback (convergence compares it with
    /// the database).
    pub async fn store_states(
        &self,
        show_ids: &[i64],
    ) -> Result<HashMap<i64, ShowState>, StoreError> {
        self.store.snapshot(show_ids).await
    }

    /// A consistent snapshot of each show's live state, for many shows at once.
    /// When the hold store is unreachable the seat maps still answer, from the database: booked
    /// seats are exact (the database is their source of truth), holds are unknown and the state
    /// says so (`holds_unknown`, GraphQL `Show.holdsKnown`).
    ///
    /// One snapshot per map state is shared by every reader: the store is asked whether each
    /// show is still at the stamp of the state kept here and sends a show's map only when it
    /// changed, so a thousand readers of an unchanged map cost a thousand tiny round trips and
    /// one map (and what is derived from it: counts, the compact string) between them.
    pub async fn states(&self, show_ids: &[i64]) -> AppResult<HashMap<i64, SharedState>> {
        let kept: Vec<Option<SharedState>> = {
            let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
            show_ids.iter().map(|id| states.get(id).cloned()).collect()
        };
        let asks: Vec<(i64, Option<&str>)> = show_ids
            .iter()
            .zip(&kept)
            .map(|(id, k)| (*id, k.as_ref().and_then(|s| s.stamp.as_deref())))
            .collect();
        match self.store.snapshot_since(&asks).await {
            Ok(mut fresh) => {
                let mut out = HashMap::with_capacity(show_ids.len());
                let mut new = Vec::new();
                for (id, kept) in show_ids.iter().zip(kept) {
                    match (fresh.remove(id), kept) {
                        (Some(None), Some(k)) => {
                            metrics::counter!("seat_map_snapshots_total", "outcome" => "reused")
                                .increment(1);
                            out.insert(*id, k);
                        }
                        (Some(Some(state)), _) => {
                            metrics::counter!("seat_map_snapshots_total", "outcome" => "read")
                                .increment(1);
                            let state = Arc::new(state);
                            if state.stamp.is_some() {
                                new.push((*id, state.clone()));
                            }
                            out.insert(*id, state);
                        }
                        _ => {}
                    }
                }
                if !new.is_empty() {
                    let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
                    if states.len() + new.len() > KEPT_STATES {
                        states.clear();
                    }
                    states.extend(new);
                }
                Ok(out)
            }
            Err(StoreError::Unavailable(cause)) => {
                tracing::warn!(%cause, "hold store unavailable: seat maps from the database");
                self.states_from_database(show_ids).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Each show's live counts without its map (a page of the show list): two numbers per show
    /// from the store, however many seats are held. From the database alone when the store is
    /// unreachable (`holds_unknown`, held 0).
    /// Requests waiting at the same moment share one read (`shared_counts`); each sees every
    /// change made before it began.
    pub async fn counts(&self, show_ids: &[i64]) -> AppResult<HashMap<i64, LiveCounts>> {
        match self.counts.read(show_ids).await {
            Ok(c) => Ok(c),
            Err(StoreError::Unavailable(cause)) => {
                tracing::warn!(%cause, "hold store unavailable: counts from the database");
                Ok(self
                    .states_from_database(show_ids)
                    .await?
                    .into_iter()
                    .map(|(id, s)| (id, LiveCounts::of(&s)))
                    .collect())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn states_from_database(&self, show_ids: &[i64]) -> AppResult<HashMap<i64, SharedState>> {
        let booked =
            crate::catalogue::seatmap::booked_from_db(self.catalogue.db(), show_ids).await?;
        Ok(booked
            .into_iter()
            .map(|(show, booked)| {
                let state = ShowState {
                    booked,
                    holds_unknown: true,
                    ..ShowState::default()
                };
                (show, Arc::new(state))
            })
            .collect())
    }

    /// The show's waiting-room settings as the database has them (`OFF` without a row).
    pub async fn queue_config(&self, show_id: i64) -> AppResult<QueueConfig> {
        Ok(self
            .catalogue
            .sale(show_id)
            .await?
            .map_or(QueueConfig::OFF, |s| QueueConfig::of_sale(&s)))
    }

    /// Mirror the show's waiting-room settings into the store when it lacks them (first use, or
    /// Redis lost its data); a newer `setOnSale` written meanwhile is kept.
    pub async fn mirror_queue_config(&self, show_id: i64) -> AppResult<()> {
        let config = self.queue_config(show_id).await?;
        Ok(self.store.configure_queue(show_id, config, true).await?)
    }

    /// Run a store call; when the store lacks the show's waiting-room settings (first use, or
    /// Redis lost its data), mirror them from the database and run it once more.
    pub async fn with_queue_config<T, F, Fut>(&self, show_id: i64, call: F) -> AppResult<T>
    where
        T: NeedsQueueConfig,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let first = call().await?;
        if !first.needs_queue_config() {
            return Ok(first);
        }
        self.mirror_queue_config(show_id).await?;
        let again = call().await?;
        if again.needs_queue_config() {
            return Err(queue_config_missing(show_id));
        }
        Ok(again)
    }

    /// Write the show's settings into the store (after `setOnSale` committed them).
    pub async fn set_queue_config(&self, show_id: i64) -> AppResult<()> {
        let config = self.queue_config(show_id).await?;
        Ok(self.store.configure_queue(show_id, config, false).await?)
    }

    pub async fn ping(&self) -> bool {
        self.store.ping().await
    }

    /// Hold every requested seat or none.
    pub async fn hold(
        &self,
        viewer: &Viewer,
        show_id: i64,
        raw_seats: &[String],
    ) -> AppResult<GrantedHold> {
        let user = viewer.require_user()?;
        let priced = self.catalogue.priced_show(show_id).await?;
        not_started(&priced.show)?;
        let layout = &priced.layout;
        let seats = self.validate_seats(layout, raw_seats).await?;
        let hold_id = new_hold_id(show_id);
        let request = HoldRequest {
            show_id,
            hold_id: &hold_id,
            user_id: user,
            seats: &seats,
            ttl: self.rules.ttl,
            max_holds: self.rules.max_holds,
        };
        let outcome = self
            .with_queue_config(show_id, || self.store.hold(&request))
            .await?;
        match outcome {
            HoldOutcome::NeedQueueConfig => Err(queue_config_missing(show_id)),
            HoldOutcome::NotAdmitted => {
                HOLDS.not_admitted.increment(1);
                Err(AppError::NotAdmitted)
            }
            HoldOutcome::Granted {
                version,
                expires_ms,
            } => {
                HOLDS.granted.increment(1);
                Ok(GrantedHold {
                    id: hold_id,
                    show_id,
                    next_to_each_other: layout.side_by_side(&seats),
                    seat_ids: seats,
                    expires_at: DateTime::from_timestamp_millis(expires_ms)
                        .unwrap_or_else(Utc::now),
                    version,
                })
            }
            HoldOutcome::Unavailable(taken) => {
                HOLDS.unavailable.increment(1);
                let labels: Vec<String> = taken
                    .iter()
                    .filter_map(|s| layout.seat(*s).map(|i| i.label()))
                    .collect();
                Err(AppError::SeatsUnavailable {
                    seat_ids: taken.iter().map(i64::to_string).collect(),
                    labels,
                })
            }
            HoldOutcome::TooManyHolds => {
                HOLDS.limit.increment(1);
                Err(self.too_many_holds())
            }
        }
    }

    /// Hold the best free seats for `wish`, chosen and held in one atomic step (see
    /// `holds/best.rs` for the order of preference).
    pub async fn hold_best(
        &self,
        viewer: &Viewer,
        show_id: i64,
        wish: &BestWish,
    ) -> AppResult<GrantedHold> {
        let user = viewer.require_user()?;
        let priced = self.catalogue.priced_show(show_id).await?;
        not_started(&priced.show)?;
        let layout = &priced.layout;
        let ask = self.best_ask(layout, wish)?;
        let hold_id = new_hold_id(show_id);
        let request = BestRequest {
            show_id,
            hold_id: &hold_id,
            user_id: user,
            layout,
            ask: &ask,
            ttl: self.rules.ttl,
            max_holds: self.rules.max_holds,
        };
        let outcome = self
            .with_queue_config(show_id, || self.store.hold_best(&request))
            .await?;
        match outcome {
            BestOutcome::NeedQueueConfig => Err(queue_config_missing(show_id)),
            BestOutcome::NotAdmitted => {
                metrics::counter!("best_available_total", "outcome" => "not_admitted").increment(1);
                Err(AppError::NotAdmitted)
            }
            BestOutcome::Granted {
                version,
                expires_ms,
                seat_ids,
                together,
            } => {
                metrics::counter!("best_available_total", "outcome" => "granted").increment(1);
                Ok(GrantedHold {
                    id: hold_id,
                    show_id,
                    seat_ids,
                    expires_at: DateTime::from_timestamp_millis(expires_ms)
                        .unwrap_or_else(Utc::now),
                    version,
                    next_to_each_other: together,
                })
            }
            BestOutcome::NoneFree => {
                metrics::counter!("best_available_total", "outcome" => "none").increment(1);
                let n = ask.count;
                let what = if ask.together || n == 1 {
                    format!("{n} free seat(s) side by side in one row")
                } else {
                    format!("{n} free seat(s) together in one row or in two adjacent rows")
                };
                let access = if ask.wheelchair > 0 {
                    format!(", {} of them wheelchair spaces", ask.wheelchair)
                } else {
                    String::new()
                };
                Err(AppError::NoSeatsFit(format!(
                    "no {what}{access} in the categories asked for; ask for fewer or other seats"
                )))
            }
            BestOutcome::TooManyHolds => {
                metrics::counter!("best_available_total", "outcome" => "limit").increment(1);
                Err(self.too_many_holds())
            }
        }
    }

    /// Validate a best-available wish against the layout and the hold rules.
    fn best_ask(&self, layout: &Layout, wish: &BestWish) -> AppResult<BestAsk> {
        let max = (self.rules.max_seats as usize).min(BEST_AVAILABLE_MAX);
        if wish.count < 1 {
            return Err(AppError::bad_input("count must be at least 1"));
        }
        if wish.count as usize > max {
            return Err(AppError::LimitExceeded(format!(
                "at most {max} seats in one best-available hold"
            )));
        }
        if !(0..=wish.count).contains(&wish.wheelchair_spaces) {
            return Err(AppError::bad_input(
                "wheelchairSpaces must be from 0 to count",
            ));
        }
        let plan = &layout.plan;
        let categories = match &wish.categories {
            None => None,
            Some(names) if names.is_empty() => {
                return Err(AppError::bad_input(
                    "categories: name at least one, or leave it out for every category",
                ))
            }
            Some(names) => {
                let mut allowed = vec![false; plan.categories.len()];
                for name in names {
                    let name = name.trim().to_uppercase();
                    let i = plan.category_index(&name).ok_or_else(|| {
                        AppError::bad_input(format!(
                            "this show has no seat category {name:?} (it has {})",
                            plan.categories.join(", ")
                        ))
                    })?;
                    allowed[i] = true;
                }
                Some(allowed)
            }
        };
        Ok(BestAsk {
            count: wish.count as usize,
            categories,
            together: wish.together,
            wheelchair: wish.wheelchair_spaces as usize,
        })
    }

    fn too_many_holds(&self) -> AppError {
        AppError::LimitExceeded(format!(
            "you already have {} live holds on this show; pay for or release one first",
            self.rules.max_holds
        ))
    }

    /// `true`: released now; `false`: the hold was no longer live (or never existed).
    pub async fn release(&self, viewer: &Viewer, hold_id: &str) -> AppResult<bool> {
        let user = viewer.require_user()?;
        let Some(show_id) = parse_hold_id(hold_id) else {
            return Ok(false);
        };
        match self.store.release(show_id, hold_id, user).await? {
            ReleaseOutcome::Released { .. } => Ok(true),
            ReleaseOutcome::NotLive => Ok(false),
            ReleaseOutcome::NotOwner => Err(not_your_hold()),
        }
    }

    /// The viewer's live hold, kept alive through a payment of `window`. Bounded: never beyond
    /// TTL + `window` from the hold's creation. `HOLD_EXPIRED` / `FORBIDDEN` otherwise.
    pub async fn keep_for_payment(
        &self,
        viewer: &Viewer,
        hold_id: &str,
        window: Duration,
    ) -> AppResult<(i64, HoldRecord)> {
        let user = viewer.require_user()?;
        let show_id = parse_hold_id(hold_id).ok_or(AppError::HoldExpired)?;
        // One round trip: the store checks the owner and answers the hold as kept.
        match self
            .store
            .extend(show_id, hold_id, user, window, self.rules.ttl + window)
            .await?
        {
            ExtendOutcome::Extended { hold } => Ok((show_id, hold)),
            ExtendOutcome::NotLive => Err(AppError::HoldExpired),
            ExtendOutcome::NotOwner => Err(not_your_hold()),
            ExtendOutcome::NotAdmitted => Err(AppError::NotAdmitted),
        }
    }

    /// Non-empty, no duplicates, within the limit, every seat of this show's layout.
    async fn validate_seats(&self, layout: &Layout, raw: &[String]) -> AppResult<Vec<i64>> {
        if raw.is_empty() {
            return Err(AppError::bad_input("choose at least one seat"));
        }
        if raw.len() > self.rules.max_seats as usize {
            return Err(AppError::LimitExceeded(format!(
                "at most {} seats in one hold",
                self.rules.max_seats
            )));
        }
        let mut seen = HashSet::new();
        let mut seats = Vec::with_capacity(raw.len());
        for r in raw {
            let id = crate::ids::parse_id(r, "seat")?;
            if !seen.insert(id) {
                return Err(AppError::bad_input(format!("seat {id} is listed twice")));
            }
            seats.push(id);
        }
        let foreign: Vec<i64> = seats
            .iter()
            .copied()
            .filter(|s| layout.seat(*s).is_none())
            .collect();
        if !foreign.is_empty() {
            let exist = entity::seat::Entity::find()
                .filter(entity::seat::Column::Id.is_in(foreign.clone()))
                .count(self.catalogue.db())
                .await?;
            return Err(if exist as usize == foreign.len() {
                AppError::bad_input("some seats belong to another show's screen")
            } else {
                AppError::NotFound("seat")
            });
        }
        Ok(seats)
    }
}

fn queue_config_missing(show_id: i64) -> AppError {
    AppError::internal(anyhow::anyhow!(
        "show {show_id}: the hold store asked for its waiting-room settings twice"
    ))
}

fn not_started(show: &entity::show::Model) -> AppResult<()> {
    if show.starts_at <= Utc::now() {
        return Err(AppError::bad_input(
            "this show has already started; seats can no longer be held",
        ));
    }
    Ok(())
}

fn not_your_hold() -> AppError {
    AppError::Forbidden("this hold belongs to someone else".into())
}

/// Build the configured store (`HOLD_STORE`): Redis when `REDIS_URL` is set, in-process
/// otherwise, or the row-locking baseline.
pub async fn connect_store(
    settings: &StoreSettings,
    db: DatabaseConnection,
) -> anyhow::Result<Arc<dyn HoldStore>> {
    Ok(match (settings.kind, &settings.redis_url) {
        (StoreKind::Redis, Some(url)) => {
            Arc::new(redis::RedisStore::connect(url, settings, db).await?)
        }
        (StoreKind::Redis, None) => anyhow::bail!("HOLD_STORE=redis needs REDIS_URL"),
        (StoreKind::PgRowLock, _) => Arc::new(rowlock::RowLockStore::connect(db).await?),
        (StoreKind::Memory, _) => Arc::new(memory::MemoryStore::new(db)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_ids_carry_their_show_and_parse_back_exactly() {
        let id = new_hold_id(42);
        assert_eq!(parse_hold_id(&id), Some(42));
        assert_ne!(new_hold_id(42), id, "random part");
        let (_, random) = id.split_once('-').expect("dash");
        for bad in [
            String::new(),
            "42".into(),
            format!("42-{}", &random[1..]),
            format!("42-{}", random.to_uppercase()),
            format!(" 42-{random}"),
            format!("+42-{random}"),
            format!("0-{random}"),
            format!("x-{random}"),
        ] {
            assert_eq!(parse_hold_id(&bad), None, "{bad:?}");
        }
    }
}
