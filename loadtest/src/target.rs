//! What the load tools point at: the server's database and hold store, read directly by the
//! audit and the benchmark, and the admin account that creates their shows. The same variable
//! names as the server's settings, so one environment serves both; unlike the server, nothing
//! here has a default that could point at the wrong place (no database file is ever created).
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use sea_orm::{ConnectionTrait, DatabaseConnection};

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The server's database (`postgres://…` or `sqlite://…`), read by the audit and the bench.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// The server's Redis, when its holds live there (the audit reads it directly).
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// The server's key prefix in Redis.
    #[arg(
        long,
        env = "REDIS_KEY_PREFIX",
        default_value = "boxoffice",
        global = true
    )]
    pub redis_key_prefix: String,

    /// An admin account of the server (to create the simulated show).
    #[arg(long, env = "ADMIN_EMAIL", global = true)]
    pub admin_email: Option<String>,

    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true, global = true)]
    pub admin_password: Option<String>,

    /// Timeout of each database and Redis call, in milliseconds.
    #[arg(
        long,
        env = "DEPENDENCY_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub dependency_timeout_ms: u64,

    /// The `boxoffice` server binary the bench starts (default: the one beside this binary).
    #[arg(long, env = "BOXOFFICE_BIN", global = true)]
    pub server_bin: Option<PathBuf>,
}

impl Target {
    pub fn dependency_timeout(&self) -> Duration {
        Duration::from_millis(self.dependency_timeout_ms)
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres"))
    }

    /// The database URL, which must be given: a load tool never guesses where the server keeps
    /// its data. A SQLite URL is opened without `mode=rwc`, so a wrong path fails instead of
    /// creating an empty database.
    pub fn database_url(&self) -> anyhow::Result<String> {
        match self.database_url.as_deref().map(str::trim) {
            None | Some("") => bail!(
                "DATABASE_URL is not set: the audit reads the server's database directly. Set \
                 DATABASE_URL (and REDIS_URL and REDIS_KEY_PREFIX when the server keeps its holds \
                 in Redis) to the server's own, or pass --no-audit"
            ),
            Some(u) if u.starts_with("sqlite:") => Ok(u
                .replace("mode=rwc", "mode=rw")
                .replace("mode=memory", "mode=rw")),
            Some(u) => Ok(u.to_string()),
        }
    }

    /// Connect to the server's database and check that it holds the server's schema: one
    /// round trip, within the dependency timeout.
    pub async fn database(&self) -> anyhow::Result<DatabaseConnection> {
        let url = self.database_url()?;
        let shown = boxoffice::db::redact(&url);
        let (db, _) = tokio::time::timeout(
            self.dependency_timeout(),
            boxoffice::db::connect(&url, self.dependency_timeout()),
        )
        .await
        .map_err(|_| anyhow::anyhow!("DATABASE_URL ({shown}) did not answer in time"))?
        .with_context(|| format!("cannot open DATABASE_URL ({shown})"))?;
        db.execute_unprepared("SELECT 1 FROM shows WHERE 1 = 0")
            .await
            .with_context(|| {
                format!(
                    "DATABASE_URL ({shown}) has no boxoffice schema (no table `shows`): is it the \
                     server's database?"
                )
            })?;
        Ok(db)
    }

    /// The server binary the bench starts.
    pub fn server_bin(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.server_bin {
            return Ok(p.clone());
        }
        let me = std::env::current_exe().context("cannot find this binary's path")?;
        let beside = me.with_file_name(format!("boxoffice{}", std::env::consts::EXE_SUFFIX));
        if beside.exists() {
            Ok(beside)
        } else {
            bail!(
                "no server binary at {}: build it (`cargo build --release -p boxoffice`) or set \
                 BOXOFFICE_BIN",
                beside.display()
            )
        }
    }
}
