//! Test harness: a real server on 127.0.0.1:0 built from the real `app::build`, driven over HTTP.
//!
//! Two backends: `Embedded` (a fresh SQLite file, in-process holds) and `Served` (a fresh
//! PostgreSQL database created and dropped per test, real Redis under a per-test key prefix).
//! `Served` tests FAIL when PostgreSQL or Redis is unreachable, unless
//! `BOXOFFICE_TEST_EMBEDDED_ONLY=1` is set, which skips them with a notice (documented in README).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use boxoffice::app::{App, AppState};
use boxoffice::config::Cli;
use clap::Parser;
use serde_json::{json, Value};

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789";
pub const ADMIN_EMAIL: &str = "admin@boxoffice.test";
pub const ADMIN_PASSWORD: &str = "admin-password-42";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite + in-process hold store.
    Embedded,
    /// PostgreSQL + Redis.
    Served,
}

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// True when the user opted out of the PostgreSQL/Redis half of the suite.
pub fn served_skipped() -> bool {
    matches!(
        std::env::var("BOXOFFICE_TEST_EMBEDDED_ONLY").as_deref(),
        Ok("1") | Ok("true")
    )
}

fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{tag}_{}_{}_{}", std::process::id(), n, rand_suffix())
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// A database that lives as long as the test.
pub enum TestDb {
    /// Owned by another `TestApp` (a peer instance on the same database).
    Shared,
    Sqlite(tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl TestDb {
    pub async fn create(backend: Backend) -> (TestDb, String) {
        match backend {
            Backend::Embedded => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                (TestDb::Sqlite(dir), url)
            }
            Backend::Served => {
                let admin_url = postgres_admin_url();
                let name = unique("bo_test");
                let conn = sea_orm::Database::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is unreachable at {admin_url}: {e}. Start it (scripts/test.sh does) or set BOXOFFICE_TEST_EMBEDDED_ONLY=1 to skip the PostgreSQL/Redis tests")
                });
                use sea_orm::ConnectionTrait;
                conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let mut url = url::Url::parse(&admin_url).expect("TEST_POSTGRES_URL");
                url.set_path(&format!("/{name}"));
                (TestDb::Postgres { admin_url, name }, url.to_string())
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside any runtime we may block; use a private one on a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    use sea_orm::ConnectionTrait;
                    let conn = sea_orm::Database::connect(&admin_url).await.ok()?;
                    let _ = conn
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = conn.close().await;
                    Some(())
                })
            })
            .join();
        }
    }
}

/// Panic (fail the test) when Redis does not answer PING.
pub async fn require_redis() {
    let url = redis_url();
    let ok = async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut conn = tokio::time::timeout(
            Duration::from_secs(3),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    }
    .await;
    assert!(
        ok.is_some(),
        "Redis is unreachable at {url}. Start it (scripts/test.sh does) or set BOXOFFICE_TEST_EMBEDDED_ONLY=1 to skip the PostgreSQL/Redis tests"
    );
}

