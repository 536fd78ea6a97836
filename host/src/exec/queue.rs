//! The scheduler's bookkeeping as a state machine (EXEC-001, 004..007, 010): which tasks
//! of a run set are waiting, ready, running, waiting for their mutex, or done, with no
//! threads and no I/O, so every rule can be tested on its own.
//!
//! * A task is ready when all its in-set hard predecessors succeeded and its in-set soft
//!   predecessors finished (EXEC-001, DAG-002).
//! * [`Queue::admit`] starts ready tasks in canonical (index) order while fewer than
//!   `jobs` run, skipping a task one of whose tags is at its cap (EXEC-004, 005).
//! * A task with a mutex first runs without it (its key and lookup need none, EXEC-007);
//!   when it misses, [`Queue::needs_mutex`] puts it back as ready holding no slot, and
//!   it is admitted again only when its mutex is free: exclusive conflicts with any
//!   holder, shared only with exclusive (EXEC-006).
//! * [`Queue::complete`] releases successors on success, and on failure skips every task
//!   that depends on it through hard edges, transitively; soft successors only stop
//!   waiting (EXEC-010).
//! * [`Queue::halt`] stops admission (fail-fast, cancellation); running tasks finish.
//!
//! Bookkeeping is linear in the size of the run set plus its edges.

use std::collections::BTreeSet;

/// How a task takes its mutex (the scheduler's view of a `MutexDecl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Exclusive,
    Shared,
}

/// The run set as the queue needs it; every index is a task of the graph.
pub struct QueueSpec<'a> {
    pub run_set: &'a [usize],
    /// Hard and soft predecessors of every task of the graph, by index (those outside
    /// the run set are ignored).
    pub hard: Vec<Vec<usize>>,
    pub soft: Vec<Vec<usize>>,
    /// The global cap on tasks running at once.
    pub jobs: usize,
    /// For each task, the caps (indices into `caps`) its tags are subject to.
    pub capped_by: Vec<Vec<usize>>,
    pub caps: Vec<usize>,
    /// For each task, its mutex (an index of its own) and how it holds it.
    pub mutex: Vec<Option<(usize, Hold)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotInSet,
    Waiting,
    Ready,
    Running,
    Done,
}

/// A task to start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub task: usize,
    /// The task was admitted holding its mutex: it missed once already and now runs.
    pub holds_mutex: bool,
}

pub struct Queue {
    state: Vec<State>,
    hard_succ: Vec<Vec<usize>>,
    soft_succ: Vec<Vec<usize>>,
    waiting_on: Vec<usize>,
    ready: BTreeSet<usize>,
    /// Tasks that missed and wait for their mutex (they are in `ready` too).
    wants_mutex: Vec<bool>,
    /// Tasks running while holding their mutex.
    holding: Vec<bool>,
    jobs: usize,
    running: usize,
    capped_by: Vec<Vec<usize>>,
    caps: Vec<usize>,
    per_cap: Vec<usize>,
    mutex: Vec<Option<(usize, Hold)>>,
    /// Per mutex: (exclusive holders, shared holders).
    holders: Vec<(usize, usize)>,
    halted: bool,
}

impl Queue {
    pub fn new(spec: QueueSpec<'_>) -> Queue {
        let n = spec.hard.len();
        let mut state = vec![State::NotInSet; n];
        for &t in spec.run_set {
            state[t] = State::Waiting;
        }
        let mut hard_succ = vec![Vec::new(); n];
        let mut soft_succ = vec![Vec::new(); n];
        let mut waiting_on = vec![0usize; n];
        for &t in spec.run_set {
            for &p in spec.hard[t]
                .iter()
                .filter(|p| state[**p] != State::NotInSet)
            {
                hard_succ[p].push(t);
                waiting_on[t] += 1;
            }
            for &p in spec.soft[t]
                .iter()
                .filter(|p| state[**p] != State::NotInSet)
            {
                soft_succ[p].push(t);
                waiting_on[t] += 1;
            }
        }
        let mut ready = BTreeSet::new();
        for &t in spec.run_set {
            if waiting_on[t] == 0 {
                state[t] = State::Ready;
                ready.insert(t);
            }
        }
        let mutexes = spec
            .mutex
            .iter()
            .flatten()
            .map(|(m, _)| m + 1)
            .max()
            .unwrap_or(0);
        Queue {
            state,
            hard_succ,
            soft_succ,
            waiting_on,
            ready,
            wants_mutex: vec![false; n],
            holding: vec![false; n],
            jobs: spec.jobs.max(1),
            running: 0,
            per_cap: vec![0; spec.caps.len()],
            capped_by: spec.capped_by,
            caps: spec.caps,
            mutex: spec.mutex,
            holders: vec![(0, 0); mutexes],
            halted: false,
        }
    }

