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

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl<S: Subscriber> Layer<S> for Errors {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == Level::ERROR {
            let mut m = Message(String::new());
            event.record(&mut m);
            record(format!(
                "ERROR {}: {}",
                event.metadata().target(),
                m.0.trim_end()
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