/// A GraphQL client of one server, by URL.
/// The password `Api::sign_up` gives every account.
pub const USER_PASSWORD: &str = "correct horse battery";

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    /// Run an operation; returns the whole response body (`data` and `errors`).
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 200, "GraphQL over HTTP answers 200");
        resp.json().await.expect("json body")
    }

    /// The HTTP status of `GET <path>` (e.g. `/readyz`).
    pub async fn get_status(&self, path: &str) -> u16 {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        resp.status().as_u16()
    }

    /// Run an operation that must succeed; returns `data`.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.gql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Run an operation that must fail; returns the first error's `extensions.code`.
    pub async fn err_code(&self, token: Option<&str>, query: &str, variables: Value) -> String {
        let body = self.gql(token, query, variables).await;
        let code = body["errors"][0]["extensions"]["code"].as_str();
        code.unwrap_or_else(|| panic!("expected an error with a code, got {body}"))
            .to_string()
    }

    pub async fn sign_up(&self, email: &str) -> (String, String) {
        let d = self
            .ok(
                None,
                "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) { token user { id } } }",
                json!({ "e": email, "p": USER_PASSWORD }),
            )
            .await;
        (
            d["signUp"]["token"].as_str().unwrap().to_string(),
            d["signUp"]["user"]["id"].as_str().unwrap().to_string(),
        )
    }

    pub async fn admin_token(&self) -> String {
        let d = self
            .ok(
                None,
                "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }",
                json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }),
            )
            .await;
        d["logIn"]["token"].as_str().unwrap().to_string()
    }

    /// A fresh show starting tomorrow on a new screen of `rows` rows of `per_row` seats
    /// (rows A, B, … ; the back half PREMIUM). Returns (show id, seat ids in layout order).
    pub async fn create_show(&self, rows: usize, per_row: i32) -> (String, Vec<String>) {
        let admin = self.admin_token().await;
        let venue = self
            .ok(
                Some(&admin),
                "mutation($n: String!) { createVenue(name: $n, city: \"Testville\") { id } }",
                json!({ "n": unique("Test Hall") }),
            )
            .await["createVenue"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let row_inputs: Vec<Value> = (0..rows)
            .map(|i| {
                json!({
                    "label": row_label(i),
                    "seats": per_row,
                    "category": if i * 2 >= rows { "PREMIUM" } else { "STANDARD" },
                })
            })
            .collect();
        let screen = self
            .ok(
                Some(&admin),
                "mutation($v: ID!, $rows: [SeatRowInput!]!) { createScreen(venueId: $v, name: \"Main\", rows: $rows) { id } }",
                json!({ "v": venue, "rows": row_inputs }),
            )
            .await["createScreen"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let movie = self
            .ok(
                Some(&admin),
                "mutation { createMovie(title: \"Test Film\", durationMinutes: 100) { id } }",
                json!({}),
            )
            .await["createMovie"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let starts = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let mut prices = vec![json!({ "category": "STANDARD", "priceCents": 1000 })];
        if rows > 1 {
            prices.push(json!({ "category": "PREMIUM", "priceCents": 1500 }));
        }
        let show = self
            .ok(
                Some(&admin),
                "mutation($m: ID!, $s: ID!, $t: DateTime!, $p: [CategoryPriceInput!]!) { createShow(movieId: $m, screenId: $s, startsAt: $t, prices: $p) { id seats { id } } }",
                json!({ "m": movie, "s": screen, "t": starts, "p": prices }),
            )
            .await;
        let id = show["createShow"]["id"].as_str().unwrap().to_string();
        let seats = show["createShow"]["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        (id, seats)
    }

    /// The show's seat map as `(version, [(seat id, status, heldByMe)])`, seen by `token`.
    pub async fn seat_map(
        &self,
        token: Option<&str>,
        show: &str,
    ) -> (i64, Vec<(String, String, bool)>) {
        let d = self
            .ok(
                token,
                "query($id: ID!) { show(id: $id) { version seats { id status heldByMe } } }",
                json!({ "id": show }),
            )
            .await;
        let seats = d["show"]["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["status"].as_str().unwrap().to_string(),
                    s["heldByMe"].as_bool().unwrap(),
                )
            })
            .collect();
        (d["show"]["version"].as_i64().unwrap(), seats)
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub api: Api,
    pub addr: std::net::SocketAddr,
    pub app: App,
    pub redis_prefix: Option<String>,
    pub database_url: String,
    server: Option<tokio::task::JoinHandle<()>>,
    _db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, &[]).await
    }

    /// Spawn with extra flags, e.g. `&["--hold-ttl-seconds", "2"]`.
    pub async fn spawn_with(backend: Backend, extra: &[&str]) -> TestApp {
        Self::spawn_via(backend, extra, |url| url).await
    }

    /// `spawn_with`, the server reaching the database at `route(url)` (e.g. through a proxy).
    pub async fn spawn_via(
        backend: Backend,
        extra: &[&str],
        route: impl Fn(String) -> String,
    ) -> TestApp {
        let (db, database_url) = TestDb::create(backend).await;
        let database_url = route(database_url);
        let prefix = unique("bo-test");
        let mut args: Vec<String> = vec![
            "boxoffice".into(),
            "--database-url".into(),
            database_url.clone(),
            "--listen-addr".into(),
            "127.0.0.1:0".into(),
            "--jwt-secret".into(),
            JWT_SECRET.into(),
            "--admin-email".into(),
            ADMIN_EMAIL.into(),
            "--admin-password".into(),
            ADMIN_PASSWORD.into(),
            "--payment-latency-ms".into(),
            "0".into(),
            // Exact outcomes: tests that want declines ask for them (rate 1.0).
            "--payment-failure-rate".into(),
            "0".into(),
            "--demo-data".into(),
            "false".into(),
            "--redis-key-prefix".into(),
            prefix.clone(),
        ];
        if backend == Backend::Served {
            require_redis().await;
            args.push("--redis-url".into());
            args.push(redis_url());
        }
        // Extra flags replace the defaults above.
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| a == pair[0]) {
                args.drain(i..i + 2);
            }
            args.extend(pair.iter().map(|s| s.to_string()));
        }
        let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("test config: {e}"));
        Self::start(
            backend,
            cli.config,
            db,
            database_url,
            (backend == Backend::Served).then_some(prefix),
        )
        .await
    }

    async fn start(
        backend: Backend,
        config: boxoffice::config::Config,
        db: TestDb,
        database_url: String,
        redis_prefix: Option<String>,
    ) -> TestApp {
        if std::env::var_os("RUST_LOG").is_some() {
            boxoffice::telemetry::init_logs("text", "info");
        }
        let app = boxoffice::app::build(config)
            .await
            .unwrap_or_else(|e| panic!("app failed to build: {e:#}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = app.clone();
        let server = tokio::spawn(async move {
            let _ = boxoffice::app::serve(served, listener).await;
        });
        TestApp {
            backend,
            api: Api::new(format!("http://{addr}")),
            addr,
            app,
            redis_prefix,
            database_url,
            server: Some(server),
            _db: db,
        }
    }

    /// A second instance on the same database and Redis namespace (another server process, as
    /// far as the service can tell).
    pub async fn spawn_peer(&self, extra: &[&str]) -> TestApp {
        let mut args: Vec<String> = vec![
            "boxoffice".into(),
            "--database-url".into(),
            self.database_url.clone(),
            "--jwt-secret".into(),
            JWT_SECRET.into(),
            "--payment-latency-ms".into(),
            "0".into(),
            "--payment-failure-rate".into(),
            "0".into(),
            "--demo-data".into(),
            "false".into(),
        ];
        if let Some(p) = &self.redis_prefix {
            args.extend([
                "--redis-url".into(),
                redis_url(),
                "--redis-key-prefix".into(),
                p.clone(),
            ]);
        }
        // Extra flags replace the defaults above.
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| a == pair[0]) {
                args.drain(i..i + 2);
            }
            args.extend(pair.iter().map(|s| s.to_string()));
        }
        let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("peer config: {e}"));
        Self::start(
            self.backend,
            cli.config,
            TestDb::Shared,
            self.database_url.clone(),
            self.redis_prefix.clone(),
        )
        .await
    }

    pub fn state(&self) -> &AppState {
        &self.app.state
    }

    /// `n` customer accounts inserted straight into the database (no argon2: fast), with tokens.
    pub async fn users(&self, n: usize) -> Vec<(String, i64)> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
        let tag = unique("u");
        let rows: Vec<entity::user::ActiveModel> = (0..n)
            .map(|i| entity::user::ActiveModel {
                email: Set(format!("{tag}-{i}@load.test")),
                password_hash: Set("$argon2id$v=19$m=19456,t=2,p=1$unused$unused".into()),
                name: Set(None),
                role: Set("customer".into()),
                created_at: Set(chrono::Utc::now()),
                ..Default::default()
            })
            .collect();
        for chunk in rows.chunks(200) {
            entity::user::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&self.state().db)
                .await
                .expect("users");
        }
        let users = entity::user::Entity::find()
            .filter(entity::user::Column::Email.like(format!("{tag}-%")))
            .all(&self.state().db)
            .await
            .expect("users");
        let tokens = self.state().accounts.tokens();
        users
            .into_iter()
            .map(|u| {
                (
                    tokens
                        .issue(u.id, boxoffice::auth::Role::Customer)
                        .expect("token"),
                    u.id,
                )
            })
            .collect()
    }

    /// A booking row written straight to the database (for tests of the database's own rules and
    /// of what the store does with bookings it did not make).
    pub async fn insert_booking(
        &self,
        user: i64,
        show: i64,
        key: &str,
        status: &str,
    ) -> Result<entity::booking::Model, sea_orm::DbErr> {
        use sea_orm::{ActiveModelTrait, Set};
        entity::booking::ActiveModel {
            user_id: Set(user),
            show_id: Set(show),
            hold_id: Set(None),
            status: Set(status.into()),
            total_cents: Set(1000),
            idempotency_key: Set(key.into()),
            failure_reason: Set(None),
            created_at: Set(chrono::Utc::now()),
            updated_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&self.state().db)
        .await
    }

    /// One seat of a booking, live (`active`) or not, written straight to the database.
    pub async fn insert_booking_seat(
        &self,
        booking: i64,
        show: i64,
        seat: i64,
        active: bool,
    ) -> Result<(), sea_orm::DbErr> {
        use sea_orm::{EntityTrait, Set};
        entity::booking_seat::Entity::insert(entity::booking_seat::ActiveModel {
            booking_id: Set(booking),
            seat_id: Set(seat),
            show_id: Set(show),
            price_cents: Set(1000),
            active: Set(active),
        })
        .exec_without_returning(&self.state().db)
        .await
        .map(|_| ())
    }

    /// Stop serving (graceful) and wait for the server task.
    pub async fn stop(mut self) {
        self.app.state.shutdown.cancel();
        if let Some(h) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.app.state.shutdown.cancel();
    }
}

