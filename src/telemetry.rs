//! Logs (tracing) and metrics (Prometheus).
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Structured logs to stderr; `RUST_LOG` filters (default `default`, e.g. `info` for the
/// server and `warn` for the load tools, whose output is their report).
pub fn init_logs(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},sqlx=warn,sea_orm=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The process's metrics recorder. The `metrics` facade is process-wide by design, so the
/// recorder is installed once and every app in the process (tests run several) shares it.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Metric handles kept by label set. The `metrics` macros look a series up in the registry on
/// every call (build its key, hash the name and labels, compare): a twentieth of a trivial
/// query's instructions for the four series every request records (callgrind, 2026-12-04).
/// A handle found once is kept here, under the label set written as one string, for at most
/// `cap` label sets (past that, the registry is asked as before). Handles are only created
/// after the recorder is installed (`metrics()`, called when the app is built).
pub struct Series<H> {
    kept: std::sync::RwLock<std::collections::HashMap<String, H>>,
    cap: usize,
}

impl<H: Clone> Series<H> {
    pub fn new(cap: usize) -> Self {
        Series {
            kept: Default::default(),
            cap,
        }
    }

    /// The handles of `labels`, made by `make` the first time.
    pub fn get(&self, labels: &str, make: impl FnOnce() -> H) -> H {
        if let Some(h) = self
            .kept
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(labels)
        {
            return h.clone();
        }
        let h = make();
        let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
        if kept.len() < self.cap {
            kept.insert(labels.to_string(), h.clone());
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::Series;

    #[test]
    fn a_series_is_made_once_and_the_cap_holds() {
        let s = Series::new(2);
        let mut made = 0;
        for label in ["a", "b", "a", "b", "c", "c"] {
            s.get(label, || {
                made += 1;
                label.len()
            });
        }
        // "a" and "b" made once each; "c" is past the cap, made each time.
        assert_eq!(made, 4);
    }
}
