//! The in-process hold store: the Redis scripts' semantics over a mutex-guarded map, for a
//! single instance. Critical sections are short and never await; the database is read (to load
//! booked seats) outside the lock, fenced by a generation counter exactly like the Redis store.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;

use super::best::choose;
use super::store::*;
use crate::catalogue::seatmap::{self, Holder, SeatStatus, ShowState};

struct Rec {
    user: i64,
    seats: Vec<i64>,
    expires: i64,
    created: i64,
}

#[derive(Default)]
struct ShowMem {
    version: i64,
    loaded: bool,
    bookgen: u64,
    seats: HashMap<i64, String>,
    holds: HashMap<String, Rec>,
    expiries: BTreeSet<(i64, String)>,
    user_holds: HashMap<i64, u32>,
    booked: HashSet<i64>,
}

pub struct MemoryStore {
    db: DatabaseConnection,
    shows: Mutex<HashMap<i64, ShowMem>>,
    events: broadcast::Sender<SeatEvent>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl ShowMem {
    fn publish(&mut self, show_id: i64, changes: Vec<SeatChange>, out: &mut Vec<SeatEvent>) -> i64 {
        self.version += 1;
        let (held, booked) = (self.seats.len() as i64, self.booked.len() as i64);
        out.push(SeatEvent {
            show_id,
            version: self.version,
            changes,
            held,
            booked,
        });
        self.version
    }

    /// Remove a hold; its seats still pointing at it become available.
    fn drop_hold(&mut self, hold_id: &str, freed: &mut Vec<SeatChange>) -> Option<i64> {
        let rec = self.holds.remove(hold_id)?;
        self.expiries.remove(&(rec.expires, hold_id.to_string()));
        for s in &rec.seats {
            if self.seats.get(s).map(String::as_str) == Some(hold_id) {
                self.seats.remove(s);
                freed.push(SeatChange {
                    seat_id: *s,
                    status: SeatStatus::Available,
                    holder: None,
                });
            }
        }
        if let Some(n) = self.user_holds.get_mut(&rec.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.user_holds.remove(&rec.user);
            }
        }
        Some(rec.user)
    }

    /// Hold `seats` (free, checked by the caller) under a new hold: the new version and expiry.
    fn grant(
        &mut self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
        seats: &[i64],
        ttl: Duration,
        out: &mut Vec<SeatEvent>,
    ) -> (i64, i64) {
        let now = now_ms();
        let expires = now + ttl.as_millis() as i64;
        for s in seats {
            self.seats.insert(*s, hold_id.to_string());
        }
        self.holds.insert(
            hold_id.to_string(),
            Rec {
                user: user_id,
                seats: seats.to_vec(),
                expires,
                created: now,
            },
        );
        self.expiries.insert((expires, hold_id.to_string()));
        *self.user_holds.entry(user_id).or_default() += 1;
        let changes = seats
            .iter()
            .map(|s| SeatChange {
                seat_id: *s,
                status: SeatStatus::Held,
                holder: Some(user_id),
            })
            .collect();
        (self.publish(show_id, changes, out), expires)
    }

    fn expire_due(&mut self, show_id: i64, now: i64, out: &mut Vec<SeatEvent>) -> usize {
        let mut n = 0;
        while let Some((exp, id)) = self.expiries.first().cloned() {
            if exp > now {
                break;
            }
            let mut freed = Vec::new();
            self.drop_hold(&id, &mut freed);
            self.expiries.remove(&(exp, id));
            if !freed.is_empty() {
                self.publish(show_id, freed, out);
            }
            n += 1;
        }
        n
    }
}

impl MemoryStore {
    pub fn new(db: DatabaseConnection) -> Self {
        let (events, _) = broadcast::channel(4096);
        MemoryStore {
            db,
            shows: Mutex::new(HashMap::new()),
            events,
        }
    }

    fn emit(&self, events: Vec<SeatEvent>) {
        for e in events {
            let _ = self.events.send(e);
        }
    }

    /// A booked-set change must reach the cache even when it is not loaded: bump the
    /// generation first, so that a load racing with it retries with fresh data.
    fn bump_bookgen(&self, show_id: i64) {
        let mut shows = self.shows.lock().unwrap_or_else(|p| p.into_inner());
        shows.entry(show_id).or_default().bookgen += 1;
    }

