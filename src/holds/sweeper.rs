//! The expiry sweeper: a supervised background task that expires and announces due holds, so
//! that a hold nobody touches still frees its seats within the announcement bound (2 s).
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Holds;

/// How often due holds are looked for. With this period an expiry is announced at most
/// ~`PERIOD` + one script run after it is due.
pub const PERIOD: Duration = Duration::from_millis(250);

pub fn spawn(holds: Holds, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    periodic(
        "hold sweeper",
        "holds_swept_total",
        PERIOD,
        shutdown,
        move || {
            let holds = holds.clone();
            async move { holds.sweep().await.map(|n| n as u64) }
        },
    )
}

/// A supervised background loop: `step` every `period` until `shutdown`; what it handled counts
/// into `metric`; a failure is logged once (and its recovery once), then retried next period.
pub fn periodic<F, Fut>(
    what: &'static str,
    metric: &'static str,
    period: Duration,
    shutdown: CancellationToken,
    step: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, super::StoreError>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match step().await {
                Ok(n) => {
                    if failing {
                        tracing::info!("{what} recovered");
                        failing = false;
                    }
                    if n > 0 {
                        metrics::counter!(metric).increment(n);
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "{what} failed; retrying");
                        failing = true;
                    }
                }
            }
        }
    })
}
