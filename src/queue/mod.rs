//! The waiting room: fair, bounded admission for on-sales. A show's settings live in the
//! database (`show_sales`) and are mirrored into the hold store, which keeps the room itself —
//! places, admitted sessions and the admission schedule — next to the show's holds, so that a
//! hold checks its buyer's admission inside the same atomic step (`holds/scripts/q*.lua` and
//! `hold.lua` in Redis, `QueueMem` in the in-process store).
//!
//! Fairness: who joins before the opening gets a place drawn by the server (a random number,
//! never shown before the opening): at the opening they are in random order. Who joins after
//! queues in arrival order behind them. One place per account (joining again returns it).
//! Admission: one visitor every 60,000 / `admitPerMinute` ms on a schedule kept in the store, so
//! any number of instances admit exactly the configured rate between them; optionally no more
//! than `maxShoppers` at once.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::Stream;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::auth::Viewer;
use crate::catalogue::sales::NewSale;
use crate::catalogue::Catalogue;
use crate::error::{AppError, AppResult};
use crate::holds::{HoldStore, Holds, Place, PlaceState, QueueConfig, QueueReply};

/// How often each instance runs the admission step of every show with a waiting room.
pub const ADMIT_PERIOD: Duration = Duration::from_millis(200);

/// A user's place, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub show_id: i64,
    pub state: PlaceState,
    /// 1-based, once the sale has opened and while waiting.
    pub position: Option<u64>,
    pub ahead: Option<u64>,
    /// The place's number in the line since the opening (position + admitted so far): it does
    /// not change while the user waits.
    pub number: Option<u64>,
    pub estimated_wait_seconds: Option<u64>,
    pub admitted_until: Option<DateTime<Utc>>,
}

/// A show's room, for `Show.onSale`.
#[derive(Debug, Clone, Copy)]
pub struct RoomState {
    pub config: QueueConfig,
    pub waiting: u64,
    pub shopping: u64,
    pub admitted: u64,
}

/// How long a show's settings read from the database serve tickets' wait estimates.
const CONFIG_TTL: Duration = Duration::from_secs(2);

type ConfigCache = std::sync::Mutex<HashMap<i64, (Instant, QueueConfig)>>;

#[derive(Clone)]
pub struct WaitingRoom {
    store: Arc<dyn HoldStore>,
    holds: Holds,
    catalogue: Catalogue,
    /// Settings for wait estimates (the store's own copy decides admissions).
    configs: Arc<ConfigCache>,
}

impl WaitingRoom {
    pub fn new(store: Arc<dyn HoldStore>, holds: Holds, catalogue: Catalogue) -> Self {
        WaitingRoom {
            store,
            holds,
            catalogue,
            configs: Arc::default(),
        }
    }

