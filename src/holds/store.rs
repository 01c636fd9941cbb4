//! The hold-store contract both implementations meet.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::best::{choose, BestAsk};
use crate::catalogue::layout::Layout;
use crate::catalogue::seatmap::{SeatStatus, ShowState};
use crate::error::AppError;

/// One hold to take: every seat or none, for `ttl`, unless the user already has `max_holds`.
#[derive(Debug, Clone, Copy)]
pub struct HoldRequest<'a> {
    pub show_id: i64,
    pub hold_id: &'a str,
    pub user_id: i64,
    pub seats: &'a [i64],
    pub ttl: Duration,
    pub max_holds: u32,
}

/// One best-available hold to take: the best seats the plan's `ask` allows, chosen and held in
/// one atomic step.
#[derive(Debug, Clone)]
pub struct BestRequest<'a> {
    pub show_id: i64,
    pub hold_id: &'a str,
    pub user_id: i64,
    /// The show's layout (its plan numbers the positions).
    pub layout: &'a Layout,
    pub ask: &'a BestAsk,
    pub ttl: Duration,
    pub max_holds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BestOutcome {
    Granted {
        version: i64,
        expires_ms: i64,
        seat_ids: Vec<i64>,
        /// Side by side in one row.
        together: bool,
    },
    /// No acceptable seats are free; nothing was taken.
    NoneFree,
    /// The user has the maximum number of live holds on this show.
    TooManyHolds,
    /// The show's waiting room is on and this user has no live session.
    NotAdmitted,
    /// The store does not know the show's waiting-room settings yet: mirror them, then retry.
    NeedQueueConfig,
}

/// A live hub's interest in a show's events: it has local subscribers now, or no longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Watch(i64),
    Unwatch(i64),
}

/// What a store's feed delivers.
#[derive(Debug, Clone)]
pub enum FeedItem {
    Event(SeatEvent),
    /// The feed broke (e.g. the Redis connection): events may be missing and versions may restart.
    Interrupted,
}

/// Where a store's feed delivers (the live hub's dispatch).
pub type FeedSink = Arc<dyn Fn(FeedItem) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    Granted {
        version: i64,
        expires_ms: i64,
    },
    /// The seats that are held or booked already; nothing was taken.
    Unavailable(Vec<i64>),
    /// The user has the maximum number of live holds on this show.
    TooManyHolds,
    /// The show's waiting room is on and this user has no live session.
    NotAdmitted,
    /// The store does not know the show's waiting-room settings yet: mirror them, then retry.
    NeedQueueConfig,
}

/// An answer that can mean "mirror the show's waiting-room settings, then ask again".
pub trait NeedsQueueConfig {
    fn needs_queue_config(&self) -> bool;
}

impl NeedsQueueConfig for HoldOutcome {
    fn needs_queue_config(&self) -> bool {
        *self == HoldOutcome::NeedQueueConfig
    }
}

impl NeedsQueueConfig for BestOutcome {
    fn needs_queue_config(&self) -> bool {
        *self == BestOutcome::NeedQueueConfig
    }
}

impl NeedsQueueConfig for QueueReply {
    fn needs_queue_config(&self) -> bool {
        *self == QueueReply::NeedQueueConfig
    }
}

/// A show's waiting-room settings as the store keeps them (mirrored from `show_sales`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    pub on: bool,
    pub opens_ms: i64,
    /// Milliseconds between two admissions (60,000 / admissions per minute).
    pub interval_ms: i64,
    pub session_ms: i64,
    /// Most visitors shopping at once; 0: no cap.
    pub max_shoppers: u32,
}

impl QueueConfig {
    /// No waiting room: everyone may shop.
    pub const OFF: QueueConfig = QueueConfig {
        on: false,
        opens_ms: 0,
        interval_ms: 1,
        session_ms: 1,
        max_shoppers: 0,
    };

