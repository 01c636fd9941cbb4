//! The expiry sweeper: a supervised background task that expires and announces due holds, so
//! that a hold nobody touches still frees its seats within the announcement bound (2 s).
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Holds;

/// How often due holds are looked for. With this period an expiry is announced at most
/// ~`PERIOD` + one script run after it is due.
pub const PERIOD: Duration = Duration::from_millis(250);

pub fn spawn(holds: Holds, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match holds.sweep().await {
                Ok(n) => {
                    if failing {
                        tracing::info!("hold sweeper recovered");
                        failing = false;
                    }
                    if n > 0 {
                        metrics::counter!("holds_swept_total").increment(n as u64);
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "hold sweeper failed; retrying");
                        failing = true;
                    }
                }
            }
        }
    })
}
