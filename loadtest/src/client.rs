//! The load tools' clients: GraphQL over a kept-alive HTTP/1.1 connection, and seat-map
//! subscribers over graphql-transport-ws. They speak the public API only, like real clients.
//!
//! The HTTP client is a few lines over a `TcpStream` rather than a general-purpose client: the
//! load generator shares the machine's two cores with the server, Redis and PostgreSQL, and every
//! microsecond it spends is taken from what it measures.
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What a GraphQL request came back with: data, or the first error's code and message.
#[derive(Debug)]
pub enum Reply {
    Data(Value),
    Error { code: String, message: String },
}

impl Reply {
    /// A GraphQL error object as a reply: its `extensions.code` and message.
    fn of_error(err: &Value) -> Reply {
        let text = |v: Option<&Value>, default: &str| {
            v.and_then(Value::as_str).unwrap_or(default).to_string()
        };
        Reply::Error {
            code: text(err.pointer("/extensions/code"), "NO_CODE"),
            message: text(err.get("message"), ""),
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Reply::Data(_) => None,
            Reply::Error { code, .. } => Some(code),
        }
    }
    /// The data, or an error naming the GraphQL error.
    pub fn data(self) -> anyhow::Result<Value> {
        match self {
            Reply::Data(v) => Ok(v),
            Reply::Error { code, message, .. } => bail!("{code}: {message}"),
        }
    }
}

/// Host and port of a `http://host:port` base URL.
pub fn authority(base: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(base).with_context(|| format!("bad server URL {base}"))?;
    if url.scheme() != "http" {
        bail!(
            "only http:// server URLs are supported (put TLS in front of the load tool's target)"
        );
    }
    let host = url.host_str().ok_or_else(|| anyhow!("no host in {base}"))?;
    Ok(format!(
        "{host}:{}",
        url.port_or_known_default().unwrap_or(80)
    ))
}

/// A request `Http` sends.
#[derive(Clone, Copy)]
enum Request<'a> {
    Post {
        token: Option<&'a str>,
        body: &'a [u8],
    },
    Get {
        path: &'a str,
    },
}

/// One kept-alive connection to `POST /graphql`; reconnects once when the server closed it.
pub struct Http {
    /// The servers, tried in turn (as a load balancer would) when one cannot be reached.
    authorities: Vec<String>,
    current: usize,
    authority: String,
    conn: Option<BufReader<TcpStream>>,
    request: Vec<u8>,
    pub timeout: Duration,
}

impl Http {
    /// Drop the kept-alive connection (the next request opens a new one).
    pub fn close(&mut self) {
        self.conn = None;
    }

