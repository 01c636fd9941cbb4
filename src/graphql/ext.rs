//! What every operation reports: each error gets its public `extensions.code` (`publish`), and
//! Prometheus metrics are recorded by operation (root fields, so label cardinality is bounded by
//! the schema). Called by the schema's one extension (`super::pipeline`).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use async_graphql::{Response, ServerError};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use metrics::{Counter, Histogram};

use super::loaders::SharedError;
use crate::error::AppError;
use crate::telemetry::Series;

/// Each operation's series: the label set is the operation's label (bounded by the schema).
static SERIES: LazyLock<Series<(Counter, Counter, Histogram)>> =
    LazyLock::new(|| Series::new(4096));

/// What one request's metrics are labelled by: the label of its document, computed once it is
/// parsed and trusted only once it passed validation (until then it is `invalid`).
#[derive(Default)]
pub(super) struct Observed {
    candidate: Mutex<Option<String>>,
    validated: AtomicBool,
}

impl Observed {
    pub(super) fn parsed(&self, doc: &ExecutableDocument) {
        *self.candidate.lock().unwrap_or_else(|p| p.into_inner()) = Some(label_of(doc));
    }

    pub(super) fn validated(&self) {
        self.validated.store(true, Ordering::Relaxed);
    }

    /// The request's answer, with its errors published and its metrics recorded.
    pub(super) fn finish(&self, started: Instant, resp: &mut Response) {
        for e in resp.errors.iter_mut() {
            publish(e);
        }
        let label = self
            .validated
            .load(Ordering::Relaxed)
            .then(|| {
                self.candidate
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
            })
            .flatten()
            .unwrap_or_else(|| "invalid".into());
        let ok = resp.errors.is_empty();
        let (oks, errors, duration) = SERIES.get(&label, || {
            (
                metrics::counter!("graphql_requests_total", "operation" => label.clone(), "outcome" => "ok"),
                metrics::counter!("graphql_requests_total", "operation" => label.clone(), "outcome" => "error"),
                metrics::histogram!("graphql_request_duration_seconds", "operation" => label.clone()),
            )
        });
        if ok { oks } else { errors }.increment(1);
        duration.record(started.elapsed().as_secs_f64());
    }
}

/// A subscription's answers, each with its errors published.
pub(super) fn published(stream: BoxStream<'_, Response>) -> BoxStream<'_, Response> {
    stream
        .map(|mut resp| {
            for e in resp.errors.iter_mut() {
                publish(e);
            }
            resp
        })
        .boxed()
}

fn label_of(doc: &ExecutableDocument) -> String {
    let mut parts = Vec::new();
    for (_, op) in doc.operations.iter() {
        let kind = match op.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        let mut fields: Vec<String> = op
            .node
            .selection_set
            .node
            .items
            .iter()
            .filter_map(|s| match &s.node {
                Selection::Field(f) => Some(f.node.name.node.to_string()),
                _ => None,
            })
            .collect();
        fields.sort();
        fields.dedup();
        fields.truncate(4);
        parts.push(format!("{kind}:{}", fields.join(",")));
    }
    parts.sort();
    parts.truncate(2);
    parts.join(";")
}

/// The one place a public error gets its `extensions.code` (and, for `SEATS_UNAVAILABLE`, its
/// `seatIds`; for a refusal under load, `retryAfterSeconds`).
fn stamp(e: &mut ServerError, public: Public) {
    let ext = e.extensions.get_or_insert_with(Default::default);
    ext.set("code", public.code);
    if let Some(ids) = public.seat_ids {
        ext.set("seatIds", ids);
    }
    if let Some(secs) = public.retry_after_seconds {
        ext.set("retryAfterSeconds", secs);
    }
}

/// What a client is told of an error.
struct Public {
    code: &'static str,
    seat_ids: Option<Vec<String>>,
    retry_after_seconds: Option<u64>,
}

impl Public {
    fn of(app: &AppError) -> Public {
        Public {
            code: app.code(),
            seat_ids: app.seat_ids(),
            retry_after_seconds: match app {
                AppError::Busy { retry_after } | AppError::ReadBudget { retry_after, .. } => {
                    Some(retry_after.as_secs().max(1))
                }
                _ => None,
            },
        }
    }
    fn code(code: &'static str) -> Public {
        Public {
            code,
            seat_ids: None,
            retry_after_seconds: None,
        }
    }
}

/// A GraphQL error for a domain error raised outside a resolver (before the engine runs, or by
/// an extension).
pub fn error_of(app: &AppError) -> ServerError {
    let mut e = ServerError::new(app.to_string(), None);
    stamp(&mut e, Public::of(app));
    e
}

/// Give an error its public code. Our own errors know theirs. Errors raised by the engine before
/// execution (syntax, validation, limits) have no path and are the client's; an uncoded error
/// inside a resolver is a bug and is reported as internal, without details.
pub fn publish(e: &mut ServerError) {
    let own = e
        .source::<AppError>()
        .or_else(|| e.source::<SharedError>().map(|s| &*s.0));
    if let Some(app) = own {
        if let AppError::Internal(cause) = app {
            tracing::error!(path = ?e.path, error = ?cause, "internal error");
        }
        let (message, public) = (app.to_string(), Public::of(app));
        e.message = message;
        stamp(e, public);
        return;
    }
    if e.extensions.as_ref().and_then(|x| x.get("code")).is_some() {
        return;
    }
    let msg = e.message.to_ascii_lowercase();
    let code = if msg.contains("too complex")
        || msg.contains("nested too deep")
        || msg.contains("too deep")
        || msg.contains("too many")
    {
        "LIMIT_EXCEEDED"
    } else if e.path.is_empty()
        || msg.starts_with("failed to parse")
        || msg.starts_with("invalid value for argument")
        // A required variable the request left out (found when the field reads it).
        || (msg.starts_with("variable ") && msg.ends_with(" is not defined."))
    {
        "BAD_USER_INPUT"
    } else {
        tracing::error!(path = ?e.path, message = %e.message, "uncoded resolver error");
        e.message = "internal error".into();
        "INTERNAL_SERVER_ERROR"
    };
    stamp(e, Public::code(code));
}
