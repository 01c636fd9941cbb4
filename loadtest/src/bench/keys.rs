//! Redis memory of past shows: N shows, each with bookings and holds, loaded into a Redis store
//! whose keys live `grace` past the show's start; memory and keys before, filled, and after their
//! lifetime (with the sweeper's pass over the expiry indexes, as a server runs it).
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use boxoffice::holds::redis::RedisStore;
use boxoffice::holds::{HoldOutcome, HoldRequest, HoldStore, QueueConfig, StoreSettings};

#[derive(Debug, Clone, Serialize)]
pub struct PastShows {
    pub shows: u64,
    pub bytes_before: i64,
    pub bytes_filled: i64,
    pub bytes_after: i64,
    pub keys_before: i64,
    pub keys_filled: i64,
    pub keys_after: i64,
    pub seconds_to_expire: f64,
}

async fn used(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<(i64, i64)> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    let bytes = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let keys: i64 = redis::cmd("DBSIZE").query_async(conn).await?;
    Ok((bytes, keys))
}

pub(super) async fn past_shows(
    url: &str,
    prefix: &str,
    shows: u64,
    timeout: Duration,
) -> anyhow::Result<PastShows> {
    // The shows need no database rows (a show the database does not know "started" now): an
    // empty in-memory database keeps the measurement off the servers' busy PostgreSQL.
    let (db, _) = boxoffice::db::connect_sized("sqlite::memory:", timeout, 1).await?;
    boxoffice::db::migrate(&db).await?;
    let grace = Duration::from_secs(3);
    let mut settings = StoreSettings::redis(url, prefix, timeout);
    settings.key_grace = grace;
    let store: Arc<dyn HoldStore> = Arc::new(RedisStore::connect(url, &settings, db).await?);
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let (bytes_before, keys_before) = used(&mut conn).await?;
    // Show ids no database row has: each "started" now, so its keys live `grace` from load.
    let base = 2_000_000_000 + (rand::random::<u32>() as i64) * 100_000;
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..shows as i64)
        .map(|i| {
            let store = store.clone();
            async move {
                let show = base + i;
                // As a server does: waiting room mirrored (off), map read (loads the show and
                // its lifetime), four seats sold, one hold taken.
                store.configure_queue(show, QueueConfig::OFF, true).await?;
                store.snapshot(&[show]).await?;
                store.book(show, None, &[1, 2, 3, 4]).await?;
                let hold_id = boxoffice::holds::new_hold_id(show);
                let held = store
                    .hold(&HoldRequest {
                        show_id: show,
                        hold_id: &hold_id,
                        user_id: 7,
                        seats: &[5, 6],
                        ttl: Duration::from_secs(2),
                        max_holds: 2,
                    })
                    .await?;
                anyhow::ensure!(
                    matches!(held, HoldOutcome::Granted { .. }),
                    "show {show}: hold not granted: {held:?}"
                );
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let (bytes_filled, keys_filled) = used(&mut conn).await?;
    let filled_at = Instant::now();
    tokio::time::sleep(grace).await;
    // Redis expires keys in the background; the sweeper drops the expiry-index entries.
    let mut last = (bytes_filled, keys_filled);
    for _ in 0..120 {
        while store.sweep().await? > 0 {}
        last = used(&mut conn).await?;
        if last.1 <= keys_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(PastShows {
        shows,
        bytes_before,
        bytes_filled,
        bytes_after: last.0,
        keys_before,
        keys_filled,
        keys_after: last.1,
        seconds_to_expire: filled_at.elapsed().as_secs_f64(),
    })
}