    /// The settings of a `show_sales` row, as the store applies them.
    pub fn of_sale(s: &entity::show_sale::Model) -> QueueConfig {
        QueueConfig {
            on: s.queue_enabled,
            opens_ms: s.opens_at.timestamp_millis(),
            interval_ms: ((60_000.0 / s.admit_per_minute.max(1) as f64).round() as i64).max(1),
            session_ms: s.session_seconds as i64 * 1000,
            max_shoppers: s.max_shoppers.unwrap_or(0).max(0) as u32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceState {
    /// Never joined (or forgotten an hour after the session ended).
    None,
    Waiting,
    Admitted,
    /// The session lapsed or ended with a checkout.
    Expired,
}

/// A user's place in a waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub state: PlaceState,
    /// People ahead (0-based rank), once the sale has opened and while waiting.
    pub ahead: Option<u64>,
    /// End of the admitted session (admitted or expired).
    pub session_end_ms: Option<i64>,
    /// Admitted so far on this show.
    pub admitted_total: u64,
    pub waiting: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueReply {
    Place(Place),
    /// The show has no waiting room (or it is switched off).
    Off,
    NeedQueueConfig,
}

/// What one admission step did, and the room's state after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admitted {
    pub now: u64,
    pub total: u64,
    pub waiting: u64,
    pub shopping: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released { version: i64 },
    NotLive,
    NotOwner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendOutcome {
    /// The hold as it is now kept (its new expiry), so that a checkout needs no other read.
    Extended {
        hold: HoldRecord,
    },
    NotLive,
    NotOwner,
    /// The show's waiting room is on and the user's session is over.
    NotAdmitted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    pub user_id: i64,
    pub seat_ids: Vec<i64>,
    pub expires_ms: i64,
    pub created_ms: i64,
}

/// One seat's new status in an event; `holder` is the user holding it (for `heldByMe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatChange {
    pub seat_id: i64,
    pub status: SeatStatus,
    pub holder: Option<i64>,
}

/// One change of a show's seat map: the version it produced and the seats that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatEvent {
    pub show_id: i64,
    pub version: i64,
    pub changes: Vec<SeatChange>,
    /// Held and booked seats of the show right after this change (so `availableSeats` is exact
    /// for this version without another read).
    pub held: i64,
    pub booked: i64,
}

/// A show's live counts at one state (`stamp` as in `ShowState::stamp`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCounts {
    pub version: i64,
    pub stamp: Option<String>,
    pub held: i64,
    pub booked: i64,
    /// True when they come from the database alone (the hold store is unreachable).
    pub holds_unknown: bool,
}

impl LiveCounts {
    pub fn of(s: &ShowState) -> LiveCounts {
        LiveCounts {
            version: s.version,
            stamp: s.stamp.clone(),
            held: s.held.keys().filter(|k| !s.booked.contains(k)).count() as i64,
            booked: s.booked.len() as i64,
            holds_unknown: s.holds_unknown,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("hold store unavailable: {0}")]
    Unavailable(String),
    #[error("hold store: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "hold store unavailable");
                AppError::Unavailable("the hold store")
            }
            StoreError::Internal(cause) => AppError::internal(anyhow::anyhow!(cause)),
        }
    }
}

impl From<sea_orm::DbErr> for StoreError {
    fn from(e: sea_orm::DbErr) -> Self {
        if crate::db::is_unavailable(&e) || crate::db::is_conflict(&e) {
            StoreError::Unavailable(format!("database: {e}"))
        } else {
            StoreError::Internal(format!("database: {e}"))
        }
    }
}