    /// Run `f` on a loaded show (loading its booked seats from the database first if needed).
    async fn with_show<T>(
        &self,
        show_id: i64,
        f: impl Fn(&mut ShowMem, &mut Vec<SeatEvent>) -> T,
    ) -> Result<T, StoreError> {
        for _ in 0..10 {
            let gen = {
                let mut shows = self.shows.lock().unwrap_or_else(|p| p.into_inner());
                let show = shows.entry(show_id).or_default();
                if show.loaded {
                    let mut events = Vec::new();
                    show.expire_due(show_id, now_ms(), &mut events);
                    let out = f(show, &mut events);
                    drop(shows);
                    self.emit(events);
                    return Ok(out);
                }
                show.bookgen
            };
            let booked = seatmap::booked_from_db(&self.db, &[show_id])
                .await?
                .remove(&show_id)
                .unwrap_or_default();
            let mut shows = self.shows.lock().unwrap_or_else(|p| p.into_inner());
            let show = shows.entry(show_id).or_default();
            if !show.loaded && show.bookgen == gen {
                let mut freed = Vec::new();
                for s in &booked {
                    if let Some(h) = show.seats.get(s).cloned() {
                        show.drop_hold(&h, &mut freed);
                    }
                }
                show.booked = booked;
                show.loaded = true;
            }
        }
        Err(StoreError::Internal(format!(
            "show {show_id}: booked seats kept changing while loading"
        )))
    }
}

#[async_trait::async_trait]
impl HoldStore for MemoryStore {
    async fn hold(&self, r: &HoldRequest<'_>) -> Result<HoldOutcome, StoreError> {
        let HoldRequest {
            show_id,
            hold_id,
            user_id,
            seats,
            ttl,
            max_holds,
        } = *r;
        self.with_show(show_id, |show, events| {
            if show.user_holds.get(&user_id).copied().unwrap_or(0) >= max_holds {
                return HoldOutcome::TooManyHolds;
            }
            let taken: Vec<i64> = seats
                .iter()
                .copied()
                .filter(|s| show.booked.contains(s) || show.seats.contains_key(s))
                .collect();
            if !taken.is_empty() {
                return HoldOutcome::Unavailable(taken);
            }
            let (version, expires_ms) = show.grant(show_id, hold_id, user_id, seats, ttl, events);
            HoldOutcome::Granted {
                version,
                expires_ms,
            }
        })
        .await
    }

    async fn hold_best(&self, r: &BestRequest<'_>) -> Result<BestOutcome, StoreError> {
        let plan = &r.layout.plan;
        self.with_show(r.show_id, |show, events| {
            if show.user_holds.get(&r.user_id).copied().unwrap_or(0) >= r.max_holds {
                return BestOutcome::TooManyHolds;
            }
            let taken = |p: usize| {
                let id = plan.ids[p];
                show.booked.contains(&id) || show.seats.contains_key(&id)
            };
            let Some(choice) = choose(plan, taken, r.ask) else {
                return BestOutcome::NoneFree;
            };
            let seats: Vec<i64> = choice.positions.iter().map(|p| plan.ids[*p]).collect();
            let (version, expires_ms) =
                show.grant(r.show_id, r.hold_id, r.user_id, &seats, r.ttl, events);
            BestOutcome::Granted {
                version,
                expires_ms,
                seat_ids: seats,
                together: choice.together,
            }
        })
        .await
    }

    async fn release(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
    ) -> Result<ReleaseOutcome, StoreError> {
        self.with_show(show_id, |show, events| match show.holds.get(hold_id) {
            None => ReleaseOutcome::NotLive,
            Some(r) if r.user != user_id => ReleaseOutcome::NotOwner,
            Some(_) => {
                let mut freed = Vec::new();
                show.drop_hold(hold_id, &mut freed);
                let version = if freed.is_empty() {
                    show.version
                } else {
                    show.publish(show_id, freed, events)
                };
                ReleaseOutcome::Released { version }
            }
        })
        .await
    }

    async fn get(&self, show_id: i64, hold_id: &str) -> Result<Option<HoldRecord>, StoreError> {
        self.with_show(show_id, |show, _| {
            show.holds.get(hold_id).map(|r| HoldRecord {
                user_id: r.user,
                seat_ids: r.seats.clone(),
                expires_ms: r.expires,
                created_ms: r.created,
            })
        })
        .await
    }

