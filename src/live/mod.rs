//! Live fan-out: per-show broadcast channels feeding GraphQL subscriptions on this instance.
//!
//! The hub knows no store: it is handed the hold store's event feed (`Holds::start_feed`), tells
//! it which shows have local subscribers (`Interest`), and fans each event out in-process.
//! Buffers are bounded: a subscriber that falls behind is told so and dropped; it never slows the
//! others or the publisher. When the feed breaks (`FeedItem::Interrupted`), every local stream is
//! told and ends with an error: its client re-reads the map and subscribes again.
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use crate::holds::{FeedItem, Holds, Interest, SeatEvent};

/// Events buffered per show for each subscriber before it counts as too slow.
pub const BUFFER: usize = 256;

/// What a local subscriber receives.
#[derive(Debug, Clone)]
pub enum Feed {
    Event(Arc<LiveEvent>),
    /// The feed from the hold store broke: events may be missing and versions may restart.
    Interrupted,
}

/// One event as every local subscriber of its show receives it, with the work they share.
#[derive(Debug)]
pub struct LiveEvent {
    pub event: SeatEvent,
    /// Renderings of this event (one per distinct selection and viewer class), made by the
    /// first subscriber that needs one and reused by the others.
    pub shared: Memo,
}

impl std::ops::Deref for LiveEvent {
    type Target = SeatEvent;
    fn deref(&self) -> &SeatEvent {
        &self.event
    }
}

/// A small keyed store of values derived from one event. Bounded: past `MEMO_ENTRIES` distinct
/// keys nothing more is kept (each later subscriber computes its own), so subscribers with
/// ever-different selections cannot grow it; it is dropped with the event.
#[derive(Default)]
pub struct Memo(Mutex<Vec<(String, Arc<dyn Any + Send + Sync>)>>);

/// Distinct keys one event's memo keeps.
pub const MEMO_ENTRIES: usize = 32;

impl Memo {
    /// The value kept under `key`, if any (and of type `T`).
    pub fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (_, v) = entries.iter().find(|(k, _)| k == key)?;
        v.clone().downcast::<T>().ok()
    }

    /// Keep `value` under `key` unless a value is there already or the memo is full.
    pub fn put<T: Any + Send + Sync>(&self, key: &str, value: T) {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() < MEMO_ENTRIES && !entries.iter().any(|(k, _)| k == key) {
            entries.push((key.to_string(), Arc::new(value)));
        }
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|e| e.len()).unwrap_or(0);
        write!(f, "Memo({n} entries)")
    }
}

struct ShowChannel {
    tx: broadcast::Sender<Feed>,
    subscribers: usize,
}

struct Inner {
    shows: Mutex<HashMap<i64, ShowChannel>>,
    /// Tells the store's feed which shows to deliver.
    interest: mpsc::UnboundedSender<Interest>,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A local subscriber of one show: a stream of its feed (a lagging subscriber sees a
/// `Lagged` error). Dropping it unsubscribes.
pub struct Subscription {
    stream: BroadcastStream<Feed>,
    _guard: Guard,
}

impl futures_util::Stream for Subscription {
    type Item = Result<Feed, BroadcastStreamRecvError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.stream).poll_next(cx)
    }
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
            let _ = self
                .hub
                .inner
                .interest
                .send(Interest::Unwatch(self.show_id));
        }
        metrics::gauge!("live_subscribers").decrement(1.0);
    }
}

impl Hub {
    /// A hub fed by the hold store's own event feed.
    pub fn start(holds: &Holds, shutdown: CancellationToken) -> Hub {
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Hub {
            inner: Arc::new(Inner {
                shows: Mutex::new(HashMap::new()),
                interest: tx,
            }),
        };
        let fed = hub.clone();
        holds.start_feed(rx, Arc::new(move |item| fed.deliver(item)), shutdown);
        hub
    }

    pub fn subscribe(&self, show_id: i64) -> Subscription {
        let mut shows = self.inner.shows.lock().unwrap_or_else(|p| p.into_inner());
        let ch = shows.entry(show_id).or_insert_with(|| {
            let _ = self.inner.interest.send(Interest::Watch(show_id));
            ShowChannel {
                tx: broadcast::channel(BUFFER).0,
                subscribers: 0,
            }
        });
        ch.subscribers += 1;
        metrics::gauge!("live_subscribers").increment(1.0);
        Subscription {
            stream: BroadcastStream::new(ch.tx.subscribe()),
            _guard: Guard {
                hub: self.clone(),
                show_id,
            },
        }
    }

    fn deliver(&self, item: FeedItem) {
        let shows = self.inner.shows.lock().unwrap_or_else(|p| p.into_inner());
        match item {
            FeedItem::Event(event) => {
                if let Some(ch) = shows.get(&event.show_id) {
                    let _ = ch.tx.send(Feed::Event(Arc::new(LiveEvent {
                        event,
                        shared: Memo::default(),
                    })));
                    metrics::counter!("live_events_total").increment(1);
                }
            }
            FeedItem::Interrupted => {
                for ch in shows.values() {
                    let _ = ch.tx.send(Feed::Interrupted);
                }
                metrics::counter!("live_feed_interruptions_total").increment(1);
            }
        }
    }
}
