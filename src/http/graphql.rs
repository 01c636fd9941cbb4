//! `/graphql`: POST with a JSON body runs one operation; GET with `query` (or an APQ hash in
//! `extensions`) in the query string runs one query — never a mutation — and caches what is
//! immutable; any other GET serves the IDE, or upgrades to a WebSocket (graphql-transport-ws or
//! legacy graphql-ws) for subscriptions.
//!
//! The plain async-graphql service would also run mutations from GET query strings and from
//! `text/plain` POSTs, which browsers send cross-origin without a preflight (a CSRF hole), and
//! accept batches. This handler takes POSTs only as `application/json`, one operation per
//! request, and GETs for queries only (a cross-site GET can read nothing: no cookies, no CORS).
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::str::FromStr as _;

use async_graphql::http::{WebSocketProtocols, WsMessage, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::Data;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{FutureExt as _, SinkExt, StreamExt};

use super::assets;
use super::App;
use crate::auth::Viewer;
use crate::error::AppError;
use crate::graphql::documents::{GetRequest, MapRecorder};
use crate::graphql::loaders::new_loaders;
use crate::limits::{ClientIp, Reader};

/// The caller's address: the TCP peer, or the first `X-Forwarded-For` entry when the operator
/// said a proxy sets it (`TRUST_FORWARDED_FOR`).
fn client_ip(
    app: &App,
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
) -> Option<ClientIp> {
    if app.state.config.trust_forwarded_for {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        if let Some(ip) = forwarded {
            return Some(ClientIp(ip));
        }
    }
    peer.map(|c| ClientIp(c.0.ip()))
}

pub async fn post_graphql(
    State(app): State<App>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !json {
        return client_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the operation as JSON with Content-Type: application/json",
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) if body.trim_ascii_start().first() == Some(&b'[') => {
            return client_error(
                StatusCode::BAD_REQUEST,
                "batched operations are not supported; send one operation per request",
            )
        }
        Err(e) => {
            return client_error(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a GraphQL request: {e}"),
            )
        }
    };
    run(&app, request, &headers, peer.as_deref(), None).await
}

