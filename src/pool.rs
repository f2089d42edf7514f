//! A pool of named worker threads that grows on demand up to a bound and
//! shrinks when idle.
//!
//! Every thread is joined: threads that retire after `idle_timeout` are
//! joined by the next [`Pool::execute`] or by [`Pool::shutdown`], which
//! also waits for the jobs in progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::sync::lock;

/// A unit of work.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Sizes of a pool of threads that grows on demand up to a bound and
/// shrinks when idle (a listener's call threads:
/// [`ServerConfig::pool`](crate::rpc::ServerConfig::pool)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Most threads at once. Default 256.
    pub max_threads: usize,
    /// Jobs that may wait when every thread is busy. Default 1024.
    pub max_queued: usize,
    /// An idle thread retires after this long. Default 10 s.
    pub idle_timeout: Duration,
    /// Stack size of each thread. Default 256 KiB.
    pub stack_size: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_threads: 256,
            max_queued: 1024,
            idle_timeout: Duration::from_secs(10),
            stack_size: 256 * 1024,
        }
    }
}

struct State {
    tx: Option<Sender<Job>>,
    threads: usize,
    /// Threads blocked waiting for a job.
    idle: usize,
    next_id: usize,
    handles: HashMap<usize, JoinHandle<()>>,
    retired: Vec<usize>,
}

struct Inner {
    name: String,
    config: PoolConfig,
    rx: Receiver<Job>,
    state: Mutex<State>,
}

/// See the module documentation. Cloning shares the pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool whose threads are named `<name>-<n>`.
    pub fn new(name: &str, config: PoolConfig) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            inner: Arc::new(Inner {
                name: name.to_string(),
                config,
                rx,
                state: Mutex::new(State {
                    tx: Some(tx),
                    threads: 0,
                    idle: 0,
                    next_id: 0,
                    handles: HashMap::new(),
                    retired: Vec::new(),
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Runs `job` on a pool thread. When every thread is busy and the
    /// queue is full, or the pool is shut down, the job is handed back.
    pub fn execute(&self, job: Job) -> Result<(), Job> {
        let mut st = self.lock();
        let retired = std::mem::take(&mut st.retired)
            .into_iter()
            .filter_map(|id| st.handles.remove(&id))
            .collect::<Vec<_>>();
        let result = self.place(&mut st, job);
        drop(st);
        for h in retired {
            let _ = h.join();
        }
        result
    }

    fn place(&self, st: &mut State, job: Job) -> Result<(), Job> {
        let Some(tx) = st.tx.clone() else {
            return Err(job);
        };
        let waiting = self.inner.rx.len();
        if st.idle > waiting {
            // An idle thread will take it.
            return tx.send(job).map_err(|e| e.into_inner());
        }
        if st.threads < self.inner.config.max_threads {
            // The new thread takes the job from this slot; if the thread
            // cannot start, the job is still there to hand back.
            let slot = Arc::new(Mutex::new(Some(job)));
            let first = slot.clone();
            let id = st.next_id;
            let inner = self.inner.clone();
            let spawned = crate::sync::spawn(
                format!("{}-{id}", self.inner.name),
                self.inner.config.stack_size,
                move || {
                    let job = lock(&first).take();
                    worker(inner, id, job)
                },
            );
            return match spawned {
                Ok(h) => {
                    st.next_id += 1;
                    st.threads += 1;
                    st.handles.insert(id, h);
                    Ok(())
                }
                Err(e) => {
                    log::error!("{}: cannot start a thread: {e}", self.inner.name);
                    let job = lock(&slot).take();
                    Err(job.unwrap_or_else(|| Box::new(|| {})))
                }
            };
        }
        if waiting < self.inner.config.max_queued {
            return tx.send(job).map_err(|e| e.into_inner());
        }
        Err(job)
    }

    /// Threads alive now.
    #[cfg_attr(not(feature = "daemon"), allow(dead_code))]
    pub fn threads(&self) -> usize {
        self.lock().threads
    }

    /// Refuses new jobs, lets queued and running ones finish, and joins
    /// every thread.
    pub fn shutdown(&self) {
        let handles: Vec<_> = {
            let mut st = self.lock();
            st.tx = None;
            st.retired.clear();
            st.handles.drain().map(|(_, h)| h).collect()
        };
        let me = std::thread::current().id();
        for h in handles {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }
}

fn worker(inner: Arc<Inner>, id: usize, first: Option<Job>) {
    let pool = Pool { inner };
    if let Some(job) = first {
        run(job);
    }
    loop {
        // Each thread counts itself idle only around its own wait, so the
        // count never runs below zero whoever takes which job.
        pool.lock().idle += 1;
        let got = pool.inner.rx.recv_timeout(pool.inner.config.idle_timeout);
        let mut st = pool.lock();
        st.idle -= 1;
        match got {
            Ok(job) => {
                drop(st);
                run(job);
            }
            Err(RecvTimeoutError::Timeout) if !pool.inner.rx.is_empty() => {}
            Err(RecvTimeoutError::Timeout) => {
                st.threads -= 1;
                if st.tx.is_some() {
                    st.retired.push(id);
                }
                return;
            }
            Err(RecvTimeoutError::Disconnected) => {
                st.threads -= 1;
                return;
            }
        }
    }
}

fn run(job: Job) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
        log::error!("a job panicked; its worker goes on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    #[test]
    fn runs_jobs_grows_and_hands_back_when_full() {
        let pool = Pool::new(
            "t",
            PoolConfig {
                max_threads: 2,
                max_queued: 1,
                ..Default::default()
            },
        );
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        for _ in 0..3 {
            let g = gate_rx.clone();
            let d = done_tx.clone();
            pool.execute(Box::new(move || {
                let _ = g.recv();
                d.send(()).unwrap();
            }))
            .map_err(|_| ())
            .unwrap();
        }
        assert_eq!(pool.threads(), 2);
        assert!(pool.execute(Box::new(|| {})).is_err(), "queue is full");
        drop(gate_tx);
        for _ in 0..3 {
            done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        pool.shutdown();
        assert_eq!(pool.threads(), 0);
        assert!(pool.execute(Box::new(|| {})).is_err(), "shut down");
    }

    #[test]
    fn idle_threads_retire() {
        let pool = Pool::new(
            "r",
            PoolConfig {
                idle_timeout: Duration::from_millis(20),
                ..Default::default()
            },
        );
        let (tx, rx) = bounded(1);
        pool.execute(Box::new(move || tx.send(()).unwrap()))
            .map_err(|_| ())
            .unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.threads() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "thread did not retire"
            );
            std::thread::yield_now();
        }
        pool.shutdown();
    }
}
