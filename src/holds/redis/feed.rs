//! The Redis store's event feed: the scripts publish each change of a show on the show's own
//! channel (`keys::channel`) inside the script that makes it; this instance keeps ONE
//! subscription per show that has local subscribers (SUBSCRIBE on the first, UNSUBSCRIBE after
//! the last) on one supervised pub/sub connection. On a cluster the channels are sharded
//! (SPUBLISH/SSUBSCRIBE, Redis 7): a show's events stay on the shard that owns its slot, so
//! fan-out capacity grows with the shards; the cluster client keeps one RESP3 connection per
//! node and routes each SSUBSCRIBE to the owner of the channel's slot.
//!
//! When that connection breaks, events may have been missed and — if Redis restarted — the
//! store's versions start again from 0, so the feed says `Interrupted`: every local stream ends
//! and its client re-reads the map and subscribes again.
use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::keys::{channel, show_of_channel};
use crate::catalogue::seatmap::SeatStatus;
use crate::holds::store::{FeedItem, FeedSink, Interest, SeatChange, SeatEvent};
use crate::redis_conn::{cluster_builder, RedisTarget};

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

/// The feed, on a single node or a cluster.
pub(super) async fn run(
    target: RedisTarget,
    timeout: Duration,
    prefix: String,
    interest: mpsc::UnboundedReceiver<Interest>,
    sink: FeedSink,
    shutdown: CancellationToken,
) {
    match target {
        RedisTarget::Single(url) => match redis::Client::open(url.as_str()) {
            Ok(client) => run_single(client, prefix, interest, sink, shutdown).await,
            Err(e) => tracing::error!(error = %e, "live feed: bad REDIS_URL"),
        },
        RedisTarget::Cluster(nodes) => {
            run_cluster(nodes, timeout, prefix, interest, sink, shutdown).await
        }
    }
}

/// One pub/sub connection per instance, supervised: on any failure it reconnects and
/// resubscribes to every show that still has local subscribers.
async fn run_single(
    client: redis::Client,
    prefix: String,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    sink: FeedSink,
    shutdown: CancellationToken,
) {
    // The shows this hub watches, kept from its messages (in order, so a show watched again
    // right after it was unwatched stays watched).
    let mut watched: HashSet<i64> = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let pubsub =
            match tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub()).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "live feed: cannot connect to Redis; retrying");
                    if !pause(&shutdown, &mut backoff).await {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    tracing::warn!("live feed: Redis connect timed out; retrying");
                    continue;
                }
            };
        let (mut sink_half, mut stream) = pubsub.split();
        // Take in what changed while disconnected before subscribing again.
        while let Ok(cmd) = interest.try_recv() {
            note(&mut watched, cmd);
        }
        let mut ok = true;
        for show in &watched {
            if sink_half.subscribe(channel(&prefix, *show)).await.is_err() {
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        backoff = Duration::from_millis(100);
        tracing::debug!("live feed connected");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                cmd = interest.recv() => {
                    let Some(cmd) = cmd else { return };
                    note(&mut watched, cmd);
                    let res = match cmd {
                        Interest::Watch(show) => sink_half.subscribe(channel(&prefix, show)).await,
                        Interest::Unwatch(show) => sink_half.unsubscribe(channel(&prefix, show)).await,
                    };
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "live feed: Redis command failed; reconnecting");
                        break;
                    }
                }
                msg = stream.next() => match msg {
                    Some(msg) => {
                        let name = msg.get_channel_name().to_string();
                        let payload: String = msg.get_payload().unwrap_or_default();
                        match show_of_channel(&name).and_then(|show| parse_event(show, &payload)) {
                            Some(e) => sink(FeedItem::Event(e)),
                            None => tracing::warn!(channel = %name, "live feed: malformed event"),
                        }
                    }
                    None => {
                        tracing::warn!("live feed: Redis connection lost; reconnecting");
                        break;
                    }
                }
            }
        }
        // The connection broke: events may be missing, versions may restart.
        sink(FeedItem::Interrupted);
    }
}