/// Run one operation for the HTTP handlers: the viewer from `Authorization`, the request's
/// loaders and client address. A `GET` (`get`) runs queries only, and a query of immutable data
/// only is answered cacheably (`Cache-Control`, `ETag`, `304 Not Modified`).
async fn run(
    app: &App,
    request: async_graphql::Request,
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
    get: Option<Arc<GetRequest>>,
) -> Response {
    let viewer = match viewer_from_header(
        app,
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return no_store(error_response(StatusCode::OK, &e)),
    };
    let ip = client_ip(app, headers, peer);
    // A seat-map read shared with every reader of the same map state (`responses.rs`).
    let shared = super::responses::key_of(&request);
    // Read before anything else: an answer built after a show was created here lists it.
    let generation = app.state.catalogue.list_generation();
    if let Some(key) = &shared {
        if let Some((body, cost)) = app
            .answers
            .lookup(&app.state.holds, generation, key, &viewer)
            .await
        {
            let reader = Reader::of(Some(&viewer), ip.as_ref());
            if let Err(e) = app.state.limits.reads.charge(reader, cost) {
                return no_store(error_response(StatusCode::OK, &e));
            }
            return no_store(([(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
    }
    let recorder = Arc::new(MapRecorder::default());
    let mut request = request
        .data(viewer.clone())
        .data(new_loaders(app.state.clone()))
        .data(recorder.clone());
    if let Some(ip) = ip {
        request = request.data(ip);
    }
    if let Some(get) = &get {
        request = request.data(get.clone());
    }
    let response = app.schema.execute(request).await;
    if let (Some(key), true, true) = (
        shared,
        recorder.map_only.load(Ordering::Relaxed),
        response.errors.is_empty(),
    ) {
        if let Ok(body) = serde_json::to_vec(&response) {
            let body = Bytes::from(body);
            let cost = recorder.cost.load(Ordering::Relaxed);
            app.answers
                .keep(
                    &app.state.holds,
                    generation,
                    recorder.per_viewer.load(Ordering::Relaxed),
                    key,
                    &viewer,
                    recorder.states(),
                    body.clone(),
                    cost,
                )
                .await;
            return no_store(([(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
    }
    let Some(get) = get else {
        return no_store(axum::Json(response).into_response());
    };
    if get.refused.load(Ordering::Relaxed) {
        let mut http = (StatusCode::METHOD_NOT_ALLOWED, axum::Json(response)).into_response();
        http.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
        return no_store(http);
    }
    // Immutable data, all found: a browser or CDN may keep it for ever. A show that does not
    // exist (yet) answers null and is not cached.
    let found = matches!(&response.data, async_graphql::Value::Object(o)
        if !o.is_empty() && o.values().all(|v| *v != async_graphql::Value::Null));
    if !(get.cacheable.load(Ordering::Relaxed) && response.errors.is_empty() && found) {
        return no_store(axum::Json(response).into_response());
    }
    let body = match serde_json::to_vec(&response) {
        Ok(b) => b,
        Err(_) => return no_store(axum::Json(response).into_response()),
    };
    // Weak: the engine may order an object's fields differently from one answer to the next
    // (resolvers finish in any order), so the tag is of the data with keys sorted.
    let etag = format!("W/\"{:016x}\"", fingerprint(&response.data));
    let cache = header::HeaderValue::from_static("public, max-age=31536000, immutable");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == etag.trim_start_matches("W/")
            })
        });
    let mut http = if matches {
        metrics::counter!("graphql_not_modified_total").increment(1);
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            Bytes::from(body),
        )
            .into_response()
    };
    http.headers_mut().insert(header::CACHE_CONTROL, cache);
    if let Ok(v) = header::HeaderValue::from_str(&etag) {
        http.headers_mut().insert(header::ETAG, v);
    }
    http
}

/// A stable 64-bit fingerprint of an answer's data (FNV-1a over a canonical form: object keys
/// sorted): the same data gives the same `ETag` on every instance and release.
fn fingerprint(data: &async_graphql::Value) -> u64 {
    fn feed(h: &mut u64, bytes: &[u8]) {
        for b in bytes {
            *h = (*h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn walk(h: &mut u64, v: &async_graphql::Value) {
        use async_graphql::Value as V;
        match v {
            V::Object(o) => {
                let mut keys: Vec<_> = o.iter().collect();
                keys.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
                feed(h, b"{");
                for (k, v) in keys {
                    feed(h, k.as_bytes());
                    feed(h, b":");
                    walk(h, v);
                    feed(h, b",");
                }
                feed(h, b"}");
            }
            V::List(l) => {
                feed(h, b"[");
                for v in l {
                    walk(h, v);
                    feed(h, b",");
                }
                feed(h, b"]");
            }
            other => feed(h, other.to_string().as_bytes()),
        }
    }
    let mut h = 0xcbf2_9ce4_8422_2325;
    walk(&mut h, data);
    h
}

fn no_store(mut http: Response) -> Response {
    http.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    http
}

/// `GET /graphql?query=…&variables=…&operationName=…&extensions=…` (queries only, APQ
/// welcome); other GETs serve the IDE or upgrade to a WebSocket.
async fn get_operation(
    app: &App,
    query: &str,
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
) -> Response {
    let request = match async_graphql::http::parse_query_string(query) {
        Ok(r) => r,
        Err(e) => {
            return client_error(
                StatusCode::BAD_REQUEST,
                &format!("the query string is not a GraphQL request: {e}"),
            )
        }
    };
    run(app, request, headers, peer, Some(Arc::default())).await
}

pub async fn get_graphql(State(app): State<App>, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    let wants_ws = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_ws {
        let operation = parts.uri.query().filter(|q| {
            q.split('&')
                .any(|kv| kv.starts_with("query=") || kv.starts_with("extensions="))
        });
        return match operation {
            Some(q) => {
                let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned();
                get_operation(&app, q, &parts.headers, peer.as_ref()).await
            }
            None => assets::ide(),
        };
    }
    let ip = client_ip(
        &app,
        &parts.headers,
        parts.extensions.get::<ConnectInfo<SocketAddr>>(),
    );
    // A bounded number of sockets per client address: each costs memory for as long as it lives.
    let Some(socket_slot) = app
        .sockets
        .open(ip.map(|c| c.0), app.state.config.ws_connections_per_address)
    else {
        metrics::counter!("websocket_refusals_total", "reason" => "connections_per_address")
            .increment(1);
        let e = AppError::LimitExceeded(format!(
            "at most {} live connections from one address",
            app.state.config.ws_connections_per_address
        ));
        return error_response(StatusCode::TOO_MANY_REQUESTS, &e);
    };
    // The first protocol offered that the server speaks (graphql-transport-ws or graphql-ws).
    let Some(protocol) = parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
        })
    else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &app).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let schema = app.schema.clone();
    // Small buffers: a seat map holds its socket open for minutes, so per-connection memory is
    // what limits subscribers per instance (tungstenite's 128 KiB defaults cost ~170 KiB per
    // subscriber in `boxoffice bench`). GraphQL messages are small; a client cannot make the
    // server buffer megabytes.
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| async move {
            let _slot = socket_slot;
            let shutdown = app.state.shutdown.clone();
            let initialised = Arc::new(AtomicBool::new(false));
            let (init_app, flag) = (app.clone(), initialised.clone());
            // One task per connection: `connection` drives the protocol (the library's state
            // machine, as a stream of outgoing messages that reads the incoming ones), writes
            // what it yields to the socket and pings the peer. Every frame the peer sends
            // (pongs included) counts as a sign of life. (The library's own `serve` needs a
            // second task and a channel per connection: ~5 KiB more per subscriber in the
            // 10,000-subscriber benchmark, and a hop per message.)
            let (socket_tx, socket_rx) = stream.split();
            let (refusals, refused) = tokio::sync::mpsc::channel::<Message>(32);
            let (born, seen) = (Instant::now(), Arc::new(AtomicU64::new(0)));
            let alive = seen.clone();
            let live = Arc::new(LiveIds::default());
            let cap = app.state.config.ws_subscriptions_per_connection as usize;
            let incoming = live.clone();
            let input = socket_rx
                .inspect(move |_| alive.store(born.elapsed().as_millis() as u64, Ordering::Relaxed))
                .filter(move |m| std::future::ready(incoming.admit(m, cap, &refusals)))
                .take_while(|m| std::future::ready(m.is_ok()))
                .filter_map(|m| {
                    std::future::ready(match m {
                        Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
                        _ => None,
                    })
                });
            let protocol = async_graphql::http::WebSocket::new(schema, input, protocol)
                .on_connection_init(move |payload| async move {
                    let data = connection_data(&init_app, payload).await.map(|mut d| {
                        if let Some(ip) = ip {
                            d.insert(ip);
                        }
                        d
                    });
                    flag.store(data.is_ok(), Ordering::Relaxed);
                    data
                })
                .map(|m| match m {
                    WsMessage::Text(text) => Message::Text(text.into()),
                    WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })),
                });
            let ping_every = Duration::from_secs(app.state.config.ws_ping_interval_seconds);
            let ws = connection(socket_tx, protocol, refused, ping_every, born, seen, live);
            metrics::gauge!("websocket_connections").increment(1.0);
            tokio::select! {
                _ = ws => {}
                // No `connection_init` in time: drop the connection (the library has no timeout).
                _ = async {
                    tokio::time::sleep(WS_INIT_TIMEOUT).await;
                    if initialised.load(Ordering::Relaxed) {
                        std::future::pending::<()>().await;
                    }
                } => {}
                // Shutting down: subscriptions have completed their streams; let the `complete`
                // messages flush, then close.
                _ = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                } => {}
            }
            metrics::gauge!("websocket_connections").decrement(1.0);
        })
        .into_response()
}