    /// One server, or several separated by commas.
    pub fn new(base: &str) -> anyhow::Result<Http> {
        let authorities = base
            .split(',')
            .map(|b| authority(b.trim()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Http {
            authority: authorities[0].clone(),
            authorities,
            current: 0,
            conn: None,
            request: Vec::with_capacity(1024),
            timeout: Duration::from_secs(30),
        })
    }

    /// `POST /graphql`; when the current server cannot be reached, the next one (each once).
    pub async fn post(
        &mut self,
        token: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        self.with_failover(Request::Post { token, body }).await
    }

    /// Send `request` to the current server; when it cannot be reached, to the next (each once).
    async fn with_failover(&mut self, request: Request<'_>) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut last = None;
        for _ in 0..self.authorities.len() {
            let sent = match request {
                Request::Post { token, body } => self.post_once(token, body).await,
                Request::Get { path } => self.get_once(path).await,
            };
            match sent {
                Ok(r) => return Ok(r),
                Err(e) => {
                    last = Some(e);
                    self.current = (self.current + 1) % self.authorities.len();
                    self.authority = self.authorities[self.current].clone();
                    self.conn = None;
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no server")))
    }

    /// Send one GraphQL request; transport failures are errors, GraphQL errors are a `Reply`.
    pub async fn gql(
        &mut self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Reply> {
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))?;
        let (status, bytes) = self.post(token, &body).await?;
        let v: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("HTTP {status}: the body is not JSON"))?;
        if let Some(err) = v.get("errors").and_then(|e| e.get(0)) {
            return Ok(Reply::of_error(err));
        }
        if status >= 500 {
            bail!("HTTP {status} without a GraphQL error");
        }
        Ok(Reply::Data(v.get("data").cloned().unwrap_or(Value::Null)))
    }

    /// Like `gql`, for reads whose answer the caller does not look at: the body is checked for
    /// errors without being built into a value (building a 3,000-seat map would cost the load
    /// generator more than the server spends answering it). Success is `Reply::Data(Null)`.
    pub async fn gql_unread(
        &mut self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Reply> {
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(default)]
            errors: Option<Vec<Value>>,
            #[serde(default, rename = "data")]
            _data: serde::de::IgnoredAny,
        }
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))?;
        let (status, bytes) = self.post(token, &body).await?;
        if status == 200 && plainly_data(&bytes) {
            return Ok(Reply::Data(Value::Null));
        }
        let head: Head = serde_json::from_slice(&bytes)
            .with_context(|| format!("HTTP {status}: the body is not JSON"))?;
        if let Some(err) = head.errors.as_ref().and_then(|e| e.first()) {
            return Ok(Reply::of_error(err));
        }
        if status >= 500 {
            bail!("HTTP {status} without a GraphQL error");
        }
        Ok(Reply::Data(Value::Null))
    }

    /// `POST /graphql` with a JSON body to the current server; the status and the body.
    async fn post_once(
        &mut self,
        token: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        self.request.clear();
        self.request
            .extend_from_slice(b"POST /graphql HTTP/1.1\r\nHost: ");
        self.request.extend_from_slice(self.authority.as_bytes());
        self.request.extend_from_slice(
            b"\r\nContent-Type: application/json\r\nAccept: application/json\r\n",
        );
        if let Some(t) = token {
            self.request.extend_from_slice(b"Authorization: Bearer ");
            self.request.extend_from_slice(t.as_bytes());
            self.request.extend_from_slice(b"\r\n");
        }
        self.request
            .extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        self.request.extend_from_slice(body);
        self.send().await
    }

    /// `GET path` on the current server, its body as JSON (whatever the status: `/readyz`
    /// answers 503 with a body).
    pub async fn get_json(&mut self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.with_failover(Request::Get { path }).await?;
        serde_json::from_slice(&body)
            .with_context(|| format!("GET {path}: HTTP {status}, not JSON"))
    }

    async fn get_once(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        self.request.clear();
        self.request.extend_from_slice(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
                self.authority
            )
            .as_bytes(),
        );
        self.send().await
    }

    /// Send the request in `self.request` on the kept-alive connection.
    async fn send(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        let timeout = self.timeout;
        // A kept-alive connection the server closed in the meantime fails on first use: retry
        // once on a fresh one. (Only requests that never reached the server are retried — a
        // reply cut in the middle is reported.)
        for attempt in 0..2 {
            let fresh = self.conn.is_none();
            if fresh {
                let s = tokio::time::timeout(timeout, TcpStream::connect(&self.authority))
                    .await
                    .map_err(|_| anyhow!("timed out connecting to {}", self.authority))?
                    .with_context(|| format!("cannot connect to {}", self.authority))?;
                s.set_nodelay(true)?;
                self.conn = Some(BufReader::new(s));
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            match tokio::time::timeout(timeout, exchange(conn, &self.request)).await {
                Ok(Ok((status, body, keep))) => {
                    if !keep {
                        self.conn = None;
                    }
                    return Ok((status, body));
                }
                Ok(Err(Exchange::NotSent(e))) if !fresh && attempt == 0 => {
                    tracing::debug!(error = %e, "kept-alive connection was closed; reconnecting");
                    self.conn = None;
                }
                Ok(Err(Exchange::NotSent(e) | Exchange::Broken(e))) => {
                    self.conn = None;
                    return Err(e);
                }
                Err(_) => {
                    self.conn = None;
                    bail!("no reply within {timeout:?}");
                }
            }
        }
        bail!("cannot reach {}", self.authority)
    }
}

enum Exchange {
    /// Nothing of the reply arrived: the request may be retried on a new connection.
    NotSent(anyhow::Error),
    Broken(anyhow::Error),
}