    fn mutex_free(&self, t: usize) -> bool {
        match self.mutex[t] {
            None => true,
            Some((m, hold)) => {
                let (exclusive, shared) = self.holders[m];
                exclusive == 0 && (hold == Hold::Shared || shared == 0)
            }
        }
    }

    /// The tasks to start now, in canonical order, marked running.
    pub fn admit(&mut self) -> Vec<Start> {
        let mut started = Vec::new();
        if self.halted {
            return started;
        }
        let candidates: Vec<usize> = self.ready.iter().copied().collect();
        for t in candidates {
            if self.running >= self.jobs {
                break;
            }
            if self.capped_by[t]
                .iter()
                .any(|c| self.per_cap[*c] >= self.caps[*c])
            {
                continue;
            }
            let holds_mutex = self.wants_mutex[t];
            if holds_mutex {
                if !self.mutex_free(t) {
                    continue;
                }
                let (m, hold) = self.mutex[t].expect("only mutex tasks want one");
                match hold {
                    Hold::Exclusive => self.holders[m].0 += 1,
                    Hold::Shared => self.holders[m].1 += 1,
                }
                self.holding[t] = true;
                self.wants_mutex[t] = false;
            }
            self.ready.remove(&t);
            self.state[t] = State::Running;
            self.running += 1;
            for c in &self.capped_by[t] {
                self.per_cap[*c] += 1;
            }
            started.push(Start {
                task: t,
                holds_mutex,
            });
        }
        started
    }

    /// Frees what a running task held: its job slot, its caps, its mutex.
    fn leave(&mut self, t: usize) {
        debug_assert_eq!(self.state[t], State::Running);
        self.running -= 1;
        for c in &self.capped_by[t] {
            self.per_cap[*c] -= 1;
        }
        if std::mem::take(&mut self.holding[t]) {
            let (m, hold) = self.mutex[t].expect("held");
            match hold {
                Hold::Exclusive => self.holders[m].0 -= 1,
                Hold::Shared => self.holders[m].1 -= 1,
            }
        }
    }

    /// A running task missed and needs its mutex to run: it goes back to the queue as
    /// ready, holding no job slot, until its mutex is free.
    pub fn needs_mutex(&mut self, t: usize) {
        self.leave(t);
        self.state[t] = State::Ready;
        self.wants_mutex[t] = true;
        self.ready.insert(t);
    }

    /// A running task finished. On success its successors wait for one task fewer; on
    /// failure every task depending on it through hard edges is skipped: those are
    /// returned, in the order found.
    pub fn complete(&mut self, t: usize, succeeded: bool) -> Vec<usize> {
        self.leave(t);
        self.state[t] = State::Done;
        let mut skipped = Vec::new();
        if succeeded {
            self.release(t, true);
            return skipped;
        }
        let mut frontier = vec![t];
        while let Some(f) = frontier.pop() {
            self.release(f, false);
            for s in self.hard_succ[f].clone() {
                if matches!(self.state[s], State::Done | State::Running) {
                    continue;
                }
                self.ready.remove(&s);
                self.wants_mutex[s] = false;
                self.state[s] = State::Done;
                skipped.push(s);
                frontier.push(s);
            }
        }
        skipped
    }

    /// `t` is done: its soft successors (and, if it succeeded, its hard ones) wait for
    /// one task fewer.
    fn release(&mut self, t: usize, succeeded: bool) {
        let hard = if succeeded {
            self.hard_succ[t].clone()
        } else {
            Vec::new()
        };
        for s in hard.into_iter().chain(self.soft_succ[t].clone()) {
            self.waiting_on[s] -= 1;
            if self.waiting_on[s] == 0 && self.state[s] == State::Waiting {
                self.state[s] = State::Ready;
                self.ready.insert(s);
            }
        }
    }

    /// Stops admitting: fail-fast or cancellation. Running tasks finish.
    pub fn halt(&mut self) {
        self.halted = true;
    }

    pub fn running(&self) -> usize {
        self.running
    }

