//! Redis for tests: the machine's (checked), or a private server on a free port.
use std::time::Duration;

use super::*;

/// Panic (fail the test) when Redis does not answer PING (a node, or a cluster's).
pub async fn require_redis() {
    let url = redis_url();
    let ok = async {
        let target = boxoffice::redis_conn::RedisTarget::parse(&url).ok()?;
        let mut conn =
            boxoffice::redis_conn::RedisConn::connect(&target, Duration::from_secs(3), 1).ok()?;
        tokio::time::timeout(
            Duration::from_secs(5),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .ok()?
        .ok()
    }
    .await;
    assert!(
        ok.is_some(),
        "Redis is unreachable at {url}. Start it (scripts/test.sh does) or set BOXOFFICE_TEST_EMBEDDED_ONLY=1 to skip the PostgreSQL/Redis tests"
    );
}

/// A connection to the suite's Redis (`TEST_REDIS_URL`: a node, or a cluster).
pub fn redis_conn() -> boxoffice::redis_conn::RedisConn {
    let target = boxoffice::redis_conn::RedisTarget::parse(&redis_url()).expect("TEST_REDIS_URL");
    boxoffice::redis_conn::RedisConn::connect(&target, Duration::from_secs(5), 2)
        .expect("redis connection")
}

/// The hold store on the test Redis, straight (no server), under a fresh key prefix named for
/// `tag`, over a migrated in-memory SQLite database (its booked seats, shows and queue settings),
/// which is returned too.
pub async fn redis_store(
    tag: &str,
) -> (
    boxoffice::holds::redis::RedisStore,
    sea_orm::DatabaseConnection,
) {
    use migration::MigratorTrait;
    let db = sea_orm::Database::connect("sqlite::memory:")
        .await
        .expect("sqlite");
    migration::Migrator::up(&db, None).await.expect("migrate");
    let url = redis_url();
    let settings =
        boxoffice::holds::StoreSettings::redis(&url, &unique(tag), Duration::from_secs(5));
    let store = boxoffice::holds::redis::RedisStore::connect(&url, &settings, db.clone())
        .await
        .expect("redis store");
    (store, db)
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

/// A Redis Cluster of the test's own: 3 masters + 3 replicas on free loopback ports, formed with
/// `redis-cli --cluster create` — for tests that kill a master.
pub struct PrivateCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<std::process::Child>>,
    dir: std::path::PathBuf,
}

impl PrivateCluster {
    pub async fn start() -> PrivateCluster {
        let dir = std::env::temp_dir().join(unique("cluster"));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        // Each node's port and its cluster bus port, all free and distinct (the listeners are
        // held until every port is chosen). The bus is given its own port: Redis's default, the
        // port + 10,000, may be taken by another connection, or past 65,535 for a port the
        // kernel hands out from its ephemeral range.
        let listeners: Vec<std::net::TcpListener> = (0..12)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
            .collect();
        let free: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        drop(listeners);
        let (ports, buses) = free.split_at(6);
        let ports = ports.to_vec();
        let children = ports
            .iter()
            .zip(buses)
            .map(|(p, bus)| {
                Some(
                    std::process::Command::new("redis-server")
                        .args([
                            "--port",
                            &p.to_string(),
                            "--cluster-port",
                            &bus.to_string(),
                            "--bind",
                            "127.0.0.1",
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            &format!("nodes-{p}.conf"),
                            "--cluster-node-timeout",
                            "2000",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--maxmemory-policy",
                            "noeviction",
                            // Replicas sync at once (the default waits 5 s for more replicas):
                            // a replica that never synced is never promoted.
                            "--repl-diskless-sync-delay",
                            "0",
                        ])
                        .current_dir(&dir)
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .expect("redis-server must be installed (scripts/test.sh installs it)"),
                )
            })
            .collect();
        let cluster = PrivateCluster {
            ports,
            children,
            dir,
        };
        for p in &cluster.ports {
            cluster.wait_ping(*p).await;
        }
        let mut create = std::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in &cluster.ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for _ in 0..200 {
            if cluster.formed().await {
                return cluster;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the private cluster did not reach cluster_state:ok");
    }

    async fn wait_ping(&self, port: u16) {
        for _ in 0..100 {
            if node_cmd(port, &["PING"]).await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {port} did not start");
    }

    /// Every live node says the cluster is OK, and every replica is in sync with its master.
    pub async fn formed(&self) -> bool {
        for (i, p) in self.ports.iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
            match node_cmd(*p, &["CLUSTER", "INFO"]).await {
                Some(info) if info.contains("cluster_state:ok") => {}
                _ => return false,
            }
            match node_cmd(*p, &["INFO", "replication"]).await {
                Some(info)
                    if info.contains("role:master") || info.contains("master_link_status:up") => {}
                _ => return false,
            }
        }
        true
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The port of the live master that serves `key`'s slot.
    pub async fn master_of(&self, key: &str) -> u16 {
        let slot = boxoffice::redis_conn::slot(key);
        for _ in 0..100 {
            for (i, p) in self.ports.iter().enumerate() {
                if self.children[i].is_none() {
                    continue;
                }
                let Some(nodes) = node_cmd(*p, &["CLUSTER", "NODES"]).await else {
                    continue;
                };
                for line in nodes.lines() {
                    let f: Vec<&str> = line.split(' ').collect();
                    if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                        continue;
                    }
                    let serves = f[8..].iter().any(|r| match r.split_once('-') {
                        Some((a, b)) => {
                            a.parse::<u16>().is_ok_and(|a| a <= slot)
                                && b.parse::<u16>().is_ok_and(|b| slot <= b)
                        }
                        None => r.parse::<u16>().is_ok_and(|x| x == slot),
                    });
                    let port = f[1]
                        .split('@')
                        .next()
                        .and_then(|a| a.rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok());
                    if let (true, Some(port)) = (serves, port) {
                        if self
                            .ports
                            .iter()
                            .position(|x| *x == port)
                            .is_some_and(|j| self.children[j].is_some())
                        {
                            return port;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no live master serves slot {slot}");
    }

    /// SIGKILL the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let i = self
            .ports
            .iter()
            .position(|p| *p == port)
            .expect("a node of the cluster");
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Keys and commands processed by each live master: `(port, keys, commands)`.
    pub async fn masters(&self) -> Vec<(u16, u64, u64)> {
        let mut out = Vec::new();
        for (i, p) in self.ports.iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
            let Some(info) = node_cmd(*p, &["INFO"]).await else {
                continue;
            };
            if !info.contains("role:master") {
                continue;
            }
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let keys = info
                .lines()
                .find_map(|l| l.strip_prefix("db0:keys="))
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            out.push((*p, keys, field("total_commands_processed:")));
        }
        out
    }
}

/// One command to one node (no cluster routing); its reply as text, `None` when it fails.
pub async fn node_cmd(port: u16, args: &[&str]) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}").as_str()).ok()?;
    let mut c = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let v: redis::Value = tokio::time::timeout(Duration::from_secs(2), cmd.query_async(&mut c))
        .await
        .ok()?
        .ok()?;
    Some(match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::SimpleString(s) => s,
        redis::Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    })
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
