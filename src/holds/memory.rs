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

/// A show's waiting room (the Redis scripts' `qwait`, `qadm` and `q_*` fields).
#[derive(Default)]
struct QueueMem {
    /// `None` until mirrored from the database.
    config: Option<QueueConfig>,
    /// (place, user): the order of admission; places as `qjoin.lua` draws them.
    wait: BTreeSet<(u64, i64)>,
    place: HashMap<i64, u64>,
    /// User → end of the admitted session (ms).
    sessions: HashMap<i64, i64>,
    next_ms: Option<i64>,
    seq: u64,
    done: u64,
}

/// Places of who joins after the opening start here (above every random draw).
const AFTER_OPENING: u64 = 1 << 52;

impl QueueMem {
    fn on(&self) -> bool {
        self.config.is_some_and(|c| c.on)
    }

    fn admitted(&self, user: i64, now: i64) -> bool {
        !self.on() || self.sessions.get(&user).is_some_and(|end| *end > now)
    }

    fn shopping(&self, now: i64) -> u64 {
        self.sessions.values().filter(|end| **end > now).count() as u64
    }

    fn place(&self, user: i64, now: i64) -> Place {
        let opens = self.config.map_or(0, |c| c.opens_ms);
        let mut p = Place {
            state: PlaceState::None,
            ahead: None,
            session_end_ms: None,
            admitted_total: self.done,
            waiting: self.wait.len() as u64,
        };
        if let Some(place) = self.place.get(&user) {
            p.state = PlaceState::Waiting;
            if now >= opens {
                p.ahead = Some(self.wait.range(..(*place, user)).count() as u64);
            }
        } else if let Some(end) = self.sessions.get(&user) {
            p.state = if *end > now {
                PlaceState::Admitted
            } else {
                PlaceState::Expired
            };
            p.session_end_ms = Some(*end);
        }
        p
    }

    fn join(&mut self, user: i64, random: u64, now: i64) -> Place {
        let live = self.sessions.get(&user).is_some_and(|end| *end > now);
        if !live && !self.place.contains_key(&user) {
            let opens = self.config.map_or(0, |c| c.opens_ms);
            let place = if now < opens {
                random % AFTER_OPENING
            } else {
                self.seq += 1;
                AFTER_OPENING + self.seq
            };
            self.wait.insert((place, user));
            self.place.insert(user, place);
        }
        self.place(user, now)
    }

    /// `qadmit.lua`, step for step.
    fn admit(&mut self, now: i64) -> Admitted {
        let status = |q: &QueueMem, n: u64| Admitted {
            now: n,
            total: q.done,
            waiting: q.wait.len() as u64,
            shopping: q.shopping(now),
        };
        let Some(c) = self.config.filter(|c| c.on) else {
            return status(self, 0);
        };
        if now < c.opens_ms {
            return status(self, 0);
        }
        self.sessions.retain(|_, end| *end > now - 3_600_000);
        let due_at = self.next_ms.unwrap_or(c.opens_ms).max(c.opens_ms);
        if now < due_at {
            return status(self, 0);
        }
        let mut due = (now - due_at) / c.interval_ms + 1;
        due = due.min((1000 / c.interval_ms).max(1));
        if c.max_shoppers > 0 {
            let shopping = self.shopping(now) as i64;
            if shopping >= c.max_shoppers as i64 {
                self.next_ms = Some(now);
                return status(self, 0);
            }
            due = due.min(c.max_shoppers as i64 - shopping);
        }
        let mut n = 0;
        while n < due {
            let Some((place, user)) = self.wait.pop_first() else {
                break;
            };
            let _ = place;
            self.place.remove(&user);
            self.sessions.insert(user, now + c.session_ms);
            n += 1;
        }
        self.done += n as u64;
        let mut next_at = due_at + due * c.interval_ms;
        if n < due || next_at < now - 1000 {
            next_at = now + c.interval_ms;
        }
        self.next_ms = Some(next_at);
        status(self, n as u64)
    }
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
    queue: QueueMem,
}

pub struct MemoryStore {
    db: DatabaseConnection,
    /// Names this store's lifetime in state stamps.
    epoch: u64,
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
        // An admitted session lasts at least as long as the hold taken in it.
        if self.queue.on() {
            if let Some(end) = self.queue.sessions.get_mut(&user_id) {
                *end = (*end).max(expires);
            }
        }
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
            epoch: rand::random(),
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
            if show.queue.config.is_none() {
                return HoldOutcome::NeedQueueConfig;
            }
            if !show.queue.admitted(user_id, now_ms()) {
                return HoldOutcome::NotAdmitted;
            }
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
            if show.queue.config.is_none() {
                return BestOutcome::NeedQueueConfig;
            }
            if !show.queue.admitted(r.user_id, now_ms()) {
                return BestOutcome::NotAdmitted;
            }
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