    /// Whether `t` finished (ran, or was skipped).
    pub fn is_done(&self, t: usize) -> bool {
        self.state[t] == State::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph of `n` tasks; `hard[i]`, `soft[i]` are task i's predecessors.
    struct G {
        hard: Vec<Vec<usize>>,
        soft: Vec<Vec<usize>>,
    }

    fn queue(g: &G, jobs: usize, f: impl FnOnce(&mut QueueSpec<'_>)) -> Queue {
        let all: Vec<usize> = (0..g.hard.len()).collect();
        let mut spec = QueueSpec {
            run_set: &all,
            hard: g.hard.clone(),
            soft: g.soft.clone(),
            jobs,
            capped_by: vec![Vec::new(); g.hard.len()],
            caps: Vec::new(),
            mutex: vec![None; g.hard.len()],
        };
        f(&mut spec);
        Queue::new(spec)
    }

    fn ids(starts: &[Start]) -> Vec<usize> {
        starts.iter().map(|s| s.task).collect()
    }

    fn free(n: usize) -> G {
        G {
            hard: vec![Vec::new(); n],
            soft: vec![Vec::new(); n],
        }
    }

    #[test]
    fn the_global_cap_admits_in_canonical_order() {
        let g = free(4);
        let mut q = queue(&g, 2, |_| {});
        assert_eq!(ids(&q.admit()), [0, 1]);
        assert!(q.admit().is_empty(), "two already run");
        q.complete(1, true);
        assert_eq!(ids(&q.admit()), [2]);
        q.complete(0, true);
        q.complete(2, true);
        assert_eq!(ids(&q.admit()), [3]);
    }

    #[test]
    fn a_tag_cap_holds_back_only_its_tasks() {
        let g = free(4);
        let mut q = queue(&g, 4, |s| {
            s.caps = vec![1];
            s.capped_by = vec![vec![0], vec![0], vec![], vec![0]];
        });
        assert_eq!(
            ids(&q.admit()),
            [0, 2],
            "one heavy task at a time; others pass"
        );
        q.complete(0, true);
        assert_eq!(ids(&q.admit()), [1]);
    }

    #[test]
    fn mutexes_are_asked_for_only_after_a_miss_and_exclude_as_declared() {
        let g = free(4);
        let mut q = queue(&g, 4, |s| {
            s.mutex = vec![
                Some((0, Hold::Exclusive)),
                Some((0, Hold::Exclusive)),
                Some((1, Hold::Shared)),
                Some((1, Hold::Shared)),
            ];
        });
        // All start without their mutex (a hit needs none).
        assert_eq!(q.admit().iter().filter(|s| !s.holds_mutex).count(), 4);
        for t in 0..4 {
            q.needs_mutex(t);
        }
        let starts = q.admit();
        assert_eq!(
            ids(&starts),
            [0, 2, 3],
            "exclusive one at a time; shared together"
        );
        assert!(starts.iter().all(|s| s.holds_mutex));
        q.complete(0, true);
        assert_eq!(ids(&q.admit()), [1]);
    }

    #[test]
    fn an_exclusive_holder_waits_for_shared_ones() {
        let g = free(2);
        let mut q = queue(&g, 4, |s| {
            s.mutex = vec![Some((0, Hold::Shared)), Some((0, Hold::Exclusive))];
        });
        q.admit();
        q.needs_mutex(0);
        q.needs_mutex(1);
        assert_eq!(ids(&q.admit()), [0]);
        assert!(q.admit().is_empty());
        q.complete(0, true);
        assert_eq!(ids(&q.admit()), [1]);
    }

    #[test]
    fn soft_edges_order_without_pulling_or_skipping() {
        // 1 runs after 0 (soft); 2 after 1 (hard).
        let g = G {
            hard: vec![vec![], vec![], vec![1]],
            soft: vec![vec![], vec![0], vec![]],
        };
        let mut q = queue(&g, 4, |_| {});
        assert_eq!(ids(&q.admit()), [0]);
        assert!(
            q.complete(0, false).is_empty(),
            "a failed soft predecessor skips nothing"
        );
        assert_eq!(ids(&q.admit()), [1]);
        q.complete(1, true);
        assert_eq!(ids(&q.admit()), [2]);
    }

    #[test]
    fn a_failure_skips_its_hard_dependents_transitively_and_nothing_else() {
        // 1 and 2 need 0; 3 needs 2; 4 is independent; 5 runs after 2 softly.
        let g = G {
            hard: vec![vec![], vec![0], vec![0], vec![2], vec![], vec![]],
            soft: vec![vec![], vec![], vec![], vec![], vec![], vec![2]],
        };
        let mut q = queue(&g, 8, |_| {});
        assert_eq!(ids(&q.admit()), [0, 4]);
        let mut skipped = q.complete(0, false);
        skipped.sort();
        assert_eq!(skipped, [1, 2, 3]);
        assert_eq!(
            ids(&q.admit()),
            [5],
            "a soft successor of a skipped task runs"
        );
        assert!(q.is_done(3));
    }

    #[test]
    fn a_halt_admits_nothing_more_while_running_tasks_finish() {
        let g = free(3);
        let mut q = queue(&g, 1, |_| {});
        assert_eq!(ids(&q.admit()), [0]);
        q.halt();
        q.complete(0, true);
        assert!(q.admit().is_empty());
        assert_eq!(q.running(), 0);
        assert!(!q.is_done(1) && !q.is_done(2));
    }
}