/// Write what the protocol yields (and the refusals of subscriptions over the cap) to the socket
/// and ping the peer every `every`; close the connection when the peer has sent nothing (not
/// even a pong) for 2.5 × `every` — a dead client behind a silent network would otherwise keep
/// its subscription (and its memory) for ever. Returns when the protocol ends (after closing
/// the socket), the socket breaks or the peer goes silent.
async fn connection<S>(
    mut socket: S,
    protocol: impl futures_util::Stream<Item = Message>,
    mut refused: tokio::sync::mpsc::Receiver<Message>,
    every: Duration,
    born: Instant,
    seen: Arc<AtomicU64>,
    live: Arc<LiveIds>,
) where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut protocol = std::pin::pin!(protocol);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let limit = every.as_millis() as u64 * 5 / 2;
    loop {
        tokio::select! {
            m = protocol.next() => {
                // This message and every one the protocol already has ready go out in one
                // write: a subscriber the server has fallen behind on (several events queued
                // for it) costs one system call for all of them instead of one each, so the
                // further behind a fan-out gets, the cheaper each delivery becomes.
                let mut next = m;
                let mut batched = 0;
                loop {
                    let Some(m) = next else {
                        // Closing writes what is buffered first.
                        let _ = socket.close().await;
                        return;
                    };
                    live.sent(&m);
                    if socket.feed(m).await.is_err() {
                        return;
                    }
                    batched += 1;
                    if batched == WRITE_BATCH {
                        break;
                    }
                    match protocol.next().now_or_never() {
                        Some(m) => next = m,
                        None => break,
                    }
                }
                if batched > 1 {
                    metrics::counter!("websocket_batched_messages_total").increment(batched - 1);
                }
                if socket.flush().await.is_err() {
                    return;
                }
            }
            Some(m) = refused.recv() => {
                if socket.send(m).await.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {
                let silent = (born.elapsed().as_millis() as u64)
                    .saturating_sub(seen.load(Ordering::Relaxed));
                if silent > limit {
                    metrics::counter!("websocket_dead_peers_total").increment(1);
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1001,
                            reason: "no pong: the connection looks dead".into(),
                        })))
                        .await;
                    return;
                }
                if socket.send(Message::Ping(Bytes::from_static(b"boxoffice"))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Open WebSocket connections per client address (`WS_CONNECTIONS_PER_ADDRESS`).
#[derive(Default)]
pub struct Sockets {
    open: std::sync::Mutex<std::collections::HashMap<Option<std::net::IpAddr>, u32>>,
}

impl Sockets {
    /// A slot for one more connection from `ip`, or `None` past `cap`; the slot frees on drop.
    pub fn open(self: &Arc<Self>, ip: Option<std::net::IpAddr>, cap: u32) -> Option<SocketSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(SocketSlot {
            sockets: self.clone(),
            ip,
        })
    }
}

