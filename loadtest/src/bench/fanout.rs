//! Live-map fan-out: many subscribers on one show, latency from mutation to receipt, server
//! memory per subscriber.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::server::{shows, People, Server};
use super::workloads::HOLD;
use super::FanOut;
use crate::client::{self, Http};
use crate::report::Latency;
use crate::target::Target;

/// Fan-out: `n` subscribers on one show, seat changes at `rate` per second; latency from the
/// moment the hold request is sent to each subscriber's receipt; server memory per subscriber.
pub(super) async fn fan_out(
    config: &Target,
    secret: &str,
    prefix: &str,
    people: &People,
    n: usize,
    rate: u64,
) -> anyhow::Result<FanOut> {
    let server = Server::start(
        config,
        "redis",
        &format!("{prefix}fan{n}"),
        secret,
        None,
        false,
    )
    .await?;
    let show = shows(&server.base, &people.admin, 2000, 1).await?.remove(0);
    let seat_index: Arc<HashMap<String, usize>> = Arc::new(
        show.1
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect(),
    );
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..show.1.len()).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let latency = Arc::new(Mutex::new(Latency::default()));
    let deliveries = Arc::new(AtomicU64::new(0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.rss_mib().unwrap_or(0.0);
    let stop = CancellationToken::new();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (base, show_id, stop) = (server.base.clone(), show.0.clone(), stop.clone());
        let (seat_index, sent, latency, deliveries) = (
            seat_index.clone(),
            sent.clone(),
            latency.clone(),
            deliveries.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let watch = Arc::new(client::Watch::default());
            client::watch(
                base,
                None,
                show_id,
                watch,
                stop,
                move |update: &Value, at: Instant| {
                    let Some(seats) = update["seats"].as_array() else {
                        return;
                    };
                    for s in seats {
                        let Some(i) = s["id"].as_str().and_then(|id| seat_index.get(id)) else {
                            continue;
                        };
                        let t = sent[*i].load(Ordering::Relaxed);
                        if t > 0 && s["status"] == "HELD" {
                            let elapsed =
                                at.saturating_duration_since(origin + Duration::from_nanos(t));
                            if let Ok(mut l) = latency.lock() {
                                l.record(elapsed);
                            }
                            deliveries.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                },
            )
            .await
        }));
        // Open connections in waves, as a crowd arriving, not all in one instant.
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The protocol acknowledges connections, not subscriptions: give every subscriber time to
    // be registered (each also reads the show's version once, as the web page does).
    tokio::time::sleep(Duration::from_millis(1000 + n as u64 / 2)).await;
    let rss_after = server.rss_mib().unwrap_or(0.0);
    let cpu_before = server.cpu_seconds();
    let mut http = Http::new(&server.base)?;
    let events = (rate * 10).min(show.1.len() as u64);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    for (i, seat) in show.1.iter().take(events as usize).enumerate() {
        tick.tick().await;
        let token = &people.users[i / 2 % people.users.len()];
        sent[i].store(origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
        http.gql(Some(token), HOLD, json!({ "s": show.0, "seats": [seat] }))
            .await?
            .data()?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_after = server.cpu_seconds();
    stop.cancel();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    server.stop().await;
    let delivered = deliveries.load(Ordering::Relaxed);
    let lat = latency
        .lock()
        .map(|l| l.summary())
        .map_err(|_| anyhow!("latency lock"))?;
    Ok(FanOut {
        subscribers: n,
        events,
        deliveries_expected: events * n as u64,
        deliveries: delivered,
        latency: lat,
        server_rss_mib_before: rss_before,
        server_rss_mib_after: rss_after,
        server_kib_per_subscriber: (rss_after - rss_before) * 1024.0 / n as f64,
        server_cpu_us_per_delivery: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) if delivered > 0 => Some((b - a) * 1e6 / delivered as f64),
            _ => None,
        },
    })
}