/// On a cluster: one cluster connection (RESP3, one connection per node) whose pushes arrive on
/// a channel. A node's connection dropping (a failover, a restart, a resharding) arrives as a
/// `Disconnection` push: events of that node's shows may be lost, so the feed says
/// `Interrupted` (streams end, clients re-read) while the client reconnects and resubscribes.
async fn run_cluster(
    nodes: Vec<String>,
    timeout: Duration,
    prefix: String,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    sink: FeedSink,
    shutdown: CancellationToken,
) {
    let mut watched: HashSet<i64> = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let (tx, mut pushes) = mpsc::unbounded_channel::<redis::PushInfo>();
        let client = match cluster_builder(&nodes, timeout)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "live feed: bad cluster settings");
                return;
            }
        };
        let conn = tokio::time::timeout(timeout, client.get_async_connection()).await;
        let mut conn = match conn {
            Ok(Ok(c)) => c,
            other => {
                let e = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                tracing::warn!(error = %e, "live feed: cannot connect to the Redis cluster; retrying");
                if !pause(&shutdown, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        while let Ok(cmd) = interest.try_recv() {
            note(&mut watched, cmd);
        }
        let mut ok = true;
        for show in &watched {
            if conn.ssubscribe(channel(&prefix, *show)).await.is_err() {
                ok = false;
                break;
            }
        }
        if !ok {
            sink(FeedItem::Interrupted);
            if !pause(&shutdown, &mut backoff).await {
                return;
            }
            continue;
        }
        backoff = Duration::from_millis(100);
        tracing::debug!("live feed connected to the cluster");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                cmd = interest.recv() => {
                    let Some(cmd) = cmd else { return };
                    note(&mut watched, cmd);
                    let res = match cmd {
                        Interest::Watch(show) => conn.ssubscribe(channel(&prefix, show)).await,
                        Interest::Unwatch(show) => conn.sunsubscribe(channel(&prefix, show)).await,
                    };
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "live feed: cluster command failed; reconnecting");
                        break;
                    }
                }
                push = pushes.recv() => match push {
                    Some(p) if p.kind == redis::PushKind::SMessage => {
                        let text = |v: Option<&redis::Value>| match v {
                            Some(redis::Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
                            _ => None,
                        };
                        let (name, payload) = (text(p.data.first()), text(p.data.get(1)));
                        match (name, payload) {
                            (Some(name), Some(payload)) => {
                                match show_of_channel(&name).and_then(|show| parse_event(show, &payload)) {
                                    Some(e) => sink(FeedItem::Event(e)),
                                    None => tracing::warn!(channel = %name, "live feed: malformed event"),
                                }
                            }
                            _ => tracing::warn!("live feed: malformed push"),
                        }
                    }
                    Some(p) if p.kind == redis::PushKind::Disconnection => {
                        // The client reconnects and resubscribes by itself; what was published
                        // meanwhile is lost, so every stream re-reads.
                        tracing::warn!("live feed: a cluster node's connection dropped");
                        sink(FeedItem::Interrupted);
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
        sink(FeedItem::Interrupted);
    }
}

/// Wait `backoff` before reconnecting (doubling it, up to 2 s); false when shut down meanwhile.
async fn pause(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
    true
}

fn note(watched: &mut HashSet<i64>, cmd: Interest) {
    match cmd {
        Interest::Watch(show) => watched.insert(show),
        Interest::Unwatch(show) => watched.remove(&show),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_as_the_scripts_write_them() {
        let e = parse_event(
            7,
            r#"{"v":12,"h":2,"b":1,"c":[[3,"A"],[4,"H",99],[5,"B"]]}"#,
        )
        .expect("event");
        assert_eq!((e.show_id, e.version, e.held, e.booked), (7, 12, 2, 1));
        assert_eq!(
            e.changes,
            vec![
                SeatChange {
                    seat_id: 3,
                    status: SeatStatus::Available,
                    holder: None
                },
                SeatChange {
                    seat_id: 4,
                    status: SeatStatus::Held,
                    holder: Some(99)
                },
                SeatChange {
                    seat_id: 5,
                    status: SeatStatus::Booked,
                    holder: None
                },
            ]
        );
        // An empty change list is an event (a version bump); anything malformed is not.
        assert!(parse_event(7, r#"{"v":1,"c":[]}"#).is_some());
        for bad in [
            "",
            "{}",
            r#"{"v":"x","c":[]}"#,
            r#"{"v":1,"c":[[3,"Z"]]}"#,
            r#"{"v":1,"c":[["3","A"]]}"#,
        ] {
            assert!(parse_event(7, bad).is_none(), "{bad}");
        }
    }
}