pub struct SocketSlot {
    sockets: Arc<Sockets>,
    ip: Option<std::net::IpAddr>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.sockets.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The operation ids a connection has live (`WS_SUBSCRIPTIONS_PER_CONNECTION`): a `subscribe`
/// (graphql-transport-ws) or `start` (graphql-ws) adds one, the client's `complete`/`stop` or the
/// server's `complete`/`error` ends it. A subscribe past the cap never reaches the engine: the
/// client gets an `error` for that id with `LIMIT_EXCEEDED`.
#[derive(Default)]
struct LiveIds(std::sync::Mutex<std::collections::HashSet<String>>);

fn text_of(m: &Message) -> Option<serde_json::Value> {
    match m {
        Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
        _ => None,
    }
}

impl LiveIds {
    /// Whether a message from the client goes on to the engine.
    fn admit(
        &self,
        m: &Result<Message, axum::Error>,
        cap: usize,
        refusals: &tokio::sync::mpsc::Sender<Message>,
    ) -> bool {
        let Some(v) = m.as_ref().ok().and_then(text_of) else {
            return true;
        };
        let (kind, id) = (v["type"].as_str().unwrap_or(""), v["id"].as_str());
        let mut live = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match (kind, id) {
            ("subscribe" | "start", Some(id)) => {
                if live.contains(id) || live.len() < cap {
                    live.insert(id.to_string());
                    return true;
                }
                metrics::counter!("websocket_refusals_total", "reason" => "subscriptions_per_connection")
                    .increment(1);
                let err = crate::graphql::ext::error_of(&AppError::LimitExceeded(format!(
                    "at most {cap} live subscriptions on one connection"
                )));
                let refusal = serde_json::json!({ "type": "error", "id": id, "payload": [err] });
                // The queue is the connection's own; a client that floods it loses refusals, not
                // the server's memory.
                let _ = refusals.try_send(Message::Text(refusal.to_string().into()));
                false
            }
            ("complete" | "stop", Some(id)) => {
                live.remove(id);
                true
            }
            _ => true,
        }
    }

    /// A message to the client: a `complete` or `error` ends its operation.
    fn sent(&self, m: &Message) {
        // Most messages are `next` events: skip them without parsing (fan-out sends many).
        let ends = matches!(m, Message::Text(t)
            if t.as_str().contains("\"complete\"") || t.as_str().contains("\"error\""));
        if !ends {
            return;
        }
        let Some(v) = text_of(m) else { return };
        if let ("complete" | "error", Some(id)) =
            (v["type"].as_str().unwrap_or(""), v["id"].as_str())
        {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        }
    }
}

/// At most this many ready messages go out in one write (a bound on a batch's buffer; a
/// subscriber is dropped long before its backlog gets near it).
const WRITE_BATCH: u64 = 32;

/// How long a new WebSocket may take to send `connection_init`.
pub const WS_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Authentication for a WebSocket: `{"Authorization": "Bearer <jwt>"}` or `{"token": "<jwt>"}`
/// in the `connection_init` payload. A token that does not verify refuses the connection.
async fn connection_data(app: &App, payload: serde_json::Value) -> async_graphql::Result<Data> {
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| {
            payload
                .get("token")
                .and_then(|v| v.as_str())
                .map(|t| format!("Bearer {t}"))
        });
    let viewer = viewer_from_header(app, header.as_deref())
        .await
        .map_err(|e| async_graphql::Error::new(e.to_string()))?;
    if matches!(viewer, Viewer::BadToken) {
        return Err(async_graphql::Error::new("the token is invalid or expired"));
    }
    let mut data = Data::default();
    data.insert(viewer);
    Ok(data)
}