pub fn row_label(i: usize) -> String {
    let letters = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    if i < letters.len() {
        (letters[i] as char).to_string()
    } else {
        format!(
            "{}{}",
            letters[i / letters.len() - 1] as char,
            letters[i % letters.len()] as char
        )
    }
}

/// Define a test that runs once per backend: `mod name { sqlite, postgres_redis }`.
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite_memory() {
                super::$name($crate::common::Backend::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres_redis() {
                if $crate::common::served_skipped() {
                    eprintln!("skipped: BOXOFFICE_TEST_EMBEDDED_ONLY is set");
                    return;
                }
                super::$name($crate::common::Backend::Served).await
            }
        }
    )*};
}

/// A Redis server of the test's own (on a free port), for tests that flush or stop Redis
/// without disturbing other tests sharing the machine's Redis.
pub struct PrivateRedis {
    pub port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let server = PrivateRedis {
            port,
            child: Self::spawn(port),
        };
        server.wait_ready().await;
        server
    }

    fn spawn(port: u16) -> std::process::Child {
        std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)")
    }

    /// Wait for PING; the caller (and its `Drop`) owns the child either way.
    async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(client) = redis::Client::open(self.url().as_str()) {
                if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok()
                    {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill the server (SIGKILL): everything in it is lost, connections drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freeze the server (SIGSTOP): connections stay open, nothing answers — a hung dependency.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaw a paused server (SIGCONT): it answers again, with everything it held.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {sig} redis-server");
    }

    /// Start a fresh, empty server on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port);
        self.wait_ready().await;
    }

    pub async fn cmd(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url().as_str()).expect("client");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut c).await.expect("redis command")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `boxoffice` binary as a child process (for crash and multi-instance tests).
