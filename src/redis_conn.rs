//! One Redis connection type for a single node and for Redis Cluster.
//!
//! `REDIS_URL=redis://host:port` is a single node (a reconnecting `ConnectionManager`);
//! `REDIS_URL=redis+cluster://host:port,host:port,…` names seed nodes of a Redis Cluster (the
//! redis crate's own cluster client: it discovers the slot map, routes each command by its key's
//! slot, follows MOVED/ASK and reconnects after a failover). Everything above this module talks
//! to a [`RedisConn`] and only asks [`RedisConn::is_cluster`] where a cluster needs something a
//! single node does not (one slot per pipeline, sharded pub/sub).
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where Redis is: one node, or the seed nodes of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// Parse `REDIS_URL`: `redis://…`/`rediss://…` (one node) or `redis+cluster://[user:pass@]
    /// host:port[,host:port…][/]` (`rediss+cluster://` for TLS) — every listed node a seed.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err("REDIS_URL must look like redis://host:port".into());
        };
        let node_scheme = match scheme {
            "redis" | "rediss" => {
                url::Url::parse(url).map_err(|e| format!("REDIS_URL is not a valid URL: {e}"))?;
                return Ok(RedisTarget::Single(url.to_string()));
            }
            "redis+cluster" => "redis",
            "rediss+cluster" => "rediss",
            other => {
                return Err(format!(
                    "REDIS_URL must use redis://, rediss:// or redis+cluster://, not {other}://"
                ))
            }
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut nodes = Vec::new();
        for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let node = match userinfo {
                Some(u) => format!("{node_scheme}://{u}@{host}"),
                None => format!("{node_scheme}://{host}"),
            };
            url::Url::parse(&node)
                .map_err(|e| format!("REDIS_URL: cluster node {host:?} is not valid: {e}"))?;
            nodes.push(node);
        }
        if nodes.is_empty() {
            return Err("REDIS_URL names no cluster node (redis+cluster://host:port,…)".into());
        }
        Ok(RedisTarget::Cluster(nodes))
    }
}

/// A connection to Redis, single node or cluster. Cheap to clone (both sides multiplex one
/// connection per node); reconnects by itself.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(Renewing),
}

/// A cluster connection that starts afresh from the seed nodes when commands keep failing.
///
/// The redis crate's cluster client refreshes its slot map on MOVED and on a lost connection,
/// but not later: if it refreshed while the cluster still named the dead master (before a replica
/// was promoted), commands for that master's slots time out for good (redis-rs issue #1005
/// describes the same on AWS). So: a command that fails for a connection reason, at least
/// `RENEW_AFTER` after the connection was made, replaces it with a new one, which reads the slot
/// map again — at most one new connection per `RENEW_AFTER`.
#[derive(Clone)]
pub struct Renewing(Arc<RenewingInner>);

struct RenewingInner {
    client: ClusterClient,
    timeout: Duration,
    current: Mutex<(ClusterConnection, Instant)>,
}

const RENEW_AFTER: Duration = Duration::from_secs(1);

impl Renewing {
    fn new(client: ClusterClient, timeout: Duration) -> Renewing {
        let conn = Self::open(&client, timeout);
        Renewing(Arc::new(RenewingInner {
            client,
            timeout,
            current: Mutex::new((conn, Instant::now())),
        }))
    }

    fn open(client: &ClusterClient, timeout: Duration) -> ClusterConnection {
        client.get_pending_async_connection_with_config(
            redis::cluster::ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout),
        )
    }

    fn conn(&self) -> ClusterConnection {
        match self.0.current.lock() {
            Ok(g) => g.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        }
    }

    /// After a failed command: a fresh connection (and slot map) if this one is old enough.
    fn failed(&self, e: &redis::RedisError) {
        if !connection_trouble(e) {
            return;
        }
        let mut g = match self.0.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.1.elapsed() >= RENEW_AFTER {
            tracing::warn!(error = %e, "Redis Cluster: commands failing; reconnecting from the seed nodes");
            *g = (Self::open(&self.0.client, self.0.timeout), Instant::now());
        }
    }
}

/// A command failed because of where it was sent, not what it asked: the connection broke or
/// timed out, or the cluster is moving (failing over, resharding) — a fresh slot map may help.
pub fn connection_trouble(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_cluster_error()
        || matches!(
            e.code(),
            Some("CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" | "READONLY")
        )
}

