//! Synchronised batch norm for ranks that are threads of one process: every rank posts its
//! per-channel sums, waits for the others, and adds all posts in rank order, so every rank gets
//! bit-identical statistics whatever the thread timing.

use std::sync::{Arc, Barrier, Mutex};

use crate::layers::batchnorm::StatSync;

/// The posts of one step's statistics exchange.
#[derive(Debug)]
struct Board {
    barrier: Barrier,
    posts: Mutex<Vec<(Vec<f64>, usize)>>,
}

/// One rank's end of an in-process statistics exchange.
#[derive(Debug)]
pub struct SharedStats {
    rank: usize,
    board: Arc<Board>,
}

impl SharedStats {
    /// One handle per rank for `world` ranks (all must call every exchange).
    pub fn group(world: usize) -> Vec<Arc<dyn StatSync>> {
        let board = Arc::new(Board {
            barrier: Barrier::new(world),
            posts: Mutex::new(vec![(Vec::new(), 0); world]),
        });
        (0..world)
            .map(|rank| {
                Arc::new(SharedStats {
                    rank,
                    board: board.clone(),
                }) as Arc<dyn StatSync>
            })
            .collect()
    }
}

impl StatSync for SharedStats {
    fn sum(&self, sums: &mut [f64], rows: usize) -> usize {
        let board = &*self.board;
        // a poisoned lock means another rank panicked mid-step; its posted data are still whole
        board.posts.lock().unwrap_or_else(|e| e.into_inner())[self.rank] = (sums.to_vec(), rows);
        board.barrier.wait();
        let mut total_rows = 0;
        {
            let posts = board.posts.lock().unwrap_or_else(|e| e.into_inner());
            sums.fill(0.0);
            for (post, r) in posts.iter() {
                for (t, v) in sums.iter_mut().zip(post) {
                    *t += v;
                }
                total_rows += r;
            }
        }
        // nobody overwrites a post before every rank has read them all
        board.barrier.wait();
        total_rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::batchnorm::BatchNorm;
    use crate::layers::gradcheck::{assert_close, rand_vec};
    use crate::parallel::Par;

    /// What one rank's BN produced: output, dx, dgamma, dbeta, running variance.
    type RankResult = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

    /// Synchronised BN over ranks holding parts of a batch (one of them empty) equals BN over
    /// the whole batch; the parameter gradients are per-rank shares that sum to the whole's.
    #[test]
    fn synced_ranks_equal_one_batch() {
        let c = 3;
        let parts = [17usize, 9, 0, 14];
        let rows: usize = parts.iter().sum();
        let x = rand_vec(21, rows * c, 2.0);
        let r = rand_vec(22, rows * c, 1.0);
        let (gamma, beta) = (vec![1.2, -0.4, 0.9], vec![0.1, 0.0, -0.2]);
        let run = |bn: &mut BatchNorm, x: &[f32], r: &[f32], n: usize| -> RankResult {
            let par = Par::new(1);
            let mut y = vec![0.0; n * c];
            bn.forward_train(
                &par,
                x.into(),
                n,
                &gamma,
                &beta,
                (&mut y[..]).into(),
                true,
                None,
            );
            let mut dx = r.to_vec();
            let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
            bn.backward(
                &par,
                x.into(),
                Some((&y).into()),
                &mut dx,
                n,
                &gamma,
                &mut dg,
                &mut db,
                None,
            );
            (y, dx, dg, db, bn.running_var.clone())
        };
        let whole = run(&mut BatchNorm::new(c), &x, &r, rows);

        let mut starts = vec![0];
        for p in parts {
            starts.push(starts[starts.len() - 1] + p);
        }
        let results: Vec<RankResult> = std::thread::scope(|scope| {
            let handles: Vec<_> = SharedStats::group(parts.len())
                .into_iter()
                .enumerate()
                .map(|(rank, sync)| {
                    let (lo, hi) = (starts[rank] * c, starts[rank + 1] * c);
                    let (x, r, run) = (&x[lo..hi], &r[lo..hi], &run);
                    scope.spawn(move || {
                        let mut bn = BatchNorm::new(c);
                        bn.set_sync(sync);
                        run(&mut bn, x, r, parts[rank])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("rank thread"))
                .collect()
        });
        let cat = |pick: fn(&RankResult) -> &Vec<f32>| -> Vec<f32> {
            results.iter().flat_map(|t| pick(t).clone()).collect()
        };
        assert_close(&cat(|t| &t.0), &whole.0, 1e-5, "synced y");
        assert_close(&cat(|t| &t.1), &whole.1, 1e-5, "synced dx");
        let total = |pick: fn(&RankResult) -> &Vec<f32>| -> Vec<f32> {
            (0..c)
                .map(|j| results.iter().map(|t| pick(t)[j]).sum())
                .collect()
        };
        assert_close(&total(|t| &t.2), &whole.2, 1e-5, "synced dgamma");
        assert_close(&total(|t| &t.3), &whole.3, 1e-5, "synced dbeta");
        for t in &results {
            assert_close(&t.4, &whole.4, 1e-6, "synced running var");
        }
    }
}