    /// Admin: set the show's on-sale settings (database first, then the store).
    pub async fn set_on_sale(&self, show_id: i64, sale: NewSale) -> AppResult<()> {
        self.catalogue.set_sale(show_id, sale).await?;
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&show_id);
        self.holds.set_queue_config(show_id).await
    }

    /// Take (or find) the viewer's place.
    pub async fn join(&self, viewer: &Viewer, show_id: i64) -> AppResult<Ticket> {
        let user = viewer.require_user()?;
        self.known_show(show_id).await?;
        let random: u64 = rand::rng().random();
        let reply = self
            .holds
            .with_queue_config(show_id, || self.store.join_queue(show_id, user, random))
            .await?;
        match reply {
            QueueReply::Place(p) => self.ticket(show_id, p).await,
            _ => Err(AppError::bad_input(
                "this show's sale has no waiting room: hold seats directly",
            )),
        }
    }

    /// The viewer's place; `None` without one (or without a waiting room).
    pub async fn place(&self, viewer: &Viewer, show_id: i64) -> AppResult<Option<Ticket>> {
        let user = viewer.require_user()?;
        self.known_show(show_id).await?;
        let reply = self
            .holds
            .with_queue_config(show_id, || self.store.queue_place(show_id, user))
            .await?;
        match reply {
            QueueReply::Place(p) if p.state != PlaceState::None => {
                Ok(Some(self.ticket(show_id, p).await?))
            }
            _ => Ok(None),
        }
    }

    /// The viewer's place as it moves: a first answer at once, then every change. Polls the
    /// store, more rarely the further back the viewer is (every 1 s near the front, at most
    /// every 10 s); ends when the viewer has no place.
    pub fn updates(
        &self,
        viewer: Viewer,
        show_id: i64,
    ) -> impl Stream<Item = AppResult<Ticket>> + Send + 'static {
        let room = self.clone();
        // State: the last ticket sent (None before the first), or done.
        futures_util::stream::unfold(Some(None::<Ticket>), move |last| {
            let (room, viewer) = (room.clone(), viewer.clone());
            async move {
                let last = last?;
                if let Some(t) = &last {
                    let wait = t.estimated_wait_seconds.unwrap_or(0);
                    tokio::time::sleep(Duration::from_secs((wait / 20).clamp(1, 10))).await;
                }
                loop {
                    match room.place(&viewer, show_id).await {
                        Err(e) => return Some((Err(e), None)),
                        Ok(None) => {
                            let e = AppError::bad_input(
                                "you have no place in this show's waiting room: joinQueue first",
                            );
                            return Some((Err(e), None));
                        }
                        Ok(Some(t)) if last.as_ref() != Some(&t) => {
                            return Some((Ok(t.clone()), Some(Some(t))));
                        }
                        Ok(Some(t)) => {
                            let wait = t.estimated_wait_seconds.unwrap_or(0);
                            tokio::time::sleep(Duration::from_secs((wait / 20).clamp(1, 10))).await;
                        }
                    }
                }
            }
        })
    }

    /// The show's room (counts on `Show.onSale`): one read of its settings.
    /// `None` when the show has no on-sale settings.
    pub async fn room(&self, show_id: i64) -> AppResult<Option<RoomState>> {
        let Some(sale) = self.catalogue.sale(show_id).await? else {
            return Ok(None);
        };
        let config = QueueConfig::of_sale(&sale);
        let a = if config.on {
            self.store.admit(show_id).await?
        } else {
            Default::default()
        };
        Ok(Some(RoomState {
            config,
            waiting: a.waiting,
            shopping: a.shopping,
            admitted: a.total,
        }))
    }

    async fn known_show(&self, show_id: i64) -> AppResult<()> {
        self.catalogue
            .show(show_id)
            .await?
            .map(|_| ())
            .ok_or(AppError::NotFound("show"))
    }

    /// The show's settings, read from the database at most every `CONFIG_TTL`.
    async fn config(&self, show_id: i64) -> AppResult<QueueConfig> {
        let cached = {
            let map = self.configs.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&show_id).copied()
        };
        if let Some((at, c)) = cached.filter(|(at, _)| at.elapsed() < CONFIG_TTL) {
            let _ = at;
            return Ok(c);
        }
        let c = self.holds.queue_config(show_id).await?;
        let mut map = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(show_id, (Instant::now(), c));
        Ok(c)
    }

    async fn ticket(&self, show_id: i64, p: Place) -> AppResult<Ticket> {
        let config = self.config(show_id).await?;
        let waiting = p.state == PlaceState::Waiting;
        let ahead = p.ahead.filter(|_| waiting);
        let per_admission = Duration::from_millis(config.interval_ms.max(1) as u64);
        let estimated_wait_seconds = if !waiting {
            None
        } else {
            let until_open = (config.opens_ms - Utc::now().timestamp_millis()).max(0) as u64;
            // Before the opening the place is not known yet: the wait until the opening.
            let queue = ahead.map_or(0, |a| (a + 1) * per_admission.as_millis() as u64);
            Some((until_open + queue).div_ceil(1000))
        };
        Ok(Ticket {
            show_id,
            state: p.state,
            position: ahead.map(|a| a + 1),
            number: ahead.map(|a| a + 1 + p.admitted_total),
            ahead,
            estimated_wait_seconds,
            admitted_until: p.session_end_ms.and_then(DateTime::from_timestamp_millis),
        })
    }
}

/// Every instance runs the admission step of every show with a waiting room a few times a
/// second; the store's schedule (not this loop) sets the rate.
pub fn spawn_admissions(
    store: Arc<dyn HoldStore>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    crate::holds::sweeper::periodic(
        "waiting-room admissions",
        "queue_admitted_total",
        ADMIT_PERIOD,
        shutdown,
        move || {
            let store = store.clone();
            async move {
                let mut admitted = 0;
                for show in store.queued_shows().await? {
                    admitted += store.admit(show).await?.now;
                }
                Ok(admitted)
            }
        },
    )
}