/// `Bearer <jwt>` → the viewer. Anything present but unverifiable is `BadToken`.
/// An API key (`bok_…`) is looked up in the database: a revoked one fails at once everywhere;
/// the lookup failing (database down) is `SERVICE_UNAVAILABLE`, not a bad credential.
pub async fn viewer_from_header(app: &App, value: Option<&str>) -> Result<Viewer, AppError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(Viewer::Anonymous);
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(Viewer::BadToken);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Viewer::BadToken);
    }
    let token = token.trim();
    if token.starts_with(crate::auth::keys::KEY_PREFIX) {
        return Ok(match app.state.keys.verify(token).await? {
            Some((id, scopes)) => Viewer::ApiKey { id, scopes },
            None => Viewer::BadToken,
        });
    }
    Ok(match app.state.accounts.tokens().verify(token) {
        Some((id, role)) => Viewer::User { id, role },
        None => Viewer::BadToken,
    })
}

/// An error in the GraphQL response shape (with its `extensions.code`), for requests refused
/// before they reach the engine.
pub(super) fn error_response(status: StatusCode, e: &AppError) -> Response {
    let body = serde_json::json!({ "errors": [crate::graphql::ext::error_of(e)] });
    (status, axum::Json(body)).into_response()
}

fn client_error(status: StatusCode, message: &str) -> Response {
    error_response(status, &AppError::bad_input(message))
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use super::*;

    /// A socket that records the messages written to it and the writes they went out in (a
    /// flush with something buffered: one system call on a real socket).
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Recorded>>);

    #[derive(Default)]
    struct Recorded {
        messages: Vec<Message>,
        buffered: usize,
        writes: usize,
    }

    impl futures_util::Sink<Message> for Recorder {
        type Error = ();
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, m: Message) -> Result<(), ()> {
            let mut r = self.0.lock().map_err(|_| ())?;
            r.messages.push(m);
            r.buffered += 1;
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            let mut r = self.0.lock().map_err(|_| ())?;
            if r.buffered > 0 {
                r.buffered = 0;
                r.writes += 1;
            }
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
            self.poll_flush(cx)
        }
    }

    fn run(protocol: impl futures_util::Stream<Item = Message>) -> (Vec<String>, usize) {
        let socket = Recorder::default();
        let (_refusals, refused) = tokio::sync::mpsc::channel(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(connection(
            socket.clone(),
            protocol,
            refused,
            Duration::from_secs(60),
            Instant::now(),
            Arc::new(AtomicU64::new(0)),
            Arc::new(LiveIds::default()),
        ));
        let r = socket.0.lock().expect("recorder");
        let texts = r
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::Text(t) => Some(t.as_str().to_string()),
                _ => None,
            })
            .collect();
        (texts, r.writes)
    }

    fn text(i: usize) -> String {
        format!(r#"{{"id":"1","type":"next","payload":{{"n":{i}}}}}"#)
    }

    fn next(i: usize) -> Message {
        Message::Text(text(i).into())
    }

    #[test]
    fn ready_messages_go_out_together_in_order() {
        // 100 events already waiting (a subscriber the server fell behind on): every one is
        // written, in order, in one write per batch of at most WRITE_BATCH.
        let (texts, writes) = run(futures_util::stream::iter((0..100).map(next)));
        assert_eq!(texts, (0..100).map(text).collect::<Vec<_>>());
        assert_eq!(writes, 100usize.div_ceil(WRITE_BATCH as usize));
    }

    #[test]
    fn messages_arriving_apart_are_each_written_at_once() {
        // Events that arrive one at a time are not held back waiting for company: each is
        // written as it comes.
        let spaced = futures_util::stream::iter(0..5).then(|i| async move {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            next(i)
        });
        let (texts, writes) = run(spaced);
        assert_eq!(texts.len(), 5);
        assert_eq!(writes, 5);
    }
}