impl RedisConn {
    /// Connect lazily: a Redis that is down at start-up is connected to on first use (commands
    /// fail with I/O errors meanwhile), so the server starts and says so in `/readyz`.
    pub fn connect(
        target: &RedisTarget,
        timeout: Duration,
        retries: usize,
    ) -> anyhow::Result<Self> {
        Ok(match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(timeout))
                    .set_connection_timeout(Some(timeout))
                    .set_number_of_retries(retries);
                RedisConn::Single(
                    ConnectionManager::new_lazy_with_config(client, config)
                        .map_err(|e| anyhow::anyhow!("bad REDIS_URL: {e}"))?,
                )
            }
            RedisTarget::Cluster(nodes) => RedisConn::Cluster(Renewing::new(
                cluster_builder(nodes, timeout).build()?,
                timeout,
            )),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }

    /// `CONFIG GET maxmemory-policy` on every master (one on a single node): the policies in use,
    /// or `None` when the server refuses `CONFIG` (some managed services rename it).
    pub async fn eviction_policies(&self) -> Option<Vec<String>> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let reply: Value = match self {
            RedisConn::Single(c) => cmd.query_async(&mut c.clone()).await.ok()?,
            RedisConn::Cluster(c) => c
                .conn()
                .route_command(
                    cmd,
                    redis::cluster_routing::RoutingInfo::MultiNode((
                        redis::cluster_routing::MultipleNodeRoutingInfo::AllMasters,
                        None,
                    )),
                )
                .await
                .ok()?,
        };
        let mut out = Vec::new();
        collect_policies(&reply, &mut out);
        (!out.is_empty()).then_some(out)
    }
}

/// The values after each `maxmemory-policy` key in a (possibly per-node, nested) reply.
fn collect_policies(v: &Value, out: &mut Vec<String>) {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match v {
        Value::Array(items) | Value::Set(items) => {
            let mut it = items.iter().peekable();
            while let Some(item) = it.next() {
                if text(item).as_deref() == Some("maxmemory-policy") {
                    if let Some(p) = it.next().and_then(text) {
                        out.push(p);
                    }
                } else {
                    collect_policies(item, out);
                }
            }
        }
        Value::Map(pairs) => {
            for (k, val) in pairs {
                if text(k).as_deref() == Some("maxmemory-policy") {
                    out.extend(text(val));
                } else {
                    collect_policies(val, out);
                }
            }
        }
        _ => {}
    }
}

/// The cluster client's settings shared by the command connection and the live feed's.
pub fn cluster_builder(nodes: &[String], timeout: Duration) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(3)
}

/// The maxmemory policies under which Redis never drops a key of ours: anything else may evict
/// a show's booked-seat cache (every per-show key has a lifetime, so `volatile-*` can too).
pub const SAFE_EVICTION_POLICIES: &[&str] = &["noeviction"];

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(r) => Box::pin(async move {
                let mut c = r.conn();
                let out = c.req_packed_command(cmd).await;
                if let Err(e) = &out {
                    r.failed(e);
                }
                out
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(r) => Box::pin(async move {
                let mut c = r.conn();
                let out = c.req_packed_commands(pipeline, offset, count).await;
                if let Err(e) = &out {
                    r.failed(e);
                }
                out
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(r) => r.conn().get_db(),
        }
    }
}

/// The cluster slot of a key (CRC16/XMODEM of its hash tag, or of the whole key, mod 16384).
pub fn slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let tagged = b
        .iter()
        .position(|&c| c == b'{')
        .and_then(|open| {
            let close = b[open + 1..].iter().position(|&c| c == b'}')?;
            (close > 0).then(|| &b[open + 1..open + 1 + close])
        })
        .unwrap_or(b);
    crc16(tagged) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_spec() {
        // The Redis Cluster specification's CRC16 check value, and its hash-tag rules.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
    }

    #[test]
    fn redis_urls_name_a_node_or_a_cluster() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379"),
            Ok(RedisTarget::Single("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"),
            Ok(RedisTarget::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001".into()
            ]))
        );
        assert_eq!(
            RedisTarget::parse("rediss+cluster://u:p@a:1,b:2"),
            Ok(RedisTarget::Cluster(vec![
                "rediss://u:p@a:1".into(),
                "rediss://u:p@b:2".into()
            ]))
        );
        for bad in [
            "",
            "127.0.0.1:6379",
            "http://x",
            "redis+cluster://",
            "redis+cluster://,",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad:?}");
        }
    }
}
