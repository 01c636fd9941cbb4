//! Best available: which free seats a best-available hold takes. The in-process store runs
//! [`choose`] under its lock; the Redis store runs `scripts/best.lua`, the same algorithm over
//! the same plan (`catalogue/plan.rs`); `tests/it/best.rs` holds both to the same answers.
//!
//! Order of preference, for `count` seats:
//! 1. a window of `count` side by side in one row that leaves no single free seat stranded
//!    beside it (an *orphan*), best window first;
//! 2. the best such window even though it leaves an orphan;
//! 3. unless `together` is required: split across two adjacent rows — the larger part (from
//!    `count - 1` seats down to half) is the best window of its size, looked for among its
//!    first [`SPLIT_CANDIDATES`] fitting windows, the rest the best window of the rest's size in
//!    the row in front or behind.
//!
//! A seat fits when it is free, of an allowed category, and — unless wheelchair spaces were
//! asked for — neither a wheelchair space nor a companion seat (those stay for the people who
//! need them; they can still be picked by hand). With `wheelchair` = W > 0 the chosen seats
//! contain exactly W wheelchair spaces; the others may be companion seats.
use crate::catalogue::plan::{SeatPlan, COMPANION, WHEELCHAIR};

/// How many fitting windows of the larger part a split examines before giving up.
pub const SPLIT_CANDIDATES: usize = 32;

/// What a best-available request asks for.
#[derive(Debug, Clone)]
pub struct BestAsk {
    pub count: usize,
    /// Allowed category indexes of the plan (`None`: every category).
    pub categories: Option<Vec<bool>>,
    /// Refuse anything that is not side by side in one row.
    pub together: bool,
    /// How many of the seats must be wheelchair spaces.
    pub wheelchair: usize,
}

/// The chosen positions and whether they are side by side in one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub positions: Vec<usize>,
    pub together: bool,
}

struct Chooser<'a, F> {
    plan: &'a SeatPlan,
    taken: F,
    ask: &'a BestAsk,
}

impl<F: Fn(usize) -> bool> Chooser<'_, F> {
    fn free(&self, p: usize) -> bool {
        !(self.taken)(p)
    }

    fn eligible(&self, p: usize) -> bool {
        if !self.free(p) {
            return false;
        }
        if let Some(allowed) = &self.ask.categories {
            if !allowed
                .get(self.plan.category[p] as usize)
                .copied()
                .unwrap_or(false)
            {
                return false;
            }
        }
        self.ask.wheelchair > 0 || self.plan.flags[p] & (WHEELCHAIR | COMPANION) == 0
    }

    fn wheelchairs(&self, start: usize, n: usize) -> usize {
        (start..start + n)
            .filter(|p| self.plan.flags[*p] & WHEELCHAIR != 0)
            .count()
    }

    /// Every seat of the window fits; returns its wheelchair spaces.
    fn fitting(&self, start: usize, n: usize) -> Option<usize> {
        (start..start + n)
            .all(|p| self.eligible(p))
            .then(|| self.wheelchairs(start, n))
    }

    /// Taking the window would strand one free seat beside it.
    fn orphans(&self, start: usize, n: usize) -> bool {
        let plan = self.plan;
        let joined_free = |p: usize| plan.joins_left(p) && self.free(p - 1);
        if joined_free(start) && !(start >= 2 && joined_free(start - 1)) {
            return true;
        }
        let q = start + n;
        q < plan.len()
            && plan.joins_left(q)
            && self.free(q)
            && !(q + 1 < plan.len() && plan.joins_left(q + 1) && self.free(q + 1))
    }

    /// The windows of `n` this request could take, best first.
    fn candidates(&self, n: usize) -> Option<&[u16]> {
        let lists = if self.ask.wheelchair > 0 {
            &self.plan.windows
        } else {
            &self.plan.plain
        };
        lists.get(n - 1).map(Vec::as_slice)
    }

    fn together(&self, n: usize) -> Option<usize> {
        let mut fallback = None;
        for &s in self.candidates(n)? {
            let s = s as usize;
            if self.fitting(s, n) == Some(self.ask.wheelchair) {
                if !self.orphans(s, n) {
                    return Some(s);
                }
                fallback = fallback.or(Some(s));
            }
        }
        fallback
    }

    /// The best window of `n` in row `row` (by sum of ranks, then leftmost) with `want`
    /// wheelchair spaces, and its score.
    fn best_in_row(&self, row: Option<usize>, n: usize, want: usize) -> Option<(u32, usize)> {
        let &(a, e) = self.plan.rows.get(row?)?;
        let (a, e) = (a as usize, e as usize);
        let mut best: Option<(u32, usize)> = None;
        for s in a..e.saturating_sub(n - 1) {
            if !(s + 1..s + n).all(|p| self.plan.joins_left(p)) {
                continue;
            }
            if self.fitting(s, n) != Some(want) {
                continue;
            }
            let score = self.plan.window_score(s, n);
            if best.is_none_or(|(b, _)| score < b) {
                best = Some((score, s));
            }
        }
        best
    }

    fn split(&self, n: usize) -> Option<Vec<usize>> {
        for k in (n.div_ceil(2)..n).rev() {
            let mut seen = 0;
            for &s in self.candidates(k)? {
                let s = s as usize;
                let Some(a) = self.fitting(s, k) else {
                    continue;
                };
                if a > self.ask.wheelchair {
                    continue;
                }
                seen += 1;
                let row = self.plan.row[s] as usize;
                let want = self.ask.wheelchair - a;
                let front = self.best_in_row(row.checked_sub(1), n - k, want);
                let back = self.best_in_row(Some(row + 1), n - k, want);
                let partner = match (front, back) {
                    (Some(f), Some(b)) => Some(if b.0 < f.0 { b } else { f }),
                    (f, b) => f.or(b),
                };
                if let Some((_, p)) = partner {
                    let mut out: Vec<usize> = (s..s + k).chain(p..p + n - k).collect();
                    out.sort_unstable();
                    return Some(out);
                }
                if seen >= SPLIT_CANDIDATES {
                    break;
                }
            }
        }
        None
    }
}

/// The seats a best-available request takes, given which positions are taken (held or
/// booked); `None` when nothing acceptable is free.
pub fn choose(plan: &SeatPlan, taken: impl Fn(usize) -> bool, ask: &BestAsk) -> Option<Choice> {
    let n = ask.count;
    if n == 0 || n > plan.windows.len() || ask.wheelchair > n {
        return None;
    }
    let c = Chooser { plan, taken, ask };
    if let Some(s) = c.together(n) {
        return Some(Choice {
            positions: (s..s + n).collect(),
            together: true,
        });
    }
    if ask.together || n == 1 {
        return None;
    }
    c.split(n).map(|positions| Choice {
        positions,
        together: false,
    })
}