pub struct ServerProcess {
    pub api: Api,
    child: std::process::Child,
}

impl ServerProcess {
    /// Start the binary with `env` (plus a free `LISTEN_ADDR`) and wait until `/healthz` answers.
    pub async fn start(env: &[(String, String)]) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn boxoffice");
        let server = ServerProcess {
            api: Api::new(format!("http://127.0.0.1:{port}")),
            child,
        };
        for _ in 0..200 {
            if let Ok(r) = server
                .api
                .client
                .get(format!("{}/healthz", server.api.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(server);
        panic!("boxoffice did not start");
    }

    /// SIGKILL: no shutdown hooks, no drained requests — a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Environment for a `ServerProcess` on `backend` with a fresh database; keep the `TestDb`.
pub async fn process_env(
    backend: Backend,
    extra: &[(&str, &str)],
) -> (TestDb, Vec<(String, String)>) {
    let (db, url) = TestDb::create(backend).await;
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), url),
        ("JWT_SECRET".into(), JWT_SECRET.into()),
        ("ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ("DEMO_DATA".into(), "false".into()),
        ("PAYMENT_FAILURE_RATE".into(), "0".into()),
        ("REDIS_KEY_PREFIX".into(), unique("bo-proc")),
    ];
    if backend == Backend::Served {
        require_redis().await;
        env.push(("REDIS_URL".into(), redis_url()));
    }
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    (db, env)
}

/// A minimal graphql-transport-ws client over a real WebSocket.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connect and initialise; `Err` carries the close reason when the server refuses.
    pub async fn connect(base: &str, token: Option<&str>) -> Result<WsClient, String> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
        let url = format!("{}/graphql", base.replacen("http", "ws", 1));
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut socket, resp) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("graphql-transport-ws")
        );
        let payload = match token {
            Some(t) => json!({ "Authorization": format!("Bearer {t}") }),
            None => json!({}),
        };
        socket
            .send(Message::Text(
                json!({ "type": "connection_init", "payload": payload })
                    .to_string()
                    .into(),
            ))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                    if v["type"] == "connection_ack" {
                        return Ok(WsClient { socket });
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => return Err(format!("closed: {frame:?}")),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(None) => return Err("closed".into()),
                Err(_) => return Err("no connection_ack".into()),
            }
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let msg = json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } });
        self.socket
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("send subscribe");
    }

    /// Every frame that arrives within `wait` (pings answered by the library as they are read),
    /// as `ping`, `text`, `close:<code>`; stops at a close or the end of the stream.
    pub async fn frames(&mut self, wait: Duration) -> Vec<String> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.socket.next()).await {
                Ok(Some(Ok(Message::Ping(_)))) => out.push("ping".to_string()),
                Ok(Some(Ok(Message::Text(_)))) => out.push("text".to_string()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    out.push(format!(
                        "close:{}",
                        frame.map(|f| u16::from(f.code)).unwrap_or(0)
                    ));
                    return out;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => {
                    out.push("end".to_string());
                    return out;
                }
                Err(_) => return out,
            }
        }
    }

    /// The next `next`/`error`/`complete` message, or `None` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).expect("json message");
                    if ["next", "error", "complete"].contains(&v["type"].as_str().unwrap_or("")) {
                        return Some(v);
                    }
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) => return None,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) => return None,
            }
        }
    }
}