async fn exchange(
    conn: &mut BufReader<TcpStream>,
    request: &[u8],
) -> Result<(u16, Vec<u8>, bool), Exchange> {
    conn.get_mut()
        .write_all(request)
        .await
        .map_err(|e| Exchange::NotSent(e.into()))?;
    let mut line = String::new();
    let n = conn
        .read_line(&mut line)
        .await
        .map_err(|e| Exchange::NotSent(e.into()))?;
    if n == 0 {
        return Err(Exchange::NotSent(anyhow!("connection closed")));
    }
    let broken = |m: String| Exchange::Broken(anyhow!(m));
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| broken(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    loop {
        line.clear();
        conn.read_line(&mut line)
            .await
            .map_err(|e| Exchange::Broken(e.into()))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep = !value.eq_ignore_ascii_case("close");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line)
                .await
                .map_err(|e| Exchange::Broken(e.into()))?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| broken(format!("bad chunk size {line:?}")))?;
            let start = body.len();
            body.resize(start + size + 2, 0);
            conn.read_exact(&mut body[start..])
                .await
                .map_err(|e| Exchange::Broken(e.into()))?;
            body.truncate(start + size);
            if size == 0 {
                break;
            }
        }
    } else {
        let n = length.ok_or_else(|| broken("reply without a length".into()))?;
        body.resize(n, 0);
        conn.read_exact(&mut body)
            .await
            .map_err(|e| Exchange::Broken(e.into()))?;
    }
    Ok((status, body, keep))
}

pub const SEAT_UPDATES: &str =
    "subscription($show: ID!) { seatUpdates(showId: $show) { version seats { id status } } }";

/// What a seat-map subscriber saw.
#[derive(Default)]
pub struct Watch {
    /// The last version the subscriber's map is at (after gap re-reads).
    pub version: AtomicI64,
    /// The subscriber's own copy of the map (seat id → status), kept only when `tracking` — it
    /// is what a user looks at, so the audit compares it with the truth.
    pub tracking: bool,
    pub map: std::sync::Mutex<std::collections::HashMap<String, String>>,
    pub events: AtomicU64,
    /// Versions skipped (the client re-read the map to recover).
    pub gaps: AtomicU64,
    /// The stream ended with an error (e.g. dropped as too slow) and was reopened.
    pub reopened: AtomicU64,
    /// Full reads of the map (the first, and every re-read after a gap or a reopening).
    pub reads: AtomicU64,
    /// Events applied since the last full read: a map kept right by events, not by re-reading.
    pub applied_since_read: AtomicU64,
}