    async fn extend(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
        window: Duration,
        cap: Duration,
    ) -> Result<ExtendOutcome, StoreError> {
        self.with_show(show_id, |show, _| {
            let Some(rec) = show.holds.get_mut(hold_id) else {
                return ExtendOutcome::NotLive;
            };
            if rec.user != user_id {
                return ExtendOutcome::NotOwner;
            }
            let target =
                (now_ms() + window.as_millis() as i64).min(rec.created + cap.as_millis() as i64);
            if target > rec.expires {
                let old = rec.expires;
                rec.expires = target;
                show.expiries.remove(&(old, hold_id.to_string()));
                show.expiries.insert((target, hold_id.to_string()));
            }
            ExtendOutcome::Extended {
                expires_ms: show.holds.get(hold_id).map(|r| r.expires).unwrap_or(target),
            }
        })
        .await
    }

    async fn book(
        &self,
        show_id: i64,
        hold_id: Option<&str>,
        seats: &[i64],
    ) -> Result<i64, StoreError> {
        self.bump_bookgen(show_id);
        self.with_show(show_id, |show, events| {
            let booking: HashSet<i64> = seats.iter().copied().collect();
            let mut freed = Vec::new();
            if let Some(h) = hold_id {
                show.drop_hold(h, &mut freed);
            }
            for s in seats {
                if let Some(other) = show.seats.get(s).cloned() {
                    show.drop_hold(&other, &mut freed);
                }
            }
            let mut changes: Vec<SeatChange> = freed
                .into_iter()
                .filter(|c| !booking.contains(&c.seat_id))
                .collect();
            for s in seats {
                show.booked.insert(*s);
                changes.push(SeatChange {
                    seat_id: *s,
                    status: SeatStatus::Booked,
                    holder: None,
                });
            }
            show.publish(show_id, changes, events)
        })
        .await
    }

    async fn unbook(&self, show_id: i64, seats: &[i64]) -> Result<i64, StoreError> {
        self.bump_bookgen(show_id);
        self.with_show(show_id, |show, events| {
            let mut changes = Vec::new();
            for s in seats {
                show.booked.remove(s);
                if !show.seats.contains_key(s) {
                    changes.push(SeatChange {
                        seat_id: *s,
                        status: SeatStatus::Available,
                        holder: None,
                    });
                }
            }
            show.publish(show_id, changes, events)
        })
        .await
    }

    async fn snapshot(&self, show_ids: &[i64]) -> Result<HashMap<i64, ShowState>, StoreError> {
        let mut out = HashMap::new();
        for id in show_ids {
            let state = self
                .with_show(*id, |show, _| ShowState {
                    version: show.version,
                    booked: show.booked.clone(),
                    held: show
                        .seats
                        .iter()
                        .map(|(s, h)| {
                            let user_id = show.holds.get(h).map(|r| r.user).unwrap_or(0);
                            (
                                *s,
                                Holder {
                                    hold_id: h.clone(),
                                    user_id,
                                },
                            )
                        })
                        .collect(),
                    holds_unknown: false,
                })
                .await?;
            out.insert(*id, state);
        }
        Ok(out)
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut events = Vec::new();
        let mut n = 0;
        {
            let mut shows = self.shows.lock().unwrap_or_else(|p| p.into_inner());
            for (id, show) in shows.iter_mut() {
                if show.loaded {
                    n += show.expire_due(*id, now, &mut events);
                }
            }
        }
        self.emit(events);
        Ok(n)
    }

    async fn ping(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    /// Events are made in this process: forward them from the store's broadcast channel (a
    /// hub too slow to keep up loses events, and its subscribers see a version gap and re-read).
    /// Interest needs no action: every show's events are here already.
    fn start_feed(
        &self,
        _interest: tokio::sync::mpsc::UnboundedReceiver<Interest>,
        sink: FeedSink,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
        use tokio_stream::StreamExt;
        let mut events = BroadcastStream::new(self.events.subscribe());
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    e = events.next() => e,
                };
                match next {
                    Some(Ok(e)) => sink(FeedItem::Event(e)),
                    Some(Err(BroadcastStreamRecvError::Lagged(missed))) => {
                        tracing::warn!(missed, "live hub fell behind the hold store");
                    }
                    None => return,
                }
            }
        });
    }
}
