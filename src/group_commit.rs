//! Group commit. Writes that reach the same durable step at the same moment — a checkout's PENDING
//! intent, its confirmation, the mock gateway's ledger row — are written together: one statement
//! and one commit for every one that is waiting, instead of a statement and a commit each. On PostgreSQL a commit's fixed cost
//! (a round trip, a WAL flush, a backend woken per client) is most of a booking's database work;
//! shared by a group it nearly vanishes, and the rows are what remains.
//!
//! How: requests queue on a channel; a writer takes the first that arrives, lets the tasks that are
//! ready to run at that moment run (some are about to join), then takes every other waiting (up to
//! `max`), writes them in one statement, and answers each. While it writes, the next requests
//! gather for the next writer (`writers` groups can be in flight at once). Nobody waits for a
//! group to fill: no timer, and under light load a group is one request, written by the same
//! statement.
//!
//! A group is all or nothing, as one statement is. When it fails — usually one member's conflict
//! (its key replayed, its seats taken), sometimes a deadlock between groups — every member is
//! written again **alone**, so each gets exactly the answer it would have had without grouping.
//! The same happens when a group holds one item twice (the same booking settled by two callers at
//! once), which one statement could not answer separately.
//!
//! Each writer keeps one connection of the pool from one group to the next (`Lane`, PostgreSQL).
//! A pooled connection is pinged when it leaves the pool and again when it comes back — two round
//! trips beside the group's one statement, each waking a backend. A statement that fails on the
//! writer's own connection for any reason but a refusal the group expects (a conflict: SQLSTATE
//! class 23 or 40) lets the connection go, and the group is written again alone through the pool,
//! whose connections are tested before use; the writer takes a fresh one for its next group. A
//! writer keeps its connection only while more than a quarter of the pool is free.
//!
//! The gathering itself (`Gather`) also serves reads that many requests make at once
//! (`holds::shared_counts`).
use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;

use sea_orm::sqlx::{self, pool::PoolConnection, Postgres};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, RuntimeErr, Statement,
    Value,
};
use tokio::sync::{mpsc, oneshot, Mutex};

/// A boxed write.
pub type Write<'a, T> = Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 'a>>;

/// How a step is written: a whole group in one statement (an answer per item, in order; on the
/// writer's own connection, its `Lane`), or one item alone; and what makes two items the same (a
/// group holding one twice is written alone).
pub struct Step<C, Q, A, K> {
    pub name: &'static str,
    pub many: for<'a> fn(&'a C, &'a mut Lane, &'a [Q]) -> Write<'a, Vec<A>>,
    pub one: for<'a> fn(&'a C, &'a Q) -> Write<'a, A>,
    pub identity: fn(&Q) -> K,
}

type Job<Q, A> = (Q, oneshot::Sender<Result<A, DbErr>>);

/// A writer's own connection of the pool, kept from one group to the next (PostgreSQL; taken when
/// the writer first needs it, given back when the pool runs short).
#[derive(Default)]
pub struct Lane {
    conn: Option<PoolConnection<Postgres>>,
}

