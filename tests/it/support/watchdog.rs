//! What an in-process server must never do, recorded for the test that runs it: log at ERROR
//! level (an internal error, an uncoded resolver error, an unmirrored booking) or panic in one of
//! its tasks (tokio catches those, so the test would not notice). `TestApp` fails its test on
//! drop when any was recorded. With `RUST_LOG` set, logs are also printed as usual.
use std::sync::{Mutex, Once};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static FAULTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record(what: String) {
    FAULTS.lock().unwrap_or_else(|p| p.into_inner()).push(what);
}

/// The faults recorded since the last call.
pub fn take() -> Vec<String> {
    std::mem::take(&mut *FAULTS.lock().unwrap_or_else(|p| p.into_inner()))
}

struct Errors;

/// An event's fields as text, and where a record of the `log` crate came from.
#[derive(Default)]
struct Message {
    text: String,
    message: String,
    log_target: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.log_target = value.to_string(),
            "message" => self.message = value.to_string(),
            _ => {}
        }
        self.text.push_str(&format!("{}={value:?} ", field.name()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
        self.text.push_str(&format!("{}={value:?} ", field.name()));
    }
}

/// The redis crate's cluster client logs every failed attempt to refresh its slot map at ERROR
/// level, and tries again at once. While a killed master's replica is not yet promoted the
/// attempt can reach the dead node, so a failover test sees these lines or not by timing alone
/// (seen 2026-12-05 in `cluster::a_master_killed_under_load_fails_over`). They are the library's
/// account of a failover the test caused on purpose; what the service does meanwhile, the test
/// checks itself. Any other error of the redis crate still counts.
fn cluster_recovery(m: &Message) -> bool {
    m.log_target.starts_with("redis::cluster")
        && m.message.starts_with("async cluster client recovery")
}

impl<S: Subscriber> Layer<S> for Errors {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == Level::ERROR {
            let mut m = Message::default();
            event.record(&mut m);
            if cluster_recovery(&m) {
                return;
            }
            record(format!(
                "ERROR {}: {}",
                event.metadata().target(),
                m.text.trim_end()
            ));
        }
    }
}

pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let printed = std::env::var_os("RUST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(EnvFilter::from_default_env())
        });
        let _ = tracing_subscriber::registry()
            .with(Errors.with_filter(tracing_subscriber::filter::LevelFilter::ERROR))
            .with(printed)
            .try_init();
        // Panics on the runtime's worker threads are the server's (or a task the test spawned:
        // a failure either way); the test thread's own panics fail it as usual.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-runtime-worker"))
            {
                record(format!("panic: {info}"));
            }
            previous(info);
        }));
    });
}

/// The redis crate's account of a failed slot refresh, as it reaches the watchdog through the `log`
/// bridge, is told apart; any other error of the redis crate, or the same words from another
/// target, still counts. (Judged by a subscriber of this thread's own, so that nothing reaches
/// the faults other tests of this process read.)
#[test]
fn only_the_redis_crates_failover_lines_are_let_through() {
    use std::sync::Arc;
    install(); // the bridge from the `log` crate
    struct Judge(Arc<Mutex<Vec<bool>>>);
    impl<S: Subscriber> Layer<S> for Judge {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut m = Message::default();
            event.record(&mut m);
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(cluster_recovery(&m));
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Judge(seen.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let redis = "redis::cluster_handling::async_connection";
        log::error!(target: redis, "async cluster client recovery: slot refresh failed: `Connection refused (os error 111)`");
        log::error!(target: redis, "Connection to node failed");
        log::error!(target: "boxoffice::holds", "async cluster client recovery: slot refresh failed");
    });
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(seen, [true, false, false]);
}
