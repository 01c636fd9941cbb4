//! In-memory copies of catalogue rows. Venues, screens, movies and shows are never changed once
//! created (the schema has no mutation that would), so a row read once is good for ever; the
//! copies are bounded (cleared when full). Pages of the show list are kept for a moment only:
//! a show created on another instance appears in this one's list within `PAGE_FRESH`.
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::error::AppResult;

/// Rows of one kind kept before the copy starts over.
const KEPT_ROWS: usize = 50_000;

/// Immutable rows by id.
pub struct Kept<T>(RwLock<HashMap<i64, T>>);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept(RwLock::default())
    }
}

impl<T: Clone> Kept<T> {
    pub fn get(&self, id: i64) -> Option<T> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn keep(&self, rows: impl IntoIterator<Item = (i64, T)>) {
        let mut kept = self.0.write().unwrap_or_else(|p| p.into_inner());
        for (id, row) in rows {
            if kept.len() >= KEPT_ROWS {
                kept.clear();
            }
            kept.insert(id, row);
        }
    }

    /// The rows with these ids: the kept ones, and the rest through `load` (then kept).
    pub async fn many<F, Fut>(
        &self,
        ids: &[i64],
        id_of: fn(&T) -> i64,
        load: F,
    ) -> AppResult<Vec<T>>
    where
        F: FnOnce(Vec<i64>) -> Fut,
        Fut: Future<Output = AppResult<Vec<T>>>,
    {
        let mut out = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let kept = self.0.read().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                match kept.get(id) {
                    Some(row) => out.push(row.clone()),
                    None => missing.push(*id),
                }
            }
        }
        if !missing.is_empty() {
            let loaded = load(missing).await?;
            self.keep(loaded.iter().map(|r| (id_of(r), r.clone())));
            out.extend(loaded);
        }
        Ok(out)
    }
}

/// How long a page of the show list is served from memory.
pub const PAGE_FRESH: Duration = Duration::from_secs(2);
/// Pages kept before the copy starts over.
const KEPT_PAGES: usize = 4096;

/// Recent answers of a query, by key, each good for `PAGE_FRESH`, and a generation that
/// `forget` bumps (answers derived from them elsewhere compare it).
pub struct Recent<K, V>(RwLock<HashMap<K, (Instant, V)>>, AtomicU64);

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent(RwLock::default(), AtomicU64::new(0))
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Recent<K, V> {
    pub fn get(&self, key: &K) -> Option<V> {
        let kept = self.0.read().unwrap_or_else(|p| p.into_inner());
        kept.get(key)
            .filter(|(at, _)| at.elapsed() < PAGE_FRESH)
            .map(|(_, v)| v.clone())
    }

    pub fn keep(&self, key: K, value: V) {
        let mut kept = self.0.write().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT_PAGES {
            kept.retain(|_, (at, _)| at.elapsed() < PAGE_FRESH);
            if kept.len() >= KEPT_PAGES {
                kept.clear();
            }
        }
        kept.insert(key, (Instant::now(), value));
    }

    /// Forget every answer (something they may include was just created here).
    pub fn forget(&self) {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn generation(&self) -> u64 {
        self.1.load(Ordering::SeqCst)
    }
}
