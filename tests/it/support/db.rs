//! A database of the test's own: a SQLite file, or a PostgreSQL database created and dropped.
use super::*;

/// A database that lives as long as the test.
pub enum TestDb {
    /// Owned by another `TestApp` (a peer instance on the same database).
    Shared,
    /// The file's directory, removed when the test ends.
    Sqlite {
        _dir: tempfile::TempDir,
    },
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
                (TestDb::Sqlite { _dir: dir }, url)
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
