//! The hold-store contract both implementations meet.
use std::collections::HashMap;
use std::time::Duration;

use crate::catalogue::seatmap::{SeatStatus, ShowState};
use crate::error::AppError;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released { version: i64 },
    NotLive,
    NotOwner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendOutcome {
    Extended { expires_ms: i64 },
    NotLive,
    NotOwner,
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

#[derive(Debug, thiserror::Error)]
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
        if crate::db::is_unavailable(&e) {
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
    /// Hold all `seats` under `hold_id` for `ttl`, or none of them.
    async fn hold(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
        seats: &[i64],
        ttl: Duration,
        max_holds: u32,
    ) -> Result<HoldOutcome, StoreError>;

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
    /// earlier than it was.
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

    /// Expire and announce every hold that is due, on every show. Returns how many were handled.
    async fn sweep(&self) -> Result<usize, StoreError>;

    async fn ping(&self) -> bool;

    /// Events emitted in this process, when the store delivers them directly (the in-process
    /// store). The Redis store publishes inside its scripts instead; listeners subscribe there.
    fn local_events(&self) -> Option<tokio::sync::broadcast::Receiver<SeatEvent>> {
        None
    }

    /// `redis` or `memory`, for logs and metrics.
    fn kind(&self) -> &'static str;
}

/// Parse an event payload published by the Lua scripts:
/// `{"v":N,"h":held,"b":booked,"c":[[seat,"A"],[seat,"H",user],[seat,"B"],…]}`.
pub fn parse_event(show_id: i64, payload: &str) -> Option<SeatEvent> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let version = v.get("v")?.as_i64()?;
    let mut changes = Vec::new();
    for c in v.get("c")?.as_array()? {
        let arr = c.as_array()?;
        let seat_id = arr.first()?.as_i64()?;
        let (status, holder) = match arr.get(1)?.as_str()? {
            "A" => (SeatStatus::Available, None),
            "B" => (SeatStatus::Booked, None),
            "H" => (SeatStatus::Held, arr.get(2).and_then(|u| u.as_i64())),
            _ => return None,
        };
        changes.push(SeatChange {
            seat_id,
            status,
            holder,
        });
    }
    let held = v.get("h").and_then(|h| h.as_i64()).unwrap_or(0);
    let booked = v.get("b").and_then(|b| b.as_i64()).unwrap_or(0);
    Some(SeatEvent {
        show_id,
        version,
        changes,
        held,
        booked,
    })
}
