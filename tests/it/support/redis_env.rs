//! Redis for tests: the machine's (checked), or a private server on a free port.
use std::time::Duration;

use super::*;

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
