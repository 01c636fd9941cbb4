//! Database connection, migrations and the service's own settings table.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    Statement, TransactionTrait,
};

/// Key of the PostgreSQL advisory lock that serialises migrations across instances.
const MIGRATION_LOCK_KEY: i64 = 0x626f_786f_6666_6963; // "boxoffic"

/// Statements run through one pool: exported as metrics, and counted so tests can prove that a
/// list query costs a bounded number of statements.
#[derive(Debug, Default)]
pub struct DbStats {
    statements: AtomicU64,
}

impl DbStats {
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}

/// Open a pool. SQLite gets WAL, a busy timeout and foreign keys; every pool gets connect and
/// acquire timeouts so that a dead database gives an error, not a hang.
pub async fn connect(
    url: &str,
    timeout: Duration,
) -> Result<(DatabaseConnection, Arc<DbStats>), DbErr> {
    connect_sized(url, timeout, default_pool_size(url)).await
}

/// Connections of a pool when none is configured: 8 for SQLite (one writer at a time anyway),
/// 32 for PostgreSQL.
pub fn default_pool_size(url: &str) -> u32 {
    if url.starts_with("sqlite:") {
        8
    } else {
        32
    }
}

/// `connect` with a pool of `size` connections.
pub async fn connect_sized(
    url: &str,
    timeout: Duration,
    size: u32,
) -> Result<(DatabaseConnection, Arc<DbStats>), DbErr> {
    let mut opt = ConnectOptions::new(url.to_string());
    opt.connect_timeout(timeout)
        .acquire_timeout(timeout)
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        opt.max_connections(size).min_connections(1);
        opt.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    } else {
        opt.max_connections(size).min_connections(2.min(size));
    }
    let mut db = Database::connect(opt).await?;
    let stats = Arc::new(DbStats::default());
    let counter = stats.clone();
    db.set_metric_callback(move |info| {
        counter.statements.fetch_add(1, Ordering::Relaxed);
        statement_done(&info.statement.sql, info.elapsed, info.failed);
    });
    Ok((db, stats))
}

/// Trace and time one statement (`db_statement_duration_seconds` by outcome): the pool's
/// statements through the connection's callback above, the group writers' own
/// (`group_commit::query`) directly.
pub fn statement_done(sql: &str, elapsed: Duration, failed: bool) {
    let outcome = if failed { "error" } else { "ok" };
    tracing::trace!(target: "boxoffice::sql", elapsed = ?elapsed, failed, sql = %sql);
    metrics::histogram!("db_statement_duration_seconds", "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// Apply pending migrations. On PostgreSQL the whole run happens in one transaction holding an
/// advisory lock, so several instances starting together migrate once, in turn.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await?;
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK_KEY.into()],
            ))
            .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await
        }
        _ => Migrator::up(db, None).await,
    }
}

/// True when the error means "could not talk to the database" rather than "the database said no".
pub fn is_unavailable(e: &DbErr) -> bool {
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(se))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(se)) => matches!(
            se.as_ref(),
            sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed
        ),
        _ => false,
    }
}

/// True when the database refused a transaction because it conflicted with another one, and a
/// retry of the whole transaction may succeed: PostgreSQL's serialization failure (`40001`) and
/// deadlock (`40P01`), SQLite's busy database. Never the client's fault, never an internal error.
pub fn is_conflict(e: &DbErr) -> bool {
    let code = match e {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(se))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(se)) => se
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        _ => None,
    };
    matches!(code.as_deref(), Some("40001" | "40P01" | "5" | "517"))
}

/// The unique constraint (or index) an insert or update ran into, named as the database names it
/// (PostgreSQL: the index, e.g. `uq_booking_seats_active`; SQLite: its columns, e.g.
/// `users.email`); `None` for any other error.
pub fn unique_violation(e: &DbErr) -> Option<String> {
    match e.sql_err()? {
        sea_orm::SqlErr::UniqueConstraintViolation(msg) => {
            let name = msg
                .split_once("constraint \"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(name, _)| name.to_string())
                .or_else(|| {
                    msg.split_once("constraint failed: ")
                        .map(|(_, cols)| cols.trim().to_string())
                })
                .unwrap_or(msg);
            Some(name)
        }
        _ => None,
    }
}

/// Rows as one JSON array: the parameter of a statement that reads a group of rows with
/// `jsonb_to_recordset` (PostgreSQL), written straight from `rows`' `Serialize`.
pub fn json_rows<T: serde::Serialize>(rows: &[T]) -> Result<String, DbErr> {
    serde_json::to_string(rows).map_err(|e| DbErr::Custom(format!("rows as JSON: {e}")))
}

/// Read a setting of the service (e.g. the generated JWT secret).
pub async fn get_setting(db: &DatabaseConnection, key: &str) -> Result<Option<String>, DbErr> {
    Ok(entity::app_setting::Entity::find_by_id(key.to_string())
        .one(db)
        .await?
        .map(|m| m.value))
}

/// Store `value` under `key` unless the key exists; returns the value that is stored afterwards,
/// so that concurrent first starts agree on one value.
pub async fn init_setting(
    db: &DatabaseConnection,
    key: &str,
    value: &str,
) -> Result<String, DbErr> {
    use entity::app_setting as s;
    use sea_orm::{sea_query::OnConflict, Set};
    let row = s::ActiveModel {
        key: Set(key.to_string()),
        value: Set(value.to_string()),
        updated_at: Set(chrono::Utc::now()),
    };
    s::Entity::insert(row)
        .on_conflict(OnConflict::column(s::Column::Key).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    get_setting(db, key)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("setting {key}")))
}

/// Is the database answering? Used by `/readyz`.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.ping().await.is_ok()
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