/// Seat-map subscribers: a task that keeps `seatUpdates(show)` open until `stop`, re-reading the
/// map over HTTP on a gap and resubscribing when the stream ends or fails — on the next server
/// when `base` lists several (comma-separated) — as the web page does behind a load balancer.
/// `on_event` sees each event's seats (id, status) as it arrives.
pub async fn watch(
    base: String,
    token: Option<String>,
    show: String,
    watch: Arc<Watch>,
    stop: tokio_util::sync::CancellationToken,
    on_event: impl Fn(&Value, Instant) + Send + 'static,
) -> anyhow::Result<()> {
    let mut http = Http::new(&base)?;
    let bases: Vec<&str> = base.split(',').map(str::trim).collect();
    let mut which = 0;
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let url = format!("{}/graphql", bases[which].replacen("http", "ws", 1));
        let opened = Instant::now();
        match watch_once(&url, &mut http, &token, &show, &watch, &stop, &on_event).await {
            Ok(()) if stop.is_cancelled() => break,
            Ok(()) => {}
            Err(e) => {
                tracing::debug!(error = %e, %url, "seat-map stream failed; reopening");
                which = (which + 1) % bases.len();
            }
        }
        failures = if opened.elapsed() > Duration::from_secs(10) {
            0
        } else {
            failures + 1
        };
        if failures > 600 {
            bail!("no server kept the seat map open for a minute");
        }
        watch.reopened.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// One subscription, from opening to its end (`Ok`) or failure (`Err`).
async fn watch_once(
    url: &str,
    http: &mut Http,
    token: &Option<String>,
    show: &str,
    watch: &Watch,
    stop: &tokio_util::sync::CancellationToken,
    on_event: &(impl Fn(&Value, Instant) + Send),
) -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    // tungstenite zero-fills its whole read buffer before every read (128 KiB by default): with
    // 10,000 watchers that was half of the load generator's CPU (a profile: 57% in memset).
    // Events are a few hundred bytes; 4 KiB is plenty (larger frames still grow the buffer).
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024);
    let (mut socket, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_with_config(req, Some(config), true),
    )
    .await
    .map_err(|_| anyhow!("WebSocket connect timed out"))?
    .context("WebSocket connect")?;
    let payload = match token {
        Some(t) => json!({ "Authorization": format!("Bearer {t}") }),
        None => json!({}),
    };
    socket
        .send(Message::Text(
            json!({"type": "connection_init", "payload": payload})
                .to_string()
                .into(),
        ))
        .await?;
    socket
        .send(Message::Text(
            json!({"id": "1", "type": "subscribe", "payload": {
                "query": SEAT_UPDATES, "variables": {"show": show}}})
            .to_string()
            .into(),
        ))
        .await?;
    // Read the map once the subscription is surely open (the protocol acknowledges the
    // connection, not the subscription), so that no event falls between read and stream;
    // events that arrive meanwhile wait in the socket and are deduplicated by version.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("connection_ack") => break,
            Ok(Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))) => {}
            _ => bail!("the server did not acknowledge the WebSocket connection"),
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    resync(http, show, watch).await?;
    // A map read while the hold store was unreachable (version -1, holds unknown) is re-read
    // every few seconds until it is whole again, as the web page does: no event may come.
    let mut degraded = tokio::time::interval(DEGRADED_REREAD);
    degraded.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => {
                let _ = socket.send(Message::Text(json!({"id": "1", "type": "complete"}).to_string().into())).await;
                let _ = socket.close(None).await;
                return Ok(());
            }
            _ = degraded.tick() => {
                if watch.version.load(Ordering::SeqCst) < 0 {
                    resync(http, show, watch).await?;
                }
                continue;
            }
            m = socket.next() => m,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => return Ok(()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("subscription socket: {e}"),
        };
        let at = Instant::now();
        let v: Value = serde_json::from_str(&text).context("subscription message")?;
        match v["type"].as_str().unwrap_or("") {
            "ping" => {
                socket
                    .send(Message::Text(json!({"type": "pong"}).to_string().into()))
                    .await?;
            }
            "next" => {
                let update = &v["payload"]["data"]["seatUpdates"];
                watch.events.fetch_add(1, Ordering::Relaxed);
                on_event(update, at);
                // As the web page does: the version decides before anything is applied. An event
                // without one (an error in the stream) tells nothing, so it counts as a gap.
                let last = watch.version.load(Ordering::SeqCst);
                match update["version"].as_i64() {
                    Some(version) if version == last + 1 => {
                        if watch.tracking {
                            if let (Ok(mut map), Some(seats)) =
                                (watch.map.lock(), update["seats"].as_array())
                            {
                                for seat in seats {
                                    if let (Some(id), Some(st)) =
                                        (seat["id"].as_str(), seat["status"].as_str())
                                    {
                                        map.insert(id.to_string(), st.to_string());
                                    }
                                }
                            }
                        }
                        watch.version.store(version, Ordering::SeqCst);
                        watch.applied_since_read.fetch_add(1, Ordering::Relaxed);
                    }
                    // Already in our last re-read, or older: events that waited in the socket
                    // while we re-read. (A hold store that lost its data restarts its versions,
                    // but the server then ends the stream — we re-read on reopening — so a
                    // lower version within reach of the buffers is stale, not a restart.)
                    Some(version) if version <= last && last - version <= STALE_WINDOW => {}
                    // A gap (we missed something), or far below ours.
                    _ => {
                        watch.gaps.fetch_add(1, Ordering::Relaxed);
                        resync(http, show, watch).await?;
                    }
                }
            }
            "error" | "complete" => return Ok(()),
            _ => {}
        }
    }
}

