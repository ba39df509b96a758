//! The in-process shared-memory communicator: one handle per rank, each used by its own
//! thread. A call publishes the address of the rank's buffer, the ranks meet at a barrier, and
//! the algorithm reads and writes the buffers directly, barrier after barrier.
//!
//! A rank whose handle is dropped (its thread returned early or panicked) marks the
//! communicator failed: ranks waiting at a barrier, and every later call, get
//! [`CollectiveError::PeerFailed`] instead of waiting forever. A failing rank leaves only
//! once no rank is still touching the buffers of the call.

use super::element::Element;
use super::exchange::Exchange;
use super::{hierarchical, hybrid, ring, Algorithm, Collective, CollectiveError, Payload};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// One rank's handle on an in-process shared-memory communicator.
#[derive(Debug)]
pub struct SharedMemoryRank {
    rank: usize,
    shared: Arc<Shared>,
    /// Every rank's buffer address for the current call (kept to reuse the allocation).
    bases: Vec<usize>,
}

/// Builds a communicator of `world` CPU ranks running `algorithm`; one handle per rank.
pub fn in_process(
    world: usize,
    algorithm: Algorithm,
) -> Result<Vec<Box<dyn Collective>>, CollectiveError> {
    Ok(SharedMemoryRank::group(world, algorithm)?
        .into_iter()
        .map(|r| Box::new(r) as Box<dyn Collective>)
        .collect())
}

impl SharedMemoryRank {
    /// The handles of a new communicator of `world` ranks, rank 0 first.
    pub fn group(world: usize, algorithm: Algorithm) -> Result<Vec<Self>, CollectiveError> {
        algorithm.validate(world)?;
        let shared = Arc::new(Shared {
            world,
            algorithm,
            state: Mutex::new(State {
                generation: 0,
                arrived: 0,
                busy: 0,
                failed: None,
                posts: vec![Post::default(); world],
                verdict: Ok(()),
            }),
            wake: Condvar::new(),
        });
        Ok((0..world)
            .map(|rank| SharedMemoryRank {
                rank,
                shared: Arc::clone(&shared),
                bases: Vec::with_capacity(world),
            })
            .collect())
    }

    /// The algorithm the communicator runs.
    pub fn algorithm(&self) -> Algorithm {
        self.shared.algorithm
    }

    fn run<T: Element>(&mut self, buf: &mut [T]) -> Result<(), CollectiveError> {
        let post = Post {
            addr: buf.as_mut_ptr() as usize,
            len: buf.len(),
            kind: T::NAME,
        };
        let mut call = Call {
            shared: &self.shared,
            rank: self.rank,
            busy: false,
        };
        call.open(post, &mut self.bases)?;
        if buf.len() > 0 && self.shared.world > 1 {
            let mut sync = || call.wait(Barrier::Step);
            let mut ex = Exchange::<T>::new(self.rank, post.len, &self.bases, &mut sync);
            match self.shared.algorithm {
                Algorithm::Ring => ring::all_reduce(&mut ex)?,
                Algorithm::Hierarchical { group } => hierarchical::all_reduce(&mut ex, group)?,
                Algorithm::Hybrid { group, threshold } => {
                    hybrid::all_reduce(&mut ex, group, threshold)?
                }
            }
        }
        // Nobody may leave while a peer could still read its buffer.
        call.wait(Barrier::Close)
    }
}

impl Collective for SharedMemoryRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.shared.world
    }

    fn all_reduce(&mut self, data: Payload<'_>) -> Result<(), CollectiveError> {
        match data {
            Payload::F32(b) => self.run(b),
            Payload::F16(b) => self.run(b),
            Payload::Bf16(b) => self.run(b),
        }
    }
}

impl Drop for SharedMemoryRank {
    fn drop(&mut self) {
        let how = if std::thread::panicking() {
            "panicked"
        } else {
            "left the communicator"
        };
        self.shared.fail(format!("rank {} {how}", self.rank));
    }
}

/// What the ranks share.
#[derive(Debug)]
struct Shared {
    world: usize,
    algorithm: Algorithm,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug)]
