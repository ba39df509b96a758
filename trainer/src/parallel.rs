//! Deterministic data parallelism over a batch: the batch is split into `threads` contiguous
//! ranges (always the same split for the same size), each range runs on its own thread, and
//! per-thread partial results come back in range order so reductions are reproducible.
//!
//! Each `Par` owns a persistent pool of `threads - 1` workers (`rayon-core`; the calling thread
//! runs the first item itself): a training step runs about a hundred parallel regions, and
//! starting fresh threads for each cost about 50 µs a region. The pool is the `Par`'s own, not
//! shared by thread count, so data-parallel ranks that each hold one compute side by side
//! instead of queueing behind each other's work.

use std::ops::Range;
use std::sync::Arc;

use rayon_core::{ThreadPool, ThreadPoolBuilder};

/// A fixed number of compute threads.
#[derive(Debug, Clone)]
pub struct Par {
    threads: usize,
    /// Workers for items after the first; none with one thread.
    pool: Option<Arc<ThreadPool>>,
}

impl Par {
    /// Uses `threads` threads (at least one).
    pub fn new(threads: usize) -> Par {
        let threads = threads.max(1);
        let pool = (threads > 1).then(|| {
            let built = ThreadPoolBuilder::new()
                .num_threads(threads - 1)
                .thread_name(move |i| format!("compute-{threads}-{i}"))
                .build();
            // Building a pool fails only when the OS refuses threads; nothing can run then.
            Arc::new(built.expect("cannot start the compute threads"))
        });
        Par { threads, pool }
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Splits `0..n` into at most `threads` non-empty contiguous ranges of near-equal size.
    pub fn ranges(&self, n: usize) -> Vec<Range<usize>> {
        let parts = self.threads.min(n).max(1);
        let base = n / parts;
        let extra = n % parts;
        let mut out = Vec::with_capacity(parts);
        let mut start = 0;
        for i in 0..parts {
            let len = base + usize::from(i < extra);
            out.push(start..start + len);
            start += len;
        }
        out
    }

    /// Runs `f` on every item, one item per thread (the first on the calling thread),
    /// and returns the results in item order.
    pub fn run<I: Send, R: Send>(&self, items: Vec<I>, f: impl Fn(I) -> R + Sync) -> Vec<R> {
        let pool = match &self.pool {
            Some(pool) if items.len() > 1 => pool,
            _ => return items.into_iter().map(&f).collect(),
        };
        let f = &f;
        let mut out: Vec<Option<R>> = items.iter().map(|_| None).collect();
        let mut it = items.into_iter().zip(out.iter_mut());
        let first = it.next();
        // A worker panic is a bug: the scope re-raises it on the caller rather than hide it.
        pool.in_place_scope(|s| {
            for (item, slot) in it {
                s.spawn(move |_| *slot = Some(f(item)));
            }
            if let Some((item, slot)) = first {
                *slot = Some(f(item));
            }
        });
        out.into_iter()
            .map(|r| r.expect("every item ran"))
            .collect()
    }

    /// Splits `0..n` into ranges and runs `f(range, part)` where `part` is the matching
    /// piece of `out` (`stride` elements per index).
    pub fn run_split<T: Send, R: Send>(
        &self,
        n: usize,
        out: &mut [T],
        stride: usize,
        f: impl Fn(Range<usize>, &mut [T]) -> R + Sync,
    ) -> Vec<R> {
        let ranges = self.ranges(n);
        let parts = split_mut(out, &ranges, stride);
        self.run(ranges.into_iter().zip(parts).collect(), |(r, p)| f(r, p))
    }

    /// Like `run_split` with two outputs split the same way.
    pub fn run_split2<T: Send, U: Send, R: Send>(
        &self,
        n: usize,
        out1: &mut [T],
        stride1: usize,
        out2: &mut [U],
        stride2: usize,
        f: impl Fn(Range<usize>, &mut [T], &mut [U]) -> R + Sync,
    ) -> Vec<R> {
        let ranges = self.ranges(n);
        let p1 = split_mut(out1, &ranges, stride1);
        let p2 = split_mut(out2, &ranges, stride2);
        let items: Vec<_> = ranges
            .into_iter()
            .zip(p1)
            .zip(p2)
            .map(|((r, a), b)| (r, a, b))
            .collect();
        self.run(items, |(r, a, b)| f(r, a, b))
    }

    /// Runs `f(range)` for read-only work and returns per-range results in order.
    pub fn run_ranges<R: Send>(&self, n: usize, f: impl Fn(Range<usize>) -> R + Sync) -> Vec<R> {
        self.run(self.ranges(n), f)
    }
}

/// Cuts `s` into consecutive pieces of `range.len() * stride` elements.
pub fn split_mut<'a, T>(
    mut s: &'a mut [T],
    ranges: &[Range<usize>],
    stride: usize,
) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let len = (r.len() * stride).min(s.len());
        let (head, tail) = std::mem::take(&mut s).split_at_mut(len);
        out.push(head);
        s = tail;
    }
    out
}

/// Adds per-thread partial vectors into `dst` in thread order (the fixed order keeps results reproducible).
pub fn reduce_into(dst: &mut [f32], parts: &[Vec<f32>]) {
    for p in parts {
        for (d, &v) in dst.iter_mut().zip(p) {
            *d += v;
        }
    }
}

/// Element-wise sum of per-thread f64 partials in thread order.
pub fn reduce_f64(parts: &[Vec<f64>], len: usize) -> Vec<f64> {
    let mut acc = vec![0.0f64; len];
    for p in parts {
        for (a, &v) in acc.iter_mut().zip(p) {
            *a += v;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_in_order() {
        let p = Par::new(3);
        assert_eq!(p.ranges(10), vec![0..4, 4..7, 7..10]);
        assert_eq!(p.ranges(2), vec![0..1, 1..2]);
        assert_eq!(p.ranges(0), vec![0..0]);
        let mut out = vec![0usize; 20];
        let r = p.run_split(10, &mut out, 2, |r, part| {
            for (k, v) in part.iter_mut().enumerate() {
                *v = r.start * 2 + k;
            }
            r.len()
        });
        assert_eq!(r, vec![4, 3, 3]);
        assert_eq!(out, (0..20).collect::<Vec<_>>());
    }

    /// Two ranks with a two-thread `Par` each run all four of their items at once: with one
    /// pool shared by thread count, a rank's second item would wait behind the other's.
    #[test]
    fn each_par_computes_on_its_own_threads() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, Instant};
        let running = AtomicUsize::new(0);
        let all_met = |_: usize| {
            running.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            while running.load(Ordering::SeqCst) < 4 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            running.load(Ordering::SeqCst) >= 4
        };
        let ranks = [Par::new(2), Par::new(2)];
        let met: Vec<Vec<bool>> = std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|par| s.spawn(|| par.run(vec![0, 1], all_met)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a rank panicked"))
                .collect()
        });
        assert_eq!(met, vec![vec![true, true]; 2]);
    }
}
