//! The Redis hold store: every operation on a show is one Lua script (EVALSHA, reloaded by the
//! client on NOSCRIPT) over keys sharing the hash tag `{show:<id>}`. Scripts never wait for
//! anything, so there is nothing to deadlock on; Redis runs them one at a time, so each is atomic.
use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use sea_orm::DatabaseConnection;

use super::store::*;

mod feed;
use crate::catalogue::layout::Layout;
use crate::catalogue::seatmap::{self, Holder, ShowState};
pub use feed::{channel, parse_event};

const COMMON: &str = include_str!("../scripts/common.lua");

/// How much later than the hold's own expiry its sweep entry is filed (clock skew between this
/// instance and Redis, and the request's own time, fit in it), so that the sweeper normally
/// visits a hold once, just after it expired.
const SWEEP_SLACK_MS: i64 = 200;

/// A show's keys, in the order `common.lua` documents (`KEYS[1]`..`KEYS[8]`).
const KEY_NAMES: [&str; 10] = [
    "seats", "holds", "holdrec", "uholds", "booked", "meta", "plan", "occ", "qwait", "qadm",
];

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

struct Scripts {
    hold: Script,
    release: Script,
    get: Script,
    extend: Script,
    book: Script,
    unbook: Script,
    load: Script,
    best: Script,
    plan: Script,
    qconfig: Script,
    qjoin: Script,
    qticket: Script,
    qadmit: Script,
    snapshot: Script,
    counts: Script,
    expire: Script,
    sweep_ack: Script,
}

pub struct RedisStore {
    /// For the event feed's own pub/sub connection.
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    db: DatabaseConnection,
    scripts: Scripts,
    /// Sweep entries of refused holds, removed in batches off the request path.
    refused: tokio::sync::mpsc::UnboundedSender<String>,
}