/// Atomic seat-hold operations on one show. Every operation first expires the show's due holds,
/// so correctness never depends on the sweeper; the sweeper only makes expiry *announced* on
/// time. Every change of a show's map bumps its version by exactly 1 and emits one `SeatEvent`.
#[async_trait::async_trait]
pub trait HoldStore: Send + Sync + 'static {
    /// Hold all of the request's seats under its hold id, or none of them.
    async fn hold(&self, request: &HoldRequest<'_>) -> Result<HoldOutcome, StoreError>;

    /// Choose the best free seats for `request.ask` and hold them, in one atomic step.
    ///
    /// This default (the row-lock baseline's) is not one step: it chooses from a snapshot and
    /// then holds all or nothing; when another buyer got there first, the seats the refusal
    /// names count as taken and it chooses again (a fresh snapshot every few refusals). It is
    /// never wrong (the hold is atomic), only slower under contention. The Redis and in-process
    /// stores choose and hold inside one script / one critical section.
    async fn hold_best(&self, request: &BestRequest<'_>) -> Result<BestOutcome, StoreError> {
        let plan = &request.layout.plan;
        let mut taken: std::collections::HashSet<i64> = Default::default();
        for attempt in 0..20 {
            if attempt % 5 == 0 {
                let state = self
                    .snapshot(&[request.show_id])
                    .await?
                    .remove(&request.show_id)
                    .unwrap_or_default();
                taken = state.booked;
                taken.extend(state.held.keys());
            }
            let Some(choice) = choose(plan, |p| taken.contains(&plan.ids[p]), request.ask) else {
                return Ok(BestOutcome::NoneFree);
            };
            let seats: Vec<i64> = choice.positions.iter().map(|p| plan.ids[*p]).collect();
            let hold = HoldRequest {
                show_id: request.show_id,
                hold_id: request.hold_id,
                user_id: request.user_id,
                seats: &seats,
                ttl: request.ttl,
                max_holds: request.max_holds,
            };
            match self.hold(&hold).await? {
                HoldOutcome::Granted {
                    version,
                    expires_ms,
                } => {
                    return Ok(BestOutcome::Granted {
                        version,
                        expires_ms,
                        seat_ids: seats,
                        together: choice.together,
                    })
                }
                HoldOutcome::TooManyHolds => return Ok(BestOutcome::TooManyHolds),
                HoldOutcome::NotAdmitted => return Ok(BestOutcome::NotAdmitted),
                HoldOutcome::NeedQueueConfig => return Ok(BestOutcome::NeedQueueConfig),
                HoldOutcome::Unavailable(lost) => taken.extend(lost),
            }
        }
        Err(StoreError::Unavailable(
            "best available: the chosen seats kept being taken first".into(),
        ))
    }

    /// End a live hold at its owner's request.
    async fn release(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
    ) -> Result<ReleaseOutcome, StoreError>;

    /// The hold, if live.
    async fn get(&self, show_id: i64, hold_id: &str) -> Result<Option<HoldRecord>, StoreError>;

    /// Keep a live hold through a payment: expiry becomes min(now + window, created + cap), never
    /// earlier than it was. Answers the hold as kept (one round trip: checkout reads nothing else).
    async fn extend(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
        window: Duration,
        cap: Duration,
    ) -> Result<ExtendOutcome, StoreError>;

    /// Seats were committed as booked in the database: mirror it, consuming the hold if given.
    async fn book(
        &self,
        show_id: i64,
        hold_id: Option<&str>,
        seats: &[i64],
    ) -> Result<i64, StoreError>;

    /// A booking's seats were freed in the database.
    async fn unbook(&self, show_id: i64, seats: &[i64]) -> Result<i64, StoreError>;

    /// Each show's state at one version (holds due are expired first).
    async fn snapshot(&self, show_ids: &[i64]) -> Result<HashMap<i64, ShowState>, StoreError>;

    /// Each show's held and booked counts, version and stamp, without its map (a page of the
    /// show list). This default takes them from a snapshot.
    async fn counts(&self, show_ids: &[i64]) -> Result<HashMap<i64, LiveCounts>, StoreError> {
        Ok(self
            .snapshot(show_ids)
            .await?
            .into_iter()
            .map(|(id, s)| (id, LiveCounts::of(&s)))
            .collect())
    }

    /// Like `snapshot`, for callers that keep states: a show still at the stamp passed with it
    /// (`ShowState::stamp`) answers `None` — unchanged, keep yours — and costs the store almost
    /// nothing. A store without stamps (this default) sends every state.
    async fn snapshot_since(
        &self,
        shows: &[(i64, Option<&str>)],
    ) -> Result<HashMap<i64, Option<ShowState>>, StoreError> {
        let ids: Vec<i64> = shows.iter().map(|s| s.0).collect();
        Ok(self
            .snapshot(&ids)
            .await?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect())
    }

    /// Expire and announce every hold that is due, on every show. Returns how many were handled.
    async fn sweep(&self) -> Result<usize, StoreError>;

    async fn ping(&self) -> bool;

    /// Mirror a show's waiting-room settings (`only_if_missing`: a lazy load, which must not
    /// overwrite settings written since it read the database). A store without a waiting room
    /// (the row-lock baseline) ignores them: it never asks for them and admits everyone.
    async fn configure_queue(
        &self,
        show_id: i64,
        config: QueueConfig,
        only_if_missing: bool,
    ) -> Result<(), StoreError> {
        let _ = (show_id, config, only_if_missing);
        Ok(())
    }

    /// Take a place in the show's waiting room (one per user; joining again returns it).
    /// `random`: the server's draw (below 2^52), the place of who joins before the opening.
    async fn join_queue(
        &self,
        show_id: i64,
        user_id: i64,
        random: u64,
    ) -> Result<QueueReply, StoreError> {
        let _ = (show_id, user_id, random);
        Ok(QueueReply::Off)
    }

    /// The user's place in the show's waiting room.
    async fn queue_place(&self, show_id: i64, user_id: i64) -> Result<QueueReply, StoreError> {
        let _ = (show_id, user_id);
        Ok(QueueReply::Off)
    }

    /// Admit who is due on the show's schedule (any instance, any number of times).
    async fn admit(&self, show_id: i64) -> Result<Admitted, StoreError> {
        let _ = show_id;
        Ok(Admitted::default())
    }

    /// Shows whose waiting room is on (the admission ticker's work list).
    async fn queued_shows(&self) -> Result<Vec<i64>, StoreError> {
        Ok(Vec::new())
    }

    /// Deliver the seat events of the shows named through `interest` to `sink` until `shutdown`.
    /// The store owns how its events travel (Redis pub/sub, an in-process channel); a store
    /// without events (the row-lock baseline) delivers nothing.
    fn start_feed(
        &self,
        interest: mpsc::UnboundedReceiver<Interest>,
        sink: FeedSink,
        shutdown: CancellationToken,
    ) {
        let _ = (interest, sink, shutdown);
    }

    /// `redis` or `memory`, for logs and metrics.
    fn kind(&self) -> &'static str;
}