    async fn configure_queue(
        &self,
        show_id: i64,
        config: QueueConfig,
        only_if_missing: bool,
    ) -> Result<(), StoreError> {
        let mut shows = self.shows.lock().unwrap_or_else(|p| p.into_inner());
        let queue = &mut shows.entry(show_id).or_default().queue;
        if !(only_if_missing && queue.config.is_some()) {
            queue.config = Some(config);
        }
        Ok(())
    }

    async fn join_queue(
        &self,
        show_id: i64,
        user_id: i64,
        random: u64,
    ) -> Result<QueueReply, StoreError> {
        let mut shows = self.shows.lock().unwrap_or_else(|p| p.into_inner());
        let queue = &mut shows.entry(show_id).or_default().queue;
        Ok(match queue.config {
            None => QueueReply::NeedQueueConfig,
            Some(c) if !c.on => QueueReply::Off,
            Some(_) => QueueReply::Place(queue.join(user_id, random, now_ms())),
        })
    }

    async fn queue_place(&self, show_id: i64, user_id: i64) -> Result<QueueReply, StoreError> {
        let mut shows = self.shows.lock().unwrap_or_else(|p| p.into_inner());
        let queue = &shows.entry(show_id).or_default().queue;
        Ok(match queue.config {
            None => QueueReply::NeedQueueConfig,
            Some(c) if !c.on => QueueReply::Off,
            Some(_) => QueueReply::Place(queue.place(user_id, now_ms())),
        })
    }

    async fn admit(&self, show_id: i64) -> Result<Admitted, StoreError> {
        let mut shows = self.shows.lock().unwrap_or_else(|p| p.into_inner());
        Ok(shows.entry(show_id).or_default().queue.admit(now_ms()))
    }

    async fn queued_shows(&self) -> Result<Vec<i64>, StoreError> {
        let shows = self.shows.lock().unwrap_or_else(|p| p.into_inner());
        Ok(shows
            .iter()
            .filter(|(_, s)| s.queue.on())
            .map(|(id, _)| *id)
            .collect())
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
            if !show.queue.admitted(user_id, now_ms()) {
                return ExtendOutcome::NotAdmitted;
            }
            let Some(rec) = show.holds.get_mut(hold_id) else {
                return ExtendOutcome::NotLive;
            };
            let target =
                (now_ms() + window.as_millis() as i64).min(rec.created + cap.as_millis() as i64);
            if target > rec.expires {
                let old = rec.expires;
                rec.expires = target;
                show.expiries.remove(&(old, hold_id.to_string()));
                show.expiries.insert((target, hold_id.to_string()));
            }
            ExtendOutcome::Extended {
                hold: HoldRecord {
                    user_id: rec.user,
                    seat_ids: rec.seats.clone(),
                    expires_ms: rec.expires,
                    created_ms: rec.created,
                },
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
                // A checkout ends the buyer's waiting-room session (the slot goes to the next).
                if let Some(owner) = show.drop_hold(h, &mut freed) {
                    let now = now_ms();
                    if show.queue.on() {
                        if let Some(end) = show.queue.sessions.get_mut(&owner) {
                            *end = (*end).min(now);
                        }
                    }
                }
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
        let shows: Vec<(i64, Option<&str>)> = show_ids.iter().map(|id| (*id, None)).collect();
        Ok(self
            .snapshot_since(&shows)
            .await?
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect())
    }

    async fn snapshot_since(
        &self,
        shows: &[(i64, Option<&str>)],
    ) -> Result<HashMap<i64, Option<ShowState>>, StoreError> {
        let mut out = HashMap::new();
        for (id, known) in shows {
            let state = self
                .with_show(*id, |show, _| {
                    // This store's shows never lose their state while it lives: its instance
                    // and the version name a state.
                    let stamp = format!("{:x}:{}", self.epoch, show.version);
                    if *known == Some(stamp.as_str()) {
                        return None;
                    }
                    Some(ShowState {
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
                        stamp: Some(stamp),
                        ..ShowState::default()
                    })
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