struct State {
    /// Barriers passed so far.
    generation: u64,
    /// Ranks waiting at the current barrier.
    arrived: usize,
    /// Ranks released into a step of the current call and not yet at the next barrier: while
    /// any is, no buffer of the call may go away.
    busy: usize,
    /// Why the communicator is unusable, once it is.
    failed: Option<String>,
    /// Every rank's buffer for the current call.
    posts: Vec<Post>,
    /// Whether the posts of the last opening barrier agreed.
    verdict: Result<(), String>,
}

/// One rank's buffer in a call.
#[derive(Debug, Clone, Copy, Default)]
struct Post {
    addr: usize,
    len: usize,
    kind: &'static str,
}

/// The barriers of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Barrier {
    /// Every rank has posted its buffer; checks that they agree.
    Open,
    /// Every rank has finished a step of the algorithm.
    Step,
    /// Every rank has finished the call.
    Close,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still has consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fail(&self, why: String) {
        let mut st = self.lock();
        st.failed.get_or_insert(why);
        drop(st);
        self.wake.notify_all();
    }
}

/// One rank's progress through one call.
struct Call<'a> {
    shared: &'a Shared,
    rank: usize,
    /// Whether this rank counts in `State::busy`.
    busy: bool,
}

impl Call<'_> {
    /// Posts this rank's buffer, waits for the others' and copies their addresses.
    fn open(&mut self, post: Post, bases: &mut Vec<usize>) -> Result<(), CollectiveError> {
        let mut st = self.shared.lock();
        if let Some(why) = &st.failed {
            return Err(CollectiveError::PeerFailed(why.clone()));
        }
        st.posts[self.rank] = post;
        let st = self.arrive(st, Barrier::Open)?;
        bases.clear();
        bases.extend(st.posts.iter().map(|p| p.addr));
        Ok(())
    }

    fn wait(&mut self, barrier: Barrier) -> Result<(), CollectiveError> {
        let st = self.shared.lock();
        self.arrive(st, barrier).map(drop)
    }

    fn arrive<'s>(
        &mut self,
        mut st: MutexGuard<'s, State>,
        barrier: Barrier,
    ) -> Result<MutexGuard<'s, State>, CollectiveError> {
        let shared = self.shared;
        if self.busy {
            st.busy -= 1;
            self.busy = false;
            if st.failed.is_some() && st.busy == 0 {
                shared.wake.notify_all();
            }
        }
        if st.failed.is_none() {
            st.arrived += 1;
            let generation = st.generation;
            if st.arrived == shared.world {
                st.arrived = 0;
                st.generation += 1;
                if barrier == Barrier::Open {
                    st.verdict = agreement(&st.posts);
                }
                let touches =
                    barrier == Barrier::Step || (barrier == Barrier::Open && st.verdict.is_ok());
                st.busy = if touches { shared.world } else { 0 };
                shared.wake.notify_all();
            } else {
                while st.generation == generation && st.failed.is_none() {
                    st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
            }
            if st.generation != generation {
                self.busy = st.busy > 0;
                if barrier == Barrier::Open {
                    if let Err(why) = &st.verdict {
                        return Err(CollectiveError::Mismatch(why.clone()));
                    }
                }
                return Ok(st);
            }
        }
        // Failed: wait until no rank is inside a step any more, so our buffer can go away.
        while st.busy > 0 {
            st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        Err(CollectiveError::PeerFailed(
            st.failed.clone().unwrap_or_default(),
        ))
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        // Only a panic inside a step leaves a rank busy: stop the others waiting for it.
        if self.busy {
            let mut st = self.shared.lock();
            st.busy -= 1;
            st.failed
                .get_or_insert(format!("rank {} panicked inside an all-reduce", self.rank));
            drop(st);
            self.shared.wake.notify_all();
        }
    }
}

/// Whether every rank posted the same length and element type.
fn agreement(posts: &[Post]) -> Result<(), String> {
    let first = posts[0];
    if posts
        .iter()
        .all(|p| p.len == first.len && p.kind == first.kind)
    {
        return Ok(());
    }
    let each: Vec<String> = posts
        .iter()
        .enumerate()
        .map(|(r, p)| format!("rank {r}: {} {}", p.len, p.kind))
        .collect();
    Err(format!("all-reduce buffers differ ({})", each.join(", ")))
}
