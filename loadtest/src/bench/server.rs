//! The bench's servers (child processes of this binary), accounts and shows.
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde_json::json;

use crate::client::{Http, Reply};
use crate::target::Target;
use boxoffice::auth::token::Tokens;
use boxoffice::auth::Role;

/// A server child process of this binary.
pub(super) struct Server {
    child: tokio::process::Child,
    pub base: String,
    pid: u32,
}

impl Server {
    pub(super) async fn start(
        config: &Target,
        store: &str,
        prefix: &str,
        secret: &str,
        pool_size: Option<u32>,
        rate_limits: bool,
    ) -> anyhow::Result<Server> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let exe = config.server_bin()?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("serve")
            .env(
                "DATABASE_URL",
                config.database_url.as_deref().ok_or_else(|| {
                    anyhow!("the bench needs DATABASE_URL: its servers share that database")
                })?,
            )
            .env("HOLD_STORE", store)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", secret)
            .env("REDIS_KEY_PREFIX", prefix)
            .env("DEMO_DATA", "false")
            .env("HOLD_TTL_SECONDS", "600")
            .env("RUST_LOG", "warn")
            .env("READ_BUDGET_PER_SECOND", "0")
            // Every subscriber of the fan-out comes from this one address too.
            .env("WS_CONNECTIONS_PER_ADDRESS", "1000000")
            .env_remove("ADMIN_EMAIL")
            .env_remove("ADMIN_PASSWORD")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // The load comes from one address and a few accounts: abuse limits off, or (when the
        // run counts them) so high that they count every mutation and refuse none.
        let limit = if rate_limits { "1000000000" } else { "0" };
        cmd.env("RATE_LIMIT_USER_PER_MINUTE", limit)
            .env("RATE_LIMIT_IP_PER_MINUTE", limit);
        if let Some(n) = pool_size {
            cmd.env("DATABASE_POOL_SIZE", n.to_string());
        }
        match (&config.redis_url, store) {
            (Some(url), "redis") => cmd.env("REDIS_URL", url),
            _ => cmd.env_remove("REDIS_URL"),
        };
        let child = cmd.spawn().context("cannot start a server process")?;
        let pid = child.id().ok_or_else(|| anyhow!("server exited at once"))?;
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            pid,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut http = Http::new(&server.base)?;
        http.timeout = Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Reply::Data(_)) = http.gql(None, "{ __typename }", json!({})).await {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the {store} server did not come up within 60 s")
    }

    /// User + system CPU seconds of the server so far.
    pub(super) fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.pid)
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    pub(super) fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    pub(super) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Accounts and tokens for the load: inserted straight into the database (no argon2 — the
/// benchmark measures holds, not log-ins), tokens signed with the servers' secret.
pub(super) struct People {
    pub admin: String,
    pub users: Vec<String>,
}

pub(super) async fn people(
    db: &DatabaseConnection,
    tokens: &Tokens,
    n: usize,
) -> anyhow::Result<People> {
    let tag = format!("bench-{:x}", rand::random::<u32>());
    let mut rows: Vec<entity::user::ActiveModel> = (0..n)
        .map(|i| entity::user::ActiveModel {
            email: Set(format!("{tag}-{i}@bench.test")),
            password_hash: Set("!".into()),
            name: Set(None),
            role: Set(Role::Customer),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        })
        .collect();
    rows.push(entity::user::ActiveModel {
        email: Set(format!("{tag}-admin@bench.test")),
        password_hash: Set("!".into()),
        name: Set(None),
        role: Set(Role::Admin),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    });
    for chunk in rows.chunks(500) {
        entity::user::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    let mut users = Vec::with_capacity(n);
    let mut admin = None;
    for u in entity::user::Entity::find()
        .filter(entity::user::Column::Email.like(format!("{tag}-%")))
        .all(db)
        .await?
    {
        if u.role == Role::Admin {
            admin = Some(tokens.issue(u.id, Role::Admin)?);
        } else {
            users.push(tokens.issue(u.id, Role::Customer)?);
        }
    }
    Ok(People {
        admin: admin.ok_or_else(|| anyhow!("admin account missing"))?,
        users,
    })
}

/// A screen of `seats` seats and `shows` shows on it (a day apart), created through the API.
pub(super) async fn shows(
    base: &str,
    admin: &str,
    seats: u64,
    shows: usize,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut http = Http::new(base)?;
    let screen = crate::simulate::create_screen_as(&mut http, admin, seats).await?;
    let mut out = Vec::new();
    for day in 0..shows {
        let id = crate::simulate::create_show_on(&mut http, admin, &screen, day as i64 + 1).await?;
        let map = http
            .gql(
                None,
                "query($id: ID!) { show(id: $id) { seats { id } } }",
                json!({ "id": id }),
            )
            .await?
            .data()?;
        let seat_ids = map["show"]["seats"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push((id, seat_ids));
    }
    Ok(out)
}

/// A `/proc/<pid>/stat` line's process name and its CPU clock ticks: utime, stime, and what its
/// exited children used (cutime, cstime) — fields 14–17, the 12th to 15th after the name.
fn stat_ticks(stat: &str) -> Option<(&str, [f64; 4])> {
    let (head, after) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let mut f = after.split_whitespace().skip(11);
    let mut next = || f.next()?.parse::<f64>().ok();
    Some((name, [next()?, next()?, next()?, next()?]))
}

/// User + system CPU seconds of process `pid` so far (`/proc/<pid>/stat`, in clock ticks).
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, [user, system, ..]) = stat_ticks(&stat)?;
    Some((user + system) / clock_ticks()? as f64)
}

/// CPU seconds so far of every process whose name is one of `names`, summed per name, with what
/// their exited children used (a PostgreSQL backend that ends is counted in the postmaster's).
pub(super) fn cpu_of_named<const N: usize>(names: &[&str; N]) -> [f64; N] {
    let mut sums = [0.0; N];
    let (Some(ticks), Ok(dir)) = (clock_ticks(), std::fs::read_dir("/proc")) else {
        return sums;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((name, used)) = stat_ticks(&stat) else {
            continue;
        };
        let Some(slot) = names.iter().position(|n| *n == name) else {
            continue;
        };
        sums[slot] += used.iter().sum::<f64>() / ticks as f64;
    }
    sums
}

/// The whole machine's busy CPU seconds so far: every state of `/proc/stat`'s `cpu` line but
/// idle and iowait.
pub(super) fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let busy: f64 = v.iter().take(8).sum::<f64>() - v.get(3)? - v.get(4)?;
    Some(busy / clock_ticks()? as f64)
}

/// The kernel's clock ticks per second (`AT_CLKTCK` in this process's auxiliary vector, what
/// `sysconf(_SC_CLK_TCK)` reads), instead of assuming 100.
pub(super) fn clock_ticks() -> Option<u64> {
    static TICKS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        const AT_CLKTCK: u64 = 17;
        let auxv = std::fs::read("/proc/self/auxv").ok()?;
        auxv.chunks_exact(16).find_map(|pair| {
            let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
            let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
            (key == AT_CLKTCK && value > 0).then_some(value)
        })
    })
}
