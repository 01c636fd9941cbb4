//! The real `boxoffice` binary as a child process.
use std::time::Duration;

use super::*;

/// The real `boxoffice` binary as a child process (for crash and multi-instance tests).
pub struct ServerProcess {
    pub api: Api,
    child: std::process::Child,
    /// Its stderr (logs): a panic or an ERROR line there fails the test.
    log: tempfile::NamedTempFile,
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
            .stdout(std::process::Stdio::null())
            // Every client of a test (the simulator's thousands too) comes from 127.0.0.1.
            .env("READ_BUDGET_PER_SECOND", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = tempfile::NamedTempFile::new().expect("log file");
        cmd.stderr(log.reopen().expect("log file"));
        let child = cmd.spawn().expect("spawn boxoffice");
        let server = ServerProcess {
            api: Api::new(format!("http://127.0.0.1:{port}")),
            child,
            log,
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
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let faults: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("panicked") || l.contains(" ERROR ") || l.contains("\"level\":\"ERROR\"")
            })
            .collect();
        if !faults.is_empty() && !std::thread::panicking() {
            panic!(
                "the server process logged errors or panicked:\n{}",
                faults.join("\n")
            );
        }
        if !log.is_empty() {
            eprintln!("--- server log\n{log}");
        }
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

/// The `loadtest` binary (the simulator), built beside `boxoffice` by `cargo build --workspace`
/// (scripts/test.sh builds it before the suite runs).
pub fn loadtest_bin() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_boxoffice"))
        .with_file_name(format!("loadtest{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build --workspace` first (scripts/test.sh does)",
                bin.display()
            )
        });
    // `cargo test`/`nextest` build test targets, not this binary: refuse a stale one rather
    // than test old code.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest = ["loadtest/src", "src", "entity/src", "migration/src"]
        .iter()
        .filter_map(|d| newest_file(&root.join(d)))
        .max();
    if let Some(newest) = newest {
        assert!(
            newest <= built,
            "{} is older than its sources: run `cargo build --workspace` (scripts/test.sh does)",
            bin.display()
        );
    }
    bin
}

/// A `loadtest` command with a clean environment (only `PATH`, and warnings-only logs): each test
/// gives it exactly the settings it means.
pub fn loadtest_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(loadtest_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    cmd
}

/// The latest modification time of any file below `dir`.
fn newest_file(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_file(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}