/// Run `sql` with text parameters (`$1`, `$2`, …): on `lane`'s connection when there is a lane
/// and the database is PostgreSQL, else through `db`'s pool. Its rows.
pub async fn query(
    db: &DatabaseConnection,
    lane: Option<&mut Lane>,
    sql: &'static str,
    params: Vec<String>,
) -> Result<Vec<QueryResult>, DbErr> {
    let backend = db.get_database_backend();
    let Some(lane) = lane.filter(|_| backend == DbBackend::Postgres) else {
        let values: Vec<Value> = params.into_iter().map(Value::from).collect();
        return db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await;
    };
    let failed = |e: sqlx::Error| DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)));
    let pool = db.get_postgres_connection_pool();
    let conn = match &mut lane.conn {
        Some(conn) => conn,
        None => lane.conn.insert(pool.acquire().await.map_err(failed)?),
    };
    let mut statement = sqlx::query(sql);
    for p in params {
        statement = statement.bind(p);
    }
    let started = std::time::Instant::now();
    let rows = statement.fetch_all(&mut **conn).await;
    crate::db::statement_done(sql, started.elapsed(), rows.is_err());
    match rows {
        Ok(rows) => {
            // Kept only while the pool has more than a quarter of its connections free (opened
            // and idle, or not yet opened): under pressure it goes back, so the writers never
            // keep from the rest of the service what it is waiting for.
            let max = pool.options().get_max_connections();
            let free = max.saturating_sub(pool.size()) as usize + pool.num_idle();
            if free <= max as usize / 4 {
                lane.conn = None;
            }
            Ok(rows.into_iter().map(QueryResult::from).collect())
        }
        Err(e) => {
            // A refusal the group expects — an integrity violation (class 23: a key replayed, a
            // seat taken) or a conflict with another transaction (class 40) — leaves the
            // connection as good as it was. Anything else lets it go (it broke; or the server
            // ended it, which arrives as an error of class 57 or 08): back to the pool, which
            // tests it on the way and drops it if dead.
            let sqlstate = e.as_database_error().and_then(|d| d.code());
            if !matches!(
                sqlstate.as_deref().map(|c| c.get(..2)),
                Some(Some("23" | "40"))
            ) {
                lane.conn = None;
            }
            Err(failed(e))
        }
    }
}

/// Jobs waiting for a few workers, each of which takes the first to arrive and then every other
/// already waiting, for as long as the batch has room.
pub struct Gather<J> {
    queue: Arc<Mutex<mpsc::UnboundedReceiver<J>>>,
}

impl<J> Clone for Gather<J> {
    fn clone(&self) -> Self {
        Gather {
            queue: self.queue.clone(),
        }
    }
}

/// A queue: the senders' end, and the end its workers gather from.
pub fn gather<J>() -> (mpsc::UnboundedSender<J>, Gather<J>) {
    let (jobs, queue) = mpsc::unbounded_channel();
    let queue = Arc::new(Mutex::new(queue));
    (jobs, Gather { queue })
}

