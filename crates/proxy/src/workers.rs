//! The data plane's threads. Each worker is one OS thread running a
//! single-threaded (`current_thread`) tokio runtime, so a connection's
//! tasks never leave the thread that accepted it, wake-ups need no
//! cross-thread queue, and the proxy does not share a scheduler with the
//! apiserver and controllers of `switchboard up`. The sync loop stays on
//! the caller's runtime and hands listeners to the workers' acceptors
//! (`accept`); UDP sockets get a task of their own.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::accept::Acceptors;

/// The runtimes listeners are spawned on.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    /// One TCP acceptor per worker, in the same order.
    acceptors: Acceptors,
    /// Dropping these ends the workers' threads, and with their runtimes
    /// every listener and connection they run.
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// `n` worker threads; with `n == 0`, the caller's runtime serves as
    /// the only worker (tests that control time need their own runtime).
    /// `shortest_timer`: the shortest timer a connection sets (the connect
    /// timeout), see [`keep_timer_armed`].
    pub fn start(n: usize, shortest_timer: Duration) -> io::Result<Workers> {
        if n == 0 {
            let handles = vec![Handle::current()];
            return Ok(Workers {
                acceptors: Acceptors::start(&handles),
                handles,
                _stop: Vec::new(),
            });
        }
        let mut handles = Vec::with_capacity(n);
        let mut stop = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            runtime.spawn(keep_timer_armed(shortest_timer));
            let (tx, rx) = oneshot::channel::<()>();
            stop.push(tx);
            std::thread::Builder::new()
                .name(format!("proxy-worker-{i}"))
                .spawn(move || {
                    // Runs the worker's tasks until the proxy is dropped
                    // (the sender goes, `rx` resolves); the runtime is
                    // dropped here, on its own thread, as tokio requires.
                    runtime.block_on(async {
                        let _ = rx.await;
                    });
                })?;
        }
        Ok(Workers {
            acceptors: Acceptors::start(&handles),
            handles,
            _stop: stop,
        })
    }

    /// The TCP acceptors, one per worker.
    pub fn acceptors(&self) -> &Acceptors {
        &self.acceptors
    }

    /// How many runtimes there are (at least one).
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Spawns `task` on worker `i` (modulo the count).
    pub fn spawn<F>(&self, i: usize, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handles[i % self.handles.len()].spawn(task)
    }
}

/// Ticks for ever at half the shortest per-connection timer (at most every
/// 500 ms). Why: tokio's time driver unparks itself (a `write(2)` to its
/// eventfd, and one more `epoll_wait` round) whenever a new timer is due
/// before its next planned wake-up. On an otherwise idle worker every
/// connection's connect timeout was such a timer: 0.84 writes per
/// connection under connection-per-request load (strace). With this tick
/// pending, the planned wake-up is always sooner than a new connect
/// timeout, so registering one costs no system call.
async fn keep_timer_armed(shortest_timer: Duration) {
    let period = (shortest_timer / 2).clamp(Duration::from_millis(1), Duration::from_millis(500));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_worker_threads_and_stop_with_them() {
        let workers = Workers::start(2, Duration::from_secs(2)).unwrap();
        assert_eq!(workers.len(), 2);
        let mut names = Vec::new();
        for i in 0..2 {
            let (tx, rx) = oneshot::channel();
            workers.spawn(i, async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send(name);
            });
            names.push(rx.await.unwrap());
        }
        assert_eq!(
            names,
            vec![
                Some("proxy-worker-0".to_owned()),
                Some("proxy-worker-1".to_owned())
            ]
        );

        // A task that never ends is cancelled when the workers go.
        let (tx, rx) = oneshot::channel::<()>();
        workers.spawn(0, async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(workers);
        assert!(rx.await.is_err(), "the worker's runtime dropped the task");
    }

    #[tokio::test]
    async fn zero_workers_use_the_callers_runtime() {
        let workers = Workers::start(0, Duration::from_secs(2)).unwrap();
        assert_eq!(workers.len(), 1);
        workers.spawn(5, async {}).await.unwrap();
    }
}
