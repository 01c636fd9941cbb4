//! New holds, the extensions that keep holds through their payments, and the mirrors of new
//! bookings go to Redis in batches: one script call per show for every request of the kind that
//! is waiting for it at the same moment. In an on-sale every buyer holds seats of the same show
//! at once, and a call's fixed cost in Redis — the `EVALSHA` with its eleven keys, the shared
//! prelude, reading the show's meta, the expiry pass, the version bump, the event — was most of
//! a hold's work (callgrind, `scripts/script-instructions.sh`: 198,474 instructions for a
//! one-seat hold; with `hold.lua` taking a list, 121,175 per hold in calls of four and 97,965 in
//! calls of sixteen). Checkouts are admitted together, so their extensions (`extend.lua`) arrive
//! together; group commit confirms bookings together, so their mirrors (`book.lua`) arrive
//! together too.
//!
//! The requests of a call are decided one after another, exactly as separate calls would decide
//! them, in one atomic step that bumps the show's version once and publishes one event for all
//! the seats that changed (`hold.lua`, `book.lua`; an extension changes no seat, so
//! `extend.lua` bumps nothing).
//!
//! How: requests queue on one channel per script; each of a few workers takes the first waiting
//! and every other waiting once the tasks ready at that moment have run (`group_commit::Gather`,
//! up to a bounded batch), sends one call
//! per show — all at once, so a cluster routes each to its slot — and answers each request. While
//! a batch is in flight the next requests gather for the next worker. Nobody waits for a batch to
//! fill: under light load a batch is one request, sent as before. A request whose caller has gone
//! (a cancelled request) before its batch is sent is not sent: for a hold, nobody would learn it
//! was granted, and its seats would stay blocked until it expired. A request waits at most for the
//! batches ahead of it, each bounded by the store's response timeout, and the API's per-field
//! deadline (`graphql/deadline.rs`) cancels it past its budget.
use redis::Script;
use tokio::sync::{mpsc, oneshot};

use super::{Call, Calls};
use crate::group_commit::{gather, Gather};
use crate::holds::store::StoreError;

/// Batches in flight at once, per script: one is sent while the next gathers.
const WORKERS: usize = 2;

/// The most requests in one batch, and the most script arguments (a few per request plus its
/// seats): a script runs alone in Redis, so one call must stay short.
const MAX_REQUESTS: usize = 64;
const MAX_ARGS: usize = 1024;

/// One request's part of the script's arguments (for `hold.lua`: hold id, user id, ttl, max
/// holds, seat count, seats) and where its reply goes.
struct Job {
    show_id: i64,
    args: Vec<String>,
    reply: oneshot::Sender<Result<Vec<String>, StoreError>>,
}

/// The queue in front of one script's workers.
pub(super) struct Batches {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Batches {
    /// Start the workers of a script that takes a list of requests (called within the runtime);
    /// `name` labels its batch sizes in the metrics.
    pub(super) fn start(calls: Calls, script: Script, name: &'static str) -> Self {
        let (jobs, queue) = gather();
        for _ in 0..WORKERS {
            tokio::spawn(worker(calls.clone(), script.clone(), name, queue.clone()));
        }
        Batches { jobs }
    }

    /// Send one request (its part of the script's arguments) with whatever else is waiting; its
    /// own reply, as the script gives it.
    pub(super) async fn call(
        &self,
        show_id: i64,
        args: Vec<String>,
    ) -> Result<Vec<String>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                show_id,
                args,
                reply,
            })
            .map_err(|_| StoreError::Internal("the batch workers have stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("a batch worker dropped a request".into()))?
    }
}

async fn worker(calls: Calls, script: Script, name: &'static str, queue: Gather<Job>) {
    loop {
        let (mut requests, mut args) = (0, 0);
        let Some(jobs) = queue
            .next(|job| {
                requests += 1;
                args += job.args.len();
                requests < MAX_REQUESTS && args < MAX_ARGS
            })
            .await
        else {
            return;
        };
        // Per show, in the order they arrived.
        let mut shows: Vec<(i64, Vec<Job>)> = Vec::new();
        for job in jobs {
            if job.reply.is_closed() {
                continue;
            }
            match shows.iter_mut().find(|(id, _)| *id == job.show_id) {
                Some((_, batch)) => batch.push(job),
                None => shows.push((job.show_id, vec![job])),
            }
        }
        let sends = shows.into_iter().map(|(show_id, batch)| {
            metrics::histogram!("script_batch_size", "script" => name).record(batch.len() as f64);
            send(&calls, &script, name, show_id, batch)
        });
        futures_util::future::join_all(sends).await;
    }
}

/// One call for a show's batch; each request gets its reply (or the call's error).
async fn send(calls: &Calls, script: &Script, name: &str, show_id: i64, batch: Vec<Job>) {
    let mut cmd = calls.eval(script, show_id);
    for job in &batch {
        cmd.arg(&job.args);
    }
    let replies = match calls
        .query_script::<Vec<Vec<String>>>(script, Call::One(&cmd))
        .await
    {
        Ok(replies) if replies.len() == batch.len() => replies.into_iter().map(Ok).collect(),
        Ok(replies) => {
            let e = StoreError::Internal(format!(
                "{name} script: {} replies for {} requests",
                replies.len(),
                batch.len()
            ));
            vec![Err(e); batch.len()]
        }
        Err(e) => vec![Err(e); batch.len()],
    };
    for (job, reply) in batch.into_iter().zip(replies) {
        let _ = job.reply.send(reply);
    }
}
