//! Builds the state, the router and the background tasks; serves; shuts down gracefully.
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine;
use rand::RngCore;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::accounts::Accounts;
use crate::auth::token::Tokens;
use crate::booking::Bookings;
use crate::catalogue::{demo, Catalogue};
use crate::config::Config;
use crate::db::redact;
use crate::graphql::build_schema;
use crate::holds::Holds;
use crate::state::{AppState, Services};

const JWT_SECRET_SETTING: &str = "jwt_secret";

pub use crate::http::App;

/// `boxoffice migrate`: apply pending migrations and exit.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let (db, _) = connect_database(config, 2).await?;
    crate::db::migrate(&db).await.context("migration failed")?;
    println!("migrations applied");
    Ok(())
}

/// `boxoffice serve`: build, serve until SIGTERM or Ctrl-C, drain.
pub async fn serve_from_config(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on LISTEN_ADDR={}", config.listen_addr))?;
    let app = build(config).await?;
    let shutdown = app.state.shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        shutdown.cancel();
    });
    serve(app, listener).await
}

/// Connect, migrate, bootstrap accounts and demo data, start background tasks.
pub async fn build(config: Config) -> anyhow::Result<App> {
    // Metrics count from the first request on, not from the first scrape.
    crate::telemetry::metrics();
    let config = Arc::new(config);
    let (db, db_stats) = connect_database(&config, config.pool_size()).await?;
    crate::db::migrate(&db)
        .await
        .context("database migration failed")?;

    let secret = jwt_secret(&config, &db).await?;
    let tokens = Arc::new(Tokens::new(
        secret.as_bytes(),
        config.jwt_previous_secret.as_deref().map(str::as_bytes),
        std::time::Duration::from_secs(config.jwt_ttl_seconds),
    ));
    let accounts = Accounts::new(db.clone(), tokens)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match (&config.admin_email, &config.admin_password) {
        (Some(email), Some(pwd)) => {
            accounts
                .ensure_admin(email, pwd)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the admin account: {e}"))?;
            tracing::info!(email = %email, "admin account ready");
        }
        (Some(_), None) | (None, Some(_)) => {
            tracing::warn!(
                "only one of ADMIN_EMAIL and ADMIN_PASSWORD is set: no admin account is created"
            )
        }
        (None, None) => {}
    }

    let catalogue = Catalogue::new(db.clone());
    if config.demo_data() {
        match demo::load_if_empty(&catalogue).await {
            Ok(true) => tracing::info!("demo catalogue loaded"),
            Ok(false) => {}
            Err(e) => anyhow::bail!("cannot load the demo catalogue: {e}"),
        }
    }

    let store = crate::holds::connect_store(&config.hold_store(), db.clone()).await?;
    tracing::info!(store = store.kind(), "hold store ready");
    let holds = Holds::new(store.clone(), catalogue.clone(), config.hold_rules());
    let shutdown = CancellationToken::new();
    crate::holds::sweeper::spawn(holds.clone(), shutdown.clone());
    let queue = crate::queue::WaitingRoom::new(store.clone(), holds.clone(), catalogue.clone());
    crate::queue::spawn_admissions(store, shutdown.clone());
    let live = crate::live::Hub::start(&holds, shutdown.clone());
    // The mock gateway stands for an external service: connections of its own, so that it never
    // competes with the service's pool (a busy service must not make its gateway look down).
    let (gateway_db, _) = connect_database(&config, crate::payment::GATEWAY_POOL_SIZE).await?;
    let gateway = Arc::new(crate::payment::mock::MockGateway::new(
        gateway_db,
        config.payment_failure_rate,
        config.payment_latency(),
        config.payment_seed,
    ));
    let bookings = Bookings::new(
        db.clone(),
        catalogue.clone(),
        holds.clone(),
        gateway,
        config.payment_timeout(),
        config.checkout_admission(),
        config.group_commit(),
    );
    // Settle what a previous crash left behind, then keep watching.
    if let Err(e) = bookings.reconcile_once().await {
        tracing::warn!(error = %e, "start-up reconciliation failed; the periodic pass will retry");
    }
    crate::booking::reconciler::spawn(
        bookings.clone(),
        std::time::Duration::from_secs(config.reconcile_interval_seconds),
        shutdown.clone(),
    );
    crate::webhooks::dispatch::Dispatcher::new(
        db.clone(),
        std::time::Duration::from_millis(config.webhook_retry_base_ms),
        std::time::Duration::from_millis(config.webhook_timeout_ms),
    )?
    .spawn(
        std::time::Duration::from_millis(config.webhook_dispatch_interval_ms),
        shutdown.clone(),
    );
    let limits = Arc::new(crate::limits::Limits::new(
        &config,
        match &config.redis_url {
            Some(url) => Some(limits_connection(url, config.dependency_timeout())?),
            None => None,
        },
    ));
    let state = AppState::new(Services {
        limits,
        bookings,
        holds,
        queue,
        live,
        catalogue,
        accounts,
        keys: Arc::new(crate::auth::keys::ApiKeys::new(db.clone())),
        webhooks: crate::webhooks::Webhooks::new(db.clone(), config.webhook_allow_http),
        db,
        db_stats,
        config,
        shutdown,
    });
    let schema = build_schema(state.clone());
    Ok(App::new(state, schema))
}

/// A pool of `size` connections to `DATABASE_URL`, or an error that names the setting.
async fn connect_database(
    config: &Config,
    size: u32,
) -> anyhow::Result<(DatabaseConnection, Arc<crate::db::DbStats>)> {
    crate::db::connect_sized(&config.database_url, config.dependency_timeout(), size)
        .await
        .with_context(|| {
            format!(
                "cannot connect to DATABASE_URL ({})",
                redact(&config.database_url)
            )
        })
}

/// A Redis connection for the shared rate-limit counters (reconnects by itself).
fn limits_connection(
    url: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<crate::redis_conn::RedisConn> {
    let target = crate::redis_conn::RedisTarget::parse(url).map_err(|e| anyhow::anyhow!(e))?;
    // Lazy, like the hold store's: a Redis outage at start-up does not stop the server.
    crate::redis_conn::RedisConn::connect(&target, timeout, 1)
}

/// Serve until the app's shutdown token is cancelled, then drain requests in flight.
pub async fn serve(app: App, listener: TcpListener) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let shutdown = app.state.shutdown.clone();
    let router = crate::http::router(app);
    tracing::info!(%addr, "serving GraphQL at http://{addr}/graphql and the booking page at http://{addr}/");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .context("server error")
}

/// The configured secret, or the one generated at first start and kept in the database (all
/// instances sharing the database then agree on it).
async fn jwt_secret(config: &Config, db: &DatabaseConnection) -> anyhow::Result<String> {
    if let Some(s) = &config.jwt_secret {
        return Ok(s.clone());
    }
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    let fresh = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let stored = crate::db::init_setting(db, JWT_SECRET_SETTING, &fresh).await?;
    tracing::warn!("JWT_SECRET is not set: using a generated secret kept in the database; set JWT_SECRET in production");
    Ok(stored)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