impl<J> Gather<J> {
    /// The next batch: the first job (waiting for it), then every other queued by the time the
    /// tasks that were ready to run alongside it have run, while `room` — told of each job as it
    /// joins — says more may follow. `None` once every sender is gone. Nobody waits for a batch
    /// to fill (no timer), and the queue is let go before the batch is worked on, so the next
    /// jobs gather for the next worker meanwhile.
    pub async fn next(&self, mut room: impl FnMut(&J) -> bool) -> Option<Vec<J>> {
        let mut queue = self.queue.lock().await;
        let first = queue.recv().await?;
        // Step aside once, so that every task already ready to run runs before the batch is
        // closed: under load some of them are requests a step away from joining it (a checkout
        // whose intent is being built, a hold being parsed). Under light load nothing else is
        // ready and this costs one poll, no wait. With it, batches grew enough that a booking
        // cost the machine 547–566 µs instead of 775–787 (docs/BENCHMARKS.md, 2026-12-05).
        tokio::task::yield_now().await;
        let mut more = room(&first);
        let mut jobs = vec![first];
        while more {
            match queue.try_recv() {
                Ok(j) => {
                    more = room(&j);
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        Some(jobs)
    }
}

/// The queue in front of one step's writers.
pub struct Group<Q, A> {
    jobs: mpsc::UnboundedSender<Job<Q, A>>,
}

impl<Q: Send + Sync + 'static, A: Send + 'static> Group<Q, A> {
    /// Start `writers` writers of `step`, each writing groups of at most `max` (1: no grouping).
    pub fn start<C, K>(ctx: C, step: Step<C, Q, A, K>, writers: usize, max: usize) -> Self
    where
        C: Send + Sync + 'static,
        K: Eq + Hash + Send + 'static,
    {
        let (jobs, queue) = gather();
        let (ctx, step) = (Arc::new(ctx), Arc::new(step));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(ctx.clone(), step.clone(), queue.clone(), max.max(1)));
        }
        Group { jobs }
    }

    /// Write `item` with whatever else is waiting; its own answer.
    pub async fn write(&self, item: Q) -> Result<A, DbErr> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((item, reply))
            .map_err(|_| DbErr::Custom("the group writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| DbErr::Custom("the group writer dropped a write".into()))?
    }
}

async fn writer<C, Q, A, K>(
    ctx: Arc<C>,
    step: Arc<Step<C, Q, A, K>>,
    queue: Gather<Job<Q, A>>,
    max: usize,
) where
    K: Eq + Hash,
{
    let mut lane = Lane::default();
    loop {
        let mut size = 0;
        let Some(jobs) = queue
            .next(|_| {
                size += 1;
                size < max
            })
            .await
        else {
            return;
        };
        let (items, replies): (Vec<Q>, Vec<_>) = jobs.into_iter().unzip();
        metrics::histogram!("group_commit_size", "step" => step.name).record(items.len() as f64);
        // A group of one is written the same way, on the writer's connection: the pool's two
        // pings would cost more than its statement. Only `max` 1 (no grouping) writes alone.
        if max > 1 && distinct(&items, step.identity) {
            match (step.many)(&ctx, &mut lane, &items).await {
                Ok(answers) if answers.len() == items.len() => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                    continue;
                }
                Ok(_) => {
                    tracing::warn!(
                        step = step.name,
                        "a group write answered the wrong number of items; writing each alone"
                    );
                }
                Err(e) => {
                    tracing::debug!(step = step.name, error = %e, size = items.len(), "group write failed; writing each alone")
                }
            }
            metrics::counter!("group_commit_retried_alone_total", "step" => step.name).increment(1);
        }
        // Alone: each gets its own statement and its own answer (all at once: they are
        // independent, and a conflict between two of them is the database's to order).
        let answers =
            futures_util::future::join_all(items.iter().map(|q| (step.one)(&ctx, q))).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

fn distinct<Q, K: Eq + Hash>(items: &[Q], identity: fn(&Q) -> K) -> bool {
    let mut seen = HashSet::with_capacity(items.len());
    items.iter().all(|q| seen.insert(identity(q)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fake database: `many` fails when any item is odd (a conflict), else doubles each;
    /// `one` fails on odd items alone. Counts statements.
    #[derive(Default)]
    struct Fake {
        statements: AtomicUsize,
        grouped: AtomicUsize,
    }

    fn many<'a>(f: &'a Fake, _: &'a mut Lane, items: &'a [(u32, u32)]) -> Write<'a, Vec<u32>> {
        Box::pin(async move {
            f.statements.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if items.iter().any(|(_, v)| v % 2 == 1) {
                return Err(DbErr::Custom("conflict".into()));
            }
            f.grouped.fetch_add(items.len(), Ordering::SeqCst);
            Ok(items.iter().map(|(_, v)| v * 2).collect())
        })
    }

    fn one<'a>(f: &'a Fake, item: &'a (u32, u32)) -> Write<'a, u32> {
        Box::pin(async move {
            f.statements.fetch_add(1, Ordering::SeqCst);
            if item.1 % 2 == 1 {
                return Err(DbErr::Custom(format!("conflict of {}", item.1)));
            }
            Ok(item.1 * 2)
        })
    }

    fn step() -> Step<Arc<Fake>, (u32, u32), u32, u32> {
        Step {
            name: "test",
            many: |f, lane, items| many(f, lane, items),
            one: |f, item| one(f, item),
            identity: |q| q.0,
        }
    }

    async fn run(values: Vec<(u32, u32)>, max: usize) -> (Vec<Result<u32, String>>, Arc<Fake>) {
        let fake = Arc::new(Fake::default());
        let group = Arc::new(Group::start(fake.clone(), step(), 2, max));
        let tasks: Vec<_> = values
            .into_iter()
            .map(|v| {
                let g = group.clone();
                tokio::spawn(async move { g.write(v).await.map_err(|e| e.to_string()) })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.expect("writer task"));
        }
        (answers, fake)
    }

    #[tokio::test]
    async fn concurrent_writes_share_statements_and_each_gets_its_answer() {
        let values: Vec<(u32, u32)> = (0..200).map(|i| (i, i * 2)).collect();
        let (answers, fake) = run(values, 64).await;
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(a, &Ok(i as u32 * 4), "item {i}");
        }
        let statements = fake.statements.load(Ordering::SeqCst);
        assert!(
            statements < 200,
            "no grouping: {statements} statements for 200 writes"
        );
        assert!(
            fake.grouped.load(Ordering::SeqCst) > 0,
            "no group was written"
        );
    }

    #[tokio::test]
    async fn a_conflict_in_a_group_is_answered_alone_and_the_others_still_succeed() {
        // Every tenth value odd: its group fails; every member is written again alone.
        let values: Vec<(u32, u32)> = (0..100)
            .map(|i| (i, if i % 10 == 3 { 2 * i + 1 } else { 2 * i }))
            .collect();
        let (answers, _) = run(values.clone(), 64).await;
        for ((_, v), a) in values.iter().zip(&answers) {
            if v % 2 == 1 {
                assert_eq!(a, &Err(format!("Custom Error: conflict of {v}")));
            } else {
                assert_eq!(a, &Ok(v * 2));
            }
        }
    }

    #[tokio::test]
    async fn an_item_twice_in_a_group_is_written_alone() {
        // The same identity twice (the same booking settled by two callers): never one statement.
        let fake = Arc::new(Fake::default());
        let (tx, queue) = gather();
        let mut answers = Vec::new();
        for v in [(7, 2), (7, 4), (8, 6)] {
            let (reply, answer) = oneshot::channel();
            tx.send((v, reply)).expect("queue open");
            answers.push(answer);
        }
        drop(tx);
        // One writer, started after the three are queued: they form one group.
        writer(Arc::new(fake.clone()), Arc::new(step()), queue, 64).await;
        let mut got = Vec::new();
        for a in answers {
            got.push(a.await.expect("answered").map_err(|e| e.to_string()));
        }
        assert_eq!(got, vec![Ok(4), Ok(8), Ok(12)]);
        assert_eq!(
            fake.grouped.load(Ordering::SeqCst),
            0,
            "written as one group"
        );
        assert_eq!(fake.statements.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_lone_write_goes_by_the_group_statement_and_its_failure_alone() {
        // Even: one grouped statement. Odd: the group statement fails, then `one` answers.
        let (answers, fake) = run(vec![(1, 4)], 64).await;
        assert_eq!(answers, vec![Ok(8)]);
        assert_eq!(fake.grouped.load(Ordering::SeqCst), 1);
        assert_eq!(fake.statements.load(Ordering::SeqCst), 1);
        let (answers, fake) = run(vec![(1, 5)], 64).await;
        assert_eq!(
            answers,
            vec![Err("Custom Error: conflict of 5".to_string())]
        );
        assert_eq!(fake.statements.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn max_one_writes_every_item_alone() {
        let values: Vec<(u32, u32)> = (0..50).map(|i| (i, i * 2)).collect();
        let (answers, fake) = run(values, 1).await;
        assert!(answers.iter().all(|a| a.is_ok()));
        assert_eq!(fake.grouped.load(Ordering::SeqCst), 0);
        assert_eq!(fake.statements.load(Ordering::SeqCst), 50);
    }

    /// A job sent by a task that became ready only because the batch's first job was sent (it
    /// was woken after the worker) still joins that batch: the worker lets the ready tasks run
    /// before it closes the batch. On the current-thread runtime the order is exact: the worker
    /// is woken first, then the second sender; without the step aside the batch would be [1].
    #[tokio::test]
    async fn a_job_made_ready_by_the_first_joins_its_batch() {
        let (jobs, queue) = gather::<u32>();
        let worker = tokio::spawn(async move { queue.next(|_| true).await });
        tokio::task::yield_now().await; // the worker now waits for a first job
        let (go, gone) = oneshot::channel::<()>();
        let second = jobs.clone();
        let follower = tokio::spawn(async move {
            if gone.await.is_ok() {
                let _ = second.send(2);
            }
        });
        tokio::task::yield_now().await; // the follower now waits for its signal
        jobs.send(1).expect("queue open"); // wakes the worker
        let _ = go.send(()); // wakes the follower, after the worker
        follower.await.expect("follower");
        assert_eq!(worker.await.expect("worker"), Some(vec![1, 2]));
    }
}
