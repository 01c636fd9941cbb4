//! Commands besides `serve`: `migrate`, `export-schema` (and the simulator and benchmarks).
pub mod audit;
pub mod bench;
pub mod client;
pub mod report;
pub mod simulate;

use std::path::Path;

use anyhow::Context;

use crate::config::Config;

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let (db, _) = crate::db::connect(&config.database_url, config.dependency_timeout())
        .await
        .with_context(|| {
            format!(
                "cannot connect to DATABASE_URL ({})",
                crate::app::redact(&config.database_url)
            )
        })?;
    crate::db::migrate(&db).await.context("migration failed")?;
    println!("migrations applied");
    Ok(())
}

pub fn export_schema(output: Option<&Path>) -> anyhow::Result<()> {
    let sdl = crate::graphql::sdl();
    match output {
        Some(path) => {
            std::fs::write(path, sdl).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            print!("{sdl}");
            Ok(())
        }
    }
}
