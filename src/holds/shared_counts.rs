//! Live counts read together. In an on-sale every buyer opens the same page of the show list at
//! once, and each page asks the store for the same twenty shows' counts: a transaction of about
//! eighty commands per request, most of whose cost (building the commands, parsing the replies,
//! the store's own time) is the same every time. Here the requests that are waiting at the same
//! moment share one read of the union of their shows.
//!
//! Read-your-writes is kept: a request is answered only by a read that **starts after it
//! arrived**, so a hold or a booking that completed before the request is in its answer. Nobody
//! waits for a batch to fill — under light load a read serves one request, as before — and a
//! request never waits behind more than the read in flight plus its own.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::store::{LiveCounts, StoreError};
use crate::group_commit::{gather, Gather};

/// Shows read in one go at most (a page is at most `SHOWS_MAX_PAGE`; several pages share).
const MAX_SHOWS_PER_READ: usize = 400;

type Counts = HashMap<i64, LiveCounts>;
/// One read of the store (`HoldStore::counts`).
pub(super) type Read = Arc<
    dyn Fn(Vec<i64>) -> Pin<Box<dyn Future<Output = Result<Counts, StoreError>> + Send>>
        + Send
        + Sync,
>;
type Job = (Vec<i64>, oneshot::Sender<Result<Arc<Counts>, StoreError>>);

/// The queue in front of the store's counts reads.
pub(super) struct SharedCounts {
    jobs: mpsc::UnboundedSender<Job>,
}

impl SharedCounts {
    /// Start `readers` readers of `read` (each read serves everyone who was waiting when it
    /// started; a second reader lets the next read start before the first returns).
    pub(super) fn start(read: Read, readers: usize) -> Self {
        let (jobs, queue) = gather();
        for _ in 0..readers.max(1) {
            tokio::spawn(reader(read.clone(), queue.clone()));
        }
        SharedCounts { jobs }
    }

    /// The live counts of `show_ids` (a show the store does not know is absent), from a read
    /// that started after this call began.
    pub(super) async fn read(&self, show_ids: &[i64]) -> Result<Counts, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((show_ids.to_vec(), reply))
            .map_err(|_| StoreError::Internal("the counts reader has stopped".into()))?;
        let all = answer
            .await
            .map_err(|_| StoreError::Internal("the counts reader dropped a read".into()))??;
        Ok(show_ids
            .iter()
            .filter_map(|id| all.get(id).map(|c| (*id, c.clone())))
            .collect())
    }
}

async fn reader(read: Read, queue: Gather<Job>) {
    loop {
        // Every request already waiting, up to a bounded number of shows.
        let mut shows = 0;
        let Some(jobs) = queue
            .next(|(ids, _)| {
                shows += ids.len();
                shows < MAX_SHOWS_PER_READ
            })
            .await
        else {
            return;
        };
        let (pages, replies): (Vec<Vec<i64>>, Vec<_>) = jobs.into_iter().unzip();
        let mut ids = pages.concat();
        ids.sort_unstable();
        ids.dedup();
        metrics::histogram!("shared_counts_requests_per_read").record(replies.len() as f64);
        let answer = read(ids).await.map(Arc::new);
        for reply in replies {
            let _ = reply.send(answer.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A fake store: each show's held count, a count of reads, and an optional failure. A read
    /// takes the values as they are when it starts, then takes a while (a round trip).
    #[derive(Default)]
    struct Fake {
        held: std::sync::Mutex<HashMap<i64, i64>>,
        reads: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    fn shared(fake: &Arc<Fake>, readers: usize) -> SharedCounts {
        let fake = fake.clone();
        SharedCounts::start(
            Arc::new(move |ids: Vec<i64>| {
                let fake = fake.clone();
                Box::pin(async move {
                    fake.reads.fetch_add(1, Ordering::SeqCst);
                    if fake.fail.load(Ordering::SeqCst) {
                        return Err(StoreError::Unavailable("down".into()));
                    }
                    let counts: Counts = {
                        let held = fake.held.lock().expect("lock");
                        ids.iter()
                            .filter_map(|id| {
                                held.get(id).map(|h| {
                                    let c = LiveCounts {
                                        version: *h,
                                        held: *h,
                                        ..LiveCounts::default()
                                    };
                                    (*id, c)
                                })
                            })
                            .collect()
                    };
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    Ok(counts)
                })
            }),
            readers,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_reads_and_each_gets_its_own_shows() {
        let fake = Arc::new(Fake::default());
        fake.held
            .lock()
            .expect("lock")
            .extend((1..=30).map(|id| (id, id * 10)));
        let counts = Arc::new(shared(&fake, 2));
        let tasks: Vec<_> = (0..300i64)
            .map(|i| {
                let counts = counts.clone();
                // Pages of five shows, some of them unknown to the store (31..).
                let ids: Vec<i64> = (0..5).map(|k| (i + k) % 35 + 1).collect();
                tokio::spawn(async move { (ids.clone(), counts.read(&ids).await) })
            })
            .collect();
        for t in tasks {
            let (ids, answer) = t.await.expect("task");
            let answer = answer.expect("read");
            let known: Vec<i64> = ids.iter().copied().filter(|id| *id <= 30).collect();
            assert_eq!(answer.len(), known.len(), "{ids:?}: {answer:?}");
            for id in known {
                assert_eq!(answer[&id].held, id * 10, "show {id}");
            }
        }
        let reads = fake.reads.load(Ordering::SeqCst);
        assert!(reads < 100, "300 concurrent requests made {reads} reads");
    }

    /// A change made before a request is in its answer, however many reads are in flight:
    /// the writer's own read must see every value it wrote.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_sees_every_change_made_before_it() {
        let fake = Arc::new(Fake::default());
        fake.held.lock().expect("lock").insert(7, 0);
        let counts = Arc::new(shared(&fake, 2));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy: Vec<_> = (0..40)
            .map(|_| {
                let (counts, stop) = (counts.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        counts.read(&[7]).await.expect("read");
                    }
                })
            })
            .collect();
        for written in 1..=200 {
            fake.held.lock().expect("lock").insert(7, written);
            let seen = counts.read(&[7]).await.expect("read")[&7].held;
            assert!(seen >= written, "wrote {written}, then read {seen}");
        }
        stop.store(true, Ordering::SeqCst);
        for b in busy {
            b.await.expect("reader");
        }
    }

    #[tokio::test]
    async fn a_failed_read_fails_each_request_that_shared_it_and_the_next_read_recovers() {
        let fake = Arc::new(Fake::default());
        fake.held.lock().expect("lock").insert(1, 3);
        let counts = Arc::new(shared(&fake, 1));
        fake.fail.store(true, Ordering::SeqCst);
        let answers = futures_util::future::join_all((0..10).map(|_| counts.read(&[1]))).await;
        for a in answers {
            assert!(matches!(a, Err(StoreError::Unavailable(_))), "{a:?}");
        }
        fake.fail.store(false, Ordering::SeqCst);
        assert_eq!(counts.read(&[1]).await.expect("read")[&1].held, 3);
    }
}