pub const SEAT_UPDATES: &str = "subscription($show: ID!) { seatUpdates(showId: $show) {
    showId version availableSeats heldSeats bookedSeats seats { id status heldByMe } } }";

/// A TCP proxy the test controls, in front of a real server: `cut` drops every open connection
/// and refuses new ones (the server behind it looks dead), `slow` delays every chunk of traffic
/// in both directions (a slow or hung server behind a live socket), `heal` undoes both.
pub struct FaultProxy {
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: &str) -> FaultProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let (d, c, delay, target) = (
            down.clone(),
            conns.clone(),
            delay_ms.clone(),
            target.to_string(),
        );
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (target, delay) = (target.clone(), delay.clone());
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        let (ri, wi) = inbound.into_split();
                        let (ro, wo) = outbound.into_split();
                        tokio::join!(Self::pump(ri, wo, delay.clone()), Self::pump(ro, wi, delay));
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        FaultProxy {
            port,
            down,
            delay_ms,
            conns,
            accept,
        }
    }

    /// Copy one direction, holding each chunk for the current delay before passing it on.
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = delay_ms.load(std::sync::atomic::Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }

    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Delay every chunk of traffic through the proxy by `ms` from now on.
    pub fn slow(&self, ms: u64) {
        self.delay_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
        self.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}