/// How often a map read without its holds (hold store unreachable) is read again.
const DEGRADED_REREAD: Duration = Duration::from_secs(2);

/// How far below the map's version an event may be and still be taken for one that waited in
/// the buffers (server, socket) while the map was re-read.
const STALE_WINDOW: i64 = 4096;

/// Re-read the map (its version, and its seats when the watcher keeps a copy).
async fn resync(http: &mut Http, show: &str, watch: &Watch) -> anyhow::Result<()> {
    let r = resync_open(http, show, watch).await;
    // Re-reads are rare: a watcher keeps one socket (its WebSocket), not two — 10,000 watchers
    // fit this machine's 20,000 open files.
    http.close();
    r
}

async fn resync_open(http: &mut Http, show: &str, watch: &Watch) -> anyhow::Result<()> {
    watch.reads.fetch_add(1, Ordering::Relaxed);
    watch.applied_since_read.store(0, Ordering::Relaxed);
    if !watch.tracking {
        let current = show_version(http, show).await?;
        watch.version.store(current, Ordering::SeqCst);
        return Ok(());
    }
    let (version, seats) = show_map(http, show).await?;
    if let Ok(mut map) = watch.map.lock() {
        *map = seats;
    }
    watch.version.store(version, Ordering::SeqCst);
    Ok(())
}

/// The show's version and seat statuses (seat id → status), read atomically over HTTP.
pub async fn show_map(
    http: &mut Http,
    show: &str,
) -> anyhow::Result<(i64, std::collections::HashMap<String, String>)> {
    let data = http
        .gql(
            None,
            "query($id: ID!) { show(id: $id) { version seats { id status } } }",
            json!({ "id": show }),
        )
        .await?
        .data()?;
    let s = &data["show"];
    let version = s["version"]
        .as_i64()
        .ok_or_else(|| anyhow!("show {show} not found"))?;
    let seats = s["seats"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    Some((
                        x["id"].as_str()?.to_string(),
                        x["status"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((version, seats))
}

/// The show's current seat-map version, read over HTTP.
pub async fn show_version(http: &mut Http, show: &str) -> anyhow::Result<i64> {
    let data = http
        .gql(
            None,
            "query($id: ID!) { show(id: $id) { version } }",
            json!({ "id": show }),
        )
        .await?
        .data()?;
    data["show"]["version"]
        .as_i64()
        .ok_or_else(|| anyhow!("show {show} not found"))
}

/// True when a GraphQL answer is data and nothing else, checked without parsing it: the body is
/// one JSON object that opens with `"data"` and has no `"errors":` anywhere. Inside a JSON
/// string a quote is always escaped, so those bytes can only be an `errors` key; their absence
/// means no errors (an answer that has the key, or any other shape, is parsed in full). Even
/// skipping over a 3,000-seat map (270 KB) with serde's `IgnoredAny` made the load generator,
/// not the server, the limit of that measurement; a SIMD substring search is much cheaper.
fn plainly_data(body: &[u8]) -> bool {
    body.starts_with(b"{\"data\":")
        && body.ends_with(b"}")
        && memchr::memmem::find(body, b"\"errors\":").is_none()
}

#[cfg(test)]
mod tests {
    use super::plainly_data;

    #[test]
    fn only_plain_data_skips_the_parse() {
        assert!(plainly_data(
            br#"{"data":{"show":{"seats":[{"id":"1","label":"A1"}]}}}"#
        ));
        // An escaped quote inside a string is not a key.
        assert!(plainly_data(br#"{"data":{"m":"say \"errors\": none"}}"#));
        assert!(!plainly_data(
            br#"{"data":null,"errors":[{"message":"no","extensions":{"code":"NOT_FOUND"}}]}"#
        ));
        assert!(!plainly_data(
            br#"{"data":{"show":null},"errors":[{"message":"x"}]}"#
        ));
        // Pretty-printed, an alias named `errors`, a cut body: parsed in full.
        assert!(!plainly_data(b"{\n  \"data\": {}\n}"));
        assert!(!plainly_data(br#"{"data":{"errors":[]}}"#));
        assert!(!plainly_data(br#"{"data":{"show":"#));
    }
}
