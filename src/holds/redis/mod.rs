//! The Redis hold store: every operation on a show is one Lua script (EVALSHA, reloaded by the
//! client on NOSCRIPT) over keys sharing the hash tag of the show's bucket (`keys.rs`), on a
//! single node or a Redis Cluster (`redis_conn.rs`). Scripts never wait for anything, so there is
//! nothing to deadlock on; Redis runs them one at a time, so each is atomic.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{Cmd, RedisError, Script};
use sea_orm::{DatabaseConnection, EntityTrait};

use super::store::*;

mod batch;
mod feed;
pub mod keys;
use crate::catalogue::layout::Layout;
use crate::catalogue::seatmap::{self, Holder, ShowState};
use crate::redis_conn::{RedisConn, RedisTarget, SAFE_EVICTION_POLICIES};
pub use feed::parse_event;
use keys::{script_keys, sweep_key, BUCKETS};

const COMMON: &str = include_str!("../scripts/common.lua");

/// A show's keys are loaded with at least this much life left (or the grace, if shorter), so
/// that requests for a show whose keys already expired reload them at most once per period.
const LATE_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// How often the eviction policy is checked again after start-up.
const POLICY_CHECK: Duration = Duration::from_secs(30);

/// A script with the shared prelude; on a cluster events go out on sharded channels.
fn script(body: &str, cluster: bool) -> Script {
    let publish = if cluster { "SPUBLISH" } else { "PUBLISH" };
    Script::new(&format!("local PUB = '{publish}'\n{COMMON}\n{body}"))
}

/// The per-show scripts but `hold`, `extend` and `book`, which their batches own (`batch.rs`).
struct Scripts {
    release: Script,
    get: Script,
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
}

pub struct RedisStore {
    /// For the event feed's own pub/sub connection.
    target: RedisTarget,
    calls: Calls,
    /// New holds, the payments' extensions of holds and the mirrors of new bookings, sent in
    /// batches per show (`batch.rs`).
    holds: batch::Batches,
    extends: batch::Batches,
    books: batch::Batches,
    db: DatabaseConnection,
    scripts: Scripts,
    timeout: Duration,
    /// How long a show's keys outlive its start.
    grace: Duration,
    /// Why holds are refused: Redis runs under an eviction policy that may drop our keys.
    eviction: Arc<Mutex<Option<String>>>,
}

/// What a script call needs: the connection and the shows' key names. Cheap to clone (the batch
/// workers have their own).
#[derive(Clone)]
struct Calls {
    conn: RedisConn,
    prefix: Arc<str>,
    /// Each show's key names, formatted once (twelve `format!`s a script call showed in the
    /// profile of a hold load).
    names: Arc<Mutex<HashMap<i64, Arc<ShowKeys>>>>,
}

/// A show's keys in the order `common.lua` documents, and its event channel.
struct ShowKeys {
    keys: [String; 11],
    channel: String,
}

/// Shows whose key names are kept; past it the cache starts over.
const KEPT_SHOWS: usize = 4096;

/// One script call, or a pipeline of them.
#[derive(Clone, Copy)]
enum Call<'a> {
    One(&'a Cmd),
    Many(&'a redis::Pipeline),
}

impl Call<'_> {
    async fn send<T: redis::FromRedisValue>(self, conn: &mut RedisConn) -> redis::RedisResult<T> {
        match self {
            Call::One(cmd) => cmd.query_async(conn).await,
            Call::Many(pipe) => pipe.query_async(conn).await,
        }
    }
}

fn map_err(e: RedisError) -> StoreError {
    // Connection trouble (a cluster mid-failover included), a Redis still loading its data, or a
    // full one under `noeviction` (OOM): all are "try again shortly", never a bug of ours.
    if crate::redis_conn::connection_trouble(&e) || matches!(e.code(), Some("LOADING" | "OOM")) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

fn int(v: Option<&String>) -> Result<i64, StoreError> {
    v.and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Internal("malformed script reply".into()))
}

