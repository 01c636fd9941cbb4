//! HTTP surface: `/graphql` (POST JSON; GET = a query, the IDE or a WebSocket), `/`, `/assets/*`,
//! `/healthz`, `/readyz`, `/metrics`.
mod assets;
pub mod graphql;
mod responses;

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::{Counter, Histogram};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::graphql::AppSchema;
use crate::state::AppState;
use crate::telemetry::Series;

/// What the HTTP surface serves: the services' state and the schema built on it. Every handler
/// gets its own clone (axum's `State`): one shared allocation, so a clone is one reference count.
#[derive(Clone)]
pub struct App(Arc<Served>);

/// The parts of an [`App`].
pub struct Served {
    pub state: AppState,
    pub schema: AppSchema,
    /// Open WebSocket connections per client address.
    pub sockets: Arc<graphql::Sockets>,
    /// Seat-map answers shared by readers of one map state.
    answers: responses::MapAnswers,
}

impl App {
    pub fn new(state: AppState, schema: AppSchema) -> App {
        App(Arc::new(Served {
            state,
            schema,
            sockets: Arc::default(),
            answers: responses::MapAnswers::default(),
        }))
    }
}

impl std::ops::Deref for App {
    type Target = Served;

    fn deref(&self) -> &Served {
        &self.0
    }
}

/// Largest request body we read: a GraphQL document with variables fits easily.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request without an `x-request-id` gets a random UUID (`ids::random_uuid`).
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&crate::ids::random_uuid())
            .ok()
            .map(RequestId::new)
    }
}

pub fn router(app: App) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(x_request_id.clone(), RandomRequestId))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        // A 5xx here is a dependency's outage answered as designed (`/readyz` 503, a deadline),
        // not a fault of the server: WARN, so that ERROR stays for real faults (found by the
        // test harness, which fails a test whose server logs an ERROR).
        .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)))
        .layer(PropagateRequestIdLayer::new(x_request_id))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        // gzip or brotli for clients that accept it (a 3,000-seat full map: 270 KB of JSON);
        // small answers (under 32 bytes) and WebSocket upgrades pass as they are.
        .layer(CompressionLayer::new())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));

    Router::new()
        .route(
            "/graphql",
            get(graphql::get_graphql).post(graphql::post_graphql),
        )
        .route("/", get(assets::index))
        .route("/assets/{*path}", get(assets::asset))
        .route("/reports/sales.csv", get(sales_csv))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn(track))
        .layer(layers)
        .with_state(app)
}

/// `GET /reports/sales.csv?showId=<id>`: a show's sales report as CSV, for an admin's token or
/// an API key with `READ_REPORTS` (`Authorization: Bearer …`).
async fn sales_csv(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    use crate::error::AppError;
    let fail = |e: AppError| {
        let status = match e.code() {
            "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
            "FORBIDDEN" => StatusCode::FORBIDDEN,
            "NOT_FOUND" => StatusCode::NOT_FOUND,
            "BAD_USER_INPUT" => StatusCode::BAD_REQUEST,
            "SERVICE_UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        graphql::error_response(status, &e)
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let viewer = match graphql::viewer_from_header(&app, auth).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let Some(raw) = q.get("showId") else {
        return fail(AppError::bad_input(
            "showId is required: /reports/sales.csv?showId=<id>",
        ));
    };
    let id = match crate::ids::parse_id(raw, "show") {
        Ok(id) => id,
        Err(e) => return fail(e),
    };
    let mut period = crate::booking::report::Period::default();
    for (name, slot) in [("since", &mut period.since), ("until", &mut period.until)] {
        if let Some(raw) = q.get(name) {
            match chrono::DateTime::parse_from_rfc3339(raw) {
                Ok(t) => *slot = Some(t.with_timezone(&chrono::Utc)),
                Err(_) => {
                    return fail(AppError::bad_input(format!(
                        "{name} must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"
                    )))
                }
            }
        }
    }
    match crate::graphql::integrations::sales_report_for(&app.state, &viewer, id, period).await {
        Ok(report) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"sales-show-{id}.csv\""),
                ),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            report.to_csv(),
        )
            .into_response(),
        Err(e) => fail(e),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database and the hold store both answer.
async fn readyz(State(app): State<App>) -> Response {
    let timeout = Duration::from_secs(2);
    let db = tokio::time::timeout(timeout, crate::db::ping(&app.state.db))
        .await
        .unwrap_or(false);
    let store = tokio::time::timeout(timeout, app.state.holds.ping())
        .await
        .unwrap_or(false);
    let body = serde_json::json!({
        "database": if db { "ok" } else { "unavailable" },
        "holdStore": if store { "ok" } else { "unavailable" },
        // Where holds live (`redis`, `memory`, `pg-rowlock`): an auditor reading the store
        // directly checks that it reads the server's own.
        "holdStoreKind": app.state.holds.store_kind(),
    });
    let status = if db && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics() -> Response {
    let body = crate::telemetry::metrics().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Request counts and latencies by route (the matched pattern, never the raw path) and method
/// (the standard ones by name, any other as `OTHER`: the label set stays bounded).
async fn track(req: Request, next: Next) -> Response {
    static SERIES: LazyLock<Series<(Counter, Histogram)>> = LazyLock::new(|| Series::new(1024));
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    let mut labels = String::with_capacity(route.len() + 12);
    labels.push_str(route);
    labels.push(' ');
    labels.push_str(method);
    labels.push(' ');
    labels.push_str(status.as_str());
    let (count, duration) = SERIES.get(&labels, || {
        (
            metrics::counter!("http_requests_total", "route" => route.to_string(), "method" => method, "status" => status.as_str().to_string()),
            metrics::histogram!("http_request_duration_seconds", "route" => route.to_string()),
        )
    });
    count.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    resp
}