/// Remove sweep entries of holds that were refused, in batches (one `ZREM` per 100 ms at most).
/// Entries left behind by a crash are dropped by the sweeper when they come due.
async fn forget_refused(
    mut conn: ConnectionManager,
    key: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1000).await > 0 {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(&key).arg(&batch);
        if let Err(e) = cmd.query_async::<i64>(&mut conn).await {
            tracing::debug!(error = %e, "could not drop refused sweep entries; the sweeper will");
        }
        batch.clear();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn map_err(e: RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

fn int(v: Option<&String>) -> Result<i64, StoreError> {
    v.and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Internal("malformed script reply".into()))
}

impl RedisStore {
    pub async fn connect(
        url: &str,
        prefix: &str,
        timeout: Duration,
        db: DatabaseConnection,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(2);
        // Lazy: the server starts even when Redis is down (holds answer SERVICE_UNAVAILABLE and
        // /readyz says 503 until it is back; the manager reconnects on use).
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| anyhow::anyhow!("bad REDIS_URL: {e}"))?;
        let mut probe = conn.clone();
        let up = tokio::time::timeout(
            timeout,
            redis::cmd("PING").query_async::<String>(&mut probe),
        )
        .await;
        if !matches!(up, Ok(Ok(_))) {
            tracing::warn!("Redis is unreachable at start-up: holds and checkout answer SERVICE_UNAVAILABLE until it is back");
        }
        let (refused, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(forget_refused(conn.clone(), format!("{prefix}:sweep"), rx));
        Ok(RedisStore {
            client,
            refused,
            conn,
            prefix: prefix.to_string(),
            db,
            scripts: Scripts {
                hold: script(include_str!("../scripts/hold.lua")),
                release: script(include_str!("../scripts/release.lua")),
                get: script(include_str!("../scripts/get.lua")),
                extend: script(include_str!("../scripts/extend.lua")),
                book: script(include_str!("../scripts/book.lua")),
                unbook: script(include_str!("../scripts/unbook.lua")),
                load: script(include_str!("../scripts/load.lua")),
                best: script(include_str!("../scripts/best.lua")),
                plan: script(include_str!("../scripts/plan.lua")),
                qconfig: script(include_str!("../scripts/qconfig.lua")),
                qjoin: script(include_str!("../scripts/qjoin.lua")),
                qticket: script(include_str!("../scripts/qticket.lua")),
                qadmit: script(include_str!("../scripts/qadmit.lua")),
                snapshot: script(include_str!("../scripts/snapshot.lua")),
                counts: script(include_str!("../scripts/counts.lua")),
                expire: script(include_str!("../scripts/expire.lua")),
                sweep_ack: Script::new(include_str!("../scripts/sweep_ack.lua")),
            },
        })
    }

    /// The keys of a show, in the order `common.lua` documents.
    fn keys(&self, show_id: i64) -> [String; 10] {
        let p = &self.prefix;
        KEY_NAMES.map(|k| format!("{p}:{{show:{show_id}}}:{k}"))
    }

    /// The channel on which a show's seat events are published.
    pub fn channel(&self, show_id: i64) -> String {
        channel(&self.prefix, show_id)
    }

    fn sweep_key(&self) -> String {
        format!("{}:sweep", self.prefix)
    }

    /// Shows whose waiting room is on.
    fn queues_key(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    fn parse_queue(reply: &[String]) -> Result<QueueReply, StoreError> {
        let state = match reply.first().map(String::as_str) {
            Some("QCFG") => return Ok(QueueReply::NeedQueueConfig),
            Some("OFF") => return Ok(QueueReply::Off),
            Some("NONE") => PlaceState::None,
            Some("WAITING") => PlaceState::Waiting,
            Some("ADMITTED") => PlaceState::Admitted,
            Some("EXPIRED") => PlaceState::Expired,
            _ => {
                return Err(StoreError::Internal(format!(
                    "unexpected queue reply {reply:?}"
                )))
            }
        };
        let rank = int(reply.get(1))?;
        let end = int(reply.get(2))?;
        Ok(QueueReply::Place(Place {
            state,
            ahead: (rank >= 0).then_some(rank as u64),
            session_end_ms: (end > 0).then_some(end),
            admitted_total: int(reply.get(3))? as u64,
            waiting: int(reply.get(4))? as u64,
        }))
    }

    async fn run(
        &self,
        script: &Script,
        show_id: i64,
        args: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut inv = script.prepare_invoke();
        for k in self.keys(show_id) {
            inv.key(k);
        }
        inv.arg(self.channel(show_id));
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(map_err)
    }

    /// Run a read script for many shows in one pipelined round trip (ARGV: the channel, then the
    /// show's extra argument or ""), in order. A show whose booked cache is not loaded (`LOAD`)
    /// is loaded and read again; a Redis that lost its scripts gets them again.
    async fn run_per_show(
        &self,
        script: &Script,
        shows: &[(i64, Option<&str>)],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let mut pipe = redis::pipe();
        for (id, arg) in shows {
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(KEY_NAMES.len())
                .arg(&self.keys(*id))
                .arg(self.channel(*id))
                .arg(arg.unwrap_or(""));
        }
        let mut conn = self.conn.clone();
        let replies: Result<Vec<Vec<String>>, RedisError> = pipe.query_async(&mut conn).await;
        let replies = match replies {
            Ok(r) => r,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis restarted (or was flushed of scripts): load it and go again.
                script.load_async(&mut conn).await.map_err(map_err)?;
                pipe.query_async(&mut conn).await.map_err(map_err)?
            }
            Err(e) => return Err(map_err(e)),
        };
        let mut out = Vec::with_capacity(replies.len());
        for ((id, _), reply) in shows.iter().zip(replies) {
            out.push(if reply.first().map(String::as_str) == Some("LOAD") {
                self.run_loaded(script, *id, &[]).await?
            } else {
                reply
            });
        }
        Ok(out)
    }

    /// Run a script that needs the booked-seat cache, loading it from the database when the
    /// script answers `LOAD` (first use, or Redis lost its data).
    async fn run_loaded(
        &self,
        script: &Script,
        show_id: i64,
        args: &[String],
    ) -> Result<Vec<String>, StoreError> {
        for _ in 0..5 {
            let reply = self.run(script, show_id, args).await?;
            if reply.first().map(String::as_str) != Some("LOAD") {
                return Ok(reply);
            }
            self.load_booked(show_id).await?;
        }
        Err(StoreError::Internal(format!(
            "show {show_id}: booked seats could not be loaded"
        )))
    }

    /// Fill the booked cache from the database. The generation read first fences the load: a
    /// booking committed meanwhile bumps it and the load is retried with fresh data.
    async fn load_booked(&self, show_id: i64) -> Result<(), StoreError> {
        let meta = self.keys(show_id)[5].clone();
        for _ in 0..10 {
            let mut conn = self.conn.clone();
            let gen: Option<String> = redis::cmd("HGET")
                .arg(&meta)
                .arg("bookgen")
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            let booked = seatmap::booked_from_db(&self.db, &[show_id])
                .await?
                .remove(&show_id)
                .unwrap_or_default();
            let mut args = vec![gen.unwrap_or_else(|| "0".into())];
            args.extend(booked.iter().map(i64::to_string));
            let reply = self.run(&self.scripts.load, show_id, &args).await?;
            match reply.first().map(String::as_str) {
                Some("OK") => {
                    tracing::info!(
                        show_id,
                        booked = booked.len(),
                        "booked-seat cache loaded from the database"
                    );
                    return Ok(());
                }
                Some("ALREADY") => return Ok(()),
                _ => continue,
            }
        }
        Err(StoreError::Internal(format!(
            "show {show_id}: booked seats kept changing while loading"
        )))
    }

    /// Load a show's seat plan into its slot (and build its occupancy string).
    async fn load_plan(&self, show_id: i64, layout: &Layout) -> Result<(), StoreError> {
        let mut inv = self.scripts.plan.prepare_invoke();
        for k in self.keys(show_id) {
            inv.key(k);
        }
        inv.arg(self.channel(show_id));
        for (field, value) in layout.plan.redis_fields() {
            inv.arg(field).arg(value);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<String> = inv.invoke_async(&mut conn).await.map_err(map_err)?;
        match reply.first().map(String::as_str) {
            Some("OK") => {
                tracing::info!(
                    show_id,
                    seats = layout.len(),
                    "seat plan loaded into the hold store"
                );
                Ok(())
            }
            Some("LOAD") => self.load_booked(show_id).await,
            _ => Err(StoreError::Internal(format!(
                "unexpected plan reply {reply:?}"
            ))),
        }
    }

    /// `ZADD sweep score member` then the script, pipelined in one round trip.
    async fn run_registered(
        &self,
        script: &Script,
        show_id: i64,
        member: &str,
        score: i64,
        args: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(self.sweep_key())
            .arg(score)
            .arg(member)
            .ignore();
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(KEY_NAMES.len())
            .arg(&self.keys(show_id))
            .arg(self.channel(show_id))
            .arg(args);
        let mut conn = self.conn.clone();
        match pipe.query_async::<(Vec<String>,)>(&mut conn).await {
            Ok((reply,)) => Ok(reply),
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis restarted (or its script cache was flushed): load the script, go again.
                script.load_async(&mut conn).await.map_err(map_err)?;
                let (reply,) = pipe.query_async(&mut conn).await.map_err(map_err)?;
                Ok(reply)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Record a hold in the global sweep index so that its expiry is announced even if no request
    /// ever touches the show again.
    async fn register(
        &self,
        show_id: i64,
        hold_id: &str,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZADD")
            .arg(self.sweep_key())
            .arg(expires_ms)
            .arg(format!("{show_id}:{hold_id}"))
            .query_async::<i64>(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn parse_snapshot(reply: &[String]) -> Result<ShowState, StoreError> {
        let version = int(reply.get(1))?;
        let nbooked = int(reply.get(3))? as usize;
        let mut state = ShowState {
            version,
            stamp: reply.get(2).cloned(),
            ..Default::default()
        };
        let booked_end = 4 + nbooked;
        for s in reply.get(4..booked_end).unwrap_or_default() {
            state.booked.insert(int(Some(s))?);
        }
        for chunk in reply.get(booked_end..).unwrap_or_default().chunks(3) {
            if let [seat, hold, user] = chunk {
                state.held.insert(
                    int(Some(seat))?,
                    Holder {
                        hold_id: hold.clone(),
                        user_id: int(Some(user))?,
                    },
                );
            }
        }
        Ok(state)
    }
}

#[async_trait::async_trait]
impl HoldStore for RedisStore {
    async fn hold(&self, r: &HoldRequest<'_>) -> Result<HoldOutcome, StoreError> {
        let HoldRequest {
            show_id,
            hold_id,
            user_id,
            seats,
            ttl,
            max_holds,
        } = *r;
        let ttl_ms = ttl.as_millis() as i64;
        let mut args = vec![
            hold_id.to_string(),
            user_id.to_string(),
            ttl_ms.to_string(),
            max_holds.to_string(),
        ];
        args.extend(seats.iter().map(i64::to_string));
        // One round trip: the sweep-index entry and the script travel in one pipeline, the entry
        // first, so that if this instance dies right after the script the sweeper still finds
        // the hold. The entry's time is this clock's estimate plus a little slack; the sweeper
        // re-files an entry that comes due before its hold does (and drops refused ones).
        let estimate = chrono::Utc::now().timestamp_millis() + ttl_ms + SWEEP_SLACK_MS;
        let member = format!("{show_id}:{hold_id}");
        let mut reply = Vec::new();
        for _ in 0..5 {
            reply = self
                .run_registered(&self.scripts.hold, show_id, &member, estimate, &args)
                .await?;
            if reply.first().map(String::as_str) != Some("LOAD") {
                break;
            }
            self.load_booked(show_id).await?;
        }
        match reply.first().map(String::as_str) {
            Some("OK") => Ok(HoldOutcome::Granted {
                version: int(reply.get(1))?,
                expires_ms: int(reply.get(2))?,
            }),
            Some("TAKEN") => {
                let _ = self.refused.send(member);
                Ok(HoldOutcome::Unavailable(
                    reply[1..].iter().filter_map(|s| s.parse().ok()).collect(),
                ))
            }
            Some("LIMIT") => {
                let _ = self.refused.send(member);
                Ok(HoldOutcome::TooManyHolds)
            }
            Some("NOTADMITTED") => {
                let _ = self.refused.send(member);
                Ok(HoldOutcome::NotAdmitted)
            }
            Some("QCFG") => {
                let _ = self.refused.send(member);
                Ok(HoldOutcome::NeedQueueConfig)
            }
            _ => Err(StoreError::Internal(format!(
                "unexpected hold reply {reply:?}"
            ))),
        }
    }

    async fn hold_best(&self, r: &BestRequest<'_>) -> Result<BestOutcome, StoreError> {
        let ttl_ms = r.ttl.as_millis() as i64;
        let mask: String = match &r.ask.categories {
            None => String::new(),
            Some(allowed) => allowed.iter().map(|a| if *a { '1' } else { '0' }).collect(),
        };
        let args = [
            r.hold_id.to_string(),
            r.user_id.to_string(),
            ttl_ms.to_string(),
            r.max_holds.to_string(),
            r.ask.count.to_string(),
            if r.ask.together { "1" } else { "0" }.to_string(),
            r.ask.wheelchair.to_string(),
            mask,
        ];
        let estimate = chrono::Utc::now().timestamp_millis() + ttl_ms + SWEEP_SLACK_MS;
        let member = format!("{}:{}", r.show_id, r.hold_id);
        let mut reply = Vec::new();
        // At most: load the booked cache, then the plan, then the hold.
        for _ in 0..5 {
            reply = self
                .run_registered(&self.scripts.best, r.show_id, &member, estimate, &args)
                .await?;
            match reply.first().map(String::as_str) {
                Some("LOAD") => self.load_booked(r.show_id).await?,
                Some("PLAN") => self.load_plan(r.show_id, r.layout).await?,
                _ => break,
            }
        }
        match reply.first().map(String::as_str) {
            Some("OK") => Ok(BestOutcome::Granted {
                version: int(reply.get(1))?,
                expires_ms: int(reply.get(2))?,
                together: reply.get(3).map(String::as_str) == Some("1"),
                seat_ids: reply
                    .get(4..)
                    .unwrap_or_default()
                    .iter()
                    .map(|s| int(Some(s)))
                    .collect::<Result<_, _>>()?,
            }),
            Some("NONE") => {
                let _ = self.refused.send(member);
                Ok(BestOutcome::NoneFree)
            }
            Some("LIMIT") => {
                let _ = self.refused.send(member);
                Ok(BestOutcome::TooManyHolds)
            }
            Some("NOTADMITTED") => {
                let _ = self.refused.send(member);
                Ok(BestOutcome::NotAdmitted)
            }
            Some("QCFG") => {
                let _ = self.refused.send(member);
                Ok(BestOutcome::NeedQueueConfig)
            }
            _ => {
                let _ = self.refused.send(member);
                Err(StoreError::Internal(format!(
                    "unexpected best-available reply {reply:?}"
                )))
            }
        }
    }

    async fn release(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
    ) -> Result<ReleaseOutcome, StoreError> {
        let reply = self
            .run(
                &self.scripts.release,
                show_id,
                &[hold_id.to_string(), user_id.to_string()],
            )
            .await?;
        match reply.first().map(String::as_str) {
            Some("RELEASED") => Ok(ReleaseOutcome::Released {
                version: int(reply.get(1))?,
            }),
            Some("NOTLIVE") => Ok(ReleaseOutcome::NotLive),
            Some("FORBIDDEN") => Ok(ReleaseOutcome::NotOwner),
            _ => Err(StoreError::Internal(format!(
                "unexpected release reply {reply:?}"
            ))),
        }
    }

    async fn get(&self, show_id: i64, hold_id: &str) -> Result<Option<HoldRecord>, StoreError> {
        let reply = self
            .run(&self.scripts.get, show_id, &[hold_id.to_string()])
            .await?;
        match reply.first().map(String::as_str) {
            Some("LIVE") => Ok(Some(HoldRecord {
                user_id: int(reply.get(1))?,
                expires_ms: int(reply.get(2))?,
                created_ms: int(reply.get(3))?,
                seat_ids: reply[4..].iter().filter_map(|s| s.parse().ok()).collect(),
            })),
            Some("NOTLIVE") => Ok(None),
            _ => Err(StoreError::Internal(format!(
                "unexpected get reply {reply:?}"
            ))),
        }
    }

    async fn extend(
        &self,
        show_id: i64,
        hold_id: &str,
        user_id: i64,
        window: Duration,
        cap: Duration,
    ) -> Result<ExtendOutcome, StoreError> {
        let args = [
            hold_id.to_string(),
            user_id.to_string(),
            window.as_millis().to_string(),
            cap.as_millis().to_string(),
        ];
        let reply = self.run(&self.scripts.extend, show_id, &args).await?;
        match reply.first().map(String::as_str) {
            Some("OK") => {
                let expires_ms = int(reply.get(1))?;
                self.register(show_id, hold_id, expires_ms).await?;
                Ok(ExtendOutcome::Extended { expires_ms })
            }
            Some("NOTLIVE") => Ok(ExtendOutcome::NotLive),
            Some("FORBIDDEN") => Ok(ExtendOutcome::NotOwner),
            Some("NOTADMITTED") => Ok(ExtendOutcome::NotAdmitted),
            _ => Err(StoreError::Internal(format!(
                "unexpected extend reply {reply:?}"
            ))),
        }
    }

    async fn book(
        &self,
        show_id: i64,
        hold_id: Option<&str>,
        seats: &[i64],
    ) -> Result<i64, StoreError> {
        let mut args = vec![hold_id.unwrap_or("").to_string()];
        args.extend(seats.iter().map(i64::to_string));
        let reply = self.run(&self.scripts.book, show_id, &args).await?;
        int(reply.get(1))
    }

    async fn unbook(&self, show_id: i64, seats: &[i64]) -> Result<i64, StoreError> {
        let args: Vec<String> = seats.iter().map(i64::to_string).collect();
        let reply = self.run(&self.scripts.unbook, show_id, &args).await?;
        int(reply.get(1))
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

    async fn counts(&self, show_ids: &[i64]) -> Result<HashMap<i64, LiveCounts>, StoreError> {
        let shows: Vec<(i64, Option<&str>)> = show_ids.iter().map(|id| (*id, None)).collect();
        let replies = self.run_per_show(&self.scripts.counts, &shows).await?;
        let mut out = HashMap::new();
        for (id, reply) in show_ids.iter().zip(replies) {
            out.insert(
                *id,
                LiveCounts {
                    version: int(reply.get(1))?,
                    stamp: reply.get(2).cloned(),
                    held: int(reply.get(3))?,
                    booked: int(reply.get(4))?,
                    holds_unknown: false,
                },
            );
        }
        Ok(out)
    }

    async fn snapshot_since(
        &self,
        shows: &[(i64, Option<&str>)],
    ) -> Result<HashMap<i64, Option<ShowState>>, StoreError> {
        // A show still at the caller's stamp answers `SAME` (a few bytes instead of its map).
        let replies = self.run_per_show(&self.scripts.snapshot, shows).await?;
        let mut out = HashMap::new();
        for ((id, _), reply) in shows.iter().zip(replies) {
            let state = match reply.first().map(String::as_str) {
                Some("SAME") => None,
                _ => Some(Self::parse_snapshot(&reply)?),
            };
            out.insert(*id, state);
        }
        Ok(out)
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        let cutoff = chrono::Utc::now().timestamp_millis();
        let mut conn = self.conn.clone();
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.sweep_key())
            .arg("-inf")
            .arg(cutoff)
            .arg("LIMIT")
            .arg(0)
            .arg(500)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        let mut by_show: HashMap<i64, Vec<String>> = HashMap::new();
        let mut ack = vec![cutoff.to_string()];
        for member in &due {
            match member
                .split_once(':')
                .and_then(|(s, h)| Some((s.parse::<i64>().ok()?, h)))
            {
                Some((show, hold)) => by_show.entry(show).or_default().push(hold.to_string()),
                None => {
                    ack.push(member.clone());
                    ack.push("0".into());
                }
            }
        }
        for (show, holds) in &by_show {
            let live = self.run(&self.scripts.expire, *show, holds).await?;
            let live: HashMap<&str, &str> = live
                .chunks(2)
                .filter_map(|c| Some((c.first()?.as_str(), c.get(1)?.as_str())))
                .collect();
            for h in holds {
                ack.push(format!("{show}:{h}"));
                ack.push(
                    live.get(h.as_str())
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "0".into()),
                );
            }
        }
        if ack.len() > 1 {
            let mut inv = self.scripts.sweep_ack.prepare_invoke();
            inv.key(self.sweep_key());
            for a in &ack {
                inv.arg(a);
            }
            inv.invoke_async::<i64>(&mut conn).await.map_err(map_err)?;
        }
        Ok(due.len())
    }

    async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        matches!(redis::cmd("PING").query_async::<String>(&mut conn).await, Ok(ref s) if s == "PONG")
    }

    async fn configure_queue(
        &self,
        show_id: i64,
        c: QueueConfig,
        only_if_missing: bool,
    ) -> Result<(), StoreError> {
        let args = [
            if c.on { "1" } else { "0" }.to_string(),
            c.opens_ms.to_string(),
            c.interval_ms.to_string(),
            c.session_ms.to_string(),
            c.max_shoppers.to_string(),
            if only_if_missing { "1" } else { "0" }.to_string(),
        ];
        let reply = self.run(&self.scripts.qconfig, show_id, &args).await?;
        if reply.first().map(String::as_str) == Some("OK") {
            let mut conn = self.conn.clone();
            let op = if c.on { "SADD" } else { "SREM" };
            redis::cmd(op)
                .arg(self.queues_key())
                .arg(show_id)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    async fn join_queue(
        &self,
        show_id: i64,
        user_id: i64,
        random: u64,
    ) -> Result<QueueReply, StoreError> {
        let args = [user_id.to_string(), (random % (1 << 52)).to_string()];
        let reply = self.run(&self.scripts.qjoin, show_id, &args).await?;
        Self::parse_queue(&reply)
    }

    async fn queue_place(&self, show_id: i64, user_id: i64) -> Result<QueueReply, StoreError> {
        let reply = self
            .run(&self.scripts.qticket, show_id, &[user_id.to_string()])
            .await?;
        Self::parse_queue(&reply)
    }

    async fn admit(&self, show_id: i64) -> Result<Admitted, StoreError> {
        let reply = self.run(&self.scripts.qadmit, show_id, &[]).await?;
        Ok(Admitted {
            now: int(reply.first())? as u64,
            total: int(reply.get(1))? as u64,
            waiting: int(reply.get(2))? as u64,
            shopping: int(reply.get(3))? as u64,
        })
    }

    async fn queued_shows(&self) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<i64> = redis::cmd("SMEMBERS")
            .arg(self.queues_key())
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(ids)
    }

    fn start_feed(
        &self,
        interest: tokio::sync::mpsc::UnboundedReceiver<Interest>,
        sink: FeedSink,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        tokio::spawn(feed::run(
            self.client.clone(),
            self.prefix.clone(),
            interest,
            sink,
            shutdown,
        ));
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