impl Calls {
    /// The keys of a show, in the order `common.lua` documents, and its channel.
    fn keys(&self, show_id: i64) -> Arc<ShowKeys> {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = names.get(&show_id) {
            return k.clone();
        }
        if names.len() >= KEPT_SHOWS {
            names.clear();
        }
        let k = Arc::new(ShowKeys {
            keys: script_keys(&self.prefix, show_id),
            channel: keys::channel(&self.prefix, show_id),
        });
        names.insert(show_id, k.clone());
        k
    }

    /// A per-show script's `EVALSHA` with the show's keys and its channel (`ARGV[1]`) given; the
    /// script's own arguments follow. Built straight into one command buffer (the redis crate's
    /// `ScriptInvocation` first copies every key and argument into a vector of its own: 17
    /// allocations per hold).
    fn eval(&self, script: &Script, show_id: i64) -> Cmd {
        let names = self.keys(show_id);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash())
            .arg(names.keys.len())
            .arg(&names.keys)
            .arg(&names.channel);
        cmd
    }

    /// Send a script's call, or a pipeline of them; a Redis that lost its scripts (a restart, a
    /// flush, a promoted replica) gets `script` again and the call is sent once more.
    async fn query_script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        call: Call<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match call.send(&mut conn).await {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(&mut conn).await.map_err(map_err)?;
                call.send(&mut conn).await.map_err(map_err)
            }
            Err(e) => Err(map_err(e)),
        }
    }
}

impl RedisStore {
    pub async fn connect(
        url: &str,
        settings: &super::StoreSettings,
        db: DatabaseConnection,
    ) -> anyhow::Result<Self> {
        let timeout = settings.timeout;
        let target = RedisTarget::parse(url).map_err(|e| anyhow::anyhow!(e))?;
        // Lazy: the server starts even when Redis is down (holds answer SERVICE_UNAVAILABLE and
        // /readyz says 503 until it is back; the connection reconnects on use).
        let conn = RedisConn::connect(&target, timeout, 2)?;
        let cluster = conn.is_cluster();
        let up = tokio::time::timeout(timeout, conn.eviction_policies()).await;
        let eviction = Arc::new(Mutex::new(None));
        match up {
            Ok(Some(policies)) => {
                if let Some(refusal) = eviction_refusal(&policies, settings.allow_eviction) {
                    anyhow::bail!("{refusal}");
                }
            }
            Ok(None) => {
                // Reachable but CONFIG is refused (managed services often rename it), or down.
                let mut probe = conn.clone();
                let ping = tokio::time::timeout(
                    timeout,
                    redis::cmd("PING").query_async::<String>(&mut probe),
                )
                .await;
                if matches!(ping, Ok(Ok(_))) {
                    tracing::warn!("cannot read Redis's maxmemory-policy (CONFIG GET refused): make sure it is noeviction");
                } else {
                    tracing::warn!("Redis is unreachable at start-up: holds and checkout answer SERVICE_UNAVAILABLE until it is back");
                }
            }
            Err(_) => tracing::warn!("Redis is unreachable at start-up: holds and checkout answer SERVICE_UNAVAILABLE until it is back"),
        }
        tokio::spawn(watch_policy(
            conn.clone(),
            settings.allow_eviction,
            Arc::downgrade(&eviction),
        ));
        if cluster {
            tracing::info!("hold store on a Redis Cluster (sharded pub/sub for live maps)");
        }
        let s = |body: &str| script(body, cluster);
        let calls = Calls {
            conn,
            prefix: settings.key_prefix.as_str().into(),
            names: Arc::default(),
        };
        // A script that takes a list of requests, with its batch workers (`batch.rs`).
        let batches = |body: &str, name| batch::Batches::start(calls.clone(), s(body), name);
        Ok(RedisStore {
            target,
            holds: batches(include_str!("../scripts/hold.lua"), "hold"),
            extends: batches(include_str!("../scripts/extend.lua"), "extend"),
            books: batches(include_str!("../scripts/book.lua"), "book"),
            calls,
            db,
            timeout,
            grace: settings.key_grace,
            eviction,
            scripts: Scripts {
                release: s(include_str!("../scripts/release.lua")),
                get: s(include_str!("../scripts/get.lua")),
                unbook: s(include_str!("../scripts/unbook.lua")),
                load: s(include_str!("../scripts/load.lua")),
                best: s(include_str!("../scripts/best.lua")),
                plan: s(include_str!("../scripts/plan.lua")),
                qconfig: s(include_str!("../scripts/qconfig.lua")),
                qjoin: s(include_str!("../scripts/qjoin.lua")),
                qticket: s(include_str!("../scripts/qticket.lua")),
                qadmit: s(include_str!("../scripts/qadmit.lua")),
                snapshot: s(include_str!("../scripts/snapshot.lua")),
                counts: s(include_str!("../scripts/counts.lua")),
                expire: s(include_str!("../scripts/expire.lua")),
            },
        })
    }

