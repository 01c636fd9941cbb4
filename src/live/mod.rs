//! Live fan-out: per-show broadcast channels feeding GraphQL subscriptions on this instance.
//!
//! Events come from the hold store. With Redis, this instance keeps ONE Redis subscription per
//! show that has local subscribers (SUBSCRIBE on the first, UNSUBSCRIBE after the last) on one
//! supervised pub/sub connection, and fans each message out in-process. With the in-process store,
//! the store's own events are routed directly. Buffers are bounded: a subscriber that falls
//! behind is told so and dropped; it never slows the others or the publisher.
//!
//! When the Redis feed loses its connection, events may have been missed and — if Redis
//! restarted — the store's versions start again from 0, so a client could take a new event for
//! the next one of its old map. Every local stream is therefore told `Interrupted` and ends with
//! an error: its client re-reads the map and subscribes again.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::holds::{parse_event, HoldStore, SeatEvent};

/// Events buffered per show for each subscriber before it counts as too slow.
pub const BUFFER: usize = 256;

enum Interest {
    Subscribe(i64),
    Unsubscribe(i64),
}

/// What a local subscriber receives.
#[derive(Debug, Clone)]
pub enum Feed {
    Event(Arc<SeatEvent>),
    /// The feed from the hold store broke: events may be missing and versions may restart.
    Interrupted,
}

struct ShowChannel {
    tx: broadcast::Sender<Feed>,
    subscribers: usize,
}

struct Inner {
    shows: Mutex<HashMap<i64, ShowChannel>>,
    /// Tells the Redis feed which channels to (un)subscribe; `None` for the in-process store.
    interest: Option<mpsc::UnboundedSender<Interest>>,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A local subscriber of one show. Dropping it unsubscribes.
pub struct Subscription {
    pub rx: broadcast::Receiver<Feed>,
    _guard: Guard,
}

struct Guard {
    hub: Hub,
    show_id: i64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut shows = self
            .hub
            .inner
            .shows
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let last = match shows.get_mut(&self.show_id) {
            Some(ch) => {
                ch.subscribers = ch.subscribers.saturating_sub(1);
                ch.subscribers == 0
            }
            None => false,
        };
        if last {
            shows.remove(&self.show_id);
            if let Some(tx) = &self.hub.inner.interest {
                let _ = tx.send(Interest::Unsubscribe(self.show_id));
            }
        }
        metrics::gauge!("live_subscribers").decrement(1.0);
    }
}

impl Hub {
    /// Start the hub for `store`: a Redis feed when it is the Redis store (`redis` = client URL and
    /// key prefix), otherwise a router of the store's in-process events.
    pub fn start(
        store: &Arc<dyn HoldStore>,
        redis: Option<(String, String)>,
        shutdown: CancellationToken,
    ) -> Hub {
        match (store.local_events(), redis) {
            (Some(events), _) => {
                let hub = Hub {
                    inner: Arc::new(Inner {
                        shows: Mutex::new(HashMap::new()),
                        interest: None,
                    }),
                };
                tokio::spawn(route_local(hub.clone(), events, shutdown));
                hub
            }
            (None, Some((url, prefix))) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let hub = Hub {
                    inner: Arc::new(Inner {
                        shows: Mutex::new(HashMap::new()),
                        interest: Some(tx),
                    }),
                };
                tokio::spawn(redis_feed(hub.clone(), url, prefix, rx, shutdown));
                hub
            }
            (None, None) => Hub {
                inner: Arc::new(Inner {
                    shows: Mutex::new(HashMap::new()),
                    interest: None,
                }),
            },
        }
    }

    pub fn subscribe(&self, show_id: i64) -> Subscription {
        let mut shows = self.inner.shows.lock().unwrap_or_else(|p| p.into_inner());
        let ch = shows.entry(show_id).or_insert_with(|| {
            if let Some(tx) = &self.inner.interest {
                let _ = tx.send(Interest::Subscribe(show_id));
            }
            ShowChannel {
                tx: broadcast::channel(BUFFER).0,
                subscribers: 0,
            }
        });
        ch.subscribers += 1;
        metrics::gauge!("live_subscribers").increment(1.0);
        Subscription {
            rx: ch.tx.subscribe(),
            _guard: Guard {
                hub: self.clone(),
                show_id,
            },
        }
    }

    /// Shows with local subscribers now.
    pub fn shows(&self) -> Vec<i64> {
        self.inner
            .shows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    fn dispatch(&self, event: SeatEvent) {
        let shows = self.inner.shows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = shows.get(&event.show_id) {
            let _ = ch.tx.send(Feed::Event(Arc::new(event)));
            metrics::counter!("live_events_total").increment(1);
        }
    }

    /// Tell every local subscriber that the feed broke.
    fn interrupt(&self) {
        let shows = self.inner.shows.lock().unwrap_or_else(|p| p.into_inner());
        for ch in shows.values() {
            let _ = ch.tx.send(Feed::Interrupted);
        }
        metrics::counter!("live_feed_interruptions_total").increment(1);
    }
}

async fn route_local(
    hub: Hub,
    mut events: broadcast::Receiver<SeatEvent>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            e = events.recv() => match e {
                Ok(e) => hub.dispatch(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Subscribers will see a version gap and re-read; say so in the logs.
                    tracing::warn!(missed = n, "live hub fell behind the hold store");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}

fn show_of_channel(channel: &str) -> Option<i64> {
    let start = channel.find("{show:")? + "{show:".len();
    let end = channel[start..].find('}')? + start;
    channel[start..end].parse().ok()
}

/// One pub/sub connection per instance, supervised: on any failure it reconnects and
/// resubscribes to every show that still has local subscribers.
async fn redis_feed(
    hub: Hub,
    url: String,
    prefix: String,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    shutdown: CancellationToken,
) {
    let channel = |show: i64| format!("{prefix}:{{show:{show}}}:events");
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let connected = async {
            let client = redis::Client::open(url.as_str())?;
            client.get_async_pubsub().await
        };
        let pubsub = match tokio::time::timeout(Duration::from_secs(5), connected).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "live feed: cannot connect to Redis; retrying");
                tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => {
                tracing::warn!("live feed: Redis connect timed out; retrying");
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut ok = true;
        for show in hub.shows() {
            if sink.subscribe(channel(show)).await.is_err() {
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
                    let res = match cmd {
                        Some(Interest::Subscribe(show)) => sink.subscribe(channel(show)).await,
                        Some(Interest::Unsubscribe(show)) => {
                            // Someone may have subscribed again meanwhile.
                            if hub.shows().contains(&show) { Ok(()) } else { sink.unsubscribe(channel(show)).await }
                        }
                        None => return,
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
                            Some(e) => hub.dispatch(e),
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
        hub.interrupt();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn channel_names_give_their_show() {
        assert_eq!(super::show_of_channel("bo:{show:42}:events"), Some(42));
        assert_eq!(super::show_of_channel("bo:{show:x}:events"), None);
        assert_eq!(super::show_of_channel("nothing"), None);
    }
}