    /// Holds are refused while Redis may evict our keys (see `watch_policy`).
    fn check_eviction(&self) -> Result<(), StoreError> {
        match self.eviction.lock().map(|g| g.clone()) {
            Ok(Some(refusal)) => Err(StoreError::Unavailable(refusal)),
            _ => Ok(()),
        }
    }

    /// Shows whose waiting room is on.
    fn queues_key(&self) -> String {
        format!("{}:queues", self.calls.prefix)
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
        let mut cmd = self.calls.eval(script, show_id);
        cmd.arg(args);
        self.calls.query_script(script, Call::One(&cmd)).await
    }

    /// Run a read script for many shows in one pipelined round trip (ARGV: the channel, then the
    /// show's extra argument or ""), in order. A show whose booked cache is not loaded (`LOAD`)
    /// is loaded and read again; a Redis that lost its scripts gets them again. On a cluster a
    /// pipeline may not cross slots: one pipeline per bucket, all at once.
    async fn run_per_show(
        &self,
        script: &Script,
        shows: &[(i64, Option<&str>)],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let groups = self.by_slot(shows.iter().map(|(id, _)| *id));
        let runs = groups.iter().map(|group| async move {
            let mut pipe = redis::pipe();
            for &i in group {
                let (id, arg) = shows[i];
                let mut cmd = self.calls.eval(script, id);
                cmd.arg(arg.unwrap_or(""));
                pipe.add_command(cmd);
            }
            self.calls
                .query_script::<Vec<Vec<String>>>(script, Call::Many(&pipe))
                .await
        });
        let mut replies: Vec<Option<Vec<String>>> = vec![None; shows.len()];
        for (group, answers) in groups
            .iter()
            .zip(futures_util::future::join_all(runs).await)
        {
            for (&i, reply) in group.iter().zip(answers?) {
                replies[i] = Some(reply);
            }
        }
        let mut out = Vec::with_capacity(replies.len());
        for ((id, _), reply) in shows.iter().zip(replies) {
            let reply = reply.unwrap_or_default();
            out.push(if reply.first().map(String::as_str) == Some("LOAD") {
                self.run_loaded(script, *id, &[]).await?
            } else {
                reply
            });
        }
        Ok(out)
    }

    /// Positions of these shows grouped so that each group is one pipeline: all of them on a
    /// single node; one group per bucket (one slot) on a cluster, where a pipeline may not
    /// cross slots.
    fn by_slot(&self, shows: impl Iterator<Item = i64>) -> Vec<Vec<usize>> {
        if !self.calls.conn.is_cluster() {
            return vec![shows.enumerate().map(|(i, _)| i).collect()];
        }
        let mut by_bucket: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, id) in shows.enumerate() {
            by_bucket.entry(keys::bucket(id)).or_default().push(i);
        }
        by_bucket.into_values().collect()
    }

    /// Run a script that needs the booked-seat cache, loading it from the database when the
    /// script answers `LOAD` (first use, or Redis lost its data).
    async fn run_loaded(
        &self,
        script: &Script,
        show_id: i64,
        args: &[String],
    ) -> Result<Vec<String>, StoreError> {
        self.loaded(show_id, || self.run(script, show_id, args))
            .await
    }

    /// Make a call that needs the booked-seat cache (`call`, made again after each load) until
    /// it answers something other than `LOAD`.
    async fn loaded<F: Future<Output = Result<Vec<String>, StoreError>>>(
        &self,
        show_id: i64,
        mut call: impl FnMut() -> F,
    ) -> Result<Vec<String>, StoreError> {
        for _ in 0..5 {
            let reply = call().await?;
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
        let meta = self.calls.keys(show_id).keys[5].clone();
        for _ in 0..10 {
            let mut conn = self.calls.conn.clone();
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
            let mut args = vec![
                gen.unwrap_or_else(|| "0".into()),
                self.lifetime_end(show_id).await?.to_string(),
            ];
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

    /// When a show's keys expire (ms since the epoch): its start plus the grace, but never
    /// sooner than a little after now (a late request for a past show reloads them once).
    async fn lifetime_end(&self, show_id: i64) -> Result<i64, StoreError> {
        let starts = entity::show::Entity::find_by_id(show_id)
            .one(&self.db)
            .await?
            .map(|s| s.starts_at.timestamp_millis());
        let now = chrono::Utc::now().timestamp_millis();
        let grace = self.grace.as_millis() as i64;
        let end = starts.unwrap_or(now) + grace;
        Ok(end.max(now + grace.min(LATE_LIFETIME_MS)))
    }

    /// Load a show's seat plan into its slot (and build its occupancy string).
    async fn load_plan(&self, show_id: i64, layout: &Layout) -> Result<(), StoreError> {
        let mut cmd = self.calls.eval(&self.scripts.plan, show_id);
        for (field, value) in layout.plan.redis_fields() {
            cmd.arg(field).arg(value);
        }
        let reply = self
            .calls
            .query_script::<Vec<String>>(&self.scripts.plan, Call::One(&cmd))
            .await?;
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
        // This hold's part of `hold.lua`'s arguments.
        let args = || {
            let mut args = Vec::with_capacity(5 + seats.len());
            args.extend([
                hold_id.to_string(),
                user_id.to_string(),
                ttl_ms.to_string(),
                max_holds.to_string(),
                seats.len().to_string(),
            ]);
            args.extend(seats.iter().map(i64::to_string));
            args
        };
        self.check_eviction()?;
        // One round trip, shared with the other holds for this show waiting at the same moment:
        // the script files each hold in its bucket's sweep index itself (same slot, same atomic
        // step), so the sweeper finds it even if this instance dies now. A show whose booked
        // cache is not loaded (`LOAD`) is loaded and the hold sent again.
        let reply = self
            .loaded(show_id, || self.holds.call(show_id, args()))
            .await?;
        match reply.first().map(String::as_str) {
            Some("OK") => Ok(HoldOutcome::Granted {
                version: int(reply.get(1))?,
                expires_ms: int(reply.get(2))?,
            }),
            Some("TAKEN") => Ok(HoldOutcome::Unavailable(
                reply[1..].iter().filter_map(|s| s.parse().ok()).collect(),
            )),
            Some("LIMIT") => Ok(HoldOutcome::TooManyHolds),
            Some("NOTADMITTED") => Ok(HoldOutcome::NotAdmitted),
            Some("QCFG") => Ok(HoldOutcome::NeedQueueConfig),
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
        self.check_eviction()?;
        let mut reply = Vec::new();
        // At most: load the booked cache, then the plan, then the hold.
        for _ in 0..5 {
            reply = self.run(&self.scripts.best, r.show_id, &args).await?;
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
            Some("NONE") => Ok(BestOutcome::NoneFree),
            Some("LIMIT") => Ok(BestOutcome::TooManyHolds),
            Some("NOTADMITTED") => Ok(BestOutcome::NotAdmitted),
            Some("QCFG") => Ok(BestOutcome::NeedQueueConfig),
            _ => Err(StoreError::Internal(format!(
                "unexpected best-available reply {reply:?}"
            ))),
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
        // Sent with the other payments' extensions for this show waiting at the same moment
        // (checkouts admitted together reach this step together).
        let args = vec![
            hold_id.to_string(),
            user_id.to_string(),
            window.as_millis().to_string(),
            cap.as_millis().to_string(),
        ];
        let reply = self.extends.call(show_id, args).await?;
        match reply.first().map(String::as_str) {
            Some("OK") => Ok(ExtendOutcome::Extended {
                hold: HoldRecord {
                    user_id,
                    expires_ms: int(reply.get(1))?,
                    created_ms: int(reply.get(2))?,
                    seat_ids: reply
                        .iter()
                        .skip(3)
                        .map(|s| s.parse())
                        .collect::<Result<_, _>>()
                        .map_err(|e| {
                            StoreError::Internal(format!("extend reply {reply:?}: {e}"))
                        })?,
                },
            }),
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
        // Sent with the other mirrors for this show waiting at the same moment (group commit
        // confirms bookings together).
        let mut args = Vec::with_capacity(2 + seats.len());
        args.extend([hold_id.unwrap_or("").to_string(), seats.len().to_string()]);
        args.extend(seats.iter().map(i64::to_string));
        let reply = self.books.call(show_id, args).await?;
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
        // A page of shows: plain commands in one transaction per slot (4 per show, well under a
        // microsecond each) instead of one script per show (~8 µs each: the cost of any EVALSHA
        // here). A show not loaded yet, or with a hold already due (whose expiry a script must
        // announce first), goes through the `counts` script.
        let now = chrono::Utc::now().timestamp_millis();
        let groups: Vec<Vec<i64>> = self
            .by_slot(show_ids.iter().copied())
            .into_iter()
            .map(|g| g.into_iter().map(|i| show_ids[i]).collect())
            .collect();
        let reads = groups.iter().map(|group| async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for id in group {
                let key = |name: &str| keys::show_key(&self.calls.prefix, *id, name);
                pipe.cmd("HMGET")
                    .arg(key("meta"))
                    .arg("loaded")
                    .arg("ver")
                    .arg("tag");
                pipe.cmd("HLEN").arg(key("seats"));
                pipe.cmd("SCARD").arg(key("booked"));
                pipe.cmd("ZRANGEBYSCORE")
                    .arg(key("holds"))
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1);
            }
            let values: Vec<redis::Value> = pipe
                .query_async(&mut self.calls.conn.clone())
                .await
                .map_err(map_err)?;
            Ok::<_, StoreError>((group, values))
        });
        let mut out = HashMap::new();
        let mut scripted: Vec<(i64, Option<&str>)> = Vec::new();
        for read in futures_util::future::join_all(reads).await {
            let (group, values) = read?;
            let mut values = values.into_iter();
            for id in group {
                let mut next = || values.next().unwrap_or(redis::Value::Nil);
                let meta: Vec<Option<String>> = redis::from_redis_value(next()).unwrap_or_default();
                let held: i64 = redis::from_redis_value(next()).unwrap_or(0);
                let booked: i64 = redis::from_redis_value(next()).unwrap_or(0);
                let due: Vec<String> = redis::from_redis_value(next()).unwrap_or_default();
                let field = |i: usize| meta.get(i).cloned().flatten();
                if field(0).as_deref() != Some("1") || !due.is_empty() {
                    scripted.push((*id, None));
                    continue;
                }
                let version = field(1).and_then(|v| v.parse().ok()).unwrap_or(0);
                out.insert(
                    *id,
                    LiveCounts {
                        version,
                        stamp: Some(format!("{}:{version}", field(2).unwrap_or_default())),
                        held,
                        booked,
                        holds_unknown: false,
                    },
                );
            }
        }
        if !scripted.is_empty() {
            let replies = self.run_per_show(&self.scripts.counts, &scripted).await?;
            for ((id, _), reply) in scripted.iter().zip(replies) {
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
        // Every bucket's index: one pipeline on a single node; on a cluster one command per
        // bucket, all at once (each goes to the master that owns the bucket's slot).
        let now = chrono::Utc::now().timestamp_millis();
        let due_in = |bucket: usize| {
            let mut cmd = redis::cmd("ZRANGEBYSCORE");
            cmd.arg(sweep_key(&self.calls.prefix, bucket))
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(0)
                .arg(200);
            cmd
        };
        let due: Vec<Vec<String>> = if self.calls.conn.is_cluster() {
            let runs = (0..BUCKETS).map(|b| {
                let mut conn = self.calls.conn.clone();
                let cmd = due_in(b);
                async move { cmd.query_async::<Vec<String>>(&mut conn).await }
            });
            futures_util::future::join_all(runs)
                .await
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(map_err)?
        } else {
            let mut pipe = redis::pipe();
            for b in 0..BUCKETS {
                pipe.add_command(due_in(b));
            }
            pipe.query_async(&mut self.calls.conn.clone())
                .await
                .map_err(map_err)?
        };
        let mut by_show: HashMap<i64, Vec<String>> = HashMap::new();
        let mut count = 0;
        for hold in due.into_iter().flatten() {
            count += 1;
            // A hold id names its show (`<show>-<random>`).
            if let Some(show) = super::parse_hold_id(&hold) {
                by_show.entry(show).or_default().push(hold);
            }
        }
        for (show, holds) in &by_show {
            self.run(&self.scripts.expire, *show, holds).await?;
        }
        Ok(count)
    }

    async fn ping(&self) -> bool {
        let mut conn = self.calls.conn.clone();
        let up = matches!(redis::cmd("PING").query_async::<String>(&mut conn).await, Ok(ref s) if s == "PONG");
        up && self.check_eviction().is_ok()
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
            let mut conn = self.calls.conn.clone();
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
        let mut conn = self.calls.conn.clone();
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
            self.target.clone(),
            self.timeout,
            self.calls.prefix.to_string(),
            interest,
            sink,
            shutdown,
        ));
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// The one-line refusal when a policy in use may evict our keys (and the operator has not
/// accepted the risk).
fn eviction_refusal(policies: &[String], allowed: bool) -> Option<String> {
    let bad = policies
        .iter()
        .find(|p| !SAFE_EVICTION_POLICIES.contains(&p.as_str()))?;
    if allowed {
        tracing::warn!(policy = %bad, "Redis maxmemory-policy may evict keys (REDIS_ALLOW_EVICTION is set): an evicted booked-seat cache lets sold seats be held until the database refuses the booking");
        return None;
    }
    Some(format!(
        "Redis maxmemory-policy is {bad}, which may evict a show's booked-seat cache: set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction), or REDIS_ALLOW_EVICTION=true to accept the risk"
    ))
}

/// Check the eviction policy again every `POLICY_CHECK` (an operator may change it at run
/// time): while it may evict, holds answer SERVICE_UNAVAILABLE and `/readyz` says not ready.
async fn watch_policy(
    conn: RedisConn,
    allowed: bool,
    state: std::sync::Weak<Mutex<Option<String>>>,
) {
    loop {
        tokio::time::sleep(POLICY_CHECK).await;
        let Some(state) = state.upgrade() else { return };
        if let Some(policies) = conn.eviction_policies().await {
            let refusal = eviction_refusal(&policies, allowed);
            if let Some(r) = &refusal {
                tracing::error!("{r}");
            }
            if let Ok(mut g) = state.lock() {
                *g = refusal;
            }
        }
    }
}
